//! `movie-recs batch` against the router: one row per asked user, and each
//! row the list `GET /recommend` answers for that user (same history store,
//! filter and policy), in JSON lines and in Parquet.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::model::{history_model, HistoryModel};
use common::router::{call, state_on};
use serde_json::{json, Value};
use shared::adapters::local::SqliteStore;
use shared::http::{sync_model, ApiConfig};
use std::sync::{Arc, OnceLock};

fn fixture() -> &'static HistoryModel {
    static F: OnceLock<HistoryModel> = OnceLock::new();
    F.get_or_init(|| history_model("b"))
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_rows_are_the_lists_recommend_answers_one_per_asked_user() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(SqliteStore::open(&dir.path().join("movie-recs.db")).unwrap());
    let st = Arc::new(state_on(
        db.clone(),
        &dir.path().join("lake"),
        ApiConfig::default(),
    ));
    sync_model(&st, f.reg.clone()).await.unwrap();
    // User 3 watched a movie since training; 900001 is unknown to the model
    // with one watch; 900002 has no events at all.
    let (_, first) = call(
        &st,
        Request::get("/recommend/3?k=10")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let top = first["items"][0].as_u64().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let events = json!([
        {"type": "watch", "user_id": 3, "movie_id": top, "ts": now},
        {"type": "watch", "user_id": 900001, "movie_id": f.ds.items[0].movie_id, "ts": now},
    ]);
    let req = Request::post("/events")
        .header("content-type", "application/json")
        .body(Body::from(events.to_string()))
        .unwrap();
    assert_eq!(call(&st, req).await.0, StatusCode::ACCEPTED);

    let mut users: Vec<u64> = f.ds.user_ids[..40].to_vec();
    users.extend([900001, 900002]);
    let list = dir.path().join("users.txt");
    let text: String = users.iter().map(|u| format!("{u}\n")).collect();
    std::fs::write(&list, format!("# asked users\n\n{text}")).unwrap();
    let reg = f.reg.root().display().to_string();
    for (format, shard_users) in [("jsonl", "7"), ("parquet", "100")] {
        let out = dir.path().join(format!("out-{format}"));
        let o = common::bin()
            .args([
                "batch",
                "--quiet",
                "--model",
                &format!("{reg}/b"),
                "--k",
                "10",
                "--genre",
            ])
            .arg(f.ds.items[0].genres[0].clone())
            .args(["--users"])
            .arg(&list)
            .args(["--out"])
            .arg(&out)
            .args([
                "--format",
                format,
                "--shard-users",
                shard_users,
                "--threads",
                "2",
                "--data-dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["users"], users.len());
        assert_eq!(manifest["rows"], users.len());
        let mut rows: Vec<Value> = Vec::new();
        for s in manifest["shards"].as_array().unwrap() {
            let bytes = std::fs::read(out.join(s["key"].as_str().unwrap())).unwrap();
            let part: Vec<Value> = match format {
                "jsonl" => String::from_utf8(bytes)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect(),
                _ => shared::batch::from_parquet(bytes)
                    .unwrap()
                    .into_iter()
                    .map(|r| serde_json::to_value(r).unwrap())
                    .collect(),
            };
            assert_eq!(part.len(), s["rows"].as_u64().unwrap() as usize);
            rows.extend(part);
        }
        assert_eq!(
            manifest["shards"].as_array().unwrap().len(),
            users.len().div_ceil(shard_users.parse().unwrap())
        );
        let got: Vec<u64> = rows
            .iter()
            .map(|r| r["user_id"].as_u64().unwrap())
            .collect();
        assert_eq!(got, users, "one row per asked user, in order");
        let genre = &f.ds.items[0].genres[0];
        for (u, row) in users.iter().zip(&rows) {
            let (code, v) = call(
                &st,
                Request::get(format!("/recommend/{u}?k=10&genre={genre}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            assert_eq!(code, StatusCode::OK);
            assert_eq!(row["movie_ids"], v["items"], "user {u}");
            assert_eq!(row["policy"], "slots:slots=3");
            assert_eq!(row["model_version"], "b");
            let scores: Vec<f64> = v["recommendations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["score"].as_f64().unwrap())
                .collect();
            let batch: Vec<f64> = row["scores"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_f64().unwrap())
                .collect();
            assert_eq!(scores.len(), batch.len());
            assert!(
                scores.iter().zip(&batch).all(|(a, b)| (a - b).abs() < 1e-6),
                "user {u}"
            );
        }
        let row3 = &rows[users.iter().position(|&u| u == 3).unwrap()];
        assert!(
            !row3["movie_ids"].as_array().unwrap().contains(&json!(top)),
            "the watch since training is masked"
        );
    }
    // Bad input is named.
    let o = common::bin()
        .args(["batch", "--model", &format!("{reg}/b"), "--out"])
        .arg(dir.path().join("x"))
        .args(["--genre", "Nope"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("genre"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
