//! [`Observer`]: how the science reports what it is doing without knowing where it goes (a
//! progress bar, log lines, JSON logs, nothing), and learns that the user asked it to stop
//! (Ctrl-C). The runner passes its own; tests pass [`Silent`].

/// Receives the messages and the per-step progress of training.
pub trait Observer: Sync {
    /// One line about the work (a stage reused, an eval point's rates).
    fn message(&self, text: &str);
    /// A training stage of `total` steps starts; its steps are reported to what comes back.
    fn stage(&self, label: &str, total: usize) -> Box<dyn StageObserver + '_>;
    /// Whether the user asked the work to stop (Ctrl-C): training then ends before its next
    /// step with [`HarnessError::Interrupted`](crate::error::HarnessError::Interrupted).
    /// Never, unless an observer says otherwise.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// The progress of one training stage.
pub trait StageObserver {
    /// Step `step` is done with training loss `loss` at learning rate `lr`.
    fn step(&self, step: usize, loss: f32, lr: f64);
    /// The stage ended; `message` says how (`loss 0.1234`, `diverged at step 7 ...`).
    fn finish(&self, message: &str);
}

/// An observer that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {
    fn message(&self, _: &str) {}
    fn stage(&self, _: &str, _: usize) -> Box<dyn StageObserver + '_> {
        Box::new(Silent)
    }
}

impl StageObserver for Silent {
    fn step(&self, _: usize, _: f32, _: f64) {}
    fn finish(&self, _: &str) {}
}
