//! Fold-in through the real router and ingest pipeline, on a history-input
//! model: a watch posted to `POST /events` changes the user's next list
//! (not only by removing the movie), a user the model never saw is served
//! from their first event, and only a user with no events gets popularity.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::model::{history_model, HistoryModel};
use common::router::{call, state_in_memory, watch};
use serde_json::{json, Value};
use shared::http::{sync_model, ApiConfig, AppState, SyncOutcome};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// One history-input model, trained once for all tests.
fn fixture() -> &'static HistoryModel {
    static F: OnceLock<HistoryModel> = OnceLock::new();
    F.get_or_init(|| history_model("h"))
}

async fn state(lake: &std::path::Path) -> Arc<AppState> {
    let st = Arc::new(state_in_memory(
        lake,
        ApiConfig {
            function_version: "test".into(),
            ..ApiConfig::default()
        },
    ));
    assert_eq!(
        sync_model(&st, fixture().reg.clone()).await.unwrap(),
        SyncOutcome::Loaded("h".into())
    );
    st
}

/// `(movie_id, score)` best first, and the provenance.
async fn recommend(st: &Arc<AppState>, user: u64) -> (Vec<(u64, f64)>, Value) {
    let req = Request::get(format!("/recommend/{user}?k=20&policy=none"))
        .body(Body::empty())
        .unwrap();
    let (code, v) = call(st, req).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let recs = v["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["movie_id"].as_u64().unwrap(),
                r["score"].as_f64().unwrap(),
            )
        })
        .collect();
    (recs, v["provenance"].clone())
}

#[tokio::test]
async fn a_watch_posted_a_moment_ago_changes_the_next_list_not_only_by_removal() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path()).await;
    let (before, p) = recommend(&st, 1).await;
    assert_eq!(p["user_vector"], "history");
    assert!(p["fallback"].is_null());
    let watched = before[0].0;
    watch(&st, 1, &[watched]).await;
    let (after, p) = recommend(&st, 1).await;
    assert_eq!(p["user_vector"], "history");
    assert!(
        after.iter().all(|(m, _)| *m != watched),
        "the watch is excluded"
    );
    // Had the watch only been removed, every other movie would keep its
    // score bit for bit (an index model's behaviour); here the user vector
    // moved.
    let old: HashMap<u64, f64> = before.iter().copied().collect();
    let moved = after
        .iter()
        .filter(|(m, s)| old.get(m).is_some_and(|o| (o - s).abs() > 1e-6))
        .count();
    assert!(
        moved > 0,
        "no score changed after the watch: {before:?} / {after:?}"
    );
}

#[tokio::test]
async fn a_user_unknown_to_the_model_is_served_from_their_first_event() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path()).await;
    let f = fixture();
    let stranger = 900_001;
    let (pop, p) = recommend(&st, stranger).await;
    assert_eq!(p["fallback"], "popularity", "no events yet: popularity");
    assert!(p["user_vector"].is_null());

    // The stranger watches what training user 1 (model index 0) watched.
    let hist = &f.ds.user_histories()[0];
    let movies: Vec<u64> = hist
        .iter()
        .take(5)
        .map(|&i| f.ds.items[i as usize].movie_id)
        .collect();
    watch(&st, stranger, &movies[..1]).await;
    let (one, p) = recommend(&st, stranger).await;
    assert!(p["fallback"].is_null(), "{p}");
    assert_eq!(p["user_vector"], "history");
    assert!(one.iter().all(|(m, _)| *m != movies[0]));
    let pop_ids: Vec<u64> = pop.iter().map(|x| x.0).collect();
    let one_ids: Vec<u64> = one.iter().map(|x| x.0).collect();
    assert_ne!(one_ids, pop_ids, "personalised, not the popularity list");

    // Another stranger with other movies gets another list.
    let other = 900_002;
    let far: Vec<u64> = (0..f.ds.n_items())
        .filter(|i| !hist.contains(&(*i as u32)))
        .take(5)
        .map(|i| f.ds.items[i].movie_id)
        .collect();
    watch(&st, other, &far).await;
    let (theirs, _) = recommend(&st, other).await;
    let theirs: Vec<u64> = theirs.iter().map(|x| x.0).collect();
    assert_ne!(theirs, one_ids);

    // Events for movies outside the catalogue give nothing to read.
    let ghost = 900_003;
    watch(&st, ghost, &[9_999_999]).await;
    let (_, p) = recommend(&st, ghost).await;
    assert_eq!(p["fallback"], "popularity");
}

#[tokio::test]
async fn the_trace_names_where_the_user_vector_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path()).await;
    for (user, expect) in [(1u64, json!("history")), (900_010, Value::Null)] {
        let req = Request::get(format!("/recommend/{user}"))
            .header("x-request-id", format!("fold-{user}"))
            .body(Body::empty())
            .unwrap();
        let (code, _) = call(&st, req).await;
        assert_eq!(code, StatusCode::OK);
        let mut trace = None;
        for _ in 0..100 {
            let now = chrono::Utc::now().timestamp();
            if let Some(t) = st
                .traces()
                .unwrap()
                .get(&format!("fold-{user}"), now)
                .await
                .unwrap()
            {
                trace = Some(t);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let t = trace.expect("trace written");
        assert_eq!(t.get("user_vector").cloned().unwrap_or(Value::Null), expect);
    }
}
