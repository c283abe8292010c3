//! [`LanguageModel`]: what the harness needs from any architecture.

use burn::tensor::{Int, Tensor};

use crate::{GenerateOptions, LmBatch, ModelError, TinyGpt};

/// A causal language model as the experiments use it: logits, the masked training loss, and
/// generation. [`TinyGpt`] implements it; imported architectures (Llama, GPT-2) will too.
///
/// Training code also needs [`burn::module::Module`] (for optimizers and checkpoints), so it
/// bounds on `M: LanguageModel + Module`; the trait itself stays object safe for evaluation
/// code that holds a `&dyn LanguageModel`.
pub trait LanguageModel {
    /// Number of token ids the model accepts and scores.
    fn vocab_size(&self) -> usize;

    /// Longest sequence (prompt plus generated tokens) the model accepts.
    fn max_seq_len(&self) -> usize;

    /// Next-token logits for every position.
    ///
    /// # Shapes
    ///
    /// - tokens: `[batch, seq]`, `seq <= max_seq_len`
    /// - output: `[batch, seq, vocab_size]`
    fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3>;

    /// Mean cross-entropy over the batch's masked target tokens; a `[1]` tensor.
    fn masked_loss(&self, batch: &LmBatch) -> Tensor<1>;

    /// Continues each prompt; returns only the new tokens of each.
    ///
    /// # Errors
    ///
    /// On invalid prompts or options, or a backend read failure.
    fn generate(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Vec<Vec<u32>>, ModelError>;
}

impl LanguageModel for TinyGpt {
    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }

    fn max_seq_len(&self) -> usize {
        self.config().max_seq_len
    }

    fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        TinyGpt::forward(self, tokens)
    }

    fn masked_loss(&self, batch: &LmBatch) -> Tensor<1> {
        TinyGpt::masked_loss(self, batch)
    }

    fn generate(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        TinyGpt::generate(self, prompts, opts)
    }
}
