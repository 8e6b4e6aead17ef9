//! The wrapper's only `unsafe` code: sending signals, reaping orphans, sizing pipes.

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

/// Asks for a pipe buffer of `bytes` on `fd` (Linux `F_SETPIPE_SZ`; up to
/// `/proc/sys/fs/pipe-max-size`, 1 MiB by default): a command writing faster than the wrapper
/// wakes it once per megabyte instead of once per 64 KiB. Nothing happens where it is refused.
pub fn grow_pipe(fd: std::os::fd::RawFd, bytes: usize) {
    let Ok(bytes) = libc::c_int::try_from(bytes) else {
        return;
    };
    // SAFETY: fcntl(F_SETPIPE_SZ) on a descriptor we own only resizes the kernel's pipe buffer;
    // on a descriptor that is not a pipe, or a size over the limit, it fails with EBADF/EPERM.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, bytes);
    }
}
