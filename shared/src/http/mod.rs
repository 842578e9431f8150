//! The HTTP API shared by the Lambda functions (through `lambda_http`) and the
//! local server (`movie-recs serve`). Each function serves one slice:
//! [`recommend_router`] (`GET /recommend/{user_id}`, `/similar/{movie_id}`,
//! `/popular`, `/trending`, `GET /healthz`, `/health`, `/metrics`), [`trace_router`] (`GET /trace/{request_id}`),
//! [`rollout::router`] and [`events::router`]; [`router`] is all of them (local).
//! Every response carries `X-Request-ID`; every error is JSON `{"error","detail"}`.

mod catalogue;
pub mod error;
pub mod events;
pub mod lambda;
pub mod limit;
pub mod metrics;
pub mod openapi;
mod recommend;
pub mod rollout;
pub mod server;
pub mod serving;
pub mod trace_writer;

pub use error::ApiError;
pub use serving::{sync_model, ArmAdjustments, Assignment, Serving, SyncError, SyncOutcome};

use crate::domain::param::InvalidParam;
use crate::ports::{
    AdjustmentStore, ModelStore, RequestMetricsSink, RequestSample, RolloutStore, TraceStore,
    TrendingStore, UserHistory,
};
use crate::scoring::ServingModel;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use metrics::Metrics;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use utoipa_axum::{router::OpenApiRouter, routes};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Bounds of `k`.
pub const K_DEFAULT: usize = 20;
pub const K_MAX: usize = 100;

/// Process-wide settings of the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Reported as `provenance.function_version` (Lambda version, or `local`).
    pub function_version: String,
    /// How long traces are kept.
    pub trace_ttl_secs: i64,
    /// Bearer token that admits admin routes locally (`MOVIE_RECS_ADMIN_TOKEN`).
    /// In AWS, API Gateway's IAM authorizer guards them instead.
    pub admin_token: Option<String>,
    /// Whether API Gateway authorizes admin routes (IAM); set in Lambda.
    pub iam_authorized: bool,
    /// Finish the trace write before answering (Lambda); otherwise it runs
    /// after the response is on its way (a long-lived server).
    pub trace_before_response: bool,
    /// The re-ranking policy of requests without `?policy=` (`MOVIE_RECS_POLICY`).
    pub default_policy: crate::domain::rerank::Policy,
    /// Sync what serves from the request path when the last sync is this
    /// old (Lambda, whose frozen sandboxes run no timers); `None`: only the
    /// reload loop syncs.
    pub reload_every: Option<std::time::Duration>,
    /// Seconds between reloads of the processes that serve (reported as
    /// `effective_within_s` of a rollout change made here but served elsewhere).
    pub reload_secs: u64,
    /// `POST /events` needs the admin credentials (the local server on a
    /// non-loopback address; in AWS, API Gateway's IAM authorizer).
    pub events_need_admin: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            function_version: "local".into(),
            trace_ttl_secs: 30 * 86_400,
            admin_token: None,
            iam_authorized: false,
            trace_before_response: false,
            default_policy: crate::domain::rerank::DEFAULT_POLICY,
            reload_every: None,
            reload_secs: 5,
            events_need_admin: false,
        }
    }
}

/// The store handles the routers use. A function builds only the ones its
/// routes need ([`crate::wiring::Stores::api_stores`]); a route whose store
/// is missing answers 503 `not_configured`.
#[derive(Clone, Default)]
pub struct ApiStores {
    pub traces: Option<Arc<dyn TraceStore>>,
    pub history: Option<Arc<dyn UserHistory>>,
    pub rollout: Option<Arc<dyn RolloutStore>>,
    /// Watch and rate counts per hour (`GET /trending`).
    pub trending: Option<Arc<dyn TrendingStore>>,
    /// The exposure controller's adjustments (the `exposure` policy).
    pub exposure: Option<Arc<dyn AdjustmentStore>>,
    /// Each answered request's metrics (EMF lines in Lambda).
    pub request_metrics: Option<Arc<dyn RequestMetricsSink>>,
}

/// Everything the handlers share. The serving models are one immutable
/// value, swapped whole when the rollout or a version changes.
pub struct AppState {
    model: RwLock<Option<Arc<Serving>>>,
    stores: ApiStores,
    /// The model registry: routes that validate versions (rollout), and the
    /// reloads of what serves.
    pub registry: Option<Arc<dyn ModelStore>>,
    /// The ingest pipeline (`POST /events`).
    pub ingestor: Option<Arc<crate::ingest::Ingestor>>,
    /// The experiment analysis (`/experiment/*` on the rollout function).
    pub experiments: Option<Arc<crate::canary::job::ExperimentJob>>,
    /// The background trace writer (the long-lived server); without it a
    /// trace is written by a task of its own.
    pub trace_writer: Option<Arc<trace_writer::TraceWriter>>,
    pub metrics: Metrics,
    /// Recent windows of trending counts (`GET /trending`).
    pub trending_cache: catalogue::TrendingCache,
    pub config: ApiConfig,
    /// Whether a [`sync_model`] of this process is running.
    pub(crate) syncing: AtomicBool,
    /// When the last sync started (ms since `started`), for [`Self::sync_if_due`].
    last_sync_ms: AtomicU64,
    started: Instant,
}

fn not_configured(what: &str) -> ApiError {
    ApiError::unavailable(
        "not_configured",
        format!("this function has no {what} configured"),
    )
}

impl AppState {
    pub fn new(
        model: Option<Arc<ServingModel>>,
        traces: Arc<dyn TraceStore>,
        history: Arc<dyn UserHistory>,
        rollout: Arc<dyn RolloutStore>,
        config: ApiConfig,
    ) -> Self {
        let state = Self::with_stores(
            ApiStores {
                traces: Some(traces),
                history: Some(history),
                rollout: Some(rollout),
                trending: None,
                exposure: None,
                request_metrics: None,
            },
            config,
        );
        if let Some(m) = model {
            state.set_model(m);
        }
        state
    }

    /// State over the stores a function built (only those its routes use).
    pub fn with_stores(stores: ApiStores, config: ApiConfig) -> Self {
        AppState {
            model: RwLock::new(None),
            stores,
            registry: None,
            ingestor: None,
            experiments: None,
            trace_writer: None,
            metrics: Metrics::default(),
            trending_cache: Default::default(),
            config,
            syncing: AtomicBool::new(false),
            last_sync_ms: AtomicU64::new(0),
            started: Instant::now(),
        }
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

    /// Writes traces through a background writer with a queue of
    /// `capacity` ([`trace_writer`]); needs the trace store and a runtime.
    pub fn with_trace_writer(mut self, capacity: usize) -> Self {
        if let Some(store) = self.stores.traces.clone() {
            self.trace_writer = Some(trace_writer::TraceWriter::start(
                store,
                self.config.trace_ttl_secs,
                capacity,
                self.metrics.trace_queue.clone(),
            ));
        }
        self
    }

    pub fn traces(&self) -> Result<&Arc<dyn TraceStore>, ApiError> {
        self.stores
            .traces
            .as_ref()
            .ok_or_else(|| not_configured("trace store"))
    }

    pub fn history(&self) -> Result<&Arc<dyn UserHistory>, ApiError> {
        self.stores
            .history
            .as_ref()
            .ok_or_else(|| not_configured("user-history store"))
    }

    pub fn trending(&self) -> Result<&Arc<dyn TrendingStore>, ApiError> {
        self.stores
            .trending
            .as_ref()
            .ok_or_else(|| not_configured("trending counts store"))
    }

    pub fn rollout(&self) -> Result<&Arc<dyn RolloutStore>, ApiError> {
        self.stores
            .rollout
            .as_ref()
            .ok_or_else(|| not_configured("rollout store"))
    }

    /// The exposure controller's adjustments store, if this process reads one.
    pub fn exposure_store(&self) -> Option<Arc<dyn AdjustmentStore>> {
        self.stores.exposure.clone()
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
            adjustments: None,
        });
    }

    /// Swaps in `serving` whole.
    pub fn set_serving(&self, serving: Serving) {
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(serving));
    }

    /// Starts a background sync when the last one began at least `every`
    /// ago and none is running. Lambda freezes a sandbox between
    /// invocations, so its timers stall; this keeps a warm recommend
    /// function within one reload interval of the rollout store anyway.
    pub fn sync_if_due(self: &Arc<Self>, every: std::time::Duration) {
        let Some(registry) = self.registry.clone() else {
            return;
        };
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_sync_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < every.as_millis() as u64
            || self.syncing.load(Ordering::Acquire)
            || self
                .last_sync_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let st = self.clone();
        tokio::spawn(async move { serving::log_sync(sync_model(&st, registry).await) });
    }

    /// Notes that a sync started now (the reload loop and init call this).
    pub(crate) fn mark_synced(&self) {
        self.last_sync_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// The request id of the current request (echoed or generated).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Marks a request whose id the client chose (`X-Request-ID`).
#[derive(Clone, Copy, Debug)]
pub struct ClientRequestId;

/// The id a handler answered under, when it is not the request's (the
/// client's id named another response's trace): the middleware sends it as
/// `X-Request-ID` and the client's as `X-Request-ID-Replaced`.
#[derive(Clone, Debug)]
pub struct ServedRequestId(pub String);

/// The header that names a client's request id this response did not take.
pub const REPLACED_REQUEST_ID_HEADER: &str = "x-request-id-replaced";

/// Fields a handler adds for the request log line and metrics.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogFields {
    pub(crate) user_id: Option<u64>,
    pub(crate) model_version: Option<String>,
    pub(crate) fallback: Option<&'static str>,
}

/// A fresh request id: a UUID v7, time-ordered, so traces stored under it
/// append to the SQLite key index instead of landing on a random page each
/// (with v4 ids, a batch of traces dirtied a page per trace, and writing
/// them showed as the tail of one-connection latency), and ids sort by time.
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Accepts an incoming request id of 1–128 characters from `[A-Za-z0-9._:-]`.
pub fn well_formed_request_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Every route: the local all-in-one server.
pub fn router(state: Arc<AppState>) -> Router {
    finish(all_routes(), state)
}

/// Every function's routes, with their OpenAPI paths ([`openapi`]).
pub(crate) fn all_routes() -> OpenApiRouter<Arc<AppState>> {
    recommend_routes()
        .merge(trace_routes())
        .merge(rollout::routes())
        .merge(events::routes())
}

/// The recommend function's routes.
pub fn recommend_router(state: Arc<AppState>) -> Router {
    finish(recommend_routes(), state)
}

/// The trace function's routes.
pub fn trace_router(state: Arc<AppState>) -> Router {
    finish(trace_routes(), state)
}

fn recommend_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(recommend::recommend))
        .routes(routes!(catalogue::similar))
        .routes(routes!(catalogue::popular))
        .routes(routes!(catalogue::trending))
        .routes(routes!(recommend::healthz))
        .routes(routes!(recommend::health))
        .routes(routes!(recommend::metrics_page))
}

fn trace_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(recommend::trace))
}

/// Adds `GET /openapi.json` (the whole API's document), the fallback,
/// request-id/log/metrics middleware and state.
pub(crate) fn finish(routes: OpenApiRouter<Arc<AppState>>, state: Arc<AppState>) -> Router {
    let (routes, _) = routes.merge(openapi::routes()).split_for_parts();
    routes
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
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
    let client = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| well_formed_request_id(s))
        .map(str::to_string);
    if client.is_some() {
        req.extensions_mut().insert(ClientRequestId);
    }
    let asked = client.unwrap_or_else(new_request_id);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let path = req.uri().path().to_string();
    let method = req.method().to_string();
    req.extensions_mut().insert(RequestId(asked.clone()));
    let mut resp = next.run(req).await;
    let served = resp.extensions().get::<ServedRequestId>().cloned();
    let rid = match served {
        Some(ServedRequestId(served)) if served != asked => {
            if let Ok(v) = HeaderValue::from_str(&asked) {
                resp.headers_mut()
                    .insert(HeaderName::from_static(REPLACED_REQUEST_ID_HEADER), v);
            }
            served
        }
        _ => asked,
    };
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
    if let Some(sink) = &st.stores.request_metrics {
        sink.record(&RequestSample {
            route: &route,
            status,
            latency_ms: seconds * 1e3,
            fallback: f.fallback.is_some(),
            request_id: &rid,
        });
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

/// Parses a `user_id` path segment.
pub fn parse_user_id(s: &str) -> Result<u64, InvalidParam> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidParam::new(
            "user_id",
            format!("must be a non-negative integer, got {s:?}"),
        ));
    }
    s.parse()
        .map_err(|_| InvalidParam::new("user_id", format!("is out of range: {s:?}")))
}

/// The catalogue filter of a list request, checked against `model`'s
/// genres; a bad parameter is a 400 naming it.
pub fn parse_filter(
    q: &HashMap<String, String>,
    model: &ServingModel,
) -> Result<crate::domain::filter::Filter, ApiError> {
    crate::domain::filter::Filter::parse(q, model.genres())
        .map_err(|e| ApiError::InvalidParameter(e.to_string()))
}

/// One movie of a list as the API answers it: id, title, genres, year and
/// the list's own fields (`extra`, an object).
pub fn movie_json(
    m: &crate::artifact::Manifest,
    index: u32,
    extra: serde_json::Value,
) -> serde_json::Value {
    let it = &m.items[index as usize];
    let mut v = serde_json::json!({
        "movie_id": it.movie_id,
        "title": it.title,
        "genres": it.genres,
        "year": it.year,
    });
    if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

/// Parses the `k` query parameter (default 20).
pub fn parse_k(q: &HashMap<String, String>) -> Result<usize, InvalidParam> {
    parse_k_or(q, K_DEFAULT)
}

/// Parses the `k` query parameter, `default` when absent (1 to [`K_MAX`]).
pub fn parse_k_or(q: &HashMap<String, String>, default: usize) -> Result<usize, InvalidParam> {
    let Some(raw) = q.get("k") else {
        return Ok(default);
    };
    match raw.parse::<usize>() {
        Ok(k) if (1..=K_MAX).contains(&k) => Ok(k),
        _ => Err(InvalidParam::new(
            "k",
            format!("must be an integer from 1 to {K_MAX}, got {raw:?}"),
        )),
    }
}
