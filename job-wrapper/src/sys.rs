//! The wrapper's only `unsafe` code: sending signals and reaping orphans.

/// Sends `signal` to the process group `pgid` (the command and anything it started).
pub fn signal_group(pgid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals that process group; it has no memory
    // effects, and a group that is already gone only yields ESRCH.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Collects exited children other than the command (orphans re-parented to us when we are
/// PID 1), so they do not linger as zombies.
pub fn reap_orphans() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid(-1, WNOHANG) only reports and frees already-exited children.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
}
