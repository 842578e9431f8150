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

/// The state machine's three steps (what the batch function runs in AWS) on
/// local stores: a run over a user list, shard by shard, equals the CLI's
/// rows; a bad input names its field before any shard runs; a run whose
/// shards did not cover every user gets no manifest.
#[tokio::test(flavor = "multi_thread")]
async fn the_batch_steps_plan_shard_and_finish_a_run_and_name_bad_input() {
    use shared::adapters::adjustments::AdjustmentObjects;
    use shared::adapters::local::{FolderLake, FolderRegistry};
    use shared::batch::job::{BatchError, BatchInput, BatchJob, BatchRequest};
    use shared::ports::EventLake;

    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(SqliteStore::open(&dir.path().join("movie-recs.db")).unwrap());
    let out: Arc<dyn EventLake> = Arc::new(FolderLake::new(dir.path().join("batch")));
    let exposure = Arc::new(AdjustmentObjects::new(Arc::new(FolderLake::new(
        dir.path().join("exposure"),
    ))));
    let job = BatchJob::new(
        Arc::new(FolderRegistry::new(f.reg.root())),
        db.clone(),
        db.clone(),
        exposure,
        out.clone(),
        2,
    );
    let users: Vec<u64> = f.ds.user_ids[..25].to_vec();
    let list: String = users.iter().map(|u| format!("{u}\n")).collect();
    out.put_object("lists/some.txt", list.into_bytes())
        .await
        .unwrap();

    let input: BatchInput = serde_json::from_value(json!({
        "users": "lists/some.txt", "k": 5, "shard_users": 10, "filter": {"year_from": "1900"}
    }))
    .unwrap();
    let plan = job.plan("run-1", input).await.unwrap();
    assert_eq!(plan.job.model_version, "b", "the newest version");
    assert_eq!(plan.users_total, 25);
    let ranges: Vec<(usize, usize)> = plan.shards.iter().map(|s| (s.from, s.to)).collect();
    assert_eq!(ranges, [(0, 10), (10, 20), (20, 25)]);
    let mut outputs = Vec::new();
    for s in &plan.shards {
        // Through the function's request shape, as the Map passes it.
        let req: BatchRequest =
            serde_json::from_value(json!({"action": "shard", "job": plan.job, "shard": s}))
                .unwrap();
        outputs.push(serde_json::from_value(job.handle(req).await.unwrap()).unwrap());
    }
    let manifest = job.finish(&plan.job, 25, outputs.clone()).await.unwrap();
    assert_eq!((manifest.users, manifest.rows), (25, 25));
    let mut rows = Vec::new();
    for s in &manifest.shards {
        rows.extend(shared::batch::from_parquet(out.get_object(&s.key).await.unwrap()).unwrap());
    }
    let got: Vec<u64> = rows.iter().map(|r| r.user_id).collect();
    assert_eq!(got, users, "one row per listed user, in order");
    assert!(out.get_object("run-1/manifest.json").await.is_ok());

    // The same users through the CLI rank the same lists.
    let cli_out = dir.path().join("cli");
    let users_file = dir.path().join("users.txt");
    std::fs::write(
        &users_file,
        users.iter().map(|u| format!("{u}\n")).collect::<String>(),
    )
    .unwrap();
    let o = common::bin()
        .args(["batch", "--quiet", "--model"])
        .arg(f.reg.root().join("b"))
        .args(["--k", "5", "--year-from", "1900", "--users"])
        .arg(&users_file)
        .arg("--out")
        .arg(&cli_out)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cli_rows =
        shared::batch::from_parquet(std::fs::read(cli_out.join("part-00000.parquet")).unwrap())
            .unwrap();
    assert_eq!(cli_rows.len(), rows.len());
    for (a, b) in rows.iter().zip(&cli_rows) {
        assert_eq!((a.user_id, &a.movie_ids), (b.user_id, &b.movie_ids));
    }

    // A run whose shards lost a user writes no manifest.
    outputs.pop();
    let err = job
        .finish(&plan.job.clone(), 25, outputs)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BatchError::Incomplete {
                rows: 20,
                users: 25
            }
        ),
        "{err}"
    );

    // Bad input fails the plan naming the field.
    for (run, input, field) in [
        ("bad", json!({"k": 0}), "k must"),
        ("bad", json!({"shard_users": 0}), "shard_users"),
        ("bad", json!({"max_concurrency": 5000}), "max_concurrency"),
        ("bad", json!({"policy": "nope"}), "policy"),
        ("bad", json!({"filter": {"genre": "Nope"}}), "filter.genre"),
        (
            "bad",
            json!({"filter": {"year_from": "x"}}),
            "filter.year_from",
        ),
        ("bad", json!({"model_version": "missing"}), "missing"),
        (
            "bad",
            json!({"users": "lists/absent.txt"}),
            "lists/absent.txt",
        ),
        (
            "bad",
            json!({"users": "../lake/x.txt"}),
            "users \"../lake/x.txt\"",
        ),
        (
            "bad",
            json!({"users": "/etc/passwd"}),
            "users \"/etc/passwd\"",
        ),
        ("../up", json!({}), "run"),
    ] {
        let input: BatchInput = serde_json::from_value(input.clone()).unwrap();
        let err = job.plan(run, input).await.unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
    out.put_object("lists/bad.txt", b"1\nseven\n".to_vec())
        .await
        .unwrap();
    let input: BatchInput = serde_json::from_value(json!({"users": "lists/bad.txt"})).unwrap();
    let err = job.plan("bad", input).await.unwrap_err().to_string();
    assert!(err.contains("line 2"), "{err}");
    // An unknown field in the execution input is refused, named.
    let err = serde_json::from_value::<BatchInput>(json!({"user": "all"})).unwrap_err();
    assert!(err.to_string().contains("user"), "{err}");
}
