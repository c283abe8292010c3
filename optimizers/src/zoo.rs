//! [`ZooOptimizer`]: the one entry point that turns (spec, schedule) into something that steps a
//! whole burn module from its gradients.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::store::RecordError;
use burn::tensor::Bytes;

use crate::builtin;
use crate::schedule::LrSchedule;
use crate::spec::OptimizerSpec;

/// A whole-module optimizer with its schedule and step counter.
///
/// ```ignore
/// let mut optimizer = ZooOptimizer::new(&spec, LrSchedule::warmup_cosine(), steps, &model);
/// for batch in batches {
///     let grads = GradientsParams::from_grads(model.loss(batch).backward(), &model);
///     model = optimizer.step(model, grads);
/// }
/// ```
#[derive(Clone)]
pub struct ZooOptimizer {
    spec: OptimizerSpec,
    schedule: LrSchedule,
    total_steps: usize,
    steps_taken: usize,
    inner: ModuleOptimizer,
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
        Self {
            spec: spec.clone(),
            schedule,
            total_steps,
            steps_taken: 0,
            inner: builtin::module_optimizer(spec, module),
        }
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
    pub fn step<M: Module>(&mut self, module: M, grads: GradientsParams) -> M {
        let lr = self.current_lr();
        self.steps_taken += 1;
        self.inner.step(lr, module, grads)
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
