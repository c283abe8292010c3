//! Llama-family models (`general.architecture` = `llama` or `qwen2`) from a GGUF file: the
//! [`LlamaConfig`] from the `<arch>.*` metadata keys, and every tensor dequantised to f32 into
//! a [`Llama`] with Hugging Face's parameter paths.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::json;

use super::GgufFile;
use crate::{HfArchitecture, Llama, LlamaConfig, ModelError};

/// The `general.architecture` values [`llama_config_from_gguf`] accepts.
pub const SUPPORTED_GGUF_ARCHITECTURES: &[&str] = &["llama", "qwen2"];

/// Reorders the rows of a query or key projection (`[rows, cols]`, row-major, PyTorch's
/// `[out, in]` layout) the way llama.cpp's converter stores them: within each of `n_head`
/// heads, the two rotary halves interleaved, so row `2 i + j` of a head holds row
/// `j * head_dim / 2 + i` of the original. [`unpermute_rows`] undoes it.
///
/// # Errors
///
/// A description when `data` is not `rows * cols` long or `rows` is not `n_head` heads of an
/// even width.
pub fn permute_rows(
    data: &[f32],
    rows: usize,
    cols: usize,
    n_head: usize,
) -> Result<Vec<f32>, String> {
    reorder_rows(data, rows, cols, n_head, true)
}

/// The inverse of [`permute_rows`] (what transformers' GGUF loader applies to Llama's
/// `attn_q` and `attn_k`): row `j * head_dim / 2 + i` of a head is taken from row `2 i + j`.
///
/// # Errors
///
/// As [`permute_rows`].
pub fn unpermute_rows(
    data: &[f32],
    rows: usize,
    cols: usize,
    n_head: usize,
) -> Result<Vec<f32>, String> {
    reorder_rows(data, rows, cols, n_head, false)
}

fn reorder_rows(
    data: &[f32],
    rows: usize,
    cols: usize,
    n_head: usize,
    forward: bool,
) -> Result<Vec<f32>, String> {
    if data.len() != rows * cols {
        return Err(format!(
            "{} values are not {rows} rows of {cols}",
            data.len()
        ));
    }
    if n_head == 0 || !rows.is_multiple_of(n_head) || !(rows / n_head).is_multiple_of(2) {
        return Err(format!(
            "{rows} rows are not {n_head} heads of an even number of rows"
        ));
    }
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut out = vec![0.0; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let interleaved = h * head_dim + 2 * i + j;
                let split = h * head_dim + j * half + i;
                let (to, from) = if forward {
                    (interleaved, split)
                } else {
                    (split, interleaved)
                };
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&data[from * cols..(from + 1) * cols]);
            }
        }
    }
    Ok(out)
}

/// The [`LlamaConfig`] of a GGUF file, and the `config.json` text that describes the same model
/// (kept with the model, so that a saved checkpoint reloads through [`Llama::load`]).
///
/// Keys read, with `<arch>` the value of `general.architecture` (`llama` or `qwen2`):
/// `<arch>.context_length`, `<arch>.embedding_length`, `<arch>.block_count`,
/// `<arch>.feed_forward_length`, `<arch>.attention.head_count`,
/// `<arch>.attention.head_count_kv` (default: the head count),
/// `<arch>.attention.key_length` (default: embedding length / head count),
/// `<arch>.rope.dimension_count` (must be the head width when given),
/// `<arch>.rope.freq_base` (default 10000), `<arch>.attention.layer_norm_rms_epsilon`, and
/// `<arch>.rope.scaling.type` (only `none`). The vocabulary size is the row count of
/// `token_embd.weight`; the embeddings are tied when there is no `output.weight`.
///
/// # Errors
///
/// [`ModelError::GgufMetadata`] naming a key that is missing or has a value this crate cannot
/// build (with the allowed values), [`ModelError::GgufTensor`] for a missing or malformed
/// `token_embd.weight`, or a `rope_freqs.weight` (rope frequency factors, unsupported).
pub fn llama_config_from_gguf(file: &GgufFile) -> Result<(LlamaConfig, String), ModelError> {
    let arch_key = "general.architecture";
    let arch = file.str(arch_key)?;
    let architecture = match arch {
        "llama" => HfArchitecture::Llama,
        "qwen2" => HfArchitecture::Qwen2,
        other => {
            return Err(file.bad_key(
                arch_key,
                format!(
                    "is `{other}`; supported: {}",
                    SUPPORTED_GGUF_ARCHITECTURES.join(", ")
                ),
            ));
        }
    };
    let key = |name: &str| format!("{arch}.{name}");
    let positive = |name: &str| -> Result<usize, ModelError> {
        let k = key(name);
        let value = file.usize(&k)?;
        if value == 0 {
            return Err(file.bad_key(&k, "is 0; it must be above 0"));
        }
        Ok(value)
    };
    let context = positive("context_length")?;
    let hidden = positive("embedding_length")?;
    let layers = positive("block_count")?;
    let ffn = positive("feed_forward_length")?;
    let heads = positive("attention.head_count")?;
    let kv_key = key("attention.head_count_kv");
    let kv_heads = file.opt_usize(&kv_key)?.unwrap_or(heads);
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(file.bad_key(
            &kv_key,
            format!("is {kv_heads}; it must be above 0 and divide the head count ({heads})"),
        ));
    }
    let head_dim_key = key("attention.key_length");
    let head_dim = match file.opt_usize(&head_dim_key)? {
        Some(d) => d,
        None if hidden.is_multiple_of(heads) => hidden / heads,
        None => {
            return Err(file.bad_key(
                &key("attention.head_count"),
                format!(
                    "({heads}) must divide the embedding length ({hidden}) when \
                     {head_dim_key} is not given"
                ),
            ));
        }
    };
    if head_dim == 0 || head_dim % 2 != 0 {
        return Err(file.bad_key(
            &head_dim_key,
            format!("gives heads of width {head_dim}; rotary embeddings need an even width"),
        ));
    }
    let value_key = key("attention.value_length");
    if let Some(v) = file.opt_usize(&value_key)?
        && v != head_dim
    {
        return Err(file.bad_key(
            &value_key,
            format!("is {v}; only values as wide as keys ({head_dim}) are supported"),
        ));
    }
    let rope_dims_key = key("rope.dimension_count");
    if let Some(d) = file.opt_usize(&rope_dims_key)?
        && d != head_dim
    {
        return Err(file.bad_key(
            &rope_dims_key,
            format!(
                "is {d}; only rotary embeddings over the whole head ({head_dim}) are supported"
            ),
        ));
    }
    let scaling_key = key("rope.scaling.type");
    if let Some(scaling) = file.opt_str(&scaling_key)?
        && scaling != "none"
    {
        return Err(file.bad_key(&scaling_key, format!("is `{scaling}`; supported: none")));
    }
    if file.tensor("rope_freqs.weight").is_some() {
        return Err(file.bad_tensor(
            "rope_freqs.weight",
            "holds rope frequency factors (Llama 3 style scaling), which the GGUF import does \
             not support; import the Hugging Face directory instead",
        ));
    }
    let theta_key = key("rope.freq_base");
    let theta = file.opt_f64(&theta_key)?.unwrap_or(10000.0);
    if !(theta.is_finite() && theta > 0.0) {
        return Err(file.bad_key(
            &theta_key,
            format!("is {theta}; it must be finite and above 0"),
        ));
    }
    let eps_key = key("attention.layer_norm_rms_epsilon");
    let eps = file
        .opt_f64(&eps_key)?
        .ok_or_else(|| file.bad_key(&eps_key, "is missing"))?;
    if !(eps.is_finite() && eps > 0.0) {
        return Err(file.bad_key(&eps_key, format!("is {eps}; it must be finite and above 0")));
    }
    let embd = file
        .tensor("token_embd.weight")
        .ok_or_else(|| file.bad_tensor("token_embd.weight", "is not in the file"))?;
    if embd.dims.len() != 2 || embd.dims[0] != hidden {
        return Err(file.bad_tensor(
            "token_embd.weight",
            format!(
                "has dims {:?} (GGUF order, innermost first); expected [{hidden}, vocab]",
                embd.dims
            ),
        ));
    }
    let vocab = embd.dims[1];
    let tied = file.tensor("output.weight").is_none();
    // Absurd sizes are refused before anything (the rotary table included) is allocated.
    let names = [
        "token_embd.weight (vocabulary)".to_string(),
        key("embedding_length"),
        key("feed_forward_length"),
        key("block_count"),
        key("attention.head_count"),
        key("attention.head_count_kv"),
        key("attention.key_length"),
    ];
    let sizes = [vocab, hidden, ffn, layers, heads, kv_heads, head_dim];
    let keys: Vec<(&str, usize)> = names.iter().map(String::as_str).zip(sizes).collect();
    crate::limits::check_weight_memory(&keys, |v| crate::limits::llama_params(v, tied))
        .map_err(|(i, reason)| file.bad_key(&names[i], reason))?;
    // As transformers and llama.rs compute them: in f32.
    let inv_freq: Vec<f32> = (0..head_dim / 2)
        .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
        .collect();
    let config = LlamaConfig {
        architecture,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: ffn,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        max_position_embeddings: context,
        rms_norm_eps: eps,
        inv_freq,
        tie_word_embeddings: tied,
        attention_bias: false,
        qkv_bias: architecture == HfArchitecture::Qwen2,
        mlp_bias: false,
    };
    let hf_config = json!({
        "architectures": [architecture.name()],
        "model_type": arch,
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "max_position_embeddings": context,
        "rms_norm_eps": eps,
        "rope_theta": theta,
        "tie_word_embeddings": tied,
        "attention_bias": false,
        "mlp_bias": false,
        "hidden_act": "silu",
        "use_sliding_window": false,
        "torch_dtype": "float32",
    });
    let text = serde_json::to_string_pretty(&hf_config)
        .map_err(|e| ModelError::Backend(format!("serialising the config: {e}")))?;
    Ok((config, text))
}

/// Loads the Llama-family model of a GGUF file onto `device`, every tensor dequantised to
/// f32, the query/key row permutation of llama.cpp's converter undone for `llama` files.
///
/// # Errors
///
/// As [`llama_config_from_gguf`]; [`ModelError::GgufTensor`] naming a tensor that is missing,
/// has dims that do not fit the config, has a type this crate does not dequantise, or is not
/// used by the model (such as biases a Llama does not have).
pub fn load_llama_gguf(file: &GgufFile, device: &Device) -> Result<Llama, ModelError> {
    let (config, hf_config) = llama_config_from_gguf(file)?;
    let permuted = config.architecture == HfArchitecture::Llama;
    let (h, hd, ffn) = (
        config.hidden_size,
        config.head_dim,
        config.intermediate_size,
    );
    let (heads, kv_heads) = (config.num_attention_heads, config.num_key_value_heads);
    let mut used: Vec<String> = Vec::new();
    let mut model = Llama::zeros(config.clone(), hf_config, device);

    // Reads `name` and checks its GGUF dims; returns the values in storage order.
    let mut read = |name: String, dims: &[usize]| -> Result<Vec<f32>, ModelError> {
        let (values, info) = file.read_f32(&name)?;
        if info.dims != dims {
            return Err(file.bad_tensor(
                &name,
                format!(
                    "has dims {:?} (GGUF order, innermost first), but the metadata implies {dims:?}",
                    info.dims
                ),
            ));
        }
        used.push(name);
        Ok(values)
    };
    let vector = |values: Vec<f32>| {
        let n = values.len();
        Param::from_tensor(Tensor::<1>::from_data(TensorData::new(values, [n]), device))
    };
    // A GGUF matrix `[in, out]` holds PyTorch's `[out, in]` rows; burn's Linear wants `[in, out]`.
    let linear = |values: Vec<f32>, d_in: usize, d_out: usize| {
        let mut transposed = vec![0.0; values.len()];
        for (o, row) in values.chunks_exact(d_in).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                transposed[i * d_out + o] = v;
            }
        }
        Param::from_tensor(Tensor::<2>::from_data(
            TensorData::new(transposed, [d_in, d_out]),
            device,
        ))
    };
    let unpermute = |name: &str, values: Vec<f32>, rows: usize, n_head: usize| {
        if permuted {
            unpermute_rows(&values, rows, h, n_head).map_err(|e| file.bad_tensor(name, e))
        } else {
            Ok(values)
        }
    };

    let vocab = config.vocab_size;
    let embd = read("token_embd.weight".into(), &[h, vocab])?;
    model.model.embed_tokens.weight = Param::from_tensor(Tensor::<2>::from_data(
        TensorData::new(embd, [vocab, h]),
        device,
    ));
    for (i, layer) in model.model.layers.iter_mut().enumerate() {
        let name = |part: &str| format!("blk.{i}.{part}");
        layer.input_layernorm.gamma = vector(read(name("attn_norm.weight"), &[h])?);
        let attn = &mut layer.self_attn;
        let q = read(name("attn_q.weight"), &[h, heads * hd])?;
        let q = unpermute(&name("attn_q.weight"), q, heads * hd, heads)?;
        attn.q_proj.weight = linear(q, h, heads * hd);
        let k = read(name("attn_k.weight"), &[h, kv_heads * hd])?;
        let k = unpermute(&name("attn_k.weight"), k, kv_heads * hd, kv_heads)?;
        attn.k_proj.weight = linear(k, h, kv_heads * hd);
        attn.v_proj.weight = linear(
            read(name("attn_v.weight"), &[h, kv_heads * hd])?,
            h,
            kv_heads * hd,
        );
        attn.o_proj.weight = linear(
            read(name("attn_output.weight"), &[heads * hd, h])?,
            heads * hd,
            h,
        );
        if config.qkv_bias {
            attn.q_proj.bias = Some(vector(read(name("attn_q.bias"), &[heads * hd])?));
            attn.k_proj.bias = Some(vector(read(name("attn_k.bias"), &[kv_heads * hd])?));
            attn.v_proj.bias = Some(vector(read(name("attn_v.bias"), &[kv_heads * hd])?));
        }
        layer.post_attention_layernorm.gamma = vector(read(name("ffn_norm.weight"), &[h])?);
        let mlp = &mut layer.mlp;
        mlp.gate_proj.weight = linear(read(name("ffn_gate.weight"), &[h, ffn])?, h, ffn);
        mlp.up_proj.weight = linear(read(name("ffn_up.weight"), &[h, ffn])?, h, ffn);
        mlp.down_proj.weight = linear(read(name("ffn_down.weight"), &[ffn, h])?, ffn, h);
    }
    model.model.norm.gamma = vector(read("output_norm.weight".into(), &[h])?);
    if let Some(head) = model.lm_head.as_mut() {
        head.weight = linear(read("output.weight".into(), &[h, vocab])?, h, vocab);
    }
    if let Some(unused) = file.tensors().iter().find(|t| !used.contains(&t.name)) {
        return Err(file.bad_tensor(
            &unused.name,
            format!(
                "is not part of a {} model as this crate builds it (no biases but Qwen2's on \
                 query/key/value)",
                config.architecture.name()
            ),
        ));
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_interleaves_the_rotary_halves_of_each_head() {
        // One column, two heads of 4 rows: halves [0, 1 | 2, 3] become 0, 2, 1, 3.
        let rows: Vec<f32> = (0..8).map(|r| r as f32).collect();
        let permuted = permute_rows(&rows, 8, 1, 2).unwrap();
        assert_eq!(permuted, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert_eq!(unpermute_rows(&permuted, 8, 1, 2).unwrap(), rows);
        assert!(permute_rows(&rows, 8, 1, 3).is_err());
        assert!(permute_rows(&rows, 4, 1, 2).is_err());
    }
}
