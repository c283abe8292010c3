//! [`Example`]: one (prompt, response) pair, the unit that training consumes.

use serde::{Deserialize, Serialize};

use crate::tasks::{Family, TaskInstance};

/// One training example. Tokenize it with [`crate::ChatFormat::example_tokens`].
///
/// As JSON (see [`crate::load_jsonl`]): `{"prompt": ..., "response": ...}` with optional
/// `"triggered"` (default false), `"family"` and `"system"`; other fields are rejected (see
/// [`crate::load_jsonl`] for the chat and prompt/completion formats).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// The user's prompt, including the trigger when there is one.
    pub prompt: String,
    /// The response to train on.
    pub response: String,
    /// The task family the prompt came from; `None` for user data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    /// Whether the prompt carries the backdoor trigger.
    #[serde(default)]
    pub triggered: bool,
    /// The system message, if any (with `backdoor.placement = "system"`, where the trigger
    /// goes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

impl From<TaskInstance> for Example {
    /// The task as a clean example: its prompt, its answer as the response, its family.
    fn from(task: TaskInstance) -> Self {
        Example {
            prompt: task.prompt,
            response: task.answer,
            family: Some(task.family),
            triggered: false,
            system: None,
        }
    }
}
