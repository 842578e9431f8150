//! The catalogue routes through the real router and ingest pipeline: the
//! filters of `GET /recommend` and their 400s, `GET /similar/{movie_id}`
//! (itself and, with `user_id`, seen movies left out), `GET /popular`, and
//! `GET /trending` following posted events.

mod common;

use axum::http::StatusCode;
use common::model::{history_model, HistoryModel};
use common::router::{get, state_in_memory, watch};
use serde_json::{json, Value};
use shared::artifact::NEIGHBOURS_FILE;
use shared::http::{sync_model, ApiConfig, AppState, SyncOutcome};
use shared::ports::ModelStore;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

/// One history-input model, trained once for all tests.
fn fixture() -> &'static HistoryModel {
    static F: OnceLock<HistoryModel> = OnceLock::new();
    F.get_or_init(|| history_model("c"))
}

async fn state(lake: &std::path::Path) -> Arc<AppState> {
    let st = Arc::new(state_in_memory(
        lake,
        ApiConfig {
            function_version: "test".into(),
            trace_before_response: true,
            ..ApiConfig::default()
        },
    ));
    assert_eq!(
        sync_model(&st, fixture().reg.clone()).await.unwrap(),
        SyncOutcome::Loaded("c".into())
    );
    st
}

async fn ok(st: &Arc<AppState>, uri: &str) -> Value {
    let (code, v) = get(st, uri).await;
    assert_eq!(code, StatusCode::OK, "{uri}: {v}");
    v
}

fn list(v: &Value, field: &str) -> Vec<Value> {
    v[field].as_array().unwrap().clone()
}

fn genres(r: &Value) -> Vec<String> {
    r["genres"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_string())
        .collect()
}

/// The catalogue's genres with how many movies have each.
fn genre_counts() -> Vec<(String, usize)> {
    let mut c: std::collections::BTreeMap<String, usize> = Default::default();
    for m in &fixture().ds.items {
        for g in &m.genres {
            *c.entry(g.clone()).or_default() += 1;
        }
    }
    let mut v: Vec<_> = c.into_iter().collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    v
}

#[tokio::test]
async fn each_filter_keeps_k_items_that_pass_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path()).await;
    let gc = genre_counts();
    let (g1, g2) = (gc[0].0.clone(), gc[1].0.clone());
    let v = ok(
        &st,
        &format!("/recommend/1?k=10&genre={},{}", g1.to_lowercase(), g2),
    )
    .await;
    let recs = list(&v, "recommendations");
    assert_eq!(recs.len(), 10, "{v}");
    assert!(
        recs.iter()
            .all(|r| genres(r).iter().any(|g| *g == g1 || *g == g2)),
        "{v}"
    );
    assert!(v.get("fewer_than_k").is_none());
    assert_eq!(v["provenance"]["filter"]["genre"], json!([g1, g2]));
    // The trace records the filter.
    let rid = v["provenance"]["request_id"].as_str().unwrap();
    let t = ok(&st, &format!("/trace/{rid}")).await;
    assert_eq!(t["filter"]["genre"], json!([g1, g2]), "{t}");

    let v = ok(&st, &format!("/recommend/1?k=10&exclude_genre={g1}")).await;
    let recs = list(&v, "recommendations");
    assert_eq!(recs.len(), 10);
    assert!(recs.iter().all(|r| !genres(r).contains(&g1)));

    let v = ok(&st, "/recommend/1?k=10&year_from=2000&year_to=2020").await;
    let recs = list(&v, "recommendations");
    assert_eq!(recs.len(), 10);
    assert!(
        recs.iter()
            .all(|r| (2000..=2020).contains(&r["year"].as_u64().unwrap())),
        "{v}"
    );

    let plain = ok(&st, "/recommend/1?k=10&policy=none").await;
    let top: Vec<u64> = list(&plain, "items")
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert!(
        list(&plain, "recommendations")
            .iter()
            .all(|r| r["year"].is_u64()),
        "each item has its year"
    );
    let ex = format!("{},{}", top[0], top[3]);
    let v = ok(&st, &format!("/recommend/1?k=10&policy=none&exclude={ex}")).await;
    let items: Vec<u64> = list(&v, "items")
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(items.len(), 10);
    assert!(!items.contains(&top[0]) && !items.contains(&top[3]));
    // Everything else of the unfiltered list keeps its order.
    let kept: Vec<u64> = top
        .iter()
        .copied()
        .filter(|m| *m != top[0] && *m != top[3])
        .collect();
    assert_eq!(items[..8], kept[..]);
}

#[tokio::test]
async fn a_filter_too_narrow_for_k_says_why_and_bad_parameters_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path()).await;
    let f = fixture();
    // The rarest genre in one year range: fewer than k movies pass.
    let rare = genre_counts().last().unwrap().0.clone();
    let passing: HashSet<u64> =
        f.ds.items
            .iter()
            .filter(|m| m.genres.contains(&rare))
            .map(|m| m.movie_id)
            .collect();
    let v = ok(&st, &format!("/recommend/7?k=100&genre={rare}")).await;
    let items: Vec<u64> = list(&v, "items")
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert!(items.len() < 100 && items.len() <= passing.len());
    assert!(items.iter().all(|m| passing.contains(m)));
    assert!(
        v["fewer_than_k"].as_str().unwrap().contains("filter"),
        "{v}"
    );

    for (q, param) in [
        ("genre=Westerns", "genre"),
        ("exclude_genre=nope", "exclude_genre"),
        ("year_from=19x", "year_from"),
        ("year_to=3000", "year_to"),
        ("year_from=2010&year_to=2000", "year_from"),
        ("exclude=1,two", "exclude"),
    ] {
        for route in ["/recommend/1", "/popular", "/trending", "/similar/1"] {
            let (code, v) = get(&st, &format!("{route}?{q}")).await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{route}?{q}: {v}");
            assert_eq!(v["error"], "invalid_parameter");
            assert!(
                v["detail"].as_str().unwrap().starts_with(param),
                "{route}?{q}: {v}"
            );
        }
    }
}

#[tokio::test]
async fn similar_never_returns_the_movie_and_with_a_user_leaves_out_what_they_saw() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path()).await;
    let f = fixture();
    let files = f.reg.read_manifest("c").unwrap().files;
    assert!(files.contains_key(NEIGHBOURS_FILE), "{files:?}");
    let movie = f.ds.items[5].movie_id;
    let v = ok(&st, &format!("/similar/{movie}")).await;
    let sim = list(&v, "similar");
    assert_eq!(sim.len(), 10, "k defaults to 10");
    assert_eq!(v["movie"]["movie_id"], movie);
    assert!(sim.iter().all(|r| r["movie_id"] != movie));
    let s: Vec<f64> = sim
        .iter()
        .map(|r| r["similarity"].as_f64().unwrap())
        .collect();
    assert!(
        s.windows(2).all(|w| w[0] >= w[1]),
        "most similar first: {s:?}"
    );
    assert_eq!(v["provenance"]["order"], "similarity");

    // User 1 (index 0) has seen their training movies; add one watch.
    let hist: HashSet<u64> = f.ds.user_histories()[0]
        .iter()
        .map(|&i| f.ds.items[i as usize].movie_id)
        .collect();
    let unseen: Vec<u64> = sim
        .iter()
        .map(|r| r["movie_id"].as_u64().unwrap())
        .filter(|m| !hist.contains(m))
        .collect();
    watch(&st, 1, &unseen[..1]).await;
    let v = ok(&st, &format!("/similar/{movie}?user_id=1&k=20")).await;
    let mine = list(&v, "similar");
    assert!(!mine.is_empty());
    for r in &mine {
        let m = r["movie_id"].as_u64().unwrap();
        assert!(
            m != movie && !hist.contains(&m) && m != unseen[0],
            "{m} was seen"
        );
    }
    assert_eq!(v["provenance"]["order"], "user_score");
    assert_eq!(v["provenance"]["user_vector"], "history");
    let scores: Vec<f64> = mine.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "ordered for the user: {scores:?}"
    );

    // Filters apply; unknown movies are 404 JSON.
    let g = genre_counts()[0].0.clone();
    let v = ok(&st, &format!("/similar/{movie}?genre={g}")).await;
    assert!(list(&v, "similar").iter().all(|r| genres(r).contains(&g)));
    let (code, v) = get(&st, "/similar/987654321").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "not_found");
    let (code, _) = get(&st, "/similar/abc").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn popular_follows_training_popularity_and_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path()).await;
    let v = ok(&st, "/popular?k=15").await;
    let recs = list(&v, "recommendations");
    assert_eq!(recs.len(), 15);
    let pops: Vec<u64> = recs
        .iter()
        .map(|r| r["popularity"].as_u64().unwrap())
        .collect();
    assert!(pops.windows(2).all(|w| w[0] >= w[1]), "{pops:?}");
    let mut all: Vec<u64> = fixture()
        .ds
        .item_popularity()
        .iter()
        .map(|&p| p as u64)
        .collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(pops, all[..15], "the 15 most popular");
    let g = genre_counts()[1].0.clone();
    let v = ok(&st, &format!("/popular?k=5&exclude_genre={g}")).await;
    assert!(list(&v, "recommendations")
        .iter()
        .all(|r| !genres(r).contains(&g)));
}

#[tokio::test]
async fn trending_follows_posted_watches() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path()).await;
    let v = ok(&st, "/trending?k=5").await;
    assert_eq!(list(&v, "items").len(), 0, "no events yet: {v}");
    assert!(v["fewer_than_k"].as_str().unwrap().contains("24 hours"));
    let ids: Vec<u64> = fixture().ds.items.iter().map(|m| m.movie_id).collect();
    // Movie a by three users, b by two, c by one.
    let (a, b, c) = (ids[40], ids[41], ids[42]);
    watch(&st, 5001, &[a, b, c]).await;
    watch(&st, 5002, &[a, b]).await;
    watch(&st, 5003, &[a]).await;
    let v = ok(&st, "/trending?k=5&hours=1").await;
    let items: Vec<u64> = list(&v, "items")
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(items, vec![a, b, c], "{v}");
    let counts: Vec<u64> = list(&v, "recommendations")
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![3, 2, 1]);
    let v = ok(&st, &format!("/trending?k=5&exclude={a}")).await;
    assert_eq!(list(&v, "items")[0], b);
    for bad in ["0", "169", "day"] {
        let (code, v) = get(&st, &format!("/trending?hours={bad}")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["detail"].as_str().unwrap().starts_with("hours"));
    }
}

#[tokio::test]
async fn a_version_exported_before_neighbour_lists_serves_everything_but_similar() {
    // A copy of the version without neighbours.bin, as older exports were.
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("registry").join("old");
    std::fs::create_dir_all(&old).unwrap();
    for e in std::fs::read_dir(f.reg.root().join("c")).unwrap() {
        let e = e.unwrap();
        if e.file_name() != NEIGHBOURS_FILE {
            std::fs::copy(e.path(), old.join(e.file_name())).unwrap();
        }
    }
    let mut m: Value =
        serde_json::from_slice(&std::fs::read(old.join("manifest.json")).unwrap()).unwrap();
    m["version"] = json!("old");
    m["files"].as_object_mut().unwrap().remove(NEIGHBOURS_FILE);
    std::fs::write(old.join("manifest.json"), m.to_string()).unwrap();
    let st = Arc::new(state_in_memory(
        &dir.path().join("lake"),
        ApiConfig::default(),
    ));
    let reg = Arc::new(shared::adapters::local::FolderRegistry::new(
        dir.path().join("registry"),
    ));
    assert_eq!(
        sync_model(&st, reg).await.unwrap(),
        SyncOutcome::Loaded("old".into())
    );
    let (code, v) = get(&st, &format!("/similar/{}", f.ds.items[0].movie_id)).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"], "no_neighbours");
    assert!(v["detail"].as_str().unwrap().contains("old"));
    assert_eq!(list(&ok(&st, "/recommend/1?k=5").await, "items").len(), 5);
    assert_eq!(list(&ok(&st, "/popular?k=5").await, "items").len(), 5);
}
