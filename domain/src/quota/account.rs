//! The QuotaAccount aggregate: one per level target (partner, tenant, group,
//! user, share). It holds the limit settings and, while a limit applies, the
//! exact bytes in use and reserved, so a reservation is checked and recorded
//! in one append: concurrent writers conflict on the account's stream and
//! decide again, and a hard limit is never overshot.
//!
//! Accounts without a limit do not track bytes (their usage lives only in the
//! read model), which keeps them out of every write's append. When a limit
//! starts to apply, the command carries the read model's usage as the
//! account's `baseline`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::QuotaLevel;
use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::event::DomainEvent;
use crate::id::{QuotaId, TenantId};

/// Hard limits block at the limit; soft limits allow a grace overrun.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LimitType {
    #[default]
    Hard,
    Soft,
}

impl LimitType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hard => "hard",
            Self::Soft => "soft",
        }
    }
}

/// A limit and its warning and grace settings (SPEC §4.8 defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QuotaLimit {
    pub limit_bytes: u64,
    pub limit_type: LimitType,
    /// Percentages, ascending: a warning is raised when usage crosses each.
    pub warning_thresholds: [u8; 3],
    pub grace_period_days: u32,
    pub grace_extra_percent: u32,
}

impl QuotaLimit {
    /// A hard limit with the default thresholds (70/85/95) and grace (7 days, 10 %).
    pub fn hard(limit_bytes: u64) -> Self {
        Self {
            limit_bytes,
            limit_type: LimitType::Hard,
            warning_thresholds: [70, 85, 95],
            grace_period_days: 7,
            grace_extra_percent: 10,
        }
    }

    /// Checks the settings a client may send.
    pub fn validate(&self) -> Result<(), DomainError> {
        let [a, b, c] = self.warning_thresholds;
        for (i, t) in self.warning_thresholds.iter().enumerate() {
            if *t == 0 || *t > 100 {
                return Err(DomainError::invalid(
                    format!("warning_threshold_{}", i + 1),
                    "must be between 1 and 100",
                ));
            }
        }
        if !(a < b && b < c) {
            return Err(DomainError::invalid(
                "warning_threshold_2",
                "thresholds must be strictly ascending",
            ));
        }
        if self.grace_period_days > 365 {
            return Err(DomainError::invalid(
                "grace_period_days",
                "must be at most 365",
            ));
        }
        if self.grace_extra_percent > 100 {
            return Err(DomainError::invalid(
                "grace_extra_percent",
                "must be at most 100",
            ));
        }
        Ok(())
    }

    /// The most a soft limit allows during its grace window.
    pub fn grace_ceiling(&self) -> u64 {
        self.limit_bytes.saturating_add(
            (u128::from(self.limit_bytes) * u128::from(self.grace_extra_percent) / 100) as u64,
        )
    }

    /// The highest warning threshold `total` bytes have reached (0 = none).
    pub fn threshold_reached(&self, total: u64) -> u8 {
        if self.limit_bytes == 0 {
            return if total > 0 {
                self.warning_thresholds[2]
            } else {
                0
            };
        }
        self.warning_thresholds
            .iter()
            .rev()
            .copied()
            .find(|t| u128::from(total) * 100 >= u128::from(*t) * u128::from(self.limit_bytes))
            .unwrap_or(0)
    }
}

/// Who an account is for; travels in the events that may create the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QuotaTarget {
    pub quota_id: QuotaId,
    pub target_type: QuotaLevel,
    pub target_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
}

impl QuotaTarget {
    pub fn new(level: QuotaLevel, target_id: &str, tenant_id: Option<TenantId>) -> Self {
        Self {
            quota_id: super::account_id(level, target_id),
            target_type: level,
            target_id: target_id.to_owned(),
            tenant_id,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct QuotaAccount {
    pub target: Option<QuotaTarget>,
    /// The limit set on this account explicitly.
    pub limit: Option<QuotaLimit>,
    /// A default limit (share `quota_bytes`, tenant default) last applied.
    pub default_limit: Option<u64>,
    pub exempt: bool,
    pub exempt_reason: Option<String>,
    /// Whether `used` and `reserved` are exact (a limit applies).
    pub tracking: bool,
    /// Committed bytes: every version of every file not purged, trash included.
    pub used: u64,
    /// Open reservations by id (upload session or version id).
    pub reserved: BTreeMap<String, u64>,
    pub grace_started_at: Option<DateTime<Utc>>,
    /// The highest warning threshold announced and still met.
    pub warned: u8,
}

impl QuotaAccount {
    pub fn reserved_bytes(&self) -> u64 {
        self.reserved.values().sum()
    }

    /// The limit in force: the explicit one, else the default.
    pub fn effective_limit(&self, default: Option<u64>) -> Option<QuotaLimit> {
        self.limit
            .clone()
            .or_else(|| default.or(self.default_limit).map(QuotaLimit::hard))
    }

    /// Whether a write must reserve on this account, given the default limit.
    pub fn enforces(&self, default: Option<u64>) -> bool {
        !self.exempt && (self.limit.is_some() || default.is_some())
    }

    /// Whether a reservation now would start tracking (and so needs the
    /// read model's usage as its baseline).
    pub fn needs_baseline(&self, default: Option<u64>) -> bool {
        self.enforces(default) && !self.tracking
    }

    fn recompute_marks(&mut self) {
        let total = self.used + self.reserved_bytes();
        match self.effective_limit(None) {
            Some(limit) => {
                self.warned = self.warned.min(limit.threshold_reached(total));
                if total <= limit.limit_bytes {
                    self.grace_started_at = None;
                }
            }
            None => {
                self.warned = 0;
                self.grace_started_at = None;
            }
        }
    }

    fn stop_tracking(&mut self) {
        self.tracking = false;
        self.used = 0;
        self.reserved.clear();
        self.grace_started_at = None;
        self.warned = 0;
    }
}

#[derive(Debug, Clone)]
pub enum QuotaCommand {
    SetLimit {
        target: QuotaTarget,
        limit: QuotaLimit,
        /// Current usage from the read model, used if tracking starts now.
        baseline: u64,
        at: DateTime<Utc>,
    },
    RemoveLimit {
        at: DateTime<Utc>,
    },
    SetExempt {
        target: QuotaTarget,
        exempt: bool,
        reason: Option<String>,
        baseline: u64,
        at: DateTime<Utc>,
    },
    /// Reserve `bytes` for a write; refused when a limit would be exceeded.
    Reserve {
        target: QuotaTarget,
        reservation_id: String,
        bytes: u64,
        default_limit: Option<u64>,
        baseline: u64,
        at: DateTime<Utc>,
    },
    /// The write happened: the reserved bytes are now in use.
    Commit {
        reservation_id: String,
        at: DateTime<Utc>,
    },
    /// The write will not happen (aborted, expired).
    Release {
        reservation_id: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// Bytes left the account (permanent delete).
    Free {
        bytes: u64,
        file_id: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum QuotaEvent {
    QuotaLimitSet {
        #[serde(flatten)]
        target: QuotaTarget,
        limit: QuotaLimit,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        baseline_bytes: Option<u64>,
        at: DateTime<Utc>,
    },
    QuotaLimitRemoved {
        quota_id: QuotaId,
        at: DateTime<Utc>,
    },
    QuotaExemptionChanged {
        #[serde(flatten)]
        target: QuotaTarget,
        exempt: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        baseline_bytes: Option<u64>,
        at: DateTime<Utc>,
    },
    QuotaReserved {
        #[serde(flatten)]
        target: QuotaTarget,
        reservation_id: String,
        bytes: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default_limit: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        baseline_bytes: Option<u64>,
        at: DateTime<Utc>,
    },
    QuotaCommitted {
        quota_id: QuotaId,
        reservation_id: String,
        bytes: u64,
        at: DateTime<Utc>,
    },
    QuotaReleased {
        quota_id: QuotaId,
        reservation_id: String,
        bytes: u64,
        reason: String,
        at: DateTime<Utc>,
    },
    QuotaFreed {
        quota_id: QuotaId,
        file_id: String,
        bytes: u64,
        at: DateTime<Utc>,
    },
    QuotaGraceStarted {
        quota_id: QuotaId,
        at: DateTime<Utc>,
    },
    QuotaWarningReached {
        #[serde(flatten)]
        target: QuotaTarget,
        threshold: u8,
        used_bytes: u64,
        limit_bytes: u64,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for QuotaEvent {}

impl Aggregate for QuotaAccount {
    type Command = QuotaCommand;
    type Event = QuotaEvent;

    fn decide(&self, command: &QuotaCommand) -> Result<Vec<QuotaEvent>, DomainError> {
        match command {
            QuotaCommand::SetLimit {
                target,
                limit,
                baseline,
                at,
            } => {
                limit.validate()?;
                if self.limit.as_ref() == Some(limit) {
                    return Ok(vec![]);
                }
                Ok(vec![QuotaEvent::QuotaLimitSet {
                    target: self.target.clone().unwrap_or_else(|| target.clone()),
                    limit: limit.clone(),
                    baseline_bytes: (!self.tracking && !self.exempt).then_some(*baseline),
                    at: *at,
                }])
            }
            QuotaCommand::RemoveLimit { at } => {
                let Some(target) = &self.target else {
                    return Ok(vec![]);
                };
                if self.limit.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![QuotaEvent::QuotaLimitRemoved {
                    quota_id: target.quota_id,
                    at: *at,
                }])
            }
            QuotaCommand::SetExempt {
                target,
                exempt,
                reason,
                baseline,
                at,
            } => {
                if *exempt == self.exempt && *reason == self.exempt_reason {
                    return Ok(vec![]);
                }
                let starts = !*exempt && self.exempt && self.limit.is_some() && !self.tracking;
                Ok(vec![QuotaEvent::QuotaExemptionChanged {
                    target: self.target.clone().unwrap_or_else(|| target.clone()),
                    exempt: *exempt,
                    reason: reason.clone(),
                    baseline_bytes: starts.then_some(*baseline),
                    at: *at,
                }])
            }
            QuotaCommand::Reserve {
                target,
                reservation_id,
                bytes,
                default_limit,
                baseline,
                at,
            } => {
                if !self.enforces(*default_limit) || self.reserved.contains_key(reservation_id) {
                    return Ok(vec![]);
                }
                let (used, reserved) = if self.tracking {
                    (self.used, self.reserved_bytes())
                } else {
                    (*baseline, 0)
                };
                let Some(limit) = self.effective_limit(*default_limit) else {
                    return Ok(vec![]);
                };
                let total = used.saturating_add(reserved).saturating_add(*bytes);
                let target = self.target.clone().unwrap_or_else(|| target.clone());
                let quota_id = target.quota_id;
                let level = target.target_type;
                let mut events = Vec::new();
                if total > limit.limit_bytes {
                    let grace_open = match self.grace_started_at {
                        None => true,
                        Some(g) => *at < g + Duration::days(i64::from(limit.grace_period_days)),
                    };
                    let allowed = limit.limit_type == LimitType::Soft
                        && grace_open
                        && total <= limit.grace_ceiling();
                    if !allowed {
                        return Err(DomainError::QuotaExceeded(level));
                    }
                }
                events.push(QuotaEvent::QuotaReserved {
                    target: target.clone(),
                    reservation_id: reservation_id.clone(),
                    bytes: *bytes,
                    default_limit: if self.limit.is_none() {
                        *default_limit
                    } else {
                        None
                    },
                    baseline_bytes: (!self.tracking).then_some(*baseline),
                    at: *at,
                });
                if total > limit.limit_bytes && self.grace_started_at.is_none() {
                    events.push(QuotaEvent::QuotaGraceStarted { quota_id, at: *at });
                }
                let warned = if self.tracking { self.warned } else { 0 };
                let reached = limit.threshold_reached(total);
                if reached > warned {
                    events.push(QuotaEvent::QuotaWarningReached {
                        target,
                        threshold: reached,
                        used_bytes: total,
                        limit_bytes: limit.limit_bytes,
                        at: *at,
                    });
                }
                Ok(events)
            }
            QuotaCommand::Commit { reservation_id, at } => {
                match (&self.target, self.reserved.get(reservation_id)) {
                    (Some(t), Some(bytes)) => Ok(vec![QuotaEvent::QuotaCommitted {
                        quota_id: t.quota_id,
                        reservation_id: reservation_id.clone(),
                        bytes: *bytes,
                        at: *at,
                    }]),
                    _ => Ok(vec![]),
                }
            }
            QuotaCommand::Release {
                reservation_id,
                reason,
                at,
            } => match (&self.target, self.reserved.get(reservation_id)) {
                (Some(t), Some(bytes)) => Ok(vec![QuotaEvent::QuotaReleased {
                    quota_id: t.quota_id,
                    reservation_id: reservation_id.clone(),
                    bytes: *bytes,
                    reason: reason.clone(),
                    at: *at,
                }]),
                _ => Ok(vec![]),
            },
            QuotaCommand::Free { bytes, file_id, at } => match &self.target {
                Some(t) if self.tracking && *bytes > 0 => Ok(vec![QuotaEvent::QuotaFreed {
                    quota_id: t.quota_id,
                    file_id: file_id.clone(),
                    bytes: (*bytes).min(self.used),
                    at: *at,
                }]),
                _ => Ok(vec![]),
            },
        }
    }

    fn evolve(&mut self, event: &QuotaEvent) {
        match event {
            QuotaEvent::QuotaLimitSet {
                target,
                limit,
                baseline_bytes,
                ..
            } => {
                if self.target.is_none() {
                    self.target = Some(target.clone());
                }
                self.limit = Some(limit.clone());
                if let Some(b) = baseline_bytes {
                    self.stop_tracking();
                    self.tracking = true;
                    self.used = *b;
                    self.warned = limit.threshold_reached(*b);
                }
                self.recompute_marks();
            }
            QuotaEvent::QuotaLimitRemoved { .. } => {
                self.limit = None;
                self.default_limit = None;
                self.stop_tracking();
            }
            QuotaEvent::QuotaExemptionChanged {
                target,
                exempt,
                reason,
                baseline_bytes,
                ..
            } => {
                if self.target.is_none() {
                    self.target = Some(target.clone());
                }
                self.exempt = *exempt;
                self.exempt_reason = reason.clone();
                if *exempt {
                    self.stop_tracking();
                }
                if let Some(b) = baseline_bytes {
                    self.stop_tracking();
                    self.tracking = true;
                    self.used = *b;
                    self.warned = self
                        .effective_limit(None)
                        .map(|l| l.threshold_reached(*b))
                        .unwrap_or(0);
                }
            }
            QuotaEvent::QuotaReserved {
                target,
                reservation_id,
                bytes,
                default_limit,
                baseline_bytes,
                ..
            } => {
                if self.target.is_none() {
                    self.target = Some(target.clone());
                }
                if default_limit.is_some() {
                    self.default_limit = *default_limit;
                }
                if let Some(b) = baseline_bytes {
                    self.stop_tracking();
                    self.tracking = true;
                    self.used = *b;
                }
                self.reserved.insert(reservation_id.clone(), *bytes);
            }
            QuotaEvent::QuotaCommitted { reservation_id, .. } => {
                if let Some(b) = self.reserved.remove(reservation_id) {
                    self.used += b;
                }
            }
            QuotaEvent::QuotaReleased { reservation_id, .. } => {
                self.reserved.remove(reservation_id);
                self.recompute_marks();
            }
            QuotaEvent::QuotaFreed { bytes, .. } => {
                self.used = self.used.saturating_sub(*bytes);
                self.recompute_marks();
            }
            QuotaEvent::QuotaGraceStarted { at, .. } => self.grace_started_at = Some(*at),
            QuotaEvent::QuotaWarningReached { threshold, .. } => self.warned = *threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Scenario;

    fn target(level: QuotaLevel) -> QuotaTarget {
        QuotaTarget::new(level, "tnt_X", None)
    }

    fn limit_set(bytes: u64, kind: LimitType, baseline: u64) -> QuotaEvent {
        let mut limit = QuotaLimit::hard(bytes);
        limit.limit_type = kind;
        QuotaEvent::QuotaLimitSet {
            target: target(QuotaLevel::Tenant),
            limit,
            baseline_bytes: Some(baseline),
            at: Utc::now(),
        }
    }

    fn reserve(id: &str, bytes: u64) -> QuotaCommand {
        QuotaCommand::Reserve {
            target: target(QuotaLevel::Tenant),
            reservation_id: id.into(),
            bytes,
            default_limit: None,
            baseline: 0,
            at: Utc::now(),
        }
    }

    #[test]
    fn a_hard_limit_refuses_the_byte_past_it_and_names_the_level() {
        Scenario::<QuotaAccount>::given([limit_set(100, LimitType::Hard, 60)])
            .when(reserve("a", 41))
            .then_error(DomainError::QuotaExceeded(QuotaLevel::Tenant));
        Scenario::<QuotaAccount>::given([limit_set(100, LimitType::Hard, 60)])
            .when(reserve("a", 40))
            .then_types(&["quota-reserved", "quota-warning-reached"]);
    }

    #[test]
    fn reservations_count_until_released() {
        let at = Utc::now();
        let given = [
            limit_set(100, LimitType::Hard, 0),
            QuotaEvent::QuotaReserved {
                target: target(QuotaLevel::Tenant),
                reservation_id: "a".into(),
                bytes: 80,
                default_limit: None,
                baseline_bytes: None,
                at,
            },
        ];
        Scenario::<QuotaAccount>::given(given.clone())
            .when(reserve("b", 30))
            .then_error(DomainError::QuotaExceeded(QuotaLevel::Tenant));
        let state = Scenario::<QuotaAccount>::given(given)
            .when(QuotaCommand::Release {
                reservation_id: "a".into(),
                reason: "aborted".into(),
                at,
            })
            .then([QuotaEvent::QuotaReleased {
                quota_id: target(QuotaLevel::Tenant).quota_id,
                reservation_id: "a".into(),
                bytes: 80,
                reason: "aborted".into(),
                at,
            }]);
        assert_eq!((state.used, state.reserved_bytes()), (0, 0));
    }

    #[test]
    fn a_soft_limit_allows_the_grace_overrun_until_the_window_closes() {
        let given = [limit_set(100, LimitType::Soft, 95)];
        Scenario::<QuotaAccount>::given(given.clone())
            .when(reserve("a", 15))
            .then_types(&["quota-reserved", "quota-grace-started"]);
        Scenario::<QuotaAccount>::given(given.clone())
            .when(reserve("a", 16))
            .then_error(DomainError::QuotaExceeded(QuotaLevel::Tenant));
        let long_ago = Utc::now() - Duration::days(8);
        let mut history = given.to_vec();
        history.push(QuotaEvent::QuotaGraceStarted {
            quota_id: target(QuotaLevel::Tenant).quota_id,
            at: long_ago,
        });
        Scenario::<QuotaAccount>::given(history.clone())
            .when(reserve("a", 5))
            .then_types(&["quota-reserved"]);
        Scenario::<QuotaAccount>::given(history)
            .when(reserve("a", 6))
            .then_error(DomainError::QuotaExceeded(QuotaLevel::Tenant));
    }

    #[test]
    fn exempt_and_unlimited_accounts_reserve_nothing() {
        Scenario::<QuotaAccount>::given_nothing()
            .when(reserve("a", 10))
            .then([]);
        let exempt = QuotaEvent::QuotaExemptionChanged {
            target: target(QuotaLevel::Tenant),
            exempt: true,
            reason: Some("board".into()),
            baseline_bytes: None,
            at: Utc::now(),
        };
        Scenario::<QuotaAccount>::given([limit_set(1, LimitType::Hard, 0), exempt])
            .when(reserve("a", 10))
            .then([]);
    }

    #[test]
    fn a_default_limit_starts_tracking_from_the_baseline() {
        let state = Scenario::<QuotaAccount>::given_nothing()
            .when(QuotaCommand::Reserve {
                target: target(QuotaLevel::Share),
                reservation_id: "a".into(),
                bytes: 10,
                default_limit: Some(100),
                baseline: 50,
                at: Utc::now(),
            })
            .then_types(&["quota-reserved"]);
        let mut s = QuotaAccount::default();
        for e in &state {
            s.evolve(e);
        }
        assert!(s.tracking);
        assert_eq!((s.used, s.reserved_bytes()), (50, 10));
    }

    #[test]
    fn thresholds_must_ascend() {
        let mut limit = QuotaLimit::hard(10);
        limit.warning_thresholds = [80, 70, 95];
        Scenario::<QuotaAccount>::given_nothing()
            .when(QuotaCommand::SetLimit {
                target: target(QuotaLevel::User),
                limit,
                baseline: 0,
                at: Utc::now(),
            })
            .then_error_matches(|e| matches!(e, DomainError::Invalid { .. }));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Reserve(u64),
            Commit(usize),
            Release(usize),
            Free(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (1u64..400).prop_map(Op::Reserve),
                (0usize..16).prop_map(Op::Commit),
                (0usize..16).prop_map(Op::Release),
                (0usize..16).prop_map(Op::Free),
            ]
        }

        fn run(state: &mut QuotaAccount, cmd: &QuotaCommand) -> Result<(), DomainError> {
            for e in state.decide(cmd)? {
                state.evolve(&e);
            }
            Ok(())
        }

        proptest! {
            /// Whatever the order of reserves, commits, releases and frees,
            /// the account's bytes equal the live bytes of a plain model and
            /// a hard limit is never passed.
            #[test]
            fn usage_equals_the_sum_of_live_bytes(limit in 0u64..2000, ops in proptest::collection::vec(op(), 1..80)) {
                let at = Utc::now();
                let mut state = QuotaAccount::default();
                state.evolve(&limit_set(limit, LimitType::Hard, 0));
                let mut open: Vec<(String, u64)> = Vec::new();
                let mut live: Vec<(String, u64)> = Vec::new();
                let mut next = 0;
                for op in ops {
                    match op {
                        Op::Reserve(bytes) => {
                            next += 1;
                            let id = format!("r{next}");
                            let fits = live.iter().chain(open.iter()).map(|x| x.1).sum::<u64>() + bytes <= limit;
                            let result = run(&mut state, &reserve(&id, bytes));
                            prop_assert_eq!(result.is_ok(), fits);
                            if fits {
                                open.push((id, bytes));
                            }
                        }
                        Op::Commit(i) if !open.is_empty() => {
                            let (id, bytes) = open.remove(i % open.len());
                            run(&mut state, &QuotaCommand::Commit { reservation_id: id.clone(), at }).map_err(|e| TestCaseError::fail(e.to_string()))?;
                            live.push((id, bytes));
                        }
                        Op::Release(i) if !open.is_empty() => {
                            let (id, _) = open.remove(i % open.len());
                            run(&mut state, &QuotaCommand::Release { reservation_id: id, reason: "aborted".into(), at }).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        }
                        Op::Free(i) if !live.is_empty() => {
                            let (id, bytes) = live.remove(i % live.len());
                            run(&mut state, &QuotaCommand::Free { bytes, file_id: id, at }).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        }
                        _ => {}
                    }
                    prop_assert_eq!(state.used, live.iter().map(|x| x.1).sum::<u64>());
                    prop_assert_eq!(state.reserved_bytes(), open.iter().map(|x| x.1).sum::<u64>());
                    prop_assert!(state.used + state.reserved_bytes() <= limit);
                }
            }
        }
    }
}
