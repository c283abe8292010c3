//! Helpers shared by the kernels' test binaries (each `mod support;`s it and uses a subset).
#![allow(dead_code)]

/// `n` deterministic pseudo-random values in `[-range, range)` (xorshift from `seed`; no RNG
/// crate needed).
pub fn values(n: usize, seed: u64, range: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * range
        })
        .collect()
}

/// The largest absolute difference between two equal-length slices.
pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The numbers under `key` in one case of a JSON fixture, as f32.
pub fn floats(case: &serde_json::Value, key: &str) -> Vec<f32> {
    case[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture key {key}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}
