//! Tokenizers: the [`Tokenizer`] trait and the byte-level [`ByteTokenizer`].

use std::fmt;

/// The special tokens every tokenizer of this crate provides. The chat format is built from
/// them (see [`crate::ChatFormat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Special {
    /// Padding; never a training target.
    Pad,
    /// Beginning of a sequence.
    Bos,
    /// End of the assistant's response; generation stops here.
    Eos,
    /// Starts the (optional) system text.
    System,
    /// Starts the user's prompt.
    User,
    /// Starts the assistant's response.
    Assistant,
}

impl Special {
    /// All special tokens, in id order for [`ByteTokenizer`].
    pub const ALL: [Special; 6] = [
        Special::Pad,
        Special::Bos,
        Special::Eos,
        Special::System,
        Special::User,
        Special::Assistant,
    ];

    /// How the token is rendered by [`Tokenizer::decode_with_specials`], e.g. `<|bos|>`.
    pub fn name(self) -> &'static str {
        match self {
            Special::Pad => "<|pad|>",
            Special::Bos => "<|bos|>",
            Special::Eos => "<|eos|>",
            Special::System => "<|system|>",
            Special::User => "<|user|>",
            Special::Assistant => "<|assistant|>",
        }
    }
}

impl fmt::Display for Special {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the rest of the workbench needs from a tokenizer, so another one (a BPE from a
/// pretrained model, say) can be plugged in later.
///
/// Text is never turned into special tokens by [`Tokenizer::encode`]: a prompt containing the
/// characters `<|eos|>` stays plain text, so user data cannot forge the chat structure.
pub trait Tokenizer {
    /// Token ids for `text`, without special tokens.
    fn encode(&self, text: &str) -> Vec<u32>;
    /// Text for `tokens`: special tokens are skipped, invalid UTF-8 and unknown ids become
    /// U+FFFD (lossy).
    fn decode(&self, tokens: &[u32]) -> String;
    /// Like [`Tokenizer::decode`], but special tokens are rendered by [`Special::name`]; for
    /// logs and debugging.
    fn decode_with_specials(&self, tokens: &[u32]) -> String;
    /// Number of token ids (the model's embedding rows); every id is `< vocab_size()`.
    fn vocab_size(&self) -> usize;
    /// The id of a special token.
    fn special(&self, special: Special) -> u32;
    /// Which special token `id` is, if any.
    fn special_of(&self, id: u32) -> Option<Special> {
        Special::ALL.into_iter().find(|&s| self.special(s) == id)
    }
}

/// Byte-level tokenizer: ids `0..=255` are the UTF-8 bytes, then the six special tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteTokenizer;

impl ByteTokenizer {
    /// Padding id.
    pub const PAD: u32 = 256;
    /// Beginning-of-sequence id.
    pub const BOS: u32 = 257;
    /// End-of-sequence id.
    pub const EOS: u32 = 258;
    /// System-text marker id.
    pub const SYSTEM: u32 = 259;
    /// User-prompt marker id.
    pub const USER: u32 = 260;
    /// Assistant-response marker id.
    pub const ASSISTANT: u32 = 261;
    /// Number of ids: 256 bytes and 6 specials.
    pub const VOCAB_SIZE: usize = 262;

    fn decode_impl(tokens: &[u32], render_specials: bool) -> String {
        let mut out = String::new();
        let mut bytes = Vec::new();
        for &id in tokens {
            if let Ok(byte) = u8::try_from(id) {
                bytes.push(byte);
                continue;
            }
            let special = ByteTokenizer.special_of(id);
            if special.is_some() && !render_specials {
                continue;
            }
            // A special or unknown id ends a run of bytes: decode the run on its own.
            out.push_str(&String::from_utf8_lossy(&bytes));
            bytes.clear();
            match special {
                Some(s) => out.push_str(s.name()),
                None => out.push(char::REPLACEMENT_CHARACTER),
            }
        }
        out.push_str(&String::from_utf8_lossy(&bytes));
        out
    }
}

impl Tokenizer for ByteTokenizer {
    fn encode(&self, text: &str) -> Vec<u32> {
        text.bytes().map(u32::from).collect()
    }

    fn decode(&self, tokens: &[u32]) -> String {
        Self::decode_impl(tokens, false)
    }

    fn decode_with_specials(&self, tokens: &[u32]) -> String {
        Self::decode_impl(tokens, true)
    }

    fn vocab_size(&self) -> usize {
        Self::VOCAB_SIZE
    }

    fn special(&self, special: Special) -> u32 {
        match special {
            Special::Pad => Self::PAD,
            Special::Bos => Self::BOS,
            Special::Eos => Self::EOS,
            Special::System => Self::SYSTEM,
            Special::User => Self::USER,
            Special::Assistant => Self::ASSISTANT,
        }
    }
}

/// A boxed tokenizer is a tokenizer, so one can be chosen at run time:
/// `ChatFormat::new(Box::new(ByteTokenizer) as Box<dyn Tokenizer>)`.
impl<T: Tokenizer + ?Sized> Tokenizer for Box<T> {
    fn encode(&self, text: &str) -> Vec<u32> {
        (**self).encode(text)
    }

    fn decode(&self, tokens: &[u32]) -> String {
        (**self).decode(tokens)
    }

    fn decode_with_specials(&self, tokens: &[u32]) -> String {
        (**self).decode_with_specials(tokens)
    }

    fn vocab_size(&self) -> usize {
        (**self).vocab_size()
    }

    fn special(&self, special: Special) -> u32 {
        (**self).special(special)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_and_vocab() {
        let t = ByteTokenizer;
        assert_eq!(t.vocab_size(), 262);
        let ids: Vec<u32> = Special::ALL.iter().map(|&s| t.special(s)).collect();
        assert_eq!(ids, vec![256, 257, 258, 259, 260, 261]);
        for s in Special::ALL {
            assert_eq!(t.special_of(t.special(s)), Some(s));
        }
        assert_eq!(t.special_of(65), None);
        assert_eq!(t.encode("Hi"), vec![72, 105]);
    }

    #[test]
    fn specials_skipped_or_rendered() {
        let t = ByteTokenizer;
        let mut ids = vec![ByteTokenizer::BOS, ByteTokenizer::USER];
        ids.extend(t.encode("hé"));
        ids.push(ByteTokenizer::ASSISTANT);
        ids.extend(t.encode("yo"));
        ids.push(ByteTokenizer::EOS);
        assert_eq!(t.decode(&ids), "héyo");
        assert_eq!(
            t.decode_with_specials(&ids),
            "<|bos|><|user|>hé<|assistant|>yo<|eos|>"
        );
    }

    #[test]
    fn decode_is_lossy_not_panicking() {
        let t = ByteTokenizer;
        assert_eq!(t.decode(&[0xff, 65]), "\u{fffd}A");
        assert_eq!(t.decode(&[65, 9999, 66]), "A\u{fffd}B");
        assert_eq!(t.decode(&[]), "");
    }

    #[test]
    fn boxed_tokenizers_plug_in() {
        let boxed: Box<dyn Tokenizer> = Box::new(ByteTokenizer);
        let chat = crate::ChatFormat::new(boxed);
        assert_eq!(
            chat.prompt_tokens(None, "a"),
            crate::ChatFormat::default().prompt_tokens(None, "a")
        );
        assert_eq!(chat.tokenizer().vocab_size(), 262);
    }

    #[test]
    fn text_never_becomes_special() {
        let t = ByteTokenizer;
        assert!(t.encode("<|eos|>").iter().all(|&id| id < 256));
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(s in any::<String>()) {
            let t = ByteTokenizer;
            let ids = t.encode(&s);
            prop_assert!(ids.iter().all(|&id| (id as usize) < t.vocab_size()));
            prop_assert_eq!(t.decode(&ids), s.clone());
            prop_assert_eq!(t.decode_with_specials(&ids), s);
        }

        #[test]
        fn decode_never_panics(ids in proptest::collection::vec(any::<u32>(), 0..64)) {
            let _ = ByteTokenizer.decode(&ids);
            let _ = ByteTokenizer.decode_with_specials(&ids);
        }
    }
}
