//! External-link commands: creation and regeneration with unique tokens and
//! short codes (store claims), owner changes, and recipient attempts decided
//! on the link's stream (a counted download is appended at the version the
//! decision saw, so caps are exact), including uploads through a link.

use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use scaidrive_domain::drive::file::Content;
use scaidrive_domain::id::{FileId, LinkId, TenantId, UserId};
use scaidrive_domain::link::{
    numbered_name, AccessOutcome, AccessRequest, IssuedCode, Link, LinkCommand, LinkEvent,
    LinkOptions,
};
use scaidrive_domain::tenancy::SharingPolicy;
use scaidrive_domain::{Aggregate, DomainError};
use uuid::Uuid;

use super::drive::{create_file_in, Target};
use super::{CommandBus, CommandContext, CommandError, Committed};
use crate::secrets::SecretKey;

/// Claim scope that keeps link tokens unique.
pub const TOKEN_SCOPE: &str = "link-token";
/// Claim scope that keeps short codes unique.
pub const CODE_SCOPE: &str = "link-code";

/// Short codes avoid characters people confuse (0/O/o, 1/I/l).
const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz";
/// Length of a short code (56^8 ≈ 9.7e13 codes).
pub const CODE_LEN: usize = 8;

/// A token: 256 random bits, URL-safe base64 (43 characters).
pub fn new_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A short code of [`CODE_LEN`] unambiguous characters.
pub fn new_short_code() -> String {
    (0..CODE_LEN)
        .map(|_| CODE_ALPHABET[OsRng.gen_range(0..CODE_ALPHABET.len())] as char)
        .collect()
}

/// Whether a string could be a short code (cheap check before a lookup).
pub fn is_short_code(s: &str) -> bool {
    s.len() == CODE_LEN && s.bytes().all(|b| CODE_ALPHABET.contains(&b))
}

/// How often a colliding token or short code is drawn again.
const CLAIM_ATTEMPTS: usize = 5;

/// Creates a link; `make` builds the create command from a fresh token and
/// short code (drawn again if either is taken). The claims hold them in the
/// clear (recipients are found by them); the command gets them sealed.
pub async fn create_link(
    bus: &CommandBus,
    ctx: &CommandContext,
    link_id: LinkId,
    secrets: &SecretKey,
    make: impl Fn(String, String) -> LinkCommand,
) -> Result<Committed, CommandError> {
    let stream = link_id.to_string();
    let mut last = None;
    for _ in 0..CLAIM_ATTEMPTS {
        let (token, code) = (new_token(), new_short_code());
        let cmd = make(secrets.seal(&token), secrets.seal(&code));
        let result = bus
            .retrying(|| async {
                let mut uow = bus.begin(ctx);
                let link = uow.load::<Link>(&stream).await?;
                let events = link.state.decide(&cmd)?;
                uow.emit::<Link>(&stream, &events)?;
                uow.claim(TOKEN_SCOPE, token.clone(), stream.clone());
                uow.claim(CODE_SCOPE, code.clone(), stream.clone());
                uow.commit().await
            })
            .await;
        match result {
            Err(CommandError::Domain(DomainError::NameConflict(k))) => last = Some(k),
            other => return other,
        }
    }
    Err(DomainError::InvalidTransition(format!(
        "could not draw a unique link token ({})",
        last.unwrap_or_default()
    ))
    .into())
}

/// New token and short code for a link; the old ones stop working at once.
pub async fn regenerate_link(
    bus: &CommandBus,
    ctx: &CommandContext,
    link_id: LinkId,
    by: UserId,
    secrets: &SecretKey,
) -> Result<(Link, Committed), CommandError> {
    let stream = link_id.to_string();
    for _ in 0..CLAIM_ATTEMPTS {
        let (token, code) = (new_token(), new_short_code());
        let (sealed_token, sealed_code) = (secrets.seal(&token), secrets.seal(&code));
        let result = bus
            .retrying(|| async {
                let mut uow = bus.begin(ctx);
                let link = uow.load::<Link>(&stream).await?;
                // The released token and code go into the event: sealed,
                // even when the link is older than sealing.
                let mut current = link.state.clone();
                current.token = secrets.reseal(&current.token);
                current.short_code = secrets.reseal(&current.short_code);
                let events = current.decide(&LinkCommand::Regenerate {
                    token: sealed_token.clone(),
                    short_code: sealed_code.clone(),
                    by,
                    at: ctx.now,
                })?;
                let mut state = link.state.clone();
                for e in &events {
                    state.evolve(e);
                }
                let (old_token, old_code) = (
                    open_claim(secrets, &stream, &link.state.token)?,
                    open_claim(secrets, &stream, &link.state.short_code)?,
                );
                uow.release(TOKEN_SCOPE, old_token, stream.clone());
                uow.release(CODE_SCOPE, old_code, stream.clone());
                uow.claim(TOKEN_SCOPE, token.clone(), stream.clone());
                uow.claim(CODE_SCOPE, code.clone(), stream.clone());
                uow.emit::<Link>(&stream, &events)?;
                Ok((state, uow.commit().await?))
            })
            .await;
        match result {
            Err(CommandError::Domain(DomainError::NameConflict(_))) => continue,
            other => return other,
        }
    }
    Err(DomainError::InvalidTransition("could not draw a unique link token".into()).into())
}

/// The claim key behind a sealed token or short code.
fn open_claim(secrets: &SecretKey, stream: &str, stored: &str) -> Result<String, CommandError> {
    secrets.open(stored).map_err(|e| CommandError::Corrupt {
        stream: stream.to_owned(),
        message: e.to_string(),
    })
}

/// An owner change (update, disable, revoke) on one link.
pub async fn change_link(
    bus: &CommandBus,
    ctx: &CommandContext,
    link_id: LinkId,
    cmd: &LinkCommand,
) -> Result<(Link, Committed), CommandError> {
    bus.execute::<Link, _>(&link_id.to_string(), ctx, |l| l.state.decide(cmd))
        .await
}

/// Changes a link's options and/or enables or disables it. `change` is
/// applied to the options of the state being decided on, so concurrent
/// patches of different fields both survive.
#[allow(clippy::too_many_arguments)]
pub async fn update_link(
    bus: &CommandBus,
    ctx: &CommandContext,
    link_id: LinkId,
    secrets: &SecretKey,
    change: impl Fn(&mut LinkOptions),
    enabled: Option<bool>,
    policy: SharingPolicy,
    by: UserId,
) -> Result<(Link, Committed), CommandError> {
    bus.execute::<Link, _>(&link_id.to_string(), ctx, |l| {
        let mut options = l.state.options.clone();
        // A hash from before sealing is sealed as it moves into a new event.
        options.password_hash = options.password_hash.map(|h| secrets.reseal(&h));
        change(&mut options);
        l.state.decide(&LinkCommand::Update {
            options,
            enabled,
            policy: policy.clone(),
            by,
            at: ctx.now,
        })
    })
    .await
}

/// What a recorded attempt decided.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub outcome: AccessOutcome,
    /// The link after the attempt.
    pub link: Link,
    pub committed: Committed,
}

fn outcome_of(committed: &Committed) -> AccessOutcome {
    committed
        .events
        .iter()
        .find_map(|e| match e.decode::<LinkEvent>() {
            Ok(LinkEvent::LinkAccessed { outcome, .. }) => Some(outcome),
            _ => None,
        })
        // Nothing appended means nothing was allowed.
        .unwrap_or(AccessOutcome::Revoked)
}

/// Decides and records one recipient attempt (refusals are recorded too).
/// For an allowed download or preview the count is part of the same append.
pub async fn record_access(
    bus: &CommandBus,
    ctx: &CommandContext,
    link_id: LinkId,
    request: AccessRequest,
    code: Option<IssuedCode>,
) -> Result<Attempt, CommandError> {
    let cmd = LinkCommand::Access { request, code };
    let (link, committed) = change_link(bus, ctx, link_id, &cmd).await?;
    Ok(Attempt {
        outcome: outcome_of(&committed),
        link,
        committed,
    })
}

/// A file dropped through an UPLOAD link.
#[derive(Debug, Clone)]
pub struct Dropped {
    pub outcome: AccessOutcome,
    pub file: Option<(FileId, String)>,
    pub committed: Committed,
}

/// Records the upload attempt and, when allowed, creates the file in the
/// link's upload folder in the same append. A taken name is retried as
/// `name (1).ext`, `name (2).ext`, ...
#[allow(clippy::too_many_arguments)]
pub async fn upload_via_link(
    bus: &CommandBus,
    ctx: &CommandContext,
    link_id: LinkId,
    request: AccessRequest,
    tenant_id: TenantId,
    target: Target,
    name: &str,
    content: Content,
) -> Result<Dropped, CommandError> {
    let stream = link_id.to_string();
    let _guard = bus.locks().lock(&stream).await;
    for n in 0..1000u32 {
        let candidate = if n == 0 {
            name.to_owned()
        } else {
            numbered_name(name, n)
        };
        let file_id = FileId::from_uuid(Uuid::now_v7());
        let result = bus
            .retrying(|| async {
                let mut uow = bus.begin(ctx);
                let link = uow.load::<Link>(&stream).await?;
                let by = link.state.created_by.ok_or(DomainError::NotFound("link"))?;
                let events = link.state.decide(&LinkCommand::Access {
                    request: request.clone(),
                    code: None,
                })?;
                let outcome = events
                    .iter()
                    .find_map(|e| match e {
                        LinkEvent::LinkAccessed { outcome, .. } => Some(*outcome),
                        _ => None,
                    })
                    .unwrap_or(AccessOutcome::Revoked);
                uow.emit::<Link>(&stream, &events)?;
                if outcome == AccessOutcome::Allowed {
                    create_file_in(
                        &mut uow,
                        tenant_id,
                        target.clone(),
                        &candidate,
                        content.clone(),
                        by,
                        file_id,
                    )
                    .await?;
                }
                let committed = uow.commit().await?;
                Ok(Dropped {
                    outcome,
                    file: (outcome == AccessOutcome::Allowed).then(|| (file_id, candidate.clone())),
                    committed,
                })
            })
            .await;
        match result {
            Err(CommandError::Domain(DomainError::NameConflict(_))) => continue,
            other => return other,
        }
    }
    Err(DomainError::NameConflict(name.to_owned()).into())
}
