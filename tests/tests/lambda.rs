//! Every function binary under the Lambda runtime emulator (`cargo lambda
//! watch --only-lambda-apis`), invoked with its committed `events/` payloads
//! through `cargo lambda invoke`, with the functions pointed at moto.
//! One stack, one test: the steps depend on each other (recommend writes the
//! trace that trace reads; switch changes what rollout reports).

mod common;

use common::{api_response, sdk_config, LambdaStack, StackOptions};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn functions_answer_their_events_under_the_lambda_emulator() {
    // The audit window as a deployment parameter (the schedule payload's
    // events lie up to 2 hours before it).
    // The committed events carry fixed times (2026-11-28, 19:00-21:00 UTC);
    // live events older than MaxEventAgeDays are refused, so the stack
    // under test admits events as old as the fixtures.
    let fixtures = chrono::DateTime::parse_from_rfc3339("2026-11-28T19:00:00Z").unwrap();
    let age_days = (chrono::Utc::now() - fixtures.with_timezone(&chrono::Utc)).num_days() + 2;
    let stack = LambdaStack::start_with(StackOptions {
        params: vec![
            ("AuditWindowMinutes", "120".into()),
            ("MaxEventAgeDays", age_days.max(7).to_string()),
        ],
        ..Default::default()
    });

    // recommend: a ranked list from the model fetched from S3, with provenance.
    let r = stack.invoke("recommend", "recommend.json");
    let (code, body) = api_response(&r);
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        r["multiValueHeaders"]["x-request-id"][0],
        "sam-local-request-1"
    );
    assert_eq!(body["user_id"], 1);
    assert_eq!(body["items"].as_array().unwrap().len(), 5);
    let p = &body["provenance"];
    assert_eq!(p["model_version"], "demo-1");
    assert_eq!(p["function_version"], "$LATEST");
    assert_eq!(p["request_id"], "sam-local-request-1");
    assert!(p["model_sha256"].as_str().unwrap().len() == 64);
    assert!(p["fallback"].is_null());
    // The model came through the function's /tmp cache, verified.
    assert!(stack
        .function_tmp("recommend")
        .join("movie-recs-models")
        .join(&stack.names.bucket)
        .join("models/demo-1/model.onnx")
        .is_file());
    // Request metrics left as an EMF line on stdout, no API call.
    let emf = stack.function("recommend").output();
    assert!(
        emf.lines().any(|l| l.contains("\"CloudWatchMetrics\"")
            && l.contains("\"Function\":\"movie-recs-dev-recommend\"")
            && l.contains("\"Route\":\"/recommend/{user_id}\"")),
        "{emf}"
    );

    let (code, body) = api_response(&stack.invoke("recommend", "recommend-bad-k.json"));
    assert_eq!(
        (code, body["error"].as_str()),
        (400, Some("invalid_parameter"))
    );
    assert!(body["detail"].as_str().unwrap().contains('k'));
    let (code, body) = api_response(&stack.invoke("recommend", "healthz.json"));
    assert_eq!((code, &body["model_loaded"]), (200, &json!(true)));

    // trace: the provenance recommend stored in DynamoDB (written after the response).
    let start = Instant::now();
    let trace = loop {
        let (code, body) = api_response(&stack.invoke("trace", "trace.json"));
        if code == 200 {
            break body;
        }
        assert_eq!(code, 404);
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "trace never appeared"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(trace["request_id"], "sam-local-request-1");
    assert_eq!(trace["items"], body_items(&stack));
    assert_eq!(trace["model_version"], "demo-1");

    // rollout: status, an unsigned switch refused, a signed one applied.
    let (code, body) = api_response(&stack.invoke("rollout", "rollout-status.json"));
    assert_eq!((code, body["revision"].as_u64()), (200, Some(0)));
    let (code, body) = api_response(&stack.invoke("rollout", "switch-unsigned.json"));
    assert_eq!((code, body["error"].as_str()), (401, Some("unauthorized")));
    let (code, body) = api_response(&stack.invoke("rollout", "switch.json"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"]["served_version"], "demo-1");
    assert_eq!(
        body["state"]["updated_by"],
        "arn:aws:iam::123456789012:user/admin"
    );
    assert_eq!(body["state"]["revision"], 1);
    let (code, body) = api_response(&stack.invoke("rollout", "rollout-set.json"));
    assert_eq!((code, &body["state"]["revision"]), (200, &json!(2)));
    let (_, body) = api_response(&stack.invoke("rollout", "rollout-status.json"));
    assert_eq!(
        (body["served_version"].as_str(), body["revision"].as_u64()),
        (Some("demo-1"), Some(2))
    );
    // The experiment routes and the scheduled canary: a fixed rollout has
    // nothing to act on, and the canary says so without failing.
    let (code, body) = api_response(&stack.invoke("rollout", "experiment-analyze.json"));
    assert_eq!(
        (code, body["action"].as_str()),
        (200, Some("none")),
        "{body}"
    );
    assert_eq!(body["strategy"], "fixed");
    let (code, body) = api_response(&stack.invoke("rollout", "experiment-promote-dry-run.json"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (body["dry_run"].as_bool(), body["applied"].as_bool()),
        (Some(true), Some(false))
    );
    let c = stack.invoke("canary", "canary-schedule.json");
    assert_eq!(
        (c["status"].as_str(), c["action"].as_str()),
        (Some("analysed"), Some("none")),
        "{c}"
    );
    assert_eq!(c["published"], 2, "{c}");
    // Through the real CloudWatch adapter to the stand-in endpoint.
    let m = stack.cloudwatch.data();
    assert!(
        m.iter()
            .any(|d| d["name"] == "CanaryRollback" && d["namespace"] == "MovieRecs"),
        "{m:?}"
    );

    // ingest: HTTP with a per-record result; Kafka batches from MSK and self-managed.
    let (code, body) = api_response(&stack.invoke("ingest", "events.json"));
    assert_eq!(code, 207, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(body["results"][2]["reason"]
        .as_str()
        .unwrap()
        .starts_with("user_id"));
    assert_eq!(body["results"][0]["status"], "accepted");
    let msk = stack.invoke("ingest", "ingest-msk.json");
    assert_eq!(
        (msk["accepted"].as_u64(), msk["rejected"].as_u64()),
        (Some(4), Some(2)),
        "{msk}"
    );
    // Kafka redelivers the batch: every record is a duplicate.
    let again = stack.invoke("ingest", "ingest-msk.json");
    assert_eq!(again["duplicates"], 6, "{again}");
    let smk = stack.invoke("ingest", "ingest-self-managed.json");
    assert_eq!(smk["accepted"], 1, "{smk}");
    let keys = lake_keys(&stack);
    let count = |p: &str| keys.iter().filter(|k| k.starts_with(p)).count();
    assert_eq!(
        count("lake/events/type=watch/dt=2026-11-28/hour=20/"),
        2,
        "{keys:?}"
    );
    assert_eq!(count("lake/events/type=rate/"), 2, "{keys:?}");
    assert_eq!(count("lake/events/type=reco_response/"), 2, "{keys:?}");
    assert_eq!(count("lake/rejected/source=kafka/"), 1, "{keys:?}");
    assert_eq!(count("lake/rejected/source=http/"), 1, "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains("incoming/")));
    // Accepted watches reached the DynamoDB history that recommend reads.
    let (url, table) = (stack.moto.url(), stack.names.history_table.clone());
    let seen = shared::adapters::aws::block_on(async move {
        use shared::ports::UserHistory;
        let cfg = sdk_config(&url).await;
        shared::adapters::aws::dynamo::DynamoHistory::new(
            aws_sdk_dynamodb::Client::new(&cfg),
            &table,
        )
        .seen(2)
        .await
        .unwrap()
    });
    assert_eq!(seen, vec![51]);

    // audit: the scheduled event audits the 2 hours before it (the stack's
    // MOVIE_RECS_AUDIT_WINDOW_MINUTES): the lake's events of 19:00-21:00
    // (reco_responses of 3 and 2 movies from MSK and self-managed Kafka, two
    // valid ratings, three watches); catalogue of the served model demo-1
    // (200 movies).
    let a = stack.invoke("audit", "audit-schedule.json");
    assert_eq!(a["status"], "audited", "{a}");
    assert_eq!(
        a["window"],
        json!({"from_ms": 1_795_896_000_000i64 - 3_600_000, "to_ms": 1_795_899_600_000i64})
    );
    assert_eq!(
        (a["requests"].as_u64(), a["exposures"].as_u64()),
        (Some(2), Some(5))
    );
    assert_eq!(a["catalog_coverage"], 3.0 / 200.0);
    assert_eq!(a["rating_events"], 2, "{a}");
    let keys = common::bucket_keys(&stack, "reports/");
    for f in [
        "report.json",
        "report.md",
        "lorenz.svg",
        "tiers.svg",
        "spam.svg",
    ] {
        let k = format!("reports/audit/dt=2026-11-28/210000Z/{f}");
        assert!(keys.contains(&k), "{k} not in {keys:?}");
    }
    assert!(keys.contains(&"reports/audit/latest.json".to_string()));
    let before: usize = 2; // the canary's two data points above
    let metrics = stack.cloudwatch.data();
    let cov: Vec<&serde_json::Value> = metrics
        .iter()
        .filter(|m| m["name"] == "CatalogCoverage")
        .collect();
    assert_eq!(
        cov[0]["dimensions"],
        json!({"Stage": "dev", "model_version": "all", "variant": "all"})
    );
    assert_eq!(cov[1]["dimensions"]["model_version"], "demo-1");
    assert_eq!(
        a["published"].as_u64(),
        Some((metrics.len() - before) as u64)
    );
    // The window ending now holds the traces of the recommend calls above,
    // read through the traces table's time index.
    let now = chrono::Utc::now() + chrono::Duration::minutes(1);
    let payload = format!(
        r#"{{"version":"0","id":"y","detail-type":"Scheduled Event","source":"aws.events","account":"1","time":"{}","region":"eu-west-1","resources":[],"detail":{{}}}}"#,
        now.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let (code, out) = stack.invoke_raw("audit", payload.as_bytes());
    let now_audit: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(code, 200, "{now_audit}");
    // recommend.json ran twice with one request id: the second got a fresh
    // id, so two traces of 5 movies (of the same list).
    assert_eq!(
        (
            now_audit["requests"].as_u64(),
            now_audit["exposures"].as_u64()
        ),
        (Some(2), Some(10)),
        "{now_audit}"
    );
    assert_eq!(now_audit["catalog_coverage"], 5.0 / 200.0);
    // Ingest's dead letters land by receive time: the 3 rejected records above.
    assert_eq!(now_audit["schema_errors"], 3);
    let (code, out) = stack.invoke_raw(
        "audit",
        br#"{"version":"0","id":"x","detail-type":"Object Created","source":"aws.s3","account":"1","time":"2026-11-28T20:00:00Z","region":"eu-west-1","resources":[],"detail":{}}"#,
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        code >= 400 || text.contains("errorMessage"),
        "{code} {text}"
    );
    assert!(text.contains("Scheduled Event"), "{text}");

    // Fold-in on the Lambda path: the default (history-input) model reads a
    // user's DynamoDB history. A user the model never saw, with one watch
    // posted through ingest, gets a personal list; one without events gets
    // the popularity fallback.
    let (code, body) = api_response(&stack.invoke("recommend", "recommend.json"));
    assert_eq!(code, 200);
    assert_eq!(body["provenance"]["user_vector"], "history", "{body}");
    let with_body = |file: &str, f: &dyn Fn(&mut serde_json::Value)| {
        let mut e: serde_json::Value = serde_json::from_slice(
            &std::fs::read(common::repo_root().join("events").join(file)).unwrap(),
        )
        .unwrap();
        f(&mut e);
        e
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let post = with_body("events.json", &|e| {
        e["body"] = json!(
            json!([{"type": "watch", "user_id": 9001, "movie_id": 50, "ts": now_ms}]).to_string()
        );
    });
    let (code, out) = stack.invoke_raw("ingest", &serde_json::to_vec(&post).unwrap());
    let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (code, api_response(&out).1["accepted"].as_u64()),
        (200, Some(1)),
        "{out}"
    );
    let recommend = |user: u64| {
        let e = with_body("recommend.json", &|e| {
            e["path"] = json!(format!("/recommend/{user}"));
            e["pathParameters"] = json!({"user_id": user.to_string()});
            e["requestContext"]["requestId"] = json!(format!("fold-in-{user}"));
            e["headers"]
                .as_object_mut()
                .unwrap()
                .retain(|k, _| !k.eq_ignore_ascii_case("x-request-id"));
            e["multiValueHeaders"]
                .as_object_mut()
                .unwrap()
                .retain(|k, _| !k.eq_ignore_ascii_case("x-request-id"));
        });
        let (code, out) = stack.invoke_raw("recommend", &serde_json::to_vec(&e).unwrap());
        let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(code, 200, "{out}");
        api_response(&out).1
    };
    let new_user = recommend(9001);
    let p = &new_user["provenance"];
    assert!(p["fallback"].is_null(), "{new_user}");
    assert_eq!(p["user_vector"], "history", "{new_user}");
    assert!(!new_user["items"].as_array().unwrap().contains(&json!(50)));
    let nobody = recommend(9002);
    assert!(!nobody["provenance"]["fallback"].is_null(), "{nobody}");
    assert!(nobody["provenance"]["user_vector"].is_null(), "{nobody}");

    // The catalogue routes of the recommend function: trending counts the
    // watch ingest just wrote to DynamoDB; similar and popular answer from
    // the artifact (neighbours.bin, training popularity) with filters.
    let (code, t) = api_response(&stack.invoke("recommend", "trending.json"));
    assert_eq!(code, 200, "{t}");
    let counted = t["recommendations"].as_array().unwrap();
    assert!(
        counted
            .iter()
            .any(|r| r["movie_id"] == 50 && r["count"].as_u64() >= Some(1)),
        "{t}"
    );
    let (code, sim) = api_response(&stack.invoke("recommend", "similar.json"));
    assert_eq!(code, 200, "{sim}");
    let items = sim["items"].as_array().unwrap();
    assert_eq!(items.len(), 5, "{sim}");
    assert!(!items.contains(&json!(50)));
    assert_eq!(sim["provenance"]["order"], "user_score");
    let (code, pop) = api_response(&stack.invoke("recommend", "popular.json"));
    assert_eq!(code, 200, "{pop}");
    let recs = pop["recommendations"].as_array().unwrap();
    assert_eq!(recs.len(), 5);
    assert!(recs
        .iter()
        .all(|r| r["genres"].as_array().unwrap().contains(&json!("Comedy"))));
    // The function serves the API's contract.
    let (code, doc) = api_response(&stack.invoke("recommend", "openapi.json"));
    assert_eq!(code, 200, "{doc}");
    assert!(
        doc["paths"]["/similar/{movie_id}"]["get"].is_object(),
        "{doc}"
    );

    // Batch recommendations: template.yaml's state machine, interpreted
    // step by step against the batch function (plan, a Distributed Map of
    // shards, finish), on the served version's 300 users in shards of 128.
    batch_runs(&stack);

    // No function wrote in its (read-only) working directory.
    stack.assert_working_directories_untouched();
}

/// The items of a fresh recommend call for user 1 (the model is deterministic).
/// It reuses recommend.json's X-Request-ID, whose trace exists: the answer
/// comes under a fresh id, says which one it replaced, and the first trace stays.
fn body_items(stack: &LambdaStack) -> serde_json::Value {
    let r = stack.invoke("recommend", "recommend.json");
    let (_, body) = api_response(&r);
    let fresh = r["multiValueHeaders"]["x-request-id"][0].as_str().unwrap();
    assert_ne!(fresh, "sam-local-request-1", "{r}");
    assert_eq!(
        r["multiValueHeaders"]["x-request-id-replaced"][0], "sam-local-request-1",
        "{r}"
    );
    assert_eq!(body["provenance"]["request_id"], fresh);
    body["items"].clone()
}

fn lake_keys(stack: &LambdaStack) -> Vec<String> {
    common::bucket_keys(stack, "lake/")
}

/// Runs template.yaml's batch state machine on the stack and checks what it
/// wrote against what `/recommend` answers.
fn batch_runs(stack: &LambdaStack) {
    let tpl = common::template::Template::load();
    let sm = tpl.resource("BatchStateMachine");
    let def: serde_json::Value = serde_json::to_value(&sm["Properties"]["Definition"]).unwrap();
    let machine = common::states::Machine::new(&def, &[("BatchFunctionArn", "batch")]);
    let invoke = |function: &str, payload: &serde_json::Value| {
        assert_eq!(function, "batch");
        let (code, out) = stack.invoke_raw("batch", &serde_json::to_vec(payload).unwrap());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(
            code == 200 && v.get("errorType").is_none(),
            "{payload} -> {v}\n{}",
            stack.function("batch").output()
        );
        v
    };
    // The committed step events (sam local invoke BatchFunction -e ...).
    let plan = stack.invoke("batch", "batch-plan.json");
    assert_eq!(plan["job"]["model_version"], "demo-1", "{plan}");
    assert_eq!(
        plan["shards"],
        json!([{"index": 0, "from": 0, "to": 128}, {"index": 1, "from": 128, "to": 256},
               {"index": 2, "from": 256, "to": 300}])
    );
    let shard = stack.invoke("batch", "batch-shard.json");
    assert_eq!(
        (shard["key"].as_str(), shard["rows"].as_u64()),
        (Some("sam-local-run-1/part-00000.parquet"), Some(128))
    );
    let done = stack.invoke("batch", "batch-finish.json");
    assert_eq!(done["rows"], 128, "{done}");
    assert!(common::bucket_keys(stack, "batch/sam-local-run-1/")
        .contains(&"batch/sam-local-run-1/manifest.json".to_string()));
    // The committed execution input (one shard of every user).
    let input: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::repo_root().join("events/batch-execution-input.json")).unwrap(),
    )
    .unwrap();
    let (manifest, _) = machine.run("run-input", input, &invoke);
    assert_eq!(
        (manifest["rows"].as_u64(), manifest["k"].as_u64()),
        (Some(300), Some(20))
    );

    let input = json!({"users": "all", "k": 5, "shard_users": 128, "max_concurrency": 4});
    let (manifest, concurrency) = machine.run("run-all", input, &invoke);
    assert_eq!(concurrency, vec![4]);
    assert_eq!(
        (manifest["users"].as_u64(), manifest["rows"].as_u64()),
        (Some(300), Some(300)),
        "{manifest}"
    );
    assert_eq!(manifest["model_version"], "demo-1");
    assert_eq!(manifest["shards"].as_array().unwrap().len(), 3);
    let keys = common::bucket_keys(stack, "batch/run-all/");
    assert_eq!(
        keys,
        [
            "batch/run-all/manifest.json",
            "batch/run-all/part-00000.parquet",
            "batch/run-all/part-00001.parquet",
            "batch/run-all/part-00002.parquet"
        ]
    );
    // Every row is the list /recommend answers that user (same k, policy,
    // and the DynamoDB history: user 2's watch of movie 51 is masked).
    let rows: Vec<shared::batch::Row> = keys[1..]
        .iter()
        .flat_map(|k| shared::batch::from_parquet(object(stack, k)).unwrap())
        .collect();
    assert_eq!(rows.len(), 300);
    for user in [1u64, 2, 150, 300] {
        let row = rows.iter().find(|r| r.user_id == user).unwrap();
        let (code, out) = stack.invoke_raw("recommend", &LambdaStack::recommend_event(user));
        assert_eq!(code, 200);
        let (_, body) = api_response(&serde_json::from_slice(&out).unwrap());
        assert_eq!(json!(row.movie_ids), body["items"], "user {user}");
        assert_eq!(row.policy, "slots:slots=3");
    }
    assert!(!rows
        .iter()
        .find(|r| r.user_id == 2)
        .unwrap()
        .movie_ids
        .contains(&51));

    // A list of users from the batch store, in JSON lines, with a filter.
    put_object(stack, "batch/lists/few.txt", b"# three users\n2\n9001\n7\n");
    let input = json!({"users": "lists/few.txt", "k": 3, "format": "jsonl",
                       "filter": {"genre": "Comedy"}, "policy": "none"});
    let (manifest, _) = machine.run("run-few", input, &invoke);
    assert_eq!(
        (manifest["users"].as_u64(), manifest["rows"].as_u64()),
        (Some(3), Some(3))
    );
    let lines = String::from_utf8(object(stack, "batch/run-few/part-00000.jsonl")).unwrap();
    let users: Vec<u64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["user_id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(users, [2, 9001, 7], "in the list's order");

    // A bad input fails the plan step naming the field (the execution fails).
    let (code, out) = stack.invoke_raw(
        "batch",
        br#"{"action": "plan", "run": "bad", "input": {"filter": {"genre": "Nope"}}}"#,
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        code >= 400 || text.contains("errorMessage"),
        "{code} {text}"
    );
    assert!(text.contains("filter.genre"), "{text}");
}

fn object(stack: &LambdaStack, key: &str) -> Vec<u8> {
    let (url, bucket, key) = (
        stack.moto.url(),
        stack.names.bucket.clone(),
        key.to_string(),
    );
    shared::adapters::aws::block_on(async move {
        let s3 = shared::adapters::aws::s3_client(&sdk_config(&url).await);
        let o = s3
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        o.body.collect().await.unwrap().into_bytes().to_vec()
    })
}

fn put_object(stack: &LambdaStack, key: &str, bytes: &[u8]) {
    let (url, bucket, key, bytes) = (
        stack.moto.url(),
        stack.names.bucket.clone(),
        key.to_string(),
        bytes.to_vec(),
    );
    shared::adapters::aws::block_on(async move {
        let s3 = shared::adapters::aws::s3_client(&sdk_config(&url).await);
        s3.put_object()
            .bucket(&bucket)
            .key(&key)
            .body(bytes.into())
            .send()
            .await
            .unwrap();
    });
}
