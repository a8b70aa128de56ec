//! The relay loop over librdkafka, the readiness probe and the topic tail.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use scaidrive_domain::{LogPosition, RecordedEvent};
use scaidrive_projections::db::Db;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::lease::Lease;
use crate::store::DynStore;

/// Events read and published per round.
const BATCH: usize = 500;
/// Longest pause between attempts after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn producer(config: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        // Idempotence: the broker drops retried duplicates and keeps each
        // partition free of gaps and reordering, so a stream's events land
        // in log order even across retries.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // No local expiry: through a broker outage librdkafka keeps retrying
        // and the relay keeps waiting, rather than failing and re-sending.
        .set("message.timeout.ms", "0")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()
}

/// Starts the relay; it publishes while this process holds `lease` and
/// runs until `stop` is cancelled.
pub fn spawn(
    db: Db,
    store: DynStore,
    config: KafkaConfig,
    lease: Lease,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        Relay {
            db,
            store,
            config,
            lease,
            stop,
        }
        .run()
        .await
    })
}

struct Relay {
    db: Db,
    store: DynStore,
    config: KafkaConfig,
    lease: Lease,
    stop: CancellationToken,
}

/// How far one batch got.
enum Outcome {
    /// Every event was acknowledged.
    Delivered,
    /// The first `n` events were acknowledged, then one failed.
    Failed(usize, String),
    Stopped,
}

impl Relay {
    async fn run(self) {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.lease.acquired() => {}
            }
            self.publish_while_held().await;
        }
    }

    /// Publishes from the stored checkpoint (another holder may have moved
    /// it) until the lease is lost or the relay stops.
    async fn publish_while_held(&self) {
        let mut backoff = Duration::from_millis(200);
        let mut after = loop {
            match super::load_checkpoint(&self.db).await {
                Ok(p) => break p,
                Err(e) => {
                    tracing::warn!(error = %e, "kafka relay cannot read its checkpoint");
                    if self.pause(&mut backoff).await {
                        return;
                    }
                }
            }
        };
        tracing::info!(topic = %self.config.topic, after = %after.to_token(), "kafka relay started");
        let mut wake = self.store.subscribe();
        let mut producer: Option<FutureProducer> = None;
        while !self.stop.is_cancelled() && self.lease.is_held() {
            let p = match producer.take() {
                Some(p) => p,
                None => match self::producer(&self.config) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka relay cannot create a producer");
                        if self.pause(&mut backoff).await {
                            break;
                        }
                        continue;
                    }
                },
            };
            let batch = match self.store.read_all(after, BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "kafka relay cannot read the log");
                    producer = Some(p);
                    if self.pause(&mut backoff).await {
                        break;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                producer = Some(p);
                tokio::select! {
                    _ = self.stop.cancelled() => break,
                    _ = self.lease.lost() => break,
                    _ = wake.recv() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            let (delivered, failure) = match self.publish(&p, &batch).await {
                Outcome::Delivered => (batch.len(), None),
                Outcome::Failed(n, why) => (n, Some(why)),
                Outcome::Stopped => {
                    drop_producer(p).await;
                    break;
                }
            };
            if delivered > 0 {
                after = batch[delivered - 1].log;
                self.remember(after).await;
            }
            match failure {
                None => {
                    backoff = Duration::from_millis(200);
                    producer = Some(p);
                }
                Some(why) => {
                    // A fresh producer (new producer id, fresh sequence
                    // numbers) re-sends from the first unacknowledged event;
                    // anything the old one still had in flight lands before
                    // it or not at all, so per-stream order holds.
                    tracing::warn!(error = %why, delivered, after = %after.to_token(), "kafka delivery failed; re-sending from the checkpoint");
                    drop_producer(p).await;
                    if self.pause(&mut backoff).await {
                        break;
                    }
                }
            }
        }
        if let Some(p) = producer {
            drop_producer(p).await;
        }
        tracing::info!(after = %after.to_token(), "kafka relay stopped");
    }

    /// Sends a batch and waits for the acknowledgements, in order.
    async fn publish(&self, producer: &FutureProducer, batch: &[RecordedEvent]) -> Outcome {
        let mut pending = Vec::with_capacity(batch.len());
        let mut refused = None;
        for e in batch {
            let value = super::value(e);
            let mut headers = OwnedHeaders::new();
            for (key, v) in super::headers(e) {
                headers = headers.insert(Header {
                    key,
                    value: Some(v.as_bytes()),
                });
            }
            let record = FutureRecord::to(&self.config.topic)
                .key(e.stream_id.as_bytes())
                .payload(value.as_bytes())
                .headers(headers);
            match producer.send_result(record) {
                Ok(f) => pending.push(f),
                Err((err, _)) => {
                    refused = Some(err.to_string());
                    break;
                }
            }
        }
        let sent = pending.len();
        let mut waiting_since = tokio::time::Instant::now();
        for (i, fut) in pending.into_iter().enumerate() {
            tokio::pin!(fut);
            let result = loop {
                tokio::select! {
                    _ = self.stop.cancelled() => return Outcome::Stopped,
                    r = &mut fut => break r,
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {
                        tracing::warn!(topic = %self.config.topic, waiting_secs = waiting_since.elapsed().as_secs(), "kafka relay still waiting for the broker to acknowledge");
                    }
                }
            };
            waiting_since = tokio::time::Instant::now();
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((err, _))) => return Outcome::Failed(i, err.to_string()),
                Err(_) => return Outcome::Failed(i, "delivery report lost".into()),
            }
        }
        match refused {
            None => Outcome::Delivered,
            Some(why) => Outcome::Failed(sent, why),
        }
    }

    async fn remember(&self, after: LogPosition) {
        // A new holder may already be past it: leave the checkpoint to it.
        if !self.lease.is_held() {
            return;
        }
        // A checkpoint that fails to store only means re-sending more after a
        // restart; the loop keeps its position in memory.
        if let Err(e) = super::store_checkpoint(&self.db, after).await {
            tracing::warn!(error = %e, "kafka relay cannot store its checkpoint");
        }
    }

    /// Waits out a failure; true when the relay should stop (or leave the
    /// work to the lease's new holder) instead.
    async fn pause(&self, backoff: &mut Duration) -> bool {
        let wait = *backoff;
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        tokio::select! {
            _ = self.stop.cancelled() => true,
            _ = self.lease.lost() => true,
            _ = tokio::time::sleep(wait) => false,
        }
    }
}

/// Dropping a producer purges its queue and blocks up to half a second.
async fn drop_producer(p: FutureProducer) {
    let _ = tokio::task::spawn_blocking(move || drop(p)).await;
}

/// Checks the brokers answer and the topic exists (readiness).
pub struct KafkaProbe {
    client: Arc<BaseProducer>,
    topic: String,
}

impl KafkaProbe {
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let client: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .create()?;
        Ok(Self {
            client: Arc::new(client),
            topic: config.topic.clone(),
        })
    }

    /// Whether the topic's metadata can be fetched within a second.
    pub async fn check(&self) -> bool {
        let client = self.client.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(1))
                .map(|m| {
                    m.topics().iter().any(|t| {
                        t.name() == topic && t.error().is_none() && !t.partitions().is_empty()
                    })
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

/// Hands the topic's record values to `each` as they arrive, reading every
/// partition by assignment (no consumer-group join) until `each` says stop.
pub async fn tail(
    config: &KafkaConfig,
    from_start: bool,
    mut each: impl FnMut(&str) -> bool,
) -> Result<(), String> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        // librdkafka wants a group id, but assigned partitions never join it
        // (a join takes many seconds on some brokers) and nothing is committed.
        .set(
            "group.id",
            format!("scaidrive-tail-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("enable.auto.commit", "false")
        .set(
            "auto.offset.reset",
            if from_start { "earliest" } else { "latest" },
        )
        .create()
        .map_err(|e| format!("cannot create a Kafka consumer: {e}"))?;
    let topic = config.topic.clone();
    let metadata = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .map_err(|e| format!("cannot read the metadata of topic {topic}: {e}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!("topic {topic} does not exist"));
    }
    let mut tpl = TopicPartitionList::new();
    let offset = if from_start {
        Offset::Beginning
    } else {
        Offset::End
    };
    for p in partitions {
        tpl.add_partition_offset(&topic, p, offset)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    loop {
        let msg = consumer.recv().await.map_err(|e| e.to_string())?;
        if !each(&String::from_utf8_lossy(msg.payload().unwrap_or_default())) {
            return Ok(());
        }
    }
}
