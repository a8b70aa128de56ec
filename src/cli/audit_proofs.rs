//! `scaidrive audit verify-proof` and `scaidrive audit witness`: an
//! auditor's and a witness's checks of the Merkle log, with no database
//! access. Every check runs over materials (a signed checkpoint, proofs, an
//! NDJSON export) and the log's public verifier key; `--url` only fetches
//! those materials from the API first.
//!
//! Both keep their last trusted checkpoint in a state file (like immudb's
//! client state) and refuse to move backwards: a smaller tree, another root
//! for the same size, or a consistency proof that fails is a fork or a
//! rollback.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use scaidrive_domain::merkle::{self, Hash};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::proofs::{Checkpoint, NamedKey, Verifier};

/// Exit code of a failed check (tamper, fork, rollback).
const FAILED: u8 = 1;
/// Exit code of a usage or I/O problem.
const TROUBLE: u8 = 2;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The log's verifier key (`name+keyid+key`), or `@file` holding it.
    /// Pin it out of band; with `--url` and no key, the server's own is used
    /// (and pinned in the state file on first use).
    #[arg(long)]
    pub key: Option<String>,
    /// Where the last trusted checkpoint is kept.
    #[arg(long)]
    pub state: PathBuf,
    /// The checkpoint to verify (a signed note file).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// A consistency proof (JSON `{from,to,hashes}`) from the trusted
    /// checkpoint's size to the new one's.
    #[arg(long)]
    pub consistency: Option<PathBuf>,
    /// An NDJSON export (`GET /audit/export?format=ndjson`) to check.
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Inclusion proofs (NDJSON, one `GET /audit/proof/inclusion` answer
    /// per line, with `event_id` added) for the exported events.
    #[arg(long)]
    pub proofs: Option<PathBuf>,
    /// Fetch whatever is not given from this server (`.../api/v1`).
    #[arg(long)]
    pub url: Option<String>,
    /// Bearer token of a tenant admin (for `--url`).
    #[arg(long, env = "SCAIDRIVE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Save the fetched materials (checkpoint, proofs) into this directory.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Report a failure to the server as a SECURITY event (with `--url`).
    #[arg(long)]
    pub alarm: bool,
}

#[derive(Debug, clap::Args)]
pub struct WitnessArgs {
    /// The server (`.../api/v1`).
    #[arg(long)]
    pub url: String,
    /// Bearer token of a tenant admin.
    #[arg(long, env = "SCAIDRIVE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The log's verifier key, or `@file`; default: fetched once from
    /// `/.well-known/scaidrive-log-key` and pinned in the state file.
    #[arg(long)]
    pub key: Option<String>,
    /// The witness's name (a schema-less URL).
    #[arg(long, default_value = "witness.local/w1")]
    pub name: String,
    /// The witness's Ed25519 seed file (base64), created on first use.
    #[arg(long)]
    pub witness_key: PathBuf,
    /// Where the last cosigned checkpoint is kept.
    #[arg(long)]
    pub state: PathBuf,
    /// Seconds between polls.
    #[arg(long, default_value_t = 30)]
    pub interval: u64,
    /// Poll once and exit.
    #[arg(long)]
    pub once: bool,
}

/// What the verifier and the witness remember.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The pinned verifier key of the log.
    key: Option<String>,
    /// The last trusted (or cosigned) checkpoint, a signed note.
    checkpoint: Option<String>,
    /// The witness's cosigned note of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cosigned: Option<String>,
}

fn load_state(path: &Path) -> Result<State, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn save_state(path: &Path, s: &State) -> Result<(), String> {
    let text = serde_json::to_string_pretty(s).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

fn key_text(arg: &str) -> Result<String, String> {
    match arg.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}")),
        None => Ok(arg.to_owned()),
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn unb64(s: &str) -> Option<Hash> {
    B64.decode(s)
        .ok()
        .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
}

fn hashes(v: &Value) -> Option<Vec<Hash>> {
    v.get("hashes")?
        .as_array()?
        .iter()
        .map(|h| h.as_str().and_then(unb64))
        .collect()
}

// ------------------------------------------------------------ HTTP

struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    fn new(base: &str, token: Option<String>) -> Self {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, String> {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.map_err(|e| format!("GET {path}: {e}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(format!("GET {path}: {status} {body}"));
        }
        Ok(resp)
    }

    async fn text(&self, path: &str) -> Result<String, String> {
        self.get(path)
            .await?
            .text()
            .await
            .map_err(|e| format!("GET {path}: {e}"))
    }

    async fn json(&self, path: &str) -> Result<Value, String> {
        self.get(path)
            .await?
            .json()
            .await
            .map_err(|e| format!("GET {path}: {e}"))
    }

    /// The log's public key: `/.well-known` sits beside `/api/v1`.
    async fn log_key(&self) -> Result<String, String> {
        self.text("/.well-known/scaidrive-log-key").await
    }

    async fn alarm(&self, kind: &str, detail: &str, trusted: Option<&str>, seen: Option<&str>) {
        let mut r = self
            .http
            .post(format!("{}/audit/alarms", self.base))
            .json(&json!({"kind": kind, "detail": detail, "trusted": trusted, "seen": seen}));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        match r.send().await {
            Ok(resp) if resp.status().is_success() => {
                eprintln!("alarm recorded by the server as a SECURITY event");
            }
            Ok(resp) => eprintln!("the server refused the alarm: {}", resp.status()),
            Err(e) => eprintln!("cannot report the alarm: {e}"),
        }
    }
}

// ------------------------------------------------------------ checks

/// A failed check: what kind (for alarms) and why.
#[derive(Debug)]
struct Failure {
    kind: &'static str,
    detail: String,
}

fn fail(kind: &'static str, detail: impl Into<String>) -> Failure {
    Failure {
        kind,
        detail: detail.into(),
    }
}

/// Checks that `new` extends `old`: never smaller, the same root at the
/// same size, a valid consistency proof otherwise.
fn check_extends(
    old: &Checkpoint,
    new: &Checkpoint,
    proof: Option<&[Hash]>,
) -> Result<(), Failure> {
    if new.size < old.size {
        return Err(fail(
            "rollback",
            format!(
                "the log went back from tree size {} to {}; refusing to move backwards",
                old.size, new.size
            ),
        ));
    }
    if new.size == old.size {
        return if new.root == old.root {
            Ok(())
        } else {
            Err(fail(
                "fork",
                format!("two different checkpoints of tree size {}", new.size),
            ))
        };
    }
    let Some(proof) = proof else {
        return Err(fail("inconsistent", "no consistency proof was given"));
    };
    if merkle::verify_consistency(old.size, new.size, &old.root, &new.root, proof) {
        Ok(())
    } else {
        Err(fail(
            "fork",
            format!(
                "tree size {} is not consistent with the trusted tree size {}: history was rewritten",
                new.size, old.size
            ),
        ))
    }
}

fn consistency_hashes(v: &Value, from: u64, to: u64) -> Result<Vec<Hash>, Failure> {
    if v.get("from").and_then(Value::as_u64) != Some(from)
        || v.get("to").and_then(Value::as_u64) != Some(to)
    {
        return Err(fail(
            "bad-proof",
            format!("the consistency proof is not for {from} -> {to}"),
        ));
    }
    hashes(v).ok_or_else(|| fail("bad-proof", "the consistency proof is malformed"))
}

/// Checks the exported events against the checkpoint: each one's hash is
/// there, each stream's versions have no gap, and each event in the tree
/// has a valid inclusion proof. Answers how many were proven.
fn check_export(
    export: &str,
    cp: &Checkpoint,
    proofs: &HashMap<String, Value>,
) -> Result<(usize, usize), Vec<Failure>> {
    let mut failures = Vec::new();
    let mut streams: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let (mut proven, mut later) = (0, 0);
    for (n, line) in export
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            failures.push(fail(
                "bad-proof",
                format!("export line {} is not JSON", n + 1),
            ));
            continue;
        };
        let id = e["event_id"].as_str().unwrap_or("?").to_owned();
        let Some(hash) = e["hash"].as_str() else {
            failures.push(fail(
                "inconsistent",
                format!("event {id} is in the audit view but its log row is missing (deleted?)"),
            ));
            continue;
        };
        if let (Some(s), Some(v)) = (e["stream_id"].as_str(), e["stream_version"].as_i64()) {
            streams.entry(s.to_owned()).or_default().push(v);
        }
        let Some(index) = e["leaf_index"].as_u64().filter(|i| *i < cp.size) else {
            later += 1;
            continue;
        };
        let Some(leaf) = merkle::event_leaf(hash) else {
            failures.push(fail("bad-proof", format!("event {id}: hash is not hex")));
            continue;
        };
        let Some(p) = proofs.get(&id) else {
            failures.push(fail("bad-proof", format!("event {id}: no inclusion proof")));
            continue;
        };
        let ok = p["leaf_index"].as_u64() == Some(index)
            && p["tree_size"].as_u64() == Some(cp.size)
            && hashes(p)
                .is_some_and(|h| merkle::verify_inclusion(index, cp.size, &leaf, &h, &cp.root));
        if ok {
            proven += 1;
        } else {
            failures.push(fail(
                "bad-proof",
                format!("event {id} (leaf {index}) is not included in the checkpoint's tree: the event was changed"),
            ));
        }
    }
    for (stream, mut versions) in streams {
        versions.sort_unstable();
        for w in versions.windows(2) {
            if w[1] != w[0] + 1 {
                failures.push(fail(
                    "inconsistent",
                    format!("stream {stream} lacks version {} (deleted?)", w[0] + 1),
                ));
            }
        }
    }
    if failures.is_empty() {
        Ok((proven, later))
    } else {
        Err(failures)
    }
}

// ------------------------------------------------------------ verify-proof

pub fn verify_proof(args: VerifyArgs) -> ExitCode {
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(TROUBLE);
        }
    };
    rt.block_on(verify_proof_async(args))
}

async fn verify_proof_async(a: VerifyArgs) -> ExitCode {
    match verify_inner(&a).await {
        Ok(Ok(msg)) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Ok(Err((failures, api, trusted, seen))) => {
            for f in &failures {
                eprintln!("FAILED ({}): {}", f.kind, f.detail);
            }
            if let (true, Some(api)) = (a.alarm, api) {
                let detail = failures
                    .iter()
                    .map(|f| f.detail.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                api.alarm(
                    failures[0].kind,
                    &detail,
                    trusted.as_deref(),
                    seen.as_deref(),
                )
                .await;
            }
            ExitCode::from(FAILED)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(TROUBLE)
        }
    }
}

type Outcome = Result<String, (Vec<Failure>, Option<Api>, Option<String>, Option<String>)>;

async fn verify_inner(a: &VerifyArgs) -> Result<Outcome, String> {
    let mut state = load_state(&a.state)?;
    let api = a.url.as_deref().map(|u| Api::new(u, a.token.clone()));
    let key_text = match (&a.key, &state.key, &api) {
        (Some(k), _, _) => key_text(k)?,
        (None, Some(k), _) => k.clone(),
        (None, None, Some(api)) => api.log_key().await?,
        (None, None, None) => return Err("give --key (the log's verifier key)".into()),
    };
    let verifier = Verifier::parse(&key_text).map_err(|e| e.to_string())?;
    if let Some(pinned) = &state.key {
        if Verifier::parse(pinned).ok().as_ref() != Some(&verifier) {
            return Err("--key differs from the key pinned in the state file".into());
        }
    }
    let note = match (&a.checkpoint, &api) {
        (Some(p), _) => read(p)?,
        (None, Some(api)) => api.text("/audit/checkpoint").await?,
        (None, None) => return Err("give --checkpoint (or --url)".into()),
    };
    save_material(a, "checkpoint.txt", &note)?;
    let failed = |f: Vec<Failure>, api: Option<Api>, trusted: Option<String>| {
        Ok(Err((f, api, trusted, Some(note.clone()))))
    };
    let cp = match verifier.open(&note) {
        Ok(cp) => cp,
        Err(e) => {
            return failed(
                vec![fail("bad-signature", e.to_string())],
                api,
                state.checkpoint.clone(),
            )
        }
    };
    if let Some(old_note) = &state.checkpoint {
        let old = verifier
            .open(old_note)
            .map_err(|e| format!("the state file's checkpoint does not verify: {e}"))?;
        let proof = if cp.size > old.size {
            let v = match (&a.consistency, &api) {
                (Some(p), _) => serde_json::from_str(&read(p)?).map_err(|e| e.to_string())?,
                (None, Some(api)) => {
                    api.json(&format!(
                        "/audit/proof/consistency?from={}&to={}",
                        old.size, cp.size
                    ))
                    .await?
                }
                (None, None) => return Err("give --consistency (or --url)".into()),
            };
            save_material(a, "consistency.json", &v.to_string())?;
            match consistency_hashes(&v, old.size, cp.size) {
                Ok(h) => Some(h),
                Err(f) => return failed(vec![f], api, state.checkpoint.clone()),
            }
        } else {
            None
        };
        if let Err(f) = check_extends(&old, &cp, proof.as_deref()) {
            return failed(vec![f], api, state.checkpoint.clone());
        }
    }
    let mut summary = format!("checkpoint {} at tree size {} verifies", cp.origin, cp.size);
    if let Some(export) = &a.export {
        let text = read(export)?;
        let mut proofs: HashMap<String, Value> = HashMap::new();
        if let Some(p) = &a.proofs {
            for line in read(p)?.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
                if let Some(id) = v["event_id"].as_str() {
                    proofs.insert(id.to_owned(), v);
                }
            }
        }
        if let Some(api) = &api {
            let mut fetched = String::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let Ok(e) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                let (Some(id), Some(i)) = (e["event_id"].as_str(), e["leaf_index"].as_u64()) else {
                    continue;
                };
                if i >= cp.size || proofs.contains_key(id) {
                    continue;
                }
                let mut v = api
                    .json(&format!(
                        "/audit/proof/inclusion?event_id={id}&tree_size={}",
                        cp.size
                    ))
                    .await?;
                v["event_id"] = json!(id);
                fetched.push_str(&v.to_string());
                fetched.push('\n');
                proofs.insert(id.to_owned(), v);
            }
            save_material(a, "proofs.ndjson", &fetched)?;
        }
        match check_export(&text, &cp, &proofs) {
            Ok((proven, later)) => {
                summary.push_str(&format!(
                    "; {proven} exported events proven included{}",
                    if later > 0 {
                        format!(" ({later} newer than the checkpoint not checked)")
                    } else {
                        String::new()
                    }
                ));
            }
            Err(f) => return failed(f, api, state.checkpoint.clone()),
        }
    }
    state.key = Some(verifier.text());
    state.checkpoint = Some(note.clone());
    save_state(&a.state, &state)?;
    Ok(Ok(summary))
}

fn save_material(a: &VerifyArgs, name: &str, text: &str) -> Result<(), String> {
    if let Some(dir) = &a.save {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

// ------------------------------------------------------------ witness

pub fn witness(args: WitnessArgs) -> ExitCode {
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(TROUBLE);
        }
    };
    rt.block_on(witness_async(args))
}

async fn witness_async(a: WitnessArgs) -> ExitCode {
    let seed = match crate::proofs::key_file(&a.witness_key) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(TROUBLE);
        }
    };
    let me = match NamedKey::new(&a.name, seed) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(TROUBLE);
        }
    };
    eprintln!(
        "witness {} cosigner key {}",
        me.name(),
        me.cosigner().text()
    );
    let api = Api::new(&a.url, Some(a.token.clone()));
    loop {
        match witness_round(&a, &api, &me).await {
            Ok(Ok(msg)) => println!("{msg}"),
            Ok(Err((f, trusted, seen))) => {
                eprintln!("ALARM ({}): {}", f.kind, f.detail);
                api.alarm(f.kind, &f.detail, trusted.as_deref(), seen.as_deref())
                    .await;
                return ExitCode::from(FAILED);
            }
            Err(e) => {
                eprintln!("error: {e}");
                if a.once {
                    return ExitCode::from(TROUBLE);
                }
            }
        }
        if a.once {
            return ExitCode::SUCCESS;
        }
        tokio::time::sleep(Duration::from_secs(a.interval.max(1))).await;
    }
}

type Round = Result<String, (Failure, Option<String>, Option<String>)>;

async fn witness_round(a: &WitnessArgs, api: &Api, me: &NamedKey) -> Result<Round, String> {
    let mut state = load_state(&a.state)?;
    let key_text = match (&a.key, &state.key) {
        (Some(k), _) => key_text(k)?,
        (None, Some(k)) => k.clone(),
        (None, None) => api.log_key().await?,
    };
    let verifier = Verifier::parse(&key_text).map_err(|e| e.to_string())?;
    let note = api.text("/audit/checkpoint").await?;
    let trusted = state.checkpoint.clone();
    let cp = match verifier.open(&note) {
        Ok(cp) => cp,
        Err(e) => {
            return Ok(Err((
                fail("bad-signature", e.to_string()),
                trusted,
                Some(note),
            )))
        }
    };
    if let Some(old_note) = &state.checkpoint {
        let old = verifier
            .open(old_note)
            .map_err(|e| format!("the state file's checkpoint does not verify: {e}"))?;
        let proof = if cp.size > old.size {
            let v = api
                .json(&format!(
                    "/audit/proof/consistency?from={}&to={}",
                    old.size, cp.size
                ))
                .await?;
            match consistency_hashes(&v, old.size, cp.size) {
                Ok(h) => Some(h),
                Err(f) => return Ok(Err((f, trusted, Some(note)))),
            }
        } else {
            None
        };
        if let Err(f) = check_extends(&old, &cp, proof.as_deref()) {
            return Ok(Err((f, trusted, Some(note))));
        }
        if cp.size == old.size {
            return Ok(Ok(format!("tree size {} unchanged", cp.size)));
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let cosigned = format!("{note}{}", me.cosign(&cp, now));
    state.key = Some(verifier.text());
    state.checkpoint = Some(note);
    state.cosigned = Some(cosigned.clone());
    save_state(&a.state, &state)?;
    Ok(Ok(cosigned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(size: u64, root: u8) -> Checkpoint {
        Checkpoint {
            origin: "o/log".into(),
            size,
            root: [root; 32],
        }
    }

    #[test]
    fn a_smaller_tree_or_another_root_of_the_same_size_is_refused() {
        assert_eq!(
            check_extends(&cp(5, 1), &cp(4, 1), None).unwrap_err().kind,
            "rollback"
        );
        assert_eq!(
            check_extends(&cp(5, 1), &cp(5, 2), None).unwrap_err().kind,
            "fork"
        );
        assert!(check_extends(&cp(5, 1), &cp(5, 1), None).is_ok());
        assert_eq!(
            check_extends(&cp(5, 1), &cp(6, 1), Some(&[]))
                .unwrap_err()
                .kind,
            "fork"
        );
    }
}
