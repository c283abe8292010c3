//! [`LmBatch`]: right-padded next-token batches with a loss mask.

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

        let rows = sequences.len();
        let seq = sequences
            .iter()
            .map(|(t, _)| t.len() - 1)
            .max()
            .unwrap_or(0);
        let mut inputs = vec![i64::from(pad_id); rows * seq];
        let mut targets = vec![i64::from(pad_id); rows * seq];
        let mut mask = vec![0.0f32; rows * seq];
        let mut num_loss_tokens = 0;
        let (mut max_token_id, mut max_token_row) = (pad_id, 0);
        for (row, (tokens, loss_mask)) in sequences.iter().enumerate() {
            let n = tokens.len() - 1;
            let base = row * seq;
            for i in 0..n {
                inputs[base + i] = i64::from(tokens[i]);
                targets[base + i] = i64::from(tokens[i + 1]);
                if loss_mask[i + 1] {
                    mask[base + i] = 1.0;
                    num_loss_tokens += 1;
                }
            }
            if let Some(&top) = tokens.iter().max()
                && top > max_token_id
            {
                (max_token_id, max_token_row) = (top, row);
            }
        }
        if num_loss_tokens == 0 {
            return Err(ModelError::NoLossTokens);
        }

        Ok(Self {
            inputs: Tensor::from_data(TensorData::new(inputs, [rows, seq]), device),
            targets: Tensor::from_data(TensorData::new(targets, [rows, seq]), device),
            mask: Tensor::from_data(TensorData::new(mask, [rows, seq]), device),
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
