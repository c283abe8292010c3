//! Errors of the optimizer zoo. Every message names the optimizer, the key and what is allowed.

use thiserror::Error;

/// A hyper-parameter table that does not describe a valid optimizer.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SpecError {
    /// The table has no `name` (or `plugin`) key.
    #[error("optimizer table has no `name` key; known optimizers: {known}")]
    MissingName {
        /// Comma-separated known names.
        known: String,
    },
    /// `name` is not a registered optimizer.
    #[error("unknown optimizer `{name}`; known optimizers: {known}")]
    UnknownOptimizer {
        /// The name given.
        name: String,
        /// Comma-separated known names.
        known: String,
    },
    /// A key that the optimizer's schema does not have.
    #[error("unknown key `{key}` for optimizer `{optimizer}`; allowed keys: {allowed}")]
    UnknownKey {
        /// The optimizer.
        optimizer: String,
        /// The offending key.
        key: String,
        /// Comma-separated allowed keys.
        allowed: String,
    },
    /// A value of the wrong type, e.g. a string where a number belongs.
    #[error("`{optimizer}.{key}` must be {expected}, got {got}")]
    WrongType {
        /// The optimizer.
        optimizer: String,
        /// The key.
        key: String,
        /// What the schema expects, with its range.
        expected: String,
        /// What was given.
        got: String,
    },
    /// A value outside its allowed range (a zero or negative lr, a beta outside [0, 1), ...).
    #[error("`{optimizer}.{key}` = {value} is outside its allowed range {range}")]
    OutOfRange {
        /// The optimizer.
        optimizer: String,
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// The allowed range, e.g. `[0, 1)`.
        range: String,
    },
    /// A key the optimizer's typed config needs but the resolved values lack (a schema that
    /// does not declare it, or values that did not come through [`Schema::resolve`]).
    ///
    /// [`Schema::resolve`]: crate::Schema::resolve
    #[error("optimizer `{optimizer}` is missing `{key}`: expected {expected}")]
    MissingKey {
        /// The optimizer.
        optimizer: String,
        /// The key.
        key: String,
        /// What the key must hold, with its range (or the keys the schema declares).
        expected: String,
    },
    /// Values that are each valid but not together (e.g. nesterov without momentum).
    #[error("optimizer `{optimizer}`: {message}")]
    Inconsistent {
        /// The optimizer.
        optimizer: String,
        /// What is wrong.
        message: String,
    },
    /// A plugin that could not be loaded (missing file, sha256 mismatch, not a plugin, wrong
    /// ABI) or whose `create` refused the values or failed.
    #[error("optimizer plugin `{path}`: {message}")]
    Plugin {
        /// The plugin file as given.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// A device string that names no usable device.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeviceError {
    /// The string is not one of the known device forms.
    #[error("unknown device `{given}`; allowed: {allowed}")]
    Unknown {
        /// The string given.
        given: String,
        /// The allowed forms.
        allowed: String,
    },
    /// The device is known but this build or this machine cannot run it.
    #[error("device `{given}` is not available: {reason}")]
    Unavailable {
        /// The string given.
        given: String,
        /// Why (feature not built, no adapter found, ...).
        reason: String,
    },
}

/// An invalid learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("schedule `{schedule}`: `{key}` = {value} is outside its allowed range {range}")]
pub struct ScheduleError {
    /// The schedule kind.
    pub schedule: String,
    /// The key.
    pub key: String,
    /// The value given.
    pub value: String,
    /// The allowed range.
    pub range: String,
}

/// An optimizer step that could not be completed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("optimizer `{optimizer}` failed at step {step}: {message}")]
pub struct StepError {
    /// The optimizer (a built-in name or a plugin's name and file).
    pub optimizer: String,
    /// The 1-based step that failed.
    pub step: usize,
    /// What went wrong.
    pub message: String,
}
