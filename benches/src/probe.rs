//! The machine's limits, measured: memory bandwidth (a STREAM-style triad) and f32 matmul
//! throughput on flex. Optimizer steps are reported as a fraction of the first, training steps
//! as a fraction of the second.

use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

/// Bytes the triad moves per element: read `b[i]` and `c[i]`, write `a[i]` (f32), counted as
/// STREAM counts them (no write-allocate traffic).
pub const TRIAD_BYTES_PER_ELEMENT: usize = 3 * std::mem::size_of::<f32>();

/// Elements per triad array by default: 32M f32 (128 MiB each, 384 MiB in all), far beyond
/// any cache, as STREAM asks (each array at least 4x the last-level cache).
pub const TRIAD_DEFAULT_LEN: usize = 32 << 20;

/// Three arrays for the triad `a[i] = b[i] + s * c[i]`, split into chunks run on rayon's pool
/// (the pool flex uses; `RAYON_NUM_THREADS` sets its size).
pub struct Triad {
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl Triad {
    /// Arrays of `len` elements, written once (so their pages exist before timing).
    pub fn new(len: usize) -> Self {
        let mut b = vec![0.0f32; len];
        let mut c = vec![0.0f32; len];
        b.par_iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = (i % 1024) as f32);
        c.par_iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = (i % 7) as f32);
        let mut triad = Self {
            a: vec![0.0f32; len],
            b,
            c,
        };
        triad.run(1.0);
        triad
    }

    /// Elements per array.
    pub fn len(&self) -> usize {
        self.a.len()
    }

    /// Whether the arrays are empty.
    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }

    /// One pass of `a = b + scalar * c`; returns `a[len/2]` so the work cannot be elided.
    pub fn run(&mut self, scalar: f32) -> f32 {
        const CHUNK: usize = 1 << 16;
        self.a
            .par_chunks_mut(CHUNK)
            .zip(self.b.par_chunks(CHUNK))
            .zip(self.c.par_chunks(CHUNK))
            .for_each(|((a, b), c)| {
                for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                    *a = b + scalar * c;
                }
            });
        self.a[self.a.len() / 2]
    }

    /// Bytes one [`run`](Self::run) moves.
    pub fn bytes(&self) -> usize {
        self.len() * TRIAD_BYTES_PER_ELEMENT
    }

    /// Seconds of each of `passes` timed passes.
    pub fn time(&mut self, passes: usize) -> Vec<f64> {
        (0..passes)
            .map(|i| {
                let start = Instant::now();
                std::hint::black_box(self.run(1.0 + i as f32 * 1e-3));
                start.elapsed().as_secs_f64()
            })
            .collect()
    }
}

/// The operands of the matmul probe on `device`: `batch` products of `[m, k] x [k, n]` f32
/// matrices (one `[n, n] x [n, n]` product by default), in the shapes a model's layers use.
pub struct Matmul {
    lhs: Tensor<3>,
    rhs: Tensor<3>,
    shape: MatmulShape,
}

/// The shape of the matmul probe: `batch` products of `[m, k] x [k, n]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulShape {
    /// Independent products (a batched matmul, as attention's per-head products).
    pub batch: usize,
    /// Rows of the left operand and of the product.
    pub m: usize,
    /// The inner dimension.
    pub k: usize,
    /// Columns of the right operand and of the product.
    pub n: usize,
}

impl MatmulShape {
    /// One `[n, n] x [n, n]` product.
    pub fn square(n: usize) -> Self {
        Self {
            batch: 1,
            m: n,
            k: n,
            n,
        }
    }

    /// Floating-point operations: `2 batch m k n` (a multiply and an add per term).
    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.k as f64 * self.n as f64
    }
}

impl Matmul {
    /// Deterministic operands of `shape` on `device`.
    pub fn new(shape: MatmulShape, device: &Device) -> Self {
        let values = |len: usize, phase: f32| -> Vec<f32> {
            (0..len)
                .map(|i| ((i as f32) * 0.013 + phase).sin())
                .collect()
        };
        let MatmulShape { batch, m, k, n } = shape;
        Self {
            lhs: Tensor::from_data(
                TensorData::new(values(batch * m * k, 0.0), [batch, m, k]),
                device,
            ),
            rhs: Tensor::from_data(
                TensorData::new(values(batch * k * n, 1.0), [batch, k, n]),
                device,
            ),
            shape,
        }
    }

    /// Floating-point operations of one product ([`MatmulShape::flops`]).
    pub fn flops(&self) -> f64 {
        self.shape.flops()
    }

    /// One product, read back to the host (so asynchronous backends finish it); returns one
    /// element so the work cannot be elided.
    pub fn run(&self) -> f32 {
        let product = self.lhs.clone().matmul(self.rhs.clone());
        product.slice([0..1, 0..1, 0..1]).into_scalar::<f32>()
    }

    /// Seconds of each of `passes` timed products.
    pub fn time(&self, passes: usize) -> Vec<f64> {
        (0..passes)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(self.run());
                start.elapsed().as_secs_f64()
            })
            .collect()
    }
}
