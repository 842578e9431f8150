//! `POST /events` through the real router and ingest pipeline: per-record
//! results, retries answered as duplicates, limits (413), a body that is not
//! an array (400), and a lake failure (503, nothing acknowledged).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use shared::adapters::local::{FolderLake, SqliteStore};
use shared::http::{router, ApiConfig, AppState};
use shared::ingest::Ingestor;
use shared::ports::{EventLake, UserHistory};
use std::sync::Arc;
use tower::ServiceExt;

fn state(lake_root: &std::path::Path) -> (Arc<AppState>, Arc<SqliteStore>) {
    let db = Arc::new(SqliteStore::in_memory().unwrap());
    let ingestor = Ingestor::new(Arc::new(FolderLake::new(lake_root)), db.clone(), db.clone());
    let st = AppState::new(
        None,
        db.clone(),
        db.clone(),
        db.clone(),
        ApiConfig::default(),
    )
    .with_ingestor(Arc::new(ingestor));
    (Arc::new(st), db)
}

async fn post(st: &Arc<AppState>, body: Vec<u8>) -> (StatusCode, Value) {
    let resp = router(st.clone())
        .oneshot(
            Request::post("/events")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn a_batch_gets_a_result_per_record_and_a_retry_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let (st, db) = state(dir.path());
    let t = now();
    let batch = json!([
        {"type": "watch", "user_id": 4, "movie_id": 40, "ts": t},
        {"type": "rate", "user_id": 4, "movie_id": 41, "rating": 4.5, "event_id": "r-41", "ts": t},
        {"type": "rate", "user_id": 4, "movie_id": 42, "rating": 7, "ts": t},
        {"type": "reco_response", "request_id": "q-1", "user_id": 4, "movie_ids": [1, 2], "model_version": "a", "ts": t},
        "not an object"
    ]);
    let (code, body) = post(&st, batch.to_string().into_bytes()).await;
    assert_eq!(code, StatusCode::MULTI_STATUS, "{body}");
    assert_eq!(
        (&body["accepted"], &body["rejected"]),
        (&json!(3), &json!(2))
    );
    let r = &body["results"];
    // Namespaced by source and caller: no one else can pre-empt this id.
    assert_eq!(r[1]["key"], "http:local:event:r-41");
    assert_eq!(r[2]["field"], "rating");
    assert_eq!(r[4]["field"], "record");
    assert_eq!(r[3]["type"], "reco_response");
    let mut seen = db.seen(4).await.unwrap();
    seen.sort();
    assert_eq!(seen, vec![40, 41]);
    // The client retries the whole request: nothing is stored twice.
    let lake = FolderLake::new(dir.path());
    let before = lake.list("").await.unwrap();
    let (code, body) = post(&st, batch.to_string().into_bytes()).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["duplicates"], 5);
    assert_eq!(lake.list("").await.unwrap(), before);
}

#[tokio::test]
async fn limits_and_malformed_bodies_are_refused_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (st, _) = state(dir.path());
    let one = json!({"type": "watch", "user_id": 1, "movie_id": 2, "ts": now()});
    let too_many = Value::Array(vec![one.clone(); 501]);
    let (code, body) = post(&st, too_many.to_string().into_bytes()).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"], "too_many_records");
    let (code, _) = post(&st, vec![b' '; 1024 * 1024 + 1]).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    for bad in [&b"{\"type\": \"watch\"}"[..], b"[1, 2", b""] {
        let (code, body) = post(&st, bad.to_vec()).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_body");
    }
    assert!(FolderLake::new(dir.path())
        .list("")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_lake_that_cannot_be_written_is_a_503_and_nothing_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the lake folder should be: every write fails.
    let blocked = dir.path().join("lake");
    std::fs::write(&blocked, b"").unwrap();
    let (st, db) = state(&blocked);
    let batch = json!([{"type": "watch", "user_id": 1, "movie_id": 2, "ts": now()}]);
    let (code, body) = post(&st, batch.to_string().into_bytes()).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("retry"));
    assert!(db.seen(1).await.unwrap().is_empty());
}
