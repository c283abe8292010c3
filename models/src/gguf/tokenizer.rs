//! The tokenizer of a GGUF file, rebuilt from its `tokenizer.ggml.*` metadata as an
//! [`HfTokenizer`], with the chat template of `tokenizer.chat_template`.
//!
//! Only `tokenizer.ggml.model = "gpt2"` (byte-level BPE: GPT-2, Llama 3, Qwen2, SmolLM) is
//! supported. The tokenizer is built as transformers' GGUF loader builds it, so that both read
//! a file the same way: a BPE model over `tokens` and `merges`, GPT-2's byte-level
//! pre-tokenizer (its split regex, no prefix space) and decoder; tokens of type 3 (control)
//! become special added tokens, tokens of type 4 (user-defined) plain added tokens.
//! `tokenizer.ggml.pre` is not read: llama.cpp's per-model split rules (SmolLM's split of
//! digits one by one, Llama 3's and Qwen2's regexes) are not applied, as transformers applies
//! none of them to the `smollm` and `default` vocabularies either.

use serde_json::{Map, Value, json};

use super::GgufFile;
use crate::{HfTokenizer, ModelError};

/// The `tokenizer.ggml.model` values [`tokenizer_from_gguf`] accepts.
pub const SUPPORTED_TOKENIZER_MODELS: &[&str] = &["gpt2"];

/// GGUF token type of a control token (`<|im_end|>`, ...).
const CONTROL: i64 = 3;
/// GGUF token type of a user-defined added token.
const USER_DEFINED: i64 = 4;

/// GPT-2's byte-to-character table: printable bytes stand for themselves, the others for the
/// characters from U+0100 on, in byte order.
fn byte_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (byte, slot) in table.iter_mut().enumerate() {
        let printable = matches!(byte, 33..=126 | 161..=172 | 174..=255);
        let code = if printable {
            byte as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(code).expect("code points below 0x200 are characters");
    }
    table
}

/// Builds the tokenizer of `file` from its metadata.
///
/// Keys read: `tokenizer.ggml.model` (must be `gpt2`), `tokenizer.ggml.tokens`,
/// `tokenizer.ggml.merges` (pairs separated by one space), `tokenizer.ggml.token_type`
/// (optional), `tokenizer.ggml.bos_token_id`, `tokenizer.ggml.eos_token_id`,
/// `tokenizer.ggml.padding_token_id`, `tokenizer.ggml.unknown_token_id` (optional) and
/// `tokenizer.chat_template` (optional; without it the plain template of [`HfTokenizer`]).
///
/// # Errors
///
/// [`ModelError::GgufMetadata`] naming a missing or malformed key (with the allowed values of
/// `tokenizer.ggml.model`), [`ModelError::Tokenizer`] when the tokenizer or the template
/// cannot be built.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<HfTokenizer, ModelError> {
    let model = file.str("tokenizer.ggml.model")?;
    if !SUPPORTED_TOKENIZER_MODELS.contains(&model) {
        return Err(file.bad_key(
            "tokenizer.ggml.model",
            format!(
                "is `{model}`; supported: {}",
                SUPPORTED_TOKENIZER_MODELS.join(", ")
            ),
        ));
    }
    let tokens = file
        .opt_strings("tokenizer.ggml.tokens")?
        .ok_or_else(|| file.bad_key("tokenizer.ggml.tokens", "is missing"))?;
    let merges = file
        .opt_strings("tokenizer.ggml.merges")?
        .unwrap_or_default();
    let types = file.opt_ints("tokenizer.ggml.token_type")?;
    if let Some(types) = &types
        && types.len() != tokens.len()
    {
        return Err(file.bad_key(
            "tokenizer.ggml.token_type",
            format!(
                "has {} entries, but tokenizer.ggml.tokens has {}",
                types.len(),
                tokens.len()
            ),
        ));
    }
    let token_of = |key: &str| -> Result<Option<String>, ModelError> {
        match file.opt_usize(key)? {
            None => Ok(None),
            Some(id) => tokens.get(id).map(|t| Some(t.to_string())).ok_or_else(|| {
                file.bad_key(
                    key,
                    format!("is {id}, out of range for {} tokens", tokens.len()),
                )
            }),
        }
    };
    let bos = token_of("tokenizer.ggml.bos_token_id")?;
    let eos = token_of("tokenizer.ggml.eos_token_id")?;
    let pad = token_of("tokenizer.ggml.padding_token_id")?;
    let unk = token_of("tokenizer.ggml.unknown_token_id")?;

    let alphabet = byte_alphabet();
    let in_alphabet = |token: &str| token.chars().all(|c| alphabet.contains(&c));
    // Tokens spelled with other characters (a raw space, say) are respelled in the alphabet.
    let spelled = |token: &str| -> String {
        if in_alphabet(token) {
            token.to_string()
        } else {
            token.bytes().map(|b| alphabet[usize::from(b)]).collect()
        }
    };
    let mut vocab = Map::new();
    for (id, token) in tokens.iter().enumerate() {
        vocab.insert(spelled(token), json!(id));
    }
    let mut merge_pairs = Vec::with_capacity(merges.len());
    for (i, merge) in merges.iter().enumerate() {
        let Some((left, right)) = merge.split_once(' ') else {
            return Err(file.bad_key(
                "tokenizer.ggml.merges",
                format!("entry {i} ({merge:?}) is not two tokens separated by a space"),
            ));
        };
        merge_pairs.push(json!([left, right]));
    }
    let mut added = Vec::new();
    let mut add = |id: usize, special: bool| {
        added.push(json!({
            "id": id, "content": tokens[id], "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": special,
        }));
    };
    let special_texts: Vec<&String> = [&bos, &eos, &pad, &unk].into_iter().flatten().collect();
    for (id, token) in tokens.iter().enumerate() {
        let kind = types.as_ref().map_or(1, |t| t[id]);
        // A control token outside the byte alphabet is a mislabel (transformers skips it too).
        let special = (kind == CONTROL && in_alphabet(token))
            || special_texts.iter().any(|s| s.as_str() == *token);
        if special {
            add(id, true);
        } else if kind == USER_DEFINED {
            add(id, false);
        }
    }
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {
            "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true,
        },
        "post_processor": null,
        "decoder": {
            "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true,
        },
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": Value::Object(vocab), "merges": merge_pairs,
        },
    });
    let inner: tokenizers::Tokenizer =
        serde_json::from_value(spec).map_err(|err| ModelError::Tokenizer {
            path: file.path().to_path_buf(),
            message: format!("building the tokenizer from tokenizer.ggml.*: {err}"),
        })?;
    let chat_template = file.opt_str("tokenizer.chat_template")?.map(str::to_owned);
    HfTokenizer::from_parts(inner, file.path().to_path_buf(), chat_template, bos, eos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_alphabet_is_gpt2s() {
        let table = byte_alphabet();
        assert_eq!(table[b'a' as usize], 'a');
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[0], 'Ā');
        let distinct: std::collections::BTreeSet<char> = table.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }
}
