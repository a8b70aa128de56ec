//! Striped async locks keyed by stream id: commands on the same stream queue
//! in-process instead of racing to a concurrency conflict.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

/// A fixed set of mutexes; a stream id hashes to one of them.
pub struct StreamLocks {
    stripes: Vec<Mutex<()>>,
}

impl StreamLocks {
    pub fn new(n: usize) -> Self {
        Self {
            stripes: (0..n.max(1)).map(|_| Mutex::new(())).collect(),
        }
    }

    fn index(&self, key: &str) -> usize {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() as usize) % self.stripes.len()
    }

    /// Locks the stripe of one stream.
    pub async fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        self.stripes[self.index(key)].lock().await
    }

    /// Locks the stripes of several streams in a fixed order (no deadlock).
    pub async fn lock_many(&self, keys: &[&str]) -> Vec<MutexGuard<'_, ()>> {
        let mut idx: Vec<usize> = keys.iter().map(|k| self.index(k)).collect();
        idx.sort_unstable();
        idx.dedup();
        let mut guards = Vec::with_capacity(idx.len());
        for i in idx {
            guards.push(self.stripes[i].lock().await);
        }
        guards
    }
}
