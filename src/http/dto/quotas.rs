//! Quotas and usage as the API shows them (SPEC §4.8).

use chrono::{DateTime, Utc};
use scaidrive_domain::quota::account::QuotaTarget;
use scaidrive_domain::quota::{QuotaAccount, QuotaLevel, QuotaLimit};
use scaidrive_projections::quota::Usage as Figures;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::schema::{LimitSource, LimitTypeDoc, QuotaLevelDoc, Timestamp};
use crate::http::ts;

#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    #[schema(value_type = QuotaLevelDoc)]
    pub target_type: &'static str,
    pub target_id: String,
    pub used_bytes: i64,
    pub file_count: i64,
    pub folder_count: i64,
    pub version_bytes: i64,
    pub trash_bytes: i64,
    pub reserved_bytes: i64,
    /// When these figures were computed: when the usage read model was last
    /// brought up to date with the log, or now after `recalculate=true`.
    #[schema(value_type = Timestamp)]
    pub calculated_at: String,
}

impl Usage {
    /// The figures of one level's target, as computed at `at`.
    pub fn new(level: QuotaLevel, target_id: &str, u: &Figures, at: DateTime<Utc>) -> Self {
        Self {
            target_type: level.as_str(),
            target_id: target_id.to_owned(),
            used_bytes: u.used_bytes,
            file_count: u.file_count,
            folder_count: u.folder_count,
            version_bytes: u.version_bytes,
            trash_bytes: u.trash_bytes,
            reserved_bytes: u.reserved_bytes,
            calculated_at: ts(at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Quota {
    pub id: String,
    pub tenant_id: Option<String>,
    #[schema(value_type = QuotaLevelDoc)]
    pub target_type: &'static str,
    pub target_id: String,
    /// `null` when unlimited.
    pub limit_bytes: Option<u64>,
    #[schema(value_type = LimitTypeDoc)]
    pub limit_type: &'static str,
    #[schema(value_type = LimitSource)]
    pub limit_source: &'static str,
    pub warning_threshold_1: u8,
    pub warning_threshold_2: u8,
    pub warning_threshold_3: u8,
    pub grace_period_days: u32,
    pub grace_extra_percent: u32,
    #[schema(value_type = Option<Timestamp>)]
    pub grace_started_at: Option<String>,
    pub exempt: bool,
    pub exempt_reason: Option<String>,
    pub used_bytes: i64,
    pub reserved_bytes: i64,
    pub percent_used: Option<f64>,
    pub usage: Usage,
}

/// `used` as a percentage of `limit` to two decimals (`None` without a limit).
fn percent(used: i64, limit: Option<u64>) -> Option<f64> {
    limit
        .filter(|l| *l > 0)
        .map(|l| ((used.max(0) as f64) * 10000.0 / l as f64).round() / 100.0)
}

impl Quota {
    /// The account of `t` with the limit that applies (its own, else
    /// `default`) and the usage figures computed at `at`.
    pub fn new(
        t: &QuotaTarget,
        acc: &QuotaAccount,
        default: Option<u64>,
        u: &Figures,
        at: DateTime<Utc>,
    ) -> Self {
        let limit = acc.effective_limit(default);
        let shown = limit.clone().unwrap_or_else(|| QuotaLimit::hard(0));
        let limit_bytes = limit.as_ref().map(|l| l.limit_bytes);
        let limit_source = if acc.limit.is_some() {
            "explicit"
        } else if limit.is_some() {
            "default"
        } else {
            "none"
        };
        Self {
            id: t.quota_id.to_string(),
            tenant_id: t.tenant_id.map(|x| x.to_string()),
            target_type: t.target_type.as_str(),
            target_id: t.target_id.clone(),
            limit_bytes,
            limit_type: shown.limit_type.as_str(),
            limit_source,
            warning_threshold_1: shown.warning_thresholds[0],
            warning_threshold_2: shown.warning_thresholds[1],
            warning_threshold_3: shown.warning_thresholds[2],
            grace_period_days: shown.grace_period_days,
            grace_extra_percent: shown.grace_extra_percent,
            grace_started_at: acc.grace_started_at.map(ts),
            exempt: acc.exempt,
            exempt_reason: acc.exempt_reason.clone(),
            used_bytes: u.used_bytes,
            reserved_bytes: u.reserved_bytes,
            percent_used: percent(u.used_bytes, limit_bytes),
            usage: Usage::new(t.target_type, &t.target_id, u, at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaList {
    pub quotas: Vec<Quota>,
    pub total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageList {
    pub usage: Vec<Usage>,
    pub total: i64,
}

// The caller's own user-level usage and limit (`GET /users/me/quota`).
#[derive(Debug, Serialize, ToSchema)]
pub struct MyQuota {
    pub user_id: String,
    pub used_bytes: i64,
    pub quota_bytes: Option<u64>,
    pub percent_used: f64,
    pub reserved_bytes: i64,
    pub trash_bytes: i64,
    pub version_bytes: i64,
    pub exempt: bool,
}

impl MyQuota {
    /// The user `user_id`'s account and figures.
    pub fn new(user_id: &str, acc: &QuotaAccount, u: &Figures) -> Self {
        let limit = acc.effective_limit(None).map(|l| l.limit_bytes);
        Self {
            user_id: user_id.to_owned(),
            used_bytes: u.used_bytes,
            quota_bytes: limit,
            percent_used: percent(u.used_bytes, limit).unwrap_or(0.0),
            reserved_bytes: u.reserved_bytes,
            trash_bytes: u.trash_bytes,
            version_bytes: u.version_bytes,
            exempt: acc.exempt,
        }
    }
}
