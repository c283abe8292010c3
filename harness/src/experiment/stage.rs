//! [`Stage`]: the stages of an experiment, by name, everywhere one is named.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A stage of an experiment, in the order they run. Written on disk (`metrics.jsonl`,
/// `generations.jsonl`, `summary.json`, cache folders) as `base`, `insert`, `remove` and
/// `probe`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Clean instruction training (or the imported weights).
    Base,
    /// The red team inserts the backdoor.
    Insert,
    /// The blue team trains to remove it.
    Remove,
    /// An optional stage after removal (e.g. de-pirating: does the backdoor come back?).
    Probe,
}

impl Stage {
    /// Every stage, in the order they run.
    pub const ALL: [Stage; 4] = [Stage::Base, Stage::Insert, Stage::Remove, Stage::Probe];

    /// The name on disk and in configs: `base`, `insert`, `remove`, `probe`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Base => "base",
            Stage::Insert => "insert",
            Stage::Remove => "remove",
            Stage::Probe => "probe",
        }
    }

    /// The names, for error messages: `base, insert, remove, probe`.
    pub fn names() -> String {
        Self::ALL.map(Stage::name).join(", ")
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Stage {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| format!("no stage `{name}`; stages: {}", Self::names()))
    }
}

impl PartialEq<&str> for Stage {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_from_str() {
        for stage in Stage::ALL {
            let json = serde_json::to_string(&stage).unwrap();
            assert_eq!(json, format!("\"{}\"", stage.name()));
            assert_eq!(serde_json::from_str::<Stage>(&json).unwrap(), stage);
            assert_eq!(stage.name().parse::<Stage>().unwrap(), stage);
        }
        assert!(
            "cell"
                .parse::<Stage>()
                .unwrap_err()
                .contains("base, insert, remove, probe")
        );
    }
}
