//! Ingest against moto_server: the DynamoDB ingest state (idempotency keys
//! with expiry, rating windows with conditional writes), the S3 lake read
//! back, the whole pipeline on S3 + DynamoDB with redelivery, and
//! `movie-recs train --data s3://…` training from the lake ingest wrote.

mod common;

use common::{aws_env, setup, shared_moto, workspace_bin};
use shared::adapters::aws::dynamo::{DynamoHistory, DynamoIngestState};
use shared::adapters::aws::s3::S3Lake;
use shared::adapters::aws::{block_on, s3_client};
use shared::data::synthetic::{generate, SyntheticConfig};
use shared::events::{Event, EventType, Watch};
use shared::ingest::{lake, Ingestor, RawRecord, Source};
use shared::ports::{EventLake, IngestState, RateWindow, StoreError, UserHistory};
use std::process::Command;
use std::sync::Arc;

#[tokio::test]
async fn dynamo_ingest_state_keys_expire_and_windows_are_guarded() {
    let (cfg, n) = setup("is");
    let st = DynamoIngestState::new(aws_sdk_dynamodb::Client::new(&cfg), &n.ingest_table);
    // More keys than one BatchGetItem (100) or BatchWriteItem (25) takes.
    let keys: Vec<String> = (0..230).map(|i| format!("kafka:t/0/{i}")).collect();
    assert!(st.seen_keys(&keys, 1_000).await.unwrap().is_empty());
    st.remember_keys(&keys[..150], 2_000).await.unwrap();
    st.remember_keys(&keys[150..160], 500).await.unwrap();
    let seen = st.seen_keys(&keys, 1_000).await.unwrap();
    assert_eq!(seen.len(), 150, "the 10 expired at 500 do not count");
    assert!(seen.contains("kafka:t/0/0") && !seen.contains("kafka:t/0/155"));
    assert!(st.seen_keys(&keys, 2_000).await.unwrap().is_empty());

    assert_eq!(st.rate_window(9).await.unwrap(), RateWindow::default());
    let w = RateWindow {
        entries: vec![(5, "a".into())],
        arrivals: vec![(7, "a".into())],
        revision: 0,
    };
    st.save_rate_window(9, &w).await.unwrap();
    // A second writer that read revision 0 loses.
    let e = st.save_rate_window(9, &w).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    let got = st.rate_window(9).await.unwrap();
    assert_eq!((got.entries.clone(), got.revision), (w.entries.clone(), 1));
    assert_eq!(
        got.arrivals, w.arrivals,
        "the arrival-time window is stored too"
    );
    let next = RateWindow {
        entries: vec![(5, "a".into()), (6, "b".into())],
        arrivals: Vec::new(),
        revision: 1,
    };
    st.save_rate_window(9, &next).await.unwrap();
    assert_eq!(st.rate_window(9).await.unwrap().revision, 2);
}

fn watch_records(n_users: usize, n_items: usize) -> Vec<RawRecord> {
    let ds = generate(&SyntheticConfig {
        users: n_users,
        items: n_items,
        cold_start_users: 0,
        ..Default::default()
    })
    .dataset;
    ds.train
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let e = Event::Watch(Watch {
                user_id: ds.user_ids[x.user as usize],
                movie_id: ds.items[x.item as usize].movie_id,
                minute: None,
                ts_ms: 1_790_000_000_000 + i as i64 * 1000,
            });
            RawRecord::new(
                e.to_json(None).to_string().into_bytes(),
                Source::Kafka {
                    topic: "movies.watch".into(),
                    partition: (i % 3) as i64,
                    offset: i as i64,
                },
                Some(EventType::Watch),
            )
        })
        .collect()
}

#[test]
fn the_pipeline_on_s3_and_dynamodb_feeds_training_from_the_lake() {
    let (cfg, n) = setup("pl");
    let records = watch_records(150, 100);
    let total = records.len();
    let ddb = aws_sdk_dynamodb::Client::new(&cfg);
    let s3 = s3_client(&cfg);
    let (bucket, hist_table, ingest_table) = (
        n.bucket.clone(),
        n.history_table.clone(),
        n.ingest_table.clone(),
    );
    let first_user = records[0].clone();
    block_on(async move {
        let lake: Arc<dyn EventLake> = Arc::new(S3Lake::new(s3, &bucket, "lake"));
        let history = Arc::new(DynamoHistory::new(ddb.clone(), &hist_table));
        let ingestor = Ingestor::new(
            lake.clone(),
            Arc::new(DynamoIngestState::new(ddb, &ingest_table)),
            history.clone(),
        );
        // A day after the first watch: within the age bound of live sources.
        let now = 1_790_000_000_000 + 86_400_000;
        let mut accepted = 0;
        for chunk in records.chunks(2000) {
            let r = ingestor.ingest(chunk, now).await.unwrap();
            assert_eq!(r.rejected, 0);
            accepted += r.accepted;
        }
        assert_eq!(accepted, total);
        // A redelivered chunk writes nothing.
        let before = lake.list("").await.unwrap();
        let again = ingestor.ingest(&records[..500], now).await.unwrap();
        assert_eq!(again.duplicates, 500);
        assert_eq!(lake.list("").await.unwrap(), before);
        // Read back through S3: every event once, equal to what was sent.
        let back = lake::read(lake.as_ref(), "events", EventType::Watch)
            .await
            .unwrap();
        assert_eq!(back.len(), total);
        let sent = shared::events::parse_json(&first_user.bytes, Some(EventType::Watch), now)
            .unwrap()
            .event;
        let got = back
            .iter()
            .find(|r| r.event_key == first_user.source.label())
            .unwrap();
        assert_eq!(got.event, sent);
        assert!(history
            .seen(sent.user_id())
            .await
            .unwrap()
            .contains(&sent.movie_id().unwrap()));
    });

    // Train from the S3 lake with the CLI, as a user would.
    let out = Command::new(workspace_bin("movie-recs"))
        .args([
            "train",
            "--data",
            &format!("s3://{}/lake", n.bucket),
            "--registry",
            &format!("s3://{}/models", n.bucket),
            "--version",
            "from-lake",
            "--epochs",
            "1",
            "--quiet",
            "--force",
        ])
        .envs(
            aws_env(&shared_moto().url())
                .iter()
                .map(|(k, v)| (*k, v.as_str())),
        )
        .env(
            "MOVIE_RECS_MODEL_CACHE",
            tempfile::tempdir().unwrap().path(),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from-lake");
    assert!(stderr.contains("(Lake)"), "{stderr}");
    assert!(
        stderr.contains(&format!("{total} interactions")),
        "{stderr}"
    );
}
