//! Writes the access log: refused permissions (recorded by the request
//! middleware from the 403's [`Refusal`]) and signed-in content reads, each
//! as an `access-*` event in the caller's access-log stream, appended without
//! a version check so it never contends with the resources' own streams.
//!
//! Entries are bounded by [`crate::access_log`] and appended off the request
//! path: the answer never waits for the append, and an append that fails is
//! logged as a warning, never turned into an error answer.

use scaidrive_domain::access_log::{stream_id, AccessLogEvent, FileRead, ReadVia};

use super::error::Refusal;
use super::principal::Principal;
use super::state::AppState;
use crate::command::CommandContext;

/// Records a refusal unless its bound says it was recorded recently.
pub fn refused(state: &AppState, r: Refusal, method: &str, route: &str) {
    let tenant = r.ctx.tenant_id.clone().unwrap_or_default();
    let key = (
        tenant.clone(),
        r.user_id.to_string(),
        r.resource_id.clone(),
        r.permission,
    );
    let Some(suppressed) = state.access_log.admit_denial(&tenant, key) else {
        return;
    };
    let event = AccessLogEvent::AccessDenied {
        resource_type: r.resource_type.to_owned(),
        resource_id: r.resource_id,
        permission: r.permission.to_owned(),
        method: method.to_owned(),
        route: route.to_owned(),
        suppressed,
    };
    append(state, stream_id(&r.user_id), r.ctx, event);
}

/// Whether content was served as a download or for inline display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    Download,
    Preview,
}

/// Records a content read unless the same caller read the same version the
/// same way (download or preview, through the same endpoint) within the
/// bound's window.
pub fn read(state: &AppState, p: &Principal, kind: ReadKind, mut read: FileRead) {
    let tenant = p.tenant_id.to_string();
    let key = (
        p.user_id.to_string(),
        read.file_id.to_string(),
        read.version,
        match (kind, read.via) {
            (ReadKind::Download, ReadVia::Files) => "download",
            (ReadKind::Download, ReadVia::Sync) => "sync",
            (ReadKind::Preview, _) => "preview",
        },
    );
    let Some(suppressed) = state.access_log.admit_read(&tenant, key) else {
        return;
    };
    read.suppressed = suppressed;
    let event = match kind {
        ReadKind::Download => AccessLogEvent::AccessFileDownloaded(read),
        ReadKind::Preview => AccessLogEvent::AccessFilePreviewed(read),
    };
    append(state, stream_id(&p.user_id), p.context(), event);
}

fn append(state: &AppState, stream: String, ctx: CommandContext, event: AccessLogEvent) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = state.bus.record(&stream, &ctx, &[event]).await {
            tracing::warn!(stream_id = %stream, error = %e, "access log entry not recorded");
        }
    });
}
