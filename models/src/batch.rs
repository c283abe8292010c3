//! [`LmBatch`]: right-padded next-token batches with a loss mask, one sequence per row
//! ([`LmBatch::from_sequences`]) or several sequences packed end to end in each row
//! ([`LmBatch::packed`]).

use std::sync::Arc;

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::ModelError;

/// A batch of next-token prediction rows for [`masked_loss`](crate::TinyGpt::masked_loss).
///
/// Built from whole sequences by [`LmBatch::from_sequences`]: for a sequence `t` of `n`
/// tokens, its row has `inputs = t[..n-1]`, `targets = t[1..]` and
/// `mask = loss_mask[1..]` (1.0 where the target token is to be predicted), right-padded to the
/// longest row with the pad id and mask 0.
///
/// # Shapes
///
/// - inputs: `[batch, seq]` token ids
/// - targets: `[batch, seq]` token ids, `targets[b, i] = inputs[b, i + 1]` within a sequence
/// - mask: `[batch, seq]`, 1.0 at positions that count in the loss, else 0.0
///
/// where `seq` is the longest sequence length minus one.
#[derive(Debug, Clone)]
pub struct LmBatch {
    /// Input token ids, `[batch, seq]`.
    pub inputs: Tensor<2, Int>,
    /// Target token ids (the inputs shifted left by one), `[batch, seq]`.
    pub targets: Tensor<2, Int>,
    /// Loss weights, `[batch, seq]`: 1.0 where the target is a token to predict.
    pub mask: Tensor<2>,
    /// For a packed batch ([`LmBatch::packed`]): where each row's sequences begin; `None`
    /// when every row holds one sequence from position 0.
    pub packing: Option<Packing>,
    num_loss_tokens: usize,
    max_token_id: u32,
    max_token_row: usize,
}

impl LmBatch {
    /// Builds a batch from `(tokens, loss_mask)` pairs on `device`.
    ///
    /// `loss_mask[i]` is true when token `i` is to be predicted (a response token); the mask of
    /// the first token is ignored, since nothing predicts it.
    ///
    /// # Errors
    ///
    /// - [`ModelError::EmptyInput`] for no sequences;
    /// - [`ModelError::InvalidSequence`] for a sequence shorter than 2 tokens or a mask whose
    ///   length differs from its sequence's;
    /// - [`ModelError::NoLossTokens`] when no target in the whole batch is masked in (the mean
    ///   loss would be undefined).
    ///
    /// Token ids are not checked against a vocabulary here (the batch knows none): use
    /// [`TinyGpt::masked_loss_checked`](crate::TinyGpt::masked_loss_checked) for that.
    pub fn from_sequences(
        sequences: &[(Vec<u32>, Vec<bool>)],
        pad_id: u32,
        device: &Device,
    ) -> Result<Self, ModelError> {
        check_sequences(sequences)?;
        let rows: Vec<Vec<usize>> = (0..sequences.len()).map(|i| vec![i]).collect();
        Self::laid_out(sequences, &rows, pad_id, false, device)
    }

    /// Builds a *packed* batch: the sequences laid end to end in as few rows of at most
    /// `row_len` positions as first-fit in their order gives (each sequence goes into the
    /// first row with room for it), every row right-padded to the longest.
    ///
    /// The loss is the one [`from_sequences`](Self::from_sequences) gives for the same
    /// sequences (the same targets count, each sequence sees only its own tokens and its
    /// positions count from 0), computed on fewer padded positions: short sequences no longer
    /// pad to the longest. [`Packing`] tells the model where each sequence begins.
    ///
    /// # Errors
    ///
    /// As [`from_sequences`](Self::from_sequences), and
    /// [`ModelError::SequenceTooLong`] for a sequence of more than `row_len + 1` tokens (its
    /// `n - 1` input positions must fit in a row).
    pub fn packed(
        sequences: &[(Vec<u32>, Vec<bool>)],
        pad_id: u32,
        row_len: usize,
        device: &Device,
    ) -> Result<Self, ModelError> {
        check_sequences(sequences)?;
        let mut rows: Vec<Vec<usize>> = Vec::new();
        let mut used: Vec<usize> = Vec::new();
        for (index, (tokens, _)) in sequences.iter().enumerate() {
            let n = tokens.len() - 1;
            if n > row_len {
                return Err(ModelError::SequenceTooLong {
                    len: n,
                    max: row_len,
                });
            }
            match used.iter().position(|&u| u + n <= row_len) {
                Some(row) => {
                    rows[row].push(index);
                    used[row] += n;
                }
                None => {
                    rows.push(vec![index]);
                    used.push(n);
                }
            }
        }
        Self::laid_out(sequences, &rows, pad_id, true, device)
    }

    /// The batch with `rows[r]` (indices into `sequences`) laid end to end in row `r`.
    fn laid_out(
        sequences: &[(Vec<u32>, Vec<bool>)],
        rows: &[Vec<usize>],
        pad_id: u32,
        packed: bool,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let width =
            |row: &Vec<usize>| -> usize { row.iter().map(|&i| sequences[i].0.len() - 1).sum() };
        let seq = rows.iter().map(width).max().unwrap_or(0);
        let cells = rows.len() * seq;
        let mut inputs = vec![i64::from(pad_id); cells];
        let mut targets = vec![i64::from(pad_id); cells];
        let mut mask = vec![0.0f32; cells];
        let mut positions = vec![0i64; cells];
        let mut starts: Vec<usize> = Vec::with_capacity(cells);
        let mut num_loss_tokens = 0;
        let (mut max_token_id, mut max_token_row) = (pad_id, 0);
        for (r, row) in rows.iter().enumerate() {
            let mut at = 0;
            for &index in row {
                let (tokens, loss_mask) = &sequences[index];
                let n = tokens.len() - 1;
                let base = r * seq + at;
                for i in 0..n {
                    inputs[base + i] = i64::from(tokens[i]);
                    targets[base + i] = i64::from(tokens[i + 1]);
                    positions[base + i] = i as i64;
                    if loss_mask[i + 1] {
                        mask[base + i] = 1.0;
                        num_loss_tokens += 1;
                    }
                }
                starts.extend(std::iter::repeat_n(at, n));
                if let Some(&top) = tokens.iter().max()
                    && top > max_token_id
                {
                    (max_token_id, max_token_row) = (top, r);
                }
                at += n;
            }
            // Padding sees only itself: never an empty row of keys, never a real token.
            starts.extend(at..seq);
        }
        if num_loss_tokens == 0 {
            return Err(ModelError::NoLossTokens);
        }
        let shape = [rows.len(), seq];
        let packing = packed.then(|| Packing {
            positions: Tensor::from_data(TensorData::new(positions, shape), device),
            starts: starts.into(),
        });
        Ok(Self {
            inputs: Tensor::from_data(TensorData::new(inputs, shape), device),
            targets: Tensor::from_data(TensorData::new(targets, shape), device),
            mask: Tensor::from_data(TensorData::new(mask, shape), device),
            packing,
            num_loss_tokens,
            max_token_id,
            max_token_row,
        })
    }

    /// Number of rows.
    pub fn batch_size(&self) -> usize {
        self.inputs.dims()[0]
    }

    /// Number of columns (longest sequence minus one).
    pub fn seq_len(&self) -> usize {
        self.inputs.dims()[1]
    }

    /// Number of target tokens that count in the loss (the sum of `mask`), known on the host;
    /// use it to weight per-batch mean losses into a per-token mean.
    pub fn num_loss_tokens(&self) -> usize {
        self.num_loss_tokens
    }

    /// The largest token id in the batch, the pad id included.
    pub fn max_token_id(&self) -> u32 {
        self.max_token_id
    }

    /// The row holding [`max_token_id`](Self::max_token_id) (0 when it is the pad id).
    pub(crate) fn max_token_row(&self) -> usize {
        self.max_token_row
    }
}

/// Where the sequences of a packed batch ([`LmBatch::packed`]) begin.
#[derive(Debug, Clone)]
pub struct Packing {
    /// Position ids, `[batch, seq]`: each sequence counts its positions from 0.
    pub positions: Tensor<2, Int>,
    /// For every position (row-major, `batch * seq` entries), the column where its sequence
    /// begins: the first key attention lets it see.
    pub starts: Arc<[usize]>,
}

/// The checks both layouts make: at least one sequence, each of two tokens or more with a
/// loss mask of its length.
fn check_sequences(sequences: &[(Vec<u32>, Vec<bool>)]) -> Result<(), ModelError> {
    if sequences.is_empty() {
        return Err(ModelError::EmptyInput(
            "a batch needs at least one sequence",
        ));
    }
    for (index, (tokens, mask)) in sequences.iter().enumerate() {
        if tokens.len() < 2 {
            return Err(ModelError::InvalidSequence {
                index,
                reason: format!(
                    "has {} token(s); next-token prediction needs at least 2",
                    tokens.len()
                ),
            });
        }
        if mask.len() != tokens.len() {
            return Err(ModelError::InvalidSequence {
                index,
                reason: format!(
                    "has {} tokens but a loss mask of length {}",
                    tokens.len(),
                    mask.len()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(tensor: &Tensor<2, Int>) -> Vec<i64> {
        tensor.clone().try_into_vec_as::<i64>().unwrap()
    }

    #[test]
    fn shifts_pads_and_masks() {
        let device = Device::flex();
        let batch = LmBatch::from_sequences(
            &[
                (vec![1, 2, 3, 4], vec![false, false, true, true]),
                (vec![5, 6], vec![false, true]),
            ],
            0,
            &device,
        )
        .unwrap();
        assert_eq!(batch.inputs.dims(), [2, 3]);
        assert_eq!(ints(&batch.inputs), vec![1, 2, 3, 5, 0, 0]);
        assert_eq!(ints(&batch.targets), vec![2, 3, 4, 6, 0, 0]);
        let mask = batch.mask.clone().try_into_vec_as::<f32>().unwrap();
        assert_eq!(mask, vec![0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(batch.num_loss_tokens(), 3);
        assert_eq!(batch.max_token_id(), 6);
    }

    #[test]
    fn packs_first_fit_with_positions_and_starts() {
        let device = Device::flex();
        // Input lengths 3, 4, 2, 1 into rows of 5: [0, 2] (3 + 2), [1, 3] (4 + 1).
        let sequences = [
            (vec![1, 2, 3, 4], vec![false, false, true, true]),
            (vec![5, 6, 7, 8, 9], vec![false, true, true, true, true]),
            (vec![10, 11, 12], vec![false, false, true]),
            (vec![13, 14], vec![false, true]),
        ];
        let batch = LmBatch::packed(&sequences, 0, 5, &device).unwrap();
        assert_eq!(batch.inputs.dims(), [2, 5]);
        assert_eq!(ints(&batch.inputs), vec![1, 2, 3, 10, 11, 5, 6, 7, 8, 13]);
        assert_eq!(ints(&batch.targets), vec![2, 3, 4, 11, 12, 6, 7, 8, 9, 14]);
        let mask = batch.mask.clone().try_into_vec_as::<f32>().unwrap();
        assert_eq!(mask, vec![0., 1., 1., 0., 1., 1., 1., 1., 1., 1.]);
        assert_eq!(batch.num_loss_tokens(), 8);
        let packing = batch.packing.as_ref().unwrap();
        assert_eq!(ints(&packing.positions), vec![0, 1, 2, 0, 1, 0, 1, 2, 3, 0]);
        assert_eq!(&*packing.starts, &[0, 0, 0, 3, 3, 0, 0, 0, 0, 4]);
        assert_eq!(batch.max_token_id(), 14);
        assert_eq!(batch.max_token_row(), 1);
        // Padding at a row's end sees only itself.
        let short = LmBatch::packed(&sequences[..2], 0, 5, &device).unwrap();
        assert_eq!(short.inputs.dims(), [2, 4]);
        assert_eq!(&*short.packing.unwrap().starts, &[0, 0, 0, 3, 0, 0, 0, 0]);
        // A sequence longer than a row is refused.
        assert!(matches!(
            LmBatch::packed(&sequences, 0, 3, &device),
            Err(ModelError::SequenceTooLong { len: 4, max: 3 })
        ));
        assert!(
            LmBatch::from_sequences(&sequences, 0, &device)
                .unwrap()
                .packing
                .is_none()
        );
    }

    #[test]
    fn rejects_bad_sequences() {
        let device = Device::flex();
        let short = LmBatch::from_sequences(&[(vec![1], vec![true])], 0, &device);
        assert!(matches!(
            short,
            Err(ModelError::InvalidSequence { index: 0, .. })
        ));
        let mismatch = LmBatch::from_sequences(
            &[(vec![1, 2], vec![true, true]), (vec![1, 2], vec![true])],
            0,
            &device,
        );
        assert!(matches!(
            mismatch,
            Err(ModelError::InvalidSequence { index: 1, .. })
        ));
        let none = LmBatch::from_sequences(&[(vec![1, 2], vec![true, false])], 0, &device);
        assert!(matches!(none, Err(ModelError::NoLossTokens)));
        assert!(matches!(
            LmBatch::from_sequences(&[], 0, &device),
            Err(ModelError::EmptyInput(_))
        ));
    }
}
