//! `scaidrive events tail`: prints events as they are appended, one envelope
//! (the JSON `GET /events` answers with) per line, read from the store or,
//! with `--from-kafka`, from the relay's topic.

use std::io::Write;
use std::time::Duration;

use scaidrive_domain::LogPosition;

use crate::app::Core;
use crate::config::{Config, KafkaArgs, StoreArgs};
use crate::store::LogFilter;

/// `scaidrive events tail` arguments.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Start after this log position (as in `GET /events?after=`); default:
    /// only events appended from now on.
    #[arg(long, conflicts_with = "from_start")]
    pub after: Option<String>,
    /// Start at the beginning of the log (or of the topic).
    #[arg(long)]
    pub from_start: bool,
    /// Only this tenant's events.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Exit after printing this many events.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Read the Kafka topic the relay publishes to instead of the store.
    #[arg(long)]
    pub from_kafka: bool,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

fn print(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) ends the tail quietly.
    writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
}

/// Runs the tail until the limit is reached (or forever).
pub async fn tail(args: TailArgs) -> Result<(), String> {
    if args.from_kafka {
        return tail_kafka(args).await;
    }
    let mut config = Config::embedded(args.store.data_dir.clone());
    config.database_url = args.store.database_url();
    let core = Core::open(&config).await.map_err(|e| e.to_string())?;
    let mut after = match (&args.after, args.from_start) {
        (Some(token), _) => LogPosition::parse_token(token)
            .ok_or_else(|| format!("'{token}' is not a log position"))?,
        (None, true) => LogPosition::START,
        (None, false) => core.store.head().await.map_err(|e| e.to_string())?,
    };
    let filter = LogFilter {
        tenant_id: args.tenant.clone(),
        ..LogFilter::default()
    };
    let mut wake = core.store.subscribe();
    let mut printed = 0u64;
    loop {
        let batch = core
            .store
            .read_filtered(after, 500, &filter)
            .await
            .map_err(|e| e.to_string())?;
        for e in &batch {
            after = e.log;
            if !print(&e.envelope().to_string()) {
                return Ok(());
            }
            printed += 1;
            if args.limit.is_some_and(|l| printed >= l) {
                return Ok(());
            }
        }
        if batch.len() < 500 {
            // Appends by other processes send no in-process signal: poll too.
            tokio::select! {
                _ = wake.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }
}

#[cfg(feature = "kafka")]
async fn tail_kafka(args: TailArgs) -> Result<(), String> {
    let kafka = args
        .kafka
        .config()
        .ok_or("--from-kafka needs --kafka-brokers (or SCAIDRIVE_KAFKA_BROKERS)")?;
    if args.after.is_some() {
        return Err("--after is a log position; with --from-kafka use --from-start".into());
    }
    let tenant = args.tenant.clone();
    let mut printed = 0u64;
    let limit = args.limit;
    let mut open = true;
    crate::relay::tail(&kafka, args.from_start, |payload| {
        if !open || limit.is_some_and(|l| printed >= l) {
            return false;
        }
        if let Some(t) = &tenant {
            let v: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
            if v["tenant_id"].as_str() != Some(t) {
                return true;
            }
        }
        open = print(payload);
        printed += 1;
        open && limit.is_none_or(|l| printed < l)
    })
    .await
}

#[cfg(not(feature = "kafka"))]
async fn tail_kafka(_: TailArgs) -> Result<(), String> {
    Err("this build has no Kafka support (cargo feature `kafka`)".into())
}
