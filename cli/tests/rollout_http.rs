//! Rollout strategies through the real router on two real (small) models:
//! authorization, validation, hashed assignment under canary and A/B,
//! ramping without reshuffling, shadow never served, concurrent changes
//! that cannot both win, the change log, and immutable serving handles.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use shared::adapters::local::{FolderRegistry, SqliteStore};
use shared::artifact::HyperParams;
use shared::data::synthetic::{generate, SyntheticConfig};
use shared::domain::experiment::in_candidate;
use shared::http::{router, sync_model, ApiConfig, AppState};
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;
use trainer::pipeline::{train_and_publish, TrainOptions};

const TOKEN: &str = "s3cret";

/// One registry with versions `a` and `b` (different seeds), trained once.
fn registry() -> Arc<FolderRegistry> {
    static R: OnceLock<(tempfile::TempDir, Arc<FolderRegistry>)> = OnceLock::new();
    R.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let reg = Arc::new(FolderRegistry::new(dir.path().join("registry")));
        let ds = generate(&SyntheticConfig {
            users: 300,
            items: 200,
            cold_start_users: 3,
            ..Default::default()
        })
        .dataset;
        for (v, seed) in [("a", 1), ("b", 2)] {
            let hp = HyperParams {
                factors: 8,
                layers: vec![16, 8],
                epochs: 2,
                seed,
                ..Default::default()
            };
            train_and_publish(
                reg.as_ref(),
                &ds,
                &TrainOptions {
                    hp,
                    version: Some(v.into()),
                    force: true,
                    progress: false,
                },
            )
            .unwrap();
        }
        (dir, reg)
    })
    .1
    .clone()
}

fn state(token: Option<&str>) -> Arc<AppState> {
    let db = Arc::new(SqliteStore::in_memory().unwrap());
    Arc::new(
        AppState::new(
            None,
            db.clone(),
            db.clone(),
            db,
            ApiConfig {
                admin_token: token.map(str::to_string),
                ..ApiConfig::default()
            },
        )
        .with_registry(registry()),
    )
}

async fn call(
    st: &Arc<AppState>,
    method: &str,
    uri: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let resp = router(st.clone())
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn set(st: &Arc<AppState>, strategy: &str, pct: f64) -> (StatusCode, Value) {
    call(
        st,
        "POST",
        "/rollout",
        Some(TOKEN),
        Some(json!({"strategy": strategy, "primary_version": "a", "candidate_version": "b", "percentage": pct})),
    )
    .await
}

#[tokio::test]
async fn admin_routes_need_the_token() {
    let body = json!({"strategy": "fixed", "primary_version": "a"});
    // No token configured: refused whatever is sent.
    let st = state(None);
    let (code, v) = call(&st, "POST", "/rollout", Some("x"), Some(body.clone())).await;
    assert_eq!(
        (code, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let st = state(Some(TOKEN));
    let (code, _) = call(&st, "POST", "/rollout", None, Some(body.clone())).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, _) = call(&st, "POST", "/switch?model=a", Some("wrong"), None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, v) = call(&st, "POST", "/rollout", Some(TOKEN), Some(body)).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["status"]["primary_version"], "a");
    assert_eq!(v["status"]["updated_by"], "token");
    // Reading needs nothing.
    let (code, v) = call(&st, "GET", "/rollout/status", None, None).await;
    assert_eq!(
        (code, v["strategy"].as_str()),
        (StatusCode::OK, Some("fixed"))
    );
}

#[tokio::test]
async fn invalid_rollouts_are_400_and_change_nothing() {
    let st = state(Some(TOKEN));
    for (body, needle) in [
        (
            json!({"strategy": "canary", "primary_version": "a", "candidate_version": "b", "percentage": 101}),
            "percentage",
        ),
        (
            json!({"strategy": "canary", "primary_version": "a", "candidate_version": "b", "percentage": -1}),
            "percentage",
        ),
        (
            json!({"strategy": "canary", "primary_version": "a", "percentage": 5}),
            "candidate_version",
        ),
        (
            json!({"strategy": "canary", "primary_version": "a", "candidate_version": "a", "percentage": 5}),
            "differ",
        ),
        (
            json!({"strategy": "canary", "primary_version": "a", "candidate_version": "zz", "percentage": 5}),
            "zz",
        ),
        (
            json!({"strategy": "blue_green", "primary_version": "a"}),
            "strategy",
        ),
    ] {
        let (code, v) = call(&st, "POST", "/rollout", Some(TOKEN), Some(body.clone())).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body} → {v}");
        assert!(
            v["detail"].as_str().unwrap().contains(needle),
            "{body} → {v}"
        );
    }
    let (_, v) = call(&st, "GET", "/rollout/status", None, None).await;
    assert_eq!(v["revision"], 0);
}

/// Under a canary each user's arm is the hash of (experiment salt, user):
/// the candidate serves exactly those users, reports itself in provenance,
/// and ramping up keeps every earlier candidate user on the candidate.
#[tokio::test]
async fn canary_assigns_by_hash_and_ramps_without_reshuffling() {
    let st = state(Some(TOKEN));
    let (code, v) = set(&st, "canary", 30.0).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let exp = v["status"]["experiment_id"].as_str().unwrap().to_string();
    assert!(exp.starts_with("exp-"));
    sync_model(&st, registry()).await.unwrap();
    let (_, status) = call(&st, "GET", "/rollout/status", None, None).await;
    assert_eq!(status["serving_versions"], json!(["a", "b"]));
    assert_eq!(
        (status["strategy"].as_str(), status["percentage"].as_f64()),
        (Some("canary"), Some(30.0))
    );
    let mut first = Vec::new();
    for u in 1..=120u64 {
        let (code, r) = call(&st, "GET", &format!("/recommend/{u}?k=5"), None, None).await;
        assert_eq!(code, StatusCode::OK);
        let cand = in_candidate(&exp, u, 30.0);
        let want = if cand {
            ("candidate", "b")
        } else {
            ("primary", "a")
        };
        assert_eq!(r["variant"], want.0, "user {u}");
        let p = &r["provenance"];
        assert_eq!(
            (p["arm"].as_str(), p["model_version"].as_str()),
            (Some(want.0), Some(want.1))
        );
        assert_eq!(r["model"], want.1);
        assert_eq!(
            (p["strategy"].as_str(), p["experiment_id"].as_str()),
            (Some("canary"), Some(exp.as_str()))
        );
        first.push(cand);
    }
    assert!(first.iter().any(|c| *c) && first.iter().any(|c| !*c));
    // Ramp to 60%: same experiment; everyone on the candidate stays there.
    let (_, v) = set(&st, "canary", 60.0).await;
    assert_eq!(v["status"]["experiment_id"], exp.as_str());
    sync_model(&st, registry()).await.unwrap();
    for (i, was) in first.iter().enumerate() {
        let u = i as u64 + 1;
        let (_, r) = call(&st, "GET", &format!("/recommend/{u}?k=5"), None, None).await;
        if *was {
            assert_eq!(r["variant"], "candidate", "user {u} was reshuffled");
        }
    }
    // An A/B test of the same versions is a new experiment with a new salt.
    let (_, v) = set(&st, "ab_test", 50.0).await;
    assert_ne!(v["status"]["experiment_id"], exp.as_str());
    // Back to fixed: variant null, the primary for all.
    let (code, _) = call(&st, "POST", "/switch?model=a", Some(TOKEN), None).await;
    assert_eq!(code, StatusCode::OK);
    sync_model(&st, registry()).await.unwrap();
    let (_, r) = call(&st, "GET", "/recommend/7", None, None).await;
    assert!(r["variant"].is_null());
    assert_eq!(r["provenance"]["model_version"], "a");
    let (_, status) = call(&st, "GET", "/rollout/status", None, None).await;
    assert_eq!(status["serving_versions"], json!(["a"]));
}

/// Shadow scores the candidate for its share of requests and records its
/// list in the trace; every response is the primary's.
#[tokio::test]
async fn shadow_is_recorded_never_served() {
    let st = state(Some(TOKEN));
    set(&st, "shadow", 100.0).await;
    sync_model(&st, registry()).await.unwrap();
    for u in 1..=20u64 {
        let rid = format!("shadow-{u}");
        let req = Request::get(format!("/recommend/{u}?k=5"))
            .header("x-request-id", &rid)
            .body(Body::empty())
            .unwrap();
        let resp = router(st.clone()).oneshot(req).await.unwrap();
        let r: Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(r["provenance"]["model_version"], "a");
        assert!(r["variant"].is_null());
        assert_eq!(r["provenance"]["strategy"], "shadow");
        // The trace is written after the response: wait for it.
        let mut t = Value::Null;
        for _ in 0..100 {
            let (code, v) = call(&st, "GET", &format!("/trace/{rid}"), None, None).await;
            if code == StatusCode::OK {
                t = v;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(t["shadow"]["model_version"], "b", "{t}");
        assert_eq!(t["shadow"]["items"].as_array().unwrap().len(), 5);
        assert_eq!(t["items"], r["items"]);
        assert_eq!(t["model_version"], "a");
    }
}

/// Admins racing: every change is either applied or refused with 409, the
/// revision counts exactly the applied ones, and the change log holds each
/// with who made it and the state it replaced.
#[tokio::test]
async fn concurrent_changes_cannot_both_win_and_every_change_is_logged() {
    let st = state(Some(TOKEN));
    call(&st, "POST", "/switch?model=a", Some(TOKEN), None).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let st = st.clone();
            tokio::spawn(async move {
                let pct = 10.0 + i as f64;
                set(&st, "canary", pct).await.0
            })
        })
        .collect();
    let mut applied = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => applied += 1,
            StatusCode::CONFLICT => {}
            other => panic!("{other}"),
        }
    }
    assert!(applied >= 1);
    let (_, status) = call(&st, "GET", "/rollout/status", None, None).await;
    assert_eq!(status["revision"], 1 + applied);
    let (code, log) = call(&st, "GET", "/rollout/changes?limit=100", None, None).await;
    assert_eq!(code, StatusCode::OK);
    let changes = log["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1 + applied as usize);
    // Newest first; each names the state it replaced.
    assert_eq!(changes[0]["state"]["revision"], 1 + applied);
    let last = changes.last().unwrap();
    assert_eq!(last["state"]["strategy"], "fixed");
    assert!(last["previous"].is_null());
    for w in changes.windows(2) {
        assert_eq!(w[0]["previous"], w[1]["state"]);
        assert_eq!(w[0]["state"]["updated_by"], "token");
    }
    let (code, _) = call(&st, "GET", "/rollout/changes?limit=0", None, None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

/// A request keeps the serving value it took: swapping in a new rollout
/// does not change which model an in-flight handle scores with.
#[tokio::test]
async fn serving_handles_are_immutable() {
    let st = state(Some(TOKEN));
    set(&st, "ab_test", 100.0).await;
    sync_model(&st, registry()).await.unwrap();
    let held = st.serving().unwrap();
    assert_eq!(held.assign(1).model.version(), "b");
    call(&st, "POST", "/switch?model=a", Some(TOKEN), None).await;
    sync_model(&st, registry()).await.unwrap();
    assert_eq!(st.serving().unwrap().assign(1).model.version(), "a");
    assert_eq!(held.assign(1).model.version(), "b");
    assert_eq!(held.assign(1).arm, "candidate");
}
