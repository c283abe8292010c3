//! [`HfTokenizer`]: a Hugging Face `tokenizer.json` with the model's chat template, applied the
//! same way to training examples and to evaluation prompts.

use std::fs;
use std::path::{Path, PathBuf};

use minijinja::{Environment, ErrorKind, context};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Name of a Hugging Face tokenizer file.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Name of the tokenizer's config (special tokens, and the chat template in older models).
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// Name of the separate chat template file that newer `transformers` versions write.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A tokenizer loaded from a Hugging Face model directory, with its chat template.
///
/// The chat template is the model's Jinja template (`chat_template` in
/// `tokenizer_config.json`, or `chat_template.jinja`), rendered with minijinja as
/// transformers renders it (`trim_blocks`, `lstrip_blocks`, `bos_token`, `eos_token`,
/// `raise_exception`). A model without one (a base model) gets a documented plain template:
/// each message as `{role}: {content}\n\n`, and `assistant: ` as the generation prompt.
///
/// Training and evaluation share one path: [`encode_prompt`](Self::encode_prompt) gives the
/// tokens a model is prompted with, and [`encode_example`](Self::encode_example) gives exactly
/// those tokens followed by the response's, so a fine-tuned model sees at evaluation the very
/// prefix it was trained on.
#[derive(Debug, Clone)]
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    chat_template: Option<String>,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

/// The plain template for models without a chat template.
const PLAIN_TEMPLATE: &str = "{% for message in messages %}{{ message.role }}: {{ message.content }}\n\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}";

#[derive(Deserialize, Default)]
struct TokenizerConfig {
    chat_template: Option<serde_json::Value>,
    bos_token: Option<serde_json::Value>,
    eos_token: Option<serde_json::Value>,
}

/// A special token in `tokenizer_config.json`: a string, or an object with `content`.
fn token_text(value: Option<serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(text) => Some(text),
        serde_json::Value::Object(map) => map.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

impl HfTokenizer {
    /// Loads `tokenizer.json` from `dir`, with `tokenizer_config.json` and
    /// `chat_template.jinja` when present. No network access.
    ///
    /// # Errors
    ///
    /// [`ModelError::MissingFile`] without `tokenizer.json`, [`ModelError::Tokenizer`] when it
    /// or the template cannot be read, [`ModelError::ConfigFile`] for a `tokenizer_config.json`
    /// that does not parse.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join(TOKENIZER_FILE);
        if !path.is_file() {
            return Err(ModelError::MissingFile { path });
        }
        let inner =
            tokenizers::Tokenizer::from_file(&path).map_err(|err| ModelError::Tokenizer {
                path: path.clone(),
                message: err.to_string(),
            })?;
        let config_path = dir.join(TOKENIZER_CONFIG_FILE);
        let config: TokenizerConfig = if config_path.is_file() {
            crate::hf::read_json(&config_path)?
        } else {
            TokenizerConfig::default()
        };
        let template_path = dir.join(CHAT_TEMPLATE_FILE);
        let chat_template = match config.chat_template {
            Some(serde_json::Value::String(template)) => Some(template),
            // A list of named templates: the `default` one.
            Some(serde_json::Value::Array(named)) => named.iter().find_map(|entry| {
                (entry.get("name")?.as_str()? == "default")
                    .then(|| entry.get("template")?.as_str().map(str::to_owned))?
            }),
            _ if template_path.is_file() => Some(fs::read_to_string(&template_path).map_err(
                |source| ModelError::Io {
                    path: template_path.clone(),
                    source,
                },
            )?),
            _ => None,
        };
        Self::from_parts(
            inner,
            path,
            chat_template,
            token_text(config.bos_token),
            token_text(config.eos_token),
        )
    }

    /// A tokenizer built elsewhere (from a GGUF file's metadata, say) with its chat template and
    /// the texts of its special tokens; `path` names the source in errors.
    ///
    /// # Errors
    ///
    /// [`ModelError::Tokenizer`] when the template does not compile.
    pub(crate) fn from_parts(
        inner: tokenizers::Tokenizer,
        path: PathBuf,
        chat_template: Option<String>,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<Self, ModelError> {
        let tokenizer = Self {
            inner,
            path,
            chat_template,
            bos_token,
            eos_token,
        };
        // Fail at load, not at the first example, on a template that does not compile.
        tokenizer.render(&[ChatMessage::new("user", "x")], true)?;
        Ok(tokenizer)
    }

    /// Number of token ids the tokenizer can produce, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Checks that every id this tokenizer can produce has an embedding in a model of
    /// `vocab_size` (a model's vocabulary may be padded beyond the tokenizer's, not short of it).
    ///
    /// # Errors
    ///
    /// [`ModelError::TokenizerVocab`] naming the tokenizer file and both sizes.
    pub fn check_vocab(&self, vocab_size: usize) -> Result<(), ModelError> {
        if self.vocab_size() > vocab_size {
            return Err(ModelError::TokenizerVocab {
                path: self.path.clone(),
                tokenizer_size: self.vocab_size(),
                vocab_size,
            });
        }
        Ok(())
    }

    /// Whether the model ships a chat template (else the plain one is used).
    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// The id of a token given by its text (e.g. `<|im_end|>`), if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The id of the end-of-sequence token of `tokenizer_config.json`, if any: the stop token
    /// for generation.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.token_id(self.eos_token.as_deref()?)
    }

    /// Token ids of `text`, without adding special tokens (special tokens written in the text,
    /// such as `<|im_start|>`, are recognised).
    ///
    /// # Errors
    ///
    /// [`ModelError::Tokenizer`] when encoding fails.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.inner
            .encode(text, false)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|err| self.error(err.to_string()))
    }

    /// The text of `ids`, special tokens included.
    ///
    /// # Errors
    ///
    /// [`ModelError::Tokenizer`] when decoding fails.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.inner
            .decode(ids, false)
            .map_err(|err| self.error(err.to_string()))
    }

    /// The text of `ids` with special tokens left out: what a completion says.
    ///
    /// # Errors
    ///
    /// [`ModelError::Tokenizer`] when decoding fails.
    pub fn decode_text(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.inner
            .decode(ids, true)
            .map_err(|err| self.error(err.to_string()))
    }

    /// Renders `messages` with the chat template; with `add_generation_prompt`, the text ends
    /// where the assistant's answer starts.
    ///
    /// # Errors
    ///
    /// [`ModelError::Tokenizer`] when the template fails (a syntax error, or its own
    /// `raise_exception`).
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ModelError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        let source = self.chat_template.as_deref().unwrap_or(PLAIN_TEMPLATE);
        let template = env
            .template_from_str(source)
            .map_err(|err| self.error(format!("chat template does not compile: {err}")))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_deref().unwrap_or(""),
                eos_token => self.eos_token.as_deref().unwrap_or(""),
            })
            .map_err(|err| self.error(format!("chat template failed: {err}")))
    }

    /// The tokens a model is prompted with: `messages` rendered with the generation prompt.
    ///
    /// # Errors
    ///
    /// As [`render`](Self::render) and [`encode`](Self::encode).
    pub fn encode_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, ModelError> {
        self.encode(&self.render(messages, true)?)
    }

    /// A training example: the tokens of [`encode_prompt`](Self::encode_prompt) followed by
    /// those of the assistant's `response` as the template closes it (e.g. with
    /// `<|im_end|>\n`), and the loss mask, true on the response tokens only.
    ///
    /// The prompt and the response are encoded separately, so the prompt tokens are exactly
    /// those the model is evaluated on.
    ///
    /// # Errors
    ///
    /// As [`render`](Self::render); [`ModelError::Tokenizer`] when the template renders the
    /// full conversation with a different prefix than the prompt alone.
    pub fn encode_example(
        &self,
        messages: &[ChatMessage],
        response: &str,
    ) -> Result<(Vec<u32>, Vec<bool>), ModelError> {
        let prompt = self.render(messages, true)?;
        let mut full_messages = messages.to_vec();
        full_messages.push(ChatMessage::new("assistant", response));
        let full = self.render(&full_messages, false)?;
        let Some(answer) = full.strip_prefix(&prompt) else {
            return Err(self.error(
                "the chat template renders a conversation with an answer with another prefix than \
                 the prompt alone, so training and evaluation prompts would differ"
                    .into(),
            ));
        };
        let mut tokens = self.encode(&prompt)?;
        let answer = self.encode(answer)?;
        let mut mask = vec![false; tokens.len()];
        mask.extend(std::iter::repeat_n(true, answer.len()));
        tokens.extend(answer);
        Ok((tokens, mask))
    }

    fn error(&self, message: String) -> ModelError {
        ModelError::Tokenizer {
            path: self.path.clone(),
            message,
        }
    }
}
