//! One executor for every remote destination: it takes a destination's plan — requests built
//! lazily, one at a time, plus the records the destination will not send — and sends it.
//!
//! - **Concurrency**: at most `max_concurrent_requests` requests of a destination are in flight,
//!   across every flush of the instance (one semaphore per destination); a request's body is
//!   built only when it is about to be sent, so memory is bounded by requests in flight.
//! - **Retry**: a retryable answer is retried after a full-jitter backoff with a floor (so
//!   `Retry-After: 0` cannot spin), or the server's `Retry-After`, while the flush deadline
//!   leaves room; then its records stay pending and Fluent Bit resends the chunk.
//! - **Partial retry**: an answer that accepted some units resends only the others.
//! - **Split**: an answer that blames the request's size or content (413, 400) is resent as two
//!   halves, down to the single record the remote refuses, which is rejected with its cause.
//! - **Outcome**: every record's fate is written into the shared [`Outcome`] as it settles, so
//!   a cancelled delivery still tells what got through.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::outcome::{Outcome, SharedOutcome};
use super::retry::Backoff;
use crate::log::Logger;
use fanout_core::packing::plan::{Planned, Request};
use fanout_core::packing::units::Units;

/// How the remote answered one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    Accepted,
    /// Some units were accepted; those at `failed` (indices into the request's units) were not
    /// and are worth resending.
    Partial {
        failed: Vec<usize>,
        reason: String,
    },
    /// Nothing accepted, worth another try; `after` is the server's `Retry-After`; `serious`
    /// errors (authentication, redirects) need an operator and are logged as errors.
    Retry {
        reason: String,
        after: Option<Duration>,
        serious: bool,
    },
    /// The request is refused for its size or content: send its halves separately.
    Split {
        reason: String,
    },
    /// Refused for good: another try would fail the same way.
    Rejected {
        reason: String,
    },
    /// The request's key does not exist (a Firehose stream answering
    /// `ResourceNotFoundException`): its records stay pending here; the destination's plan
    /// routes them again — to their next `||` alternative — in the same flush.
    Reroute {
        reason: String,
    },
}

/// How one request went, and how many HTTP requests went on the wire for it: usually one, two
/// when the destination sent it again another way (gzip after the intake refused zstd).
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub sent: Sent,
    pub requests: u64,
}

impl From<Sent> for Answer {
    fn from(sent: Sent) -> Answer {
        Answer { sent, requests: 1 }
    }
}

/// A destination's side of the executor: sending one request.
pub trait Endpoint: Send + Sync {
    type Key: Clone + Send + Sync;

    /// Builds the request's body and sends it, answering by `deadline`.
    fn send(
        &self,
        key: &Self::Key,
        units: &Units,
        deadline: Instant,
    ) -> impl Future<Output = Answer> + Send;

    /// How the key reads in log lines (e.g. `stream 'logs-x': `).
    fn describe(&self, key: &Self::Key) -> String;
}

/// Requests a destination keeps in flight before it has seen how long they take.
pub const EAGER_CONCURRENCY: usize = 2;

/// A request answered after at least this long means the remote is far (or slow) enough for
/// overlapping requests to pay: the destination allows one more in flight, up to
/// `max_concurrent_requests`. One answered sooner allows one fewer, down to
/// [`EAGER_CONCURRENCY`]. So a nearby intake keeps few request bodies in memory, and one an
/// ocean away gets the overlap it needs within a few answers.
pub const PATIENCE: Duration = Duration::from_millis(50);

/// What a remote destination keeps for its requests across flushes: its request slots
/// (`max_concurrent_requests`) and backoff.
pub struct Requests {
    slots: Semaphore,
    concurrency: usize,
    /// Requests a flush keeps in flight now, adapted to the remote's answer times.
    target: AtomicUsize,
    backoff: Backoff,
}

impl Requests {
    pub fn new(concurrency: usize) -> Requests {
        Requests {
            slots: Semaphore::new(concurrency),
            concurrency,
            target: AtomicUsize::new(EAGER_CONCURRENCY.min(concurrency)),
            backoff: Backoff::default(),
        }
    }

    /// Requests holding a slot now: sent and waiting for an answer, or waiting to retry.
    pub fn in_flight(&self) -> usize {
        self.concurrency
            .saturating_sub(self.slots.available_permits())
    }

    /// Sends `plan` through `endpoint` by `deadline`, writing fates into `outcome`.
    pub async fn run<E: Endpoint>(
        &self,
        endpoint: &E,
        plan: impl Iterator<Item = Planned<E::Key>>,
        outcome: &SharedOutcome,
        deadline: Instant,
        log: &Logger,
        name: &'static str,
    ) {
        Executor {
            endpoint,
            backoff: self.backoff,
            slots: &self.slots,
            concurrency: self.concurrency,
            target: &self.target,
            outcome,
            deadline,
            log,
            name,
        }
        .run(plan)
        .await
    }
}

pub struct Executor<'a, E: Endpoint> {
    pub endpoint: &'a E,
    pub backoff: Backoff,
    /// Request slots of this destination, shared by all flushes of the instance.
    pub slots: &'a Semaphore,
    /// The most requests one flush keeps in flight (the semaphore's size).
    pub concurrency: usize,
    /// How many it keeps in flight now (see [`PATIENCE`]).
    pub target: &'a AtomicUsize,
    pub outcome: &'a SharedOutcome,
    pub deadline: Instant,
    pub log: &'a Logger,
    pub name: &'static str,
}

impl<E: Endpoint> Executor<'_, E> {
    /// Sends the whole plan, or what the deadline allows of it.
    pub async fn run(&self, plan: impl Iterator<Item = Planned<E::Key>>) {
        let mut plan = plan;
        let mut queue: VecDeque<Request<E::Key>> = VecDeque::new();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < self.in_flight_allowed() && Instant::now() < self.deadline {
                let Some(request) = queue.pop_front().or_else(|| self.next_request(&mut plan))
                else {
                    break;
                };
                running.push(self.deliver(request));
            }
            match running.next().await {
                // Split halves go first, in order, so records keep their order.
                Some(follow_ups) => {
                    for request in follow_ups.into_iter().rev() {
                        queue.push_front(request);
                    }
                }
                None => break,
            }
        }
    }

    fn in_flight_allowed(&self) -> usize {
        self.target
            .load(Ordering::Relaxed)
            .clamp(1, self.concurrency)
    }

    /// One more request in flight after a slow answer, one fewer after a quick one.
    fn adapt(&self, answered_in: Duration) {
        let floor = EAGER_CONCURRENCY.min(self.concurrency);
        let _ = self
            .target
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |target| {
                Some(if answered_in >= PATIENCE {
                    (target + 1).min(self.concurrency)
                } else {
                    target.saturating_sub(1).max(floor)
                })
            });
    }

    /// The next request of the plan, recording what it drops on the way.
    fn next_request(
        &self,
        plan: &mut impl Iterator<Item = Planned<E::Key>>,
    ) -> Option<Request<E::Key>> {
        for planned in plan.by_ref() {
            match planned {
                Planned::Request(request) => return Some(request),
                Planned::Dropped { positions, cause } => {
                    Outcome::lock(self.outcome).drop_records(&positions, &cause)
                }
            }
        }
        None
    }

    /// Sends one request until it settles or the deadline leaves no room for another try;
    /// returns the halves to send when the remote asked for a split.
    async fn deliver(&self, mut request: Request<E::Key>) -> Vec<Request<E::Key>> {
        let permit = tokio::time::timeout_at(self.deadline, self.slots.acquire()).await;
        let Ok(Ok(_permit)) = permit else {
            Outcome::lock(self.outcome).transient(
                "no request slot before the deadline (max_concurrent_requests in use)",
                false,
            );
            return Vec::new();
        };
        let mut retries = 0u32;
        loop {
            let started = Instant::now();
            let Answer { sent, requests } = self
                .endpoint
                .send(&request.key, &request.units, self.deadline)
                .await;
            self.adapt(started.elapsed());
            let (reason, after, serious) = {
                let mut outcome = Outcome::lock(self.outcome);
                // Counted as they went on the wire, answered or not.
                outcome.requests += requests;
                match sent {
                    Sent::Accepted => {
                        outcome.accept(request.units.positions());
                        return Vec::new();
                    }
                    Sent::Rejected { reason } => {
                        outcome.reject(request.units.positions(), &reason);
                        return Vec::new();
                    }
                    Sent::Reroute { reason } => {
                        drop(outcome);
                        self.log.debug(format_args!(
                            "{}: {}{reason}; routing its records again",
                            self.name,
                            self.endpoint.describe(&request.key),
                        ));
                        return Vec::new();
                    }
                    Sent::Split { reason } if request.units.len() > 1 => {
                        drop(outcome);
                        self.log.debug(format_args!(
                            "{}: {}{reason}; resending its {} units as two requests",
                            self.name,
                            self.endpoint.describe(&request.key),
                            request.units.len()
                        ));
                        let (first, second) = request.units.halves();
                        return [first, second]
                            .into_iter()
                            .map(|units| Request {
                                key: request.key.clone(),
                                units,
                            })
                            .collect();
                    }
                    Sent::Split { reason } => {
                        outcome.reject(request.units.positions(), &reason);
                        return Vec::new();
                    }
                    Sent::Partial { failed, reason } => {
                        let accepted: Vec<usize> = (0..request.units.len())
                            .filter(|i| !failed.contains(i))
                            .flat_map(|i| request.units.positions_of(i).to_vec())
                            .collect();
                        outcome.accept(&accepted);
                        request.units = request.units.subset(&failed);
                        (reason, None, false)
                    }
                    Sent::Retry {
                        reason,
                        after,
                        serious,
                    } => (reason, after, serious),
                }
            };
            Outcome::lock(self.outcome).transient(&reason, serious);
            if request.units.is_empty() {
                return Vec::new();
            }
            let wait = after
                .unwrap_or_else(|| self.backoff.delay(retries))
                .max(self.backoff.floor);
            if Instant::now() + wait >= self.deadline {
                return Vec::new();
            }
            self.log.debug(format_args!(
                "{}: {}{reason}; retry {} of {} units in {wait:?}",
                self.name,
                self.endpoint.describe(&request.key),
                retries + 1,
                request.units.len()
            ));
            tokio::time::sleep(wait).await;
            retries += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::outcome::Tally;
    use crate::log::Level;
    use crate::log::testing::MemorySink;
    use std::sync::Mutex;

    /// How the scripted remote answers: from the records a request carries and the call count.
    type Script = Box<dyn Fn(&[usize], usize) -> Sent + Send + Sync>;

    /// A remote that answers from a script keyed by the records a request carries.
    struct Scripted {
        answer: Script,
        calls: AtomicUsize,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
        seen: Mutex<Vec<Vec<usize>>>,
        /// How long each answer takes.
        delay: Duration,
    }

    impl Scripted {
        fn new(answer: impl Fn(&[usize], usize) -> Sent + Send + Sync + 'static) -> Scripted {
            Scripted {
                answer: Box::new(answer),
                calls: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                most_in_flight: AtomicUsize::new(0),
                seen: Mutex::new(Vec::new()),
                delay: Duration::from_millis(100),
            }
        }

        fn answering_after(mut self, delay: Duration) -> Scripted {
            self.delay = delay;
            self
        }
    }

    impl Endpoint for Scripted {
        type Key = ();
        async fn send(&self, _key: &(), units: &Units, _deadline: Instant) -> Answer {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            self.seen.lock().unwrap().push(units.positions().to_vec());
            (self.answer)(units.positions(), call).into()
        }
        fn describe(&self, _key: &()) -> String {
            String::new()
        }
    }

    fn plan(requests: &[&[usize]]) -> Vec<Planned<()>> {
        requests
            .iter()
            .map(|positions| {
                let mut units = Units::default();
                for &p in positions.iter() {
                    units.push(b"x", &[p]);
                }
                Planned::Request(Request { key: (), units })
            })
            .collect()
    }

    async fn run(
        endpoint: &Scripted,
        plan: Vec<Planned<()>>,
        records: usize,
        concurrency: usize,
        seconds: u64,
    ) -> Tally {
        let outcome = Outcome::shared(records);
        let slots = Semaphore::new(concurrency);
        let target = AtomicUsize::new(EAGER_CONCURRENCY.min(concurrency));
        let sink = MemorySink::new(Level::Debug);
        let log = Logger::new("t", sink);
        Executor {
            endpoint,
            backoff: Backoff::default(),
            slots: &slots,
            concurrency,
            target: &target,
            outcome: &outcome,
            deadline: Instant::now() + Duration::from_secs(seconds),
            log: &log,
            name: "test",
        }
        .run(plan.into_iter())
        .await;
        Outcome::lock(&outcome).tally()
    }

    #[tokio::test(start_paused = true)]
    async fn a_400_on_one_request_isolates_the_record_and_delivers_the_rest() {
        // Four requests of 4 records; record 6 is refused by the remote wherever it goes.
        let remote = Scripted::new(|positions, _| {
            if positions.contains(&6) {
                if positions.len() > 1 {
                    Sent::Split {
                        reason: "HTTP 400".into(),
                    }
                } else {
                    Sent::Split {
                        reason: "HTTP 400: bad record".into(),
                    }
                }
            } else {
                Sent::Accepted
            }
        });
        let tally = run(
            &remote,
            plan(&[
                &[0, 1, 2, 3],
                &[4, 5, 6, 7],
                &[8, 9, 10, 11],
                &[12, 13, 14, 15],
            ]),
            16,
            1,
            30,
        )
        .await;
        assert_eq!(tally.accepted, 15);
        assert_eq!(
            tally.rejected,
            vec![("HTTP 400: bad record".to_string(), 1)]
        );
        assert_eq!(tally.pending, 0);
        let seen = remote.seen.lock().unwrap().clone();
        assert!(
            seen.contains(&vec![8, 9, 10, 11]),
            "requests after the refused one are sent: {seen:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_zero_does_not_spin_and_the_deadline_leaves_records_pending() {
        let remote = Scripted::new(|_, _| Sent::Retry {
            reason: "HTTP 429".into(),
            after: Some(Duration::ZERO),
            serious: false,
        });
        let tally = run(&remote, plan(&[&[0, 1]]), 2, 1, 5).await;
        assert_eq!(tally.pending, 2);
        let calls = remote.calls.load(Ordering::SeqCst);
        // Each try takes 100 ms plus a floor of 100 ms: about 25 in 5 s, never thousands.
        assert!((10..=30).contains(&calls), "{calls} calls");
    }

    #[tokio::test(start_paused = true)]
    async fn partial_failures_resend_only_what_failed() {
        let remote = Scripted::new(|positions, call| {
            if call == 0 {
                Sent::Partial {
                    failed: vec![1],
                    reason: "1 of 3 failed".into(),
                }
            } else {
                assert_eq!(positions, &[1]);
                Sent::Accepted
            }
        });
        let tally = run(&remote, plan(&[&[0, 1, 2]]), 3, 1, 30).await;
        assert_eq!(tally.accepted, 3);
        assert_eq!(
            remote.seen.lock().unwrap().clone(),
            vec![vec![0, 1, 2], vec![1]]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_run_concurrently_up_to_the_limit() {
        let remote = Scripted::new(|_, _| Sent::Accepted);
        let requests: Vec<Vec<usize>> = (0..10).map(|i| vec![i]).collect();
        let refs: Vec<&[usize]> = requests.iter().map(Vec::as_slice).collect();
        let tally = run(&remote, plan(&refs), 10, 4, 30).await;
        assert_eq!(tally.accepted, 10);
        assert_eq!(remote.most_in_flight.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn overlap_grows_only_for_a_remote_that_answers_slowly() {
        let requests: Vec<Vec<usize>> = (0..40).map(|i| vec![i]).collect();
        let refs: Vec<&[usize]> = requests.iter().map(Vec::as_slice).collect();
        let near = Scripted::new(|_, _| Sent::Accepted).answering_after(Duration::from_millis(2));
        assert_eq!(run(&near, plan(&refs), 40, 16, 30).await.accepted, 40);
        assert_eq!(
            near.most_in_flight.load(Ordering::SeqCst),
            EAGER_CONCURRENCY,
            "a nearby intake: few request bodies held at once"
        );
        let far = Scripted::new(|_, _| Sent::Accepted).answering_after(Duration::from_millis(150));
        assert_eq!(run(&far, plan(&refs), 40, 16, 30).await.accepted, 40);
        assert_eq!(
            far.most_in_flight.load(Ordering::SeqCst),
            16,
            "an intake 150 ms away: the full overlap"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_records_and_permanent_refusals_are_kept_with_their_causes() {
        let remote = Scripted::new(|positions, _| {
            if positions.contains(&0) {
                Sent::Rejected {
                    reason: "ResourceNotFoundException".into(),
                }
            } else {
                Sent::Accepted
            }
        });
        let mut planned = plan(&[&[0, 1], &[3]]);
        planned.insert(
            1,
            Planned::Dropped {
                positions: vec![2],
                cause: "too large".into(),
            },
        );
        let outcome_tally = run(&remote, planned, 4, 2, 30).await;
        assert_eq!(outcome_tally.accepted, 1);
        assert_eq!(outcome_tally.dropped, vec![("too large".to_string(), 1)]);
        assert_eq!(
            outcome_tally.rejected,
            vec![("ResourceNotFoundException".to_string(), 2)]
        );
    }
}
