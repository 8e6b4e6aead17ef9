//! The plumbing the fake endpoints share: an HTTP server on 127.0.0.1 that answers each
//! request from a script of replies (a default when it runs out) and records what it received.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a fake endpoint keeps: replies still to give, requests already seen, and an outage
/// (a reply given to every request until a moment) that comes before the script.
pub struct Script<Reply, Seen> {
    pub replies: VecDeque<Reply>,
    pub seen: Vec<Seen>,
    pub outage: Option<(Instant, Reply)>,
}

impl<Reply: Clone, Seen> Script<Reply, Seen> {
    /// The answer for the next request: the outage's while it lasts, else the script's.
    pub fn next_reply(&mut self) -> Option<Reply> {
        match &self.outage {
            Some((until, reply)) if Instant::now() < *until => Some(reply.clone()),
            _ => self.replies.pop_front(),
        }
    }
}

type Handler<Reply, Seen> = fn(tiny_http::Request, &Mutex<Script<Reply, Seen>>);

pub struct ScriptedServer<Reply, Seen> {
    pub url: String,
    script: Arc<Mutex<Script<Reply, Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The most requests being answered at once.
    most_in_flight: Arc<AtomicUsize>,
}

impl<Reply: Send + 'static, Seen: Clone + Send + 'static> ScriptedServer<Reply, Seen> {
    /// Serves requests with `handle`, one at a time, on a thread until dropped.
    pub fn start(handle: Handler<Reply, Seen>) -> Self {
        Self::serve(handle, None)
    }

    /// Serves every request on a thread of its own, answering after `delay` (a remote
    /// intake's round trip), so concurrent requests are really concurrent.
    pub fn start_concurrent(handle: Handler<Reply, Seen>, delay: Duration) -> Self {
        Self::serve(handle, Some(delay))
    }

    fn serve(handle: Handler<Reply, Seen>, delay: Option<Duration>) -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1");
        let url = format!(
            "http://{}",
            server.server_addr().to_ip().expect("an IP listener")
        );
        let script = Arc::new(Mutex::new(Script {
            replies: VecDeque::new(),
            seen: Vec::new(),
            outage: None,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most_in_flight = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (script, stop) = (Arc::clone(&script), Arc::clone(&stop));
            let (in_flight, most) = (Arc::clone(&in_flight), Arc::clone(&most_in_flight));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(50)) else {
                        continue;
                    };
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    match delay {
                        None => {
                            handle(request, &script);
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                        }
                        Some(delay) => {
                            let (script, in_flight) = (Arc::clone(&script), Arc::clone(&in_flight));
                            std::thread::spawn(move || {
                                std::thread::sleep(delay);
                                // Counted out before answering: the client cannot send its
                                // next request before it has this answer.
                                in_flight.fetch_sub(1, Ordering::SeqCst);
                                handle(request, &script);
                            });
                        }
                    }
                }
            })
        };
        ScriptedServer {
            url,
            script,
            stop,
            thread: Some(thread),
            most_in_flight,
        }
    }

    /// The most requests that were being answered at the same time.
    pub fn most_in_flight(&self) -> usize {
        self.most_in_flight.load(Ordering::SeqCst)
    }

    /// Answers for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().replies.extend(replies);
    }

    /// Answers every request with `reply` for `duration` from now.
    pub fn outage(&self, duration: Duration, reply: Reply) {
        self.script.lock().unwrap().outage = Some((Instant::now() + duration, reply));
    }

    /// Drops the replies not given yet.
    pub fn script_clear(&self) {
        self.script.lock().unwrap().replies.clear();
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }
}

impl<Reply, Seen> Drop for ScriptedServer<Reply, Seen> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
