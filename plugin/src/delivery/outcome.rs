//! What happened to each record a destination was given: accepted, dropped (never sent, with
//! a cause), rejected (refused by the remote for good, with a cause) or still pending.
//!
//! A destination fills its [`Outcome`] as requests settle, behind a mutex the instance also
//! holds, so when the flush deadline cancels the delivery whatever had settled is still known:
//! the instance folds it into the ledger, the counters and the flush status.

use std::sync::{Arc, Mutex, MutexGuard};

/// The fate of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Not settled: Fluent Bit must resend it.
    Pending,
    Accepted,
    /// Not sent, and resending will not change that (too large, no stream, no `log_key`).
    Dropped(usize),
    /// Sent and refused for good by the remote (HTTP 400 for this very record, missing stream).
    Rejected(usize),
}

/// Every record's fate, the distinct causes of refusals, and the last transient error.
#[derive(Debug)]
pub struct Outcome {
    fates: Vec<Fate>,
    causes: Vec<String>,
    /// Why records are still pending (the last retryable error), and whether it is one an
    /// operator must look at (authentication, redirects) rather than a passing fault.
    transient: Option<(String, bool)>,
    /// Requests sent, counting retries and split halves.
    pub requests: u64,
    /// Values the destination changed to send them (a non-string `ddtags` made into tags).
    pub altered_values: u64,
}

/// Records by fate, with the causes of refusals and their counts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub accepted: usize,
    pub pending: usize,
    /// `(cause, records)` in order of first appearance.
    pub dropped: Vec<(String, usize)>,
    pub rejected: Vec<(String, usize)>,
}

impl Tally {
    pub fn dropped_count(&self) -> usize {
        self.dropped.iter().map(|(_, n)| n).sum()
    }

    pub fn rejected_count(&self) -> usize {
        self.rejected.iter().map(|(_, n)| n).sum()
    }
}

pub type SharedOutcome = Arc<Mutex<Outcome>>;

impl Outcome {
    pub fn new(records: usize) -> Outcome {
        Outcome {
            fates: vec![Fate::Pending; records],
            causes: Vec::new(),
            transient: None,
            requests: 0,
            altered_values: 0,
        }
    }

    pub fn shared(records: usize) -> SharedOutcome {
        Arc::new(Mutex::new(Outcome::new(records)))
    }

    pub fn lock(shared: &SharedOutcome) -> MutexGuard<'_, Outcome> {
        shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn fates(&self) -> &[Fate] {
        &self.fates
    }

    /// Why a record with this fate was refused (`None` unless dropped or rejected).
    pub fn cause_of(&self, fate: Fate) -> Option<&str> {
        match fate {
            Fate::Dropped(c) | Fate::Rejected(c) => self.causes.get(c).map(String::as_str),
            Fate::Pending | Fate::Accepted => None,
        }
    }

    fn cause(&mut self, text: &str) -> usize {
        match self.causes.iter().position(|c| c == text) {
            Some(i) => i,
            None => {
                self.causes.push(text.to_owned());
                self.causes.len() - 1
            }
        }
    }

    /// Only a pending record changes fate: a record settles once.
    fn settle(&mut self, position: usize, fate: Fate) {
        if let Some(slot) = self.fates.get_mut(position)
            && *slot == Fate::Pending
        {
            *slot = fate;
        }
    }

    pub fn accept(&mut self, positions: &[usize]) {
        for &p in positions {
            self.settle(p, Fate::Accepted);
        }
    }

    pub fn drop_records(&mut self, positions: &[usize], cause: &str) {
        let cause = self.cause(cause);
        for &p in positions {
            self.settle(p, Fate::Dropped(cause));
        }
    }

    pub fn reject(&mut self, positions: &[usize], cause: &str) {
        let cause = self.cause(cause);
        for &p in positions {
            self.settle(p, Fate::Rejected(cause));
        }
    }

    /// Remembers why records are still pending; `serious` errors are logged as errors.
    pub fn transient(&mut self, reason: &str, serious: bool) {
        let serious = serious || self.transient.as_ref().is_some_and(|(_, s)| *s);
        self.transient = Some((reason.to_owned(), serious));
    }

    pub fn transient_reason(&self) -> Option<(&str, bool)> {
        self.transient.as_ref().map(|(r, s)| (r.as_str(), *s))
    }

    pub fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        let mut dropped = vec![0usize; self.causes.len()];
        let mut rejected = vec![0usize; self.causes.len()];
        for fate in &self.fates {
            match fate {
                Fate::Pending => tally.pending += 1,
                Fate::Accepted => tally.accepted += 1,
                Fate::Dropped(c) => dropped[*c] += 1,
                Fate::Rejected(c) => rejected[*c] += 1,
            }
        }
        let named = |counts: Vec<usize>| -> Vec<(String, usize)> {
            counts
                .into_iter()
                .enumerate()
                .filter(|(_, n)| *n > 0)
                .map(|(c, n)| (self.causes[c].clone(), n))
                .collect()
        };
        tally.dropped = named(dropped);
        tally.rejected = named(rejected);
        tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_settle_once_and_are_tallied_by_cause() {
        let mut outcome = Outcome::new(6);
        outcome.accept(&[0, 1]);
        outcome.drop_records(&[2], "too large");
        outcome.reject(&[3, 4], "HTTP 400");
        outcome.accept(&[3]);
        outcome.transient("HTTP 503", false);
        let tally = outcome.tally();
        assert_eq!(tally.accepted, 2);
        assert_eq!(tally.pending, 1);
        assert_eq!(tally.dropped, vec![("too large".to_string(), 1)]);
        assert_eq!(tally.rejected, vec![("HTTP 400".to_string(), 2)]);
        assert_eq!(outcome.transient_reason(), Some(("HTTP 503", false)));
        outcome.transient("HTTP 403", true);
        outcome.transient("HTTP 503", false);
        assert_eq!(
            outcome.transient_reason(),
            Some(("HTTP 503", true)),
            "an error worth an operator's look stays one"
        );
    }
}
