//! The HTTP API shared by the Lambda functions (through `lambda_http`) and the
//! local server (`movie-recs serve`). Each function serves one slice:
//! [`recommend_router`] (`GET /recommend/{user_id}`, `GET /healthz`, `/health`,
//! `/metrics`), [`trace_router`] (`GET /trace/{request_id}`),
//! [`rollout::router`] and [`events::router`]; [`router`] is all of them (local).
//! Every response carries `X-Request-ID`; every error is JSON `{"error","detail"}`.

pub mod events;
pub mod metrics;
pub mod rollout;

use crate::ports::{ModelStore, RolloutState, RolloutStore, TraceStore, UserHistory};
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
    /// The re-ranking policy of requests without `?policy=` (`MOVIE_RECS_POLICY`).
    pub default_policy: crate::domain::rerank::Policy,
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
            default_policy: crate::domain::rerank::DEFAULT_POLICY,
        }
    }
}

/// The models serving now and the rollout state that split users between
/// them: one immutable value, swapped whole. A request takes one handle and
/// scores with the version its arm names, whatever is swapped in meanwhile.
#[derive(Clone)]
pub struct Serving {
    /// `None` when no rollout state was ever written (the newest version serves).
    pub rollout: Option<RolloutState>,
    pub primary: Arc<ServingModel>,
    /// Loaded under `canary`, `ab_test` and `shadow`.
    pub candidate: Option<Arc<ServingModel>>,
}

/// Which model a request gets.
#[derive(Clone)]
pub struct Assignment {
    pub model: Arc<ServingModel>,
    /// `primary` or `candidate`.
    pub arm: &'static str,
    /// The response's `variant`: the arm under `canary` and `ab_test`, else null.
    pub variant: Option<&'static str>,
    /// The candidate to score in the shadow of the served list.
    pub shadow: Option<Arc<ServingModel>>,
    pub strategy: String,
    pub experiment_id: Option<String>,
    /// The arm's re-ranking policy (`name[:key=value]`), if the rollout sets one.
    pub policy: Option<String>,
}

impl Serving {
    /// The arm of `user_id`: a stable hash of (salt, user) into 10,000 buckets.
    pub fn assign(&self, user_id: u64) -> Assignment {
        let primary = Assignment {
            model: self.primary.clone(),
            arm: "primary",
            variant: None,
            shadow: None,
            strategy: "fixed".into(),
            experiment_id: None,
            policy: self.rollout.as_ref().and_then(|r| r.primary_policy.clone()),
        };
        let (Some(r), Some(cand)) = (&self.rollout, &self.candidate) else {
            return Assignment {
                strategy: self
                    .rollout
                    .as_ref()
                    .map_or_else(|| "fixed".into(), |r| r.strategy.clone()),
                ..primary
            };
        };
        let salt = r
            .salt
            .as_deref()
            .or(r.experiment_id.as_deref())
            .unwrap_or_default();
        let hit = crate::domain::experiment::in_candidate(salt, user_id, r.percentage);
        let base = Assignment {
            strategy: r.strategy.clone(),
            experiment_id: r.experiment_id.clone(),
            ..primary
        };
        match r.strategy.as_str() {
            "canary" | "ab_test" if hit => Assignment {
                model: cand.clone(),
                arm: "candidate",
                variant: Some("candidate"),
                policy: r.candidate_policy.clone(),
                ..base
            },
            "canary" | "ab_test" => Assignment {
                variant: Some("primary"),
                ..base
            },
            "shadow" if hit => Assignment {
                shadow: Some(cand.clone()),
                ..base
            },
            _ => base,
        }
    }

    /// The versions loaded, primary first.
    pub fn versions(&self) -> Vec<String> {
        std::iter::once(&self.primary)
            .chain(self.candidate.iter())
            .map(|m| m.version().to_string())
            .collect()
    }
}

/// Everything the handlers share. The serving models are one immutable
/// value, swapped whole when the rollout or a version changes.
pub struct AppState {
    model: RwLock<Option<Arc<Serving>>>,
    pub traces: Arc<dyn TraceStore>,
    pub history: Arc<dyn UserHistory>,
    pub rollout: Arc<dyn RolloutStore>,
    /// The model registry, for routes that validate versions (rollout).
    pub registry: Option<Arc<dyn ModelStore>>,
    /// The ingest pipeline (`POST /events`).
    pub ingestor: Option<Arc<crate::ingest::Ingestor>>,
    /// The experiment analysis (`/experiment/*` on the rollout function).
    pub experiments: Option<Arc<crate::canary::job::ExperimentJob>>,
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
            model: RwLock::new(model.map(|m| {
                Arc::new(Serving {
                    rollout: None,
                    primary: m,
                    candidate: None,
                })
            })),
            traces,
            history,
            rollout,
            registry: None,
            ingestor: None,
            experiments: None,
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

    pub fn with_experiments(mut self, job: crate::canary::job::ExperimentJob) -> Self {
        self.experiments = Some(Arc::new(job));
        self
    }

    /// The primary model serving now.
    pub fn current_model(&self) -> Option<Arc<ServingModel>> {
        self.serving().map(|s| s.primary.clone())
    }

    /// Everything serving now.
    pub fn serving(&self) -> Option<Arc<Serving>> {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves `model` alone; requests in flight keep the handle they took.
    pub fn set_model(&self, model: Arc<ServingModel>) {
        self.set_serving(Serving {
            rollout: None,
            primary: model,
            candidate: None,
        });
    }

    /// Swaps in `serving` whole.
    pub fn set_serving(&self, serving: Serving) {
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(serving));
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
    let arm_policy = |arm: &Assignment| {
        arm.policy
            .as_deref()
            .and_then(|p| crate::domain::rerank::Policy::from_spec(p, K_MAX).ok())
            .unwrap_or(st.config.default_policy)
            .for_k(k)
    };
    let policy = match q.get("policy") {
        None => None,
        Some(name) => match crate::domain::rerank::Policy::parse(name, &q, k) {
            Ok(p) => Some(p),
            Err(d) => return error(StatusCode::BAD_REQUEST, "invalid_parameter", d),
        },
    };
    let Some(serving) = st.serving() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_model",
            "no model version is loaded",
        );
    };
    let arm = serving.assign(user_id);
    let policy = policy.unwrap_or_else(|| arm_policy(&arm));
    let model = arm.model.clone();
    let seen = st.history.seen(user_id).await.unwrap_or_else(|e| {
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
    resp
}

/// Stores a trace written at `now_ms`; a failure is logged and counted,
/// never passed on.
async fn put_trace(st: Arc<AppState>, rid: String, trace: Value, now_ms: i64) {
    let expires = now_ms / 1000 + st.config.trace_ttl_secs;
    if let Err(e) = st.traces.put(&rid, &trace, expires).await {
        st.metrics
            .trace_write_failures
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(request_id = %rid, error = %e, "trace write failed");
    }
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
    let serving = st.serving();
    let model = serving.as_ref().map(|s| s.primary.clone());
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
        "serving_versions": serving.as_ref().map(|s| s.versions()).unwrap_or_default(),
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
    /// What serves is what the rollout state names (the primary version).
    Unchanged(String),
    /// New versions or a new split were verified, loaded and swapped in
    /// (the primary version).
    Loaded(String),
    /// Nothing to load (empty registry).
    NoVersion,
}

/// Makes what serves match the rollout state: its primary version (or,
/// when no state was written, the newest in the registry) and, under
/// canary, A/B and shadow, its candidate; both loaded before either serves.
/// A version that fails verification or loading is refused with the reason,
/// and whatever was serving keeps serving. Loaded versions are reused.
/// Registry I/O and model loading run on the blocking pool.
pub async fn sync_model(
    st: &AppState,
    registry: Arc<dyn ModelStore>,
) -> Result<SyncOutcome, String> {
    let rollout = st.rollout.state().await.map_err(|e| e.to_string())?;
    let current = st.serving();
    if let (Some(cur), Some(r)) = (&current, &rollout) {
        if cur.rollout.as_ref() == Some(r) {
            return Ok(SyncOutcome::Unchanged(cur.primary.version().to_string()));
        }
    }
    type Loaded = (SyncOutcome, Option<Serving>);
    let outcome = tokio::task::spawn_blocking(move || -> Result<Loaded, String> {
        let primary = match rollout.as_ref().map(|r| r.served_version.clone()) {
            Some(v) => v,
            None => match registry.list_versions().map_err(|e| e.to_string())?.pop() {
                Some(v) => v,
                None => return Ok((SyncOutcome::NoVersion, None)),
            },
        };
        let candidate = rollout
            .as_ref()
            .filter(|r| r.strategy != "fixed")
            .and_then(|r| r.candidate_version.clone());
        if rollout.is_none()
            && current
                .as_ref()
                .is_some_and(|c| c.rollout.is_none() && c.primary.version() == primary)
        {
            return Ok((SyncOutcome::Unchanged(primary), None));
        }
        let loaded: Vec<Arc<ServingModel>> = current
            .iter()
            .flat_map(|c| std::iter::once(c.primary.clone()).chain(c.candidate.clone()))
            .collect();
        let load = |v: &str| -> Result<Arc<ServingModel>, String> {
            if let Some(m) = loaded.iter().find(|m| m.version() == v) {
                return Ok(m.clone());
            }
            let art = registry.fetch(v).map_err(|e| e.to_string())?;
            Ok(Arc::new(
                ServingModel::load(&art).map_err(|e| format!("version {v}: {e}"))?,
            ))
        };
        let primary_model = load(&primary)?;
        // A policy experiment may run one version in both arms.
        let candidate_model = match candidate.as_deref() {
            Some(c) if c == primary => Some(primary_model.clone()),
            Some(c) => Some(load(c)?),
            None => None,
        };
        let serving = Serving {
            primary: primary_model,
            candidate: candidate_model,
            rollout,
        };
        Ok((SyncOutcome::Loaded(primary), Some(serving)))
    })
    .await
    .map_err(|e| e.to_string())??;
    let (outcome, serving) = outcome;
    if let Some(serving) = serving {
        st.set_serving(serving);
    }
    Ok(outcome)
}
