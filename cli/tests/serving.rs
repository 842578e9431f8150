//! The serving path's promises, against the real `movie-recs serve`: traces
//! go through the background writer yet are readable within a second and
//! survive a SIGTERM right after the responses; a watch posted a moment ago
//! is excluded from the next list (and folded into the user vector); a
//! returning user is scored from the score cache, with the same list.

mod common;
use common::*;

fn metric(port: u16, line_prefix: &str) -> f64 {
    let (code, _, body) = http(port, "GET", "/metrics", &[], b"");
    assert_eq!(code, 200);
    String::from_utf8_lossy(&body)
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_prefix}"))
}

fn recommend(port: u16, user: u64) -> (String, Vec<u64>) {
    let (code, head, body) = http(
        port,
        "GET",
        &format!("/recommend/{user}?k=10&policy=none"),
        &[],
        b"",
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let rid = header(&head, "x-request-id").unwrap().to_string();
    let items = serde_json::from_value(json_of(&body)["items"].clone()).unwrap();
    (rid, items)
}

#[test]
fn traces_are_readable_within_a_second_and_none_is_lost_on_sigterm() {
    let dir = data_dir();
    let s = serve(dir.path(), "127.0.0.1", &[], None);
    let (rid, items) = recommend(s.port, 7);
    let start = Instant::now();
    loop {
        let (code, _, body) = http(s.port, "GET", &format!("/trace/{rid}"), &[], b"");
        if code == 200 {
            let t = json_of(&body);
            assert_eq!(t["user_id"], 7);
            assert_eq!(t["items"], json!(items));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "trace not readable within a second"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Many responses, then SIGTERM at once: every trace is written.
    let ids: Vec<String> = (0..300).map(|u| recommend(s.port, u % 300).0).collect();
    let port = s.port;
    drop(s);
    let s = serve(dir.path(), "127.0.0.1", &[], None);
    assert_ne!(s.port, port);
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| http(s.port, "GET", &format!("/trace/{id}"), &[], b"").0 != 200)
        .collect();
    assert!(
        missing.is_empty(),
        "{} traces lost: {missing:?}",
        missing.len()
    );
    assert!(metric(s.port, "movie_recs_traces_dropped_total") == 0.0);
}

#[test]
fn a_watch_posted_a_moment_ago_is_excluded_and_cached_scores_rank_alike() {
    let dir = data_dir();
    let s = serve(dir.path(), "127.0.0.1", &[], None);
    let (_, first) = recommend(s.port, 11);
    let hits = |p| metric(p, "movie_recs_score_cache_total{model_version=\"");
    let before = hits(s.port);
    let (_, again) = recommend(s.port, 11);
    assert_eq!(again, first, "the cached scores rank the same list");
    assert!(hits(s.port) > before, "the second request was a cache hit");
    let (code, body) = post_events(
        s.port,
        &json!([{"type": "watch", "user_id": 11, "movie_id": first[0], "ts": now_ms()}]),
        None,
    );
    assert_eq!((code, body["accepted"].as_u64()), (202, Some(1)), "{body}");
    let (_, after) = recommend(s.port, 11);
    assert!(
        !after.contains(&first[0]),
        "{after:?} still has {}",
        first[0]
    );
    // The default model folds the watch into the user vector, so the rest is
    // re-ranked (tests/fold_in_http.rs); the new history is cached in turn.
    assert_eq!(after.len(), 10);
    let hits_now = hits(s.port);
    let (_, again) = recommend(s.port, 11);
    assert_eq!(
        again, after,
        "the folded-in scores are cached and rank alike"
    );
    assert!(
        hits(s.port) > hits_now,
        "the repeat after the watch was a cache hit"
    );
}
