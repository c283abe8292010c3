//! The experiment as data: the typed, validated experiment file ([`config`]), its stages
//! ([`stage`]), its model and text codec ([`model`]), RL removal's settings ([`rl`]), paths relative to the file ([`paths`]),
//! dotted-key overrides ([`overrides`]) and the cells of a `[sweep]` grid ([`sweep`]).
//!
//! Nothing here trains, evaluates or writes files.

pub mod config;
pub mod model;
pub mod overrides;
pub mod paths;
pub mod rl;
pub mod stage;
pub mod sweep;
pub mod until;

pub use config::{DataSection, EvalConfig, Experiment, Organism, RemoveConfig, StageConfig};
pub use model::{ModelSection, ModelSource, Sequence, TextCodec};
pub use overrides::{lookup, set, short};
pub use rl::{Advantage, RewardTerm, RlConfig};
pub use stage::Stage;
pub use sweep::{Cell, cells};
pub use until::{CriterionCheck, CriterionOutcome, RuleMetric, StopRule};
