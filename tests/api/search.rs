//! Search over HTTP: keyword matches in names and extracted content (text,
//! Markdown, HTML, PDF, docx), changes to files reflected, read-your-writes
//! through `X-ScaiDrive-Position`, permission filtering exactly like a
//! listing, validation, and the semantic family without a provider.

use std::io::Write;

use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::drive::new_share;
use crate::helpers::{spawn_on, Answer, Backend, TestApp};

const RW: &str = "files:read files:write";

/// Uploads with a MIME type of our choosing.
pub(crate) async fn put(
    app: &TestApp,
    t: &str,
    share: &str,
    folder: Option<&str>,
    name: &str,
    mime: &str,
    data: Vec<u8>,
) -> Answer {
    let a = crate::drive::upload_as(app, t, share, folder, name, mime, data).await;
    assert_eq!(a.status, 201, "{}", a.body);
    a
}

/// Keyword search that waits for `position` (the caller's last write).
async fn find(app: &TestApp, t: &str, query: &str, position: Option<&str>) -> Answer {
    let mut req = app
        .raw(Method::GET, "/search")
        .query(&[("q", query)])
        .bearer_auth(t);
    if let Some(p) = position {
        req = req.header("x-scaidrive-position", p);
    }
    TestApp::answer(req.send().await.unwrap()).await
}

/// The ids a search answered, best first.
fn ids(a: &Answer) -> Vec<String> {
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) fn pos(a: &Answer) -> String {
    a.header("x-scaidrive-position").unwrap().to_owned()
}

/// A small PDF with one page per entry, each showing its text in Helvetica.
pub(crate) fn pdf(pages: &[&str]) -> Vec<u8> {
    let n = pages.len();
    // Objects: 1 catalog, 2 pages, 3 font, then per page: page, content.
    let mut objects: Vec<String> = Vec::new();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".into());
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    objects.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {n} >>",
        kids.join(" ")
    ));
    objects.push(
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".into(),
    );
    for (i, text) in pages.iter().enumerate() {
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            5 + 2 * i
        ));
        let stream = format!("BT /F1 18 Tf 72 720 Td ({text}) Tj ET");
        objects.push(format!(
            "<< /Length {} >>\nstream\n{stream}\nendstream",
            stream.len()
        ));
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A docx whose body has a heading and a paragraph.
fn docx(heading: &str, body: &str) -> Vec<u8> {
    let doc = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>{heading}</w:t></w:r></w:p><w:p><w:r><w:t>{body}</w:t></w:r></w:p></w:body></w:document>"#
    );
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        w.start_file(
            "word/document.xml",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        w.write_all(doc.as_bytes()).unwrap();
        w.finish().unwrap();
    }
    buf.into_inner()
}

const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

async fn finds_content_and_follows_changes(backend: Backend) {
    let app = spawn_on(backend).await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "Docs").await;

    let txt = put(
        &app,
        &t,
        &share,
        None,
        "notes.txt",
        "text/plain",
        b"The Wombat sleeps".to_vec(),
    )
    .await;
    let md = put(
        &app,
        &t,
        &share,
        None,
        "readme.md",
        "text/markdown",
        b"# Setup\nInstall the platypus driver\n".to_vec(),
    )
    .await;
    let html = put(&app, &t, &share, None, "page.html", "text/html", b"<html><script>var hidden_echidna=1</script><body><p>Kangaroo &amp; friends</p></body></html>".to_vec()).await;
    let pdf_a = put(
        &app,
        &t,
        &share,
        None,
        "report.pdf",
        "application/pdf",
        pdf(&["First page about budgets", "Second page mentions quokka"]),
    )
    .await;
    let doc = put(
        &app,
        &t,
        &share,
        None,
        "memo.docx",
        DOCX,
        docx("Agenda", "Discuss the koala budget"),
    )
    .await;
    let broken = put(
        &app,
        &t,
        &share,
        None,
        "broken-dingo.pdf",
        "application/pdf",
        b"%PDF-1.4 this is not a pdf".to_vec(),
    )
    .await;
    let last = pos(&broken);

    // Read-your-writes: with the position of the last upload, everything is there.
    let a = find(&app, &t, "wombat", Some(&last)).await;
    assert_eq!(ids(&a), vec![txt.body["id"].as_str().unwrap()]);
    let r = &a.body["results"][0];
    assert_eq!(r["name"], "notes.txt");
    assert_eq!(r["type"], "file");
    assert_eq!(r["share_id"], share.as_str());
    assert_eq!(r["path"], "/notes.txt");
    assert_eq!(r["mime_type"], "text/plain");
    assert!(r["score"].as_f64().unwrap() > 0.0);
    assert!(r["modified_at"].is_string());
    assert_eq!(a.body["total"], 1);
    assert_eq!(a.body["has_more"], false);
    assert_eq!(a.body["query"], "wombat");

    assert_eq!(
        ids(&find(&app, &t, "PLATYPUS", None).await),
        vec![md.body["id"].as_str().unwrap()]
    );
    assert_eq!(
        ids(&find(&app, &t, "kangaroo", None).await),
        vec![html.body["id"].as_str().unwrap()]
    );
    assert!(
        ids(&find(&app, &t, "hidden_echidna", None).await).is_empty(),
        "script text is not content"
    );
    assert_eq!(
        ids(&find(&app, &t, "quokka", None).await),
        vec![pdf_a.body["id"].as_str().unwrap()]
    );
    assert_eq!(
        ids(&find(&app, &t, "koala", None).await),
        vec![doc.body["id"].as_str().unwrap()]
    );
    // Both match "budget(s)"? No stemming: exact tokens only.
    assert_eq!(
        ids(&find(&app, &t, "budget", None).await),
        vec![doc.body["id"].as_str().unwrap()]
    );
    // A file whose extraction failed is still found by name.
    assert_eq!(
        ids(&find(&app, &t, "dingo", None).await),
        vec![broken.body["id"].as_str().unwrap()]
    );
    // file_type filters by MIME pattern.
    let a = TestApp::answer(
        app.raw(Method::GET, "/search")
            .query(&[("q", "budgets budget"), ("file_type", "application/*")])
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200);
    let a = app
        .post(
            "/search",
            &t,
            json!({"query": "quokka", "mime_type": "text/*"}),
        )
        .await;
    assert_eq!(a.body["total"], 0, "{}", a.body);
    let a = app
        .post(
            "/search",
            &t,
            json!({"query": "quokka", "mime_type": "application/pdf"}),
        )
        .await;
    assert_eq!(a.body["total"], 1, "{}", a.body);

    // Rename: the new name is found, the old one no longer.
    let id = txt.body["id"].as_str().unwrap();
    let r = app
        .patch(
            &format!("/files/{id}"),
            &t,
            json!({"name": "marsupial.txt"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let p = pos(&r);
    assert_eq!(ids(&find(&app, &t, "marsupial", Some(&p)).await), vec![id]);
    assert!(ids(&find(&app, &t, "notes", Some(&p)).await).is_empty());
    assert_eq!(
        ids(&find(&app, &t, "wombat", Some(&p)).await),
        vec![id],
        "content kept"
    );

    // Move into a folder: the path follows.
    let f = app
        .post("/folders", &t, json!({"share_id": share, "name": "Zoo"}))
        .await;
    let fid = f.body["id"].as_str().unwrap();
    let m = app
        .post(
            &format!("/files/{id}/move"),
            &t,
            json!({"target_folder_id": fid}),
        )
        .await;
    assert_eq!(m.status, 200, "{}", m.body);
    let a = find(&app, &t, "wombat", Some(&pos(&m))).await;
    assert_eq!(a.body["results"][0]["path"], "/Zoo/marsupial.txt");
    assert_eq!(a.body["results"][0]["folder_id"], fid);

    // Trash hides it, restore brings it back.
    let d = app.delete(&format!("/files/{id}"), &t).await;
    assert_eq!(d.status, 204);
    assert!(ids(&find(&app, &t, "wombat", None).await).is_empty());
    let r = app
        .patch(&format!("/files/{id}"), &t, json!({"restore": true}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        ids(&find(&app, &t, "wombat", Some(&pos(&r))).await),
        vec![id]
    );
    // Trashing the folder hides what is inside.
    assert_eq!(app.delete(&format!("/folders/{fid}"), &t).await.status, 204);
    assert!(ids(&find(&app, &t, "wombat", None).await).is_empty());
    let r = app
        .patch(&format!("/folders/{fid}"), &t, json!({"restore": true}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ids(&find(&app, &t, "wombat", None).await), vec![id]);

    // A new version: new words found, old ones gone.
    let body = b"Now about a numbat".to_vec();
    let s = app
        .post(
            "/uploads",
            &t,
            json!({"share_id": share, "file_name": "marsupial.txt", "file_size": body.len(),
                   "checksum_sha256": hex::encode(Sha256::digest(&body)), "replace_file_id": id}),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let sid = s.body["session_id"].as_str().unwrap();
    let c = app
        .raw(Method::PUT, &format!("/uploads/{sid}/chunks/0"))
        .bearer_auth(&t)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(c.status().is_success());
    let done = app
        .post(&format!("/uploads/{sid}/complete"), &t, json!({}))
        .await;
    assert!(done.status.is_success(), "{}", done.body);
    let p = pos(&done);
    assert_eq!(ids(&find(&app, &t, "numbat", Some(&p)).await), vec![id]);
    assert!(ids(&find(&app, &t, "wombat", Some(&p)).await).is_empty());

    // Purge: gone for good.
    let d = app.delete(&format!("/files/{id}?permanent=true"), &t).await;
    assert_eq!(d.status, 204, "{}", d.body);
    assert!(ids(&find(&app, &t, "numbat", Some(&pos(&d))).await).is_empty());

    // Health reports the documents of the caller's tenant.
    let h = app.get("/search/health", &t).await;
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(h.body["keyword"]["documents"], 5, "{}", h.body);
    assert_eq!(h.body["keyword"]["extraction_failures"], 1, "{}", h.body);
    assert_eq!(h.body["semantic"]["enabled"], false);
}
both_backends!(finds_content_and_follows_changes => keyword_search_finds_content_and_follows_changes, keyword_search_finds_content_and_follows_changes_pg);

async fn my_id(app: &TestApp, t: &str) -> String {
    app.get("/users/me", t).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn permission_filtering_is_exact(backend: Backend) {
    let app = spawn_on(backend).await;
    let admin = app.token("acme", "root", "");
    my_id(&app, &admin).await;
    let owner = app.token("acme", "olga", RW);
    let bea = app.token("acme", "bea", RW);
    let cal = app.token("acme", "cal", RW);
    my_id(&app, &owner).await;
    let bea_id = my_id(&app, &bea).await;
    let cal_id = my_id(&app, &cal).await;
    let share = new_share(&app, &owner, "Team").await;
    let secret = app
        .post(
            "/folders",
            &owner,
            json!({"share_id": share, "name": "secret"}),
        )
        .await;
    let secret = secret.body["id"].as_str().unwrap().to_owned();
    let mut open_ids = Vec::new();
    for i in 0..3 {
        let a = put(
            &app,
            &owner,
            &share,
            None,
            &format!("lemur-{i}.txt"),
            "text/plain",
            b"lemur".to_vec(),
        )
        .await;
        open_ids.push(a.body["id"].as_str().unwrap().to_owned());
    }
    let hidden = put(
        &app,
        &owner,
        &share,
        Some(&secret),
        "lemur-secret.txt",
        "text/plain",
        b"lemur".to_vec(),
    )
    .await;
    let last = pos(&hidden);

    // Not a member yet: nothing, and the share itself is 404.
    let a = find(&app, &bea, "lemur", Some(&last)).await;
    assert_eq!(a.body["total"], 0, "{}", a.body);
    let a = TestApp::answer(
        app.raw(Method::GET, "/search")
            .query(&[("q", "lemur"), ("share_id", share.as_str())])
            .bearer_auth(&bea)
            .send()
            .await
            .unwrap(),
    )
    .await;
    a.assert_detail(404);
    app.post(
        "/search",
        &bea,
        json!({"query": "lemur", "share_id": share}),
    )
    .await
    .assert_detail(404);

    // A member sees all four; the owner too.
    let m = app
        .post(
            &format!("/shares/{share}/members"),
            &owner,
            json!({"principal_type": "user", "principal_id": bea_id, "role": "reader"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.body);
    let a = find(&app, &bea, "lemur", Some(&pos(&m))).await;
    assert_eq!(a.body["total"], 4, "{}", a.body);
    assert_eq!(find(&app, &owner, "lemur", None).await.body["total"], 4);

    // A deny ACE on the folder, made after indexing, hides what is below it.
    let d = app.post(&format!("/permissions/acl/folder/{secret}"), &owner, json!({"principal_type": "user", "principal_id": bea_id, "permissions": ["READ"], "ace_type": "deny"})).await;
    assert_eq!(d.status, 201, "{}", d.body);
    let a = find(&app, &bea, "lemur", Some(&pos(&d))).await;
    assert_eq!(a.body["total"], 3, "{}", a.body);
    let mut got = ids(&a);
    got.sort();
    let mut want = open_ids.clone();
    want.sort();
    assert_eq!(got, want);
    // Paging counts only what the caller may see.
    let a = TestApp::answer(
        app.raw(Method::GET, "/search")
            .query(&[("q", "lemur"), ("limit", "2")])
            .bearer_auth(&bea)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.body["total"], 3);
    assert_eq!(a.body["has_more"], true);
    assert_eq!(ids(&a).len(), 2);
    let b = TestApp::answer(
        app.raw(Method::GET, "/search")
            .query(&[("q", "lemur"), ("limit", "2"), ("offset", "2")])
            .bearer_auth(&bea)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(b.body["has_more"], false);
    assert_eq!(ids(&b).len(), 1);
    assert!(!ids(&a).contains(&ids(&b)[0]));
    // The owner still sees all four.
    assert_eq!(find(&app, &owner, "lemur", None).await.body["total"], 4);

    // A removed member sees nothing any more.
    let r = app
        .delete(&format!("/shares/{share}/members/{bea_id}"), &owner)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        find(&app, &bea, "lemur", Some(&pos(&r))).await.body["total"],
        0
    );

    // Through a group: added to it → sees; removed → does not.
    let g = app
        .post("/admin/groups", &admin, json!({"name": "Readers"}))
        .await;
    assert_eq!(g.status, 201, "{}", g.body);
    let gid = g.body["id"].as_str().unwrap().to_owned();
    let m = app
        .post(
            &format!("/shares/{share}/members"),
            &owner,
            json!({"principal_type": "group", "principal_id": gid, "role": "reader"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.body);
    assert_eq!(
        find(&app, &cal, "lemur", Some(&pos(&m))).await.body["total"],
        0
    );
    let j = app
        .post(
            &format!("/admin/groups/{gid}/members/{cal_id}"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(j.status, 201, "{}", j.body);
    assert_eq!(
        find(&app, &cal, "lemur", Some(&pos(&j))).await.body["total"],
        4
    );
    let l = app
        .delete(&format!("/admin/groups/{gid}/members/{cal_id}"), &admin)
        .await;
    assert!(l.status.is_success(), "{}", l.body);
    assert_eq!(
        find(&app, &cal, "lemur", Some(&pos(&l))).await.body["total"],
        0
    );

    // Another tenant never sees these, even with the same words.
    let eve = app.token("other", "eve", "");
    let eve_share = new_share(&app, &eve, "Mine").await;
    let e = put(
        &app,
        &eve,
        &eve_share,
        None,
        "lemur.txt",
        "text/plain",
        b"lemur".to_vec(),
    )
    .await;
    let a = find(&app, &eve, "lemur", Some(&pos(&e))).await;
    assert_eq!(ids(&a), vec![e.body["id"].as_str().unwrap()]);
    assert_eq!(find(&app, &owner, "lemur", None).await.body["total"], 4);
    let a = TestApp::answer(
        app.raw(Method::GET, "/search")
            .query(&[("q", "lemur"), ("share_id", share.as_str())])
            .bearer_auth(&eve)
            .send()
            .await
            .unwrap(),
    )
    .await;
    a.assert_detail(404);
}
both_backends!(permission_filtering_is_exact => search_permission_filtering_is_exact, search_permission_filtering_is_exact_pg);

#[tokio::test]
async fn search_validation_and_semantic_without_provider() {
    let app = spawn_on(Backend::Sqlite).await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    app.get("/search", &t).await.assert_detail(400);
    app.get("/search?q=x&limit=0", &t).await.assert_detail(400);
    app.get("/search?q=x&limit=101", &t)
        .await
        .assert_detail(400);
    app.get("/search?q=x&offset=-1", &t)
        .await
        .assert_detail(400);
    app.get("/search?q=x&limit=abc", &t)
        .await
        .assert_detail(400);
    let e = app.post("/search", &t, json!({})).await;
    assert_eq!(e.assert_422()[0]["loc"], json!(["body", "query"]));
    let e = app
        .post("/search", &t, json!({"query": "x", "limit": 0}))
        .await;
    assert_eq!(e.assert_422()[0]["type"], "greater_than_equal");
    app.post("/search", &t, json!({"query": "   "}))
        .await
        .assert_422();
    app.get("/search?q=x&share_id=shr_nope", &t)
        .await
        .assert_detail(404);
    // Punctuation only: valid, nothing matches.
    let a = app.get("/search?q=%2B%2B%2B", &t).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["total"], 0);
    // No token: 401.
    assert_eq!(
        app.call(Method::GET, "/search?q=x", None, None)
            .await
            .status,
        401
    );

    // The semantic family answers 501 without a provider, after validation
    // and visibility.
    app.get("/search/semantic?q=hello", &t)
        .await
        .assert_detail(501);
    app.post("/search/semantic", &t, json!({"query": "hello"}))
        .await
        .assert_detail(501);
    app.post(
        "/search/hybrid",
        &t,
        json!({"query": "hello", "alpha": 0.3}),
    )
    .await
    .assert_detail(501);
    app.post(
        "/search/context",
        &t,
        json!({"query": "hello", "share_id": share}),
    )
    .await
    .assert_detail(501);
    app.post("/search/hybrid", &t, json!({"query": "hello", "alpha": 2}))
        .await
        .assert_422();
    app.post("/search/context", &t, json!({}))
        .await
        .assert_422();
    app.post(
        "/search/semantic",
        &t,
        json!({"query": "x", "share_id": "shr_nope"}),
    )
    .await
    .assert_detail(404);

    // Cost 10 and 20 against the rate limit.
    let a = app.get("/search?q=x", &t).await;
    let b = app.get("/search?q=x", &t).await;
    let left = |x: &Answer| {
        x.header("x-ratelimit-remaining")
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    assert_eq!(left(&a) - left(&b), 10);
    let c = app
        .post("/search/semantic", &t, json!({"query": "hello"}))
        .await;
    assert_eq!(left(&b) - left(&c), 20);

    let h = app.get("/search/health", &t).await;
    assert_eq!(h.status, 200);
    let v: &Value = &h.body;
    for k in [
        "enabled",
        "provider",
        "model",
        "dimensions",
        "chunks",
        "lag_events",
    ] {
        assert!(v["semantic"].get(k).is_some(), "{v}");
    }
    assert!(v["keyword"]["lag_events"].is_number(), "{v}");
}

/// `projections rebuild search` builds the index again beside the live one;
/// the server switches to it and answers the same.
#[tokio::test]
async fn the_keyword_index_rebuilds_from_the_log() {
    let app = spawn_on(Backend::Sqlite).await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    let a = put(
        &app,
        &t,
        &share,
        None,
        "report.pdf",
        "application/pdf",
        pdf(&["tapir census"]),
    )
    .await;
    let b = put(
        &app,
        &t,
        &share,
        None,
        "gone.txt",
        "text/plain",
        b"tapir".to_vec(),
    )
    .await;
    let bid = b.body["id"].as_str().unwrap();
    let d = app
        .delete(&format!("/files/{bid}?permanent=true"), &t)
        .await;
    assert_eq!(d.status, 204);
    assert_eq!(
        find(&app, &t, "tapir", Some(&pos(&d))).await.body["total"],
        1
    );

    let state = app.state.clone();
    let search = state.search.clone().expect("search index");
    let first = search.index().dir().to_owned();
    let settings = scaidrive::search::Settings::from_env(&state.config.data_dir);
    let read = scaidrive::search::indexer::rebuild(&settings, &state.store, &state.blob, |_| {})
        .await
        .expect("rebuild");
    assert!(read > 0);
    // The server switches on its next step.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while search.index().dir() == first {
        assert!(
            std::time::Instant::now() < deadline,
            "server did not switch"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!first.exists(), "the old index is deleted");
    let after = find(&app, &t, "tapir", None).await;
    assert_eq!(ids(&after), vec![a.body["id"].as_str().unwrap()]);
    // Writes after the switch are indexed too.
    let c = put(
        &app,
        &t,
        &share,
        None,
        "more.txt",
        "text/plain",
        b"tapir again".to_vec(),
    )
    .await;
    assert_eq!(
        find(&app, &t, "tapir", Some(&pos(&c))).await.body["total"],
        2
    );
}
