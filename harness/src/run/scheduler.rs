//! The local scheduler: every node of the stage DAG with `jobs` worker threads. A node starts
//! as soon as the node it depends on has finished (an insertion after its base, a cell after
//! its insertion), lowest level first; the first error stops new work and is returned once
//! running nodes end.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex};

use super::cell::NodeOutcome;
use super::plan::{Level, Plan};
use crate::error::HarnessError;

/// How many stages of each level were trained and how many reused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StageCounts {
    /// Trained in this invocation.
    pub trained: usize,
    /// Found done (cache entry or finished cell).
    pub reused: usize,
    /// Diverged (trained now or found diverged in the cache).
    pub diverged: usize,
}

/// The scheduler's shared state: nodes not yet started, and the keys of finished ones.
struct Schedule {
    pending: Vec<(Level, usize)>,
    done: BTreeSet<(Level, String)>,
    running: usize,
    counts: [StageCounts; 3],
    error: Option<HarnessError>,
}

/// Run every node of `plan` with up to `jobs` workers; `run_one(level, cell, parallel)` runs
/// one node (`parallel`: more than one worker runs). Returns the counts per level, in
/// [`Level::ALL`] order.
pub fn run_dag(
    plan: &Plan,
    jobs: usize,
    run_one: impl Fn(Level, usize, bool) -> Result<NodeOutcome, HarnessError> + Sync,
) -> Result<[StageCounts; 3], HarnessError> {
    let pending: Vec<(Level, usize)> = Level::ALL
        .iter()
        .flat_map(|&level| plan.nodes(level).into_iter().map(move |i| (level, i)))
        .collect();
    let workers = jobs.min(pending.len()).max(1);
    let state = Mutex::new(Schedule {
        pending,
        done: Default::default(),
        running: 0,
        counts: Default::default(),
        error: None,
    });
    let wake = Condvar::new();
    let dependency = |level: Level, index: usize| -> Option<(Level, String)> {
        level
            .parent()
            .map(|parent| (parent, plan.key(parent, index).to_string()))
    };
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut guard = lock();
                loop {
                    if guard.error.is_some() || guard.pending.is_empty() {
                        break;
                    }
                    let ready = guard.pending.iter().position(|&(level, index)| {
                        dependency(level, index).is_none_or(|key| guard.done.contains(&key))
                    });
                    let Some(position) = ready else {
                        if guard.running == 0 {
                            // Cannot happen: every dependency is a node of the plan.
                            guard.error = Some(HarnessError::Invalid {
                                origin: "the stage DAG".into(),
                                key: "sweep".into(),
                                problem: "internal error: stages wait on stages not planned".into(),
                            });
                            break;
                        }
                        // Everything left waits on running nodes.
                        guard = wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                        continue;
                    };
                    let (level, index) = guard.pending.remove(position);
                    guard.running += 1;
                    drop(guard);
                    let result = run_one(level, index, workers > 1);
                    guard = lock();
                    guard.running -= 1;
                    let slot = level as usize;
                    match result {
                        Ok(outcome) => {
                            guard
                                .done
                                .insert((level, plan.key(level, index).to_string()));
                            let c = &mut guard.counts[slot];
                            match outcome {
                                NodeOutcome::Trained => c.trained += 1,
                                NodeOutcome::Reused => c.reused += 1,
                                NodeOutcome::Diverged => c.diverged += 1,
                            }
                        }
                        Err(e) => {
                            guard.error.get_or_insert(e);
                        }
                    }
                    wake.notify_all();
                }
                wake.notify_all();
            });
        }
    });
    let state = state.into_inner().unwrap_or_else(|e| e.into_inner());
    match state.error {
        Some(e) => Err(e),
        None => Ok(state.counts),
    }
}
