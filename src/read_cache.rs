//! Read-model answers kept in memory between requests, each cache tied to
//! the one projection whose tables the answer comes from. An entry is used
//! only while that projection's [`Projector::generation`] is the one read
//! before the query, so a change is seen by the first request after the
//! projection applied it, and by every request that waited for the change's
//! position (the generation moves before the position does).
//!
//! Every authenticated request needs the caller's groups (`groups`); every
//! permission check of a member needs their memberships of the share and
//! whether the share has ACLs (`access`). Both read models change rarely
//! next to the files and folders they guard.

use std::future::Future;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use crate::projector::{Generation, Projector};

/// Entries kept at most per cache (least recently used go first).
const CAPACITY: NonZeroUsize = match NonZeroUsize::new(10_000) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// An answer, with the generation it was read at.
type Entry<V> = (u64, Arc<V>);

/// Answers read from read-model tables, by key.
pub struct ReadCache<K: Hash + Eq, V> {
    /// What moves when the answers may change (none: never cache).
    generations: Option<Vec<Generation>>,
    entries: Mutex<LruCache<K, Entry<V>>>,
}

impl<K: Hash + Eq, V: Clone> ReadCache<K, V> {
    /// A cache of answers from the tables of the projection called `projection`.
    pub fn new(projector: &Projector, projection: &str) -> Self {
        Self::tied_to(projector.generation_handle(projection).map(|g| vec![g]))
    }

    /// A cache of answers that change only with events of some kinds: per
    /// projection (by name), the event type prefixes whose application can
    /// change an answer.
    pub fn for_events(projector: &Projector, sources: &[(&str, &'static [&'static str])]) -> Self {
        let generations: Option<Vec<Generation>> = sources
            .iter()
            .map(|(projection, kinds)| projector.generation_of(projection, kinds))
            .collect();
        Self::tied_to(generations)
    }

    fn tied_to(generations: Option<Vec<Generation>>) -> Self {
        Self {
            generations,
            entries: Mutex::new(LruCache::new(CAPACITY)),
        }
    }

    /// The answer for `key`: remembered, or from `load` (and remembered).
    pub async fn get_or_load<E, Fut>(&self, key: K, load: impl FnOnce() -> Fut) -> Result<V, E>
    where
        Fut: Future<Output = Result<V, E>>,
    {
        let Some(generations) = &self.generations else {
            return load().await;
        };
        // Read before the query: a change applied meanwhile moves it, and
        // the entry stored below is then never used. (Each count only
        // grows, so their sum moves whenever one of them does.)
        let generation = generations.iter().map(Generation::get).sum::<u64>();
        if let Some((at, value)) = self.entries.lock().get(&key) {
            if *at == generation {
                return Ok(value.as_ref().clone());
            }
        }
        let value = load().await?;
        self.entries
            .lock()
            .put(key, (generation, Arc::new(value.clone())));
        Ok(value)
    }
}

/// Whose groups: tenant, user and the token's group claims.
pub type GroupKey = (String, String, Vec<String>);

/// Whose memberships of which share: the share and the caller's principal ids.
pub type MembershipKey = (String, Vec<String>);

/// Who signed in with which claims: tenant, user, email, name and whether
/// the scope explicitly names an admin scope.
pub type SignInKey = (String, String, Option<String>, Option<String>, bool);
