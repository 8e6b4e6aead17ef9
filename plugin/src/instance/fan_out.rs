//! Fan-out and settling: one chunk decoded once, delivered to every destination at once, each
//! destination's outcome folded into the flush's answer, the counters, the ledger and the
//! dead letter.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::{FlushStatus, Job, Pipeline, shorten};
use crate::dead_letter::Refused;
use crate::delivery::outcome::{Fate, Outcome, SharedOutcome};
use crate::ledger::{ChunkId, Progress};
use crate::stats;
use fanout_core::decode::decode_chunk;
use fanout_core::record::Batch;

/// One destination's part of a chunk: which records it still needs, and their fates.
struct Part {
    index: usize,
    /// Positions in the chunk of the records sent to it (its outcome's positions index this).
    wanted: Vec<usize>,
    outcome: SharedOutcome,
}

impl Pipeline {
    /// Decodes and delivers one chunk, answers the flush, and says whether the chunk held
    /// job-wrapper's real end-of-job record (when `exit_on_job_end` is on).
    pub(super) async fn process(&self, job: Job) -> (FlushStatus, bool) {
        let Job {
            chunk,
            reserved: _,
            tag,
            received,
            reply,
            cancel,
        } = job;
        stats::add(&self.stats.chunks, 1);
        let id = ChunkId::of(&tag, &chunk);
        let chunk_len = chunk.len();
        // The records are read in place: the chunk's copy lives as long as its batch.
        let decoded = match decode_chunk(chunk) {
            Ok(decoded) => decoded,
            Err(e) => {
                stats::add(&self.stats.rejected_chunks, 1);
                self.log.error(format_args!(
                    "dropping a chunk of {chunk_len} bytes with tag '{}': {e}",
                    shorten(&tag)
                ));
                let _ = reply.send(FlushStatus::Error);
                return (FlushStatus::Error, false);
            }
        };
        stats::add(
            &self.stats.skipped_records,
            decoded.anomalies.skipped_records(),
        );
        stats::add(
            &self.stats.altered_values,
            decoded.anomalies.altered_values(),
        );
        if let Some(description) = decoded.anomalies.describe() {
            self.log.warn(format_args!(
                "chunk with tag '{}': {description}",
                shorten(&tag)
            ));
        }
        let records = decoded.records.len();
        stats::add(&self.stats.records, records as u64);
        if records == 0 {
            let _ = reply.send(FlushStatus::Ok);
            return (FlushStatus::Ok, false);
        }
        let job_end = self.job_end.as_ref().is_some_and(|end| {
            let claims =
                end.judge_chunk(&decoded.records, &self.config.message_keys, &tag, &self.log);
            stats::add(&self.stats.forged_job_end, claims.forged);
            claims.genuine
        });
        let batch = Arc::new(Batch::new(tag, decoded.records));
        // This delivery owns the chunk's progress until it answers: taken from the ledger now,
        // put back only if Fluent Bit is to resend.
        let mut progress = self.ledger.take(id, self.destinations.len());
        let timeout = self.config.flush_timeout;
        let deadline = tokio::time::Instant::from(received + timeout);
        // Destinations stop retrying a little before the hard deadline, so they can say what
        // failed instead of being cancelled mid-request.
        let soft_deadline = deadline - (timeout / 10).min(Duration::from_secs(1));
        let mut parts = Vec::new();
        let mut deliveries = JoinSet::new();
        for (index, destination) in self.destinations.iter().enumerate() {
            let previous = &progress[index];
            let wanted: Vec<usize> = (0..records).filter(|p| !previous.is_settled(*p)).collect();
            stats::add(
                &self.destination_stats[index].resend_skipped,
                (records - wanted.len()) as u64,
            );
            if wanted.is_empty() {
                progress[index].done = true;
                continue;
            }
            let part = if wanted.len() == records {
                Arc::clone(&batch)
            } else {
                Arc::new(batch.subset(wanted.clone()))
            };
            let outcome = Outcome::shared(wanted.len());
            let destination = Arc::clone(destination);
            let shared = Arc::clone(&outcome);
            deliveries
                .spawn(async move { destination.deliver(&part, soft_deadline, &shared).await });
            parts.push(Part {
                index,
                wanted,
                outcome,
            });
        }
        let all_done = async { while deliveries.join_next().await.is_some() {} };
        tokio::select! {
            _ = all_done => {}
            _ = tokio::time::sleep_until(deadline) => {
                self.log.warn(format_args!(
                    "deliveries did not finish within flush_timeout ({timeout:?}); Fluent Bit will retry what is pending"
                ));
            }
            _ = cancel => {}
        }
        // Whatever is still running is cancelled; what it settled is in its outcome.
        deliveries.abort_all();
        self.keep_refused(&parts, &batch, soft_deadline).await;
        let status = self.settle(&parts, &mut progress, &batch);
        if status == FlushStatus::Retry {
            let put = || self.ledger.put(id, progress);
            // With ledger_file the entry is synced to disk: let the runtime's one worker hand
            // its other tasks on meanwhile, so an fsync never stalls the other deliveries.
            let flavor = tokio::runtime::Handle::current().runtime_flavor();
            if self.ledger.is_journaled() && flavor == tokio::runtime::RuntimeFlavor::MultiThread {
                tokio::task::block_in_place(put);
            } else {
                put();
            }
        }
        // The flush side may have given up already; nothing to do then.
        let _ = reply.send(status);
        (status, job_end)
    }

    /// Folds each destination's outcome into the chunk's progress, the counters and one log
    /// line per cause, and decides the flush status.
    fn settle(&self, parts: &[Part], progress: &mut [Progress], batch: &Batch) -> FlushStatus {
        let records = batch.len();
        let mut pending = false;
        let mut refused = false;
        for part in parts {
            let outcome = Outcome::lock(&part.outcome);
            let tally = outcome.tally();
            let counters = &self.destination_stats[part.index];
            let name = counters.name;
            stats::add(&counters.requests, outcome.requests);
            stats::add(&self.stats.altered_values, outcome.altered_values);
            stats::add(&counters.delivered, tally.accepted as u64);
            stats::add(&counters.retried, tally.pending as u64);
            stats::add(&counters.dropped, tally.dropped_count() as u64);
            stats::add(&counters.rejected, tally.rejected_count() as u64);
            for (cause, n) in &tally.dropped {
                self.log
                    .error(format_args!("{name}: {n} records dropped: {cause}"));
            }
            for (cause, n) in &tally.rejected {
                self.log
                    .error(format_args!("{name}: {n} records rejected: {cause}"));
            }
            refused |= !tally.dropped.is_empty() || !tally.rejected.is_empty();
            let marks = &mut progress[part.index];
            if tally.pending == 0 {
                marks.done = true;
                continue;
            }
            pending = true;
            let (reason, serious) = outcome
                .transient_reason()
                .unwrap_or(("not sent before the flush deadline", false));
            let line = format_args!(
                "{name}: {} of {} records not accepted yet (last: {reason}); Fluent Bit will retry the chunk",
                tally.pending,
                part.wanted.len()
            );
            if serious {
                self.log.error(line);
            } else {
                self.log.warn(line);
            }
            marks.settled.resize(records, false);
            for (position, fate) in outcome.fates().iter().enumerate() {
                if *fate != Fate::Pending {
                    marks.settled[part.wanted[position]] = true;
                }
            }
        }
        if pending {
            FlushStatus::Retry
        } else if refused {
            FlushStatus::Error
        } else {
            FlushStatus::Ok
        }
    }

    /// Keeps the records the destinations refused for good in `dead_letter`, by `deadline`.
    async fn keep_refused(&self, parts: &[Part], batch: &Batch, deadline: tokio::time::Instant) {
        let Some(dead_letter) = &self.dead_letter else {
            return;
        };
        let mut refused = Vec::new();
        for part in parts {
            let outcome = Outcome::lock(&part.outcome);
            let destination = self.destination_stats[part.index].name;
            for (position, fate) in outcome.fates().iter().enumerate() {
                let (Some(cause), Some(record)) =
                    (outcome.cause_of(*fate), batch.get(part.wanted[position]))
                else {
                    continue;
                };
                refused.push(Refused {
                    destination,
                    cause: cause.to_owned(),
                    time: record.time.to_rfc3339(),
                    tag: &batch.tag,
                    record: serde_json::Value::Object(record.body.to_json_map()),
                });
            }
        }
        if refused.is_empty() {
            return;
        }
        let firehose_requests = self
            .destination_stats
            .iter()
            .find(|d| d.name == "firehose")
            .map(|d| &d.requests);
        let written = dead_letter
            .keep(&refused, &self.destinations, firehose_requests, deadline)
            .await;
        stats::add(&self.stats.dead_lettered, written.records);
        stats::add(&self.stats.dead_letter_overflow, written.overflow);
        if let Some(reason) = written.reason {
            self.log.warn(format_args!(
                "dead_letter: {} refused records not kept: {reason}",
                written.overflow
            ));
        }
    }
}
