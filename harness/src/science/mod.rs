//! The science of one cell, with no files, caching or progress output in it: the data and
//! training of each stage ([`stages`]), the training loop ([`train`]), evaluation at an eval
//! point ([`eval`]), RL removal's sampling, rewards and loss ([`rl`]) and intervals on rates
//! ([`stats`]). What it reports goes through an
//! [`Observer`] ([`observe`]).

pub mod eval;
pub mod observe;
pub mod rl;
pub mod stages;
pub mod stats;
pub mod train;

pub use eval::{EvalRecord, EvalSet, Generation, rates};
pub use observe::{Observer, Silent, StageObserver};
pub use rl::{Completion, Reward, RlStepStats, TermsReward};
pub use stages::{EvalPoint, Science, eval_line, stage_seed};
pub use stats::{PairedDifference, Rate};
pub use train::{Next, TrainOutcome, TrainPlan, for_eval, tokenize, train, train_with};
