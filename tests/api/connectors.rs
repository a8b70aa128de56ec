//! SMB connectors against a real Samba: every test starts its own `smbd`
//! (scripts/samba, in a temp dir) so it may stop or kill it. Ignored unless
//! `SCAIDRIVE_TEST_SMBD` is set (scripts/test installs Samba and sets it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::drive::{new_share, upload};
use crate::helpers::{spawn_on, Backend, TestApp};

macro_rules! with_samba {
    ($body:ident => $sqlite:ident, $pg:ident) => {
        #[tokio::test]
        #[ignore = "needs Samba (scripts/test installs it and sets SCAIDRIVE_TEST_SMBD)"]
        async fn $sqlite() {
            $body(Backend::Sqlite).await
        }

        #[tokio::test]
        #[ignore = "needs Samba and PostgreSQL (scripts/test)"]
        async fn $pg() {
            $body(Backend::Postgres).await
        }
    };
}

const USER: &str = "scaitest";
const PASSWORD: &str = "scaitest-pass";

/// A throw-away smbd with its share directory.
struct Samba {
    dir: tempfile::TempDir,
    port: u16,
}

impl Samba {
    fn start() -> Samba {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Samba { dir, port: 0 };
        s.launch(None);
        s
    }

    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/samba")
    }

    fn launch(&mut self, port: Option<u16>) {
        let mut cmd = Command::new(Self::script());
        cmd.arg("start").arg(self.dir.path());
        if let Some(p) = port {
            cmd.arg(p.to_string());
        }
        let out = cmd.output().expect("scripts/samba start");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let addr = text
            .lines()
            .find_map(|l| l.strip_prefix("SCAIDRIVE_TEST_SMBD="))
            .expect("address");
        self.port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
    }

    fn share(&self) -> PathBuf {
        self.dir.path().join("share")
    }

    fn write(&self, rel: &str, data: &[u8]) {
        let p = self.share().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, data).expect("write");
        // smbd acts as the share's user: let it change what the test wrote.
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("0777")
            .arg(self.share())
            .status();
    }

    fn kill(&self) {
        let _ = Command::new(Self::script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
        std::thread::sleep(Duration::from_millis(300));
    }
}

impl Drop for Samba {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn connector(app: &TestApp, t: &str, share: &str, port: u16, extra: Value) -> String {
    let mut body = json!({
        "name": "files",
        "server_host": "127.0.0.1",
        "server_port": port,
        "share_name": "data",
        "username": USER,
        "password": PASSWORD,
        "target_share_id": share,
        "sync_interval_minutes": 0,
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    let a = app.post("/smb-connectors", t, body).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(a.body.get("password").is_none());
    a.body["id"].as_str().expect("id").to_owned()
}

/// Starts a run and waits for its end; answers the run.
async fn sync(app: &TestApp, t: &str, id: &str) -> Value {
    let a = app
        .post(&format!("/smb-connectors/{id}/sync"), t, json!({}))
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let run_id = a.body["run_id"].as_str().expect("run id").to_owned();
    wait_run(app, t, id, &run_id).await
}

async fn wait_run(app: &TestApp, t: &str, id: &str, run_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let runs = app.get(&format!("/smb-connectors/{id}/runs"), t).await;
        if let Some(r) = runs.body["runs"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == run_id))
        {
            if r["status"] != "running" {
                return r.clone();
            }
        }
        assert!(Instant::now() < deadline, "run did not end: {}", runs.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every live file of a share by path, with its id and size.
async fn drive_files(app: &TestApp, t: &str, share: &str) -> BTreeMap<String, (String, i64)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![format!("/shares/{share}/children?limit=100")];
    while let Some(url) = todo.pop() {
        let a = app.get(&url, t).await;
        assert_eq!(a.status, 200, "{}", a.body);
        for item in a.body["items"].as_array().cloned().unwrap_or_default() {
            let id = item["id"].as_str().unwrap_or_default().to_owned();
            if item["type"] == "folder" {
                todo.push(format!("/folders/{id}/children?limit=100"));
            } else {
                let path = item["path"].as_str().unwrap_or_default().to_owned();
                out.insert(path, (id, item["size"].as_i64().unwrap_or_default()));
            }
        }
    }
    out
}

async fn content(app: &TestApp, t: &str, file: &str) -> Vec<u8> {
    let resp = app
        .raw(reqwest::Method::GET, &format!("/files/{file}/content"))
        .bearer_auth(t)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("bytes").to_vec()
}

async fn smb_to_scaidrive(backend: Backend) {
    let samba = Samba::start();
    samba.write("in/a.txt", b"alpha");
    samba.write("in/docs/b.txt", b"bravo");
    samba.write("in/docs/skip.tmp", b"temporary");
    samba.write("in/~lock.txt", b"lock");
    let app = spawn_on(backend).await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "Mirror").await;
    let id = connector(
        &app,
        &t,
        &share,
        samba.port,
        json!({"sync_direction": "smb_to_scaidrive", "base_path": "in", "target_path": "Imported",
               "exclude_patterns": ["*.tmp", "~*"]}),
    )
    .await;

    let test = app
        .post(&format!("/smb-connectors/{id}/test"), &t, json!({}))
        .await;
    assert_eq!(test.status, 200);
    assert_eq!(test.body["success"], true, "{}", test.body);

    let run = sync(&app, &t, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["files_created"], 2, "{run}");
    let files = drive_files(&app, &t, &share).await;
    assert_eq!(
        files.keys().cloned().collect::<Vec<_>>(),
        vec![
            "/Imported/a.txt".to_owned(),
            "/Imported/docs/b.txt".to_owned()
        ]
    );
    assert_eq!(
        content(&app, &t, &files["/Imported/a.txt"].0).await,
        b"alpha"
    );

    // Unchanged: nothing read, nothing written.
    let again = sync(&app, &t, &id).await;
    assert_eq!(again["status"], "succeeded");
    assert_eq!(again["bytes_transferred"], 0, "{again}");
    assert_eq!(again["files_created"], 0);

    // A change and a deletion on the source.
    std::thread::sleep(Duration::from_millis(1100));
    samba.write("in/a.txt", b"alpha, second edition");
    std::fs::remove_file(samba.share().join("in/docs/b.txt")).expect("rm");
    let third = sync(&app, &t, &id).await;
    assert_eq!(third["status"], "succeeded", "{third}");
    assert_eq!(third["files_updated"], 1, "{third}");
    assert_eq!(third["files_deleted"], 1, "{third}");
    let files = drive_files(&app, &t, &share).await;
    assert_eq!(files.len(), 1);
    assert_eq!(
        content(&app, &t, &files["/Imported/a.txt"].0).await,
        b"alpha, second edition"
    );
    let trash = app.get(&format!("/shares/{share}/trash"), &t).await;
    assert!(trash.body.to_string().contains("b.txt"), "{}", trash.body);

    // Every write is the connector's; the password is in no event.
    let events = app.get("/events?limit=1000", &t).await;
    let text = events.body.to_string();
    assert!(!text.contains(PASSWORD));
    let file_events: Vec<&Value> = events.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| {
            e["event_type"]
                .as_str()
                .is_some_and(|k| k.starts_with("file-"))
        })
        .collect();
    assert!(!file_events.is_empty());
    for e in file_events {
        assert_eq!(
            e["actor"]["service_account"],
            format!("connector:{id}"),
            "{e}"
        );
    }
    for kind in [
        "connector-created",
        "connector-sync-started",
        "connector-sync-completed",
    ] {
        assert!(text.contains(kind), "{kind}");
    }
    let read = app.get(&format!("/smb-connectors/{id}"), &t).await;
    assert_eq!(read.body["status"], "idle", "{}", read.body);
    assert!(!read.body.to_string().contains(PASSWORD));
}
with_samba!(smb_to_scaidrive => connector_smb_to_scaidrive_sqlite, connector_smb_to_scaidrive_pg);

async fn both_ways(backend: Backend) {
    let samba = Samba::start();
    samba.write("two/from-smb.txt", b"from smb");
    let app = spawn_on(backend).await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "Both").await;
    let up = upload(
        &app,
        &t,
        &share,
        None,
        "from-drive.txt",
        b"from drive".to_vec(),
    )
    .await;
    assert_eq!(up.status, 201, "{}", up.body);
    let id = connector(&app, &t, &share, samba.port, json!({"base_path": "two"})).await;

    let run = sync(&app, &t, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        std::fs::read(samba.share().join("two/from-drive.txt")).expect("pushed"),
        b"from drive"
    );
    let files = drive_files(&app, &t, &share).await;
    assert!(files.contains_key("/from-smb.txt"), "{files:?}");

    // An edit on SMB reaches the drive; an edit in the drive reaches SMB.
    std::thread::sleep(Duration::from_millis(1100));
    samba.write("two/from-smb.txt", b"edited on smb");
    let fid = files["/from-drive.txt"].0.clone();
    app.delete(&format!("/files/{fid}"), &t).await;
    let run = sync(&app, &t, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let files = drive_files(&app, &t, &share).await;
    assert_eq!(
        content(&app, &t, &files["/from-smb.txt"].0).await,
        b"edited on smb"
    );
    assert!(
        !samba.share().join("two/from-drive.txt").exists(),
        "a drive deletion reaches SMB"
    );

    // Push only: a new drive file goes out, SMB-side changes stay out.
    let p = app
        .patch(
            &format!("/smb-connectors/{id}"),
            &t,
            json!({"sync_direction": "scaidrive_to_smb", "password": PASSWORD}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let bad = app
        .patch(
            &format!("/smb-connectors/{id}"),
            &t,
            json!({"target_share_id": share}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    upload(&app, &t, &share, None, "new.txt", b"new".to_vec()).await;
    samba.write("two/smb-only.txt", b"stays on smb");
    let run = sync(&app, &t, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        std::fs::read(samba.share().join("two/new.txt")).expect("new"),
        b"new"
    );
    assert!(!drive_files(&app, &t, &share)
        .await
        .contains_key("/smb-only.txt"));
}
with_samba!(both_ways => connector_both_ways_sqlite, connector_both_ways_pg);

async fn conflicts(backend: Backend) {
    for (strategy, expect_drive, expect_smb, copies) in [
        ("CLIENT_WINS", "smb side", "smb side", 0),
        ("SERVER_WINS", "drive side", "drive side", 0),
        ("LAST_WRITER_WINS", "smb side", "smb side", 0),
        ("KEEP_BOTH", "drive side", "drive side", 1),
        ("MANUAL", "drive side", "smb side", 0),
    ] {
        let samba = Samba::start();
        samba.write("c/doc.txt", b"base");
        let app = spawn_on(backend).await;
        let t = app.token("acme", "alice", "");
        let share = new_share(&app, &t, "Conflicts").await;
        let id = connector(
            &app,
            &t,
            &share,
            samba.port,
            json!({"base_path": "c", "conflict_resolution": strategy}),
        )
        .await;
        assert_eq!(sync(&app, &t, &id).await["status"], "succeeded");
        let fid = drive_files(&app, &t, &share).await["/doc.txt"].0.clone();
        // Both sides change: the drive first, SMB later (so SMB is the last writer).
        app.delete(&format!("/files/{fid}"), &t).await;
        let up = upload(&app, &t, &share, None, "doc.txt", b"drive side".to_vec()).await;
        assert_eq!(up.status, 201, "{}", up.body);
        std::thread::sleep(Duration::from_millis(2100));
        samba.write("c/doc.txt", b"smb side");
        let run = sync(&app, &t, &id).await;
        assert_eq!(run["status"], "succeeded", "{strategy}: {run}");
        let files = drive_files(&app, &t, &share).await;
        assert_eq!(
            content(&app, &t, &files["/doc.txt"].0).await,
            expect_drive.as_bytes(),
            "{strategy}"
        );
        assert_eq!(
            std::fs::read(samba.share().join("c/doc.txt")).expect("smb"),
            expect_smb.as_bytes(),
            "{strategy}"
        );
        let n = files.keys().filter(|k| k.contains("conflict")).count();
        assert_eq!(n, copies, "{strategy}: {files:?}");
    }
}
with_samba!(conflicts => connector_conflicts_sqlite, connector_conflicts_pg);

async fn failures(backend: Backend) {
    let samba = Samba::start();
    samba.write("f/x.txt", b"x");
    let app = spawn_on(backend).await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "Failures").await;

    // A wrong password: the test says so, the run fails with 401.
    let id = connector(
        &app,
        &t,
        &share,
        samba.port,
        json!({"password": "wrong-password", "base_path": "f"}),
    )
    .await;
    let test = app
        .post(&format!("/smb-connectors/{id}/test"), &t, json!({}))
        .await;
    assert_eq!(test.status, 200);
    assert_eq!(test.body["success"], false, "{}", test.body);
    assert_eq!(test.body["status"], 401, "{}", test.body);
    let run = sync(&app, &t, &id).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error_status"], 401, "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("rejected the credentials"),
        "{run}"
    );
    let read = app.get(&format!("/smb-connectors/{id}"), &t).await;
    assert_eq!(read.body["status"], "error");

    // A server that is not running: 502.
    let port = samba.port;
    samba.kill();
    let id2 = connector(&app, &t, &share, port, json!({"base_path": "f"})).await;
    let test = app
        .post(&format!("/smb-connectors/{id2}/test"), &t, json!({}))
        .await;
    assert_eq!(test.body["success"], false, "{}", test.body);
    let run = sync(&app, &t, &id2).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error_status"], 502, "{run}");

    // 409 while a run is going, 404 for strangers, 422 for bad input.
    let other = app.token("acme", "bob", "files:read files:write");
    app.get("/users/me", &other).await;
    assert_eq!(
        app.get(&format!("/smb-connectors/{id}"), &other)
            .await
            .status,
        404
    );
    let bad = app
        .post("/smb-connectors", &t, json!({"name": "x", "server_host": "h", "share_name": "s", "username": "u", "password": "p", "target_share_id": share, "sync_direction": "sideways"}))
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    let denied = app
        .post("/smb-connectors", &other, json!({"name": "x", "server_host": "h", "share_name": "s", "username": "u", "password": "p", "target_share_id": share}))
        .await;
    assert!(
        denied.status == 404 || denied.status == 403,
        "{}",
        denied.body
    );
}
with_samba!(failures => connector_failures_sqlite, connector_failures_pg);

async fn large_file_interrupted_and_resumed(backend: Backend) {
    let mut samba = Samba::start();
    let big: Vec<u8> = (0..(120u32 << 20)).map(|i| (i % 251) as u8).collect();
    samba.write("big/small.txt", b"small");
    samba.write("big/large.bin", &big);
    let app = spawn_on(backend).await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "Big").await;
    let id = connector(
        &app,
        &t,
        &share,
        samba.port,
        json!({"base_path": "big", "sync_direction": "smb_to_scaidrive"}),
    )
    .await;
    let a = app
        .post(&format!("/smb-connectors/{id}/sync"), &t, json!({}))
        .await;
    assert_eq!(a.status, 202);
    let run_id = a.body["run_id"].as_str().expect("run").to_owned();
    // A second start while it runs is refused.
    let again = app
        .post(&format!("/smb-connectors/{id}/sync"), &t, json!({}))
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    // Kill the server mid-run.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let port = samba.port;
    samba.kill();
    let run = wait_run(&app, &t, &id, &run_id).await;
    if run["status"] == "failed" {
        assert!(
            [502, 504].contains(&run["error_status"].as_i64().unwrap_or_default()),
            "{run}"
        );
        // Back up: the next run finishes the job.
        samba.launch(Some(port));
        let run = sync(&app, &t, &id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    let files = drive_files(&app, &t, &share).await;
    assert_eq!(files["/large.bin"].1, big.len() as i64);
    assert_eq!(content(&app, &t, &files["/large.bin"].0).await, big);
    assert_eq!(content(&app, &t, &files["/small.txt"].0).await, b"small");
}
with_samba!(large_file_interrupted_and_resumed
    => connector_large_file_interrupted_and_resumed_sqlite, connector_large_file_interrupted_and_resumed_pg);

/// The names of the live folders at the top of a share.
async fn top_folders(app: &TestApp, t: &str, share: &str) -> BTreeMap<String, String> {
    let a = app
        .get(&format!("/shares/{share}/children?limit=100"), t)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|i| i["type"] == "folder")
        .map(|i| {
            (
                i["name"].as_str().unwrap_or_default().to_owned(),
                i["id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn folders_both_ways(backend: Backend) {
    let samba = Samba::start();
    std::fs::create_dir_all(samba.share().join("f/made-on-smb")).expect("mkdir");
    samba.write("f/keep.txt", b"keep");
    let app = spawn_on(backend).await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "Folders").await;
    let made = app
        .post(
            "/folders",
            &t,
            json!({"share_id": share, "name": "made-in-drive"}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let id = connector(&app, &t, &share, samba.port, json!({"base_path": "f"})).await;

    // Empty folders cross over, each way.
    let run = sync(&app, &t, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(samba.share().join("f/made-in-drive").is_dir());
    let folders = top_folders(&app, &t, &share).await;
    assert!(folders.contains_key("made-on-smb"), "{folders:?}");
    assert!(folders.contains_key("made-in-drive"), "{folders:?}");

    // A folder removed on one side is removed on the other, and stays so.
    std::fs::remove_dir(samba.share().join("f/made-on-smb")).expect("rmdir");
    let gone = app
        .delete(&format!("/folders/{}", folders["made-in-drive"]), &t)
        .await;
    assert!(gone.status.is_success(), "{}", gone.body);
    for _ in 0..2 {
        let run = sync(&app, &t, &id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert!(!samba.share().join("f/made-in-drive").exists());
        assert!(!samba.share().join("f/made-on-smb").exists());
        let folders = top_folders(&app, &t, &share).await;
        assert!(folders.is_empty(), "{folders:?}");
    }
    let trash = app.get(&format!("/shares/{share}/trash"), &t).await;
    assert!(
        trash.body.to_string().contains("made-on-smb"),
        "{}",
        trash.body
    );
    assert!(samba.share().join("f/keep.txt").is_file());
}
with_samba!(folders_both_ways => connector_mirrors_folders_sqlite, connector_mirrors_folders_pg);
