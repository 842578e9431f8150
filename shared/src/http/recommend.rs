//! The recommend function's handlers: `GET /recommend/{user_id}`,
//! `GET /trace/{request_id}`, `GET /healthz`, `GET /metrics`.

use super::{parse_k, parse_user_id, well_formed_request_id, ApiError, AppState, Assignment};
use super::{ClientRequestId, LogFields, RequestId, ServedRequestId, K_MAX};
use crate::domain::filter::Filter;
use crate::domain::rerank::Policy;
use crate::domain::trace::{ShadowList, Trace};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// A user's personal top-k: scored by the model of their rollout arm, seen
/// movies left out, filtered, re-ranked; a user with no events gets the
/// popularity fallback.
#[utoipa::path(get, path = "/recommend/{user_id}", tag = "recommend",
    params(("user_id" = u64, Path, description = "Non-negative integer"),
        super::openapi::PolicyQuery, super::openapi::ListQuery),
    security((), ("api_key" = [])),
    responses((status = 200, description = "The list", body = super::openapi::RecommendResponse),
        super::openapi::BadParameter,
        super::openapi::Unavailable))]
pub(super) async fn recommend(
    State(st): State<Arc<AppState>>,
    Extension(RequestId(client_rid)): Extension<RequestId>,
    from_client: Option<Extension<ClientRequestId>>,
    Path(user): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    if let Some(every) = st.config.reload_every {
        st.sync_if_due(every);
    }
    let user_id = parse_user_id(&user)?;
    let k = parse_k(&q)?;
    let policy = match q.get("policy") {
        None => None,
        Some(name) => Some(Policy::parse(name, &q, k)?),
    };
    let serving = st
        .serving()
        .ok_or_else(|| ApiError::unavailable("no_model", "no model version is loaded"))?;
    let filter = super::parse_filter(&q, &serving.primary)?;
    let rid = request_id(&st, &client_rid, from_client.is_some()).await?;
    let arm = serving.assign(user_id);
    let policy = policy.unwrap_or_else(|| arm_policy(&st, &arm, k));
    let model = arm.model.clone();
    // The controller's adjustments rank the `exposure` policy only.
    let adjustments = match policy {
        Policy::Exposure { .. } => arm.adjustments.as_ref(),
        _ => None,
    };
    let seen = st.history()?.seen(user_id).await.unwrap_or_else(|e| {
        st.metrics.history_read_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(request_id = %rid, error = %e, "user history unavailable; excluding training history only");
        Vec::new()
    });
    let mut trace = new_trace(&st, &arm, &rid, &client_rid, user_id, k, policy, &filter);
    trace.adjustments = adjustments.map(|a| a.name.clone());
    trace.path = format!("/recommend/{user}");
    let net = adjustments.map_or(&[][..], |a| &a.net[..]);
    let ranked = match model.recommend_adjusted(user_id, k, &seen, policy, &filter, net) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(request_id = %rid, error = %e, "scoring failed");
            // Failed requests are traced too: an arm's error rate comes from them.
            trace.latency_ms = Some(start.elapsed().as_secs_f64() * 1e3);
            trace.status = 500;
            trace.error = Some("scoring_failed".into());
            let rid = hand_off(&st, trace, None, seen).await.request_id;
            let mut resp =
                ApiError::internal("scoring_failed", "the model could not score this request")
                    .into_response();
            resp.extensions_mut().insert(ServedRequestId(rid));
            return Ok(resp);
        }
    };
    let m = &model.manifest;
    trace.items = ranked
        .items
        .iter()
        .map(|(i, _)| m.items[*i as usize].movie_id)
        .collect();
    trace.fallback = ranked.fallback.map(str::to_string);
    trace.user_vector = ranked.user_vector.map(str::to_string);
    trace.latency_ms = Some(start.elapsed().as_secs_f64() * 1e3);
    // The candidate's list under shadow: recorded, never served.
    let trace = hand_off(&st, trace, arm.shadow.clone(), seen).await;
    let body = response_body(&st, m, &trace, &arm, &ranked, policy, &filter);
    let mut resp = Json(body).into_response();
    resp.extensions_mut().insert(LogFields {
        user_id: Some(user_id),
        model_version: Some(m.version.clone()),
        fallback: ranked.fallback,
    });
    resp.extensions_mut()
        .insert(ServedRequestId(trace.request_id.clone()));
    Ok(resp)
}

/// The policy of an arm that names one (else the service's default), for `k`.
fn arm_policy(st: &AppState, arm: &Assignment, k: usize) -> Policy {
    arm.policy
        .as_deref()
        .and_then(|p| Policy::from_spec(p, K_MAX).ok())
        .unwrap_or(st.config.default_policy)
        .for_k(k)
}

/// The response's id: the client's, unless it already names a trace, which
/// keeps it (a fresh one is drawn). In Lambda the conditional trace write
/// finds that out with no extra read.
async fn request_id(
    st: &AppState,
    client_rid: &str,
    from_client: bool,
) -> Result<String, ApiError> {
    if !from_client || st.config.trace_before_response {
        return Ok(client_rid.to_string());
    }
    let queued = st
        .trace_writer
        .as_ref()
        .is_some_and(|w| !w.reserve(client_rid));
    let now_s = chrono::Utc::now().timestamp();
    if queued || matches!(st.traces()?.get(client_rid, now_s).await, Ok(Some(_))) {
        if !queued {
            if let Some(w) = &st.trace_writer {
                w.release(client_rid);
            }
        }
        return Ok(super::new_request_id());
    }
    Ok(client_rid.to_string())
}

/// The trace of a request about to be ranked: who, with what and how.
#[allow(clippy::too_many_arguments)]
fn new_trace(
    st: &AppState,
    arm: &Assignment,
    rid: &str,
    client_rid: &str,
    user_id: u64,
    k: usize,
    policy: Policy,
    filter: &Filter,
) -> Trace {
    let m = &arm.model.manifest;
    let now_ms = chrono::Utc::now().timestamp_millis();
    Trace {
        request_id: rid.to_string(),
        timestamp: now_ms,
        model_version: m.version.clone(),
        model_name: Some(m.name.clone()),
        model_sha256: m.model_sha256().map(str::to_string),
        git_sha: Some(m.git_sha.clone()),
        data_snapshot_id: Some(m.data.snapshot_id.clone()),
        function_version: Some(st.config.function_version.clone()),
        filter: (!filter.is_empty()).then(|| filter.clone()),
        strategy: arm.strategy,
        arm: arm.arm,
        experiment_id: arm.experiment_id.clone(),
        variant: arm.variant,
        policy: Some(policy.name().to_string()),
        policy_params: json!(policy.params()),
        user_id,
        k,
        status: 200,
        stored_at: now_ms,
        replaced_request_id: (rid != client_rid).then(|| client_rid.to_string()),
        ..Trace::default()
    }
}

/// Hands the trace to its store, with the candidate's `shadow` list when
/// there is one; answers the trace as stored (under a fresh id if its id
/// was taken). Lambda writes before answering, since it freezes the sandbox
/// once the response is sent; the local server queues it for the
/// background writer, ranking the shadow list off the response's path.
async fn hand_off(
    st: &Arc<AppState>,
    mut trace: Trace,
    shadow: Option<Arc<crate::scoring::ServingModel>>,
    seen: Vec<u64>,
) -> Trace {
    let (user_id, k) = (trace.user_id, trace.k);
    if st.config.trace_before_response {
        if let Some(c) = &shadow {
            trace.shadow = Some(shadow_list(c, user_id, k, &seen));
        }
        let rid = write_trace(st, trace.clone()).await;
        return Trace {
            replaced_request_id: (rid != trace.request_id)
                .then(|| trace.request_id.clone())
                .or(trace.replaced_request_id.clone()),
            request_id: rid,
            ..trace
        };
    }
    let mut t = trace.clone();
    match (&st.trace_writer, shadow) {
        (Some(w), None) => {
            w.submit(t);
        }
        (Some(w), Some(c)) => {
            let w = w.clone();
            tokio::spawn(async move {
                t.shadow = Some(shadow_list(&c, user_id, k, &seen));
                w.submit(t);
            });
        }
        (None, shadow) => {
            let st2 = st.clone();
            tokio::spawn(async move {
                if let Some(c) = &shadow {
                    t.shadow = Some(shadow_list(c, user_id, k, &seen));
                }
                if let Err(e) = store_trace(&st2, &t).await {
                    count_failure(&st2, &t.request_id, &e);
                }
            });
        }
    }
    trace
}

/// The JSON body of a ranked list: the movies, the variant and provenance.
fn response_body(
    st: &AppState,
    m: &crate::artifact::Manifest,
    trace: &Trace,
    arm: &Assignment,
    ranked: &crate::scoring::Ranked,
    policy: Policy,
    filter: &Filter,
) -> Value {
    let recs: Vec<Value> = ranked
        .items
        .iter()
        .map(|&(i, s)| super::movie_json(m, i, json!({"score": s})))
        .collect();
    let provenance = json!({
        "request_id": trace.request_id,
        "timestamp": trace.timestamp,
        "model_name": m.name,
        "model_version": m.version,
        "model_sha256": trace.model_sha256,
        "git_sha": m.git_sha,
        "data_snapshot_id": m.data.snapshot_id,
        "function_version": st.config.function_version,
        "latency_ms": trace.latency_ms,
        "fallback": ranked.fallback,
        "user_vector": ranked.user_vector,
        "strategy": arm.strategy,
        "arm": arm.arm,
        "experiment_id": arm.experiment_id,
        "policy": policy.name(),
        "policy_params": policy.params(),
        "adjustments": trace.adjustments,
        "filter": filter.to_json(),
    });
    let mut body = json!({
        "user_id": trace.user_id,
        "model": m.version,
        "items": trace.items,
        "recommendations": recs,
        "variant": arm.variant,
        "provenance": provenance,
    });
    if let Some(why) = crate::domain::filter::short_reason(trace.k, ranked.items.len(), filter) {
        body["fewer_than_k"] = json!(why);
    }
    body
}

fn shadow_list(
    c: &crate::scoring::ServingModel,
    user_id: u64,
    k: usize,
    seen: &[u64],
) -> ShadowList {
    match c.recommend(user_id, k, seen) {
        Ok(r) => ShadowList {
            model_version: c.version().to_string(),
            items: Some(
                r.items
                    .iter()
                    .map(|(i, _)| c.manifest.items[*i as usize].movie_id)
                    .collect(),
            ),
            error: None,
        },
        Err(e) => ShadowList {
            model_version: c.version().to_string(),
            items: None,
            error: Some(e.to_string()),
        },
    }
}

async fn store_trace(st: &AppState, t: &Trace) -> Result<(), crate::ports::StoreError> {
    let expires = t.stored_at / 1000 + st.config.trace_ttl_secs;
    st.traces()
        .map_err(|e| crate::ports::StoreError::unavailable("traces", e))?
        .put(&t.request_id, &t.to_value(), expires)
        .await
}

fn count_failure(st: &AppState, rid: &str, e: &crate::ports::StoreError) {
    st.metrics
        .trace_write_failures
        .fetch_add(1, Ordering::Relaxed);
    tracing::warn!(request_id = %rid, error = %e, "trace write failed");
}

/// Writes `t`: when its id is taken (a client reused another response's
/// X-Request-ID), once more under a fresh id; the first trace stays.
/// Returns the id the trace is stored under; a failure is logged and
/// counted, never passed on.
async fn write_trace(st: &AppState, mut t: Trace) -> String {
    match store_trace(st, &t).await {
        Ok(()) => t.request_id,
        Err(crate::ports::StoreError::Conflict { .. }) => {
            let taken = std::mem::replace(&mut t.request_id, super::new_request_id());
            t.replaced_request_id = Some(taken);
            if let Err(e) = store_trace(st, &t).await {
                count_failure(st, &t.request_id, &e);
            }
            t.request_id
        }
        Err(e) => {
            count_failure(st, &t.request_id, &e);
            t.request_id
        }
    }
}

/// The provenance stored for a served list (failed requests too).
#[utoipa::path(get, path = "/trace/{request_id}", tag = "trace",
    params(("request_id" = String, Path, description = "The response's X-Request-ID (1-128 of A-Z a-z 0-9 . _ : -)")),
    security((), ("api_key" = [])),
    responses((status = 200, description = "The trace", body = super::openapi::TraceBody),
        super::openapi::BadParameter,
        super::openapi::NotFound,
        super::openapi::Unavailable))]
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

/// `GET /healthz`, public: status and the versions serving, nothing else.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "A model serves", body = super::openapi::Healthz),
        (status = 503, description = "No model can serve", body = super::openapi::Healthz)))]
pub(super) async fn healthz(State(st): State<Arc<AppState>>) -> Response {
    let serving = st.serving();
    let body = json!({
        "status": if serving.is_some() { "ok" } else { "unavailable" },
        "model_loaded": serving.is_some(),
        "serving_versions": serving.as_ref().map(|s| s.versions()).unwrap_or_default(),
    });
    let code = match serving {
        Some(_) => axum::http::StatusCode::OK,
        None => axum::http::StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(body)).into_response()
}

/// `GET /health`: the full view (rollout state with its salt and who
/// changed it, stores), for operators only (IAM in AWS, the admin token
/// locally).
#[utoipa::path(get, path = "/health", tag = "operations", security(("admin" = [])),
    responses((status = 200, description = "The full view", body = super::openapi::Health),
        super::openapi::Unauthorized,
        super::openapi::Forbidden))]
pub(super) async fn health(
    State(st): State<Arc<AppState>>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    super::rollout::authorize(&st, &req)?;
    Ok(health_view(&st).await)
}

async fn health_view(st: &AppState) -> Response {
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
            Ok(None) => {
                json!({"strategy": crate::domain::strategy::Strategy::Fixed, "served_version": null})
            }
            Err(e) => json!({"error": e.to_string()}),
        },
        Err(e) => json!({"error": e.to_string()}),
    };
    let body = json!({
        "status": if model.is_some() { "ok" } else { "unavailable" },
        "model_loaded": model.is_some(),
        "serving_versions": serving.as_ref().map(|s| s.versions()).unwrap_or_default(),
        "rollout": rollout,
        "adjustments": serving.as_ref().and_then(|s| s.adjustments.as_ref()).map(|a| &a.pointer),
        "stores": {"traces": traces},
    });
    let code = if model.is_some() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Prometheus text: request counts and latency per route, cache and trace-writer counters.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus exposition format", body = String, content_type = "text/plain")))]
pub(super) async fn metrics_page(State(st): State<Arc<AppState>>) -> Response {
    use std::fmt::Write;
    let mut page = st.metrics.render();
    if let Some(m) = st.current_model() {
        let (hits, misses, capacity) = m.score_cache_stats();
        let v = m.version();
        let _ = write!(
            page,
            "# HELP movie_recs_score_cache_total Score-cache lookups of the primary model by result.\n\
             # TYPE movie_recs_score_cache_total counter\n\
             movie_recs_score_cache_total{{model_version=\"{v}\",result=\"hit\"}} {hits}\n\
             movie_recs_score_cache_total{{model_version=\"{v}\",result=\"miss\"}} {misses}\n\
             # HELP movie_recs_score_cache_capacity Users whose scores the primary model's cache holds at once.\n\
             # TYPE movie_recs_score_cache_capacity gauge\n\
             movie_recs_score_cache_capacity{{model_version=\"{v}\"}} {capacity}\n"
        );
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        page,
    )
        .into_response()
}
