//! glibc malloc settings of the `eggroll` binary, made once at start, before any thread.

/// Caps glibc's malloc arenas at the machine's core count (its default is eight per core):
/// each arena keeps what its threads freed, and with a task thread per partition that kept
/// memory was a fifth of the demo's peak (1M ids: 608 MB, 495 MB with two arenas on two
/// cores, at the same speed). `MALLOC_ARENA_MAX`, when set, still decides.
pub fn cap_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // SAFETY: mallopt only changes an allocator setting; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores.min(64) as i32);
        }
    }
}

/// Keeps packet-sized buffers (megabytes) in glibc's heap instead of a fresh `mmap` each:
/// page-faulting new pages for every packet cost a roll-site more CPU than moving the bytes.
/// Freed memory above 256 MiB still goes back to the system.
pub fn tune_for_packets() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
