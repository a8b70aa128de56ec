//! Read models: projections that fold the event log into SQL tables, the
//! runner's contract, and the queries the HTTP layer reads them with.

pub mod access;
pub mod audit;
pub mod checkpoint;
pub mod connectors;
pub mod db;
pub mod drive;
pub mod drive_queries;
pub mod groups;
pub mod links;
pub mod outbox;
pub mod projection;
pub mod quota;
pub mod sync;
pub mod sync_queries;
pub mod tenancy;
pub mod webhooks;

pub use projection::{Projection, ProjectionError, QUEUE_TABLES};

/// Every projection the service runs, in a stable order.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(tenancy::TenancyProjection),
        std::sync::Arc::new(drive::DriveProjection),
        std::sync::Arc::new(access::AccessProjection),
        std::sync::Arc::new(audit::AuditProjection),
        std::sync::Arc::new(groups::GroupsProjection),
        std::sync::Arc::new(sync::SyncProjection),
        std::sync::Arc::new(links::LinksProjection),
        std::sync::Arc::new(quota::QuotaProjection),
        std::sync::Arc::new(webhooks::WebhooksProjection),
        std::sync::Arc::new(connectors::ConnectorsProjection),
    ]
}
