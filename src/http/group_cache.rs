//! The caller's groups, kept in memory between requests: every authenticated
//! request needs them (visibility goes through group memberships), and they
//! rarely change. An entry is used only while the `groups` read model has
//! not changed since it was read ([`Projector::generation`]), so a
//! membership change is seen by the first request after the projection
//! applied it — by every request that has waited for the change's position
//! too, as the generation moves before the position does.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use scaidrive_projections::db::Db;

use crate::projector::Projector;

/// Callers remembered at most (least recently seen go first).
const CAPACITY: NonZeroUsize = match NonZeroUsize::new(10_000) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// A caller's groups, with the `groups` generation they were read at.
type Entry = (u64, Arc<Vec<String>>);

/// The groups of recent callers, by tenant, user and the token's group claims.
pub struct GroupCache {
    /// The `groups` projection's index in the projector (none: never cache).
    index: Option<usize>,
    entries: Mutex<LruCache<Key, Entry>>,
}

#[derive(Hash, PartialEq, Eq)]
struct Key {
    tenant_id: String,
    user_id: String,
    claims: Vec<String>,
}

impl GroupCache {
    pub fn new(projector: &Projector) -> Self {
        Self {
            index: projector.index_of("groups"),
            entries: Mutex::new(LruCache::new(CAPACITY)),
        }
    }

    /// The ids of the groups `user_id` belongs to, directly or through the
    /// token's `claims` (see [`user_group_ids`]).
    ///
    /// [`user_group_ids`]: scaidrive_projections::groups::user_group_ids
    pub async fn groups_of(
        &self,
        projector: &Projector,
        db: &Db,
        tenant_id: &str,
        user_id: &str,
        claims: &[String],
    ) -> Result<Vec<String>, sqlx::Error> {
        let Some(index) = self.index else {
            return scaidrive_projections::groups::user_group_ids(db, tenant_id, user_id, claims)
                .await;
        };
        let key = Key {
            tenant_id: tenant_id.to_owned(),
            user_id: user_id.to_owned(),
            claims: claims.to_vec(),
        };
        // Read before the query: a change applied meanwhile moves it, and
        // the entry stored below is then never used.
        let generation = projector.generation(index);
        if let Some((at, groups)) = self.entries.lock().get(&key) {
            if *at == generation {
                return Ok(groups.as_ref().clone());
            }
        }
        let groups =
            scaidrive_projections::groups::user_group_ids(db, tenant_id, user_id, claims).await?;
        self.entries
            .lock()
            .put(key, (generation, Arc::new(groups.clone())));
        Ok(groups)
    }
}
