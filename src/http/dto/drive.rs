//! Folders, files, listings and versions as the API shows them.

use scaidrive_projections::drive_queries::{FileRow, FolderRow, VersionRow};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::schema::Timestamp;
use crate::http::ts;

#[derive(Debug, Serialize, ToSchema)]
pub struct Folder {
    pub id: String,
    pub tenant_id: String,
    pub share_id: String,
    /// `null` at the share root.
    pub parent_id: Option<String>,
    pub name: String,
    pub path: String,
    pub owner_id: String,
    pub created_by: String,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    #[schema(value_type = Timestamp)]
    pub modified_at: String,
    pub is_deleted: bool,
    #[schema(value_type = Option<Timestamp>)]
    pub deleted_at: Option<String>,
}

impl From<&FolderRow> for Folder {
    fn from(r: &FolderRow) -> Self {
        Self {
            id: r.id.clone(),
            tenant_id: r.tenant_id.clone(),
            share_id: r.share_id.clone(),
            parent_id: r.parent_id.clone(),
            name: r.name.clone(),
            path: r.path.clone(),
            owner_id: r.owner_id.clone(),
            created_by: r.created_by.clone(),
            created_at: ts(r.created_at),
            modified_at: ts(r.modified_at),
            is_deleted: r.is_deleted || r.trashed_via.is_some(),
            deleted_at: r.deleted_at.map(ts),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct File {
    pub id: String,
    pub tenant_id: String,
    pub share_id: String,
    pub folder_id: Option<String>,
    pub name: String,
    pub path: String,
    pub mime_type: String,
    pub size: i64,
    pub checksum_sha256: String,
    pub version: i64,
    pub version_id: String,
    pub owner_id: String,
    pub created_by: String,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    pub modified_by: String,
    #[schema(value_type = Timestamp)]
    pub modified_at: String,
    pub is_deleted: bool,
    #[schema(value_type = Option<Timestamp>)]
    pub deleted_at: Option<String>,
}

impl From<&FileRow> for File {
    fn from(r: &FileRow) -> Self {
        Self {
            id: r.id.clone(),
            tenant_id: r.tenant_id.clone(),
            share_id: r.share_id.clone(),
            folder_id: r.folder_id.clone(),
            name: r.name.clone(),
            path: r.path.clone(),
            mime_type: r.mime_type.clone(),
            size: r.size,
            checksum_sha256: r.checksum_sha256.clone(),
            version: r.version,
            version_id: r.version_id.clone(),
            owner_id: r.owner_id.clone(),
            created_by: r.created_by.clone(),
            created_at: ts(r.created_at),
            modified_by: r.modified_by.clone(),
            modified_at: ts(r.modified_at),
            is_deleted: r.is_deleted || r.trashed_via.is_some(),
            deleted_at: r.deleted_at.map(ts),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FolderKind {
    Folder,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
}

/// A folder in a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct FolderEntry {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FolderKind,
    pub path: String,
    #[schema(value_type = Timestamp)]
    pub modified_at: String,
    // Left out where every entry is live (an external link's listing).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = bool)]
    pub is_deleted: Option<bool>,
    /// In trash listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Timestamp>)]
    pub deleted_at: Option<Option<String>>,
}

impl From<&FolderRow> for FolderEntry {
    fn from(r: &FolderRow) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            kind: FolderKind::Folder,
            path: r.path.clone(),
            modified_at: ts(r.modified_at),
            is_deleted: Some(r.is_deleted || r.trashed_via.is_some()),
            deleted_at: None,
        }
    }
}

/// A file in a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileEntry {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FileKind,
    pub path: String,
    pub size: i64,
    pub mime_type: String,
    pub version: i64,
    pub version_id: String,
    #[schema(value_type = Timestamp)]
    pub modified_at: String,
    // Left out where every entry is live (an external link's listing).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = bool)]
    pub is_deleted: Option<bool>,
    /// In trash listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Timestamp>)]
    pub deleted_at: Option<Option<String>>,
}

impl From<&FileRow> for FileEntry {
    fn from(r: &FileRow) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            kind: FileKind::File,
            path: r.path.clone(),
            size: r.size,
            mime_type: r.mime_type.clone(),
            version: r.version,
            version_id: r.version_id.clone(),
            modified_at: ts(r.modified_at),
            is_deleted: Some(r.is_deleted || r.trashed_via.is_some()),
            deleted_at: None,
        }
    }
}

/// One listing entry: folders first, then files.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Entry {
    Folder(FolderEntry),
    File(FileEntry),
}

impl Entry {
    /// The entry's path, for listings that show it relative to somewhere.
    pub fn path_mut(&mut self) -> &mut String {
        match self {
            Entry::Folder(f) => &mut f.path,
            Entry::File(f) => &mut f.path,
        }
    }

    /// Leaves `is_deleted` out (a listing where every entry is live).
    pub fn without_deleted_flag(mut self) -> Self {
        match &mut self {
            Entry::Folder(f) => f.is_deleted = None,
            Entry::File(f) => f.is_deleted = None,
        }
        self
    }

    /// An entry of the trash listing: with when it went there.
    pub fn trashed(mut self, deleted_at: Option<String>) -> Self {
        match &mut self {
            Entry::Folder(f) => f.deleted_at = Some(deleted_at),
            Entry::File(f) => f.deleted_at = Some(deleted_at),
        }
        self
    }
}

impl From<&FolderRow> for Entry {
    fn from(r: &FolderRow) -> Self {
        Entry::Folder(r.into())
    }
}

impl From<&FileRow> for Entry {
    fn from(r: &FileRow) -> Self {
        Entry::File(r.into())
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Listing {
    pub items: Vec<Entry>,
    pub path: String,
    pub total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrashListing {
    pub items: Vec<Entry>,
    pub total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Version {
    /// The version's id (`ver_…`); `version_id` repeats it.
    pub id: String,
    pub version_id: String,
    /// 1 for the first upload, one more for each later version.
    pub version_number: i64,
    /// Same as `version_number`.
    pub number: i64,
    pub version: i64,
    pub size: i64,
    pub checksum_sha256: String,
    pub mime_type: String,
    pub created_by: String,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    pub is_current: bool,
}

impl Version {
    /// Version `v` of a file whose current version number is `current`.
    pub fn of(v: &VersionRow, current: i64) -> Self {
        Self {
            id: v.version_id.clone(),
            version_id: v.version_id.clone(),
            version_number: v.number,
            number: v.number,
            version: v.number,
            size: v.size,
            checksum_sha256: v.checksum_sha256.clone(),
            mime_type: v.mime_type.clone(),
            created_by: v.created_by.clone(),
            created_at: ts(v.created_at),
            is_current: v.number == current,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    pub versions: Vec<Version>,
    pub total: i64,
}
