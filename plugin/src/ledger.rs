//! Which destinations already accepted a chunk that Fluent Bit may send again.
//!
//! When one destination fails and another succeeds, the flush must return RETRY, and Fluent
//! Bit will resend the same chunk later. The ledger remembers, per chunk (identified by a hash
//! of its tag and bytes, which do not change between retries), the destinations that accepted
//! it, so the retry goes only where it failed. Entries are dropped when the chunk is done, and
//! the oldest are evicted beyond a fixed capacity, so memory stays bounded; an evicted entry
//! only means a destination may see that chunk twice (at-least-once, never lost).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// Chunks remembered at most (each entry is a few bytes).
pub const CAPACITY: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkId {
    hash: u64,
    len: usize,
}

impl ChunkId {
    pub fn of(tag: &str, chunk: &[u8]) -> ChunkId {
        let mut hasher = DefaultHasher::new();
        tag.hash(&mut hasher);
        chunk.hash(&mut hasher);
        ChunkId {
            hash: hasher.finish(),
            len: chunk.len(),
        }
    }
}

/// A set of destination indices (an instance has at most a handful).
pub type Accepted = u64;

pub fn bit(index: usize) -> Accepted {
    1u64 << (index % 64)
}

#[derive(Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    accepted: HashMap<ChunkId, Accepted>,
    order: VecDeque<ChunkId>,
}

impl Ledger {
    /// Destinations that already accepted this chunk.
    pub fn accepted(&self, id: ChunkId) -> Accepted {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.accepted.get(&id).copied().unwrap_or(0)
    }

    /// Remembers the destinations that have accepted a chunk Fluent Bit will resend.
    pub fn remember(&self, id: ChunkId, accepted: Accepted) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.accepted.insert(id, accepted).is_none() {
            inner.order.push_back(id);
        }
        while inner.order.len() > CAPACITY {
            if let Some(oldest) = inner.order.pop_front() {
                inner.accepted.remove(&oldest);
            }
        }
    }

    /// The chunk is done (delivered everywhere, or dropped): forget it.
    pub fn forget(&self, id: ChunkId) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.accepted.remove(&id).is_some() {
            inner.order.retain(|other| *other != id);
        }
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .accepted
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_done_and_stays_bounded() {
        let ledger = Ledger::default();
        let a = ChunkId::of("t", b"chunk a");
        assert_eq!(ledger.accepted(a), 0);
        ledger.remember(a, bit(0));
        ledger.remember(a, bit(0) | bit(2));
        assert_eq!(ledger.accepted(a), 0b101);
        assert_ne!(ChunkId::of("t", b"chunk b"), a);
        assert_ne!(
            ChunkId::of("u", b"chunk a"),
            a,
            "the tag is part of the identity"
        );
        ledger.forget(a);
        assert!(ledger.is_empty());
        for i in 0..CAPACITY + 10 {
            ledger.remember(ChunkId::of("t", &i.to_be_bytes()), bit(1));
        }
        assert_eq!(ledger.len(), CAPACITY);
        assert_eq!(
            ledger.accepted(ChunkId::of("t", &0usize.to_be_bytes())),
            0,
            "oldest evicted"
        );
    }
}
