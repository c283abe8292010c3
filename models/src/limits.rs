//! Refusing absurd model sizes before anything is allocated: a config whose weights could not
//! fit in this machine's memory is an error naming the key that makes it so, with the
//! estimate, instead of an allocation failure that aborts the process.

/// The memory a model's f32 weights may take: this machine's total memory (Linux:
/// `MemTotal` of `/proc/meminfo`), else 1 TiB.
pub fn memory_limit_bytes() -> u128 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u128>().ok())
        })
        .map_or(1 << 40, |kb| kb * 1024)
}

/// `1.5 GiB`, `3.2e18 bytes`.
fn human(bytes: u128) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    let b = bytes as f64;
    if b < 1024.0 * GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{b:.2e} bytes")
    }
}

/// Check that a model of the given sizes fits: `params(values)` counts its parameters from
/// the values of `keys` (saturating arithmetic). `Err((index of the key, reason))` when its f32
/// weights would exceed [`memory_limit_bytes`]; the key named is the one whose value, set to 1,
/// shrinks the estimate most.
pub fn check_weight_memory(
    keys: &[(&str, usize)],
    params: impl Fn(&[u128]) -> u128,
) -> Result<(), (usize, String)> {
    let values: Vec<u128> = keys.iter().map(|(_, v)| *v as u128).collect();
    let total = params(&values);
    let bytes = total.saturating_mul(4);
    let limit = memory_limit_bytes();
    if bytes <= limit {
        return Ok(());
    }
    let culprit = (0..values.len())
        .min_by_key(|&i| {
            let mut shrunk = values.clone();
            shrunk[i] = 1;
            params(&shrunk)
        })
        .unwrap_or(0);
    let value = keys[culprit].1;
    let sizes: Vec<String> = keys.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    Err((
        culprit,
        format!(
            "is {value}: with {} the model has an estimated {total} parameters, {} of f32 \
             weights, more than this machine's {} of memory; refused before allocating",
            sizes.join(", "),
            human(bytes),
            human(limit)
        ),
    ))
}

/// `a * b`, saturating.
pub fn mul(a: u128, b: u128) -> u128 {
    a.saturating_mul(b)
}

/// The parameters of a Llama-family decoder from `[vocab, hidden, intermediate, layers, heads,
/// kv_heads, head_dim]` (biases and norms included approximately: they are small).
pub fn llama_params(v: &[u128], tied: bool) -> u128 {
    let [vocab, hidden, inter, layers, heads, kv, head_dim] =
        [v[0], v[1], v[2], v[3], v[4], v[5], v[6]];
    let embedding = mul(vocab, hidden);
    let head = if tied { 0 } else { embedding };
    let attention = mul(hidden, mul(heads, head_dim))
        .saturating_mul(2)
        .saturating_add(mul(hidden, mul(kv, head_dim)).saturating_mul(2));
    let mlp = mul(hidden, inter).saturating_mul(3);
    let layer = attention
        .saturating_add(mlp)
        .saturating_add(hidden.saturating_mul(2));
    embedding
        .saturating_add(head)
        .saturating_add(mul(layers, layer))
        .saturating_add(hidden)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_size_names_its_key_and_a_sane_one_passes() {
        let keys = |hidden: usize| {
            [
                ("vocab_size", 49152),
                ("hidden_size", hidden),
                ("intermediate_size", 1536),
                ("num_hidden_layers", 30),
                ("num_attention_heads", 9),
                ("num_key_value_heads", 3),
                ("head_dim", 64),
            ]
        };
        // SmolLM2-135M: 134.5M parameters (tied).
        let smol = llama_params(&keys(576).map(|(_, v)| v as u128), true);
        assert!((134_000_000..135_000_000).contains(&smol), "{smol}");
        assert!(check_weight_memory(&keys(576), |v| llama_params(v, true)).is_ok());
        let (i, reason) =
            check_weight_memory(&keys(1_000_000_000), |v| llama_params(v, true)).unwrap_err();
        assert_eq!(i, 1, "{reason}");
        assert!(reason.starts_with("is 1000000000"), "{reason}");
        assert!(reason.contains("estimated"), "{reason}");
    }
}
