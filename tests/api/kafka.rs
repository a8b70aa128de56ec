//! The event log leaves the server: `scaidrive events tail` from the store,
//! and (with the `kafka` feature, against a real Kafka-protocol broker) the
//! relay publishing every event, surviving broker outages and its own
//! restarts without losing one.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::drive::new_share;
use crate::helpers::{spawn, spawn_with, Backend};

#[tokio::test]
async fn events_tail_prints_each_appended_event_as_its_envelope() {
    // The log's own signed checkpoints have no tenant: the tenant's
    // `/events` does not list them, the tail (the whole store) would.
    let app = spawn_with(Backend::Sqlite, |c| c.proofs.enabled = false).await;
    let t = app.token("acme", "alice", "");
    new_share(&app, &t, "Before").await;
    let listed = app.get("/events?limit=1000", &t).await;
    let before: Vec<Value> = listed.body["events"].as_array().expect("events").clone();
    assert!(!before.is_empty());
    let mut child = Command::new(env!("CARGO_BIN_EXE_scaidrive"))
        .args(["events", "tail", "--from-start", "--limit"])
        .arg((before.len() + 1).to_string())
        .arg("--data-dir")
        .arg(&app.state.config.data_dir)
        .env_remove("SCAIDRIVE_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start scaidrive events tail");
    let stdout = child.stdout.take().expect("stdout");
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // The log's own signed checkpoints have no tenant, so the
            // tenant's `/events` does not list them.
            .collect::<Vec<_>>()
    });
    // An event appended while the tail runs arrives too.
    new_share(&app, &t, "During").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "tail did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = lines.join().expect("reader");
    assert_eq!(lines.len(), before.len() + 1);
    for (line, listed) in lines.iter().zip(&before) {
        let v: Value = serde_json::from_str(line).expect("one JSON envelope per line");
        assert_eq!(&v, listed, "the same envelope GET /events answers with");
    }
    let last: Value = serde_json::from_str(&lines[before.len()]).expect("json");
    assert_eq!(last["event_type"], "share-created");
    assert_eq!(last["data"]["name"], "During");
}

#[cfg(feature = "kafka")]
pub(crate) mod relay {
    use std::collections::{HashMap, HashSet};
    use std::process::Child;
    use std::sync::Arc;

    use parking_lot::Mutex;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;
    use rdkafka::{Message, Offset, TopicPartitionList};
    use scaidrive::config::KafkaConfig;
    use scaidrive_domain::LogPosition;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::helpers::{spawn_with, Backend, TestApp};

    pub(crate) fn brokers() -> String {
        std::env::var("SCAIDRIVE_TEST_KAFKA_BROKERS")
            .expect("SCAIDRIVE_TEST_KAFKA_BROKERS must be set (scripts/test sets it)")
    }

    pub(crate) fn topic_name() -> String {
        format!("scaidrive.test.{}", uuid::Uuid::now_v7().simple())
    }

    pub(crate) async fn create_topic(brokers: &str, topic: &str) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .expect("admin client");
        let r = admin
            .create_topics(
                &[NewTopic::new(topic, 3, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .expect("create topic");
        for x in r {
            x.expect("topic created");
        }
    }

    /// One received record.
    #[derive(Debug, Clone)]
    pub(crate) struct Got {
        key: String,
        pub(crate) envelope: Value,
        headers: HashMap<String, String>,
    }

    /// Reads every partition of `topic` from the start, by assignment.
    pub(crate) fn collect(brokers: &str, topic: &str) -> (Arc<Mutex<Vec<Got>>>, CancellationToken) {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            // librdkafka wants a group id, but assigned partitions never join it.
            .set(
                "group.id",
                format!("scaidrive-test-{}", uuid::Uuid::now_v7().simple()),
            )
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let mut tpl = TopicPartitionList::new();
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                    .expect("partition");
            }
        }
        assert!(tpl.count() > 0, "topic {topic} has partitions");
        consumer.assign(&tpl).expect("assign");
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (sink, done) = (got.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let m = tokio::select! {
                    _ = done.cancelled() => break,
                    m = consumer.recv() => m,
                };
                let Ok(m) = m else { continue };
                let mut headers = HashMap::new();
                if let Some(h) = m.headers() {
                    for x in h.iter() {
                        headers.insert(
                            x.key.to_owned(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                sink.lock().push(Got {
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    envelope: serde_json::from_slice(m.payload().unwrap_or_default())
                        .unwrap_or(Value::Null),
                    headers,
                });
            }
        });
        (got, stop)
    }

    async fn log(app: &TestApp) -> Vec<Value> {
        envelopes(&app.state.store).await
    }

    /// Every event of the log as its envelope, in log order.
    pub(crate) async fn envelopes(store: &scaidrive::store::DynStore) -> Vec<Value> {
        store
            .read_all(LogPosition::START, 100_000)
            .await
            .expect("read log")
            .iter()
            .map(|e| e.envelope())
            .collect()
    }

    /// How many of the log's events the consumer still lacks after waiting
    /// up to `within` for them.
    async fn missing_after(log: &[Value], got: &Mutex<Vec<Got>>, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        let expected: HashSet<&str> = log.iter().filter_map(|e| e["event_id"].as_str()).collect();
        loop {
            let missing = {
                let got = got.lock();
                let seen: HashSet<&str> = got
                    .iter()
                    .filter_map(|g| g.envelope["event_id"].as_str())
                    .collect();
                expected.difference(&seen).count()
            };
            if missing == 0 || Instant::now() >= deadline {
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every event of `log` has arrived at least once, then
    /// checks each stream's first arrivals are in stream order.
    pub(crate) async fn all_arrive(
        log: &[Value],
        got: &Mutex<Vec<Got>>,
        within: Duration,
    ) -> Vec<Got> {
        let missing = missing_after(log, got, within).await;
        assert_eq!(
            missing,
            0,
            "{missing} of {} events never arrived",
            log.len()
        );
        let records = got.lock().clone();
        let mut first = HashSet::new();
        let mut last_version: HashMap<String, i64> = HashMap::new();
        for g in &records {
            let id = g.envelope["event_id"].as_str().expect("id").to_owned();
            if !first.insert(id) {
                continue;
            }
            let stream = g.envelope["stream_id"].as_str().expect("stream").to_owned();
            let v = g.envelope["stream_version"].as_i64().expect("version");
            let prev = last_version.insert(stream.clone(), v).unwrap_or(0);
            assert!(
                v > prev,
                "stream {stream}: version {v} arrived after {prev}"
            );
        }
        records
    }

    #[tokio::test]
    #[ignore = "needs Kafka (scripts/test)"]
    async fn every_event_is_published_keyed_by_stream_with_its_envelope_and_headers() {
        let brokers = brokers();
        let topic = topic_name();
        create_topic(&brokers, &topic).await;
        let (got, stop) = collect(&brokers, &topic);
        let kafka = KafkaConfig {
            brokers: brokers.clone(),
            topic: topic.clone(),
        };
        let app = spawn_with(Backend::Sqlite, |c| {
            c.kafka = Some(kafka);
            c.proofs.every_events = 3;
        })
        .await;
        let t = app.token("acme", "alice", "");
        for i in 0..5 {
            new_share(&app, &t, &format!("S{i}")).await;
        }
        // A signed checkpoint is an event like any other: it is published.
        let deadline = Instant::now() + Duration::from_secs(30);
        while scaidrive::proofs::latest(&app.state.store)
            .await
            .expect("latest checkpoint")
            .is_none()
        {
            assert!(Instant::now() < deadline, "no checkpoint was signed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let records = all_arrive(&log(&app).await, &got, Duration::from_secs(60)).await;
        let key = scaidrive::proofs::Verifier::parse(&app.state.log_key.verifier().text())
            .expect("verifier key");
        let checkpoints: Vec<&Got> = records
            .iter()
            .filter(|g| g.envelope["event_type"] == "log-checkpoint-signed")
            .collect();
        assert!(!checkpoints.is_empty(), "no checkpoint reached Kafka");
        for g in checkpoints {
            assert_eq!(g.key, scaidrive::proofs::STREAM);
            let note = g.envelope["data"]["note"].as_str().expect("note");
            key.open(note).expect("a note signed with the server's key");
        }
        stop.cancel();
        let listed = app.get("/events?limit=1000", &t).await;
        let by_id: HashMap<&str, &Value> = listed.body["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| (e["event_id"].as_str().expect("id"), e))
            .collect();
        for g in &records {
            let id = g.envelope["event_id"].as_str().expect("id");
            if let Some(listed) = by_id.get(id) {
                assert_eq!(&&g.envelope, listed, "value = the GET /events envelope");
            }
            assert_eq!(g.key, g.envelope["stream_id"].as_str().expect("stream"));
            assert_eq!(g.headers["event_id"], id);
            assert_eq!(
                g.headers["event_type"],
                g.envelope["event_type"].as_str().expect("type")
            );
            assert_eq!(
                g.headers["schema_version"],
                g.envelope["schema_version"].to_string()
            );
            if let Some(tenant) = g.envelope["tenant_id"].as_str() {
                assert_eq!(g.headers["tenant_id"], tenant);
            }
        }
        // The checkpoint reaches the head once everything is acknowledged.
        let head = app.state.store.head().await.expect("head");
        let deadline = Instant::now() + Duration::from_secs(30);
        while scaidrive::relay::load_checkpoint(&app.state.db)
            .await
            .expect("checkpoint")
            != head
        {
            assert!(
                Instant::now() < deadline,
                "checkpoint never reached the head"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ready = app.call(reqwest::Method::GET, "/ready", None, None).await;
        assert_eq!(ready.body["checks"]["kafka"], true, "{}", ready.body);
    }

    #[tokio::test]
    #[ignore = "needs Kafka (scripts/test)"]
    async fn a_restarted_relay_resumes_from_its_checkpoint_without_losing_events() {
        let brokers = brokers();
        let topic = topic_name();
        create_topic(&brokers, &topic).await;
        let (got, stop) = collect(&brokers, &topic);
        let config = KafkaConfig {
            brokers: brokers.clone(),
            topic: topic.clone(),
        };
        // No relay inside the server: the test starts and stops its own.
        let app = spawn().await;
        let t = app.token("acme", "alice", "");
        for i in 0..5 {
            new_share(&app, &t, &format!("A{i}")).await;
        }
        let first = CancellationToken::new();
        let relay = scaidrive::relay::spawn(
            app.state.db.clone(),
            app.state.store.clone(),
            config.clone(),
            scaidrive::lease::Leases::in_process().lease(scaidrive::relay::CHECKPOINT),
            first.clone(),
        );
        all_arrive(&log(&app).await, &got, Duration::from_secs(60)).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let head = app.state.store.head().await.expect("head");
        while scaidrive::relay::load_checkpoint(&app.state.db)
            .await
            .expect("cp")
            != head
        {
            assert!(
                Instant::now() < deadline,
                "checkpoint never reached the head"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        first.cancel();
        relay.await.expect("relay stops");
        let delivered = got.lock().len();
        // Written while no relay runs, published by the next one.
        for i in 0..5 {
            new_share(&app, &t, &format!("B{i}")).await;
        }
        let second = CancellationToken::new();
        let relay = scaidrive::relay::spawn(
            app.state.db.clone(),
            app.state.store.clone(),
            config,
            scaidrive::lease::Leases::in_process().lease(scaidrive::relay::CHECKPOINT),
            second.clone(),
        );
        let records = all_arrive(&log(&app).await, &got, Duration::from_secs(60)).await;
        second.cancel();
        relay.await.expect("relay stops");
        stop.cancel();
        let total = log(&app).await.len();
        assert_eq!(
            records.len(),
            total,
            "resuming from the checkpoint re-sends nothing ({delivered} before the restart)"
        );
    }

    /// A broker of our own, so stopping it disturbs no other test. Its data
    /// lives in the S3 stand-in, so a restarted broker still has the topic.
    struct Broker {
        bin: String,
        port: u16,
        bucket: String,
        child: Option<Child>,
    }

    impl Broker {
        async fn start() -> Broker {
            let bin = std::env::var("SCAIDRIVE_TEST_TANSU")
                .expect("SCAIDRIVE_TEST_TANSU must name the tansu binary (scripts/test sets it)");
            let endpoint =
                std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (S3 stand-in)");
            let bucket = format!("tansu-{}", uuid::Uuid::now_v7().simple());
            let r = reqwest::Client::new()
                .put(format!("{endpoint}/{bucket}"))
                .send()
                .await
                .expect("create bucket");
            assert!(r.status().is_success(), "bucket: {}", r.status());
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let mut b = Broker {
                bin,
                port,
                bucket,
                child: None,
            };
            b.up().await;
            b
        }

        fn addr(&self) -> String {
            format!("127.0.0.1:{}", self.port)
        }

        async fn up(&mut self) {
            let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
            let url = format!("tcp://{}", self.addr());
            let child = Command::new(&self.bin)
                .arg("broker")
                .args(["--listener-url", &url, "--advertised-listener-url", &url])
                .args(["--storage-engine", &format!("s3://{}/", self.bucket)])
                .env("AWS_ENDPOINT", &endpoint)
                .env("AWS_ALLOW_HTTP", "true")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start tansu");
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(self.addr()).is_err() {
                assert!(Instant::now() < deadline, "tansu did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        fn down(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    impl Drop for Broker {
        fn drop(&mut self) {
            self.down();
        }
    }

    #[tokio::test]
    #[ignore = "needs Kafka (scripts/test)"]
    async fn a_broker_outage_mid_stream_loses_nothing_and_keeps_stream_order() {
        let mut broker = Broker::start().await;
        let brokers = broker.addr();
        let topic = topic_name();
        create_topic(&brokers, &topic).await;
        let (got, stop) = collect(&brokers, &topic);
        let kafka = KafkaConfig {
            brokers: brokers.clone(),
            topic: topic.clone(),
        };
        let app = Arc::new(spawn_with(Backend::Sqlite, |c| c.kafka = Some(kafka)).await);
        let t = app.token("acme", "alice", "");
        // A writer appends all along, before, during and after the outage.
        let writer = {
            let (app, t) = (app.clone(), t.clone());
            tokio::spawn(async move {
                for i in 0..60 {
                    new_share(&app, &t, &format!("S{i}")).await;
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.lock().len() < 10 {
            assert!(Instant::now() < deadline, "nothing was published");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        broker.down();
        let ready = app.call(reqwest::Method::GET, "/ready", None, None).await;
        assert_eq!(ready.status, 503, "{}", ready.body);
        assert_eq!(ready.body["checks"]["kafka"], false, "{}", ready.body);
        // The API keeps serving while the broker is away.
        new_share(&app, &t, "During the outage").await;
        broker.up().await;
        writer.await.expect("writer");
        let events = log(&app).await;
        if missing_after(&events, &got, Duration::from_secs(60)).await > 0 {
            // A consumer that lived through the outage may keep a fetch
            // position the restarted broker no longer agrees with; what
            // counts is what the topic holds, so read it again from the start.
            let (again, stop_again) = collect(&brokers, &topic);
            all_arrive(&events, &again, Duration::from_secs(60)).await;
            stop_again.cancel();
        } else {
            all_arrive(&events, &got, Duration::from_secs(1)).await;
        }
        stop.cancel();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = app.call(reqwest::Method::GET, "/ready", None, None).await;
            if r.body["checks"]["kafka"] == true {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kafka never ready again: {}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    #[ignore = "needs Kafka (scripts/test)"]
    async fn events_tail_from_kafka_prints_the_published_envelopes() {
        let brokers = brokers();
        let topic = topic_name();
        create_topic(&brokers, &topic).await;
        let kafka = KafkaConfig {
            brokers: brokers.clone(),
            topic: topic.clone(),
        };
        let app = spawn_with(Backend::Sqlite, |c| c.kafka = Some(kafka)).await;
        let t = app.token("acme", "alice", "");
        new_share(&app, &t, "Tailed").await;
        let total = log(&app).await.len();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_scaidrive"))
                .args(["events", "tail", "--from-kafka", "--from-start"])
                .args(["--kafka-brokers", &brokers, "--kafka-topic", &topic])
                .args(["--limit", &total.to_string()])
                .stderr(Stdio::null())
                .output()
                .expect("run events tail")
        })
        .await
        .expect("join");
        assert!(out.status.success());
        let ids: HashSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).expect("json")["event_id"]
                    .as_str()
                    .expect("id")
                    .to_owned()
            })
            .collect();
        let expected: HashSet<String> = log(&app)
            .await
            .iter()
            .map(|e| e["event_id"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(ids, expected);
    }
}
