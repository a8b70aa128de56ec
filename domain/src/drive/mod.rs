//! The drive: shares, folders, files with versions, and resumable upload
//! sessions. Paths are computed by the caller (it knows the parent's path) and
//! travel in the events, so the sync feed and projections need no other stream.

use serde::{Deserialize, Serialize};

use crate::id::{FolderId, GroupId, ShareId, UserId};

pub mod chunking;
pub mod file;
pub mod folder;
pub mod share;
pub mod upload;

/// Who owns a share: a user or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Owner {
    User(UserId),
    Group(GroupId),
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::User(u) => u.fmt(f),
            Owner::Group(g) => g.fmt(f),
        }
    }
}

impl Owner {
    /// Parses `usr_…` or `grp_…`.
    pub fn parse(s: &str) -> Option<Owner> {
        UserId::parse(s)
            .map(Owner::User)
            .ok()
            .or_else(|| GroupId::parse(s).map(Owner::Group).ok())
    }
}

/// The kind of share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ShareType {
    Central,
    Personal,
    Project,
}

impl ShareType {
    pub fn as_str(self) -> &'static str {
        match self {
            ShareType::Central => "central",
            ShareType::Personal => "personal",
            ShareType::Project => "project",
        }
    }
}

/// One content chunk of a file version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChunkRef {
    pub hash: String,
    pub size: u64,
}

/// Where an item lives: the root of a share or a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    Root(ShareId),
    Folder(FolderId),
}

/// The scope sibling names are unique in. Folder scopes do not name the
/// share, so moving a folder to another share leaves its children's claims
/// valid.
pub fn sibling_scope(share_id: ShareId, parent: Option<FolderId>) -> String {
    match parent {
        Some(f) => format!("name:{f}"),
        None => format!("name:{share_id}"),
    }
}

/// Joins a parent path and a name: `("/", "a")` → `/a`, `("/a", "b")` → `/a/b`.
pub fn child_path(parent_path: &str, name: &str) -> String {
    if parent_path == "/" || parent_path.is_empty() {
        format!("/{name}")
    } else {
        format!("{parent_path}/{name}")
    }
}

/// The parent of a path: `/a/b` → `/a`, `/a` → `/`.
pub fn parent_path(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}
