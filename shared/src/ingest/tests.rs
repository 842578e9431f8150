//! The ingest pipeline's tests: every step, retries and failures, on local stores.

use super::*;
use crate::adapters::local::{FolderLake, SqliteStore};
use crate::events::parquet::decode;
use crate::events::EventType;
use crate::events::{Rate, Watch};
use base64::Engine;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

const NOW: i64 = 1_764_000_000_000;

/// A lake that fails its first `fail` writes.
struct Flaky {
    inner: FolderLake,
    fail: AtomicUsize,
}

#[async_trait::async_trait]
impl EventLake for Flaky {
    async fn put_object(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::unavailable("event_lake", "injected failure"));
        }
        self.inner.put_object(key, bytes).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn get_object(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.inner.get_object(key).await
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    db: Arc<SqliteStore>,
    ingestor: Ingestor,
}

fn fixture(fail_writes: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(SqliteStore::in_memory().unwrap());
    let lake = Arc::new(Flaky {
        inner: FolderLake::new(dir.path()),
        fail: AtomicUsize::new(fail_writes),
    });
    let ingestor = Ingestor::new(lake, db.clone(), db.clone());
    Fixture { dir, db, ingestor }
}

fn http(i: usize, v: Value) -> RawRecord {
    RawRecord::new(
        v.to_string().into_bytes(),
        Source::Http {
            index: i,
            caller: "test".into(),
        },
        None,
    )
}

fn kafka(topic: &str, offset: i64, bytes: Vec<u8>, hint: Option<EventType>) -> RawRecord {
    RawRecord::new(
        bytes,
        Source::Kafka {
            topic: topic.into(),
            partition: 0,
            offset,
        },
        hint,
    )
}

fn rate(user: u64, movie: u64, ts: i64) -> Value {
    json!({"type": "rate", "user_id": user, "movie_id": movie, "rating": 4, "ts": ts})
}

async fn keys(f: &Fixture, prefix: &str) -> Vec<String> {
    FolderLake::new(f.dir.path()).list(prefix).await.unwrap()
}

#[tokio::test]
async fn a_mixed_batch_lands_each_record_where_it_belongs() {
    let f = fixture(0);
    let avro_rate = avro::encode_confluent(
        &Event::Rate(Rate {
            user_id: 5,
            movie_id: 50,
            rating: 2.5,
            ts_ms: NOW - 1000,
        }),
        None,
        3,
    );
    let batch = vec![
        kafka("m.watch", 1, br#"{"user_id": 1, "movie_id": 10, "ts": 1763999000000}"#.to_vec(), Some(EventType::Watch)),
        kafka("m.rate", 2, avro_rate, Some(EventType::Rate)),
        kafka("m.rate", 3, br#"{"user_id": "INVALID", "movie_id": 3, "rating": 5, "ts": 1763999000000}"#.to_vec(), Some(EventType::Rate)),
        kafka("m.rate", 4, b"{not json".to_vec(), Some(EventType::Rate)),
        kafka("m.reco_responses", 5, br#"{"request_id": "r1", "user_id": 1, "movie_ids": [10, 11], "model_version": "v1", "ts": 1763999000000}"#.to_vec(), Some(EventType::RecoResponse)),
        kafka("m.rate", 6, vec![0, 0, 0, 0, 3, 0xff], Some(EventType::Rate)),
    ];
    let r = f.ingestor.ingest(&batch, NOW).await.unwrap();
    assert_eq!(
        (r.accepted, r.rejected, r.quarantined, r.duplicates),
        (3, 3, 0, 0)
    );
    assert_eq!(r.rejected_by_field.get("user_id"), Some(&1));
    assert_eq!(r.rejected_by_field.get("json"), Some(&1));
    assert_eq!(r.rejected_by_field.get("avro"), Some(&1));
    let statuses: Vec<_> = r.results.iter().map(|x| x.outcome.as_str()).collect();
    assert_eq!(
        statuses,
        ["accepted", "accepted", "rejected", "rejected", "accepted", "rejected"]
    );
    // Parquet by type and event hour, dead letters by source and receive hour.
    let ev = keys(&f, "events/").await;
    assert_eq!(ev.len(), 3, "{ev:?}");
    assert!(ev
        .iter()
        .any(|k| k.starts_with("events/type=watch/dt=2025-11-24/hour=15/")));
    assert!(ev
        .iter()
        .any(|k| k.starts_with("events/type=reco_response/")));
    let rates = decode(
        EventType::Rate,
        std::fs::read(
            f.dir
                .path()
                .join(ev.iter().find(|k| k.contains("type=rate")).unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(rates.len(), 1);
    assert_eq!(rates[0].source, "kafka:m.rate/0/2");
    assert_eq!(rates[0].event_key, "kafka:m.rate/0/2");
    let dead = keys(&f, "rejected/").await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].starts_with("rejected/source=kafka/dt=2025-11-24/hour=16/"));
    let lines: Vec<Value> = std::fs::read_to_string(f.dir.path().join(&dead[0]))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0]["source"],
        json!({"kind": "kafka", "topic": "m.rate", "partition": 0, "offset": 3})
    );
    assert_eq!(lines[0]["reason"]["field"], "user_id");
    assert!(lines[0]["raw_text"].as_str().unwrap().contains("INVALID"));
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        b64.decode(lines[2]["raw_base64"].as_str().unwrap())
            .unwrap(),
        vec![0, 0, 0, 0, 3, 0xff]
    );
    assert_eq!(lines[2]["schema_id"], 3);
    assert!(lines[2].get("raw_text").is_none() || lines[2]["raw_text"].is_string());
    // Accepted watches and ratings reach the user history; rejected ones do not.
    assert_eq!(f.db.seen(1).await.unwrap(), vec![10]);
    assert_eq!(f.db.seen(5).await.unwrap(), vec![50]);
    // The metrics of the call.
    let m = r.metrics(NOW);
    let get = |n: &str| {
        m.iter()
            .find(|d| d.name == n && d.dimensions.is_empty())
            .unwrap()
            .value
    };
    assert_eq!((get("Accepted"), get("Rejected")), (3.0, 3.0));
    assert_eq!(get("LakeBytes"), r.lake_bytes() as f64);
    assert!(r.lake_bytes() > 0);
}

#[tokio::test]
async fn redelivery_is_written_once() {
    let f = fixture(0);
    let batch: Vec<_> = (0..4)
        .map(|i| {
            kafka(
                "m.rate",
                i,
                rate(1, i as u64, NOW - 10_000).to_string().into_bytes(),
                None,
            )
        })
        .collect();
    let first = f.ingestor.ingest(&batch, NOW).await.unwrap();
    assert_eq!(first.accepted, 4);
    let objects = keys(&f, "").await;
    // Kafka redelivers the same offsets: all duplicates, nothing new written.
    let again = f.ingestor.ingest(&batch, NOW + 5).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 4));
    assert_eq!(keys(&f, "").await, objects);
    // Over HTTP, the same event id twice in a batch and again later.
    let with_id = |i| {
        let mut v = rate(2, 9, NOW);
        v["event_id"] = "e-9".into();
        http(i, v)
    };
    let r = f
        .ingestor
        .ingest(&[with_id(0), with_id(1)], NOW)
        .await
        .unwrap();
    assert_eq!((r.accepted, r.duplicates), (1, 1));
    let r = f.ingestor.ingest(&[with_id(0)], NOW).await.unwrap();
    assert_eq!(r.duplicates, 1);
    // Without an id, identical bytes are one event; a different rating is another.
    let r = f
        .ingestor
        .ingest(
            &[
                http(0, rate(3, 1, NOW)),
                http(1, rate(3, 1, NOW)),
                http(2, rate(3, 2, NOW)),
            ],
            NOW,
        )
        .await
        .unwrap();
    assert_eq!((r.accepted, r.duplicates), (2, 1));
    // Rejected records are dead-lettered once too.
    let bad = kafka("m.rate", 99, b"oops".to_vec(), None);
    assert_eq!(
        f.ingestor
            .ingest(std::slice::from_ref(&bad), NOW)
            .await
            .unwrap()
            .rejected,
        1
    );
    assert_eq!(f.ingestor.ingest(&[bad], NOW).await.unwrap().duplicates, 1);
    assert_eq!(keys(&f, "rejected/").await.len(), 1);
    // Keys expire: after the TTL the same coordinates are new again.
    let later = NOW + (f.ingestor.config.dedup_ttl_secs + 1) * 1000;
    let r = f.ingestor.ingest(&batch[..1], later).await.unwrap();
    assert_eq!(r.duplicates, 0);
}

#[tokio::test]
async fn a_failed_lake_write_fails_the_batch_and_the_retry_doubles_nothing() {
    let f = fixture(1);
    let batch: Vec<_> = (0..30)
        .map(|i| {
            kafka(
                "m.rate",
                i,
                rate(7, i as u64, NOW - 60_000 + i).to_string().into_bytes(),
                None,
            )
        })
        .chain([kafka("m.rate", 30, b"bad".to_vec(), None)])
        .collect();
    let err = f.ingestor.ingest(&batch, NOW).await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    // Nothing was remembered, so the retry is not taken for a duplicate,
    // and the velocity window makes the same decisions.
    let r = f.ingestor.ingest(&batch, NOW + 1000).await.unwrap();
    assert_eq!(
        (r.accepted, r.quarantined, r.rejected, r.duplicates),
        (20, 10, 1, 0)
    );
    let ev = keys(&f, "events/").await;
    assert_eq!(ev.len(), 1);
    let stored = decode(
        EventType::Rate,
        std::fs::read(f.dir.path().join(&ev[0])).unwrap(),
    )
    .unwrap();
    assert_eq!(stored.len(), 20);
    assert_eq!(f.db.seen(7).await.unwrap().len(), 20);
}

#[tokio::test]
async fn no_source_can_pre_empt_another_ones_event_ids() {
    let f = fixture(0);
    let with_id =
        json!({"type": "watch", "user_id": 1, "movie_id": 2, "ts": NOW, "event_id": "k-1"});
    // An HTTP caller posts the id first ...
    let r = f
        .ingestor
        .ingest(&[http(0, with_id.clone())], NOW)
        .await
        .unwrap();
    assert_eq!(r.accepted, 1);
    // ... the genuine Kafka record with that id is still taken,
    let k = kafka("movies.watch", 7, with_id.to_string().into_bytes(), None);
    let r = f
        .ingestor
        .ingest(std::slice::from_ref(&k), NOW)
        .await
        .unwrap();
    assert_eq!((r.accepted, r.duplicates), (1, 0));
    assert_eq!(r.results[0].key, "kafka:event:k-1");
    // and another HTTP caller's id lives in its own namespace; a retry
    // from the same source is still a duplicate.
    let other = RawRecord {
        source: Source::Http {
            index: 0,
            caller: "arn:aws:iam::1:role/other".into(),
        },
        ..http(0, with_id.clone())
    };
    assert_eq!(f.ingestor.ingest(&[other], NOW).await.unwrap().accepted, 1);
    assert_eq!(f.ingestor.ingest(&[k], NOW).await.unwrap().duplicates, 1);
    assert_eq!(
        f.ingestor
            .ingest(&[http(0, with_id)], NOW)
            .await
            .unwrap()
            .duplicates,
        1
    );
}

#[tokio::test]
async fn live_sources_are_held_to_age_spread_and_fan_out_bounds() {
    let f = fixture(0);
    let day = 86_400_000;
    let watch =
        |user: u64, ts: i64| json!({"type": "watch", "user_id": user, "movie_id": 2, "ts": ts});
    // At the age bound: taken; a millisecond older: refused, naming ts.
    let r = f
        .ingestor
        .ingest(
            &[
                http(0, watch(1, NOW - 7 * day)),
                http(1, watch(1, NOW - 7 * day - 1)),
            ],
            NOW,
        )
        .await
        .unwrap();
    assert_eq!((r.accepted, r.rejected), (1, 1));
    assert!(matches!(&r.results[1].outcome, Outcome::Rejected(j) if j.field == "ts"));
    // Kafka: the same age bound; a file may backfill anything.
    let old = watch(2, NOW - 30 * day).to_string().into_bytes();
    let r = f
        .ingestor
        .ingest(&[kafka("movies.watch", 1, old.clone(), None)], NOW)
        .await
        .unwrap();
    assert_eq!(r.rejected, 1);
    let file = RawRecord::new(
        old,
        Source::File {
            path: "f".into(),
            line: 1,
        },
        None,
    );
    assert_eq!(f.ingestor.ingest(&[file], NOW).await.unwrap().accepted, 1);
    // One request spans at most 6 hours before its newest event.
    let h = 3_600_000;
    let r = f
        .ingestor
        .ingest(
            &[
                http(0, watch(3, NOW)),
                http(1, watch(3, NOW - 6 * h)),
                http(2, watch(3, NOW - 6 * h - 1)),
            ],
            NOW,
        )
        .await
        .unwrap();
    assert_eq!((r.accepted, r.rejected), (2, 1));
    // Ratings for at most 100 users per request.
    let many: Vec<_> = (0..101)
        .map(|u| http(u, rate(1000 + u as u64, 1, NOW)))
        .collect();
    let r = f.ingestor.ingest(&many, NOW).await.unwrap();
    assert_eq!((r.accepted, r.rejected), (100, 1));
    assert!(matches!(&r.results[100].outcome, Outcome::Rejected(j) if j.field == "user_id"));
}

#[tokio::test]
async fn velocity_quarantines_the_excess_and_keeps_it_out_of_history() {
    let f = fixture(0);
    let mut cfg = IngestConfig::default();
    cfg.velocity.limit = 3;
    let ingestor =
        Ingestor::new(f.ingestor.lake.clone(), f.db.clone(), f.db.clone()).with_config(cfg);
    // Across two calls: 2 + 3 ratings by user 9 within an hour, one by user 8.
    let first: Vec<_> = (0..2)
        .map(|i| http(i, rate(9, 100 + i as u64, NOW - 50_000 + i as i64)))
        .collect();
    assert_eq!(ingestor.ingest(&first, NOW).await.unwrap().accepted, 2);
    let second: Vec<_> = (2..5)
        .map(|i| http(i, rate(9, 100 + i as u64, NOW - 50_000 + i as i64)))
        .chain([http(9, rate(8, 1, NOW))])
        .collect();
    let r = ingestor.ingest(&second, NOW).await.unwrap();
    assert_eq!((r.accepted, r.quarantined), (2, 2));
    assert_eq!(r.flagged_users.iter().copied().collect::<Vec<_>>(), vec![9]);
    let q = &r.results[1];
    assert!(matches!(&q.outcome, Outcome::Quarantined(why) if why.contains("velocity")));
    // Quarantined ratings are kept, flagged, and excluded from history.
    let qk = keys(&f, "quarantine/type=rate/").await;
    assert_eq!(qk.len(), 1);
    let held = decode(
        EventType::Rate,
        std::fs::read(f.dir.path().join(&qk[0])).unwrap(),
    )
    .unwrap();
    assert_eq!(held.len(), 2);
    assert!(held
        .iter()
        .all(|h| h.reason.as_deref().is_some_and(|r| r.contains("velocity"))));
    assert_eq!(f.db.seen(9).await.unwrap().len(), 3);
    // Watches are not rate-limited.
    let watches: Vec<_> = (0..10)
        .map(|i| {
            http(
                i,
                json!({"type": "watch", "user_id": 9, "movie_id": i, "ts": NOW}),
            )
        })
        .collect();
    assert_eq!(ingestor.ingest(&watches, NOW).await.unwrap().accepted, 10);
}

#[tokio::test]
async fn the_lake_reads_back_what_was_written_and_trains() {
    let f = fixture(0);
    let events: Vec<Event> = (0..40u64)
        .map(|i| {
            if i % 2 == 0 {
                Event::Watch(Watch {
                    user_id: i % 5,
                    movie_id: i,
                    minute: Some(i as u32),
                    ts_ms: NOW - 3_600_000 * (i as i64 % 3),
                })
            } else {
                Event::Rate(Rate {
                    user_id: i % 5,
                    movie_id: i,
                    rating: 3.5,
                    ts_ms: NOW - 1000,
                })
            }
        })
        .collect();
    let batch: Vec<_> = events
        .iter()
        .enumerate()
        .map(|(i, e)| http(i, e.to_json(Some(&format!("id-{i}")))))
        .collect();
    assert_eq!(f.ingestor.ingest(&batch, NOW).await.unwrap().accepted, 40);
    let mut back = Vec::new();
    for t in [EventType::Watch, EventType::Rate] {
        back.extend(
            lake::read(f.ingestor.lake.as_ref(), "events", t)
                .await
                .unwrap(),
        );
    }
    assert_eq!(back.len(), 40);
    for r in &back {
        let i: usize = r.event_id.as_ref().unwrap()[3..].parse().unwrap();
        assert_eq!(r.event, events[i]);
        assert_eq!(r.event_key, format!("http:test:event:id-{i}"));
    }
    let ds = crate::data::load_dir(f.dir.path()).unwrap();
    assert_eq!(ds.format, crate::domain::DataFormat::Lake);
    assert_eq!(ds.train.len(), 40);
    assert_eq!(ds.user_ids, vec![0, 1, 2, 3, 4]);
    let via_port = lake::dataset(f.ingestor.lake.as_ref(), "lake".into())
        .await
        .unwrap();
    assert_eq!(via_port.train.len(), 40);
    assert_eq!(via_port.snapshot_id, ds.snapshot_id);
    // Users the audit quarantined leave training, folder and port alike.
    let flagged = events.iter().filter(|e| e.user_id() == 3).count();
    f.ingestor
        .lake
        .put_object(
            "quarantine/users/dt=2025-11-24/audit-x.jsonl",
            b"{\"user_id\": 3, \"rules\": [\"robust\"]}\n".to_vec(),
        )
        .await
        .unwrap();
    let ds2 = crate::data::load_dir(f.dir.path()).unwrap();
    assert_eq!(ds2.train.len(), 40 - flagged);
    assert_eq!(ds2.user_ids, vec![0, 1, 2, 4]);
    assert_ne!(ds2.snapshot_id, ds.snapshot_id);
    // Recorded, for the manifest.
    assert!(ds.excluded_users.is_empty());
    assert_eq!(ds2.excluded_users, vec![3]);
    let via_port = lake::dataset(f.ingestor.lake.as_ref(), "lake".into())
        .await
        .unwrap();
    assert_eq!(via_port.snapshot_id, ds2.snapshot_id);
}

#[tokio::test]
async fn the_committed_kafka_fixtures_ingest_as_documented() {
    let f = fixture(0);
    let topics = kafka::TopicMap::default();
    let msk: aws_lambda_events::kafka::KafkaEvent =
        serde_json::from_str(include_str!("../../../events/ingest-msk.json")).unwrap();
    let recs = kafka::records(&msk, &topics);
    assert_eq!(recs.len(), 6);
    // The fixture's event times are 2026-11-28T20:00Z; ingest "now" just after.
    let now = 1_795_896_000_000 + 60_000;
    let r = f.ingestor.ingest(&recs, now).await.unwrap();
    assert_eq!((r.accepted, r.rejected), (4, 2));
    let rejected: Vec<_> = r
        .results
        .iter()
        .filter_map(|x| match &x.outcome {
            Outcome::Rejected(why) => Some((x.key.as_str(), why.field.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        rejected,
        [
            ("kafka:movies.rate/3/8", "rating"),
            ("kafka:movies.watch/0/43", "user_id")
        ]
    );
    // The Avro-encoded rating arrived intact.
    let rates = lake::read(f.ingestor.lake.as_ref(), "events", EventType::Rate)
        .await
        .unwrap();
    assert_eq!(rates.len(), 1);
    assert!(matches!(&rates[0].event, Event::Rate(x) if x.rating == 4.5 && x.movie_id == 50));
    let smk: aws_lambda_events::kafka::KafkaEvent =
        serde_json::from_str(include_str!("../../../events/ingest-self-managed.json")).unwrap();
    let r = f
        .ingestor
        .ingest(&kafka::records(&smk, &topics), now)
        .await
        .unwrap();
    assert_eq!(r.accepted, 1);
}
