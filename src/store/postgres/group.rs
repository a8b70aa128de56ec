//! Group commit: appends that arrive while earlier ones are being written
//! are written together, in one transaction and one round trip.
//!
//! A group goes first to `scaidrive_append_batch` (migration 0015), which
//! checks and writes the whole group with a few set-based statements. When
//! one of its appends has to be answered on its own (a conflict, a stale
//! head, a used idempotency key, a claim already held), or two of them use
//! one idempotency or claim key, it goes to `scaidrive_append_group`
//! (migration 0014) instead, which writes each
//! append in a subtransaction of its own, so that one refused append does
//! not undo the others.
//!
//! A few committer tasks share one queue. Each takes what has queued up (at
//! most [`MAX_GROUP`] appends, none touching a stream another in the group
//! touches), writes it and answers every caller; so under load a group is as
//! large as the number of appends that arrived during the previous write,
//! and a lone append is written at once, as a group of one. A task keeps its
//! connection while appends keep coming and gives it back to the pool when
//! the queue runs dry.
//! The tasks, not the callers, run the writes: a caller that goes away (a
//! request whose client disconnected) cannot cut short a group that carries
//! other callers' appends.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::Utc;
use parking_lot::Mutex;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgPool, Postgres};
use sqlx::query::QueryAs;
use sqlx::PgConnection;
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

use super::{err, Answer, Failure, FastOutcome, Prepared, Written};
use crate::store::StoreError;

/// Appends written together at most (each is a subtransaction; PostgreSQL
/// keeps up to 64 of them per transaction in shared memory cheaply).
const MAX_GROUP: usize = 32;
/// Committer tasks (groups being written at the same time) unless
/// `SCAIDRIVE_PG_COMMITTERS` says otherwise (1–16).
const COMMITTERS: usize = 3;

fn committers() -> usize {
    std::env::var("SCAIDRIVE_PG_COMMITTERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=16).contains(n))
        .unwrap_or(COMMITTERS)
}

struct Pending {
    prepared: Prepared,
    reply: oneshot::Sender<Result<FastOutcome, StoreError>>,
}

struct Queue {
    pending: Mutex<VecDeque<Pending>>,
    arrived: Notify,
    /// Set when the store is dropped: the tasks end.
    closed: AtomicBool,
}

/// The queue the store hands its appends to.
pub(super) struct Committer {
    queue: Arc<Queue>,
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Lets the tasks see the store is gone.
        self.queue.closed.store(true, Ordering::SeqCst);
        self.queue.arrived.notify_waiters();
    }
}

impl Committer {
    pub(super) fn start(pool: PgPool, written: Arc<Written>) -> Self {
        let queue = Arc::new(Queue {
            pending: Mutex::new(VecDeque::new()),
            arrived: Notify::new(),
            closed: AtomicBool::new(false),
        });
        for _ in 0..committers() {
            let queue = queue.clone();
            let (pool, written) = (pool.clone(), written.clone());
            tokio::spawn(async move {
                // The connection is kept from one group to the next while
                // appends keep coming, and given back to the pool when the
                // queue runs dry (a pooled query costs a round trip more: the
                // pool tests every connection given back to it).
                let mut held: Option<PoolConnection<Postgres>> = None;
                while !queue.closed.load(Ordering::SeqCst) {
                    let group = match take_now(&queue) {
                        Some(group) => group,
                        None => {
                            held = None;
                            next_group(&queue).await
                        }
                    };
                    if group.is_empty() {
                        continue;
                    }
                    let conn = match held.as_mut() {
                        Some(conn) => conn,
                        None => match pool.acquire().await {
                            Ok(conn) => held.insert(conn),
                            Err(e) => {
                                let e = err(e);
                                for one in group {
                                    let _ = one.reply.send(Err(e.clone()));
                                }
                                continue;
                            }
                        },
                    };
                    if !write(conn, &written, group).await {
                        // Possibly broken: the pool tests it on the way back.
                        held = None;
                    }
                }
            });
        }
        Self { queue }
    }

    /// Queues `prepared` and waits for its outcome.
    pub(super) async fn append(&self, prepared: Prepared) -> Result<FastOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .pending
            .lock()
            .push_back(Pending { prepared, reply });
        self.queue.arrived.notify_one();
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the append's committer stopped before answering".into(),
            ))
        })
    }
}

/// A group of the appends queued now, if any.
fn take_now(queue: &Queue) -> Option<Vec<Pending>> {
    let (group, more) = take(&mut queue.pending.lock());
    if group.is_empty() {
        return None;
    }
    if more {
        // Appends left behind (touching a stream of this group, or beyond
        // its size): another committer may take them now.
        queue.arrived.notify_one();
    }
    Some(group)
}

/// Waits for queued appends and takes a group of them (empty when woken
/// with nothing to do).
async fn next_group(queue: &Queue) -> Vec<Pending> {
    let notified = queue.arrived.notified();
    tokio::pin!(notified);
    loop {
        notified.as_mut().enable();
        if let Some(group) = take_now(queue) {
            return group;
        }
        if queue.closed.load(Ordering::SeqCst) {
            return Vec::new();
        }
        notified.as_mut().await;
        notified.set(queue.arrived.notified());
    }
}

/// The first appends of the queue whose streams do not overlap, at most
/// [`MAX_GROUP`]; and whether any are left.
fn take(pending: &mut VecDeque<Pending>) -> (Vec<Pending>, bool) {
    let mut group = Vec::new();
    let mut streams: HashSet<String> = HashSet::new();
    let mut i = 0;
    while i < pending.len() && group.len() < MAX_GROUP {
        let overlaps = pending[i]
            .prepared
            .p_streams
            .iter()
            .any(|s| streams.contains(s));
        if overlaps {
            i += 1;
            continue;
        }
        if let Some(p) = pending.remove(i) {
            streams.extend(p.prepared.p_streams.iter().cloned());
            group.push(p);
        }
    }
    (group, !pending.is_empty())
}

impl Prepared {
    /// Binds the head arrays (`p_*`) and then the event arrays (`e_*`), in
    /// the order both group functions take them.
    fn bind_heads_and_events<'q, O>(
        &'q self,
        query: QueryAs<'q, Postgres, O, PgArguments>,
    ) -> QueryAs<'q, Postgres, O, PgArguments> {
        query
            .bind(&self.p_streams)
            .bind(&self.p_expected)
            .bind(&self.p_expected_version)
            .bind(&self.p_assumed_version)
            .bind(&self.p_assumed_hash)
            .bind(&self.p_new_version)
            .bind(&self.p_new_hash)
            .bind(&self.p_tenant)
            .bind(&self.e_stream)
            .bind(&self.e_version)
            .bind(&self.e_id)
            .bind(&self.e_type)
            .bind(&self.e_schema)
            .bind(&self.e_tenant)
            .bind(&self.e_data)
            .bind(&self.e_meta)
            .bind(&self.e_hash)
    }

    /// Moves `p`'s arrays onto the end of this one's (the group's call).
    /// `p` keeps what its answer is read with: its streams, their
    /// expectations and the events as recorded.
    fn absorb(&mut self, p: &mut Prepared) {
        self.p_streams.extend(p.p_streams.iter().cloned());
        self.p_expected.append(&mut p.p_expected);
        self.p_expected_version.append(&mut p.p_expected_version);
        self.p_assumed_version.append(&mut p.p_assumed_version);
        self.p_assumed_hash.append(&mut p.p_assumed_hash);
        self.p_new_version.append(&mut p.p_new_version);
        self.p_new_hash.append(&mut p.p_new_hash);
        self.p_tenant.append(&mut p.p_tenant);
        self.e_stream.append(&mut p.e_stream);
        self.e_version.append(&mut p.e_version);
        self.e_id.append(&mut p.e_id);
        self.e_type.append(&mut p.e_type);
        self.e_schema.append(&mut p.e_schema);
        self.e_tenant.append(&mut p.e_tenant);
        self.e_data.append(&mut p.e_data);
        self.e_meta.append(&mut p.e_meta);
        self.e_hash.append(&mut p.e_hash);
        self.c_op.append(&mut p.c_op);
        self.c_scope.append(&mut p.c_scope);
        self.c_key.append(&mut p.c_key);
        self.c_owner.append(&mut p.c_owner);
    }
}

/// Writes one group on `conn` and answers its callers; false when the
/// connection failed (rather than an append).
async fn write(conn: &mut PgConnection, written: &Written, mut group: Vec<Pending>) -> bool {
    let now = Utc::now();
    let mut g = Prepared::with_capacity(0, 0, 0);
    // Everything the group locks, in one sorted order: its streams, and its
    // claim and idempotency keys (two groups inserting the same key in
    // opposite orders would deadlock).
    let mut all_streams: Vec<String> = Vec::new();
    let (mut r_stream_end, mut r_event_end, mut r_claim_end) = (vec![], vec![], vec![]);
    let (mut r_idem_key, mut r_idem_outcome) = (vec![], vec![]);
    for Pending { prepared: p, .. } in &mut group {
        all_streams.extend(p.p_streams.iter().cloned());
        for (scope, key) in p.c_scope.iter().zip(&p.c_key) {
            all_streams.push(format!("\u{1}claim\u{1}{scope}\u{1}{key}"));
        }
        if let Some(key) = &p.idem_key {
            all_streams.push(format!("\u{1}idempotency\u{1}{key}"));
        }
        g.absorb(p);
        r_stream_end.push(g.p_streams.len() as i32);
        r_event_end.push(g.e_stream.len() as i32);
        r_claim_end.push(g.c_op.len() as i32);
        r_idem_key.push(p.idem_key.take());
        r_idem_outcome.push(p.idem_outcome.take());
    }
    all_streams.sort();
    all_streams.dedup();

    if distinct_keys(&r_idem_key) && distinct_claims(&g) {
        match write_batch(conn, &g, &all_streams, &r_idem_key, &r_idem_outcome, now).await {
            Ok(answer) => {
                answer_batch(written, group, now, answer);
                return true;
            }
            // Something to answer append by append: the group function does.
            Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some(GROUP_RETRY) => {}
            Err(sqlx::Error::Database(d)) => {
                // Nothing of the group was written, and the error is one of
                // its appends' (a unique violation nobody expected): each is
                // written on its own, so only that one fails.
                tracing::debug!(error = %d, "group append failed; writing its appends one by one");
                for one in group {
                    let _ = one.reply.send(Ok(FastOutcome::Alone));
                }
                return true;
            }
            Err(e) => {
                let e = err(e);
                for one in group {
                    let _ = one.reply.send(Err(e.clone()));
                }
                return false;
            }
        }
    }

    type Row = (
        i32,
        String,
        Option<serde_json::Value>,
        Option<Vec<Uuid>>,
        Option<Vec<i64>>,
        Option<Vec<i64>>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let query = sqlx::query_as(
        "SELECT g_request, g_status, g_outcome, g_ids, g_positions, g_commits, g_code, g_message, g_constraint \
         FROM scaidrive_append_group($1::text[], $2::int[], $3::int[], $4::int[], $5::text[], $6::jsonb[], \
         $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::text[], $12::bigint[], $13::text[], $14::text[], \
         $15::text[], $16::bigint[], $17::uuid[], $18::text[], $19::int[], $20::text[], $21::jsonb[], $22::jsonb[], $23::text[], \
         $24::timestamptz, $25::text[], $26::text[], $27::text[], $28::text[])",
    )
    .bind(&all_streams)
    .bind(&r_stream_end)
    .bind(&r_event_end)
    .bind(&r_claim_end)
    .bind(&r_idem_key)
    .bind(&r_idem_outcome);
    let rows: Result<Vec<Row>, sqlx::Error> = g
        .bind_heads_and_events(query)
        .bind(now)
        .bind(&g.c_op)
        .bind(&g.c_scope)
        .bind(&g.c_key)
        .bind(&g.c_owner)
        .fetch_all(&mut *conn)
        .await;

    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            // Nothing of the group was written.
            let e = err(e);
            for one in group {
                let _ = one.reply.send(Err(e.clone()));
            }
            return false;
        }
    };
    let mut answers: Vec<Option<Row>> = (0..group.len()).map(|_| None).collect();
    for row in rows {
        let at = usize::try_from(row.0 - 1).ok();
        if let Some(slot) = at.and_then(|i| answers.get_mut(i)) {
            *slot = Some(row);
        }
    }
    for (one, row) in group.into_iter().zip(answers) {
        let mut p = one.prepared;
        let outcome = match row {
            None => Err(StoreError::Backend(
                "scaidrive_append_group gave no answer for an append".into(),
            )),
            Some((_, status, outcome, ids, positions, commits, code, message, constraint)) => {
                if status == "error" {
                    let failure = Failure {
                        code,
                        message: message.unwrap_or_default(),
                        constraint,
                    };
                    failure.outcome(&p).unwrap_or_else(|| {
                        Err(StoreError::Backend(format!(
                            "append failed: {} ({})",
                            failure.message,
                            failure.code.as_deref().unwrap_or("?")
                        )))
                    })
                } else {
                    for r in &mut p.recorded {
                        r.recorded_at = now;
                    }
                    let answer: Answer = (status, outcome, ids, positions, commits);
                    Ok(written.finish(p, answer))
                }
            }
        };
        let _ = one.reply.send(outcome);
    }
    true
}

/// The SQLSTATE `scaidrive_append_batch` raises when the group needs
/// answering append by append.
const GROUP_RETRY: &str = "SD4GR";

/// Whether no idempotency key appears twice.
fn distinct_keys(keys: &[Option<String>]) -> bool {
    let mut seen = HashSet::new();
    keys.iter().flatten().all(|k| seen.insert(k.as_str()))
}

/// Whether no claim key (scope and key) appears twice among the claims and
/// releases of a group: the order of two ops on one key would matter.
fn distinct_claims(g: &Prepared) -> bool {
    let mut seen = HashSet::new();
    g.c_scope
        .iter()
        .zip(&g.c_key)
        .all(|(scope, key)| seen.insert((scope.as_str(), key.as_str())))
}

/// The ids, positions and commit ids of a batch's events, in order.
type BatchAnswer = (Option<Vec<Uuid>>, Option<Vec<i64>>, Option<Vec<i64>>);

/// The fast path: the whole group in one call of `scaidrive_append_batch`
/// (migration 0015), which raises [`GROUP_RETRY`] and writes nothing when an
/// append of the group has to be answered on its own.
async fn write_batch(
    conn: &mut PgConnection,
    g: &Prepared,
    all_streams: &[String],
    idem_key: &[Option<String>],
    idem_outcome: &[Option<serde_json::Value>],
    now: chrono::DateTime<Utc>,
) -> Result<BatchAnswer, sqlx::Error> {
    let (mut n_move, mut n_new, mut n_check) = (0i32, 0i32, 0i32);
    for ((av, nv), x) in g
        .p_assumed_version
        .iter()
        .zip(&g.p_new_version)
        .zip(&g.p_expected)
    {
        if nv == av {
            n_check += i32::from(*x != "any");
        } else if *av > 0 {
            n_move += 1;
        } else {
            n_new += 1;
        }
    }
    let keyed = idem_key.iter().any(Option::is_some);
    let claimed = !g.c_op.is_empty();
    let n_claim = g.c_op.iter().filter(|op| **op == "claim").count() as i32;
    let query = sqlx::query_as(
        "SELECT o_ids, o_positions, o_commits FROM scaidrive_append_batch($1::text[], $2::text[], $3::jsonb[], \
         $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::text[], $9::bigint[], $10::text[], $11::text[], \
         $12::text[], $13::bigint[], $14::uuid[], $15::text[], $16::int[], $17::text[], $18::jsonb[], $19::jsonb[], $20::text[], \
         $21::timestamptz, $22::text[], $23::text[], $24::text[], $25::text[], $26::int, $27::int, $28::int, $29::int)",
    )
    .bind(all_streams)
    .bind(keyed.then_some(idem_key))
    .bind(keyed.then_some(idem_outcome));
    g.bind_heads_and_events(query)
        .bind(now)
        .bind(claimed.then_some(&g.c_op))
        .bind(claimed.then_some(&g.c_scope))
        .bind(claimed.then_some(&g.c_key))
        .bind(claimed.then_some(&g.c_owner))
        .bind(n_move)
        .bind(n_new)
        .bind(n_check)
        .bind(n_claim)
        .fetch_one(conn)
        .await
}

/// Answers a group written whole by the fast path: the ids, positions and
/// commit ids of all its events, in the order of its appends, are cut into
/// each append's share.
fn answer_batch(
    written: &Written,
    group: Vec<Pending>,
    now: chrono::DateTime<Utc>,
    (ids, positions, commits): BatchAnswer,
) {
    let (ids, positions, commits) = (
        ids.unwrap_or_default(),
        positions.unwrap_or_default(),
        commits.unwrap_or_default(),
    );
    let mut at = 0;
    for one in group {
        let mut p = one.prepared;
        let n = p.recorded.len();
        let outcome = match (
            ids.get(at..at + n),
            positions.get(at..at + n),
            commits.get(at..at + n),
        ) {
            (Some(i), Some(pos), Some(c)) => {
                for r in &mut p.recorded {
                    r.recorded_at = now;
                }
                let answer: Answer = (
                    "committed".into(),
                    None,
                    Some(i.to_vec()),
                    Some(pos.to_vec()),
                    Some(c.to_vec()),
                );
                Ok(written.finish(p, answer))
            }
            _ => Err(StoreError::Backend(
                "scaidrive_append_batch answered fewer events than the group has".into(),
            )),
        };
        at += n;
        let _ = one.reply.send(outcome);
    }
}
