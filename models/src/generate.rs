//! Batched autoregressive generation, with a key/value cache ([`TinyGpt::generate`]) and
//! without one ([`TinyGpt::generate_uncached`], the reference the cache is tested against).
//!
//! Prompts of different lengths share a batch by left padding: row `r` is shifted right by
//! `pad_r` columns, its positions count from 0 at its first real token, and an explicit
//! attention mask stops its real tokens from seeing the padding. Each row's result is the same
//! as generating its prompt alone.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::attention::{AttentionMask, KvCache};
use crate::init::uniform_f64;
use crate::{ModelError, TinyGpt};

/// What batched generation needs from a decoder: its sizes and one forward pass with explicit
/// positions, mask and key/value cache.
pub(crate) trait Decoder {
    /// Number of token ids.
    fn decoder_vocab_size(&self) -> usize;
    /// Longest sequence accepted.
    fn decoder_max_seq_len(&self) -> usize;
    /// Number of layers (one cache entry each).
    fn decoder_layers(&self) -> usize;
    /// The device of the parameters.
    fn decoder_device(&self) -> Device;
    /// The network on `tokens` at `positions` (`[batch, seq]` or `[1, seq]`), under `mask`,
    /// appending to `cache`; logits `[batch, seq, vocab]`, or `[batch, 1, vocab]` when
    /// `last_only`.
    fn decoder_forward(
        &self,
        tokens: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        mask: &AttentionMask,
        cache: Option<&mut KvCache>,
        last_only: bool,
    ) -> Tensor<3>;
}

impl Decoder for TinyGpt {
    fn decoder_vocab_size(&self) -> usize {
        self.config().vocab_size
    }
    fn decoder_max_seq_len(&self) -> usize {
        self.config().max_seq_len
    }
    fn decoder_layers(&self) -> usize {
        self.config().n_layers
    }
    fn decoder_device(&self) -> Device {
        self.device()
    }
    fn decoder_forward(
        &self,
        tokens: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        mask: &AttentionMask,
        cache: Option<&mut KvCache>,
        last_only: bool,
    ) -> Tensor<3> {
        self.forward_with(tokens, positions, mask, cache, last_only)
    }
}

/// How to choose each new token from the next-token distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sampling {
    /// The most likely token (the lowest id among ties).
    Greedy,
    /// A draw from `softmax(logits / temperature)`, made on the host with a ChaCha8 generator
    /// seeded by `seed`; row `r` of a batch uses stream `r`, so results are deterministic.
    Temperature {
        /// Softmax temperature, finite and above 0.
        temperature: f32,
        /// Seed of the host generator.
        seed: u64,
    },
    /// Nucleus (top-p) sampling: a draw from `softmax(logits / temperature)` restricted to the
    /// smallest set of most likely tokens whose probabilities sum to at least `top_p`
    /// (Holtzman et al. 2020), renormalised. `top_p = 1` is [`Sampling::Temperature`]. Made on
    /// the host like it, one stream per row.
    Nucleus {
        /// Softmax temperature, finite and above 0.
        temperature: f32,
        /// Probability mass kept, in `(0, 1]`.
        top_p: f32,
        /// Seed of the host generator.
        seed: u64,
    },
}

/// Options for [`TinyGpt::generate`] and [`TinyGpt::generate_uncached`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateOptions {
    /// Most tokens to add per prompt. A row also stops when prompt plus new tokens reach the
    /// model's `max_seq_len`.
    pub max_new_tokens: usize,
    /// How each token is chosen.
    pub sampling: Sampling,
    /// A token that ends a row when chosen; it is not included in the output.
    pub stop_token: Option<u32>,
}

impl Default for GenerateOptions {
    /// Greedy, 64 new tokens, no stop token.
    fn default() -> Self {
        Self::greedy(64)
    }
}

impl GenerateOptions {
    /// Greedy decoding of up to `max_new_tokens` tokens, no stop token.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            sampling: Sampling::Greedy,
            stop_token: None,
        }
    }

    /// These options with `stop_token` set.
    pub fn with_stop_token(mut self, stop_token: u32) -> Self {
        self.stop_token = Some(stop_token);
        self
    }

    /// These options with `sampling` replaced.
    pub fn with_sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = sampling;
        self
    }

    /// Checks the sampling parameters.
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidOptions`] for a temperature that is not finite and above 0.
    pub fn validate(&self) -> Result<(), ModelError> {
        let (temperature, top_p) = match self.sampling {
            Sampling::Greedy => return Ok(()),
            Sampling::Temperature { temperature, .. } => (temperature, 1.0),
            Sampling::Nucleus {
                temperature, top_p, ..
            } => (temperature, top_p),
        };
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(ModelError::InvalidOptions(format!(
                "temperature must be finite and above 0, got {temperature}"
            )));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ModelError::InvalidOptions(format!(
                "top_p must be in (0, 1], got {top_p}"
            )));
        }
        Ok(())
    }
}

impl TinyGpt {
    /// Continues each prompt and returns only the new tokens of each, in prompt order.
    ///
    /// Batched with a key/value cache: one forward pass over the left-padded prompts, then one
    /// single-token step per new token. A row stops at `opts.stop_token` (not included), after
    /// `opts.max_new_tokens` tokens, or when prompt plus new tokens reach `max_seq_len`
    /// (a prompt of exactly `max_seq_len` tokens gets none).
    ///
    /// For speed, call it on a model on a plain (non-autodiff) device, e.g. `model.valid()`:
    /// on an autodiff device every step would also record a backward graph.
    ///
    /// # Errors
    ///
    /// - [`ModelError::InvalidSequence`] for an empty prompt;
    /// - [`ModelError::PromptTooLong`] for a prompt longer than `max_seq_len`;
    /// - [`ModelError::TokenOutOfRange`] for a token id not below `vocab_size`;
    /// - [`ModelError::InvalidOptions`] for a bad temperature;
    /// - [`ModelError::Backend`] when logits cannot be read back.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        run_generation(self, prompts, opts, true)
    }

    /// [`generate`](Self::generate) without a cache: every step reruns the whole left-padded
    /// sequence through the model. Same results (token for token when greedy); much slower.
    /// For tests and benchmarks.
    ///
    /// # Errors
    ///
    /// As [`generate`](Self::generate).
    pub fn generate_uncached(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        run_generation(self, prompts, opts, false)
    }
}

/// Batched generation for any [`Decoder`]; see [`TinyGpt::generate`] for the contract.
pub(crate) fn run_generation<M: Decoder + ?Sized>(
    model: &M,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    cached: bool,
) -> Result<Vec<Vec<u32>>, ModelError> {
    let mut state = Decoding::new(
        model.decoder_vocab_size(),
        model.decoder_max_seq_len(),
        prompts,
        opts,
    )?;
    if !state.any_active() {
        return Ok(state.outputs);
    }
    let vocab_size = model.decoder_vocab_size();
    let max_seq_len = model.decoder_max_seq_len();
    let device = model.decoder_device();
    let rows = prompts.len();
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let pads: Vec<usize> = prompts.iter().map(|p| width - p.len()).collect();
    let max_position = max_seq_len - 1;

    // Left-padded token grid; it grows by one column per step (filler 0 in finished rows).
    let mut grid: Vec<Vec<u32>> = prompts
        .iter()
        .zip(&pads)
        .map(|(prompt, &pad)| {
            let mut row = vec![0; pad];
            row.extend_from_slice(prompt);
            row
        })
        .collect();

    let mut cache = KvCache::new(model.decoder_layers());
    let mut logits = model.decoder_forward(
        int_tensor(&grid, &device),
        grid_positions(&pads, width, max_position, &device),
        &AttentionMask::Explicit(Box::new(padded_causal_mask(&pads, width, &device))),
        cached.then_some(&mut cache),
        true,
    );
    loop {
        let host = logits
            .reshape([rows, vocab_size])
            .try_into_vec_as::<f32>()
            .map_err(|err| ModelError::Backend(format!("reading logits: {err:?}")))?;
        let next = state.choose(&host, vocab_size);
        if !state.any_active() {
            break;
        }
        for (row, &token) in grid.iter_mut().zip(&next) {
            row.push(token);
        }
        let width = grid[0].len();
        logits = if cached {
            let positions: Vec<i64> = (0..rows)
                .map(|r| {
                    if state.active[r] {
                        (width - 1 - pads[r]) as i64
                    } else {
                        0
                    }
                })
                .collect();
            let new_tokens: Vec<Vec<u32>> = next.iter().map(|&t| vec![t]).collect();
            model.decoder_forward(
                int_tensor(&new_tokens, &device),
                Tensor::from_data(TensorData::new(positions, [rows, 1]), &device),
                &AttentionMask::Explicit(Box::new(decode_mask(&pads, width, &device))),
                Some(&mut cache),
                true,
            )
        } else {
            model.decoder_forward(
                int_tensor(&grid, &device),
                grid_positions(&pads, width, max_position, &device),
                &AttentionMask::Explicit(Box::new(padded_causal_mask(&pads, width, &device))),
                None,
                true,
            )
        };
    }
    Ok(state.outputs)
}

/// Per-row bookkeeping of a generation run: outputs, budgets, which rows still run, samplers.
struct Decoding {
    outputs: Vec<Vec<u32>>,
    budgets: Vec<usize>,
    active: Vec<bool>,
    stop_token: Option<u32>,
    samplers: Vec<RowSampler>,
}

impl Decoding {
    /// Validates the prompts and options against `model` and sets up every row.
    fn new(
        vocab_size: usize,
        max_seq_len: usize,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Self, ModelError> {
        opts.validate()?;
        for (index, prompt) in prompts.iter().enumerate() {
            if prompt.is_empty() {
                return Err(ModelError::InvalidSequence {
                    index,
                    reason: "is an empty prompt; generation needs at least one token".into(),
                });
            }
            if prompt.len() > max_seq_len {
                return Err(ModelError::PromptTooLong {
                    index,
                    len: prompt.len(),
                    max: max_seq_len,
                });
            }
            if let Some(&token) = prompt.iter().find(|&&t| t as usize >= vocab_size) {
                return Err(ModelError::TokenOutOfRange {
                    index,
                    token,
                    vocab_size,
                });
            }
        }
        let budgets: Vec<usize> = prompts
            .iter()
            .map(|p| opts.max_new_tokens.min(max_seq_len - p.len()))
            .collect();
        Ok(Self {
            outputs: vec![Vec::new(); prompts.len()],
            active: budgets.iter().map(|&b| b > 0).collect(),
            budgets,
            stop_token: opts.stop_token,
            samplers: (0..prompts.len())
                .map(|row| RowSampler::new(opts.sampling, row))
                .collect(),
        })
    }

    fn any_active(&self) -> bool {
        self.active.iter().any(|&a| a)
    }

    /// Chooses the next token of every active row from `logits` (`[rows, vocab]`, row-major)
    /// and returns the tokens to feed back (0 for rows that have finished).
    fn choose(&mut self, logits: &[f32], vocab: usize) -> Vec<u32> {
        let mut next = vec![0; self.outputs.len()];
        for (row, row_logits) in logits.chunks_exact(vocab).enumerate() {
            if !self.active[row] {
                continue;
            }
            let token = self.samplers[row].sample(row_logits);
            if self.stop_token == Some(token) {
                self.active[row] = false;
                continue;
            }
            self.outputs[row].push(token);
            next[row] = token;
            if self.outputs[row].len() >= self.budgets[row] {
                self.active[row] = false;
            }
        }
        next
    }
}

/// Chooses tokens for one row.
enum RowSampler {
    Greedy,
    Temperature {
        temperature: f64,
        /// 1 for plain temperature sampling.
        top_p: f64,
        rng: Box<ChaCha8Rng>,
    },
}

impl RowSampler {
    fn new(sampling: Sampling, row: usize) -> Self {
        match sampling {
            Sampling::Greedy => Self::Greedy,
            Sampling::Temperature { temperature, seed } => {
                Self::seeded(temperature, 1.0, seed, row)
            }
            Sampling::Nucleus {
                temperature,
                top_p,
                seed,
            } => Self::seeded(temperature, top_p, seed, row),
        }
    }

    fn seeded(temperature: f32, top_p: f32, seed: u64, row: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(row as u64);
        Self::Temperature {
            temperature: f64::from(temperature),
            top_p: f64::from(top_p),
            rng: Box::new(rng),
        }
    }

    fn sample(&mut self, logits: &[f32]) -> u32 {
        match self {
            Self::Greedy => argmax(logits),
            Self::Temperature {
                temperature,
                top_p,
                rng,
            } => {
                let scaled: Vec<f64> = logits
                    .iter()
                    .map(|&l| f64::from(l) / *temperature)
                    .collect();
                let max = scaled
                    .iter()
                    .copied()
                    .filter(|s| s.is_finite())
                    .fold(f64::NEG_INFINITY, f64::max);
                let mut weights: Vec<f64> = scaled
                    .iter()
                    .map(|&s| if s.is_nan() { 0.0 } else { (s - max).exp() })
                    .collect();
                let mut total: f64 = weights.iter().sum();
                if !(total.is_finite() && total > 0.0) {
                    return argmax(logits);
                }
                if *top_p < 1.0 {
                    total = keep_nucleus(&mut weights, total, *top_p);
                }
                let target = uniform_f64(rng.as_mut()) * total;
                let mut cumulative = 0.0;
                let mut last_possible = 0;
                for (id, &w) in weights.iter().enumerate() {
                    if w > 0.0 {
                        cumulative += w;
                        last_possible = id;
                        if cumulative > target {
                            return id as u32;
                        }
                    }
                }
                last_possible as u32
            }
        }
    }
}

/// Zeroes every weight outside the nucleus: the most likely tokens (by weight, the lower id
/// first among ties) whose weights first reach `top_p * total`. Returns the kept total.
fn keep_nucleus(weights: &mut [f64], total: f64, top_p: f64) -> f64 {
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    let target = top_p * total;
    let mut kept = 0.0;
    let mut cut = order.len();
    for (rank, &id) in order.iter().enumerate() {
        kept += weights[id];
        if kept >= target {
            cut = rank + 1;
            break;
        }
    }
    for &id in &order[cut..] {
        weights[id] = 0.0;
    }
    kept
}

/// Index of the largest logit, the lowest among ties; NaNs are never chosen over numbers.
fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (id, &value) in logits.iter().enumerate() {
        if value > best_value {
            best = id;
            best_value = value;
        }
    }
    best as u32
}

/// `[rows, width]` int tensor from equal-length rows.
fn int_tensor(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
    let width = rows.first().map_or(0, Vec::len);
    let flat: Vec<i64> = rows.iter().flatten().map(|&t| i64::from(t)).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), width]), device)
}

/// Positions of a left-padded grid: 0 at each row's first real token, 0 in the padding,
/// clamped to the last position embedding (only finished rows ever reach the clamp).
fn grid_positions(pads: &[usize], width: usize, max: usize, device: &Device) -> Tensor<2, Int> {
    let flat: Vec<i64> = pads
        .iter()
        .flat_map(|&pad| (0..width).map(move |col| col.saturating_sub(pad).min(max) as i64))
        .collect();
    Tensor::from_data(TensorData::new(flat, [pads.len(), width]), device)
}

/// `[rows, 1, width, width]` mask for a left-padded grid, `true` = blocked: causal, and a real
/// query never sees a padding key. Padding queries see earlier padding, so that no row of the
/// softmax is empty; their outputs are never used.
fn padded_causal_mask(pads: &[usize], width: usize, device: &Device) -> Tensor<4, Bool> {
    let mut flat = Vec::with_capacity(pads.len() * width * width);
    for &pad in pads {
        for query in 0..width {
            for key in 0..width {
                flat.push(key > query || (key < pad && query >= pad));
            }
        }
    }
    Tensor::from_data(TensorData::new(flat, [pads.len(), 1, width, width]), device)
}

/// `[rows, 1, 1, keys]` mask for one new query per row attending to every cached key but the
/// row's padding.
fn decode_mask(pads: &[usize], keys: usize, device: &Device) -> Tensor<4, Bool> {
    let flat: Vec<bool> = pads
        .iter()
        .flat_map(|&pad| (0..keys).map(move |key| key < pad))
        .collect();
    Tensor::from_data(TensorData::new(flat, [pads.len(), 1, 1, keys]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_of_ties_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.1]), 1);
    }

    #[test]
    fn temperature_sampling_is_seeded_and_follows_the_distribution() {
        let logits = [0.0f32, (3.0f32).ln(), f32::NEG_INFINITY];
        let draw = |seed| {
            let mut sampler = RowSampler::new(
                Sampling::Temperature {
                    temperature: 1.0,
                    seed,
                },
                0,
            );
            (0..4000)
                .map(|_| sampler.sample(&logits))
                .collect::<Vec<_>>()
        };
        let a = draw(5);
        assert_eq!(a, draw(5));
        assert_ne!(a, draw(6));
        assert!(a.iter().all(|&t| t < 2), "a -inf logit was sampled");
        let ones = a.iter().filter(|&&t| t == 1).count() as f64 / a.len() as f64;
        assert!((ones - 0.75).abs() < 0.03, "frequency of token 1: {ones}");
    }

    #[test]
    fn nucleus_sampling_draws_only_from_the_top_p_mass() {
        // Probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.75 keeps the first two (0.8 >= 0.75).
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.15f32.ln(), 0.05f32.ln()];
        let draw = |top_p, seed| {
            let mut sampler = RowSampler::new(
                Sampling::Nucleus {
                    temperature: 1.0,
                    top_p,
                    seed,
                },
                0,
            );
            (0..4000)
                .map(|_| sampler.sample(&logits))
                .collect::<Vec<_>>()
        };
        let a = draw(0.75, 3);
        assert_eq!(a, draw(0.75, 3));
        assert!(
            a.iter().all(|&t| t < 2),
            "a token outside the nucleus was drawn"
        );
        let zeros = a.iter().filter(|&&t| t == 0).count() as f64 / a.len() as f64;
        assert!(
            (zeros - 0.625).abs() < 0.03,
            "frequency of token 0: {zeros}"
        );
        // top_p 1 is plain temperature sampling, draw for draw.
        let plain = {
            let mut sampler = RowSampler::new(
                Sampling::Temperature {
                    temperature: 1.0,
                    seed: 3,
                },
                0,
            );
            (0..4000)
                .map(|_| sampler.sample(&logits))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1.0, 3), plain);
        let bad = GenerateOptions::greedy(4).with_sampling(Sampling::Nucleus {
            temperature: 1.0,
            top_p: 0.0,
            seed: 0,
        });
        assert!(bad.validate().unwrap_err().to_string().contains("top_p"));
    }
}
