//! [`ZooOptimizer`]: the one entry point that turns (spec, schedule) into something that steps a
//! whole burn module from its gradients.

use std::sync::{Arc, Mutex};

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::store::RecordError;
use burn::tensor::Bytes;

use crate::error::StepError;
use crate::plugin::{PluginOptimizer, StepLog};
use crate::schedule::LrSchedule;
use crate::spec::OptimizerSpec;

/// A whole-module optimizer with its schedule and step counter.
///
/// ```ignore
/// let mut optimizer = ZooOptimizer::new(&spec, LrSchedule::warmup_cosine(), steps, &model);
/// for batch in batches {
///     let grads = GradientsParams::from_grads(model.loss(batch).backward(), &model);
///     model = optimizer.step(model, grads)?;
/// }
/// ```
#[derive(Clone)]
pub struct ZooOptimizer {
    spec: OptimizerSpec,
    schedule: LrSchedule,
    total_steps: usize,
    steps_taken: usize,
    inner: ModuleOptimizer,
    /// A plugin's fault log (shared with its adapter inside `inner`); `None` for built-ins.
    plugin_log: Option<Arc<Mutex<StepLog>>>,
}

impl ZooOptimizer {
    /// Build the optimizer for `module` (which fixes the parameter groups, e.g. Muon's hidden
    /// matrices) over a stage of `total_steps` steps.
    pub fn new<M: Module>(
        spec: &OptimizerSpec,
        schedule: LrSchedule,
        total_steps: usize,
        module: &M,
    ) -> Self {
        let (inner, plugin_log) = match spec.plugin() {
            Some(plugin) => {
                let adapter = PluginOptimizer::new(plugin.instance().clone());
                let log = adapter.log();
                (ModuleOptimizer::from(adapter), Some(log))
            }
            None => (spec.module_optimizer(module), None),
        };
        Self::with_parts(spec, schedule, total_steps, inner, plugin_log)
    }

    fn with_parts(
        spec: &OptimizerSpec,
        schedule: LrSchedule,
        total_steps: usize,
        inner: ModuleOptimizer,
        plugin_log: Option<Arc<Mutex<StepLog>>>,
    ) -> Self {
        Self {
            spec: spec.clone(),
            schedule,
            total_steps,
            steps_taken: 0,
            inner,
            plugin_log,
        }
    }

    /// An optimizer stepping with `inner` in place of the one `spec` describes (the conformance
    /// suite's tests use it to hand the suite deliberately wrong optimizers).
    #[cfg(test)]
    pub(crate) fn with_module_optimizer(
        spec: &OptimizerSpec,
        schedule: LrSchedule,
        total_steps: usize,
        inner: ModuleOptimizer,
    ) -> Self {
        Self::with_parts(spec, schedule, total_steps, inner, None)
    }

    /// The learning rate the next step will use.
    pub fn current_lr(&self) -> f64 {
        self.spec.lr() * self.schedule.factor(self.steps_taken, self.total_steps)
    }

    /// Steps taken so far.
    pub fn steps_taken(&self) -> usize {
        self.steps_taken
    }

    /// The spec this optimizer was built from.
    pub fn spec(&self) -> &OptimizerSpec {
        &self.spec
    }

    /// Update `module` with `grads` at the scheduled learning rate and advance the step.
    ///
    /// Built-in optimizers never fail; the `Result` is for optimizers loaded at run time, whose
    /// faults (a panic, a NaN or wrong-shape update) become a [`StepError`] naming the optimizer.
    pub fn step<M: Module>(&mut self, module: M, grads: GradientsParams) -> Result<M, StepError> {
        let lr = self.current_lr();
        self.steps_taken += 1;
        let module = self.inner.step(lr, module, grads);
        if let Some(log) = &self.plugin_log {
            let checked = log.lock().unwrap_or_else(|e| e.into_inner()).finish();
            checked.map_err(|message| StepError {
                optimizer: match self.spec.plugin() {
                    Some(p) => format!("{} (plugin {})", self.spec.name(), p.path()),
                    None => self.spec.name().to_string(),
                },
                step: self.steps_taken,
                message,
            })?;
        }
        Ok(module)
    }

    /// The optimizer state (every per-parameter state, in burn's burnpack format).
    pub fn state_bytes(&self) -> Result<Bytes, RecordError> {
        self.inner.into_bytes()
    }

    /// Restore a state saved by [`state_bytes`](Self::state_bytes) after `steps_taken` steps.
    pub fn load_state(mut self, bytes: Bytes, steps_taken: usize) -> Result<Self, RecordError> {
        self.inner = self.inner.from_bytes(bytes)?;
        self.steps_taken = steps_taken;
        Ok(self)
    }
}
