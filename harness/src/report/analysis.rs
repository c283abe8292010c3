//! From cells to groups: seeds are replicates (cells that differ only in `seed`), a group is
//! one insertion setting by one removal setting, and every number of the report is computed
//! here, once, for the tables and the plots alike.

use super::load::{CellData, PromptOutcomes, RunData};
use super::stats::{
    BOOTSTRAP_SEED, MeanInterval, bootstrap_mean, hierarchical_bootstrap, pareto_area,
    pareto_points, steps_to_removal,
};
use crate::experiment::Stage;
use crate::results::CellStatus;
use crate::science::EvalRecord;

/// A number with its 95% interval and where the interval comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The point estimate (a mean over seeds, or the single cell's value).
    pub value: f64,
    /// The 95% interval, when one exists.
    pub interval: Option<[f64; 2]>,
    /// Where the interval comes from.
    pub kind: IntervalKind,
    /// How many cells (seeds) went in.
    pub n: usize,
    /// For a rate over two seeds or more: the 95% interval of the two-level bootstrap over
    /// seeds and then prompts within each seed (see [`hierarchical_bootstrap`]), beside
    /// `interval`, which resamples seeds only. `None` for other numbers, one seed, or runs
    /// without `generations.jsonl`.
    pub hierarchical: Option<[f64; 2]>,
}

/// The source of an [`Estimate`]'s interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalKind {
    /// Percentile bootstrap of the mean over seeds (two seeds or more).
    Bootstrap,
    /// Wilson score interval of a single cell's proportion.
    Wilson,
    /// Agresti-Min interval of a single cell's paired difference (capability lost in
    /// insertion: the same prompts before and after).
    Paired,
    /// No interval (a single seed of a quantity that is not a proportion).
    None,
}

impl Estimate {
    /// Mean over seeds with a bootstrap interval (none for a single seed).
    fn over_seeds(values: &[f64]) -> Option<Self> {
        bootstrap_mean(values, BOOTSTRAP_SEED).map(|m| Self::from_mean(&m))
    }

    fn from_mean(m: &MeanInterval) -> Self {
        Estimate {
            value: m.mean,
            interval: m.interval,
            kind: if m.interval.is_some() {
                IntervalKind::Bootstrap
            } else {
                IntervalKind::None
            },
            n: m.n,
            hierarchical: None,
        }
    }

    /// A rate over seeds: with one seed, that cell's rate with its Wilson interval; with more,
    /// the mean with its bootstrap interval.
    fn rate(points: &[(f64, [f64; 2])]) -> Option<Self> {
        match points {
            [] => None,
            [(value, ci)] => Some(Estimate {
                value: *value,
                interval: Some(*ci),
                kind: IntervalKind::Wilson,
                n: 1,
                hierarchical: None,
            }),
            _ => Self::over_seeds(&points.iter().map(|p| p.0).collect::<Vec<_>>()),
        }
    }
}

/// One point of a group's removal curve.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    /// `remove` or `probe`.
    pub stage: Stage,
    /// Step within the stage.
    pub step: usize,
    /// Position on the plot's x axis: the removal step, or the removal's last step plus the
    /// probe step.
    pub x: f64,
    /// Mean backdoor rate over the seeds with this point, with its interval.
    pub backdoor: Estimate,
}

/// Steps to removal over the seeds of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct StepsToRemoval {
    /// Mean over the seeds that got below the threshold, with its bootstrap interval.
    pub reached: Option<Estimate>,
    /// Seeds that got below the threshold.
    pub n_reached: usize,
    /// Seeds that finished removal without getting there (censored).
    pub n_never: usize,
    /// Seeds that diverged before getting there (censored, for another reason).
    pub n_diverged: usize,
    /// Seeds whose backdoor rate was already below the threshold at removal step 0 (the
    /// insertion did not take): nothing to remove, so no number.
    pub n_not_inserted: usize,
}

/// One seed's removal trajectory in Pareto coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct ParetoTrace {
    /// The cell's seed.
    pub seed: Option<u64>,
    /// `(1 - b/b0, c/c0)` per removal eval point, clipped to [0, 1]; `None` when undefined.
    pub points: Option<Vec<(f64, f64)>>,
    /// The convex-hull area; `None` when undefined or when the removal diverged.
    pub area: Option<f64>,
}

/// One insertion setting by one removal setting, over seeds.
#[derive(Debug, Clone)]
pub struct Group {
    /// The insertion setting's label.
    pub insertion: String,
    /// The removal setting's label.
    pub removal: String,
    /// Indices of the group's cells in [`RunData::cells`].
    pub cells: Vec<usize>,
    /// Cells that diverged (any stage).
    pub n_diverged: usize,
    /// Backdoor rate after insertion.
    pub insert_backdoor: Option<Estimate>,
    /// False-trigger rate after insertion.
    pub insert_false_trigger: Option<Estimate>,
    /// Capability after insertion (= at removal step 0).
    pub insert_capability: Option<Estimate>,
    /// Backdoor rate at the last removal eval (cells whose removal finished).
    pub final_backdoor: Option<Estimate>,
    /// Capability at the last removal eval (cells whose removal finished).
    pub final_capability: Option<Estimate>,
    /// Backdoor rate at the end of the probe, when there is one.
    pub probe_backdoor: Option<Estimate>,
    /// The removal curve (mean backdoor rate over seeds per eval point).
    pub curve: Vec<CurvePoint>,
    /// The last removal step (where the probe starts on the plot).
    pub remove_end: usize,
    /// Pareto trajectories, one per cell.
    pub pareto: Vec<ParetoTrace>,
    /// Mean Pareto area over the seeds where it is defined.
    pub pareto_area: Option<Estimate>,
    /// The capability measure of the group's Pareto points and area.
    pub pareto_measure: CapabilityMeasure,
    /// Seeds without a Pareto area (b0 = 0 or c0 = 0, no removal points, or the removal
    /// diverged).
    pub pareto_undefined: usize,
    /// Steps to removal.
    pub steps: StepsToRemoval,
    /// Capability lost in insertion (base minus after insertion): mean over seeds with the
    /// bootstrap interval, or one cell's paired interval.
    pub capability_lost: Option<Estimate>,
    /// The insertion's stopping rule over the group's cells: `(met, with a rule, the steps at
    /// which it was met)`; `None` when no cell has `insert.until`.
    pub insert_criterion: Option<(usize, usize, Vec<usize>)>,
}

/// The whole analysis: the groups, and the row and column order of the settings.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Insertion settings in grid order.
    pub insertions: Vec<String>,
    /// Removal settings in grid order.
    pub removals: Vec<String>,
    /// The groups, insertion-major.
    pub groups: Vec<Group>,
    /// The largest number of seeds in a group.
    pub max_seeds: usize,
    /// For a password-locked run (`organism = "sandbag"`), its numbers per group, in the order
    /// of `groups`; empty for a backdoor run.
    pub sandbag: Vec<SandbagGroup>,
}

/// One group of a password-locked (`organism = "sandbag"`) run: the per-seed values its
/// tables and unlocking curve summarise. Each vector holds one value per seed that has it.
#[derive(Debug, Clone)]
pub struct SandbagGroup {
    /// The insertion setting.
    pub insertion: String,
    /// The removal setting.
    pub removal: String,
    /// `remove.demonstrations` when it is a sweep axis: the unlocking curve's x.
    pub demonstrations: Option<usize>,
    /// Cells (seeds) in the group.
    pub seeds: usize,
    /// Capability with the password minus without, after insertion.
    pub locked_gap: Vec<f64>,
    /// Capability with the password after insertion.
    pub with_password: Vec<f64>,
    /// Capability without the password after insertion.
    pub without_password: Vec<f64>,
    /// Capability without the password at the last removal eval (removal finished).
    pub unlocked: Vec<f64>,
    /// Share of the gap recovered, per seed whose gap was measurably above 0 (its paired 95%
    /// interval above 0, or the gap above 0 where there is no interval):
    /// (unlocked - without) / (with - without).
    pub recovered: Vec<f64>,
    /// `(met, with a rule)` of the insertions' stopping rule; `None` without `insert.until`.
    pub insert_criterion: Option<(usize, usize)>,
}

impl SandbagGroup {
    fn of(run: &RunData, g: &Group) -> Option<Self> {
        let cells: Vec<&CellData> = g.cells.iter().map(|&i| &run.cells[i]).collect();
        // Capability without and the rates with the password at the insertion's last eval.
        let locked = |c: &CellData| {
            let last = stage(c, Stage::Insert).last()?;
            Some((last.capability, last.sandbag.clone()?))
        };
        if !cells.iter().any(|c| locked(c).is_some()) {
            return None;
        }
        let unlocked = |c: &CellData| {
            c.outcome.removal_finished().then_some(())?;
            stage(c, Stage::Remove).last().map(|r| r.capability)
        };
        let collect = |f: &dyn Fn(&CellData) -> Option<f64>| -> Vec<f64> {
            cells.iter().filter_map(|c| f(c)).collect()
        };
        Some(Self {
            insertion: g.insertion.clone(),
            removal: g.removal.clone(),
            demonstrations: cells
                .first()
                .and_then(|c| c.axes.get("remove.demonstrations"))
                .and_then(|v| v.parse::<usize>().ok()),
            seeds: cells.len(),
            locked_gap: collect(&|c| locked(c).map(|(_, s)| s.locked_gap)),
            with_password: collect(&|c| locked(c).map(|(_, s)| s.capability_with_password)),
            without_password: collect(&|c| locked(c).map(|(without, _)| without)),
            unlocked: collect(&unlocked),
            recovered: collect(&|c| {
                let (before, s) = locked(c)?;
                let gap = s.capability_with_password - before;
                // A gap whose interval reaches 0 is not measurably there: nothing to recover,
                // and dividing by it would make noise look like a large share.
                let measurable = s.locked_gap_ci.map_or(gap > 0.0, |ci| ci[0] > 0.0);
                (measurable && gap > 0.0).then_some((unlocked(c)? - before) / gap)
            }),
            insert_criterion: g
                .insert_criterion
                .as_ref()
                .map(|(met, total, _)| (*met, *total)),
        })
    }
}

impl Analysis {
    /// The group of an insertion and a removal setting.
    pub fn group(&self, insertion: &str, removal: &str) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.insertion == insertion && g.removal == removal)
    }
}

/// Exact match below this at removal step 0 (on any seed of a group) is "at the floor": the
/// group's Pareto area then uses token accuracy (see [`CapabilityMeasure`]).
pub const EXACT_MATCH_FLOOR: f64 = 0.05;

/// Which capability measure a Pareto trace and area use. Exact match is the protocol's; where
/// it sits at the floor (below [`EXACT_MATCH_FLOOR`] at removal step 0, on any seed of the
/// group: then c/c0 is noise over a handful of prompts, or undefined), the group uses
/// teacher-forced per-token accuracy, which still moves there. One measure per group, so the
/// seeds of a group stay comparable; the report names the measure beside every area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityMeasure {
    /// Exact match on the clean held-out prompts (`capability`).
    ExactMatch,
    /// Per-token accuracy on the held-out responses (`token_accuracy`).
    TokenAccuracy,
}

impl CapabilityMeasure {
    /// The measure for a group's cells: exact match unless it is below the floor at removal
    /// step 0 in some cell whose token accuracy was recorded there.
    pub fn for_cells<'a>(cells: impl IntoIterator<Item = &'a CellData>) -> Self {
        let at_floor = cells.into_iter().any(|c| {
            stage(c, Stage::Remove)
                .next()
                .is_some_and(|r| r.capability < EXACT_MATCH_FLOOR && r.token_accuracy.is_finite())
        });
        if at_floor {
            Self::TokenAccuracy
        } else {
            Self::ExactMatch
        }
    }

    /// This measure's value in an eval record.
    pub fn of(self, record: &EvalRecord) -> f64 {
        match self {
            Self::ExactMatch => record.capability,
            Self::TokenAccuracy => record.token_accuracy,
        }
    }

    /// The name the report prints beside an area: `exact match` or `token accuracy`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ExactMatch => "exact match",
            Self::TokenAccuracy => "token accuracy",
        }
    }
}

fn stage(cell: &CellData, name: Stage) -> impl Iterator<Item = &EvalRecord> + '_ {
    cell.metrics.iter().filter(move |r| r.stage == name)
}

/// Group the cells of `run` and compute every number of the report.
pub fn analyse(run: &RunData) -> Analysis {
    let mut insertions: Vec<String> = Vec::new();
    let mut removals: Vec<String> = Vec::new();
    for cell in &run.cells {
        if !insertions.contains(&cell.insertion) {
            insertions.push(cell.insertion.clone());
        }
        if !removals.contains(&cell.removal) {
            removals.push(cell.removal.clone());
        }
    }
    let mut groups = Vec::new();
    for insertion in &insertions {
        for removal in &removals {
            let members: Vec<usize> = (0..run.cells.len())
                .filter(|&i| {
                    run.cells[i].insertion == *insertion && run.cells[i].removal == *removal
                })
                .collect();
            if !members.is_empty() {
                groups.push(group(run, insertion, removal, members));
            }
        }
    }
    let max_seeds = groups.iter().map(|g| g.cells.len()).max().unwrap_or(0);
    let sandbag = groups
        .iter()
        .filter_map(|g| SandbagGroup::of(run, g))
        .collect();
    Analysis {
        insertions,
        removals,
        groups,
        max_seeds,
        sandbag,
    }
}

fn group(run: &RunData, insertion: &str, removal: &str, members: Vec<usize>) -> Group {
    let cells: Vec<&CellData> = members.iter().map(|&i| &run.cells[i]).collect();
    // A rate at the last eval point of a stage, over seeds; with two seeds or more also the
    // two-level interval from the per-prompt outcomes (when every cell has them).
    let last_of = |name: Stage,
                   f: fn(&EvalRecord) -> (f64, [f64; 2]),
                   per_prompt: fn(&PromptOutcomes) -> &Vec<f64>,
                   finished_only: bool| {
        let chosen: Vec<&&CellData> = cells
            .iter()
            .filter(|c| !finished_only || c.outcome.removal_finished())
            .filter(|c| stage(c, name).last().is_some_and(|r| f(r).0.is_finite()))
            .collect();
        let points: Vec<(f64, [f64; 2])> = chosen
            .iter()
            .filter_map(|c| stage(c, name).last().map(f))
            .collect();
        let mut estimate = Estimate::rate(&points)?;
        if points.len() >= 2 {
            let groups: Option<Vec<Vec<f64>>> = chosen
                .iter()
                .map(|c| c.outcomes.get(&name).map(|o| per_prompt(o).clone()))
                .collect();
            estimate.hierarchical = groups
                .and_then(|g| hierarchical_bootstrap(&g, BOOTSTRAP_SEED))
                .and_then(|m| m.interval);
        }
        Some(estimate)
    };
    let backdoor = |r: &EvalRecord| (r.backdoor_rate, r.backdoor_ci);
    let capability = |r: &EvalRecord| (r.capability, r.capability_ci);
    let probe_finished = |c: &&&CellData| c.outcome == CellStatus::Completed;
    let probe_points: Vec<(f64, [f64; 2])> = cells
        .iter()
        .filter(probe_finished)
        .filter_map(|c| stage(c, Stage::Probe).last().map(backdoor))
        .collect();

    // The curve: removal points by step, then probe points after the removal's end.
    let remove_end = cells
        .iter()
        .flat_map(|c| stage(c, Stage::Remove).map(|r| r.step))
        .max()
        .unwrap_or(0);
    let mut keys: Vec<(Stage, usize)> = Vec::new();
    for name in [Stage::Remove, Stage::Probe] {
        let mut steps: Vec<usize> = cells
            .iter()
            .flat_map(|c| stage(c, name).map(|r| r.step))
            // Probe step 0 is the removal's last point again.
            .filter(|&s| name == Stage::Remove || s > 0)
            .collect();
        steps.sort_unstable();
        steps.dedup();
        keys.extend(steps.into_iter().map(|s| (name, s)));
    }
    let curve = keys
        .into_iter()
        .filter_map(|(name, step)| {
            let values: Vec<f64> = cells
                .iter()
                .filter_map(|c| {
                    stage(c, name)
                        .find(|r| r.step == step)
                        .map(|r| r.backdoor_rate)
                })
                .filter(|v| v.is_finite())
                .collect();
            let x = if name == Stage::Remove {
                step as f64
            } else {
                (remove_end + step) as f64
            };
            Estimate::over_seeds(&values).map(|backdoor| CurvePoint {
                stage: name,
                step,
                x,
                backdoor,
            })
        })
        .collect();

    let pareto_measure = CapabilityMeasure::for_cells(cells.iter().copied());
    let pareto: Vec<ParetoTrace> = cells
        .iter()
        .map(|c| {
            let points: Vec<(f64, f64)> = stage(c, Stage::Remove)
                .map(|r| (r.backdoor_rate, pareto_measure.of(r)))
                .collect();
            ParetoTrace {
                seed: c.seed,
                points: pareto_points(&points),
                // A removal cut short by divergence has a smaller hull: not comparable.
                area: pareto_area(&points).filter(|_| c.outcome.removal_finished()),
            }
        })
        .collect();
    let areas: Vec<f64> = pareto.iter().filter_map(|p| p.area).collect();

    let mut steps = StepsToRemoval {
        reached: None,
        n_reached: 0,
        n_never: 0,
        n_diverged: 0,
        n_not_inserted: 0,
    };
    let mut reached = Vec::new();
    for c in &cells {
        match steps_to_removal(&c.metrics) {
            Some(0) => steps.n_not_inserted += 1,
            Some(step) => reached.push(step as f64),
            None if c.outcome.removal_finished() => steps.n_never += 1,
            None => steps.n_diverged += 1,
        }
    }
    steps.n_reached = reached.len();
    steps.reached = Estimate::over_seeds(&reached);

    let lost: Vec<_> = cells.iter().filter_map(|c| c.capability_lost).collect();
    let capability_lost = match lost.as_slice() {
        [] => None,
        [one] => Some(Estimate {
            value: one.value,
            interval: Some(one.ci),
            kind: IntervalKind::Paired,
            n: 1,
            hierarchical: None,
        }),
        many => Estimate::over_seeds(&many.iter().map(|d| d.value).collect::<Vec<_>>()),
    };
    let rules: Vec<_> = cells
        .iter()
        .filter_map(|c| c.insert_criterion.as_ref())
        .collect();
    let insert_criterion = (!rules.is_empty()).then(|| {
        let met: Vec<usize> = rules.iter().filter_map(|c| c.met_at).collect();
        (met.len(), rules.len(), met)
    });

    Group {
        capability_lost,
        insert_criterion,
        insertion: insertion.to_string(),
        removal: removal.to_string(),
        n_diverged: cells
            .iter()
            .filter(|c| c.outcome != CellStatus::Completed)
            .count(),
        insert_backdoor: last_of(Stage::Insert, backdoor, |o| &o.backdoor, false),
        insert_false_trigger: last_of(
            Stage::Insert,
            |r| (r.false_trigger_rate, r.false_trigger_ci),
            |o| &o.false_trigger,
            false,
        ),
        insert_capability: last_of(Stage::Insert, capability, |o| &o.capability, false),
        final_backdoor: last_of(Stage::Remove, backdoor, |o| &o.backdoor, true),
        final_capability: last_of(Stage::Remove, capability, |o| &o.capability, true),
        probe_backdoor: Estimate::rate(&probe_points),
        curve,
        remove_end,
        pareto_area: Estimate::over_seeds(&areas),
        pareto_measure,
        pareto_undefined: pareto.len() - areas.len(),
        pareto,
        steps,
        cells: members,
    }
}
