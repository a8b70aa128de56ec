//! The Link aggregate: an external (public) link to a file, folder or share,
//! and the access decision every recipient request goes through.
//!
//! Every recipient attempt is decided against the link's state and recorded,
//! allowed or not (`link-accessed` with its outcome). Counted downloads and
//! views are appended on the link's stream at the version the decision saw,
//! so caps hold exactly under concurrency. Password hashing happens outside
//! (it is slow and needs randomness); the decision receives its result.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::event::DomainEvent;
use crate::id::{FolderId, LinkId, ShareId, TenantId, UserId};
use crate::tenancy::SharingPolicy;

/// Failed unlocks allowed per link and client IP inside [`THROTTLE_WINDOW_MINUTES`].
pub const MAX_FAILED_UNLOCKS: usize = 10;
/// The sliding window failed unlocks are counted in.
pub const THROTTLE_WINDOW_MINUTES: i64 = 15;
/// How long an emailed one-time code stays valid.
pub const EMAIL_CODE_MINUTES: i64 = 10;

/// What a link lets its recipient do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum LinkType {
    View,
    Download,
    Upload,
}

impl LinkType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "VIEW",
            Self::Download => "DOWNLOAD",
            Self::Upload => "UPLOAD",
        }
    }
}

/// What a link points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LinkResource {
    File,
    Folder,
    Share,
}

impl LinkResource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Folder => "folder",
            Self::Share => "share",
        }
    }
}

/// Everything about a link its owner may change after creation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct LinkOptions {
    /// PHC string of an argon2id hash, sealed under the server key
    /// (events written before sealing hold it in the clear); never the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub max_downloads: Option<u64>,
    pub max_views: Option<u64>,
    #[schemars(with = "Vec<String>", extend("examples" = [["10.0.0.0/8", "2001:db8::/32"]]))]
    pub allowed_ips: Vec<IpNet>,
    /// Lower-cased addresses.
    pub allowed_emails: Vec<String>,
    pub require_email: bool,
    pub custom_name: Option<String>,
    pub custom_message: Option<String>,
    pub show_download_button: bool,
    pub allow_preview: bool,
    pub notify_on_access: bool,
    pub notify_on_download: bool,
    pub notify_on_upload: bool,
    pub notification_email: Option<String>,
    pub upload_folder_id: Option<FolderId>,
    pub max_file_size: Option<u64>,
    /// Lower-cased, without the leading dot.
    pub allowed_extensions: Vec<String>,
}

/// Parses a CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a bare address (one host).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("'{s}' is not an IPv4 or IPv6 address or CIDR"))
}

/// Whether `ip` is inside any of `nets`; IPv4-mapped IPv6 addresses
/// (`::ffff:10.1.2.3`) match IPv4 networks.
pub fn ip_allowed(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    nets.iter().any(|n| n.contains(&ip))
}

/// The client's address: the socket peer, unless that peer is a trusted
/// proxy, in which case `X-Forwarded-For` is read from the right and the first
/// hop that is not a trusted proxy wins (entries further left are whatever the
/// client claimed and are never believed).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    if !ip_allowed(trusted, peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut last = peer;
    for hop in header.rsplit(',') {
        let hop = hop.trim().trim_start_matches('[');
        let hop = hop.split(']').next().unwrap_or(hop);
        let Ok(ip) = hop.parse::<IpAddr>() else {
            return last;
        };
        if !ip_allowed(trusted, ip) {
            return ip;
        }
        last = ip;
    }
    last
}

/// Normalises an extension list entry: `.PDF` → `pdf`.
pub fn normalize_extension(e: &str) -> String {
    e.trim().trim_start_matches('.').to_lowercase()
}

/// The extension of a file name, lower-cased (`report.PDF` → `pdf`).
pub fn extension_of(name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_lowercase())
}

/// `name (n).ext` — the n-th alternative for a name already taken.
pub fn numbered_name(name: &str, n: u32) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => format!("{stem} ({n}).{ext}"),
        _ => format!("{name} ({n})"),
    }
}

/// What a recipient attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AccessAction {
    Landing,
    EmailCode,
    Unlock,
    Download,
    Preview,
    List,
    Upload,
}

impl AccessAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Landing => "landing",
            Self::EmailCode => "email-code",
            Self::Unlock => "unlock",
            Self::Download => "download",
            Self::Preview => "preview",
            Self::List => "list",
            Self::Upload => "upload",
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AccessOutcome {
    Allowed,
    Revoked,
    Disabled,
    Expired,
    IpNotAllowed,
    WrongLinkType,
    Throttled,
    EmailNotAllowed,
    EmailUnverified,
    PasswordRequired,
    PasswordWrong,
    CapReached,
}

impl AccessOutcome {
    /// The HTTP status the recipient gets (SPEC §4.7).
    pub fn status(self) -> u16 {
        match self {
            Self::Allowed => 200,
            Self::Revoked | Self::Disabled | Self::Expired => 410,
            Self::IpNotAllowed
            | Self::WrongLinkType
            | Self::EmailNotAllowed
            | Self::EmailUnverified => 403,
            Self::PasswordRequired | Self::PasswordWrong => 401,
            Self::CapReached | Self::Throttled => 429,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Revoked => "revoked",
            Self::Disabled => "disabled",
            Self::Expired => "expired",
            Self::IpNotAllowed => "ip-not-allowed",
            Self::WrongLinkType => "wrong-link-type",
            Self::Throttled => "throttled",
            Self::EmailNotAllowed => "email-not-allowed",
            Self::EmailUnverified => "email-unverified",
            Self::PasswordRequired => "password-required",
            Self::PasswordWrong => "password-wrong",
            Self::CapReached => "cap-reached",
        }
    }

    /// The refusal as the domain error the HTTP layer maps to its status.
    pub fn to_error(self, action: AccessAction) -> Option<DomainError> {
        let msg = match self {
            Self::Allowed => return None,
            Self::Revoked => "this link has been revoked",
            Self::Disabled => "this link is disabled",
            Self::Expired => "this link has expired",
            Self::IpNotAllowed => "this link cannot be used from your network address",
            Self::WrongLinkType => match action {
                AccessAction::Download => "this link does not allow downloads",
                AccessAction::Preview => "this link does not allow previews",
                AccessAction::Upload => "this link does not accept uploads",
                _ => "this link does not allow that",
            },
            Self::Throttled => "too many failed unlock attempts; try again later",
            Self::EmailNotAllowed => "this email address may not use this link",
            Self::EmailUnverified => "a verified email address is required for this link",
            Self::PasswordRequired => "this link requires a password",
            Self::PasswordWrong => "the password is wrong",
            Self::CapReached => match action {
                AccessAction::Preview => "this link's view limit has been reached",
                _ => "this link's download limit has been reached",
            },
        };
        let msg = msg.to_owned();
        Some(match self.status() {
            410 => DomainError::Gone(msg),
            403 => DomainError::Forbidden(msg),
            401 => DomainError::Unauthorized(msg),
            _ => DomainError::LimitReached(msg),
        })
    }

    /// A failed unlock that counts toward the throttle.
    fn is_failed_unlock(self) -> bool {
        matches!(
            self,
            Self::EmailNotAllowed
                | Self::EmailUnverified
                | Self::PasswordRequired
                | Self::PasswordWrong
        )
    }
}

/// The result of checking a supplied password against the link's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Absent,
    Wrong,
    Correct,
}

/// What the recipient presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Nothing: fine for links without password or email requirements.
    None,
    /// A valid link access token from an earlier unlock (its email, if any,
    /// was verified then).
    AccessToken { email: Option<String> },
    /// An unlock attempt.
    Unlock {
        password: PasswordCheck,
        email: Option<String>,
        /// Keyed digest of the one-time code the recipient typed (see [`code_message`]).
        code_hash: Option<String>,
    },
}

/// One recipient attempt, as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    pub action: AccessAction,
    pub ip: Option<IpAddr>,
    /// For `EmailCode`: where the code goes.
    pub email: Option<String>,
    pub credential: Credential,
    pub at: DateTime<Utc>,
}

/// What an emailed one-time code's stored digest is computed over: the link,
/// the address and the code, so a code is only good for its link and address.
/// The service stores a keyed digest of it (a plain hash of a six-digit code
/// falls to a million guesses).
pub fn code_message(link_id: LinkId, email: &str, code: &str) -> String {
    format!(
        "{link_id}\n{}\n{}",
        email.trim().to_lowercase(),
        code.trim()
    )
}

/// The unkeyed digest events written before keyed digests held (hex SHA-256
/// of [`code_message`]); kept for tests of old logs.
pub fn code_hash(link_id: LinkId, email: &str, code: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(
        code_message(link_id, email, code).as_bytes(),
    ))
}

#[derive(Debug, Clone, PartialEq)]
struct EmailCode {
    email: String,
    code_hash: String,
    expires_at: DateTime<Utc>,
    used: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Link {
    pub id: Option<LinkId>,
    pub tenant_id: Option<TenantId>,
    pub share_id: Option<ShareId>,
    pub resource_type: Option<LinkResource>,
    pub resource_id: String,
    pub link_type: Option<LinkType>,
    /// Sealed under the server key (plaintext in events written before sealing).
    pub token: String,
    /// Sealed like `token`.
    pub short_code: String,
    /// Bumped by regeneration; link access tokens carry it, so regenerating
    /// ends every unlocked session.
    pub generation: u32,
    pub options: LinkOptions,
    pub created_by: Option<UserId>,
    pub created_at: Option<DateTime<Utc>>,
    pub revoked: bool,
    pub disabled: bool,
    pub download_count: u64,
    pub view_count: u64,
    /// (client IP, time) of failed unlocks inside the throttle window of the
    /// newest event; older ones are dropped as events arrive.
    failed_unlocks: Vec<(String, DateTime<Utc>)>,
    /// (client IP, time) of codes sent, same window: a link must not become
    /// a way to flood an allowed address with mail.
    code_requests: Vec<(String, DateTime<Utc>)>,
    email_codes: Vec<EmailCode>,
}

impl Link {
    /// `active`, `expired`, `revoked` or `disabled` at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        if self.revoked {
            "revoked"
        } else if self.disabled {
            "disabled"
        } else if self.options.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        }
    }

    pub fn password_required(&self) -> bool {
        self.options.password_hash.is_some()
    }

    /// Whether a recipient must unlock (password or verified email) first.
    pub fn needs_unlock(&self) -> bool {
        self.password_required() || self.options.require_email
    }

    fn failed_unlocks_from(&self, ip: &str, at: DateTime<Utc>) -> usize {
        recent(&self.failed_unlocks, ip, at)
    }

    fn email_ok(&self, email: &str) -> bool {
        self.options.allowed_emails.is_empty()
            || self
                .options
                .allowed_emails
                .iter()
                .any(|e| e.eq_ignore_ascii_case(email))
    }

    /// The access decision (SPEC §4.7), in order: revoked/disabled/expired
    /// (410); IP outside `allowed_ips` (403); link type (403); failed-unlock
    /// throttle (429); email not allowed or unverified (403); password
    /// missing or wrong (401); cap reached (429).
    pub fn evaluate(&self, r: &AccessRequest) -> AccessOutcome {
        use AccessAction as A;
        use AccessOutcome as O;
        if self.revoked {
            return O::Revoked;
        }
        if self.disabled {
            return O::Disabled;
        }
        if self.options.expires_at.is_some_and(|e| e <= r.at) {
            return O::Expired;
        }
        if !self.options.allowed_ips.is_empty()
            && !r
                .ip
                .is_some_and(|ip| ip_allowed(&self.options.allowed_ips, ip))
        {
            return O::IpNotAllowed;
        }
        let link_type = self.link_type.unwrap_or(LinkType::View);
        let container = self.resource_type != Some(LinkResource::File);
        let type_ok = match r.action {
            A::Landing | A::EmailCode | A::Unlock => true,
            A::Download => link_type == LinkType::Download,
            A::Preview => link_type != LinkType::Upload && self.options.allow_preview,
            A::List => link_type != LinkType::Upload && container,
            A::Upload => link_type == LinkType::Upload,
        };
        if !type_ok {
            return O::WrongLinkType;
        }
        if r.action == A::Landing {
            return O::Allowed;
        }
        if matches!(r.action, A::Unlock | A::EmailCode) {
            let ip = ip_key(r.ip);
            if self.failed_unlocks_from(&ip, r.at) >= MAX_FAILED_UNLOCKS {
                return O::Throttled;
            }
            if r.action == A::EmailCode
                && recent(&self.code_requests, &ip, r.at) >= MAX_FAILED_UNLOCKS
            {
                return O::Throttled;
            }
        }
        if r.action == A::EmailCode {
            return match &r.email {
                Some(e) if self.email_ok(e) => O::Allowed,
                _ => O::EmailNotAllowed,
            };
        }
        if self.options.require_email {
            match &r.credential {
                Credential::AccessToken { email: Some(e) } if self.email_ok(e) => {}
                Credential::AccessToken { .. } | Credential::None => return O::EmailUnverified,
                Credential::Unlock {
                    email, code_hash, ..
                } => {
                    let Some(email) = email else {
                        return O::EmailUnverified;
                    };
                    if !self.email_ok(email) {
                        return O::EmailNotAllowed;
                    }
                    let verified = code_hash.as_ref().is_some_and(|h| {
                        self.email_codes.iter().any(|c| {
                            !c.used
                                && c.expires_at > r.at
                                && c.email.eq_ignore_ascii_case(email)
                                && &c.code_hash == h
                        })
                    });
                    if !verified {
                        return O::EmailUnverified;
                    }
                }
            }
        }
        if self.password_required() {
            match &r.credential {
                Credential::AccessToken { .. } => {}
                Credential::None => return O::PasswordRequired,
                Credential::Unlock { password, .. } => match password {
                    PasswordCheck::Correct => {}
                    PasswordCheck::Absent => return O::PasswordRequired,
                    PasswordCheck::Wrong => return O::PasswordWrong,
                },
            }
        }
        match r.action {
            A::Download
                if self
                    .options
                    .max_downloads
                    .is_some_and(|m| self.download_count >= m) =>
            {
                O::CapReached
            }
            A::Preview if self.options.max_views.is_some_and(|m| self.view_count >= m) => {
                O::CapReached
            }
            _ => O::Allowed,
        }
    }
}

fn recent(log: &[(String, DateTime<Utc>)], ip: &str, at: DateTime<Utc>) -> usize {
    let since = at - Duration::minutes(THROTTLE_WINDOW_MINUTES);
    log.iter().filter(|(i, t)| i == ip && *t > since).count()
}

fn ip_key(ip: Option<IpAddr>) -> String {
    ip.map(|i| i.to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A one-time code being issued (its hash and expiry; the code itself never
/// enters the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCode {
    pub code_hash: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub enum LinkCommand {
    Create {
        link_id: LinkId,
        tenant_id: TenantId,
        share_id: ShareId,
        resource_type: LinkResource,
        resource_id: String,
        link_type: LinkType,
        token: String,
        short_code: String,
        options: LinkOptions,
        policy: SharingPolicy,
        by: UserId,
        at: DateTime<Utc>,
    },
    /// Replaces the options (the caller merged the patch) and optionally
    /// disables or re-enables the link.
    Update {
        options: LinkOptions,
        enabled: Option<bool>,
        policy: SharingPolicy,
        by: UserId,
        at: DateTime<Utc>,
    },
    Revoke {
        by: UserId,
        at: DateTime<Utc>,
    },
    Regenerate {
        token: String,
        short_code: String,
        by: UserId,
        at: DateTime<Utc>,
    },
    /// A recipient attempt; always recorded, refusals included.
    Access {
        request: AccessRequest,
        /// For an allowed `EmailCode` attempt: the code to issue.
        code: Option<IssuedCode>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum LinkEvent {
    LinkCreated {
        link_id: LinkId,
        tenant_id: TenantId,
        share_id: ShareId,
        resource_type: LinkResource,
        resource_id: String,
        link_type: LinkType,
        token: String,
        short_code: String,
        options: LinkOptions,
        by: UserId,
        at: DateTime<Utc>,
    },
    LinkUpdated {
        link_id: LinkId,
        options: LinkOptions,
        by: UserId,
        at: DateTime<Utc>,
    },
    LinkDisabled {
        link_id: LinkId,
        by: UserId,
        at: DateTime<Utc>,
    },
    LinkEnabled {
        link_id: LinkId,
        by: UserId,
        at: DateTime<Utc>,
    },
    LinkRevoked {
        link_id: LinkId,
        by: UserId,
        at: DateTime<Utc>,
    },
    LinkRegenerated {
        link_id: LinkId,
        token: String,
        short_code: String,
        /// The claims the old token and code held, released with this event.
        old_token: String,
        old_short_code: String,
        by: UserId,
        at: DateTime<Utc>,
    },
    LinkAccessed {
        link_id: LinkId,
        action: AccessAction,
        outcome: AccessOutcome,
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
        at: DateTime<Utc>,
    },
    LinkDownloadCounted {
        link_id: LinkId,
        count: u64,
        at: DateTime<Utc>,
    },
    LinkViewCounted {
        link_id: LinkId,
        count: u64,
        at: DateTime<Utc>,
    },
    LinkEmailCodeIssued {
        link_id: LinkId,
        email: String,
        code_hash: String,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for LinkEvent {}

/// Checks options on their own and against the tenant's sharing policy;
/// answers them normalised (and capped at the policy's ceiling when unset).
pub fn check_options(
    link_type: LinkType,
    mut o: LinkOptions,
    policy: &SharingPolicy,
    at: DateTime<Utc>,
) -> Result<LinkOptions, DomainError> {
    if !policy.external_sharing_enabled {
        return Err(DomainError::Forbidden(
            "external sharing is disabled for this tenant".into(),
        ));
    }
    if !policy
        .allowed_link_types
        .iter()
        .any(|t| t.eq_ignore_ascii_case(link_type.as_str()))
    {
        return Err(DomainError::Forbidden(format!(
            "the tenant does not allow {} links",
            link_type.as_str()
        )));
    }
    if link_type == LinkType::Upload && o.upload_folder_id.is_none() {
        return Err(DomainError::invalid(
            "upload_folder_id",
            "required for UPLOAD links",
        ));
    }
    if let Some(e) = o.expires_at {
        if e <= at {
            return Err(DomainError::invalid("expires_at", "must be in the future"));
        }
    }
    if policy.require_password && o.password_hash.is_none() {
        return Err(DomainError::invalid(
            "password",
            "the tenant requires a password on every link",
        ));
    }
    if policy.require_expiry && o.expires_at.is_none() {
        return Err(DomainError::invalid(
            "expires_at",
            "the tenant requires an expiry on every link",
        ));
    }
    if let (Some(days), Some(e)) = (policy.max_expiry_days, o.expires_at) {
        // A minute of slack so "expires_in_days = max" is not refused by
        // the time the request took.
        if e > at + Duration::days(i64::from(days)) + Duration::minutes(1) {
            return Err(DomainError::invalid(
                "expires_at",
                format!("the tenant allows links to live at most {days} days"),
            ));
        }
    }
    for (field, v) in [
        ("max_downloads", o.max_downloads),
        ("max_views", o.max_views),
    ] {
        if v == Some(0) {
            return Err(DomainError::invalid(field, "must be at least 1"));
        }
    }
    if let Some(ceiling) = policy.max_downloads_ceiling {
        match o.max_downloads {
            Some(m) if m > ceiling => {
                return Err(DomainError::invalid(
                    "max_downloads",
                    format!("the tenant allows at most {ceiling} downloads per link"),
                ))
            }
            Some(_) => {}
            None => o.max_downloads = Some(ceiling),
        }
    }
    if o.custom_name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 255)
    {
        return Err(DomainError::invalid(
            "custom_name",
            "must be at most 255 characters",
        ));
    }
    if o.custom_message
        .as_ref()
        .is_some_and(|n| n.chars().count() > 2000)
    {
        return Err(DomainError::invalid(
            "custom_message",
            "must be at most 2000 characters",
        ));
    }
    for e in o.allowed_emails.iter_mut() {
        *e = e.trim().to_lowercase();
        if !looks_like_email(e) {
            return Err(DomainError::invalid(
                "allowed_emails",
                format!("'{e}' is not an email address"),
            ));
        }
    }
    if let Some(e) = &o.notification_email {
        if !looks_like_email(e) {
            return Err(DomainError::invalid(
                "notification_email",
                "not an email address",
            ));
        }
    }
    o.allowed_extensions = o
        .allowed_extensions
        .iter()
        .map(|e| normalize_extension(e))
        .filter(|e| !e.is_empty())
        .collect();
    if o.max_file_size == Some(0) {
        return Err(DomainError::invalid("max_file_size", "must be at least 1"));
    }
    Ok(o)
}

/// A plausible address: one `@` with something on both sides, no spaces.
pub fn looks_like_email(e: &str) -> bool {
    let e = e.trim();
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !e.chars().any(char::is_whitespace)
                && e.len() <= 320
        }
        None => false,
    }
}

impl Aggregate for Link {
    type Command = LinkCommand;
    type Event = LinkEvent;

    fn decide(&self, command: &LinkCommand) -> Result<Vec<LinkEvent>, DomainError> {
        if let LinkCommand::Create {
            link_id,
            tenant_id,
            share_id,
            resource_type,
            resource_id,
            link_type,
            token,
            short_code,
            options,
            policy,
            by,
            at,
        } = command
        {
            if self.id.is_some() {
                return Err(DomainError::AlreadyExists("link already exists".into()));
            }
            let options = check_options(*link_type, options.clone(), policy, *at)?;
            return Ok(vec![LinkEvent::LinkCreated {
                link_id: *link_id,
                tenant_id: *tenant_id,
                share_id: *share_id,
                resource_type: *resource_type,
                resource_id: resource_id.clone(),
                link_type: *link_type,
                token: token.clone(),
                short_code: short_code.clone(),
                options,
                by: *by,
                at: *at,
            }]);
        }
        let Some(link_id) = self.id else {
            return Err(DomainError::NotFound("link"));
        };
        if let LinkCommand::Access { request, code } = command {
            let outcome = self.evaluate(request);
            let mut events = vec![LinkEvent::LinkAccessed {
                link_id,
                action: request.action,
                outcome,
                status: outcome.status(),
                ip: request.ip.map(|i| i.to_string()),
                email: match &request.credential {
                    Credential::AccessToken { email } => email.clone(),
                    Credential::Unlock { email, .. } => email.clone(),
                    Credential::None => request.email.clone(),
                }
                .map(|e| e.trim().to_lowercase()),
                at: request.at,
            }];
            if outcome == AccessOutcome::Allowed {
                match request.action {
                    AccessAction::Download => events.push(LinkEvent::LinkDownloadCounted {
                        link_id,
                        count: self.download_count + 1,
                        at: request.at,
                    }),
                    AccessAction::Preview => events.push(LinkEvent::LinkViewCounted {
                        link_id,
                        count: self.view_count + 1,
                        at: request.at,
                    }),
                    AccessAction::EmailCode => {
                        let (Some(email), Some(code)) = (&request.email, code) else {
                            return Err(DomainError::BadRequest(
                                "an email code request needs an address and a code".into(),
                            ));
                        };
                        events.push(LinkEvent::LinkEmailCodeIssued {
                            link_id,
                            email: email.trim().to_lowercase(),
                            code_hash: code.code_hash.clone(),
                            expires_at: code.expires_at,
                            at: request.at,
                        });
                    }
                    _ => {}
                }
            }
            return Ok(events);
        }
        if self.revoked {
            return Err(DomainError::Gone("the link has been revoked".into()));
        }
        match command {
            LinkCommand::Create { .. } | LinkCommand::Access { .. } => Ok(vec![]),
            LinkCommand::Update {
                options,
                enabled,
                policy,
                by,
                at,
            } => {
                let link_type = self.link_type.unwrap_or(LinkType::View);
                let mut events = Vec::new();
                if *options != self.options {
                    let options = check_options(link_type, options.clone(), policy, *at)?;
                    if options != self.options {
                        events.push(LinkEvent::LinkUpdated {
                            link_id,
                            options,
                            by: *by,
                            at: *at,
                        });
                    }
                }
                match enabled {
                    Some(false) if !self.disabled => events.push(LinkEvent::LinkDisabled {
                        link_id,
                        by: *by,
                        at: *at,
                    }),
                    Some(true) if self.disabled => {
                        // Re-enabling is creating access again: the policy applies.
                        check_options(link_type, options.clone(), policy, *at)?;
                        events.push(LinkEvent::LinkEnabled {
                            link_id,
                            by: *by,
                            at: *at,
                        })
                    }
                    _ => {}
                }
                Ok(events)
            }
            LinkCommand::Revoke { by, at } => Ok(vec![LinkEvent::LinkRevoked {
                link_id,
                by: *by,
                at: *at,
            }]),
            LinkCommand::Regenerate {
                token,
                short_code,
                by,
                at,
            } => Ok(vec![LinkEvent::LinkRegenerated {
                link_id,
                token: token.clone(),
                short_code: short_code.clone(),
                old_token: self.token.clone(),
                old_short_code: self.short_code.clone(),
                by: *by,
                at: *at,
            }]),
        }
    }

    fn evolve(&mut self, event: &LinkEvent) {
        match event {
            LinkEvent::LinkCreated {
                link_id,
                tenant_id,
                share_id,
                resource_type,
                resource_id,
                link_type,
                token,
                short_code,
                options,
                by,
                at,
            } => {
                self.id = Some(*link_id);
                self.tenant_id = Some(*tenant_id);
                self.share_id = Some(*share_id);
                self.resource_type = Some(*resource_type);
                self.resource_id = resource_id.clone();
                self.link_type = Some(*link_type);
                self.token = token.clone();
                self.short_code = short_code.clone();
                self.options = options.clone();
                self.created_by = Some(*by);
                self.created_at = Some(*at);
            }
            LinkEvent::LinkUpdated { options, .. } => {
                // Tightening who may open the link ends the sessions that
                // were unlocked under the old rules.
                if options.password_hash != self.options.password_hash
                    || options.require_email != self.options.require_email
                    || options.allowed_emails != self.options.allowed_emails
                {
                    self.generation += 1;
                }
                self.options = options.clone();
            }
            LinkEvent::LinkDisabled { .. } => self.disabled = true,
            LinkEvent::LinkEnabled { .. } => self.disabled = false,
            LinkEvent::LinkRevoked { .. } => self.revoked = true,
            LinkEvent::LinkRegenerated {
                token, short_code, ..
            } => {
                self.token = token.clone();
                self.short_code = short_code.clone();
                self.generation += 1;
                self.email_codes.clear();
            }
            LinkEvent::LinkAccessed {
                action,
                outcome,
                ip,
                email,
                at,
                ..
            } => {
                let since = *at - Duration::minutes(THROTTLE_WINDOW_MINUTES);
                self.failed_unlocks.retain(|(_, t)| *t > since);
                self.code_requests.retain(|(_, t)| *t > since);
                self.email_codes.retain(|c| c.expires_at > *at);
                if *action == AccessAction::EmailCode && *outcome == AccessOutcome::Allowed {
                    let ip = ip.clone().unwrap_or_else(|| "unknown".to_owned());
                    self.code_requests.push((ip, *at));
                }
                if *action == AccessAction::Unlock {
                    if outcome.is_failed_unlock() {
                        let ip = ip.clone().unwrap_or_else(|| "unknown".to_owned());
                        self.failed_unlocks.push((ip, *at));
                    } else if *outcome == AccessOutcome::Allowed {
                        // A code is good for one unlock.
                        if let Some(e) = email {
                            for c in &mut self.email_codes {
                                if c.email.eq_ignore_ascii_case(e) {
                                    c.used = true;
                                }
                            }
                        }
                    }
                }
            }
            LinkEvent::LinkDownloadCounted { count, .. } => self.download_count = *count,
            LinkEvent::LinkViewCounted { count, .. } => self.view_count = *count,
            LinkEvent::LinkEmailCodeIssued {
                email,
                code_hash,
                expires_at,
                ..
            } => self.email_codes.push(EmailCode {
                email: email.clone(),
                code_hash: code_hash.clone(),
                expires_at: *expires_at,
                used: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Scenario;
    use uuid::Uuid;

    fn lid() -> LinkId {
        LinkId::from_uuid(Uuid::from_u128(7))
    }

    fn user() -> UserId {
        UserId::from_uuid(Uuid::from_u128(3))
    }

    fn created(link_type: LinkType, options: LinkOptions) -> LinkEvent {
        LinkEvent::LinkCreated {
            link_id: lid(),
            tenant_id: TenantId::from_uuid(Uuid::from_u128(2)),
            share_id: ShareId::from_uuid(Uuid::from_u128(1)),
            resource_type: LinkResource::File,
            resource_id: "fil_x".into(),
            link_type,
            token: "tok".into(),
            short_code: "code".into(),
            options,
            by: user(),
            at: Utc::now(),
        }
    }

    fn access(action: AccessAction, ip: &str, credential: Credential) -> LinkCommand {
        LinkCommand::Access {
            request: AccessRequest {
                action,
                ip: ip.parse().ok(),
                email: None,
                credential,
                at: Utc::now(),
            },
            code: None,
        }
    }

    fn outcome_of(events: &[LinkEvent]) -> AccessOutcome {
        match &events[0] {
            LinkEvent::LinkAccessed { outcome, .. } => *outcome,
            other => panic!("expected link-accessed, got {other:?}"),
        }
    }

    fn decide(given: Vec<LinkEvent>, cmd: LinkCommand) -> Vec<LinkEvent> {
        Link::replay(given.iter()).decide(&cmd).expect("decision")
    }

    #[test]
    fn cidrs_match_v4_v6_and_mapped_addresses() {
        let nets = vec![
            parse_cidr("10.0.0.0/8").unwrap(),
            parse_cidr("2001:db8::/32").unwrap(),
            parse_cidr("192.168.1.7").unwrap(),
        ];
        assert!(ip_allowed(&nets, "10.200.3.4".parse().unwrap()));
        assert!(ip_allowed(&nets, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(ip_allowed(&nets, "2001:db8:1::5".parse().unwrap()));
        assert!(ip_allowed(&nets, "192.168.1.7".parse().unwrap()));
        assert!(!ip_allowed(&nets, "192.168.1.8".parse().unwrap()));
        assert!(!ip_allowed(&nets, "11.0.0.1".parse().unwrap()));
        assert!(!ip_allowed(&nets, "2001:db9::1".parse().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("nope").is_err());
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec![parse_cidr("10.0.0.0/8").unwrap()];
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let outsider: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            client_ip(peer, Some("198.51.100.1, 203.0.113.9, 10.0.0.7"), &trusted),
            outsider,
            "rightmost untrusted hop wins"
        );
        assert_eq!(client_ip(outsider, Some("1.1.1.1"), &trusted), outsider);
        assert_eq!(client_ip(peer, None, &trusted), peer);
        assert_eq!(client_ip(peer, Some("junk"), &trusted), peer);
        assert_eq!(
            client_ip(peer, Some("10.0.0.9"), &trusted),
            "10.0.0.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, Some("1.2.3.4"), &[]), peer);
    }

    #[test]
    fn refusals_come_in_the_specified_order() {
        let opts = LinkOptions {
            password_hash: Some("h".into()),
            allowed_ips: vec![parse_cidr("10.0.0.0/8").unwrap()],
            require_email: true,
            allowed_emails: vec!["a@x.test".into()],
            max_downloads: Some(1),
            ..Default::default()
        };
        let base = vec![created(LinkType::Download, opts.clone())];
        let revoked = vec![
            created(LinkType::Download, opts.clone()),
            LinkEvent::LinkRevoked {
                link_id: lid(),
                by: user(),
                at: Utc::now(),
            },
        ];
        // Revoked beats everything, even a foreign IP.
        let e = decide(
            revoked,
            access(AccessAction::Download, "8.8.8.8", Credential::None),
        );
        assert_eq!(outcome_of(&e), AccessOutcome::Revoked);
        let e = decide(
            base.clone(),
            access(AccessAction::Download, "8.8.8.8", Credential::None),
        );
        assert_eq!(outcome_of(&e), AccessOutcome::IpNotAllowed);
        let e = decide(
            base.clone(),
            access(AccessAction::Download, "10.0.0.1", Credential::None),
        );
        assert_eq!(outcome_of(&e), AccessOutcome::EmailUnverified);
        let e = decide(
            base.clone(),
            access(
                AccessAction::Download,
                "10.0.0.1",
                Credential::AccessToken {
                    email: Some("a@x.test".into()),
                },
            ),
        );
        assert_eq!(outcome_of(&e), AccessOutcome::Allowed);
        assert_eq!(e.len(), 2, "an allowed download is counted");
        let mut counted = base.clone();
        counted.push(LinkEvent::LinkDownloadCounted {
            link_id: lid(),
            count: 1,
            at: Utc::now(),
        });
        let e = decide(
            counted,
            access(
                AccessAction::Download,
                "10.0.0.1",
                Credential::AccessToken {
                    email: Some("a@x.test".into()),
                },
            ),
        );
        assert_eq!(outcome_of(&e), AccessOutcome::CapReached);
        assert_eq!(e.len(), 1, "a refusal counts nothing");
    }

    #[test]
    fn password_links_need_the_password_or_an_unlock() {
        let opts = LinkOptions {
            password_hash: Some("h".into()),
            ..Default::default()
        };
        let given = vec![created(LinkType::Download, opts)];
        let check = |c: Credential| {
            outcome_of(&decide(
                given.clone(),
                access(AccessAction::Unlock, "1.2.3.4", c),
            ))
        };
        let unlock = |p| Credential::Unlock {
            password: p,
            email: None,
            code_hash: None,
        };
        assert_eq!(
            check(unlock(PasswordCheck::Absent)),
            AccessOutcome::PasswordRequired
        );
        assert_eq!(
            check(unlock(PasswordCheck::Wrong)),
            AccessOutcome::PasswordWrong
        );
        assert_eq!(
            check(unlock(PasswordCheck::Correct)),
            AccessOutcome::Allowed
        );
        let e = decide(
            given.clone(),
            access(AccessAction::Download, "1.2.3.4", Credential::None),
        );
        assert_eq!(outcome_of(&e), AccessOutcome::PasswordRequired);
    }

    #[test]
    fn ten_failed_unlocks_from_one_ip_throttle_that_ip_only() {
        let opts = LinkOptions {
            password_hash: Some("h".into()),
            ..Default::default()
        };
        let mut link = Link::replay([created(LinkType::View, opts)].iter());
        let wrong = Credential::Unlock {
            password: PasswordCheck::Wrong,
            email: None,
            code_hash: None,
        };
        for _ in 0..MAX_FAILED_UNLOCKS {
            let events = link
                .decide(&access(AccessAction::Unlock, "1.2.3.4", wrong.clone()))
                .unwrap();
            assert_eq!(outcome_of(&events), AccessOutcome::PasswordWrong);
            for e in &events {
                link.evolve(e);
            }
        }
        let events = link
            .decide(&access(AccessAction::Unlock, "1.2.3.4", wrong.clone()))
            .unwrap();
        assert_eq!(outcome_of(&events), AccessOutcome::Throttled);
        let events = link
            .decide(&access(AccessAction::Unlock, "5.6.7.8", wrong))
            .unwrap();
        assert_eq!(outcome_of(&events), AccessOutcome::PasswordWrong);
    }

    #[test]
    fn email_codes_are_throttled_per_address_of_the_requester() {
        let opts = LinkOptions {
            require_email: true,
            ..Default::default()
        };
        let mut link = Link::replay([created(LinkType::View, opts)].iter());
        let ask = || LinkCommand::Access {
            request: AccessRequest {
                action: AccessAction::EmailCode,
                ip: "1.2.3.4".parse().ok(),
                email: Some("a@x.test".into()),
                credential: Credential::None,
                at: Utc::now(),
            },
            code: Some(IssuedCode {
                code_hash: "h".into(),
                expires_at: Utc::now() + Duration::minutes(EMAIL_CODE_MINUTES),
            }),
        };
        for _ in 0..MAX_FAILED_UNLOCKS {
            let events = link.decide(&ask()).unwrap();
            assert_eq!(outcome_of(&events), AccessOutcome::Allowed);
            for e in &events {
                link.evolve(e);
            }
        }
        assert_eq!(
            outcome_of(&link.decide(&ask()).unwrap()),
            AccessOutcome::Throttled
        );
    }

    #[test]
    fn view_links_never_download_and_expiry_is_checked_at_access() {
        let given = vec![created(LinkType::View, LinkOptions::default())];
        let e = decide(
            given,
            access(AccessAction::Download, "1.2.3.4", Credential::None),
        );
        assert_eq!(outcome_of(&e), AccessOutcome::WrongLinkType);
        let expiring = LinkOptions {
            expires_at: Some(Utc::now() - Duration::seconds(1)),
            ..Default::default()
        };
        let e = decide(
            vec![created(LinkType::Download, expiring)],
            access(AccessAction::Download, "1.2.3.4", Credential::None),
        );
        assert_eq!(outcome_of(&e), AccessOutcome::Expired);
    }

    #[test]
    fn email_codes_verify_once_for_their_address() {
        let opts = LinkOptions {
            require_email: true,
            ..Default::default()
        };
        let at = Utc::now();
        let hash = code_hash(lid(), "b@y.test", "123456");
        let given = vec![
            created(LinkType::Download, opts),
            LinkEvent::LinkEmailCodeIssued {
                link_id: lid(),
                email: "b@y.test".into(),
                code_hash: hash.clone(),
                expires_at: at + Duration::minutes(EMAIL_CODE_MINUTES),
                at,
            },
        ];
        let unlock = |email: &str, h: &str| Credential::Unlock {
            password: PasswordCheck::Absent,
            email: Some(email.into()),
            code_hash: Some(h.into()),
        };
        let e = decide(
            given.clone(),
            access(AccessAction::Unlock, "1.1.1.1", unlock("b@y.test", "bad")),
        );
        assert_eq!(outcome_of(&e), AccessOutcome::EmailUnverified);
        let e = decide(
            given.clone(),
            access(AccessAction::Unlock, "1.1.1.1", unlock("B@Y.test", &hash)),
        );
        assert_eq!(outcome_of(&e), AccessOutcome::Allowed);
        let mut after = given.clone();
        after.extend(e);
        let e = decide(
            after,
            access(AccessAction::Unlock, "1.1.1.1", unlock("b@y.test", &hash)),
        );
        assert_eq!(
            outcome_of(&e),
            AccessOutcome::EmailUnverified,
            "codes are single use"
        );
    }

    #[test]
    fn policy_is_enforced_at_create() {
        let policy = SharingPolicy {
            require_password: true,
            ..Default::default()
        };
        let cmd = |options: LinkOptions, policy: SharingPolicy, link_type| LinkCommand::Create {
            link_id: lid(),
            tenant_id: TenantId::from_uuid(Uuid::from_u128(2)),
            share_id: ShareId::from_uuid(Uuid::from_u128(1)),
            resource_type: LinkResource::Folder,
            resource_id: "fld_x".into(),
            link_type,
            token: "t".into(),
            short_code: "c".into(),
            options,
            policy,
            by: user(),
            at: Utc::now(),
        };
        Scenario::<Link>::given_nothing()
            .when(cmd(LinkOptions::default(), policy, LinkType::View))
            .then_error_matches(
                |e| matches!(e, DomainError::Invalid { field, .. } if field == "password"),
            );
        let off = SharingPolicy {
            external_sharing_enabled: false,
            ..Default::default()
        };
        Scenario::<Link>::given_nothing()
            .when(cmd(LinkOptions::default(), off, LinkType::View))
            .then_error_matches(|e| matches!(e, DomainError::Forbidden(_)));
        Scenario::<Link>::given_nothing()
            .when(cmd(
                LinkOptions::default(),
                SharingPolicy::default(),
                LinkType::Upload,
            ))
            .then_error_matches(
                |e| matches!(e, DomainError::Invalid { field, .. } if field == "upload_folder_id"),
            );
        let ceiling = SharingPolicy {
            max_downloads_ceiling: Some(5),
            ..Default::default()
        };
        let state = Scenario::<Link>::given_nothing()
            .when(cmd(LinkOptions::default(), ceiling, LinkType::Download))
            .then_types(&["link-created"]);
        match &state[0] {
            LinkEvent::LinkCreated { options, .. } => assert_eq!(options.max_downloads, Some(5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn revoked_links_stay_revoked() {
        let given = [
            created(LinkType::View, LinkOptions::default()),
            LinkEvent::LinkRevoked {
                link_id: lid(),
                by: user(),
                at: Utc::now(),
            },
        ];
        Scenario::<Link>::given(given.clone())
            .when(LinkCommand::Update {
                options: LinkOptions::default(),
                enabled: Some(true),
                policy: SharingPolicy::default(),
                by: user(),
                at: Utc::now(),
            })
            .then_error_matches(|e| matches!(e, DomainError::Gone(_)));
        Scenario::<Link>::given(given)
            .when(LinkCommand::Revoke {
                by: user(),
                at: Utc::now(),
            })
            .then_error_matches(|e| matches!(e, DomainError::Gone(_)));
    }

    #[test]
    fn numbered_names_keep_the_extension() {
        assert_eq!(numbered_name("a.txt", 1), "a (1).txt");
        assert_eq!(numbered_name("README", 2), "README (2)");
        assert_eq!(numbered_name(".env", 1), ".env (1)");
        assert_eq!(extension_of("x.PDF").as_deref(), Some("pdf"));
        assert_eq!(extension_of(".env"), None);
    }
}
