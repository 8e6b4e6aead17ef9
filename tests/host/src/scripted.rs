//! The plumbing the fake endpoints share: an HTTP server on 127.0.0.1 that answers each
//! request from a script of replies (a default when it runs out) and records what it received.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// One HTTP request as a stand-in sees it, body read in full.
pub struct Incoming {
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Incoming {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The first header of that name, compared case-insensitively.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A stand-in's answer.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

type Handler<Reply, Seen> = fn(Incoming, &Mutex<Script<Reply, Seen>>) -> Answer;

/// hyper rather than a thread-per-connection server: tiny_http 0.12's connection pool can
/// leave a keep-alive connection unserved when two arrive together (its second wake-up is lost
/// while one thread is still waking), and a request on that connection then waits until the
/// client gives up — which a test of concurrent requests sees as a flaky RETRY.
pub struct ScriptedServer<Reply, Seen> {
    pub url: String,
    script: Arc<Mutex<Script<Reply, Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// The most requests being answered at once.
    most_in_flight: Arc<AtomicUsize>,
}

impl<Reply: Send + 'static, Seen: Clone + Send + 'static> ScriptedServer<Reply, Seen> {
    /// Serves requests with `handle`, one at a time, until dropped.
    pub fn start(handle: Handler<Reply, Seen>) -> Self {
        Self::serve(handle, None)
    }

    /// Serves requests concurrently, answering each after `delay` (a remote intake's round
    /// trip), so concurrent requests are really concurrent.
    pub fn start_concurrent(handle: Handler<Reply, Seen>, delay: Duration) -> Self {
        Self::serve(handle, Some(delay))
    }

    fn serve(handle: Handler<Reply, Seen>, delay: Option<Duration>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("an IP listener"));
        let script = Arc::new(Mutex::new(Script {
            replies: VecDeque::new(),
            seen: Vec::new(),
            outage: None,
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = Arc::new(Shared {
            handle,
            delay,
            script: Arc::clone(&script),
            one_at_a_time: tokio::sync::Mutex::new(()),
            in_flight: AtomicUsize::new(0),
            most_in_flight: Arc::new(AtomicUsize::new(0)),
        });
        let most_in_flight = Arc::clone(&shared.most_in_flight);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the stand-in");
            runtime.block_on(accept(listener, shared, stopped));
        });
        ScriptedServer {
            url,
            script,
            stop: Some(stop),
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What every connection of one stand-in shares.
struct Shared<Reply, Seen> {
    handle: Handler<Reply, Seen>,
    delay: Option<Duration>,
    script: Arc<Mutex<Script<Reply, Seen>>>,
    /// Held while answering when requests are served one at a time.
    one_at_a_time: tokio::sync::Mutex<()>,
    in_flight: AtomicUsize,
    most_in_flight: Arc<AtomicUsize>,
}

/// Accepts connections until `stopped`; dropping the runtime afterwards closes them all.
async fn accept<Reply: Send + 'static, Seen: Send + 'static>(
    listener: std::net::TcpListener,
    shared: Arc<Shared<Reply, Seen>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(answer(&shared, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer<Reply, Seen>(
    shared: &Shared<Reply, Seen>,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    use http_body_util::BodyExt;
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let incoming = Incoming {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let _turn = match shared.delay {
        None => Some(shared.one_at_a_time.lock().await),
        Some(_) => None,
    };
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.most_in_flight.fetch_max(now, Ordering::SeqCst);
    if let Some(delay) = shared.delay {
        tokio::time::sleep(delay).await;
    }
    // Counted out before answering: the client cannot send its next request before it has
    // this answer.
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    let answer = (shared.handle)(incoming, &shared.script);
    let mut response = hyper::Response::builder().status(answer.status);
    for (name, value) in answer.headers {
        response = response.header(name, value);
    }
    response
        .body(http_body_util::Full::new(answer.body.into()))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn ok(_: Incoming, _: &Mutex<Script<(), ()>>) -> Answer {
        Answer {
            status: 200,
            headers: Vec::new(),
            body: "ok".to_owned(),
        }
    }

    /// The case tiny_http 0.12 lost about one round in fifteen: keep-alive connections that
    /// stay open, arriving two at a time. Every one must be answered.
    #[test]
    fn keep_alive_connections_arriving_together_are_all_answered() {
        for round in 0..50 {
            let server = ScriptedServer::start_concurrent(ok, Duration::from_millis(1));
            let addr = server.url.trim_start_matches("http://").to_owned();
            let mut open = Vec::new();
            for _ in 0..4 {
                let pair: Vec<_> = (0..2)
                    .map(|_| {
                        let addr = addr.clone();
                        std::thread::spawn(move || {
                            let mut connection = TcpStream::connect(addr).unwrap();
                            // A bound for a hang, not a timing assertion.
                            connection
                                .set_read_timeout(Some(Duration::from_secs(20)))
                                .unwrap();
                            connection
                                .write_all(b"GET / HTTP/1.1\r\nHost: stand-in\r\n\r\n")
                                .unwrap();
                            let mut head = [0u8; 12];
                            let answered = connection.read_exact(&mut head).is_ok();
                            (connection, answered.then_some(head))
                        })
                    })
                    .collect();
                for thread in pair {
                    let (connection, head) = thread.join().unwrap();
                    assert_eq!(
                        head.as_ref().map(|h| &h[..]),
                        Some(&b"HTTP/1.1 200"[..]),
                        "round {round}: a connection was never answered"
                    );
                    open.push(connection);
                }
            }
        }
    }
}
