//! Projections on their own: typed events in, read-model rows out, on a
//! scratch SQLite database, with no server, store or HTTP in between.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed expectation is the test failing

use chrono::{DateTime, Utc};
use scaidrive_domain::drive::folder::FolderEvent;
use scaidrive_domain::drive::share::ShareEvent;
use scaidrive_domain::drive::{Owner, ShareType};
use scaidrive_domain::id::{FolderId, ShareId, TenantId, UserId};
use scaidrive_domain::{DecodedEvent, DomainEvent, EventMetadata, LogPosition, RecordedEvent};
use scaidrive_projections::db::{ConnectOptions, Db};
use scaidrive_projections::drive::DriveProjection;
use scaidrive_projections::drive_queries as dq;
use scaidrive_projections::projection::Projection;
use scaidrive_projections::sync::SyncProjection;
use scaidrive_projections::sync_queries as sq;
use uuid::Uuid;

/// A migrated database in a temporary directory.
async fn scratch() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rm.db").display());
    let db = Db::connect(&url, &ConnectOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    (dir, db)
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
}

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// The fixture's ids: one tenant, one user, one share, numbered folders.
struct Ids;

impl Ids {
    fn tenant() -> TenantId {
        TenantId::from_uuid(uuid(1))
    }
    fn user() -> UserId {
        UserId::from_uuid(uuid(2))
    }
    fn share() -> ShareId {
        ShareId::from_uuid(uuid(3))
    }
    fn folder(n: u128) -> FolderId {
        FolderId::from_uuid(uuid(100 + n))
    }
}

/// Builds the log a test feeds: each event its own commit, in order.
#[derive(Default)]
struct Log {
    /// Written, not yet taken.
    events: Vec<DecodedEvent>,
    versions: std::collections::HashMap<String, i64>,
    position: i64,
}

impl Log {
    /// The events written since the last take.
    fn take(&mut self) -> Vec<DecodedEvent> {
        std::mem::take(&mut self.events)
    }

    fn push<E: DomainEvent>(&mut self, stream: String, e: E) -> &mut Self {
        let (event_type, data) = e.encode();
        self.position += 1;
        let position = self.position;
        let version = self.versions.entry(stream.clone()).or_default();
        *version += 1;
        self.events.push(DecodedEvent::new(RecordedEvent {
            log: LogPosition::new(position, position),
            stream_id: stream,
            stream_version: *version,
            event_id: uuid(10_000 + position as u128),
            event_type,
            schema_version: 1,
            tenant_id: Some(Ids::tenant().to_string()),
            data,
            metadata: EventMetadata {
                occurred_at: at(position),
                actor: Default::default(),
                correlation_id: None,
                causation_id: None,
            },
            recorded_at: at(position),
            hash: String::new(),
        }));
        self
    }

    fn share(&mut self) -> &mut Self {
        let share = Ids::share();
        self.push(
            share.to_string(),
            ShareEvent::ShareCreated {
                share_id: share,
                tenant_id: Ids::tenant(),
                name: "Team".into(),
                description: None,
                share_type: ShareType::Project,
                owner_id: Owner::User(Ids::user()),
                quota_bytes: None,
                by: Ids::user(),
                at: at(0),
            },
        )
    }

    fn folder(&mut self, n: u128, parent: Option<u128>, name: &str, path: &str) -> &mut Self {
        let id = Ids::folder(n);
        self.push(
            id.to_string(),
            FolderEvent::FolderCreated {
                folder_id: id,
                tenant_id: Ids::tenant(),
                share_id: Ids::share(),
                parent_id: parent.map(Ids::folder),
                name: name.into(),
                path: path.into(),
                by: Ids::user(),
                at: at(1),
            },
        )
    }

    fn renamed(&mut self, n: u128, name: &str, old_path: &str, path: &str) -> &mut Self {
        let id = Ids::folder(n);
        self.push(
            id.to_string(),
            FolderEvent::FolderRenamed {
                folder_id: id,
                share_id: Ids::share(),
                name: name.into(),
                old_path: old_path.into(),
                path: path.into(),
                at: at(2),
            },
        )
    }

    fn trashed(&mut self, n: u128, path: &str) -> &mut Self {
        let id = Ids::folder(n);
        self.push(
            id.to_string(),
            FolderEvent::FolderDeleted {
                folder_id: id,
                share_id: Ids::share(),
                path: path.into(),
                at: at(3),
            },
        )
    }
}

/// Applies a batch in one transaction, as the runner does.
async fn fold(db: &Db, p: &dyn Projection, events: &[DecodedEvent]) {
    let mut tx = db.begin().await.unwrap();
    p.apply_all(&mut tx, events).await.unwrap();
    tx.commit().await.unwrap();
}

async fn folder(db: &Db, n: u128) -> dq::FolderRow {
    dq::folder(db, &Ids::tenant().to_string(), &Ids::folder(n).to_string())
        .await
        .unwrap()
        .expect("a folder row")
}

#[tokio::test]
async fn drive_rows_follow_creates_renames_and_the_trash() {
    let (_dir, db) = scratch().await;
    let mut log = Log::default();
    log.share()
        .folder(1, None, "Docs", "/Docs")
        .folder(2, Some(1), "2026", "/Docs/2026");
    fold(&db, &DriveProjection, &log.take()).await;
    let share = dq::share(&db, &Ids::tenant().to_string(), &Ids::share().to_string())
        .await
        .unwrap()
        .expect("a share row");
    assert_eq!((share.name.as_str(), share.is_deleted), ("Team", false));
    assert_eq!(folder(&db, 2).await.path, "/Docs/2026");

    // A rename moves every path below it; the trash hides the subtree
    // through the folder that was trashed.
    log.renamed(1, "Papers", "/Docs", "/Papers")
        .trashed(1, "/Papers");
    fold(&db, &DriveProjection, &log.take()).await;
    let parent = folder(&db, 1).await;
    assert_eq!(
        (parent.name.as_str(), parent.path.as_str()),
        ("Papers", "/Papers")
    );
    assert!(parent.is_deleted);
    let child = folder(&db, 2).await;
    assert_eq!(child.path, "/Papers/2026");
    assert!(
        !child.is_deleted,
        "only the trashed folder is deleted itself"
    );
    assert_eq!(
        child.trashed_via.as_deref(),
        Some(Ids::folder(1).to_string().as_str())
    );
    let (folders, files, total) = dq::children(&db, &Ids::share().to_string(), None, false, 100, 0)
        .await
        .unwrap();
    assert!(folders.is_empty() && files.is_empty() && total == 0);
}

#[tokio::test]
async fn the_change_feed_has_one_entry_per_change_in_log_order() {
    let (_dir, db) = scratch().await;
    let mut log = Log::default();
    log.share()
        .folder(1, None, "Docs", "/Docs")
        .renamed(1, "Papers", "/Docs", "/Papers")
        .trashed(1, "/Papers");
    fold(&db, &SyncProjection, &log.take()).await;
    let changes = sq::changes(
        &db,
        &Ids::tenant().to_string(),
        &Ids::share().to_string(),
        LogPosition::START,
        100,
    )
    .await
    .unwrap();
    let folder = Ids::folder(1).to_string();
    let mine: Vec<&sq::ChangeRow> = changes.iter().filter(|c| c.resource_id == folder).collect();
    let seen: Vec<(&str, Option<&str>, Option<&str>)> = mine
        .iter()
        .map(|c| {
            (
                c.change_type.as_str(),
                c.old_path.as_deref(),
                c.new_path.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("created", None, Some("/Docs")),
            ("renamed", Some("/Docs"), Some("/Papers")),
            ("deleted", Some("/Papers"), None),
        ],
        "{changes:?}"
    );
    assert!(mine.iter().all(|c| c.resource_type == "folder"));
    // Positions only grow: a cursor after any change skips exactly those before it.
    assert!(changes.windows(2).all(|w| w[0].log() < w[1].log()));
    let after_first = sq::changes(
        &db,
        &Ids::tenant().to_string(),
        &Ids::share().to_string(),
        changes[0].log(),
        100,
    )
    .await
    .unwrap();
    assert_eq!(after_first.len(), changes.len() - 1);
}
