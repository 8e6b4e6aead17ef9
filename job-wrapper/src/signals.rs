//! The signals the wrapper acts on, installed once at start: as PID 1 a signal without a
//! handler is ignored, and a signal that arrives before a handler exists is lost.

use tokio::signal::unix::{Signal, SignalKind, signal};

pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next SIGTERM, SIGINT or SIGHUP received, as its number.
    pub async fn next(&mut self) -> i32 {
        tokio::select! {
            biased;
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.int.recv() => libc::SIGINT,
            _ = self.hup.recv() => libc::SIGHUP,
        }
    }

    /// The next SIGTERM or SIGINT (a SIGHUP before it is ignored): the pod is being stopped.
    pub async fn stopping(&mut self) -> i32 {
        loop {
            let signal = self.next().await;
            if signal != libc::SIGHUP {
                return signal;
            }
        }
    }
}
