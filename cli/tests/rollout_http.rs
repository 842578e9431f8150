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
                    defaults: None,
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
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
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
    assert_eq!(held.assign(1).arm, shared::domain::arm::Arm::Candidate);
}

/// State whose experiment analysis reads the same store's traces and a lake
/// in `dir`, fed through `POST /events` (the real ingest pipeline).
fn experiment_state(dir: &std::path::Path) -> Arc<AppState> {
    use shared::adapters::local::{FileMetrics, FolderLake};
    use shared::canary::{job::ExperimentJob, CanaryConfig};
    use shared::domain::experiment::DecisionRule;
    let db = Arc::new(SqliteStore::in_memory().unwrap());
    let lake = Arc::new(FolderLake::new(dir.join("lake")));
    let job = ExperimentJob {
        traces: db.clone(),
        lake: lake.clone(),
        registry: registry(),
        rollout: db.clone(),
        metrics: Arc::new(FileMetrics::new(dir.join("metrics.jsonl"))),
        stage: "test".into(),
        config: CanaryConfig {
            rule: DecisionRule {
                min_per_arm: 50,
                ..Default::default()
            },
            min_guardrail_requests: 50,
            // Latency is the test machine's noise here; the unit tests judge p95.
            p95_slack_ms: 1e6,
            // 300 lists of 5 movies over 200: fairness is the unit tests' too.
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
    Arc::new(
        AppState::new(
            None,
            db.clone(),
            db.clone(),
            db.clone(),
            ApiConfig {
                admin_token: Some(TOKEN.into()),
                trace_before_response: true,
                ..ApiConfig::default()
            },
        )
        .with_registry(registry())
        .with_ingestor(Arc::new(shared::ingest::Ingestor::new(
            lake,
            db.clone(),
            db,
        )))
        .with_experiments(job),
    )
}

/// An A/B test end to end: recommendations through the router, watches
/// through `POST /events`, the analysis per arm, a dry run that changes
/// nothing, and the promotion, logged with its reason.
#[tokio::test]
async fn experiment_analysis_and_promotion() {
    let dir = tempfile::tempdir().unwrap();
    let st = experiment_state(dir.path());
    let (code, v) = call(&st, "GET", "/experiment/analyze", None, None).await;
    assert_eq!(
        (code, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("no_experiment"))
    );
    let (code, v) = set(&st, "ab_test", 50.0).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let exp = v["status"]["experiment_id"].as_str().unwrap().to_string();
    sync_model(&st, registry()).await.unwrap();
    // Candidate users watch a recommended movie; one primary user in four does.
    let (mut events, mut arms) = (Vec::new(), [0u64; 2]);
    for u in 1..=300u64 {
        let (code, r) = call(&st, "GET", &format!("/recommend/{u}?k=5"), None, None).await;
        assert_eq!(code, StatusCode::OK);
        let cand = r["variant"] == "candidate";
        assert_eq!(cand, in_candidate(&exp, u, 50.0));
        arms[cand as usize] += 1;
        if cand || u % 4 == 0 {
            let ts = r["provenance"]["timestamp"].as_i64().unwrap() + 1;
            events
                .push(json!({"type": "watch", "user_id": u, "movie_id": r["items"][2], "ts": ts}));
        }
    }
    // Events must lie in the past when the analysis runs.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (code, v) = call(&st, "POST", "/events", None, Some(json!(events))).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{v}");

    let (code, a) = call(
        &st,
        "GET",
        "/experiment/analyze?window_minutes=60",
        None,
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{a}");
    assert_eq!(a["experiment_id"], exp.as_str());
    let (p, c) = (&a["arms"]["primary"], &a["arms"]["candidate"]);
    assert_eq!(p["requests"], arms[0]);
    assert_eq!(c["requests"], arms[1]);
    assert_eq!(c["conversions"], arms[1]);
    assert_eq!(c["conversion_rate"], 1.0);
    assert_eq!(c["model_versions"], json!(["b"]));
    assert_eq!(p["errors"], 0);
    assert!(p["p95_latency_ms"].as_f64().unwrap() > 0.0);
    assert!(c["fairness"]["catalog_coverage"].as_f64().unwrap() > 0.0);
    assert_eq!(a["analysis"]["decision"], "ship_candidate", "{a}");
    assert_eq!(a["action"], "promote");
    assert_eq!(a["proposed"]["primary_version"], "b");

    let (code, _) = call(&st, "POST", "/experiment/promote", None, None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    for bad in ["window_minutes=0", "window_minutes=x", "dry_run=maybe"] {
        let (code, v) = call(
            &st,
            "POST",
            &format!("/experiment/promote?{bad}"),
            Some(TOKEN),
            None,
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    let (code, v) = call(
        &st,
        "POST",
        "/experiment/promote?dry_run=true",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(
        (v["action"].as_str(), v["applied"].as_bool()),
        (Some("promote"), Some(false))
    );
    let (_, s) = call(&st, "GET", "/rollout/status", None, None).await;
    assert_eq!(s["strategy"], "ab_test");

    let (code, v) = call(&st, "POST", "/experiment/promote", Some(TOKEN), None).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["applied"], true);
    assert_eq!(
        (
            v["status"]["strategy"].as_str(),
            v["status"]["primary_version"].as_str()
        ),
        (Some("fixed"), Some("b"))
    );
    let (_, log) = call(&st, "GET", "/rollout/changes?limit=1", None, None).await;
    let last = &log["changes"][0];
    assert_eq!(last["state"]["updated_by"], "token");
    assert_eq!(last["previous"]["strategy"], "ab_test");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .starts_with("canary promote"),
        "{last}"
    );
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("CanaryPromotion"), "{metrics}");
    // Nothing runs any more.
    let (_, a) = call(&st, "GET", "/experiment/analyze", None, None).await;
    assert_eq!(a["action"], "none");
    let (code, v) = call(&st, "POST", "/experiment/promote", Some(TOKEN), None).await;
    assert_eq!(
        (code, v["applied"].as_bool()),
        (StatusCode::OK, Some(false))
    );
}

/// A policy experiment: one version in both arms, the candidate's lists
/// re-ranked by its policy, named in provenance; `?policy=` still wins.
#[tokio::test]
async fn arms_can_differ_by_policy_alone() {
    let st = state(Some(TOKEN));
    let body = |extra: Value| {
        let mut b = json!({"strategy": "ab_test", "primary_version": "a", "candidate_version": "a", "percentage": 50});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let (code, v) = call(&st, "POST", "/rollout", Some(TOKEN), Some(body(json!({})))).await;
    assert_eq!(
        code,
        StatusCode::BAD_REQUEST,
        "same version, same policy: {v}"
    );
    for bad in [
        json!({"candidate_policy": "popular"}),
        json!({"candidate_policy": 3}),
        json!({"primary_policy": "mmr:lambda=7"}),
    ] {
        let (code, v) = call(
            &st,
            "POST",
            "/rollout",
            Some(TOKEN),
            Some(body(bad.clone())),
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert!(v["detail"].as_str().unwrap().contains("_policy"), "{v}");
    }
    let (code, v) = call(
        &st,
        "POST",
        "/rollout",
        Some(TOKEN),
        Some(body(
            json!({"primary_policy": "none", "candidate_policy": "slots:slots=4"}),
        )),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["status"]["candidate_policy"], "slots:slots=4");
    assert_eq!(v["status"]["primary_policy"], "none");
    let exp = v["status"]["experiment_id"].as_str().unwrap().to_string();
    sync_model(&st, registry()).await.unwrap();
    let (mut seen_p, mut seen_c) = (false, false);
    for u in 1..=40u64 {
        let (_, r) = call(&st, "GET", &format!("/recommend/{u}?k=10"), None, None).await;
        let p = &r["provenance"];
        assert_eq!(p["model_version"], "a");
        if in_candidate(&exp, u, 50.0) {
            assert_eq!(
                (p["arm"].as_str(), p["policy"].as_str()),
                (Some("candidate"), Some("slots"))
            );
            assert_eq!(p["policy_params"]["slots"], 4);
            seen_c = true;
        } else {
            assert_eq!(
                (p["arm"].as_str(), p["policy"].as_str()),
                (Some("primary"), Some("none"))
            );
            seen_p = true;
        }
        let (_, r) = call(
            &st,
            "GET",
            &format!("/recommend/{u}?k=10&policy=mmr"),
            None,
            None,
        )
        .await;
        assert_eq!(r["provenance"]["policy"], "mmr");
    }
    assert!(seen_p && seen_c);
}

/// A switch made through the serving process applies to its very next
/// request, and the answer says so; a process that serves nothing (the
/// rollout function) reports the reload interval instead.
#[tokio::test]
async fn a_switch_serves_from_the_next_request_of_the_process_that_took_it() {
    let st = state(Some(TOKEN));
    sync_model(&st, registry()).await.unwrap();
    let served = |v: Value| v["provenance"]["model_version"].as_str().map(String::from);
    let (_, v) = call(&st, "GET", "/recommend/1?k=3", None, None).await;
    let before = served(v).unwrap();
    let other = if before == "a" { "b" } else { "a" };
    let (code, v) = call(
        &st,
        "POST",
        &format!("/switch?model={other}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["effective_within_s"].as_u64(),
            v["applied_here"].as_bool()
        ),
        (Some(0), Some(true))
    );
    let (_, v) = call(&st, "GET", "/recommend/1?k=3", None, None).await;
    assert_eq!(served(v).as_deref(), Some(other));
    // No model in this process: the change serves elsewhere, within the interval.
    let idle = state(Some(TOKEN));
    let (code, v) = call(&idle, "POST", "/switch?model=a", Some(TOKEN), None).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["effective_within_s"].as_u64(),
            v["applied_here"].as_bool()
        ),
        (Some(5), Some(false))
    );
}
