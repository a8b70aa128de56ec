//! `/search*`: keyword search (BM25 over names and extracted text),
//! permission-filtered exactly like a listing; the semantic family (chunks
//! by cosine similarity, hybrid blending, a prompt's context within a token
//! budget), which answers 501 while no embedding provider is configured or
//! the tenant's vectorization is off; and the indexes' health.
//!
//! Filtering: the index answers candidates of the caller's tenant; each is
//! kept only if the drive read model still has it live (not trashed, not in
//! a trashed folder or share) and the caller's effective permissions on it
//! (share membership, groups, ACL entries with inheritance, tenant admin)
//! include READ — the resolution every listing and read uses. `total` and
//! `has_more` count the kept ones, so paging is right for the caller.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use scaidrive_domain::access::Permission;
use scaidrive_domain::LogPosition;
use scaidrive_projections::db::Db;
use scaidrive_projections::drive_queries::FileRow;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::search::embed::EmbedError;
use crate::search::rank::{blend, pack};
use crate::search::semantic::SemanticIndexer;
use crate::search::vectors::ChunkHit;

use super::drive::{effective, require_read, visible_share, On};
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiQuery, Validate, Violations};
use super::principal::Principal;
use super::state::AppState;
use super::ts;

/// Candidates the index is asked for at most per query: `total` counts the
/// visible ones among the best this many matches.
const MAX_CANDIDATES: usize = 10_000;
/// Longest query, in characters.
const MAX_QUERY: usize = 500;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/search", get(search_get).post(search_post))
        .route("/search/semantic", get(semantic_get).post(semantic_post))
        .route("/search/hybrid", post(hybrid))
        .route("/search/context", post(context))
        .route("/search/health", get(health))
}

/// The search endpoints' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        search_get,
        search_post,
        semantic_get,
        semantic_post,
        hybrid,
        context,
        health
    ),
    components(schemas(
        SearchBody,
        SemanticBody,
        HybridBody,
        ContextBody,
        SearchAnswer,
        SearchResult,
        SearchHealth,
        SemanticAnswer,
        SemanticResult,
        HybridAnswer,
        HybridResult,
        ContextAnswer,
        ContextChunk
    ))
)]
pub struct SearchApi;

// ------------------------------------------------------------------ shapes

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    /// Words to find in names and content (all must match).
    q: Option<String>,
    /// Only this share.
    share_id: Option<String>,
    /// A MIME type or pattern: `application/pdf`, `text/*`.
    file_type: Option<String>,
    /// With `share_id`: `false` keeps only files at the share's root.
    recursive: Option<bool>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// `POST /search`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SearchBody {
    pub query: String,
    pub share_id: Option<String>,
    /// A MIME type or pattern (`text/*`).
    pub mime_type: Option<String>,
    #[schema(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    #[schema(minimum = 0)]
    pub offset: Option<i64>,
}

impl Validate for SearchBody {
    const REQUIRED: &'static [&'static str] = &["query"];
    fn validate(&self, v: &mut Violations) {
        v.length("query", self.query.trim(), 1, MAX_QUERY);
        if let Some(l) = self.limit {
            v.range("limit", l, 1, 100);
        }
        if let Some(o) = self.offset {
            v.range("offset", o, 0, i64::MAX);
        }
        if let Some(m) = &self.mime_type {
            v.length("mime_type", m, 1, 255);
        }
    }
}

/// A keyword result.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SearchResult {
    id: String,
    name: String,
    /// Always `file`.
    #[serde(rename = "type")]
    kind: &'static str,
    share_id: String,
    folder_id: Option<String>,
    path: String,
    mime_type: String,
    size: i64,
    modified_at: String,
    score: f32,
}

impl SearchResult {
    fn of(row: &FileRow, score: f32) -> Self {
        Self {
            id: row.id.clone(),
            name: row.name.clone(),
            kind: "file",
            share_id: row.share_id.clone(),
            folder_id: row.folder_id.clone(),
            path: row.path.clone(),
            mime_type: row.mime_type.clone(),
            size: row.size,
            modified_at: ts(row.modified_at),
            score,
        }
    }
}

/// The keyword answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SearchAnswer {
    query: String,
    results: Vec<SearchResult>,
    total: usize,
    has_more: bool,
}

/// `GET /search/health`.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SearchHealth {
    /// `{documents, lag_events}`.
    keyword: Value,
    /// `{enabled, provider, model, dimensions, chunks, lag_events}`
    /// (`detail` says why when no provider is available).
    semantic: Value,
}

/// `POST /search/semantic`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SemanticBody {
    pub query: String,
    pub share_id: Option<String>,
    pub file_types: Option<Vec<String>>,
    pub path_prefix: Option<String>,
    #[schema(minimum = 1, maximum = 50)]
    pub limit: Option<i64>,
}

impl Validate for SemanticBody {
    const REQUIRED: &'static [&'static str] = &["query"];
    fn validate(&self, v: &mut Violations) {
        v.length("query", self.query.trim(), 1, MAX_QUERY);
        if let Some(l) = self.limit {
            v.range("limit", l, 1, 50);
        }
        check_file_types(v, &self.file_types);
        if let Some(pre) = &self.path_prefix {
            v.length("path_prefix", pre, 0, 4096);
        }
    }
}

/// `POST /search/hybrid`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct HybridBody {
    pub query: String,
    pub share_id: Option<String>,
    pub file_types: Option<Vec<String>>,
    #[schema(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// 0 = keyword only, 1 = vector only; default 0.5.
    #[schema(minimum = 0, maximum = 1)]
    pub alpha: Option<f64>,
}

impl Validate for HybridBody {
    const REQUIRED: &'static [&'static str] = &["query"];
    fn validate(&self, v: &mut Violations) {
        v.length("query", self.query.trim(), 1, MAX_QUERY);
        if let Some(l) = self.limit {
            v.range("limit", l, 1, 100);
        }
        check_file_types(v, &self.file_types);
        if let Some(a) = self.alpha {
            if !(0.0..=1.0).contains(&a) {
                let kind = if a < 0.0 {
                    "greater_than_equal"
                } else {
                    "less_than_equal"
                };
                let bound = if a < 0.0 { 0 } else { 1 };
                let word = if a < 0.0 { "greater" } else { "less" };
                v.push(
                    kind,
                    "alpha",
                    format!("Input should be {word} than or equal to {bound}"),
                    json!(a),
                );
            }
        }
    }
}

/// `POST /search/context`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ContextBody {
    pub query: String,
    pub share_id: Option<String>,
    /// Default 2000.
    #[schema(minimum = 1, maximum = 100000)]
    pub max_tokens: Option<i64>,
}

impl Validate for ContextBody {
    const REQUIRED: &'static [&'static str] = &["query"];
    fn validate(&self, v: &mut Violations) {
        v.length("query", self.query.trim(), 1, MAX_QUERY);
        if let Some(t) = self.max_tokens {
            v.range("max_tokens", t, 1, 100_000);
        }
    }
}

// ------------------------------------------------------------------ keyword

/// A keyword query after validation.
struct Keyword {
    text: String,
    share_id: Option<String>,
    mime: Option<String>,
    root_only: bool,
    limit: usize,
    offset: usize,
}

/// Keyword search over names and content.
#[utoipa::path(get, path = "/search", params(SearchQuery), tag = "search", responses(
    (status = 200, description = "Matching files the caller may see, best first", body = SearchAnswer),
    (status = 400, description = "Malformed query parameters"),
    (status = 404, description = "The share does not exist or is not visible"),
))]
async fn search_get(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Json<SearchAnswer>> {
    require_read(&p)?;
    let text = q.q.as_deref().map(str::trim).unwrap_or_default().to_owned();
    if text.is_empty() {
        return Err(ApiError::BadRequest("q is required".into()));
    }
    if text.chars().count() > MAX_QUERY {
        return Err(ApiError::BadRequest(format!(
            "q must be at most {MAX_QUERY} characters"
        )));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 100".into(),
        ));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::BadRequest("offset must not be negative".into()));
    }
    let query = Keyword {
        text,
        share_id: q.share_id.filter(|s| !s.is_empty()),
        mime: q.file_type.filter(|s| !s.is_empty()),
        root_only: q.recursive == Some(false),
        limit: limit as usize,
        offset: offset as usize,
    };
    keyword(&state, &p, &headers, query).await.map(Json)
}

/// Keyword search over names and content (body form).
#[utoipa::path(post, path = "/search", request_body = SearchBody, tag = "search", responses(
    (status = 200, description = "Matching files the caller may see, best first", body = SearchAnswer),
    (status = 404, description = "The share does not exist or is not visible"),
    (status = 422, description = "The body fails validation"),
))]
async fn search_post(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    ApiJson(b): ApiJson<SearchBody>,
) -> ApiResult<Json<SearchAnswer>> {
    require_read(&p)?;
    let query = Keyword {
        text: b.query.trim().to_owned(),
        share_id: b.share_id.filter(|s| !s.is_empty()),
        mime: b.mime_type.filter(|s| !s.is_empty()),
        root_only: false,
        limit: b.limit.unwrap_or(50) as usize,
        offset: b.offset.unwrap_or(0) as usize,
    };
    keyword(&state, &p, &headers, query).await.map(Json)
}

/// The position the caller sent, to read their own writes.
fn sent_position(headers: &HeaderMap) -> Option<LogPosition> {
    headers
        .get(&super::POSITION)
        .and_then(|v| v.to_str().ok())
        .and_then(LogPosition::parse_token)
}

fn index_down() -> ApiError {
    ApiError::BadGateway("the search index is unavailable".into())
}

/// Whether a MIME type matches a pattern (`type/*`, `*/*` or exact, no
/// parameters, case-insensitive).
fn mime_matches(pattern: &str, mime: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    let mime = mime
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if pattern == "*" || pattern == "*/*" {
        return true;
    }
    match pattern.strip_suffix("/*") {
        Some(kind) => mime.split('/').next() == Some(kind),
        None => mime == pattern,
    }
}

async fn keyword(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    q: Keyword,
) -> ApiResult<SearchAnswer> {
    if let Some(share_id) = &q.share_id {
        visible_share(state, p, share_id).await?;
    }
    let indexer = state.search.clone().ok_or_else(index_down)?;
    if let Some(pos) = sent_position(headers) {
        indexer.wait_for(pos, state.consistency_wait()).await;
    }
    let ix = indexer.index();
    let tenant = p.tenant_id.to_string();
    let text = q.text.clone();
    let (hits, _) = tokio::task::spawn_blocking(move || ix.search(&tenant, &text, MAX_CANDIDATES))
        .await
        .map_err(|_| index_down())?
        .map_err(|e| {
            tracing::warn!(error = %e, "search query failed");
            index_down()
        })?;
    let ids: Vec<String> = hits.iter().map(|h| h.file_id.clone()).collect();
    let rows = files_by_id(&state.db, &p.tenant_id.to_string(), &ids).await?;
    let mut visible = Vec::new();
    for h in &hits {
        let Some(row) = rows.get(&h.file_id) else {
            continue;
        };
        if row.is_deleted || row.trashed_via.is_some() {
            continue;
        }
        if q.share_id.as_ref().is_some_and(|s| *s != row.share_id) {
            continue;
        }
        if q.root_only && row.folder_id.is_some() {
            continue;
        }
        if q.mime
            .as_ref()
            .is_some_and(|m| !mime_matches(m, &row.mime_type))
        {
            continue;
        }
        let share = state.share_row(&row.tenant_id, &row.share_id).await?;
        if share.as_ref().is_none_or(|s| s.is_deleted) {
            continue;
        }
        if !effective(state, p, On::File(row))
            .await?
            .contains(Permission::Read)
        {
            continue;
        }
        visible.push((row, h.score));
    }
    let total = visible.len();
    Ok(SearchAnswer {
        results: visible
            .iter()
            .skip(q.offset)
            .take(q.limit)
            .map(|(row, score)| SearchResult::of(row, *score))
            .collect(),
        has_more: q.offset.saturating_add(q.limit) < total,
        total,
        query: q.text,
    })
}

/// The drive read model's rows of some files of a tenant, by id.
async fn files_by_id(
    db: &Db,
    tenant_id: &str,
    ids: &[String],
) -> Result<std::collections::HashMap<String, FileRow>, sqlx::Error> {
    const COLS: &str = "id, tenant_id, share_id, folder_id, name, path, mime_type, size, checksum_sha256, version, version_id, \
        version_bytes, owner_id, created_by, created_at, modified_by, modified_at, is_deleted, deleted_at, trashed_via";
    let mut out = std::collections::HashMap::with_capacity(ids.len());
    for part in ids.chunks(500) {
        let marks: Vec<String> = (0..part.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT {COLS} FROM rm_files WHERE tenant_id = $1 AND id IN ({})",
            marks.join(", ")
        );
        let rows = match db {
            Db::Sqlite(d) => {
                let mut q = sqlx::query_as::<_, FileRow>(&sql).bind(tenant_id);
                for id in part {
                    q = q.bind(id);
                }
                q.fetch_all(&d.read).await?
            }
            Db::Postgres(pg) => {
                let mut q = sqlx::query_as::<_, FileRow>(&sql).bind(tenant_id);
                for id in part {
                    q = q.bind(id);
                }
                q.fetch_all(pg).await?
            }
        };
        out.extend(rows.into_iter().map(|r| (r.id.clone(), r)));
    }
    Ok(out)
}

// ------------------------------------------------------------------ semantic

/// A semantic match: one chunk of a file the caller may read.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SemanticResult {
    file_id: String,
    file_name: String,
    share_id: String,
    path: String,
    chunk_content: String,
    chunk_index: u32,
    /// PDF page or pptx slide, 1-based.
    page: Option<u32>,
    /// The heading the chunk sits under (Markdown, docx).
    section: Option<String>,
    /// Cosine similarity to the query.
    score: f32,
    /// `1 - score`.
    distance: f32,
}

/// `GET|POST /search/semantic`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SemanticAnswer {
    semantic_results: Vec<SemanticResult>,
}

/// A hybrid match: the keyword result's fields, the best chunk, and both
/// scores.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct HybridResult {
    id: String,
    name: String,
    /// Always `file`.
    #[serde(rename = "type")]
    kind: String,
    share_id: String,
    folder_id: Option<String>,
    path: String,
    mime_type: String,
    size: i64,
    modified_at: String,
    /// `(1 - alpha) * keyword + alpha * vector`, each min-max normalized.
    score: f32,
    /// The file's best chunk, when the vector side found it.
    #[serde(skip_serializing_if = "Option::is_none")]
    chunk_content: Option<String>,
    /// Raw BM25 score (null: no keyword match).
    keyword_score: Option<f32>,
    /// Raw cosine similarity of the best chunk (null: no vector match).
    vector_score: Option<f32>,
}

/// `POST /search/hybrid`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct HybridAnswer {
    query: String,
    results: Vec<HybridResult>,
}

/// One chunk for a prompt.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ContextChunk {
    file_id: String,
    file_name: String,
    path: String,
    chunk_index: u32,
    chunk_content: String,
    score: f32,
}

/// `POST /search/context`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ContextAnswer {
    query: String,
    context: Vec<ContextChunk>,
    /// Tokens of the chunks, counted with the model's tokenizer; at most
    /// `max_tokens`.
    tokens_used: usize,
}

/// Chunks asked of the vector index before permission filtering.
const VECTOR_CANDIDATES: usize = 1000;

/// Checks the caller, the share and that semantic search is on (provider
/// configured, tenant's `vectorization_enabled`); returns the indexer.
async fn semantic_ready(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    share_id: Option<&str>,
) -> ApiResult<Arc<SemanticIndexer>> {
    require_read(p)?;
    if let Some(s) = share_id.filter(|s| !s.is_empty()) {
        visible_share(state, p, s).await?;
    }
    let ix = state.semantic.clone().map_err(ApiError::NotImplemented)?;
    let tenant = scaidrive_projections::tenancy::tenant(&state.db, &p.tenant_id.to_string())
        .await?
        .is_some_and(|t| t.settings.0.vectorization_enabled);
    if !tenant {
        return Err(ApiError::NotImplemented(
            "semantic search is off for this tenant: a tenant admin turns it on with \
             settings.vectorization_enabled (PATCH /admin/tenant)"
                .into(),
        ));
    }
    if let Some(pos) = sent_position(headers) {
        ix.wait_for(pos, state.consistency_wait()).await;
    }
    Ok(ix)
}

/// The query's embedding; the provider's failures as 502 and 504.
async fn embed_query(ix: &SemanticIndexer, text: &str) -> ApiResult<Vec<f32>> {
    match ix.embedder().embed(vec![text.to_owned()]).await {
        Ok(mut v) if !v.is_empty() => Ok(v.remove(0)),
        Ok(_) => Err(ApiError::BadGateway(
            "the embedding provider answered no vector".into(),
        )),
        Err(EmbedError::Timeout) => Err(ApiError::GatewayTimeout(
            "the embedding provider did not answer in time".into(),
        )),
        Err(EmbedError::Unreachable(e)) => {
            tracing::warn!(error = %e, "embedding provider unreachable");
            Err(ApiError::BadGateway(
                "the embedding provider is unreachable".into(),
            ))
        }
        Err(EmbedError::Failed(e)) => {
            tracing::warn!(error = %e, "query embedding failed");
            Err(ApiError::BadGateway(
                "the embedding provider could not embed the query".into(),
            ))
        }
    }
}

/// Filters on semantic candidates besides permissions.
#[derive(Default)]
struct ChunkFilter {
    share_id: Option<String>,
    file_types: Vec<String>,
    path_prefix: Option<String>,
}

/// The rows of the files among `ids` the caller may read and the filter
/// keeps (live, in a live share, READ among their effective permissions).
async fn visible_files(
    state: &AppState,
    p: &Principal,
    ids: &[String],
    f: &ChunkFilter,
) -> ApiResult<HashMap<String, FileRow>> {
    let rows = files_by_id(&state.db, &p.tenant_id.to_string(), ids).await?;
    let mut out = HashMap::new();
    for (id, row) in rows {
        if row.is_deleted || row.trashed_via.is_some() {
            continue;
        }
        if f.share_id.as_ref().is_some_and(|s| *s != row.share_id) {
            continue;
        }
        if !f.file_types.is_empty() && !f.file_types.iter().any(|m| mime_matches(m, &row.mime_type))
        {
            continue;
        }
        if f.path_prefix
            .as_ref()
            .is_some_and(|pre| !row.path.starts_with(pre.as_str()))
        {
            continue;
        }
        let share = state.share_row(&row.tenant_id, &row.share_id).await?;
        if share.as_ref().is_none_or(|s| s.is_deleted) {
            continue;
        }
        if !effective(state, p, On::File(&row))
            .await?
            .contains(Permission::Read)
        {
            continue;
        }
        out.insert(id, row);
    }
    Ok(out)
}

/// The best chunks the caller may read, best first, with their files' rows.
async fn vector_hits(
    state: &AppState,
    p: &Principal,
    ix: &SemanticIndexer,
    query: Vec<f32>,
    f: &ChunkFilter,
) -> ApiResult<(Vec<ChunkHit>, HashMap<String, FileRow>)> {
    let index = ix.index();
    let tenant = p.tenant_id.to_string();
    let share = f.share_id.clone();
    let hits = tokio::task::spawn_blocking(move || {
        index.search(&tenant, &query, VECTOR_CANDIDATES, |c| {
            share.as_ref().is_none_or(|s| *s == c.share_id)
        })
    })
    .await
    .map_err(|_| ApiError::Internal("vector search failed".into()))?;
    let mut ids: Vec<String> = hits.iter().map(|h| h.chunk.file_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let rows = visible_files(state, p, &ids, f).await?;
    let hits = hits
        .into_iter()
        .filter(|h| rows.contains_key(&h.chunk.file_id))
        .collect();
    Ok((hits, rows))
}

fn check_file_types(v: &mut Violations, types: &Option<Vec<String>>) {
    if let Some(t) = types {
        if t.len() > 20 {
            v.push(
                "value_error",
                "file_types",
                "List should have at most 20 items",
                json!(t.len()),
            );
        }
        for (i, m) in t.iter().enumerate() {
            v.length(&format!("file_types.{i}"), m, 1, 255);
        }
    }
}

async fn semantic(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    text: String,
    filter: ChunkFilter,
    limit: usize,
) -> ApiResult<Json<SemanticAnswer>> {
    let ix = semantic_ready(state, p, headers, filter.share_id.as_deref()).await?;
    let query = embed_query(&ix, &text).await?;
    let (hits, rows) = vector_hits(state, p, &ix, query, &filter).await?;
    let semantic_results = hits
        .into_iter()
        .take(limit)
        .filter_map(|h| {
            let row = rows.get(&h.chunk.file_id)?;
            Some(SemanticResult {
                file_id: row.id.clone(),
                file_name: row.name.clone(),
                share_id: row.share_id.clone(),
                path: row.path.clone(),
                chunk_content: h.chunk.content,
                chunk_index: h.chunk.chunk_index,
                page: h.chunk.page,
                section: h.chunk.section,
                score: h.score,
                distance: 1.0 - h.score,
            })
        })
        .collect();
    Ok(Json(SemanticAnswer { semantic_results }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SemanticQuery {
    /// What to find, in your own words.
    q: Option<String>,
    share_id: Option<String>,
    #[param(minimum = 1, maximum = 50)]
    limit: Option<i64>,
}

/// Semantic search over chunks of content.
#[utoipa::path(get, path = "/search/semantic", params(SemanticQuery), tag = "search", responses(
    (status = 200, description = "The chunks nearest the query that the caller may read, best first", body = SemanticAnswer),
    (status = 400, description = "Malformed query parameters"),
    (status = 404, description = "The share does not exist or is not visible"),
    (status = 501, description = "No embedding provider is configured, or the tenant's vectorization is off"),
    (status = 502, description = "The embedding provider is unreachable"),
    (status = 504, description = "The embedding provider did not answer in time"),
))]
async fn semantic_get(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<SemanticQuery>,
) -> ApiResult<Json<SemanticAnswer>> {
    require_read(&p)?;
    let text = q.q.as_deref().map(str::trim).unwrap_or_default().to_owned();
    if text.is_empty() || text.chars().count() > MAX_QUERY {
        return Err(ApiError::BadRequest(format!(
            "q is required, at most {MAX_QUERY} characters"
        )));
    }
    if q.limit.is_some_and(|l| !(1..=50).contains(&l)) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 50".into(),
        ));
    }
    let filter = ChunkFilter {
        share_id: q.share_id.filter(|s| !s.is_empty()),
        ..ChunkFilter::default()
    };
    let limit = q.limit.unwrap_or(20) as usize;
    semantic(&state, &p, &headers, text, filter, limit).await
}

/// Semantic search over chunks of content (body form).
#[utoipa::path(post, path = "/search/semantic", request_body = SemanticBody, tag = "search", responses(
    (status = 200, description = "The chunks nearest the query that the caller may read, best first", body = SemanticAnswer),
    (status = 404, description = "The share does not exist or is not visible"),
    (status = 422, description = "The body fails validation"),
    (status = 501, description = "No embedding provider is configured, or the tenant's vectorization is off"),
    (status = 502, description = "The embedding provider is unreachable"),
    (status = 504, description = "The embedding provider did not answer in time"),
))]
async fn semantic_post(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    ApiJson(b): ApiJson<SemanticBody>,
) -> ApiResult<Json<SemanticAnswer>> {
    let filter = ChunkFilter {
        share_id: b.share_id.filter(|s| !s.is_empty()),
        file_types: b.file_types.unwrap_or_default(),
        path_prefix: b.path_prefix.filter(|s| !s.is_empty()),
    };
    let limit = b.limit.unwrap_or(20) as usize;
    semantic(
        &state,
        &p,
        &headers,
        b.query.trim().to_owned(),
        filter,
        limit,
    )
    .await
}

/// Keyword and vector scores blended by `alpha`.
#[utoipa::path(post, path = "/search/hybrid", request_body = HybridBody, tag = "search", responses(
    (status = 200, description = "Files by blended score, best first", body = HybridAnswer),
    (status = 404, description = "The share does not exist or is not visible"),
    (status = 422, description = "The body fails validation"),
    (status = 501, description = "No embedding provider is configured, or the tenant's vectorization is off"),
    (status = 502, description = "The embedding provider or the keyword index is unreachable"),
    (status = 504, description = "The embedding provider did not answer in time"),
))]
async fn hybrid(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    ApiJson(b): ApiJson<HybridBody>,
) -> ApiResult<Json<HybridAnswer>> {
    let filter = ChunkFilter {
        share_id: b.share_id.filter(|s| !s.is_empty()),
        file_types: b.file_types.unwrap_or_default(),
        path_prefix: None,
    };
    let ix = semantic_ready(&state, &p, &headers, filter.share_id.as_deref()).await?;
    let text = b.query.trim().to_owned();
    let alpha = b.alpha.unwrap_or(0.5) as f32;
    let limit = b.limit.unwrap_or(20) as usize;
    // Keyword side.
    let keyword = if alpha < 1.0 {
        let indexer = state.search.clone().ok_or_else(index_down)?;
        if let Some(pos) = sent_position(&headers) {
            indexer.wait_for(pos, state.consistency_wait()).await;
        }
        let kix = indexer.index();
        let tenant = p.tenant_id.to_string();
        let t = text.clone();
        let (hits, _) =
            tokio::task::spawn_blocking(move || kix.search(&tenant, &t, MAX_CANDIDATES))
                .await
                .map_err(|_| index_down())?
                .map_err(|e| {
                    tracing::warn!(error = %e, "search query failed");
                    index_down()
                })?;
        hits
    } else {
        Vec::new()
    };
    let kw_ids: Vec<String> = keyword.iter().map(|h| h.file_id.clone()).collect();
    let mut rows = visible_files(&state, &p, &kw_ids, &filter).await?;
    let keyword: Vec<(String, f32)> = keyword
        .into_iter()
        .filter(|h| rows.contains_key(&h.file_id))
        .map(|h| (h.file_id, h.score))
        .collect();
    // Vector side: each file's best chunk.
    let mut best_chunk: HashMap<String, String> = HashMap::new();
    let mut vector: Vec<(String, f32)> = Vec::new();
    if alpha > 0.0 {
        let query = embed_query(&ix, &text).await?;
        let (hits, vrows) = vector_hits(&state, &p, &ix, query, &filter).await?;
        for h in hits {
            if !best_chunk.contains_key(&h.chunk.file_id) {
                vector.push((h.chunk.file_id.clone(), h.score));
                best_chunk.insert(h.chunk.file_id.clone(), h.chunk.content);
            }
        }
        rows.extend(vrows);
    }
    let results = blend(&keyword, &vector, alpha)
        .into_iter()
        .filter_map(|b| {
            let row = rows.get(&b.file_id)?;
            Some(HybridResult {
                id: row.id.clone(),
                name: row.name.clone(),
                kind: "file".into(),
                share_id: row.share_id.clone(),
                folder_id: row.folder_id.clone(),
                path: row.path.clone(),
                mime_type: row.mime_type.clone(),
                size: row.size,
                modified_at: ts(row.modified_at),
                score: b.score,
                chunk_content: best_chunk.remove(&b.file_id),
                keyword_score: b.keyword_score,
                vector_score: b.vector_score,
            })
        })
        .take(limit)
        .collect();
    Ok(Json(HybridAnswer {
        query: text,
        results,
    }))
}

/// The best chunks for an LLM prompt, within a token budget.
#[utoipa::path(post, path = "/search/context", request_body = ContextBody, tag = "search", responses(
    (status = 200, description = "The best chunks the caller may read that fit in `max_tokens`", body = ContextAnswer),
    (status = 404, description = "The share does not exist or is not visible"),
    (status = 422, description = "The body fails validation"),
    (status = 501, description = "No embedding provider is configured, or the tenant's vectorization is off"),
    (status = 502, description = "The embedding provider is unreachable"),
    (status = 504, description = "The embedding provider did not answer in time"),
))]
async fn context(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    ApiJson(b): ApiJson<ContextBody>,
) -> ApiResult<Json<ContextAnswer>> {
    let filter = ChunkFilter {
        share_id: b.share_id.filter(|s| !s.is_empty()),
        ..ChunkFilter::default()
    };
    let ix = semantic_ready(&state, &p, &headers, filter.share_id.as_deref()).await?;
    let text = b.query.trim().to_owned();
    let budget = b.max_tokens.unwrap_or(2000) as usize;
    let query = embed_query(&ix, &text).await?;
    let (hits, rows) = vector_hits(&state, &p, &ix, query, &filter).await?;
    let counter = ix.embedder().tokens().clone();
    let contents: Vec<String> = hits.iter().map(|h| h.chunk.content.clone()).collect();
    let counts = tokio::task::spawn_blocking(move || {
        contents
            .iter()
            .map(|c| counter.count(c))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|_| ApiError::Internal("token counting failed".into()))?;
    let (picked, tokens_used) = pack(&counts, budget);
    let context = picked
        .into_iter()
        .filter_map(|i| {
            let h = &hits[i];
            let row = rows.get(&h.chunk.file_id)?;
            Some(ContextChunk {
                file_id: row.id.clone(),
                file_name: row.name.clone(),
                path: row.path.clone(),
                chunk_index: h.chunk.chunk_index,
                chunk_content: h.chunk.content.clone(),
                score: h.score,
            })
        })
        .collect();
    Ok(Json(ContextAnswer {
        query: text,
        context,
        tokens_used,
    }))
}

// ------------------------------------------------------------------ health

/// Both indexes: documents and lag.
#[utoipa::path(get, path = "/search/health", tag = "search", responses(
    (status = 200, description = "The indexes' state", body = SearchHealth),
))]
async fn health(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Value>> {
    require_read(&p)?;
    let keyword = match &state.search {
        Some(ix) => {
            let lag = tokio::time::timeout(Duration::from_secs(5), ix.lag())
                .await
                .ok()
                .and_then(Result::ok);
            let index = ix.index();
            let tenant = p.tenant_id.to_string();
            let (documents, failed) = tokio::task::spawn_blocking(move || {
                (
                    index.tenant_documents(&tenant).unwrap_or(0),
                    index.count_extraction(&tenant, "failed").unwrap_or(0),
                )
            })
            .await
            .map_err(|_| index_down())?;
            json!({
                "available": true,
                "documents": documents,
                "extraction_failures": failed,
                "lag_events": lag,
            })
        }
        None => json!({"available": false, "documents": 0, "lag_events": null}),
    };
    let semantic = match &state.semantic {
        Ok(ix) => {
            let lag = tokio::time::timeout(Duration::from_secs(5), ix.lag())
                .await
                .ok()
                .and_then(Result::ok);
            let tenant = p.tenant_id.to_string();
            let on = scaidrive_projections::tenancy::tenant(&state.db, &tenant)
                .await?
                .is_some_and(|t| t.settings.0.vectorization_enabled);
            let index = ix.index();
            let e = ix.embedder();
            json!({
                "enabled": on,
                "provider": e.provider(),
                "model": e.model(),
                "dimensions": e.dimensions().or(index.dimensions()),
                "chunks": index.chunks(&tenant),
                "lag_events": lag,
            })
        }
        Err(why) => json!({
            "enabled": false,
            "provider": null,
            "model": null,
            "dimensions": null,
            "chunks": 0,
            "lag_events": 0,
            "detail": why,
        }),
    };
    Ok(Json(json!({
        "keyword": keyword,
        "semantic": semantic,
    })))
}

#[cfg(test)]
mod tests {
    use super::mime_matches;

    #[test]
    fn mime_patterns() {
        assert!(mime_matches("text/*", "text/plain; charset=utf-8"));
        assert!(mime_matches("application/pdf", "Application/PDF"));
        assert!(!mime_matches("text/*", "application/pdf"));
        assert!(mime_matches("*/*", "image/png"));
    }
}
