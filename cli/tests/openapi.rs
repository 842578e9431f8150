//! `GET /openapi.json` against the real router: every operation the
//! document lists is called here (a route described but not exercised fails
//! the test, and tests/tests/template_config.rs fails a deployed route the
//! document lacks); each answer's status is one the operation documents and
//! its body validates against the documented schema (JSON Schema 2020-12,
//! as OpenAPI 3.1 defines); every schema's example validates too and shows
//! every field the real answers carry.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::model::{history_model, HistoryModel};
use common::router::state_on;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use shared::adapters::local::{FileMetrics, FolderLake, SqliteStore};
use shared::canary::{job::ExperimentJob, CanaryConfig};
use shared::http::{router, sync_model, ApiConfig, ApiStores, AppState};
use std::collections::BTreeSet;
use std::sync::Arc;
use tower::ServiceExt;

const TOKEN: &str = "openapi-test-token";

fn state(m: &HistoryModel, dir: &std::path::Path) -> Arc<AppState> {
    let db = Arc::new(SqliteStore::in_memory().unwrap());
    let job = ExperimentJob {
        traces: db.clone(),
        lake: Arc::new(FolderLake::new(dir.join("lake"))),
        registry: m.reg.clone(),
        rollout: db.clone(),
        metrics: Arc::new(FileMetrics::new(dir.join("metrics.jsonl"))),
        stage: "test".into(),
        config: CanaryConfig::default(),
        window_minutes: 60,
        catalog: None,
    };
    let config = ApiConfig {
        admin_token: Some(TOKEN.into()),
        trace_before_response: true,
        ..ApiConfig::default()
    };
    Arc::new(
        state_on(db, &dir.join("lake"), config)
            .with_registry(m.reg.clone())
            .with_experiments(job),
    )
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

async fn call(
    st: &Arc<AppState>,
    method: &str,
    uri: &str,
    body: Option<Value>,
    admin: bool,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if admin {
        req = req.header("authorization", format!("Bearer {TOKEN}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .unwrap();
    let resp = router(st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}

/// A validator of `schema` (a fragment of `doc`, whose `$ref`s point into
/// its components).
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    jsonschema::draft202012::new(&root)
        .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}"))
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling {r}")),
        None => schema,
    }
}

/// The object or array schema within `schema` (through `$ref` and the
/// `oneOf` of a nullable field), if any.
fn structured<'a>(doc: &'a Value, schema: &'a Value) -> Option<&'a Value> {
    let s = resolve(doc, schema);
    if s.get("properties").is_some() || s.get("items").is_some() {
        return Some(s);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(alts) = s[key].as_array() {
            if let Some(found) = alts.iter().find_map(|a| structured(doc, a)) {
                return Some(found);
            }
        }
    }
    None
}

/// Every documented field `real` has (recursively through the schema's
/// properties and items) is in `example`, with the same JSON type where both
/// are set: the example shows what the route really answers. Free-form
/// objects of the schema (policy parameters, stored states) are not walked.
fn shows(
    doc: &Value,
    schema: &Value,
    example: &Value,
    real: &Value,
    at: &str,
) -> Result<(), String> {
    let Some(s) = structured(doc, schema) else {
        return match (example, real) {
            (Value::Null, _) | (_, Value::Null) => Ok(()),
            (e, r) if std::mem::discriminant(e) == std::mem::discriminant(r) => Ok(()),
            (e, r) => Err(format!("{at}: the example has {e}, the route answered {r}")),
        };
    };
    match (example, real) {
        (Value::Object(e), Value::Object(r)) => {
            for (k, rv) in r {
                let ev = e
                    .get(k)
                    .ok_or_else(|| format!("{at}.{k} is answered but not in the example"))?;
                let sub = &s["properties"][k];
                shows(doc, sub, ev, rv, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(r)) => match (e.first(), r.first()) {
            (Some(e0), Some(r0)) => shows(doc, &s["items"], e0, r0, &format!("{at}[0]")),
            _ => Ok(()),
        },
        (Value::Null, _) | (_, Value::Null) => Ok(()),
        (e, r) => Err(format!("{at}: the example has {e}, the route answered {r}")),
    }
}

/// The documented operation of `method` + the request's path.
fn operation<'a>(doc: &'a Value, method: &str, uri: &str) -> (String, &'a Value) {
    let path = uri.split('?').next().unwrap();
    let segs: Vec<&str> = path.split('/').collect();
    for (template, ops) in doc["paths"].as_object().unwrap() {
        let t: Vec<&str> = template.split('/').collect();
        let matches = t.len() == segs.len()
            && t.iter()
                .zip(&segs)
                .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')));
        if matches {
            if let Some(op) = ops.get(method.to_lowercase()) {
                return (format!("{method} {template}"), op);
            }
        }
    }
    panic!("{method} {path} is served but not in /openapi.json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_answers_as_documented() {
    let m = history_model("c");
    let dir = tempfile::tempdir().unwrap();
    let st = state(&m, dir.path());
    sync_model(&st, m.reg.clone()).await.unwrap();

    let a = call(&st, "GET", "/openapi.json", None, false).await;
    assert_eq!(a.status, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&a.body).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );

    // Every schema's example is valid.
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        if let Some(ex) = schema.get("example") {
            let v = validator(
                &doc,
                &json!({"$ref": format!("#/components/schemas/{name}")}),
            );
            let errs: Vec<String> = v
                .iter_errors(ex)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            assert!(
                errs.is_empty(),
                "the example of {name} is invalid: {errs:?}"
            );
        }
    }

    let genre = m.ds.items[0].genres[0].clone();
    let movie = m.ds.items[0].movie_id;
    let user = m.ds.user_ids[0];
    let now = chrono::Utc::now().timestamp_millis();
    let events = json!([
        {"type": "watch", "user_id": user, "movie_id": movie, "ts": now, "event_id": "w-1"},
        {"type": "rate", "user_id": user, "movie_id": movie, "rating": 4.5, "ts": now, "event_id": "r-1"},
    ]);
    let mixed = json!([
        {"type": "watch", "user_id": 7, "movie_id": movie, "ts": now},
        {"type": "rate", "user_id": 7, "movie_id": movie, "rating": 7, "ts": now},
    ]);
    let canary = json!({"strategy": "canary", "primary_version": "c", "candidate_version": "c",
        "percentage": 10, "candidate_policy": "mmr:lambda=0.5"});
    // (method, uri, body, admin)
    let mut requests: Vec<(&str, String, Option<Value>, bool)> = vec![
        ("POST", "/events".into(), Some(events), false),
        ("POST", "/events".into(), Some(mixed), false),
        ("POST", "/events".into(), None, false),
        ("GET", format!("/recommend/{user}?k=5"), None, false),
        (
            "GET",
            format!("/recommend/{user}?k=3&genre={genre}&year_from=1900&policy=mmr&lambda=0.3"),
            None,
            false,
        ),
        ("GET", "/recommend/999999?k=3".into(), None, false),
        ("GET", "/recommend/abc".into(), None, false),
        (
            "GET",
            format!("/recommend/{user}?genre=Westerns"),
            None,
            false,
        ),
        ("GET", format!("/similar/{movie}?k=5"), None, false),
        (
            "GET",
            format!("/similar/{movie}?k=5&user_id={user}&exclude_genre={genre}"),
            None,
            false,
        ),
        ("GET", "/similar/99999999".into(), None, false),
        ("GET", "/popular?k=5".into(), None, false),
        ("GET", format!("/popular?k=100&genre={genre}"), None, false),
        ("GET", "/trending?k=5&hours=24".into(), None, false),
        ("GET", "/trending?hours=0".into(), None, false),
        ("GET", "/trace/unknown-id".into(), None, false),
        ("GET", "/trace/bad%20id".into(), None, false),
        ("GET", "/healthz".into(), None, false),
        ("GET", "/health".into(), None, true),
        ("GET", "/health".into(), None, false),
        ("GET", "/metrics".into(), None, false),
        ("GET", "/rollout/status".into(), None, false),
        ("POST", "/switch?model=c".into(), None, true),
        ("POST", "/switch?model=nope".into(), None, true),
        ("POST", "/switch?model=c".into(), None, false),
        ("POST", "/rollout".into(), Some(canary), true),
        (
            "POST",
            "/rollout".into(),
            Some(json!({"strategy": "sideways"})),
            true,
        ),
        ("GET", "/rollout/status".into(), None, false),
        ("GET", "/rollout/changes?limit=5".into(), None, false),
        (
            "GET",
            "/experiment/analyze?window_minutes=60".into(),
            None,
            false,
        ),
        (
            "POST",
            "/experiment/promote?dry_run=true".into(),
            None,
            true,
        ),
        ("GET", "/openapi.json".into(), None, false),
    ];
    // The trace of a list served above.
    let first = call(&st, "GET", &format!("/recommend/{user}?k=2"), None, false).await;
    let rid = serde_json::from_slice::<Value>(&first.body).unwrap()["provenance"]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    requests.push(("GET", format!("/trace/{rid}"), None, false));

    let mut exercised = BTreeSet::new();
    let mut statuses = BTreeSet::new();
    for (method, uri, body, admin) in requests {
        let a = call(&st, method, &uri, body, admin).await;
        let (op_name, op) = operation(&doc, method, &uri);
        let code = a.status.as_u16().to_string();
        let text = String::from_utf8_lossy(&a.body).to_string();
        let documented = op["responses"].get(&code).unwrap_or_else(|| {
            panic!("{method} {uri} answered {code}, which {op_name} does not document: {text}")
        });
        exercised.insert(op_name.clone());
        statuses.insert((op_name.clone(), code.clone()));
        let content = documented["content"]
            .as_object()
            .expect("a documented body");
        let (ct, media) = content.iter().next().unwrap();
        assert!(
            a.content_type.starts_with(ct.as_str()),
            "{method} {uri}: content-type {} but documented {ct}",
            a.content_type
        );
        if ct != "application/json" {
            continue;
        }
        let real: Value = serde_json::from_slice(&a.body)
            .unwrap_or_else(|e| panic!("{method} {uri}: not JSON ({e}): {text}"));
        let Some(schema) = media.get("schema") else {
            continue;
        };
        let errs: Vec<String> = validator(&doc, schema)
            .iter_errors(&real)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errs.is_empty(),
            "{method} {uri} ({code}) does not match its schema: {errs:?}\n{real}"
        );
        if let Some(ex) = resolve(&doc, schema).get("example") {
            if let Err(e) = shows(&doc, schema, ex, &real, "$") {
                panic!("{op_name} ({code}): {e}; answered {real}");
            }
        }
    }
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{} {p}", m.to_uppercase()))
        })
        .collect();
    let missing: Vec<_> = documented.difference(&exercised).collect();
    assert!(
        missing.is_empty(),
        "documented but never called here: {missing:?}"
    );
    // The answers seen include the errors, not only the 200s.
    for (op, code) in [
        ("GET /recommend/{user_id}", "400"),
        ("GET /similar/{movie_id}", "404"),
        ("POST /events", "207"),
        ("POST /events", "415"),
        ("GET /health", "401"),
        ("GET /trace/{request_id}", "404"),
    ] {
        assert!(
            statuses.contains(&(op.to_string(), code.to_string())),
            "{op} never answered {code}"
        );
    }
}

/// Each function serves the whole document at `/openapi.json`, and a
/// document route unknown to a function is its 404 JSON.
#[tokio::test]
async fn the_document_names_every_function_slice() {
    let doc: Value = serde_json::from_str(shared::http::openapi::document()).unwrap();
    let paths: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for p in [
        "/recommend/{user_id}",
        "/similar/{movie_id}",
        "/popular",
        "/trending",
        "/trace/{request_id}",
        "/events",
        "/rollout",
        "/switch",
        "/openapi.json",
    ] {
        assert!(paths.contains(p), "{p} missing from {paths:?}");
    }
    let st = Arc::new(AppState::with_stores(
        ApiStores::default(),
        ApiConfig::default(),
    ));
    for r in [
        shared::http::recommend_router(st.clone()),
        shared::http::trace_router(st.clone()),
    ] {
        let resp = r
            .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), doc);
    }
}
