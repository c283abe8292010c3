//! [`CellWriter`]: a cell's `metrics.jsonl` and `generations.jsonl`, rewritten atomically after
//! every eval point, so nothing measured is lost when a later stage diverges or the run is
//! killed.

use std::path::{Path, PathBuf};

use super::files::write_jsonl;
use super::schema::{GenerationLine, MetricsLine};
use crate::error::HarnessError;
use crate::science::{EvalRecord, Generation};

/// The eval points of one cell so far, and the folder they are written to.
pub struct CellWriter {
    dir: PathBuf,
    cell: String,
    metrics: Vec<MetricsLine>,
    generations: Vec<GenerationLine>,
}

impl CellWriter {
    /// A writer for cell `cell` (its label) into `dir`; nothing is written until [`record`].
    ///
    /// [`record`]: Self::record
    pub fn new(dir: &Path, cell: &str) -> Self {
        Self {
            dir: dir.to_path_buf(),
            cell: cell.to_string(),
            metrics: Vec::new(),
            generations: Vec::new(),
        }
    }

    /// Add one eval point and its completions, and rewrite both files.
    pub fn record(
        &mut self,
        record: EvalRecord,
        generations: Vec<Generation>,
    ) -> Result<(), HarnessError> {
        self.metrics.push(MetricsLine {
            cell: self.cell.clone(),
            record,
        });
        self.generations
            .extend(generations.into_iter().map(|generation| GenerationLine {
                cell: self.cell.clone(),
                generation,
            }));
        write_jsonl(&self.dir.join("metrics.jsonl"), &self.metrics)?;
        write_jsonl(&self.dir.join("generations.jsonl"), &self.generations)
    }

    /// Every eval point recorded so far, in order.
    pub fn records(&self) -> impl DoubleEndedIterator<Item = &EvalRecord> {
        self.metrics.iter().map(|m| &m.record)
    }
}
