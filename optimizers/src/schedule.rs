//! Learning-rate schedules as pure functions of the step, so a resumed run needs no scheduler
//! state. Each is checked step for step against the burn-optim scheduler it mirrors.

use serde::{Deserialize, Serialize};

use crate::error::ScheduleError;

/// How the learning rate changes over a stage of `total_steps` steps. The spec's `lr` is the
/// peak; the schedule multiplies it by [`LrSchedule::factor`].
///
/// In TOML: `schedule = { kind = "warmup-cosine", warmup_fraction = 0.1 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LrSchedule {
    /// The same learning rate at every step.
    #[default]
    Constant,
    /// Linear warm-up from `lr / W` to `lr` over the first `W = round(warmup_fraction * total)`
    /// steps, then cosine decay to `min_lr_ratio * lr` (burn's Linear then CosineAnnealing).
    WarmupCosine {
        /// Fraction of the steps spent warming up, in `[0, 1)`.
        #[serde(default = "default_warmup")]
        warmup_fraction: f64,
        /// Final learning rate as a fraction of the peak, in `[0, 1]`.
        #[serde(default)]
        min_lr_ratio: f64,
    },
    /// Linear decay from `lr` towards `final_lr_ratio * lr`, reached one step after the last
    /// (burn's LinearLrScheduler).
    LinearDecay {
        /// Final learning rate as a fraction of the peak, in `[0, 1]`.
        #[serde(default)]
        final_lr_ratio: f64,
    },
}

fn default_warmup() -> f64 {
    0.1
}

impl LrSchedule {
    /// The linear warm-up and cosine decay of the replication's insertion runs (10% warm-up).
    pub fn warmup_cosine() -> Self {
        LrSchedule::WarmupCosine {
            warmup_fraction: default_warmup(),
            min_lr_ratio: 0.0,
        }
    }

    /// Check the schedule's parameters; the error names the key and its range.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        let check = |schedule: &str, key: &str, value: f64, ok: bool, range: &str| {
            if ok && value.is_finite() {
                Ok(())
            } else {
                Err(ScheduleError {
                    schedule: schedule.into(),
                    key: key.into(),
                    value: value.to_string(),
                    range: range.into(),
                })
            }
        };
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::WarmupCosine {
                warmup_fraction,
                min_lr_ratio,
            } => {
                check(
                    "warmup-cosine",
                    "warmup_fraction",
                    warmup_fraction,
                    (0.0..1.0).contains(&warmup_fraction),
                    "[0, 1)",
                )?;
                check(
                    "warmup-cosine",
                    "min_lr_ratio",
                    min_lr_ratio,
                    (0.0..=1.0).contains(&min_lr_ratio),
                    "[0, 1]",
                )
            }
            LrSchedule::LinearDecay { final_lr_ratio } => check(
                "linear-decay",
                "final_lr_ratio",
                final_lr_ratio,
                (0.0..=1.0).contains(&final_lr_ratio),
                "[0, 1]",
            ),
        }
    }

    /// Number of warm-up steps for a stage of `total_steps`.
    pub fn warmup_steps(&self, total_steps: usize) -> usize {
        match *self {
            LrSchedule::WarmupCosine {
                warmup_fraction, ..
            } => ((warmup_fraction * total_steps as f64).round() as usize).min(total_steps),
            _ => 0,
        }
    }

    /// The multiplier of the peak learning rate at 0-based `step` of a stage of `total_steps`.
    pub fn factor(&self, step: usize, total_steps: usize) -> f64 {
        let total = total_steps.max(1);
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::WarmupCosine { min_lr_ratio, .. } => {
                let warmup = self.warmup_steps(total);
                if step < warmup {
                    (step + 1) as f64 / warmup as f64
                } else {
                    let span = (total - warmup).max(1) as f64;
                    let progress = (step - warmup) as f64 / span;
                    min_lr_ratio
                        + (1.0 - min_lr_ratio)
                            * 0.5
                            * (1.0 + (std::f64::consts::PI * progress).cos())
                }
            }
            LrSchedule::LinearDecay { final_lr_ratio } => {
                1.0 - (1.0 - final_lr_ratio) * step as f64 / total as f64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::lr_scheduler::{
        LrSchedulerConfig, cosine::CosineAnnealingLrSchedulerConfig,
        linear::LinearLrSchedulerConfig, sequential::SequentialLrSchedulerConfig,
    };

    fn burn_sequence(config: SequentialLrSchedulerConfig, n: usize) -> Vec<f64> {
        let mut scheduler = config.init().expect("valid burn scheduler");
        (0..n).map(|_| scheduler.step().base()).collect()
    }

    #[test]
    fn warmup_cosine_matches_burn_linear_then_cosine() {
        let (lr, total) = (0.5, 50);
        let schedule = LrSchedule::WarmupCosine {
            warmup_fraction: 0.1,
            min_lr_ratio: 0.1,
        };
        let warmup = schedule.warmup_steps(total);
        assert_eq!(warmup, 5);
        let burn = burn_sequence(
            SequentialLrSchedulerConfig::new(
                vec![
                    LrSchedulerConfig::Linear(LinearLrSchedulerConfig::new(
                        lr / warmup as f64,
                        lr,
                        warmup - 1,
                    )),
                    LrSchedulerConfig::Cosine(
                        CosineAnnealingLrSchedulerConfig::new(lr, total - warmup)
                            .with_min_lr(0.1 * lr),
                    ),
                ],
                vec![warmup],
            ),
            total,
        );
        for (step, expected) in burn.iter().enumerate() {
            let ours = lr * schedule.factor(step, total);
            assert!(
                (ours - expected).abs() < 1e-12,
                "step {step}: {ours} vs burn {expected}"
            );
        }
    }

    #[test]
    fn linear_decay_matches_burn_linear() {
        let (lr, total) = (0.2, 40);
        let schedule = LrSchedule::LinearDecay {
            final_lr_ratio: 0.25,
        };
        let burn = burn_sequence(
            SequentialLrSchedulerConfig::new(
                vec![LrSchedulerConfig::Linear(LinearLrSchedulerConfig::new(
                    lr,
                    0.25 * lr,
                    total,
                ))],
                vec![],
            ),
            total,
        );
        for (step, expected) in burn.iter().enumerate() {
            let ours = lr * schedule.factor(step, total);
            assert!(
                (ours - expected).abs() < 1e-12,
                "step {step}: {ours} vs burn {expected}"
            );
        }
    }

    #[test]
    fn constant_is_one() {
        assert!((0..10).all(|s| LrSchedule::Constant.factor(s, 10) == 1.0));
    }

    #[test]
    fn bad_parameters_name_the_key() {
        let err = LrSchedule::WarmupCosine {
            warmup_fraction: 1.5,
            min_lr_ratio: 0.0,
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("warmup_fraction"), "{err}");
        assert!(err.to_string().contains("[0, 1)"), "{err}");
        let err = LrSchedule::LinearDecay {
            final_lr_ratio: -0.1,
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("final_lr_ratio"), "{err}");
    }

    #[test]
    fn toml_round_trip_and_unknown_key() {
        let s: LrSchedule = toml::from_str("kind = \"warmup-cosine\"").unwrap();
        assert_eq!(s, LrSchedule::warmup_cosine());
        let err = toml::from_str::<LrSchedule>("kind = \"warmup-cosine\"\nwarmup = 3").unwrap_err();
        assert!(err.to_string().contains("unknown field `warmup`"), "{err}");
        let err = toml::from_str::<LrSchedule>("kind = \"step\"").unwrap_err();
        assert!(err.to_string().contains("constant"), "{err}");
    }
}
