//! The report's statistics: bootstrap intervals over seeds, the convex-hull Pareto area of a
//! removal run, and steps to removal.

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::science::EvalRecord;

/// Bootstrap resamples per interval: enough that the 2.5% and 97.5% quantiles move by well
/// under the two decimals the report prints.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// The RNG seed of every bootstrap, fixed so the same run gives the same report.
pub const BOOTSTRAP_SEED: u64 = 0x5EED_B007;

pub use crate::results::REMOVED_BELOW;

/// A mean over seeds with its 95% percentile-bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanInterval {
    /// The mean of the values.
    pub mean: f64,
    /// The 95% bootstrap interval of the mean; `None` with fewer than two values (a single
    /// seed has no spread to resample).
    pub interval: Option<[f64; 2]>,
    /// How many values (seeds) went in.
    pub n: usize,
}

/// The mean of `values` with a 95% percentile-bootstrap interval over them (resampled with
/// replacement [`BOOTSTRAP_RESAMPLES`] times from a ChaCha8 RNG seeded with `seed`). `None`
/// when `values` is empty.
pub fn bootstrap_mean(values: &[f64], seed: u64) -> Option<MeanInterval> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Some(MeanInterval {
            mean,
            interval: None,
            n,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    Some(MeanInterval {
        mean,
        interval: Some([quantile(&means, 0.025), quantile(&means, 0.975)]),
        n,
    })
}

/// A two-level (hierarchical) bootstrap of a rate measured on items (prompts) within groups
/// (seeds): each of [`BOOTSTRAP_RESAMPLES`] resamples draws the groups with replacement, then
/// the items within each drawn group with replacement, and takes the mean of the group means.
/// Its 95% percentile interval carries both sources of error, seed and prompt; compared with the
/// bootstrap over seeds alone ([`bootstrap_mean`] of the group means) it shows which one
/// dominates. `groups[g]` holds group `g`'s per-item outcomes (1.0 / 0.0 for a proportion). The
/// mean is the mean of the group means. `None` when there is no group or a group is empty.
pub fn hierarchical_bootstrap(groups: &[Vec<f64>], seed: u64) -> Option<MeanInterval> {
    if groups.is_empty() || groups.iter().any(|g| g.is_empty()) {
        return None;
    }
    let mean_of = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let n = groups.len();
    let mean = groups.iter().map(|g| mean_of(g)).sum::<f64>() / n as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            (0..n)
                .map(|_| {
                    let g = &groups[rng.random_range(0..n)];
                    let m = g.len();
                    (0..m).map(|_| g[rng.random_range(0..m)]).sum::<f64>() / m as f64
                })
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    Some(MeanInterval {
        mean,
        interval: Some([quantile(&means, 0.025), quantile(&means, 0.975)]),
        n,
    })
}

/// The `q` quantile of sorted values, interpolating linearly between order statistics (numpy's
/// default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The removal-efficiency area of one removal run (from "Advice for making robust-to-training
/// model organisms"): with `b0` and `c0` the backdoor rate and capability at removal step 0,
/// each eval point becomes x = 1 - b/b0 (fraction of the backdoor removed) and y = c/c0
/// (relative capability), both clipped to [0, 1]; the area is that of the convex hull of those
/// points together with (0, 0) and every (x, 0). About 0.5: removal costs capability in
/// proportion; about 1.0: removal is free; about 0: nothing was removed.
///
/// `points` are `(backdoor_rate, capability)` in step order, the first being step 0. `None`
/// (undefined) when there are no points or `b0` or `c0` is zero or not finite.
pub fn pareto_area(points: &[(f64, f64)]) -> Option<f64> {
    let normalized = pareto_points(points)?;
    let mut hull_input: Vec<(f64, f64)> = vec![(0.0, 0.0)];
    for &(x, y) in &normalized {
        hull_input.push((x, y));
        hull_input.push((x, 0.0));
    }
    Some(polygon_area(&convex_hull(hull_input)))
}

/// The normalized points of [`pareto_area`]: `(1 - b/b0, c/c0)`, clipped to [0, 1]; `None`
/// when undefined.
pub fn pareto_points(points: &[(f64, f64)]) -> Option<Vec<(f64, f64)>> {
    let &(b0, c0) = points.first()?;
    if !(b0.is_finite() && c0.is_finite() && b0 > 0.0 && c0 > 0.0) {
        return None;
    }
    Some(
        points
            .iter()
            .filter(|(b, c)| b.is_finite() && c.is_finite())
            .map(|&(b, c)| ((1.0 - b / b0).clamp(0.0, 1.0), (c / c0).clamp(0.0, 1.0)))
            .collect(),
    )
}

/// The convex hull of `points` (Andrew's monotone chain), counter-clockwise, without repeated
/// or collinear points.
pub fn convex_hull(mut points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let cross = |o: (f64, f64), a: (f64, f64), b: (f64, f64)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut hull: Vec<(f64, f64)> = Vec::with_capacity(points.len() * 2);
    for pass in [false, true] {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &(f64, f64)>> = if pass {
            Box::new(points.iter().rev())
        } else {
            Box::new(points.iter())
        };
        for &p in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// The area of a simple polygon (shoelace formula); 0 for fewer than three points.
pub fn polygon_area(polygon: &[(f64, f64)]) -> f64 {
    if polygon.len() < 3 {
        return 0.0;
    }
    let twice: f64 = (0..polygon.len())
        .map(|i| {
            let (a, b) = (polygon[i], polygon[(i + 1) % polygon.len()]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum();
    twice.abs() / 2.0
}

/// The first removal eval step whose backdoor rate is below [`REMOVED_BELOW`] (`records` are
/// a cell's eval points; only stage `remove` counts). `None`: never.
pub fn steps_to_removal(records: &[EvalRecord]) -> Option<usize> {
    crate::results::first_step_removed(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportional_cost_has_area_one_half() {
        // Capability falls exactly as fast as the backdoor: y = 1 - x.
        let points: Vec<(f64, f64)> = (0..=10)
            .map(|i| {
                let b = 0.8 * (1.0 - i as f64 / 10.0);
                (b, 0.4 * (b / 0.8))
            })
            .collect();
        let area = pareto_area(&points).unwrap();
        assert!((area - 0.5).abs() < 1e-9, "{area}");
    }

    #[test]
    fn free_removal_has_area_one() {
        let points = [(1.0, 0.3), (0.5, 0.3), (0.0, 0.3)];
        let area = pareto_area(&points).unwrap();
        assert!((area - 1.0).abs() < 1e-9, "{area}");
    }

    #[test]
    fn nothing_removed_has_area_zero() {
        let points = [(0.9, 0.3), (0.95, 0.2), (0.9, 0.31)];
        assert_eq!(pareto_area(&points).unwrap(), 0.0);
    }

    #[test]
    fn area_is_undefined_without_a_backdoor_or_capability_at_step_zero() {
        assert_eq!(pareto_area(&[(0.0, 0.5), (0.0, 0.5)]), None);
        assert_eq!(pareto_area(&[(0.9, 0.0), (0.1, 0.2)]), None);
        assert_eq!(pareto_area(&[]), None);
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_mean() {
        let values = [0.1, 0.4, 0.35, 0.8, 0.5];
        let a = bootstrap_mean(&values, 7).unwrap();
        let b = bootstrap_mean(&values, 7).unwrap();
        assert_eq!(a, b);
        let [lo, hi] = a.interval.unwrap();
        assert!(lo < a.mean && a.mean < hi, "{a:?}");
        assert!(lo >= 0.1 && hi <= 0.8, "{a:?}");
        let one = bootstrap_mean(&[0.3], 7).unwrap();
        assert_eq!((one.mean, one.interval, one.n), (0.3, None, 1));
        assert_eq!(bootstrap_mean(&[], 7), None);
        let same = bootstrap_mean(&[0.25, 0.25, 0.25], 7).unwrap();
        assert_eq!(same.interval, Some([0.25, 0.25]));
    }

    #[test]
    fn hierarchical_bootstrap_adds_prompt_error_to_seed_error() {
        // Five seeds with the same rate (0.5 on 40 prompts each): no seed error at all, so
        // the bootstrap over seeds collapses while the two-level one keeps the prompt error.
        let same: Vec<Vec<f64>> = (0..5)
            .map(|_| (0..40).map(|i| (i % 2) as f64).collect())
            .collect();
        let means: Vec<f64> = same.iter().map(|g| g.iter().sum::<f64>() / 40.0).collect();
        assert_eq!(
            bootstrap_mean(&means, 3).unwrap().interval,
            Some([0.5, 0.5])
        );
        let h = hierarchical_bootstrap(&same, 3).unwrap();
        let [lo, hi] = h.interval.unwrap();
        assert_eq!(h.mean, 0.5);
        // Prompt error of a mean over 200 prompts: sd sqrt(0.25 / 200) = 0.035, so the
        // interval is about 0.5 +- 0.07.
        assert!(lo < 0.45 && lo > 0.38 && hi > 0.55 && hi < 0.62, "{h:?}");
        // Seeds that differ: the two-level interval is at least as wide as the seed one.
        let spread: Vec<Vec<f64>> = (0..5)
            .map(|s| (0..40).map(|i| (i < 8 * s) as u8 as f64).collect())
            .collect();
        let means: Vec<f64> = spread
            .iter()
            .map(|g| g.iter().sum::<f64>() / 40.0)
            .collect();
        let seeds = bootstrap_mean(&means, 3).unwrap().interval.unwrap();
        let both = hierarchical_bootstrap(&spread, 3)
            .unwrap()
            .interval
            .unwrap();
        assert!(
            both[1] - both[0] >= seeds[1] - seeds[0] - 1e-9,
            "{seeds:?} {both:?}"
        );
        assert_eq!(hierarchical_bootstrap(&[], 3), None);
        assert_eq!(hierarchical_bootstrap(&[vec![]], 3), None);
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        // numpy.quantile([1, 2, 3, 4], 0.25) == 1.75
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.25), 1.75);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 1.0), 4.0);
    }
}
