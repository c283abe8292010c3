//! Symmetric eigen-decomposition on the host CPU in `f64`, for the linear-algebra table's
//! `eigh`: burn has no `eigh`, and SOAP's reference initialises its eigenbases with one.
//!
//! Householder reduction to tridiagonal form followed by the implicit QL algorithm, as in
//! EISPACK's `tred2` / `tql2` (by way of the public-domain JAMA port): about `4 n^3` flops,
//! accurate to `f64` rounding.

/// Eigenvalues in descending order and the matching eigenvectors as the columns of a row-major
/// `n x n` matrix, for the symmetric row-major `n x n` matrix `a` (its lower triangle is used).
pub(crate) fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(
        a.len(),
        n * n,
        "eigh of a {}-element buffer as {n} x {n}",
        a.len()
    );
    if n == 0 {
        return (Vec::new(), Vec::new());
    }
    // Symmetrise from the lower triangle so tiny asymmetries from f32 matmuls do not matter.
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            v[i * n + j] = a[i * n + j];
            v[j * n + i] = a[i * n + j];
        }
    }
    let mut d = vec![0.0; n];
    let mut e = vec![0.0; n];
    tred2(&mut v, &mut d, &mut e, n);
    // tql2 rotates pairs of eigenvector columns: keep them as rows for contiguous access.
    let mut w = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            w[i * n + k] = v[k * n + i];
        }
    }
    tql2(&mut w, &mut d, &mut e, n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| d[j].total_cmp(&d[i]));
    let values = order.iter().map(|&i| d[i]).collect();
    let mut vectors = vec![0.0; n * n];
    for (col, &i) in order.iter().enumerate() {
        for k in 0..n {
            vectors[k * n + col] = w[i * n + k];
        }
    }
    (values, vectors)
}

/// Householder tridiagonalisation: on return `d` is the diagonal, `e[1..]` the subdiagonal and
/// `v` (row-major) the accumulated orthogonal transformation.
fn tred2(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize) {
    let at = |i: usize, j: usize| i * n + j;
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
    }
    for i in (1..n).rev() {
        let scale: f64 = d[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
                v[at(j, i)] = 0.0;
            }
        } else {
            for dk in d[..i].iter_mut() {
                *dk /= scale;
                h += *dk * *dk;
            }
            let mut f = d[i - 1];
            let mut g = h.sqrt();
            if f > 0.0 {
                g = -g;
            }
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for ej in e[..i].iter_mut() {
                *ej = 0.0;
            }
            for j in 0..i {
                f = d[j];
                v[at(j, i)] = f;
                g = e[j] + v[at(j, j)] * f;
                for k in j + 1..i {
                    g += v[at(k, j)] * d[k];
                    e[k] += v[at(k, j)] * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                f = d[j];
                g = e[j];
                for k in j..i {
                    v[at(k, j)] -= f * e[k] + g * d[k];
                }
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
            }
        }
        d[i] = h;
    }
    for i in 0..n - 1 {
        v[at(n - 1, i)] = v[at(i, i)];
        v[at(i, i)] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v[at(k, i + 1)] / h;
            }
            for j in 0..=i {
                let mut g = 0.0;
                for k in 0..=i {
                    g += v[at(k, i + 1)] * v[at(k, j)];
                }
                for k in 0..=i {
                    v[at(k, j)] -= g * d[k];
                }
            }
        }
        for k in 0..=i {
            v[at(k, i + 1)] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
        v[at(n - 1, j)] = 0.0;
    }
    v[at(n - 1, n - 1)] = 1.0;
    e[0] = 0.0;
}

/// Implicit QL on the tridiagonal (`d`, `e`); `w` holds the eigenvectors as rows.
fn tql2(w: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize) {
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut f = 0.0;
    let mut tst1: f64 = 0.0;
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > eps * tst1 {
            m += 1;
        }
        if m > l {
            loop {
                let mut g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for di in d[l + 2..].iter_mut() {
                    *di -= h;
                }
                f += h;
                p = d[m];
                let (mut c, mut c2, mut c3) = (1.0, 1.0, 1.0);
                let el1 = e[l + 1];
                let (mut s, mut s2) = (0.0, 0.0);
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    let (lo, hi) = w.split_at_mut((i + 1) * n);
                    let (row_i, row_i1) = (&mut lo[i * n..], &mut hi[..n]);
                    for (a, b) in row_i.iter_mut().zip(row_i1.iter_mut()) {
                        let old = *b;
                        *b = s * *a + c * old;
                        *a = c * *a - s * old;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(a: &[f64], n: usize) {
        let (values, vectors) = symmetric_eigen(a, n);
        assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");
        let scale = a.iter().map(|x| x.abs()).fold(1.0, f64::max);
        for i in 0..n {
            for j in 0..n {
                let r: f64 = (0..n)
                    .map(|k| vectors[i * n + k] * values[k] * vectors[j * n + k])
                    .sum();
                assert!(
                    (r - a[i * n + j]).abs() < 1e-12 * scale * n as f64,
                    "({i},{j}): {r} vs {}",
                    a[i * n + j]
                );
                let o: f64 = (0..n)
                    .map(|k| vectors[k * n + i] * vectors[k * n + j])
                    .sum();
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (o - expected).abs() < 1e-12 * n as f64,
                    "orthogonality ({i},{j}): {o}"
                );
            }
        }
    }

    fn symmetric(n: usize, seed: f64) -> Vec<f64> {
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] =
                    ((i * 7 + j * 3) as f64 + seed).sin() + ((j * 7 + i * 3) as f64 + seed).sin();
            }
        }
        a
    }

    #[test]
    fn reconstructs_symmetric_matrices() {
        for n in [1, 2, 3, 5, 17, 40] {
            check(&symmetric(n, n as f64), n);
        }
    }

    #[test]
    fn handles_repeated_and_zero_eigenvalues() {
        // Identity, zeros, and a rank-1 outer product (n - 1 zero eigenvalues).
        let n = 6;
        let mut eye = vec![0.0; n * n];
        for i in 0..n {
            eye[i * n + i] = 1.0;
        }
        check(&eye, n);
        check(&vec![0.0; n * n], n);
        let g: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).cos()).collect();
        let outer: Vec<f64> = (0..n * n).map(|k| g[k / n] * g[k % n]).collect();
        check(&outer, n);
        let (values, _) = symmetric_eigen(&outer, n);
        let norm2: f64 = g.iter().map(|x| x * x).sum();
        assert!((values[0] - norm2).abs() < 1e-12);
    }

    #[test]
    fn eigenvalues_of_a_diagonal_matrix_come_out_sorted() {
        let a = [3.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 7.0];
        let (values, vectors) = symmetric_eigen(&a, 3);
        assert_eq!(values, vec![7.0, 3.0, -1.0]);
        assert_eq!(
            vectors[2 * 3].abs(),
            1.0,
            "the first eigenvector (column 0) is e3"
        );
    }
}
