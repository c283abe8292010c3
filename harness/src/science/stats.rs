//! Intervals on rates: Wilson score intervals for proportions.

use serde::{Deserialize, Serialize};

/// A proportion `successes / trials` with its 95% Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// The point estimate.
    pub rate: f64,
    /// Lower end of the 95% interval.
    pub lo: f64,
    /// Upper end of the 95% interval.
    pub hi: f64,
    /// Successes counted.
    pub k: usize,
    /// Trials counted.
    pub n: usize,
}

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

impl Rate {
    /// `k` successes out of `n` trials with the Wilson 95% interval (`n = 0` gives NaN rate and
    /// the uninformative interval [0, 1]).
    pub fn wilson(k: usize, n: usize) -> Self {
        if n == 0 {
            return Rate {
                rate: f64::NAN,
                lo: 0.0,
                hi: 1.0,
                k,
                n,
            };
        }
        let (kf, nf) = (k as f64, n as f64);
        let p = kf / nf;
        let z2 = Z95 * Z95;
        let denom = 1.0 + z2 / nf;
        let center = (p + z2 / (2.0 * nf)) / denom;
        let half = Z95 * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
        // At k = 0 (k = n) the interval's lower (upper) end is exactly 0 (1); the closed form
        // only reaches it up to rounding.
        Rate {
            rate: p,
            lo: if k == 0 {
                0.0
            } else {
                (center - half).max(0.0)
            },
            hi: if k == n {
                1.0
            } else {
                (center + half).min(1.0)
            },
            k,
            n,
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} [{:.2}, {:.2}]", self.rate, self.lo, self.hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_reference_values() {
        // Reference: statsmodels proportion_confint(k, n, method="wilson").
        let r = Rate::wilson(45, 50);
        assert!((r.lo - 0.7864).abs() < 1e-4, "{r:?}");
        assert!((r.hi - 0.9565).abs() < 1e-4, "{r:?}");
        let r = Rate::wilson(0, 200);
        assert_eq!(r.lo, 0.0);
        assert!((r.hi - 0.01884).abs() < 1e-4, "{r:?}");
        let r = Rate::wilson(200, 200);
        assert_eq!(r.hi, 1.0);
        assert!((r.lo - 0.98116).abs() < 1e-4, "{r:?}");
    }

    #[test]
    fn interval_contains_estimate() {
        for n in 1..40 {
            for k in 0..=n {
                let r = Rate::wilson(k, n);
                assert!(r.lo <= r.rate && r.rate <= r.hi, "{k}/{n}: {r:?}");
            }
        }
    }
}
