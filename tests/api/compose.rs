//! docker-compose.yml describes the production shape and is wired by env.

use serde_json::Value;

fn compose() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .expect("read compose file");
    let yaml: serde_norway::Value =
        serde_norway::from_str(&text).expect("docker-compose.yml is valid YAML");
    serde_json::to_value(yaml).expect("as json")
}

#[test]
fn compose_runs_postgres_kafka_s3_and_the_server_wired_together() {
    let c = compose();
    let services = c["services"].as_object().expect("services");
    for s in ["postgres", "kafka", "s3", "scaidrive"] {
        assert!(services.contains_key(s), "service {s} missing");
    }
    let server = &c["services"]["scaidrive"];
    assert_eq!(
        server["build"], ".",
        "the server is built from this repository"
    );
    assert!(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).exists());
    let env = server["environment"].as_object().expect("environment");
    let db = env["SCAIDRIVE_DATABASE_URL"]
        .as_str()
        .expect("database url");
    assert!(
        db.starts_with("postgres://") && db.contains("@postgres:"),
        "{db}"
    );
    assert!(env["SCAIDRIVE_BLOB_URL"]
        .as_str()
        .is_some_and(|b| b.starts_with("s3://")));
    assert!(env["AWS_ENDPOINT_URL"]
        .as_str()
        .is_some_and(|e| e.contains("s3:")));
    assert!(env["SCAIDRIVE_KAFKA_BROKERS"]
        .as_str()
        .is_some_and(|k| k.starts_with("kafka:")));
    let pg_env = &c["services"]["postgres"]["environment"];
    assert!(
        db.contains(pg_env["POSTGRES_DB"].as_str().expect("db name")),
        "the server points at the database compose creates"
    );
    let depends = server["depends_on"].as_object().expect("depends_on");
    assert!(depends.contains_key("postgres") && depends.contains_key("kafka"));
}
