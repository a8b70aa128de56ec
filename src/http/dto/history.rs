//! Time travel's answers: a resource as its events say it was at a moment.
//! Each kind has its own shape; [`History`] is whichever one was asked for.

use scaidrive_domain::access::Permission;
use scaidrive_domain::drive::file::{File, Version};
use scaidrive_domain::drive::folder::Folder;
use scaidrive_domain::drive::share::Share;
use scaidrive_domain::history::Item;
use scaidrive_domain::sharing::{AceRecord, Acl};
use scaidrive_domain::RecordedEvent;
use serde::Serialize;
use utoipa::openapi::schema::AnyOfBuilder;
use utoipa::openapi::{Ref, RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use super::links::Link;
use super::permissions::shown_principal_id;
use crate::http::schema::{PermissionDoc, ShareTypeDoc, Timestamp};
use crate::http::ts;

/// The last event a historical view includes.
#[derive(Debug, Serialize, ToSchema)]
pub struct AsOf {
    pub position: String,
    #[schema(value_type = Timestamp)]
    pub recorded_at: String,
}

impl AsOf {
    /// The last of `events`, if any.
    pub fn of(events: &[RecordedEvent]) -> Option<Self> {
        events.last().map(|e| Self {
            position: e.log.to_token(),
            recorded_at: ts(e.recorded_at),
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileVersionThen {
    pub number: u64,
    pub version_id: String,
    pub size: u64,
    pub checksum_sha256: String,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
}

impl From<&Version> for FileVersionThen {
    fn from(v: &Version) -> Self {
        Self {
            number: v.number,
            version_id: v.content.version_id.to_string(),
            size: v.content.size,
            checksum_sha256: v.content.checksum_sha256.clone(),
            created_at: ts(v.at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileThen {
    /// `file`.
    pub resource_type: &'static str,
    pub id: String,
    pub as_of: Option<AsOf>,
    pub name: String,
    pub path: String,
    pub share_id: Option<String>,
    pub folder_id: Option<String>,
    pub is_deleted: bool,
    pub size: Option<u64>,
    pub version: Option<u64>,
    pub version_id: Option<String>,
    pub checksum_sha256: Option<String>,
    pub versions: Vec<FileVersionThen>,
}

impl FileThen {
    pub fn of(id: String, as_of: Option<AsOf>, f: &File) -> Self {
        let current = f.current();
        Self {
            resource_type: "file",
            id,
            as_of,
            name: f.name.clone(),
            path: f.path.clone(),
            share_id: f.share_id.map(|s| s.to_string()),
            folder_id: f.folder_id.map(|s| s.to_string()),
            is_deleted: f.deleted || f.purged,
            size: current.map(|v| v.content.size),
            version: current.map(|v| v.number),
            version_id: current.map(|v| v.content.version_id.to_string()),
            checksum_sha256: current.map(|v| v.content.checksum_sha256.clone()),
            versions: f.versions.iter().map(FileVersionThen::from).collect(),
        }
    }
}

/// A member then; the owner's entry has only its id and role.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberThen {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_type: Option<&'static str>,
    pub principal_id: String,
    pub role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Timestamp>)]
    pub expires_at: Option<Option<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShareThen {
    /// `share`.
    pub resource_type: &'static str,
    pub id: String,
    pub as_of: Option<AsOf>,
    pub name: String,
    pub description: Option<String>,
    #[schema(value_type = Option<ShareTypeDoc>)]
    pub share_type: Option<&'static str>,
    pub owner_id: Option<String>,
    pub members: Vec<MemberThen>,
    pub is_deleted: bool,
}

impl ShareThen {
    pub fn of(id: String, as_of: Option<AsOf>, s: &Share) -> Self {
        let owner = s.owner.map(|o| MemberThen {
            principal_type: None,
            principal_id: o.to_string(),
            role: "owner",
            expires_at: None,
        });
        let members = s.members.iter().map(|(id, m)| MemberThen {
            principal_type: Some(m.principal_type.as_str()),
            principal_id: id.to_string(),
            role: m.role.as_str(),
            expires_at: Some(m.expires_at.map(ts)),
        });
        Self {
            resource_type: "share",
            id,
            as_of,
            name: s.name.clone(),
            description: s.description.clone(),
            share_type: s.share_type.map(|t| t.as_str()),
            owner_id: s.owner.map(|o| o.to_string()),
            members: owner.into_iter().chain(members).collect(),
            is_deleted: s.deleted,
        }
    }
}

/// A child of a folder then.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemThen {
    pub id: String,
    pub name: String,
    /// `file` or `folder`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl From<Item> for ItemThen {
    fn from(i: Item) -> Self {
        Self {
            id: i.id,
            name: i.name,
            kind: i.kind.as_str(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FolderThen {
    /// `folder`.
    pub resource_type: &'static str,
    pub id: String,
    pub as_of: Option<AsOf>,
    pub name: String,
    pub path: String,
    pub share_id: Option<String>,
    pub parent_id: Option<String>,
    pub is_deleted: bool,
    pub items: Vec<ItemThen>,
    pub total: usize,
}

impl FolderThen {
    pub fn of(id: String, as_of: Option<AsOf>, f: &Folder, items: Vec<ItemThen>) -> Self {
        Self {
            resource_type: "folder",
            id,
            as_of,
            name: f.name.clone(),
            path: f.path.clone(),
            share_id: f.share_id.map(|s| s.to_string()),
            parent_id: f.parent_id.map(|s| s.to_string()),
            is_deleted: f.deleted || f.purged,
            total: items.len(),
            items,
        }
    }
}

/// An ACL entry then.
#[derive(Debug, Serialize, ToSchema)]
pub struct AceThen {
    pub id: String,
    pub principal_type: &'static str,
    pub principal_id: String,
    #[schema(value_type = Vec<PermissionDoc>)]
    pub permissions: Vec<Permission>,
    pub ace_type: &'static str,
    pub inherit_to_children: bool,
}

impl From<&AceRecord> for AceThen {
    fn from(e: &AceRecord) -> Self {
        Self {
            id: e.id.to_string(),
            principal_type: e.principal_type.as_str(),
            principal_id: shown_principal_id(e.principal_type.as_str(), &e.principal_id),
            permissions: e.permissions.clone(),
            ace_type: e.ace_type.as_str(),
            inherit_to_children: e.inherit_to_children,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AclThen {
    /// `acl`.
    pub resource_type: &'static str,
    pub id: String,
    pub as_of: Option<AsOf>,
    pub inherit_from_parent: bool,
    pub entries: Vec<AceThen>,
}

impl AclThen {
    pub fn of(id: String, as_of: Option<AsOf>, a: &Acl) -> Self {
        Self {
            resource_type: "acl",
            id,
            as_of,
            inherit_from_parent: a.inherit_from_parent,
            entries: a.entries.iter().map(AceThen::from).collect(),
        }
    }
}

/// A link then: the link object with `as_of`.
#[derive(Debug, Serialize)]
pub struct LinkThen {
    #[serde(flatten)]
    pub link: Link,
    pub as_of: Option<AsOf>,
}

/// A resource as it was: the shape of its `resource_type` (a link: the
/// link object with `as_of`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum History {
    File(FileThen),
    Share(ShareThen),
    Folder(FolderThen),
    Acl(AclThen),
    Link(Box<LinkThen>),
}

impl PartialSchema for History {
    fn schema() -> RefOr<Schema> {
        let mut any = AnyOfBuilder::new();
        for name in ["FileThen", "ShareThen", "FolderThen", "AclThen", "Link"] {
            any = any.item(Ref::from_schema_name(name));
        }
        any.into()
    }
}

impl ToSchema for History {
    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        fn add<T: ToSchema>(out: &mut Vec<(String, RefOr<Schema>)>) {
            out.push((T::name().into(), T::schema()));
            T::schemas(out);
        }
        add::<FileThen>(out);
        add::<ShareThen>(out);
        add::<FolderThen>(out);
        add::<AclThen>(out);
        add::<Link>(out);
    }
}
