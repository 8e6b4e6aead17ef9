//! The plumbing the fake endpoints share: an HTTP server on 127.0.0.1 that answers each
//! request from a script of replies (a default when it runs out) and records what it received.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a fake endpoint keeps: replies still to give, requests already seen.
pub struct Script<Reply, Seen> {
    pub replies: VecDeque<Reply>,
    pub seen: Vec<Seen>,
}

type Handler<Reply, Seen> = fn(tiny_http::Request, &Mutex<Script<Reply, Seen>>);

pub struct ScriptedServer<Reply, Seen> {
    pub url: String,
    script: Arc<Mutex<Script<Reply, Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl<Reply: Send + 'static, Seen: Clone + Send + 'static> ScriptedServer<Reply, Seen> {
    /// Serves requests with `handle` on a thread until dropped.
    pub fn start(handle: Handler<Reply, Seen>) -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1");
        let url = format!(
            "http://{}",
            server.server_addr().to_ip().expect("an IP listener")
        );
        let script = Arc::new(Mutex::new(Script {
            replies: VecDeque::new(),
            seen: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (script, stop) = (Arc::clone(&script), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(50)) {
                        handle(request, &script);
                    }
                }
            })
        };
        ScriptedServer {
            url,
            script,
            stop,
            thread: Some(thread),
        }
    }

    /// Answers for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().replies.extend(replies);
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
