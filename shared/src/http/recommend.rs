//! The recommend function's handlers: `GET /recommend/{user_id}`,
//! `GET /trace/{request_id}`, `GET /healthz`, `GET /metrics`.

use super::{parse_k, parse_user_id, well_formed_request_id, ApiError, AppState, Assignment};
use super::{LogFields, RequestId, K_MAX};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

pub(super) async fn recommend(
    State(st): State<Arc<AppState>>,
    Extension(RequestId(rid)): Extension<RequestId>,
    Path(user): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    if let Some(every) = st.config.reload_every {
        st.sync_if_due(every);
    }
    let user_id = parse_user_id(&user).map_err(ApiError::InvalidParameter)?;
    let k = parse_k(&q).map_err(ApiError::InvalidParameter)?;
    let arm_policy = |arm: &Assignment| {
        arm.policy
            .as_deref()
            .and_then(|p| crate::domain::rerank::Policy::from_spec(p, K_MAX).ok())
            .unwrap_or(st.config.default_policy)
            .for_k(k)
    };
    let policy = match q.get("policy") {
        None => None,
        Some(name) => Some(
            crate::domain::rerank::Policy::parse(name, &q, k)
                .map_err(ApiError::InvalidParameter)?,
        ),
    };
    let serving = st
        .serving()
        .ok_or_else(|| ApiError::unavailable("no_model", "no model version is loaded"))?;
    let arm = serving.assign(user_id);
    let policy = policy.unwrap_or_else(|| arm_policy(&arm));
    let model = arm.model.clone();
    let seen = st.history()?.seen(user_id).await.unwrap_or_else(|e| {
        st.metrics.history_read_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(request_id = %rid, error = %e, "user history unavailable; excluding training history only");
        Vec::new()
    });
    let ranked = match model.recommend_with(user_id, k, &seen, policy) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(request_id = %rid, error = %e, "scoring failed");
            // Failed requests are traced too: an arm's error rate comes from them.
            let now_ms = chrono::Utc::now().timestamp_millis();
            let trace = json!({
                "request_id": rid,
                "timestamp": now_ms,
                "model_version": model.version(),
                "latency_ms": start.elapsed().as_secs_f64() * 1e3,
                "strategy": arm.strategy,
                "arm": arm.arm,
                "experiment_id": arm.experiment_id,
                "user_id": user_id,
                "k": k,
                "variant": arm.variant,
                "status": 500,
                "error": "scoring_failed",
                "path": format!("/recommend/{user}"),
                "stored_at": now_ms,
            });
            let write = put_trace(st.clone(), rid.clone(), trace, now_ms);
            if st.config.trace_before_response {
                write.await;
            } else {
                tokio::spawn(write);
            }
            return Err(ApiError::internal(
                "scoring_failed",
                "the model could not score this request",
            ));
        }
    };
    let m = &model.manifest;
    let items: Vec<u64> = ranked
        .items
        .iter()
        .map(|(i, _)| m.items[*i as usize].movie_id)
        .collect();
    let recs: Vec<Value> = ranked
        .items
        .iter()
        .map(|(i, s)| {
            let it = &m.items[*i as usize];
            json!({"movie_id": it.movie_id, "title": it.title, "genres": it.genres, "score": s})
        })
        .collect();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let provenance = json!({
        "request_id": rid,
        "timestamp": now_ms,
        "model_name": m.name,
        "model_version": m.version,
        "model_sha256": m.model_sha256().unwrap_or_default(),
        "git_sha": m.git_sha,
        "data_snapshot_id": m.data.snapshot_id,
        "function_version": st.config.function_version,
        "latency_ms": start.elapsed().as_secs_f64() * 1e3,
        "fallback": ranked.fallback,
        "strategy": arm.strategy,
        "arm": arm.arm,
        "experiment_id": arm.experiment_id,
        "policy": policy.name(),
        "policy_params": policy.params(),
    });
    let body = json!({
        "user_id": user_id,
        "model": m.version,
        "items": items,
        "recommendations": recs,
        "variant": arm.variant,
        "provenance": provenance,
    });
    // The trace is written after the response is on its way.
    let mut trace = provenance.as_object().cloned().unwrap_or_default();
    trace.insert("user_id".into(), json!(user_id));
    trace.insert("k".into(), json!(k));
    trace.insert("items".into(), json!(items));
    trace.insert("variant".into(), json!(arm.variant));
    trace.insert("status".into(), json!(200));
    trace.insert("path".into(), json!(format!("/recommend/{user}")));
    trace.insert("stored_at".into(), json!(now_ms));
    let write = {
        let (store, rid2) = (st.clone(), rid.clone());
        let shadow = arm.shadow.clone();
        async move {
            // The candidate's list under shadow: recorded, never served.
            if let Some(c) = shadow {
                let list = c.recommend(user_id, k, &seen).map(|r| {
                    r.items
                        .iter()
                        .map(|(i, _)| c.manifest.items[*i as usize].movie_id)
                        .collect::<Vec<u64>>()
                });
                trace.insert(
                    "shadow".into(),
                    match list {
                        Ok(items) => json!({"model_version": c.version(), "items": items}),
                        Err(e) => json!({"model_version": c.version(), "error": e.to_string()}),
                    },
                );
            }
            put_trace(store, rid2, Value::Object(trace), now_ms).await;
        }
    };
    if st.config.trace_before_response {
        // Lambda freezes the sandbox once the response is sent, so a write
        // left running would stall until the next invocation (or be lost).
        write.await;
    } else {
        tokio::spawn(write);
    }
    let mut resp = Json(body).into_response();
    resp.extensions_mut().insert(LogFields {
        user_id: Some(user_id),
        model_version: Some(m.version.clone()),
        fallback: ranked.fallback,
    });
    Ok(resp)
}

/// Stores a trace written at `now_ms`; a failure is logged and counted,
/// never passed on.
async fn put_trace(st: Arc<AppState>, rid: String, trace: Value, now_ms: i64) {
    let expires = now_ms / 1000 + st.config.trace_ttl_secs;
    let written = match st.traces() {
        Ok(t) => t
            .put(&rid, &trace, expires)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = written {
        st.metrics
            .trace_write_failures
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(request_id = %rid, error = %e, "trace write failed");
    }
}

pub(super) async fn trace(
    State(st): State<Arc<AppState>>,
    Path(request_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !well_formed_request_id(&request_id) {
        return Err(ApiError::InvalidParameter(
            "request_id must be 1-128 characters of A-Z a-z 0-9 . _ : -".into(),
        ));
    }
    let now = chrono::Utc::now().timestamp();
    match st.traces()?.get(&request_id, now).await? {
        Some(t) => Ok(Json(t)),
        None => Err(ApiError::NotFound(format!(
            "no trace for request {request_id} (unknown or expired)"
        ))),
    }
}

pub(super) async fn health(State(st): State<Arc<AppState>>) -> Response {
    let serving = st.serving();
    let model = serving.as_ref().map(|s| s.primary.clone());
    let traces = match st.traces() {
        Ok(t) => match t.ping().await {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        },
        Err(e) => format!("error: {e}"),
    };
    let rollout = match st.rollout() {
        Ok(r) => match r.state().await {
            Ok(Some(s)) => json!(s),
            Ok(None) => json!({"strategy": "fixed", "served_version": null}),
            Err(e) => json!({"error": e.to_string()}),
        },
        Err(e) => json!({"error": e.to_string()}),
    };
    let body = json!({
        "status": if model.is_some() { "ok" } else { "unavailable" },
        "model_loaded": model.is_some(),
        "serving_versions": serving.as_ref().map(|s| s.versions()).unwrap_or_default(),
        "rollout": rollout,
        "stores": {"traces": traces},
    });
    let code = if model.is_some() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

pub(super) async fn metrics_page(State(st): State<Arc<AppState>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        st.metrics.render(),
    )
        .into_response()
}
