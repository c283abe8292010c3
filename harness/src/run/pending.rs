//! What is left to do of a plan: the nodes whose stage is not in the cache, or whose cell has
//! no finished results. Cheap (nothing is hashed or loaded), for `--dry-run`, resume and SLURM.

use super::cache::StageCache;
use super::plan::{Level, Plan};
use super::results_dir::ResultsDir;

/// The cell indices of the nodes of `level` not yet done, for planning: a cached stage (its
/// entry present; weights are checked when read) or a finished cell whose key matches.
pub fn pending_nodes(
    plan: &Plan,
    level: Level,
    results: &ResultsDir,
    cache: &StageCache,
) -> Vec<usize> {
    plan.nodes(level)
        .into_iter()
        .filter(|&i| match level {
            Level::Cell => results.finished_cell(plan, i).is_none(),
            other => !cache.contains(other.stage(), plan.key(other, i)),
        })
        .collect()
}
