//! The AWS adapters against moto_server (S3 and DynamoDB on a free port):
//! registry publish/list/fetch with tampering refused, trace TTL and time
//! window, a conditional rollout write that loses, user history, the lake.

mod common;

use common::setup;
use shared::adapters::aws::dynamo::{DynamoHistory, DynamoRollout, DynamoTraces};
use shared::adapters::aws::s3::{S3Lake, S3Registry};
use shared::adapters::aws::{block_on, s3_client};
use shared::artifact::{HyperParams, MODEL_FILE};
use shared::data::synthetic::{generate, SyntheticConfig};
use shared::ports::{
    EventLake, ModelStore, RegistryError, RolloutStore, StoreError, TraceStore, UserHistory,
};
use trainer::pipeline::{train_and_publish, TrainOptions};

fn publish(reg: &dyn ModelStore, version: &str) -> Result<(), String> {
    let ds = generate(&SyntheticConfig {
        users: 120,
        items: 80,
        cold_start_users: 2,
        ..Default::default()
    })
    .dataset;
    let hp = HyperParams {
        factors: 4,
        layers: vec![8, 4],
        epochs: 1,
        ..Default::default()
    };
    train_and_publish(
        reg,
        &ds,
        &TrainOptions {
            hp,
            version: Some(version.into()),
            force: true,
            progress: false,
            defaults: None,
        },
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

#[test]
fn s3_registry_publishes_lists_fetches_and_refuses_tampering() {
    let (cfg, n) = setup("reg");
    let cache = tempfile::tempdir().unwrap();
    let reg = S3Registry::new(s3_client(&cfg), &n.bucket, "models/", cache.path());
    assert!(reg.list_versions().unwrap().is_empty());
    publish(&reg, "v1").unwrap();
    publish(&reg, "v2").unwrap();
    assert_eq!(reg.list_versions().unwrap(), vec!["v1", "v2"]);
    let e = publish(&reg, "v1").unwrap_err();
    assert!(e.contains("already exists"), "{e}");
    assert!(matches!(
        reg.read_manifest("nope"),
        Err(RegistryError::NotFound(_))
    ));

    // Fetch downloads, verifies and caches under the version.
    let art = reg.fetch("v1").unwrap();
    assert!(art.dir.starts_with(cache.path()) && art.dir.ends_with("models/v1"));
    assert_eq!(art.manifest.version, "v1");
    assert!(art.dir.join(MODEL_FILE).is_file());
    // A corrupted cache entry is not trusted: it is downloaded again.
    std::fs::write(art.dir.join(MODEL_FILE), b"garbage").unwrap();
    let again = reg.fetch("v1").unwrap();
    assert_ne!(
        std::fs::read(again.dir.join(MODEL_FILE)).unwrap(),
        b"garbage"
    );

    // Someone overwrites v2's model in the bucket: fetch refuses it and caches nothing.
    let (s3, bucket) = (s3_client(&cfg), n.bucket.clone());
    block_on(async move {
        let key = "models/v2/model.onnx";
        let mut bytes = s3
            .get_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .to_vec();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(bytes.into())
            .send()
            .await
            .unwrap();
    });
    let e = reg.fetch("v2").unwrap_err();
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
    assert!(!cache.path().join(&n.bucket).join("models/v2").exists());
}

#[tokio::test]
async fn dynamo_traces_expire_and_are_read_by_time_window() {
    let (cfg, n) = setup("tr");
    let t = DynamoTraces::new(aws_sdk_dynamodb::Client::new(&cfg), &n.traces_table);
    t.ping().await.unwrap();
    let hour = 1_764_360_000_000i64; // 2025-11-28T20:00Z
    let trace = |ts: i64| serde_json::json!({"timestamp": ts, "items": [1, 2, 3]});
    // Two hours, several shards; one trace expires at 1,000 s.
    for (i, ts) in [
        hour - 1,
        hour,
        hour + 10,
        hour + 3_600_000 + 5,
        hour + 7_200_000,
    ]
    .into_iter()
    .enumerate()
    {
        t.put(&format!("req-{i}"), &trace(ts), 5_000).await.unwrap();
    }
    t.put("short", &trace(hour + 20), 1_000).await.unwrap();
    assert_eq!(t.get("req-1", 4_999).await.unwrap(), Some(trace(hour)));
    assert_eq!(t.get("req-1", 5_000).await.unwrap(), None, "expired");
    assert_eq!(t.get("missing", 0).await.unwrap(), None);

    // [hour, hour + 2h): four traces over two hour buckets, oldest first;
    // the one before and the one at the end are outside.
    let w = t.window(hour, hour + 7_200_000, 0).await.unwrap();
    let ts: Vec<i64> = w.iter().map(|v| v["timestamp"].as_i64().unwrap()).collect();
    assert_eq!(ts, vec![hour, hour + 10, hour + 20, hour + 3_600_000 + 5]);
    // At 1,500 s the short-lived one is gone from the window too.
    assert_eq!(
        t.window(hour, hour + 7_200_000, 1_500).await.unwrap().len(),
        3
    );
    assert!(t.window(hour, hour, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_rollout_switches_cannot_both_win() {
    let (cfg, n) = setup("ro");
    let r = DynamoRollout::new(aws_sdk_dynamodb::Client::new(&cfg), &n.rollout_table);
    assert_eq!(r.state().await.unwrap(), None);
    // Two admins read "nothing yet" and switch at the same time.
    let (a, b) = tokio::join!(r.switch(0, "v1", "alice"), r.switch(0, "v2", "bob"));
    let (won, lost) = match (a, b) {
        (Ok(s), Err(e)) | (Err(e), Ok(s)) => (s, e),
        other => panic!("exactly one switch must win: {other:?}"),
    };
    assert!(matches!(lost, StoreError::Conflict { .. }), "{lost}");
    let now = r.state().await.unwrap().unwrap();
    assert_eq!(now, won);
    assert_eq!(now.revision, 1);
    // A writer holding a stale revision loses; the current one wins.
    assert!(matches!(
        r.switch(0, "v3", "late").await,
        Err(StoreError::Conflict { .. })
    ));
    let next = r.switch(1, "v3", "carol").await.unwrap();
    assert_eq!((next.revision, next.served_version.as_str()), (2, "v3"));
    assert_eq!(r.served_version().await.unwrap().as_deref(), Some("v3"));
    // A canary round-trips every field; the change log holds each write,
    // newest first, with the state it replaced.
    let spec = shared::ports::RolloutSpec {
        strategy: shared::domain::strategy::Strategy::Canary,
        primary_version: "v3".into(),
        candidate_version: Some("v4".into()),
        percentage: 12.5,
        experiment_id: Some("exp-1".into()),
        salt: Some("salt-1".into()),
        primary_policy: Some("slots:slots=3".into()),
        candidate_policy: None,
        reason: None,
    };
    let canary = r.set(2, &spec, "dave").await.unwrap();
    let read = r.state().await.unwrap().unwrap();
    assert_eq!(read, canary);
    assert_eq!(
        (
            read.candidate_version.as_deref(),
            read.percentage,
            read.salt.as_deref()
        ),
        (Some("v4"), 12.5, Some("salt-1"))
    );
    let log = r.changes(10).await.unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].state, canary);
    assert_eq!(log[0].previous.as_ref(), Some(&next));
    assert_eq!(log[2].state.revision, 1);
    assert_eq!(r.changes(1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn dynamo_user_history_collects_recent_movies() {
    let (cfg, n) = setup("hi");
    let h = DynamoHistory::new(aws_sdk_dynamodb::Client::new(&cfg), &n.history_table);
    assert!(h.seen(7).await.unwrap().is_empty());
    // More than one BatchWriteItem (25 items) and a repeat.
    let many: Vec<u64> = (100..160).collect();
    h.append(7, &many, 1_000).await.unwrap();
    h.append(7, &[5, 100], 2_000).await.unwrap();
    h.append(8, &[1], 1_000).await.unwrap();
    let seen = h.seen(7).await.unwrap();
    assert_eq!(seen.len(), 61, "60 movies plus movie 5, the repeat once");
    assert_eq!(&seen[..2], &[5, 100], "most recent first");
    assert_eq!(h.seen(8).await.unwrap(), vec![1]);
}

#[tokio::test]
async fn dynamo_trending_adds_counts_atomically_and_sums_a_window_of_hours() {
    use shared::adapters::aws::trending::DynamoTrending;
    use shared::ports::TrendingStore;
    let (cfg, n) = setup("tr");
    let t = std::sync::Arc::new(DynamoTrending::new(
        aws_sdk_dynamodb::Client::new(&cfg),
        &n.trending_table,
    ));
    assert!(t.window(0, 30).await.unwrap().is_empty());
    // Two writers adding to the same cells at once lose nothing (ADD).
    let many: Vec<(i64, u64, u32)> = (0..40).map(|m| (10, m, 1)).collect();
    let (a, b) = (t.clone(), t.clone());
    let (m1, m2) = (many.clone(), many.clone());
    let (r1, r2) = tokio::join!(async move { a.add(&m1, 9_999_999_999).await }, async move {
        b.add(&m2, 9_999_999_999).await
    });
    r1.unwrap();
    r2.unwrap();
    t.add(&[(11, 3, 5), (12, 3, 1), (30, 3, 7)], 9_999_999_999)
        .await
        .unwrap();
    let w = t.window(10, 12).await.unwrap();
    assert_eq!(w.len(), 40);
    assert!(
        w.iter().all(|&(m, c)| c == if m == 3 { 8 } else { 2 }),
        "{w:?}"
    );
    assert_eq!(t.window(11, 11).await.unwrap(), vec![(3, 5)]);
    assert_eq!(t.window(31, 40).await.unwrap(), vec![]);
}

#[tokio::test]
async fn s3_lake_writes_objects_under_its_prefix() {
    let (cfg, n) = setup("lk");
    let lake = S3Lake::new(s3_client(&cfg), &n.bucket, "lake");
    lake.put_object("incoming/source=http/x.jsonl", b"{\"a\":1}\n".to_vec())
        .await
        .unwrap();
    let got = s3_client(&cfg)
        .get_object()
        .bucket(&n.bucket)
        .key("lake/incoming/source=http/x.jsonl")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .to_vec();
    assert_eq!(got, b"{\"a\":1}\n");
    // Listing is relative to the lake's prefix, and reads come back whole.
    assert_eq!(
        lake.list("incoming/").await.unwrap(),
        vec!["incoming/source=http/x.jsonl"]
    );
    assert!(lake.list("events/").await.unwrap().is_empty());
    assert_eq!(
        lake.get_object("incoming/source=http/x.jsonl")
            .await
            .unwrap(),
        got
    );
    assert!(lake.get_object("nope").await.is_err());
    let missing = S3Lake::new(s3_client(&cfg), "no-such-bucket-here", "");
    let e = missing.put_object("k", vec![1]).await.unwrap_err();
    assert!(e.to_string().contains("event_lake"), "{e}");
}

/// The experiment analysis on the AWS adapters: traces from DynamoDB's time
/// index, watches ingested into the S3 lake (DynamoDB ingest state and
/// history), the catalogue from the S3 registry, the promotion written to
/// the DynamoDB rollout item and its change log.
#[test]
fn experiment_job_analyses_and_promotes_on_aws() {
    use shared::adapters::aws::dynamo::DynamoIngestState;
    use shared::canary::job::ExperimentJob;
    use shared::domain::experiment::in_candidate;
    use shared::ingest::{Ingestor, RawRecord, Source};
    use std::sync::Arc;
    let (cfg, n) = setup("ex");
    let cache = tempfile::tempdir().unwrap();
    let reg = Arc::new(S3Registry::new(
        s3_client(&cfg),
        &n.bucket,
        "models/",
        cache.path(),
    ));
    publish(reg.as_ref(), "v1").unwrap();
    publish(reg.as_ref(), "v2").unwrap();
    let movies: Vec<u64> = reg
        .read_manifest("v1")
        .unwrap()
        .items
        .iter()
        .map(|i| i.movie_id)
        .collect();
    let ddb = aws_sdk_dynamodb::Client::new(&cfg);
    let traces = Arc::new(DynamoTraces::new(ddb.clone(), &n.traces_table));
    let rollout = Arc::new(DynamoRollout::new(ddb.clone(), &n.rollout_table));
    let lake = Arc::new(S3Lake::new(s3_client(&cfg), &n.bucket, "lake"));
    let metrics_dir = tempfile::tempdir().unwrap();
    let job = ExperimentJob {
        traces: traces.clone(),
        lake: lake.clone(),
        registry: reg.clone(),
        rollout: rollout.clone(),
        metrics: Arc::new(shared::adapters::local::FileMetrics::new(
            metrics_dir.path().join("m.jsonl"),
        )),
        stage: "test".into(),
        config: shared::canary::CanaryConfig {
            rule: shared::domain::experiment::DecisionRule {
                min_per_arm: 50,
                ..Default::default()
            },
            min_guardrail_requests: 50,
            thresholds: shared::audit::Thresholds {
                min_catalog_coverage: 0.0,
                max_gini_exposed: 1.0,
                max_top_10_pct_share: 1.0,
                min_tail_share: 0.0,
            },
            ..Default::default()
        },
        window_minutes: 60,
        catalog: None,
    };
    block_on(async move {
        let spec = shared::ports::RolloutSpec {
            strategy: shared::domain::strategy::Strategy::AbTest,
            primary_version: "v1".into(),
            candidate_version: Some("v2".into()),
            percentage: 50.0,
            experiment_id: Some("exp-aws".into()),
            salt: Some("salt-aws".into()),
            primary_policy: None,
            candidate_policy: None,
            reason: None,
        };
        let start = rollout.set(0, &spec, "test").await.unwrap().updated_at;
        // Lists from the experiment's start, one a second; analysed 10 minutes in.
        let now = start + 10 * 60_000;
        let (mut watches, mut arms) = (Vec::new(), [0u64; 2]);
        for u in 1..=300u64 {
            let cand = in_candidate("salt-aws", u, 50.0);
            arms[cand as usize] += 1;
            let ts = start + u as i64 * 1000;
            let items: Vec<u64> = (0..5)
                .map(|j| movies[(u as usize + j) % movies.len()])
                .collect();
            let t = serde_json::json!({
                "request_id": format!("r{u}"), "timestamp": ts, "user_id": u, "items": items,
                "arm": if cand { "candidate" } else { "primary" },
                "model_version": if cand { "v2" } else { "v1" },
                "experiment_id": "exp-aws", "status": 200, "latency_ms": 1.0 + (u % 7) as f64,
            });
            traces
                .put(&format!("r{u}"), &t, now / 1000 + 3600)
                .await
                .unwrap();
            assert!(ts + 60_000 < now);
            if cand || u % 4 == 0 {
                let w = serde_json::json!({"type": "watch", "user_id": u, "movie_id": items[1], "ts": ts + 60_000});
                watches.push(RawRecord::new(
                    w.to_string().into_bytes(),
                    Source::Http {
                        index: 0,
                        caller: "test".into(),
                    },
                    None,
                ));
            }
        }
        let ingest = Ingestor::new(
            lake.clone(),
            Arc::new(DynamoIngestState::new(ddb.clone(), &n.ingest_table)),
            Arc::new(DynamoHistory::new(ddb.clone(), &n.history_table)),
        );
        let r = ingest.ingest(&watches, now).await.unwrap();
        assert_eq!(r.accepted, watches.len());

        let report = job.analyze(now + 1, 60).await.unwrap();
        let (p, c) = (&report.arms["primary"], &report.arms["candidate"]);
        assert_eq!((p.requests, c.requests), (arms[0], arms[1]));
        assert_eq!(c.conversions, arms[1]);
        assert!(p.conversions < p.requests / 3, "{p:?}");
        assert_eq!(
            report.action,
            shared::canary::Action::Promote,
            "{}",
            report.rationale
        );
        assert_eq!(report.started_at, Some(start));
        // Only the window's traces: [now − 7 min, now) holds users 180..=300.
        let short = job.analyze(now, 7).await.unwrap();
        assert_eq!(
            short.arms["primary"].requests + short.arms["candidate"].requests,
            121
        );

        let out = job
            .run(now + 1, 60, false, "canary-automation")
            .await
            .unwrap();
        let applied = out.applied.unwrap();
        assert_eq!(
            (applied.strategy.as_str(), applied.served_version.as_str()),
            ("fixed", "v2")
        );
        let log = rollout.changes(1).await.unwrap();
        assert_eq!(log[0].state.updated_by, "canary-automation");
        assert!(log[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("canary promote"));
    });
}
