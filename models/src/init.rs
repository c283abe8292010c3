//! Host-side parameter initialisation: every backend gets the same numbers from the same seed.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// How one parameter tensor starts out.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fill {
    /// Normal(0, std).
    Normal(f64),
    /// All zeros (biases).
    Zeros,
}

/// Produces the initial values of a parameter, given its path and element count.
pub(crate) trait ParamSource {
    /// The `len` values of the parameter at `path`, row-major.
    fn values(&mut self, path: &str, len: usize, fill: Fill) -> Vec<f32>;
}

/// Seeded normal draws: ChaCha8 seeded with the model seed, one stream per parameter path
/// (FNV-1a of the path), Box-Muller on 53-bit uniforms.
///
/// The algorithm is spelled out here rather than taken from a distribution crate so that a
/// dependency upgrade cannot silently change every model's initial weights.
pub(crate) struct SeededNormal {
    seed: u64,
}

impl SeededNormal {
    pub(crate) fn new(seed: u64) -> Self {
        Self { seed }
    }
}

impl ParamSource for SeededNormal {
    fn values(&mut self, path: &str, len: usize, fill: Fill) -> Vec<f32> {
        let std = match fill {
            Fill::Zeros => return vec![0.0; len],
            Fill::Normal(std) => std,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(fnv1a(path));
        let mut out = Vec::with_capacity(len + 1);
        while out.len() < len {
            let (a, b) = standard_normal_pair(&mut rng);
            out.push((a * std) as f32);
            out.push((b * std) as f32);
        }
        out.truncate(len);
        out
    }
}

/// Zeros everywhere: a cheap skeleton whose weights are about to be replaced (checkpoint load).
pub(crate) struct ZerosSource;

impl ParamSource for ZerosSource {
    fn values(&mut self, _path: &str, len: usize, _fill: Fill) -> Vec<f32> {
        vec![0.0; len]
    }
}

/// A uniform draw in [0, 1) with 53 random bits.
pub(crate) fn uniform_f64(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn standard_normal_pair(rng: &mut impl RngCore) -> (f64, f64) {
    // u1 in (0, 1] so that ln(u1) is finite.
    let u1 = 1.0 - uniform_f64(rng);
    let u2 = uniform_f64(rng);
    let radius = (-2.0 * u1.ln()).sqrt();
    let angle = std::f64::consts::TAU * u2;
    (radius * angle.cos(), radius * angle.sin())
}

/// 64-bit FNV-1a: a stable, dependency-free hash for stream selection.
pub(crate) fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_draws_have_the_asked_moments() {
        let values = SeededNormal::new(7).values("x", 20_001, Fill::Normal(0.02));
        assert_eq!(values.len(), 20_001);
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 1e-3, "mean {mean}");
        assert!((var.sqrt() - 0.02).abs() < 1e-3, "std {}", var.sqrt());
    }

    #[test]
    fn streams_depend_on_seed_and_path() {
        let a = SeededNormal::new(1).values("a", 8, Fill::Normal(1.0));
        assert_eq!(a, SeededNormal::new(1).values("a", 8, Fill::Normal(1.0)));
        assert_ne!(a, SeededNormal::new(2).values("a", 8, Fill::Normal(1.0)));
        assert_ne!(a, SeededNormal::new(1).values("b", 8, Fill::Normal(1.0)));
    }
}
