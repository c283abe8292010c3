//! Intervals on rates: Wilson score intervals for proportions, and an interval on the
//! difference of two rates measured on the same prompts (paired).

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

/// The difference `before - after` of two rates measured on the same items (paired: item `i`
/// was judged both times), with a 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    /// `rate(before) - rate(after)`.
    pub value: f64,
    /// 95% interval of the difference (Agresti-Min: a Wald interval for paired proportions
    /// after adding 1/2 to each of the four cells of the 2x2 table).
    pub ci: [f64; 2],
    /// Items counted.
    pub n: usize,
}

impl PairedDifference {
    /// From the paired outcomes `(before, after)` of each item; `None` when there are none.
    pub fn of(pairs: impl IntoIterator<Item = (bool, bool)>) -> Option<Self> {
        let (mut n, mut only_before, mut only_after) = (0usize, 0usize, 0usize);
        for (before, after) in pairs {
            n += 1;
            match (before, after) {
                (true, false) => only_before += 1,
                (false, true) => only_after += 1,
                _ => {}
            }
        }
        if n == 0 {
            return None;
        }
        let value = (only_before as f64 - only_after as f64) / n as f64;
        // Agresti & Min (2005): add 1/2 to each cell, i.e. 1/2 to each discordant count and
        // 2 to the total.
        let (b, c, m) = (
            only_before as f64 + 0.5,
            only_after as f64 + 0.5,
            n as f64 + 2.0,
        );
        let centre = (b - c) / m;
        let variance = ((b + c) - (b - c) * (b - c) / m) / (m * m);
        let half = Z95 * variance.max(0.0).sqrt();
        Some(Self {
            value,
            ci: [(centre - half).max(-1.0), (centre + half).min(1.0)],
            n,
        })
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
    fn paired_difference_counts_discordant_pairs() {
        // 200 items: 30 right only before, 10 right only after, 100 right both times.
        let pairs = (0..200).map(|i| match i {
            0..30 => (true, false),
            30..40 => (false, true),
            40..140 => (true, true),
            _ => (false, false),
        });
        let d = PairedDifference::of(pairs).unwrap();
        assert!((d.value - 0.10).abs() < 1e-12, "{d:?}");
        // By hand: b = 30.5, c = 10.5, m = 202: centre 0.0990, sd sqrt((41 - 400/202)/202^2)
        // = 0.03093, half-width 0.0606.
        assert!((d.ci[0] - 0.0384).abs() < 1e-3, "{d:?}");
        assert!((d.ci[1] - 0.1596).abs() < 1e-3, "{d:?}");
        // No change at all: an interval around 0 that does not collapse.
        let same = PairedDifference::of((0..50).map(|i| (i % 2 == 0, i % 2 == 0))).unwrap();
        assert_eq!(same.value, 0.0);
        assert!(same.ci[0] < 0.0 && same.ci[1] > 0.0, "{same:?}");
        assert!(PairedDifference::of(std::iter::empty()).is_none());
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
