#!/usr/bin/env python3
"""An analytics consumer that knows nothing but the AsyncAPI document.

Reads every partition of the topic from the earliest offset (by assignment,
no consumer-group join), turns each record into a CloudEvent with the
CloudEvents SDK's Kafka binding (binary mode), dedupes on the CloudEvent id,
finds the AsyncAPI message named by the CloudEvent type and validates the
data against that message's payload schema. Prints a JSON summary and exits
non-zero when a record fails to decode or validate.

Usage: cloudevents-consume.py --brokers HOST:PORT --topic T --asyncapi FILE
       --expect N [--timeout SECONDS]
Needs: confluent-kafka, cloudevents, jsonschema (scripts/test installs them).
"""

import argparse
import json
import sys
import time

import jsonschema
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event
from confluent_kafka import Consumer, TopicPartition


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--asyncapi", required=True)
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    with open(args.asyncapi, encoding="utf-8") as f:
        doc = json.load(f)
    schemas = doc["components"]["schemas"]
    by_name = {}
    for key, message in doc["components"]["messages"].items():
        ref = message["payload"]["schema"]["$ref"]
        schema = schemas[ref.rsplit("/", 1)[1]]
        by_name.setdefault(message["name"], {})[key] = schema

    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": "scaidrive-cloudevents-check",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    md = consumer.list_topics(args.topic, timeout=10)
    partitions = md.topics[args.topic].partitions
    consumer.assign(
        [TopicPartition(args.topic, p, 0) for p in sorted(partitions)]
    )

    seen = {}
    records = 0
    errors = []
    types = set()
    deadline = time.monotonic() + args.timeout
    while len(seen) < args.expect and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is None:
            continue
        if m.error():
            continue
        records += 1
        headers = {k: (v or b"") for k, v in (m.headers() or [])}
        try:
            event = from_binary_event(
                KafkaMessage(headers=headers, key=m.key(), value=m.value())
            )
        except Exception as e:  # noqa: BLE001 - any decoding failure is reported
            errors.append(f"offset {m.offset()}: not a CloudEvent: {e}")
            continue
        ce_id = event.get_id()
        if ce_id in seen:
            continue  # at-least-once: a redelivery
        data = event.get_data()
        ce_type = event.get_type()
        candidates = by_name.get(ce_type)
        if not candidates:
            errors.append(f"{ce_id}: type {ce_type} is not in the AsyncAPI document")
            continue
        key = f"{data.get('event_type')}.v{data.get('schema_version')}"
        schema = candidates.get(key)
        if schema is None:
            errors.append(f"{ce_id}: no message {key} for {ce_type}")
            continue
        v = jsonschema.Draft7Validator(
            schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
        )
        problems = [f"{e.message} at {list(e.absolute_path)}" for e in v.iter_errors(data)]
        if problems:
            errors.append(f"{ce_id} ({key}): {problems}")
        if data.get("event_id") != ce_id:
            errors.append(f"{ce_id}: ce_id differs from event_id {data.get('event_id')}")
        if event.get_subject() != data.get("stream_id"):
            errors.append(f"{ce_id}: ce_subject differs from stream_id")
        expected_schema = f"/api/v1/events/schemas/{data.get('event_type')}/{data.get('schema_version')}"
        if not (event.get_dataschema() or "").endswith(expected_schema):
            errors.append(f"{ce_id}: ce_dataschema {event.get_dataschema()}")
        seen[ce_id] = ce_type
        types.add(data.get("event_type"))
    consumer.close()
    print(
        json.dumps(
            {
                "records": records,
                "distinct": len(seen),
                "types": sorted(types),
                "errors": errors[:50],
            }
        )
    )
    return 1 if errors or len(seen) < args.expect else 0


if __name__ == "__main__":
    sys.exit(main())
