//! Projection checkpoints: where in the log each read model has got to.

use scaidrive_domain::LogPosition;

use crate::db::{Db, Tx};
use crate::{db_fetch_optional, tx_execute};

/// A stored checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub version: i32,
    pub position: LogPosition,
}

#[derive(sqlx::FromRow)]
struct Row {
    version: i32,
    commit_id: i64,
    position: i64,
}

impl From<Row> for Checkpoint {
    fn from(r: Row) -> Self {
        Checkpoint {
            version: r.version,
            position: LogPosition::new(r.commit_id, r.position),
        }
    }
}

const SELECT: &str =
    "SELECT version, commit_id, position FROM projection_checkpoints WHERE name = $1";

/// Reads a checkpoint inside a write transaction.
pub async fn load(tx: &mut Tx, name: &str) -> Result<Option<Checkpoint>, sqlx::Error> {
    // On Postgres the row is locked: runners in several processes, and a
    // rebuild, take turns on a projection instead of applying a batch twice.
    // (SQLite's single writer already serialises them.)
    let row = match tx {
        Tx::Sqlite(t) => {
            sqlx::query_as::<_, Row>(SELECT)
                .bind(name)
                .fetch_optional(&mut **t)
                .await?
        }
        Tx::Postgres(t) => {
            let sql = format!("{SELECT} FOR UPDATE");
            sqlx::query_as::<_, Row>(&sql)
                .bind(name)
                .fetch_optional(&mut **t)
                .await?
        }
    };
    Ok(row.map(Into::into))
}

/// Serialises the first set-up (or version reset) of a checkpoint across
/// processes for the rest of `tx`: [`load`]'s row lock cannot hold a row that
/// does not exist yet, and two processes starting on a fresh database must
/// not both reset a read model one of them has already begun to fill.
pub async fn lock_setup(tx: &mut Tx, name: &str) -> Result<(), sqlx::Error> {
    if let Tx::Postgres(t) = tx {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('checkpoint-setup:' || $1, 0))")
            .bind(name)
            .execute(&mut **t)
            .await?;
    }
    Ok(())
}

/// Reads a checkpoint from the read side.
pub async fn read(db: &Db, name: &str) -> Result<Option<Checkpoint>, sqlx::Error> {
    Ok(db_fetch_optional!(db, Row, SELECT, name)?.map(Into::into))
}

/// When a checkpoint last moved, that is when its read model was last
/// brought up to date with the log, from the read side.
pub async fn updated_at(
    db: &Db,
    name: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
    Ok(db_fetch_optional!(
        db,
        (chrono::DateTime<chrono::Utc>,),
        "SELECT updated_at FROM projection_checkpoints WHERE name = $1",
        name
    )?
    .map(|r| r.0))
}

/// Every stored checkpoint, by name, from the read side.
pub async fn all(db: &Db) -> Result<Vec<(String, Checkpoint)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Named {
        name: String,
        #[sqlx(flatten)]
        row: Row,
    }
    let rows = crate::db_fetch_all!(
        db,
        Named,
        "SELECT name, version, commit_id, position FROM projection_checkpoints"
    )?;
    Ok(rows.into_iter().map(|r| (r.name, r.row.into())).collect())
}

/// Stores a checkpoint in the caller's transaction.
pub async fn store(tx: &mut Tx, name: &str, cp: Checkpoint) -> Result<(), sqlx::Error> {
    tx_execute!(
        tx,
        "INSERT INTO projection_checkpoints (name, version, commit_id, position, updated_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (name) DO UPDATE SET version = excluded.version, commit_id = excluded.commit_id, \
         position = excluded.position, updated_at = excluded.updated_at",
        name,
        cp.version,
        cp.position.commit,
        cp.position.position,
        chrono::Utc::now()
    )?;
    Ok(())
}

/// The conditional move of [`advance`] and [`take`]: to `$2`–`$4` if the
/// row is still at `$6`/`$7`.
const MOVE: &str = "UPDATE projection_checkpoints SET version = $2, commit_id = $3, position = $4, updated_at = $5 \
     WHERE name = $1 AND commit_id = $6 AND position = $7";

/// Moves a checkpoint from `from` to `cp` in one statement, outside any
/// transaction, if it is still at `from`: how a runner records a batch in
/// which its projection had nothing to apply. Answers whether the row moved
/// (if not, another process or a rebuild moved it first).
pub async fn advance(
    db: &Db,
    name: &str,
    from: LogPosition,
    cp: Checkpoint,
) -> Result<bool, sqlx::Error> {
    let now = chrono::Utc::now();
    macro_rules! run {
        ($pool:expr) => {
            sqlx::query(MOVE)
                .bind(name)
                .bind(cp.version)
                .bind(cp.position.commit)
                .bind(cp.position.position)
                .bind(now)
                .bind(from.commit)
                .bind(from.position)
                .execute($pool)
                .await?
                .rows_affected()
        };
    }
    let moved = match db {
        Db::Sqlite(d) => run!(&d.write),
        Db::Postgres(p) => run!(p),
    };
    Ok(moved == 1)
}

/// [`advance`] inside the caller's transaction, locking the row until the
/// transaction ends (the `load`-then-`store` of a batch in one statement).
pub async fn take(
    tx: &mut Tx,
    name: &str,
    from: LogPosition,
    cp: Checkpoint,
) -> Result<bool, sqlx::Error> {
    let moved = tx_execute!(
        tx,
        MOVE,
        name,
        cp.version,
        cp.position.commit,
        cp.position.position,
        chrono::Utc::now(),
        from.commit,
        from.position
    )?;
    Ok(moved == 1)
}

/// [`take`] for several checkpoints standing at the same `from`: each of
/// `members` (name, version it writes) still at `from` moves to `to` in the
/// caller's transaction, its row locked until the transaction ends. Answers,
/// per member, whether its row moved. On PostgreSQL this is one statement,
/// and a row locked by someone else (a runner in another process finishing
/// its batch, a rebuild swapping its tables in) is skipped rather than
/// waited for: the caller settles it on its own.
pub async fn take_many(
    tx: &mut Tx,
    members: &[(&str, i32)],
    from: LogPosition,
    to: LogPosition,
) -> Result<Vec<bool>, sqlx::Error> {
    match tx {
        Tx::Postgres(t) => {
            let moved = many_postgres(members, from, to).fetch_all(&mut **t).await?;
            Ok(moved_flags(members, &moved))
        }
        Tx::Sqlite(_) => {
            let mut moved = Vec::with_capacity(members.len());
            for &(name, version) in members {
                let cp = Checkpoint {
                    version,
                    position: to,
                };
                moved.push(take(tx, name, from, cp).await?);
            }
            Ok(moved)
        }
    }
}

/// [`advance`] for several checkpoints standing at the same `from`, with
/// [`take_many`]'s answer: one statement on PostgreSQL, one write
/// transaction on SQLite.
pub async fn advance_many(
    db: &Db,
    members: &[(&str, i32)],
    from: LogPosition,
    to: LogPosition,
) -> Result<Vec<bool>, sqlx::Error> {
    match db {
        Db::Postgres(p) => {
            let moved = many_postgres(members, from, to).fetch_all(p).await?;
            Ok(moved_flags(members, &moved))
        }
        Db::Sqlite(_) => {
            let mut tx = db.begin().await?;
            let moved = take_many(&mut tx, members, from, to).await?;
            tx.commit().await?;
            Ok(moved)
        }
    }
}

/// The joint move on PostgreSQL; returns the names of the rows it moved.
const MOVE_MANY: &str = "WITH due AS ( \
       SELECT c.name, t.version FROM projection_checkpoints c \
       JOIN unnest($1::text[], $2::int4[]) AS t(name, version) ON c.name = t.name \
       WHERE c.commit_id = $6 AND c.position = $7 \
       FOR UPDATE OF c SKIP LOCKED) \
     UPDATE projection_checkpoints c SET version = due.version, commit_id = $3, position = $4, updated_at = $5 \
     FROM due WHERE c.name = due.name RETURNING c.name";

fn many_postgres<'q>(
    members: &[(&str, i32)],
    from: LogPosition,
    to: LogPosition,
) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, String, sqlx::postgres::PgArguments> {
    let names: Vec<String> = members.iter().map(|(n, _)| (*n).to_owned()).collect();
    let versions: Vec<i32> = members.iter().map(|(_, v)| *v).collect();
    sqlx::query_scalar(MOVE_MANY)
        .bind(names)
        .bind(versions)
        .bind(to.commit)
        .bind(to.position)
        .bind(chrono::Utc::now())
        .bind(from.commit)
        .bind(from.position)
}

fn moved_flags(members: &[(&str, i32)], moved: &[String]) -> Vec<bool> {
    members
        .iter()
        .map(|(n, _)| moved.iter().any(|m| m == n))
        .collect()
}
