//! The `exposure` policy through the real router: a cold start ranks as its
//! base; two instances synced to the same adjustments version rank every
//! user alike (and differently from the cold start), and name the version
//! in provenance and the trace; a tampered adjustments object is refused
//! and the verified one keeps serving.

mod common;

use common::model::history_model;
use common::router::get;
use serde_json::Value;
use shared::adapters::adjustments::AdjustmentObjects;
use shared::adapters::local::{FolderLake, SqliteStore};
use shared::domain::exposure_control::{Adjustments, ControllerConfig};
use shared::http::{sync_model, ApiConfig, ApiStores, AppState};
use shared::ports::{AdjustmentStore, ModelStore};
use std::collections::HashMap;
use std::sync::Arc;

/// One recommend instance: its own trace and history stores, the shared
/// registry and adjustments store.
fn instance(exposure: Arc<dyn AdjustmentStore>, registry: Arc<dyn ModelStore>) -> Arc<AppState> {
    instance_on(
        Arc::new(SqliteStore::in_memory().unwrap()),
        exposure,
        registry,
    )
}

/// [`instance`] on `db` (traces, history, rollout).
fn instance_on(
    db: Arc<SqliteStore>,
    exposure: Arc<dyn AdjustmentStore>,
    registry: Arc<dyn ModelStore>,
) -> Arc<AppState> {
    Arc::new(
        AppState::with_stores(
            ApiStores {
                traces: Some(db.clone()),
                history: Some(db.clone()),
                rollout: Some(db),
                trending: None,
                exposure: Some(exposure),
                request_metrics: None,
            },
            ApiConfig::default(),
        )
        .with_registry(registry),
    )
}

async fn list(st: &Arc<AppState>, user: u64, policy: &str) -> (Vec<u64>, Value) {
    let (code, body) = get(st, &format!("/recommend/{user}?k=10&policy={policy}")).await;
    assert_eq!(code, 200, "{body}");
    (
        serde_json::from_value(body["items"].clone()).unwrap(),
        body["provenance"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_one_adjustments_version_rank_alike_and_a_cold_start_is_the_base() {
    let m = history_model("v1");
    let dir = tempfile::tempdir().unwrap();
    let objects = Arc::new(FolderLake::new(dir.path().join("exposure")));
    let store: Arc<dyn AdjustmentStore> = Arc::new(AdjustmentObjects::new(objects));
    let reg: Arc<dyn ModelStore> = m.reg.clone();
    let (a, b) = (
        instance(store.clone(), reg.clone()),
        instance(store.clone(), reg.clone()),
    );
    for st in [&a, &b] {
        sync_model(st, reg.clone()).await.unwrap();
    }
    let users: Vec<u64> = m.ds.user_ids.iter().copied().take(120).collect();

    // Cold start: no adjustments, so `exposure` ranks as its base
    // (`slots:slots=3`, the earlier default).
    let mut cold = HashMap::new();
    let mut counts: HashMap<u64, u64> = HashMap::new();
    for &u in &users {
        let (items, p) = list(&a, u, "exposure").await;
        assert_eq!(items, list(&a, u, "slots").await.0, "user {u}");
        assert!(p["adjustments"].is_null(), "{p}");
        assert_eq!(p["policy"], "exposure");
        for &i in &items {
            *counts.entry(i).or_insert(0) += 1;
        }
        cold.insert(u, items);
    }

    // The audit's step, as if it saw those lists for a few hours.
    let cfg = ControllerConfig::default();
    let n = m.ds.items.len();
    let mut adj = Adjustments::default();
    for w in 0..4 {
        adj = adj.update(&counts, n, &cfg, w);
    }
    assert!(!adj.prices.is_empty());
    let pointer = store.publish(&adj).await.unwrap();
    assert_eq!(pointer.name, "adj-000004");
    for st in [&a, &b] {
        sync_model(st, reg.clone()).await.unwrap();
    }
    let (mut changed, mut priced_before, mut priced_after) = (0, 0, 0);
    for &u in &users {
        let (x, p) = list(&a, u, "exposure").await;
        let (y, q) = list(&b, u, "exposure").await;
        assert_eq!(x, y, "user {u}: two instances, one adjustments version");
        assert_eq!(p["adjustments"], "adj-000004");
        assert_eq!(q["adjustments"], "adj-000004");
        changed += usize::from(x != cold[&u]);
        let priced = |l: &[u64]| l.iter().filter(|i| adj.net(**i) > 0.0).count();
        priced_before += priced(&cold[&u]);
        priced_after += priced(&x);
        // The user's two best movies stay first whatever the prices.
        assert_eq!(x[..2], cold[&u][..2], "user {u}");
        // Other policies ignore the adjustments.
        let (slots, p) = list(&a, u, "slots").await;
        assert_eq!(slots, cold[&u]);
        assert!(p["adjustments"].is_null());
    }
    assert!(
        changed > users.len() / 2,
        "{changed} of {} lists changed",
        users.len()
    );
    assert!(
        priced_after < priced_before,
        "priced movies shown {priced_after} times, {priced_before} before"
    );

    // The trace names the version too.
    let (code, body) = get(&a, &format!("/recommend/{}?k=10&policy=exposure", users[0])).await;
    assert_eq!(code, 200);
    let rid = body["provenance"]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let start = std::time::Instant::now();
    let trace = loop {
        let (code, t) = get(&a, &format!("/trace/{rid}")).await;
        if code == 200 {
            break t;
        }
        assert!(start.elapsed().as_secs() < 5, "no trace for {rid}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(trace["adjustments"], "adj-000004");

    // A newer version whose object was tampered with is refused; the
    // verified one keeps serving.
    let next = adj.update(&counts, n, &cfg, 9);
    store.publish(&next).await.unwrap();
    std::fs::write(
        dir.path().join("exposure").join("adj-000005.json"),
        serde_json::to_vec(&Adjustments::default()).unwrap(),
    )
    .unwrap();
    sync_model(&a, reg.clone()).await.unwrap();
    let (_, p) = list(&a, users[0], "exposure").await;
    assert_eq!(p["adjustments"], "adj-000004");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_can_ab_test_the_controller_against_the_default_on_one_version() {
    use shared::domain::strategy::Strategy;
    use shared::ports::{RolloutSpec, RolloutStore};
    let m = history_model("v1");
    let dir = tempfile::tempdir().unwrap();
    let objects = Arc::new(FolderLake::new(dir.path().join("exposure")));
    let store: Arc<dyn AdjustmentStore> = Arc::new(AdjustmentObjects::new(objects));
    let counts: HashMap<u64, u64> =
        m.ds.items
            .iter()
            .take(30)
            .map(|i| (i.movie_id, 50))
            .collect();
    let adj =
        Adjustments::default().update(&counts, m.ds.items.len(), &ControllerConfig::default(), 1);
    store.publish(&adj).await.unwrap();
    let db = Arc::new(SqliteStore::in_memory().unwrap());
    let spec = RolloutSpec {
        strategy: Strategy::AbTest,
        candidate_version: Some("v1".into()),
        percentage: 50.0,
        experiment_id: Some("controller-ab".into()),
        candidate_policy: Some("exposure".into()),
        ..RolloutSpec::fixed("v1")
    };
    db.set(0, &spec, "test").await.unwrap();
    let st = instance_on(db, store, m.reg.clone());
    sync_model(&st, m.reg.clone()).await.unwrap();
    let mut arms = HashMap::new();
    for &u in m.ds.user_ids.iter().take(60) {
        let (code, b) = get(&st, &format!("/recommend/{u}?k=10")).await;
        assert_eq!(code, 200, "{b}");
        let p = &b["provenance"];
        match p["arm"].as_str().unwrap() {
            "candidate" => {
                assert_eq!(p["policy"], "exposure", "{p}");
                assert_eq!(p["adjustments"], "adj-000001", "{p}");
            }
            _ => {
                assert_eq!(p["policy"], "slots", "{p}");
                assert!(p["adjustments"].is_null(), "{p}");
            }
        }
        *arms
            .entry(p["arm"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert!(
        arms.len() == 2 && arms.values().all(|n| *n > 10),
        "{arms:?}"
    );
}
