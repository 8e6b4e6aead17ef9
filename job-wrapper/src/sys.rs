//! The wrapper's only `unsafe` code: sending signals and reaping orphans.

/// Sends `signal` to the process group `pgid` (the command and anything it started). Only a
/// real child's group: kill(0) would signal the wrapper's own group and kill(-1) every process
/// it may signal, so those ids are refused.
pub fn signal_group(pgid: u32, signal: i32) {
    let Some(pgid) = i32::try_from(pgid).ok().filter(|pgid| *pgid > 1) else {
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
