//! The in-process router tests' shared setup: state on one SQLite store
//! (traces, history, rollout, trending) with the real ingest pipeline into a
//! folder lake, and requests through the real router.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use shared::adapters::local::{FolderLake, SqliteStore};
use shared::http::{router, ApiConfig, ApiStores, AppState};
use shared::ingest::Ingestor;
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

/// State whose every store is `db` and whose `POST /events` writes to a
/// lake in `lake` (counting trending); add a registry or experiments with
/// the builder methods, then wrap it in an `Arc`.
pub fn state_on(db: Arc<SqliteStore>, lake: &Path, config: ApiConfig) -> AppState {
    let ingestor = Ingestor::new(Arc::new(FolderLake::new(lake)), db.clone(), db.clone())
        .with_trending(db.clone());
    AppState::with_stores(
        ApiStores {
            traces: Some(db.clone()),
            history: Some(db.clone()),
            rollout: Some(db.clone()),
            trending: Some(db),
            exposure: None,
            request_metrics: None,
        },
        config,
    )
    .with_ingestor(Arc::new(ingestor))
}

/// [`state_on`] an in-memory store.
pub fn state_in_memory(lake: &Path, config: ApiConfig) -> AppState {
    state_on(Arc::new(SqliteStore::in_memory().unwrap()), lake, config)
}

/// The status and JSON body (null when not JSON) of `req`.
pub async fn call(st: &Arc<AppState>, req: Request<Body>) -> (StatusCode, Value) {
    let resp = router(st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `GET uri`.
pub async fn get(st: &Arc<AppState>, uri: &str) -> (StatusCode, Value) {
    call(st, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// Posts watches of `movies` by `user`, a second apart ending now (202).
pub async fn watch(st: &Arc<AppState>, user: u64, movies: &[u64]) {
    let now = chrono::Utc::now().timestamp_millis();
    let events: Vec<Value> = movies
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"type": "watch", "user_id": user, "movie_id": m, "ts": now - 1000 + i as i64}))
        .collect();
    let req = Request::post("/events")
        .header("content-type", "application/json")
        .body(Body::from(Value::Array(events).to_string()))
        .unwrap();
    let (code, v) = call(st, req).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{v}");
}
