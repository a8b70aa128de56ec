//! Configuration: one typed struct, read from `SCAIDRIVE_*` environment
//! variables and command-line flags in one place. Tests build it directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Settings shared by every subcommand that opens the data store.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory for the embedded database, blobs and the development key.
    #[arg(long, env = "SCAIDRIVE_DATA_DIR", default_value = "./scaidrive-data")]
    pub data_dir: PathBuf,
    /// `postgres://...` for PostgreSQL; default: SQLite in the data directory.
    #[arg(long, env = "SCAIDRIVE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Maximum database connections.
    #[arg(long, env = "SCAIDRIVE_DATABASE_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub database_max_connections: u32,
}

/// Database connections a server keeps at most unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

impl StoreArgs {
    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("scaidrive.db").display()),
        }
    }
}

/// Where the event log is published (SPEC §4.10).
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Comma-separated Kafka bootstrap servers; when set, every event is
    /// published (needs a build with the `kafka` feature).
    #[arg(long, env = "SCAIDRIVE_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// The topic events are published to.
    #[arg(
        long,
        env = "SCAIDRIVE_KAFKA_TOPIC",
        default_value = "scaidrive.events"
    )]
    pub kafka_topic: String,
}

impl KafkaArgs {
    /// The relay settings, when brokers are configured.
    pub fn config(&self) -> Option<KafkaConfig> {
        let brokers = self.kafka_brokers.as_deref()?.trim();
        if brokers.is_empty() {
            return None;
        }
        Some(KafkaConfig {
            brokers: brokers.to_owned(),
            topic: self.kafka_topic.clone(),
        })
    }
}

/// A Kafka cluster and the topic events go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
}

/// `scaidrive serve` settings.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SCAIDRIVE_BIND", default_value = "0.0.0.0:8000")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Blob store: a local directory path, `file:///path`, or `s3://bucket`.
    #[arg(long, env = "SCAIDRIVE_BLOB_URL")]
    pub blob_url: Option<String>,
    /// Longest one blob-store (S3) request may take, retries included (ms);
    /// past it the client gets 504.
    #[arg(long, env = "SCAIDRIVE_BLOB_TIMEOUT_MS", default_value_t = 30_000)]
    pub blob_timeout_ms: u64,
    /// ScaiKey base URL; when set, tokens are verified against its JWKS and
    /// the development issuer is off.
    #[arg(long, env = "SCAIDRIVE_SCAIKEY_URL")]
    pub scaikey_url: Option<url::Url>,
    /// An additional accepted token issuer (`iss`).
    #[arg(long, env = "SCAIDRIVE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "SCAIDRIVE_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
    /// Longest a request may run before it is answered 504 (seconds).
    #[arg(long, env = "SCAIDRIVE_REQUEST_TIMEOUT_SECS", default_value_t = 300)]
    pub request_timeout_secs: u64,
    /// Longest a read waits for projections to reach the client's last write (ms).
    #[arg(long, env = "SCAIDRIVE_CONSISTENCY_WAIT_MS", default_value_t = 5000)]
    pub consistency_wait_ms: u64,
    /// After SIGTERM, how long readiness answers 503 before the listener
    /// closes (milliseconds).
    #[arg(long, env = "SCAIDRIVE_DRAIN_DELAY_MS", default_value_t = 5000)]
    pub drain_delay_ms: u64,
    /// Readiness fails when a projection is this many events behind.
    #[arg(long, env = "SCAIDRIVE_READY_MAX_LAG", default_value_t = 10_000)]
    pub ready_max_lag: i64,
    /// Default units per 60 s window for one token.
    #[arg(long, env = "SCAIDRIVE_RATE_LIMIT_PER_TOKEN", default_value_t = 1000)]
    pub rate_limit_per_token: u64,
    /// Default units per 60 s window for one user.
    #[arg(long, env = "SCAIDRIVE_RATE_LIMIT_PER_USER", default_value_t = 5000)]
    pub rate_limit_per_user: u64,
    /// Default units per 60 s window for one tenant.
    #[arg(
        long,
        env = "SCAIDRIVE_RATE_LIMIT_PER_TENANT",
        default_value_t = 50_000
    )]
    pub rate_limit_per_tenant: u64,
    /// Redis URL; when set, rate-limit windows live there and every
    /// instance shares them.
    #[arg(long, env = "SCAIDRIVE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix of every key this server writes to Redis.
    #[arg(long, env = "SCAIDRIVE_REDIS_PREFIX", default_value = "scaidrive:")]
    pub redis_prefix: String,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// How often upload expiry and chunk garbage collection run (seconds).
    #[arg(long, env = "SCAIDRIVE_MAINTENANCE_EVERY_SECS", default_value_t = 600)]
    pub maintenance_every_secs: u64,
    /// How long an unreferenced chunk is kept before it is deleted (hours).
    #[arg(long, env = "SCAIDRIVE_GC_GRACE_HOURS", default_value_t = 48)]
    pub gc_grace_hours: u64,
    /// Shared secret of ScaiKey's directory webhook (`POST /webhooks/scaikey`);
    /// unset, the webhook answers 404.
    #[arg(long, env = "SCAIDRIVE_SCAIKEY_WEBHOOK_SECRET", hide_env_values = true)]
    pub scaikey_webhook_secret: Option<String>,
    /// Comma-separated CIDRs of reverse proxies whose `X-Forwarded-For` is
    /// believed; from anyone else the socket address is the client.
    #[arg(long, env = "SCAIDRIVE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Public base URL (e.g. `https://drive.example.com`) for links' `url`
    /// and `short_url`; default: the scheme-less Host of the request.
    #[arg(long, env = "SCAIDRIVE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Key for signing external-link access tokens; default: a random key
    /// kept in the data directory (`link-secret`). Set it when several
    /// processes serve the same database.
    #[arg(long, env = "SCAIDRIVE_LINK_SECRET", hide_env_values = true)]
    pub link_secret: Option<String>,
    /// Server key (base64 of 32 bytes) that seals secrets kept in the log
    /// (link tokens, password hashes, webhook secrets); default: a random
    /// key kept in the data directory (`secret-key`). Set it when several
    /// processes serve the same database, and back it up: sealed values
    /// cannot be read without it.
    #[arg(long, env = "SCAIDRIVE_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Ed25519 key (base64 of the 32-byte seed) that signs the log's
    /// checkpoints; default: a random key kept in the data directory
    /// (`log-signing-key`).
    #[arg(long, env = "SCAIDRIVE_LOG_SIGNING_KEY", hide_env_values = true)]
    pub log_signing_key: Option<String>,
    /// The log's origin line and key name in checkpoints; default: the host
    /// of the public URL + `/log`, else `scaidrive.local/log`.
    #[arg(long, env = "SCAIDRIVE_LOG_ORIGIN")]
    pub log_origin: Option<String>,
    /// A checkpoint is signed once this many events joined the tree...
    #[arg(
        long,
        env = "SCAIDRIVE_CHECKPOINT_EVERY_EVENTS",
        default_value_t = 1000
    )]
    pub checkpoint_every_events: u64,
    /// ...or this many seconds passed since the last with new events in between.
    #[arg(long, env = "SCAIDRIVE_CHECKPOINT_EVERY_SECONDS", default_value_t = 60)]
    pub checkpoint_every_seconds: u64,
    /// Where each signed checkpoint is also written, for witnesses and
    /// auditors who do not ask the server: a directory, a `file://` URL or
    /// `s3://bucket[/prefix]` (S3 endpoint and credentials as for blobs).
    /// Each goes to `checkpoints/{size}` and `checkpoint` (the latest).
    #[arg(long, env = "SCAIDRIVE_LOG_CHECKPOINT_URL")]
    pub log_checkpoint_url: Option<String>,
    /// Keep the Merkle tree and sign checkpoints (off only for comparisons).
    #[arg(long, env = "SCAIDRIVE_MERKLE_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub merkle_log: bool,
    /// Most pending deliveries an outbound webhook may hold (beyond it the
    /// newest are dropped with a SECURITY event).
    #[arg(long, env = "SCAIDRIVE_WEBHOOK_QUEUE_MAX", default_value_t = 10_000)]
    pub webhook_queue_max: i64,
    /// Divides every webhook retry delay (1 = the SPEC schedule).
    #[arg(long, env = "SCAIDRIVE_WEBHOOK_RETRY_SCALE", default_value_t = 1)]
    pub webhook_retry_scale: u32,
    /// How often the webhook sender looks at its queue.
    #[arg(long, env = "SCAIDRIVE_WEBHOOK_POLL_MS", default_value_t = 1000)]
    pub webhook_poll_ms: u64,
    /// Let webhooks reach loopback, private and link-local addresses (off:
    /// a tenant admin must not be able to make the server call its own
    /// network).
    #[arg(long, env = "SCAIDRIVE_WEBHOOK_ALLOW_PRIVATE", default_value_t = false)]
    pub webhook_allow_private: bool,
    /// SMTP relay for notification mail: `smtp://host[:port]` (STARTTLS
    /// when offered), `smtp+starttls://...` (STARTTLS required) or
    /// `smtps://user:pass@host[:port]` (implicit TLS); unset, each message
    /// is written as an `.eml` file under `{data_dir}/mail/`.
    #[arg(long, env = "SCAIDRIVE_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of notification mail (`Name <address>` or an address).
    #[arg(
        long,
        env = "SCAIDRIVE_MAIL_FROM",
        default_value = "ScaiDrive <noreply@localhost>"
    )]
    pub mail_from: String,
    /// Delay before the first retry of a failed message (seconds); later
    /// retries wait 4x, 20x, 120x, 360x and 720x as long.
    #[arg(long, env = "SCAIDRIVE_MAIL_RETRY_BASE_SECS", default_value_t = 30)]
    pub mail_retry_base_secs: u64,
    /// Attempts before a message is given up (dead) and recorded as a
    /// SECURITY event.
    #[arg(long, env = "SCAIDRIVE_MAIL_MAX_ATTEMPTS", default_value_t = 7)]
    pub mail_max_attempts: u32,
    /// Semantic search: a folder with all-MiniLM-L6-v2's `model.safetensors`,
    /// `tokenizer.json` and `config.json`, run in this process.
    #[arg(long, env = "SCAIDRIVE_EMBEDDING_MODEL_DIR")]
    pub embedding_model_dir: Option<PathBuf>,
    /// Semantic search: an OpenAI-compatible embeddings endpoint (`POST
    /// {model, input}`); it embeds instead of the local model.
    #[arg(long, env = "SCAIDRIVE_EMBEDDING_URL")]
    pub embedding_url: Option<String>,
    /// The `model` sent to the embeddings endpoint.
    #[arg(long, env = "SCAIDRIVE_EMBEDDING_MODEL")]
    pub embedding_model: Option<String>,
    /// Bearer token for the embeddings endpoint.
    #[arg(long, env = "SCAIDRIVE_EMBEDDING_API_KEY", hide_env_values = true)]
    pub embedding_api_key: Option<String>,
    /// How long an embeddings call may take (ms); a query beyond it answers 504.
    #[arg(long, env = "SCAIDRIVE_EMBEDDING_TIMEOUT_MS", default_value_t = 10_000)]
    pub embedding_timeout_ms: u64,
}

/// Splits an SMTP URL into the URL without its password (safe to show) and
/// the password. A string that is no URL keeps only its scheme and host part
/// after any `@`, so that starting fails without echoing a password.
pub fn split_smtp_url(raw: &str) -> (String, Option<Secret>) {
    match url::Url::parse(raw.trim()) {
        Ok(mut u) => {
            let password = u
                .password()
                .map(|p| Secret::new(percent_encoding::percent_decode_str(p).decode_utf8_lossy()));
            let _ = u.set_password(None);
            (u.to_string(), password)
        }
        Err(_) => {
            let shown = match raw.rsplit_once('@') {
                Some((head, host)) => match head.split_once("://") {
                    Some((scheme, _)) => format!("{scheme}://***@{host}"),
                    None => format!("***@{host}"),
                },
                None => raw.to_owned(),
            };
            (shown, None)
        }
    }
}

/// A secret value: usable, but never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    scaidrive_domain::link::parse_cidr(s)
}

/// The resolved configuration the application is built from.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub database_max_connections: u32,
    pub blob: crate::blob::BlobSettings,
    pub scaikey_url: Option<url::Url>,
    pub jwt_issuer: Option<String>,
    pub request_timeout: Duration,
    pub consistency_wait: Duration,
    pub maintenance_every: Duration,
    pub gc_grace: Duration,
    pub drain_delay: Duration,
    pub ready_max_lag: i64,
    pub rate_limits: crate::ratelimit::Limits,
    /// Length of a rate-limit window (60 s; tests shorten it).
    pub rate_limit_window: Duration,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub kafka: Option<KafkaConfig>,
    /// HMAC key of ScaiKey's directory webhook; `None` turns the webhook off.
    pub scaikey_webhook_secret: Option<Secret>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Base URL for links' `url`/`short_url` (no trailing slash).
    pub public_url: Option<String>,
    /// Overrides the data-directory key for link access tokens.
    pub link_secret: Option<String>,
    /// Overrides the data-directory key that seals secrets in the log.
    pub secret_key: Option<Secret>,
    /// Outbound webhook sender: queue bound, retry-delay divisor, poll period.
    pub webhooks: WebhookSettings,
    /// SMTP relay URL without its password (safe to show); `None` writes
    /// `.eml` files under `{data_dir}/mail/`.
    pub smtp_url: Option<String>,
    /// The password taken out of `SCAIDRIVE_SMTP_URL`.
    pub smtp_password: Option<Secret>,
    /// Sender address of notification mail.
    pub mail_from: String,
    /// Retry schedule and poll period of the mail sender.
    pub mail: MailSettings,
    /// Bounds on access-log entries (refusals, content reads).
    pub access_log: crate::access_log::Settings,
    /// The Merkle log and its signed checkpoints.
    pub proofs: ProofSettings,
    /// The embedding provider of semantic search (none: it answers 501).
    pub embedding: EmbeddingSettings,
}

/// The outbound webhook sender's knobs ([`crate::webhooks`]).
#[derive(Debug, Clone, Copy)]
pub struct WebhookSettings {
    /// Divides every retry delay (1 in production; tests walk the schedule fast).
    pub retry_scale: u32,
    /// Most pending deliveries one webhook may hold.
    pub queue_max: i64,
    /// How often the queue is looked at.
    pub poll: Duration,
    /// Whether deliveries may go to loopback, private or link-local addresses.
    pub allow_private: bool,
}

/// The mail sender's knobs ([`crate::mail`]).
#[derive(Debug, Clone, Copy)]
pub struct MailSettings {
    /// Delay before the first retry.
    pub retry_base: Duration,
    /// Attempts before a message is given up.
    pub max_attempts: u32,
    /// How often the outbox is looked at.
    pub poll: Duration,
    /// How old another sender's unsettled claim must be before it counts as
    /// abandoned (longer than a send can take).
    pub claim_timeout: Duration,
}

impl Default for MailSettings {
    fn default() -> Self {
        MailSettings {
            retry_base: Duration::from_secs(30),
            max_attempts: 7,
            poll: Duration::from_millis(500),
            claim_timeout: Duration::from_secs(300),
        }
    }
}

impl From<ServeArgs> for Config {
    fn from(a: ServeArgs) -> Self {
        let smtp = a
            .smtp_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(split_smtp_url);
        Config {
            bind: a.bind,
            database_url: a.store.database_url(),
            data_dir: a.store.data_dir,
            database_max_connections: a.store.database_max_connections,
            blob: crate::blob::BlobSettings {
                url: a.blob_url.filter(|u| !u.trim().is_empty()),
                timeout: Duration::from_millis(a.blob_timeout_ms.max(100)),
                ..crate::blob::BlobSettings::local()
            },
            scaikey_url: a.scaikey_url,
            jwt_issuer: a.jwt_issuer,
            request_timeout: Duration::from_secs(a.request_timeout_secs.max(1)),
            consistency_wait: Duration::from_millis(a.consistency_wait_ms),
            maintenance_every: Duration::from_secs(a.maintenance_every_secs.max(1)),
            gc_grace: Duration::from_secs(a.gc_grace_hours * 3600),
            drain_delay: Duration::from_millis(a.drain_delay_ms),
            ready_max_lag: a.ready_max_lag.max(1),
            rate_limits: crate::ratelimit::Limits {
                per_token: a.rate_limit_per_token.max(1),
                per_user: a.rate_limit_per_user.max(1),
                per_tenant: a.rate_limit_per_tenant.max(1),
            },
            rate_limit_window: Duration::from_secs(60),
            redis_url: a.redis_url.filter(|u| !u.trim().is_empty()),
            redis_prefix: a.redis_prefix,
            kafka: a.kafka.config(),
            scaikey_webhook_secret: a
                .scaikey_webhook_secret
                .filter(|s| !s.is_empty())
                .map(Secret::new),
            trusted_proxies: a.trusted_proxies,
            public_url: a
                .public_url
                .map(|u| u.trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty()),
            link_secret: a.link_secret.filter(|s| !s.is_empty()),
            secret_key: a
                .secret_key
                .filter(|s| !s.trim().is_empty())
                .map(Secret::new),
            webhooks: WebhookSettings {
                retry_scale: a.webhook_retry_scale.max(1),
                queue_max: a.webhook_queue_max.max(1),
                poll: Duration::from_millis(a.webhook_poll_ms.max(10)),
                allow_private: a.webhook_allow_private,
            },
            mail: MailSettings {
                retry_base: Duration::from_secs(a.mail_retry_base_secs.max(1)),
                max_attempts: a.mail_max_attempts.max(1),
                ..MailSettings::default()
            },
            mail_from: a.mail_from,
            smtp_password: smtp.as_ref().and_then(|s| s.1.clone()),
            smtp_url: smtp.map(|s| s.0),
            access_log: crate::access_log::Settings::default(),
            proofs: ProofSettings {
                enabled: a.merkle_log,
                every_events: a.checkpoint_every_events.max(1),
                every: Duration::from_secs(a.checkpoint_every_seconds.max(1)),
                signing_key: a
                    .log_signing_key
                    .filter(|k| !k.trim().is_empty())
                    .map(Secret::new),
                origin: a.log_origin.filter(|o| !o.trim().is_empty()),
                publish_url: a.log_checkpoint_url.filter(|u| !u.trim().is_empty()),
            },
            embedding: EmbeddingSettings {
                model_dir: a.embedding_model_dir.filter(|d| !d.as_os_str().is_empty()),
                url: a.embedding_url.filter(|u| !u.trim().is_empty()),
                model: a.embedding_model.filter(|m| !m.trim().is_empty()),
                api_key: a
                    .embedding_api_key
                    .filter(|k| !k.trim().is_empty())
                    .map(Secret::new),
                timeout: Duration::from_millis(a.embedding_timeout_ms.max(1)),
            },
        }
    }
}

impl Config {
    /// Embedded defaults under `data_dir`, listening on an ephemeral port
    /// (what tests start from).
    pub fn embedded(data_dir: PathBuf) -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: format!("sqlite://{}", data_dir.join("scaidrive.db").display()),
            data_dir,
            database_max_connections: 8,
            blob: crate::blob::BlobSettings::local(),
            scaikey_url: None,
            jwt_issuer: None,
            request_timeout: Duration::from_secs(300),
            consistency_wait: Duration::from_secs(5),
            maintenance_every: Duration::from_secs(600),
            gc_grace: Duration::from_secs(48 * 3600),
            drain_delay: Duration::ZERO,
            ready_max_lag: 10_000,
            rate_limits: crate::ratelimit::Limits::default(),
            rate_limit_window: Duration::from_secs(60),
            redis_url: None,
            redis_prefix: "scaidrive:".into(),
            kafka: None,
            scaikey_webhook_secret: None,
            trusted_proxies: Vec::new(),
            public_url: None,
            link_secret: None,
            secret_key: None,
            webhooks: WebhookSettings {
                retry_scale: 1,
                queue_max: 10_000,
                poll: Duration::from_secs(1),
                // Tests and benchmarks deliver to receivers on loopback.
                allow_private: true,
            },
            smtp_url: None,
            smtp_password: None,
            mail_from: "ScaiDrive <noreply@localhost>".into(),
            mail: MailSettings::default(),
            access_log: crate::access_log::Settings::default(),
            proofs: ProofSettings::default(),
            embedding: EmbeddingSettings::default(),
        }
    }
}

/// Configuration of the tree and its checkpoints.
#[derive(Debug, Clone)]
pub struct ProofSettings {
    /// Keep the tree (off only to measure what it costs).
    pub enabled: bool,
    /// Sign once this many leaves joined since the last checkpoint...
    pub every_events: u64,
    /// ...or once this long passed with new leaves.
    pub every: Duration,
    /// Base64 of the 32-byte Ed25519 seed; `None` uses the key file.
    pub signing_key: Option<Secret>,
    /// Origin line and key name; `None` derives one from the public URL.
    pub origin: Option<String>,
    /// Where signed checkpoints are also written (a directory, `file://`
    /// or `s3://bucket[/prefix]`); `None`: only into the log.
    pub publish_url: Option<String>,
}

impl Default for ProofSettings {
    fn default() -> Self {
        ProofSettings {
            enabled: true,
            every_events: 1000,
            every: Duration::from_secs(60),
            signing_key: None,
            origin: None,
            publish_url: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smtp_password_is_kept_apart_and_never_shown() {
        let (url, password) = split_smtp_url("smtps://mailer:s3cr%40t@mail.example.com:465");
        assert_eq!(url, "smtps://mailer@mail.example.com:465");
        let password = password.expect("password");
        assert_eq!(password.expose(), "s3cr@t");
        assert_eq!(format!("{password:?}"), "Secret(***)");
        let (url, password) = split_smtp_url("smtp://127.0.0.1:2525");
        assert_eq!((url.as_str(), password), ("smtp://127.0.0.1:2525", None));
        let (shown, _) = split_smtp_url("smtps://u:p w@x y");
        assert!(!shown.contains("p w"), "{shown}");
    }
}

/// Where embeddings come from (`SCAIDRIVE_EMBEDDING_*`).
#[derive(Debug, Clone)]
pub struct EmbeddingSettings {
    /// A folder with `model.safetensors`, `tokenizer.json` and `config.json`
    /// of all-MiniLM-L6-v2 (`SCAIDRIVE_EMBEDDING_MODEL_DIR`).
    pub model_dir: Option<PathBuf>,
    /// An OpenAI-compatible embeddings endpoint (`SCAIDRIVE_EMBEDDING_URL`);
    /// when set it embeds, and the model directory (if any) only counts
    /// tokens.
    pub url: Option<String>,
    /// The `model` sent to the remote endpoint (`SCAIDRIVE_EMBEDDING_MODEL`).
    pub model: Option<String>,
    /// Bearer token for the remote endpoint (`SCAIDRIVE_EMBEDDING_API_KEY`).
    pub api_key: Option<Secret>,
    /// How long a remote call may take (`SCAIDRIVE_EMBEDDING_TIMEOUT_MS`,
    /// default 10 000): beyond it a query answers 504.
    pub timeout: Duration,
}

impl Default for EmbeddingSettings {
    /// No provider; a 10 s timeout for one configured later.
    fn default() -> Self {
        EmbeddingSettings {
            model_dir: None,
            url: None,
            model: None,
            api_key: None,
            timeout: Duration::from_secs(10),
        }
    }
}

impl EmbeddingSettings {
    /// From the environment (the CLI's rebuild; the server reads the same
    /// variables through its flags).
    pub fn from_env() -> Self {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        EmbeddingSettings {
            model_dir: var("SCAIDRIVE_EMBEDDING_MODEL_DIR").map(PathBuf::from),
            url: var("SCAIDRIVE_EMBEDDING_URL"),
            model: var("SCAIDRIVE_EMBEDDING_MODEL"),
            api_key: var("SCAIDRIVE_EMBEDDING_API_KEY").map(Secret::new),
            timeout: Duration::from_millis(
                var("SCAIDRIVE_EMBEDDING_TIMEOUT_MS")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(10_000)
                    .max(1),
            ),
        }
    }

    /// Whether any provider is configured.
    pub fn configured(&self) -> bool {
        self.model_dir.is_some() || self.url.is_some()
    }
}
