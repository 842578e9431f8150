//! The HTTP API through the real router, on a real (small) model: status codes,
//! JSON shape, seen-movie exclusion, popularity fallback, parameter errors,
//! X-Request-ID, traces and their expiry, health, tamper refusal, metrics.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use shared::adapters::local::{FolderRegistry, SqliteStore};
use shared::artifact::{HyperParams, MODEL_FILE};
use shared::data::synthetic::{generate, SyntheticConfig};
use shared::http::{router, sync_model, ApiConfig, AppState, SyncOutcome};
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;
use trainer::pipeline::{train_and_publish, TrainOptions};

struct Fixture {
    _dir: tempfile::TempDir,
    reg: Arc<FolderRegistry>,
    ds: shared::domain::Dataset,
}

fn world() -> shared::domain::Dataset {
    generate(&SyntheticConfig {
        users: 300,
        items: 200,
        cold_start_users: 3,
        ..Default::default()
    })
    .dataset
}

fn publish(reg: &FolderRegistry, ds: &shared::domain::Dataset, version: &str) {
    let hp = HyperParams {
        factors: 8,
        layers: vec![16, 8],
        epochs: 2,
        ..Default::default()
    };
    train_and_publish(
        reg,
        ds,
        &TrainOptions {
            hp,
            version: Some(version.into()),
            force: true,
            progress: false,
            defaults: None,
        },
    )
    .unwrap();
}

/// One registry with version `a`, trained once for all tests.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let reg = Arc::new(FolderRegistry::new(dir.path().join("registry")));
        let ds = world();
        publish(&reg, &ds, "a");
        Fixture { _dir: dir, reg, ds }
    })
}

async fn state(with_model: bool, ttl: i64) -> Arc<AppState> {
    let db = Arc::new(SqliteStore::in_memory().unwrap());
    let st = Arc::new(AppState::new(
        None,
        db.clone(),
        db.clone(),
        db,
        ApiConfig {
            function_version: "test".into(),
            trace_ttl_secs: ttl,
            admin_token: Some(ADMIN.into()),
            ..ApiConfig::default()
        },
    ));
    if with_model {
        assert_eq!(
            sync_model(&st, fixture().reg.clone()).await.unwrap(),
            SyncOutcome::Loaded("a".into())
        );
    }
    st
}

const ADMIN: &str = "admin-t";

/// `GET uri` with the admin token (the operators' full view).
async fn get_admin(st: &Arc<AppState>, uri: &str) -> (StatusCode, Value) {
    let req = Request::get(uri).header("authorization", format!("Bearer {ADMIN}"));
    let (status, _, v, _) = send(st, req).await;
    (status, v)
}

async fn get(
    st: &Arc<AppState>,
    uri: &str,
    rid: Option<&str>,
) -> (StatusCode, Option<String>, Value, String) {
    let mut req = Request::get(uri);
    if let Some(r) = rid {
        req = req.header("x-request-id", r);
    }
    send(st, req).await
}

async fn send(
    st: &Arc<AppState>,
    req: axum::http::request::Builder,
) -> (StatusCode, Option<String>, Value, String) {
    let resp = router(st.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let rid = resp
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        rid,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

#[tokio::test]
async fn recommend_shape_and_seen_exclusion() {
    let st = state(true, 3600).await;
    let f = fixture();
    let (code, rid, v, _) = get(&st, "/recommend/1", None).await;
    assert_eq!(code, StatusCode::OK);
    let rid = rid.unwrap();
    assert!(
        uuid::Uuid::parse_str(&rid).is_ok(),
        "generated request id is a UUID: {rid}"
    );
    assert_eq!(v["user_id"], 1);
    assert_eq!(v["model"], "a");
    let items: Vec<u64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(items.len(), 20, "default k");
    let recs = v["recommendations"].as_array().unwrap();
    assert_eq!(recs.len(), 20);
    for (r, id) in recs.iter().zip(&items) {
        assert_eq!(r["movie_id"].as_u64(), Some(*id));
        assert!(r["title"].is_string() && r["genres"].is_array() && r["score"].is_f64());
    }
    let scores: Vec<f64> = recs.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first");
    assert!(v["variant"].is_null());
    let p = &v["provenance"];
    assert_eq!(p["request_id"], rid.as_str());
    assert!(p["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(p["model_name"], "neumf");
    assert_eq!(p["model_version"], "a");
    assert_eq!(p["model_sha256"].as_str().unwrap().len(), 64);
    assert!(p["git_sha"].is_string() && p["data_snapshot_id"].as_str().unwrap().len() == 64);
    assert_eq!(p["function_version"], "test");
    assert!(p["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(p["fallback"].is_null());
    assert_eq!(p["user_vector"], "embedding", "an id model's own row");

    // Nothing from the user's training history (user id 1 is model index 0).
    let hist = f.ds.user_histories();
    let trained: Vec<u64> = hist[0]
        .iter()
        .map(|&i| f.ds.items[i as usize].movie_id)
        .collect();
    assert!(!trained.is_empty());
    assert!(items.iter().all(|m| !trained.contains(m)));
    // A movie watched since (user-history store) disappears too.
    st.history()
        .unwrap()
        .append(1, &[items[0]], 0)
        .await
        .unwrap();
    let (_, _, v2, _) = get(&st, "/recommend/1?k=20", None).await;
    let items2: Vec<u64> = v2["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert!(!items2.contains(&items[0]));
    assert_eq!(items2[0], items[1], "the rest of the ranking is unchanged");
}

#[tokio::test]
async fn unknown_user_gets_popular_unseen_movies() {
    let st = state(true, 3600).await;
    // The plain ranking; the default policy reserves slots for the tail.
    let (code, _, v, _) = get(&st, "/recommend/999999?k=5&policy=none", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["provenance"]["fallback"], "popularity");
    assert!(v["provenance"]["user_vector"].is_null());
    let f = fixture();
    let mut pop: Vec<(u32, u64)> =
        f.ds.item_popularity()
            .iter()
            .zip(&f.ds.items)
            .map(|(p, m)| (*p, m.movie_id))
            .collect();
    pop.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let expect: Vec<u64> = pop[..5].iter().map(|x| x.1).collect();
    let got: Vec<u64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(got, expect);
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let st = state(true, 3600).await;
    for (uri, name) in [
        ("/recommend/abc", "user_id"),
        ("/recommend/-1", "user_id"),
        ("/recommend/1.5", "user_id"),
        ("/recommend/99999999999999999999999", "user_id"),
        ("/recommend/1?k=0", "k"),
        ("/recommend/1?k=101", "k"),
        ("/recommend/1?k=ten", "k"),
        ("/recommend/1?k=-3", "k"),
    ] {
        let (code, rid, v, text) = get(&st, uri, None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}: {text}");
        assert!(rid.is_some(), "{uri}: X-Request-ID on errors too");
        assert_eq!(v["error"], "invalid_parameter", "{uri}");
        assert!(
            v["detail"].as_str().unwrap().starts_with(name),
            "{uri}: {}",
            v["detail"]
        );
    }
    let (code, _, v, _) = get(&st, "/recommend/1?k=100", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["items"].as_array().unwrap().len(), 100);
    let (code, _, v, _) = get(&st, "/nope", None).await;
    assert_eq!(
        (code, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn request_id_echo_and_trace_round_trip() {
    let st = state(true, 3600).await;
    let (_, rid, v, _) = get(&st, "/recommend/2?k=3", Some("client-abc-123")).await;
    assert_eq!(rid.as_deref(), Some("client-abc-123"));
    assert_eq!(v["provenance"]["request_id"], "client-abc-123");
    // A malformed incoming id is replaced.
    let (_, rid2, _, _) = get(&st, "/healthz", Some("bad id with spaces")).await;
    assert!(uuid::Uuid::parse_str(&rid2.unwrap()).is_ok());

    // The trace is written off the response path: poll for it.
    let mut trace = Value::Null;
    for _ in 0..200 {
        let (code, _, t, _) = get(&st, "/trace/client-abc-123", None).await;
        if code == StatusCode::OK {
            trace = t;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(trace["request_id"], "client-abc-123");
    assert_eq!(trace["items"], v["items"]);
    assert_eq!(trace["model_version"], "a");
    assert_eq!(trace["k"], 3);
    assert_eq!(trace["status"], 200);
    assert_eq!(trace["path"], "/recommend/2");
    assert!(trace["stored_at"].is_i64() && trace["model_sha256"].is_string());
    let (code, _, v, _) = get(&st, "/trace/unknown-id", None).await;
    assert_eq!(
        (code, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn expired_traces_are_gone() {
    let st = state(true, -1).await;
    let (_, _, _, _) = get(&st, "/recommend/2?k=3", Some("short-lived")).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (code, _, _, _) = get(&st, "/trace/short-lived", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_is_503_without_a_model() {
    let st = state(false, 3600).await;
    let (code, _, v, _) = get(&st, "/healthz", None).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["model_loaded"], false);
    let (code, _, v, _) = get(&st, "/recommend/1", None).await;
    assert_eq!(
        (code, v["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("no_model"))
    );
    let st = state(true, 3600).await;
    let (code, _, v, _) = get(&st, "/healthz", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["serving_versions"], serde_json::json!(["a"]));
    assert!(
        v.get("rollout").is_none() && v.get("stores").is_none(),
        "{v}"
    );
    // The full view is the operators': 401 without the token.
    let (code, _, _, _) = get(&st, "/health", None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, v) = get_admin(&st, "/health").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["serving_versions"], serde_json::json!(["a"]));
    assert_eq!(v["stores"]["traces"], "ok");
}

#[tokio::test]
async fn tampered_version_is_refused_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(FolderRegistry::new(dir.path()));
    let ds = world();
    publish(&reg, &ds, "old");
    let db = Arc::new(SqliteStore::in_memory().unwrap());
    let st = Arc::new(AppState::new(
        None,
        db.clone(),
        db.clone(),
        db.clone(),
        ApiConfig::default(),
    ));
    assert_eq!(
        sync_model(&st, reg.clone()).await.unwrap(),
        SyncOutcome::Loaded("old".into())
    );
    publish(&reg, &ds, "new");
    let p = dir.path().join("new").join(MODEL_FILE);
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    b[n - 5] ^= 0xff;
    std::fs::write(&p, b).unwrap();
    use shared::ports::RolloutStore;
    db.switch(0, "new", "test").await.unwrap();
    let e = sync_model(&st, reg.clone()).await.unwrap_err().to_string();
    assert!(
        e.contains("model.onnx") && e.contains("checksum mismatch"),
        "{e}"
    );
    let (code, _, v, _) = get(&st, "/recommend/1", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["provenance"]["model_version"], "old");
}

#[tokio::test]
async fn prometheus_page_parses() {
    let st = state(true, 3600).await;
    get(&st, "/recommend/1", None).await;
    get(&st, "/recommend/x", None).await;
    let (code, _, _, text) = get(&st, "/metrics", None).await;
    assert_eq!(code, StatusCode::OK);
    let mut samples = 0;
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name value");
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            }
        }
        samples += 1;
    }
    assert!(samples > 10);
    assert!(text.contains("movie_recs_requests_total{route=\"/recommend/{user_id}\",status=\"200\",model_version=\"a\"} 1"), "{text}");
    assert!(text.contains("movie_recs_requests_total{route=\"/recommend/{user_id}\",status=\"400\",model_version=\"\"} 1"), "{text}");
}

/// A trace store that is down.
struct BrokenTraces;
fn refused() -> shared::ports::StoreError {
    shared::ports::StoreError::unavailable("traces", "connection refused")
}
#[async_trait::async_trait]
impl shared::ports::TraceStore for BrokenTraces {
    async fn put(&self, _: &str, _: &Value, _: i64) -> Result<(), shared::ports::StoreError> {
        Err(refused())
    }
    async fn get(&self, _: &str, _: i64) -> Result<Option<Value>, shared::ports::StoreError> {
        Err(refused())
    }
    async fn window(
        &self,
        _: i64,
        _: i64,
        _: i64,
    ) -> Result<Vec<Value>, shared::ports::StoreError> {
        Err(refused())
    }
    async fn ping(&self) -> Result<(), shared::ports::StoreError> {
        Err(refused())
    }
}

#[tokio::test]
async fn a_failing_trace_store_never_fails_a_recommendation() {
    let db = Arc::new(SqliteStore::in_memory().unwrap());
    let st = Arc::new(AppState::new(
        None,
        Arc::new(BrokenTraces),
        db.clone(),
        db,
        ApiConfig {
            admin_token: Some(ADMIN.into()),
            ..ApiConfig::default()
        },
    ));
    sync_model(&st, fixture().reg.clone()).await.unwrap();
    let (code, _, v, _) = get(&st, "/recommend/3?k=4", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["items"].as_array().unwrap().len(), 4);
    // The failure is counted once the background write has run.
    let mut counted = false;
    for _ in 0..200 {
        let (_, _, _, text) = get(&st, "/metrics", None).await;
        if text.contains("movie_recs_trace_write_failures_total 1") {
            counted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(counted, "trace write failure counted");
    // Health reports the store, and reading a trace says the store is unavailable.
    let (code, _, v, _) = get(&st, "/healthz", None).await;
    assert_eq!(
        (code, &v["status"]),
        (StatusCode::OK, &json!("ok")),
        "a model can still serve"
    );
    let (_, v) = get_admin(&st, "/health").await;
    assert!(v["stores"]["traces"].as_str().unwrap().starts_with("error"));
    let (code, _, v, _) = get(&st, "/trace/anything", None).await;
    assert_eq!(
        (code, v["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("store_unavailable"))
    );
}

/// In Lambda the trace is written before the response: readable at once,
/// and a failing store still never fails the recommendation.
#[tokio::test]
async fn lambda_mode_writes_the_trace_before_answering() {
    let lambda = ApiConfig {
        trace_before_response: true,
        ..ApiConfig::default()
    };
    let db = Arc::new(SqliteStore::in_memory().unwrap());
    let st = Arc::new(AppState::new(
        None,
        db.clone(),
        db.clone(),
        db.clone(),
        lambda.clone(),
    ));
    sync_model(&st, fixture().reg.clone()).await.unwrap();
    let (code, _, _, _) = get(&st, "/recommend/2?k=3", Some("lambda-1")).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _, t, _) = get(&st, "/trace/lambda-1", None).await;
    assert_eq!(
        (code, t["k"].as_u64()),
        (StatusCode::OK, Some(3)),
        "no wait needed"
    );

    let broken = Arc::new(AppState::new(
        None,
        Arc::new(BrokenTraces),
        db.clone(),
        db,
        lambda,
    ));
    sync_model(&broken, fixture().reg.clone()).await.unwrap();
    let (code, _, _, _) = get(&broken, "/recommend/2?k=3", None).await;
    assert_eq!(code, StatusCode::OK);
    let (_, _, _, text) = get(&broken, "/metrics", None).await;
    assert!(
        text.contains("movie_recs_trace_write_failures_total 1"),
        "{text}"
    );
}

/// `?policy=` re-ranks after scoring: named in provenance and the trace,
/// each policy's parameter checked, slots filled from outside the head tier,
/// zero weights equal to the model's ranking, unknown users re-ranked too.
#[tokio::test]
async fn policies_rerank_and_are_named_in_provenance() {
    let st = state(true, 3600).await;
    let items = |v: &Value| -> Vec<u64> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    // The default policy (DEFAULT_POLICY) names itself too.
    let (_, _, default, _) = get(&st, "/recommend/1?k=10", None).await;
    assert_eq!(default["provenance"]["policy"], "slots");
    assert_eq!(default["provenance"]["policy_params"], json!({"slots": 3}));
    let (_, _, plain, _) = get(&st, "/recommend/1?k=10&policy=none", None).await;
    assert_eq!(plain["provenance"]["policy"], "none");
    assert_eq!(plain["provenance"]["policy_params"], json!({}));
    for zero in [
        "policy=mmr&lambda=0",
        "policy=explore&weight=0",
        "policy=calibrated&lambda=0",
        "policy=slots&slots=0",
        "policy=none",
    ] {
        let (code, _, v, text) = get(&st, &format!("/recommend/1?k=10&{zero}"), None).await;
        assert_eq!(code, StatusCode::OK, "{text}");
        assert_eq!(items(&v), items(&plain), "{zero}");
    }
    // Head tier: the 20% most popular movies of the model's catalogue.
    let model = st.current_model().unwrap();
    let head: std::collections::HashSet<u64> = model
        .manifest
        .items
        .iter()
        .zip(&model.features().head)
        .filter(|(_, h)| **h)
        .map(|(i, _)| i.movie_id)
        .collect();
    let (code, rid, v, _) = get(&st, "/recommend/1?k=10&policy=slots&slots=6", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["provenance"]["policy"], "slots");
    assert_eq!(v["provenance"]["policy_params"], json!({"slots": 6}));
    let got = items(&v);
    assert_eq!(got.len(), 10);
    assert!(
        got.iter().filter(|m| !head.contains(m)).count() >= 6,
        "{got:?}"
    );
    let scores: Vec<f64> = v["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "slots keep score order: {scores:?}"
    );
    let rid = rid.unwrap();
    let trace = loop {
        let (code, _, t, _) = get(&st, &format!("/trace/{rid}"), None).await;
        if code == StatusCode::OK {
            break t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(trace["policy"], "slots");
    assert_eq!(trace["items"], json!(got));
    let (_, _, mmr, _) = get(&st, "/recommend/1?k=10&policy=mmr&lambda=0.9", None).await;
    assert_ne!(items(&mmr), items(&plain));
    assert_eq!(mmr["provenance"]["policy_params"]["lambda"], 0.9);
    // An unknown user: popularity, re-ranked; explore rotates what was just shown.
    let (code, _, first, _) = get(&st, "/recommend/999999?k=5&policy=explore&weight=1", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(first["provenance"]["fallback"], "popularity");
    let (_, _, second, _) = get(&st, "/recommend/999999?k=5&policy=explore&weight=1", None).await;
    let again = items(&second);
    assert!(
        items(&first).iter().all(|m| !again.contains(m)),
        "{first} {second}"
    );
    for (q, name) in [
        ("policy=popular", "policy"),
        ("policy=mmr&lambda=2", "lambda"),
        ("policy=explore&weight=x", "weight"),
        ("policy=slots&slots=11", "slots"),
        ("policy=calibrated&lambda=-1", "lambda"),
    ] {
        let (code, _, v, text) = get(&st, &format!("/recommend/1?k=10&{q}"), None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{q}: {text}");
        assert!(
            v["detail"].as_str().unwrap().starts_with(name),
            "{q}: {text}"
        );
    }
}
