//! The typed answers of the API: one struct per resource, built from its
//! read-model row (`From<&Row>`), serialized as the body and described, by
//! the same type, in the OpenAPI document.
//!
//! A handler names the type it answers with in its `#[utoipa::path]`
//! (`body = dto::Folder`); utoipa collects the schema (and those it refers
//! to) from there, so nothing is described twice. Field types that JSON
//! cannot say precisely (ids, timestamps) carry `#[schema(value_type = …)]`
//! naming a schema-only type in `openapi.rs`.

pub mod admin;
pub mod audit;
pub mod connectors;
pub mod drive;
pub mod history;
pub mod links;
pub mod permissions;
pub mod quotas;
pub mod shares;
pub mod sharing;
pub mod sync;
pub mod system;
pub mod uploads;
pub mod users;
pub mod webhooks;

pub use drive::{
    Entry, File, FileEntry, FileKind, Folder, FolderEntry, FolderKind, Listing, TrashListing,
    Version, VersionList,
};
pub use links::{
    DroppedFile, EmailCodeSent, Landing, Link, LinkAccess, LinkList, LinkSession, LinkSessionList,
    Linked, Opened, PublicListing,
};
pub use permissions::{
    shown_principal_id, Acl, AclEntry, BatchResult, CheckResult, Effective, OwnedResource, EVERYONE,
};
pub use shares::{Share, ShareList};
pub use sharing::{
    Invitation, InvitationAnswer, InvitationList, Member, MemberList, MyShare, MyShareList,
};

pub use admin::{
    AdminUser, Group, GroupList, GroupMember, GroupMemberList, Tenant, TenantList, UserList,
};
pub use quotas::{MyQuota, Quota, QuotaList, Usage, UsageList};
pub use sync::{
    ApplyOutcome, ApplyResult, Change, ChangePage, Conflict, ConflictList, CursorMoved, Device,
    DeviceCursor, DeviceList, SyncStatus,
};
pub use uploads::{ChunkReceipt, UploadSession};
pub use users::Me;
pub use webhooks::{Delivery, DeliveryAttempt, DeliveryList, Webhook, WebhookApplied, WebhookList};
