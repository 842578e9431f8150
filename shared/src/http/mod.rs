//! The HTTP API shared by the Lambda functions (through `lambda_http`) and the
//! local server (`movie-recs serve`). Each function serves one slice:
//! [`recommend_router`] (`GET /recommend/{user_id}`, `GET /healthz`, `/health`,
//! `/metrics`), [`trace_router`] (`GET /trace/{request_id}`),
//! [`rollout::router`] and [`events::router`]; [`router`] is all of them (local).
//! Every response carries `X-Request-ID`; every error is JSON `{"error","detail"}`.

pub mod events;
pub mod metrics;
pub mod rollout;

use crate::ports::{ModelStore, RolloutStore, TraceStore, UserHistory};
use crate::scoring::ServingModel;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use metrics::Metrics;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Instant;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Bounds of `k`.
pub const K_DEFAULT: usize = 20;
pub const K_MAX: usize = 100;

/// Process-wide settings of the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Reported as `provenance.function_version` (Lambda version, or `local`).
    pub function_version: String,
    /// The function's name (`AWS_LAMBDA_FUNCTION_NAME`), the EMF `Function` dimension.
    pub function_name: String,
    /// How long traces are kept.
    pub trace_ttl_secs: i64,
    /// Bearer token that admits admin routes locally (`MOVIE_RECS_ADMIN_TOKEN`).
    /// In AWS, API Gateway's IAM authorizer guards them instead.
    pub admin_token: Option<String>,
    /// Whether API Gateway authorizes admin routes (IAM); set in Lambda.
    pub iam_authorized: bool,
    /// Print one CloudWatch Embedded Metric Format line per request (Lambda).
    pub emf: bool,
    /// Finish the trace write before answering (Lambda); otherwise it runs
    /// after the response is on its way (a long-lived server).
    pub trace_before_response: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            function_version: "local".into(),
            function_name: "local".into(),
            trace_ttl_secs: 30 * 86_400,
            admin_token: None,
            iam_authorized: false,
            emf: false,
            trace_before_response: false,
        }
    }
}

/// Everything the handlers share. The serving model is an immutable handle,
/// swapped whole when a new version is loaded.
pub struct AppState {
    model: RwLock<Option<Arc<ServingModel>>>,
    pub traces: Arc<dyn TraceStore>,
    pub history: Arc<dyn UserHistory>,
    pub rollout: Arc<dyn RolloutStore>,
    /// The model registry, for routes that validate versions (rollout).
    pub registry: Option<Arc<dyn ModelStore>>,
    /// The ingest pipeline (`POST /events`).
    pub ingestor: Option<Arc<crate::ingest::Ingestor>>,
    pub metrics: Metrics,
    pub config: ApiConfig,
}

impl AppState {
    pub fn new(
        model: Option<Arc<ServingModel>>,
        traces: Arc<dyn TraceStore>,
        history: Arc<dyn UserHistory>,
        rollout: Arc<dyn RolloutStore>,
        config: ApiConfig,
    ) -> Self {
        AppState {
            model: RwLock::new(model),
            traces,
            history,
            rollout,
            registry: None,
            ingestor: None,
            metrics: Metrics::default(),
            config,
        }
    }

    /// State over the stores the environment configured (Lambda functions).
    pub fn from_stores(stores: &crate::config::Stores, config: ApiConfig) -> Self {
        Self::new(
            None,
            stores.traces.clone(),
            stores.history.clone(),
            stores.rollout.clone(),
            config,
        )
    }

    pub fn with_registry(mut self, registry: Arc<dyn ModelStore>) -> Self {
        self.registry = Some(registry);
        self
    }

    pub fn with_ingestor(mut self, ingestor: Arc<crate::ingest::Ingestor>) -> Self {
        self.ingestor = Some(ingestor);
        self
    }

    /// The model serving now.
    pub fn current_model(&self) -> Option<Arc<ServingModel>> {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the serving model; requests in flight keep the handle they took.
    pub fn set_model(&self, model: Arc<ServingModel>) {
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = Some(model);
    }
}

/// The request id of the current request (echoed or generated).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Fields a handler adds for the request log line and metrics.
#[derive(Clone, Debug, Default)]
struct LogFields {
    user_id: Option<u64>,
    model_version: Option<String>,
    fallback: Option<&'static str>,
}

/// The JSON error body `{"error","detail"}` with a status.
pub fn error(status: StatusCode, error: &str, detail: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": error, "detail": detail.into()})),
    )
        .into_response()
}

/// Accepts an incoming request id of 1–128 characters from `[A-Za-z0-9._:-]`.
pub fn well_formed_request_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Every route: the local all-in-one server.
pub fn router(state: Arc<AppState>) -> Router {
    finish(
        recommend_routes()
            .merge(trace_routes())
            .merge(rollout::routes())
            .merge(events::routes()),
        state,
    )
}

/// The recommend function's routes.
pub fn recommend_router(state: Arc<AppState>) -> Router {
    finish(recommend_routes(), state)
}

/// The trace function's routes.
pub fn trace_router(state: Arc<AppState>) -> Router {
    finish(trace_routes(), state)
}

fn recommend_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/recommend/{user_id}", get(recommend))
        .route("/healthz", get(health))
        .route("/health", get(health))
        .route("/metrics", get(metrics_page))
}

fn trace_routes() -> Router<Arc<AppState>> {
    Router::new().route("/trace/{request_id}", get(trace))
}

/// Adds the fallback, request-id/log/metrics middleware and state.
pub(crate) fn finish(routes: Router<Arc<AppState>>, state: Arc<AppState>) -> Router {
    routes
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .with_state(state)
}

async fn request_context(
    State(st): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let rid = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| well_formed_request_id(s))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let path = req.uri().path().to_string();
    let method = req.method().to_string();
    req.extensions_mut().insert(RequestId(rid.clone()));
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    let seconds = start.elapsed().as_secs_f64();
    let f = resp
        .extensions()
        .get::<LogFields>()
        .cloned()
        .unwrap_or_default();
    let status = resp.status().as_u16();
    st.metrics.observe(
        &route,
        status,
        f.model_version.as_deref().unwrap_or(""),
        seconds,
    );
    if st.config.emf {
        crate::adapters::aws::emf::print_request_metrics(
            &st.config.function_name,
            &route,
            status,
            seconds * 1e3,
            f.fallback.is_some(),
            &rid,
        );
    }
    tracing::info!(
        target: "request",
        request_id = %rid,
        method = %method,
        path = %path,
        status,
        latency_ms = seconds * 1e3,
        user_id = f.user_id,
        model_version = f.model_version.as_deref(),
        fallback = f.fallback,
    );
    resp
}

/// Parses a `user_id` path segment; the error is the 400 detail.
pub fn parse_user_id(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("user_id must be a non-negative integer, got {s:?}"));
    }
    s.parse()
        .map_err(|_| format!("user_id is out of range: {s:?}"))
}

/// Parses the `k` query parameter (default 20); the error is the 400 detail.
pub fn parse_k(q: &HashMap<String, String>) -> Result<usize, String> {
    let Some(raw) = q.get("k") else {
        return Ok(K_DEFAULT);
    };
    match raw.parse::<usize>() {
        Ok(k) if (1..=K_MAX).contains(&k) => Ok(k),
        _ => Err(format!(
            "k must be an integer from 1 to {K_MAX}, got {raw:?}"
        )),
    }
}

async fn recommend(
    State(st): State<Arc<AppState>>,
    Extension(RequestId(rid)): Extension<RequestId>,
    Path(user): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let start = Instant::now();
    let (user_id, k) = match (parse_user_id(&user), parse_k(&q)) {
        (Ok(u), Ok(k)) => (u, k),
        (Err(d), _) | (_, Err(d)) => return error(StatusCode::BAD_REQUEST, "invalid_parameter", d),
    };
    let Some(model) = st.current_model() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_model",
            "no model version is loaded",
        );
    };
    let seen = st.history.seen(user_id).await.unwrap_or_else(|e| {
        st.metrics.history_read_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(request_id = %rid, error = %e, "user history unavailable; excluding training history only");
        Vec::new()
    });
    let ranked = match model.recommend(user_id, k, &seen) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(request_id = %rid, error = %e, "scoring failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "scoring_failed",
                "the model could not score this request",
            );
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
    });
    let body = json!({
        "user_id": user_id,
        "model": m.version,
        "items": items,
        "recommendations": recs,
        "variant": Value::Null,
        "provenance": provenance,
    });
    // The trace is written after the response is on its way.
    let mut trace = provenance.as_object().cloned().unwrap_or_default();
    trace.insert("user_id".into(), json!(user_id));
    trace.insert("k".into(), json!(k));
    trace.insert("items".into(), json!(items));
    trace.insert("variant".into(), Value::Null);
    trace.insert("status".into(), json!(200));
    trace.insert("path".into(), json!(format!("/recommend/{user}")));
    trace.insert("stored_at".into(), json!(now_ms));
    let expires = now_ms / 1000 + st.config.trace_ttl_secs;
    let write = {
        let (store, rid2) = (st.clone(), rid.clone());
        async move {
            if let Err(e) = store
                .traces
                .put(&rid2, &Value::Object(trace), expires)
                .await
            {
                store
                    .metrics
                    .trace_write_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(request_id = %rid2, error = %e, "trace write failed");
            }
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
    resp
}

async fn trace(State(st): State<Arc<AppState>>, Path(request_id): Path<String>) -> Response {
    if !well_formed_request_id(&request_id) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "request_id must be 1-128 characters of A-Z a-z 0-9 . _ : -",
        );
    }
    let now = chrono::Utc::now().timestamp();
    match st.traces.get(&request_id, now).await {
        Ok(Some(t)) => Json(t).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no trace for request {request_id} (unknown or expired)"),
        ),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        ),
    }
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    let model = st.current_model();
    let traces = match st.traces.ping().await {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
    };
    let rollout = match st.rollout.state().await {
        Ok(Some(s)) => json!(s),
        Ok(None) => json!({"strategy": "fixed", "served_version": null}),
        Err(e) => json!({"error": e.to_string()}),
    };
    let body = json!({
        "status": if model.is_some() { "ok" } else { "unavailable" },
        "model_loaded": model.is_some(),
        "serving_versions": model.iter().map(|m| m.version().to_string()).collect::<Vec<_>>(),
        "rollout": rollout,
        "stores": {"traces": traces},
    });
    let code = if model.is_some() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics_page(State(st): State<Arc<AppState>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        st.metrics.render(),
    )
        .into_response()
}

/// Outcome of [`sync_model`].
#[derive(Debug, PartialEq)]
pub enum SyncOutcome {
    /// The wanted version already serves.
    Unchanged(String),
    /// A new version was verified, loaded and swapped in.
    Loaded(String),
    /// Nothing to load (empty registry).
    NoVersion,
}

/// Makes the serving model the version the rollout store names (or, when none
/// is set, the newest in the registry). A version that fails verification or
/// loading is refused with the reason, and whatever was serving keeps serving.
/// Registry I/O and model loading run on the blocking pool.
pub async fn sync_model(
    st: &AppState,
    registry: Arc<dyn ModelStore>,
) -> Result<SyncOutcome, String> {
    let named = st
        .rollout
        .served_version()
        .await
        .map_err(|e| e.to_string())?;
    let current = st.current_model();
    type Loaded = (SyncOutcome, Option<Arc<ServingModel>>);
    let outcome = tokio::task::spawn_blocking(move || -> Result<Loaded, String> {
        let wanted = match named {
            Some(v) => v,
            None => match registry.list_versions().map_err(|e| e.to_string())?.pop() {
                Some(v) => v,
                None => return Ok((SyncOutcome::NoVersion, None)),
            },
        };
        if current.is_some_and(|m| m.version() == wanted) {
            return Ok((SyncOutcome::Unchanged(wanted), None));
        }
        let art = registry.fetch(&wanted).map_err(|e| e.to_string())?;
        let model = ServingModel::load(&art).map_err(|e| format!("version {wanted}: {e}"))?;
        Ok((SyncOutcome::Loaded(wanted), Some(Arc::new(model))))
    })
    .await
    .map_err(|e| e.to_string())??;
    let (outcome, model) = outcome;
    if let Some(model) = model {
        st.set_model(model);
    }
    Ok(outcome)
}
