//! The API contract, `GET /openapi.json` (OpenAPI 3.1): generated from the
//! routers. Every route is registered through `utoipa_axum`'s
//! `OpenApiRouter` with its handler's `#[utoipa::path]` (parameters,
//! responses, errors), so a route cannot serve without being described.
//! The bodies below are the contract of the JSON the handlers build, each
//! with an example; cli/tests/openapi.rs validates the examples and the real
//! responses of every route against these schemas.

use super::AppState;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::{Arc, LazyLock};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

/// The document's fixed parts; the paths come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "movie-recs",
        description = "Movie recommendations: personal top-k with filters and re-ranking, similar movies, popular and trending lists, event ingest, traces and rollouts. In AWS each slice is one Lambda function behind API Gateway (list routes need an API key of the usage plan; events, health and admin routes IAM); `movie-recs serve` serves all of them.",
        license(name = "Apache-2.0")
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security),
    tags(
        (name = "recommend", description = "Lists for a user or a movie (the recommend function)"),
        (name = "events", description = "Event ingest (the ingest function)"),
        (name = "trace", description = "Provenance of a served list (the trace function)"),
        (name = "rollout", description = "Model versions, rollouts and experiments (the rollout function; admin)"),
        (name = "operations", description = "Health, metrics and this document")
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "API Gateway usage-plan key (AWS only)",
            ))),
        );
        c.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Locally `Authorization: Bearer $MOVIE_RECS_ADMIN_TOKEN`; in AWS a SigV4 (IAM) signed request",
                    ))
                    .build(),
            ),
        );
    }
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let (_, paths) = super::all_routes().merge(routes()).split_for_parts();
    let mut doc = ApiDoc::openapi();
    doc.merge(paths);
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"internal\",\"detail\":\"{e}\"}}"))
});

/// The whole API's document (every function's routes, whichever serves it).
pub fn document() -> &'static str {
    &DOCUMENT
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
pub(super) async fn openapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document(),
    )
        .into_response()
}

/// The operations route every function serves.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(utoipa_axum::routes!(openapi_json))
}

// ---- parameters ----------------------------------------------------------

/// `k` and the catalogue filters, shared by every list route.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListQuery {
    /// How many movies, 1 to 100 (default 20; `/similar` 10).
    #[param(minimum = 1, maximum = 100, example = 10)]
    k: Option<u32>,
    /// Keep movies of any of these genres (comma list, case-insensitive; an unknown genre is a 400 that lists the catalogue's).
    #[param(example = "Comedy,Romance")]
    genre: Option<String>,
    /// Drop movies of any of these genres (comma list).
    #[param(example = "Horror")]
    exclude_genre: Option<String>,
    /// Keep movies released in or after this year (1800-2100; a movie of unknown year fails).
    #[param(minimum = 1800, maximum = 2100, example = 1990)]
    year_from: Option<u16>,
    /// Keep movies released in or before this year (1800-2100).
    #[param(minimum = 1800, maximum = 2100, example = 1999)]
    year_to: Option<u16>,
    /// Drop these movie ids (comma list, at most 500).
    #[param(example = "50,181")]
    exclude: Option<String>,
}

/// The re-ranking options of `GET /recommend` (without `policy`, the
/// arm's policy or `MOVIE_RECS_POLICY`).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PolicyQuery {
    /// `none`, `mmr`, `calibrated`, `explore` or `slots`.
    #[param(example = "mmr")]
    policy: Option<String>,
    /// Relevance/diversity trade-off of `mmr` (default 0.3) and `calibrated` (0.5), 0 to 1.
    #[param(minimum = 0.0, maximum = 1.0, example = 0.3)]
    lambda: Option<f64>,
    /// Exploration weight of `explore`, 0 to 1 (default 0.1).
    #[param(minimum = 0.0, maximum = 1.0)]
    weight: Option<f64>,
    /// Long-tail slots of `slots`, 0 to k (default 3).
    #[param(minimum = 0)]
    slots: Option<u32>,
}

/// The example of an experiment report (also inside the promote example).
fn report_example() -> serde_json::Value {
    serde_json::json!({
        "strategy": "canary", "experiment_id": "exp-0193a4c2", "primary_version": "v1", "candidate_version": "v2",
        "primary_policy": null, "candidate_policy": "slots:slots=3", "percentage": 10.0, "revision": 3,
        "started_at": 1796460000000i64, "window": {"from_ms": 1796463600000i64, "to_ms": 1796467200000i64},
        "attribution_window_hours": 24.0, "matured_share": 0.0,
        "arms": {"primary": {"requests": 0, "lists": 0}, "candidate": {"requests": 0, "lists": 0}},
        "analysis": {"decision": "inconclusive", "primary": {"conversions": 0, "trials": 0}, "candidate": {"conversions": 0, "trials": 0}},
        "guardrails": [{"name": "error_rate", "primary": null, "candidate": null, "limit": null, "passed": null, "detail": "not enough data"}],
        "shadow": null, "action": "wait", "rationale": "keep collecting: not enough data", "alarm": false, "proposed": null
    })
}

// ---- bodies ----------------------------------------------------------------

/// Every error: a stable code and a sentence naming what was wrong (a bad
/// parameter's detail starts with the parameter's name).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"error": "invalid_parameter", "detail": "k must be an integer from 1 to 100, got \"0\""}))]
pub struct ErrorBody {
    /// `invalid_parameter`, `invalid_body`, `unauthorized`, `forbidden`, `not_found`, `conflict`, `no_experiment`, `too_large`, `too_many_records`, `unsupported_media_type`, `artifact_invalid`, `rate_limited`, `no_model`, `no_neighbours`, `not_configured`, `store_unavailable`, …
    error: String,
    detail: String,
}

/// The error answers the operations document, one type per status (the
/// body is always [`ErrorBody`]).
macro_rules! error_responses {
    ($($name:ident = $status:literal, $desc:literal;)*) => {$(
        #[derive(IntoResponses)]
        #[response(status = $status, description = $desc)]
        #[allow(dead_code)]
        pub struct $name(ErrorBody);
    )*};
}

error_responses! {
    BadParameter = 400, "A bad parameter (the detail names it)";
    Unauthorized = 401, "No admin credentials";
    Forbidden = 403, "Wrong admin credentials";
    NotFound = 404, "Not found";
    Conflict = 409, "Conflict (the state changed; re-read and retry)";
    TooLarge = 413, "Body or batch too large";
    NotJson = 415, "Not Content-Type: application/json";
    ArtifactInvalid = 422, "The version's artifact fails its checksums";
    RateLimited = 429, "Rate limited (Retry-After)";
    Unavailable = 503, "No model loaded, or a store unavailable";
}

/// One movie of a list. Which of `score`, `similarity`, `popularity` and
/// `count` it carries depends on the route.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Movie {
    movie_id: u64,
    title: String,
    genres: Vec<String>,
    /// Release year (null when the catalogue does not know it).
    year: Option<u16>,
    /// The model's score for the user (`/recommend`; `/similar` with `user_id`), or the popularity share (`/popular`).
    score: Option<f64>,
    /// Cosine similarity to the movie asked about (`/similar`).
    similarity: Option<f64>,
    /// Training interactions (`/popular`).
    popularity: Option<u32>,
    /// Watch and rate events in the window (`/trending`).
    count: Option<u64>,
}

/// The rollout strategy that served.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum StrategyName {
    Fixed,
    Canary,
    AbTest,
    Shadow,
}

/// The filter as parsed (genres in the catalogue's spelling); null without one.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterBody {
    genre: Option<Vec<String>>,
    exclude_genre: Option<Vec<String>>,
    year_from: Option<u16>,
    year_to: Option<u16>,
    exclude: Option<Vec<u64>>,
}

/// Where a personal list came from (also stored as its trace).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The `X-Request-ID` and key of the trace.
    request_id: String,
    /// When the list was ranked (epoch ms).
    timestamp: i64,
    model_name: String,
    model_version: String,
    model_sha256: String,
    git_sha: Option<String>,
    data_snapshot_id: Option<String>,
    /// Lambda function version, or `local`.
    function_version: String,
    latency_ms: f64,
    /// `popularity` for a user with no events the catalogue knows, else null.
    fallback: Option<String>,
    /// `history` (fold-in from the user's movies), `embedding` (a training user's row), or null with the fallback.
    user_vector: Option<String>,
    strategy: StrategyName,
    /// `primary` or `candidate`.
    arm: String,
    experiment_id: Option<String>,
    policy: String,
    #[schema(value_type = Object)]
    policy_params: serde_json::Value,
    /// The exposure controller's adjustments the list was ranked with
    /// (`adj-000042`): policy `exposure` once the audit published any, else null.
    adjustments: Option<String>,
    filter: Option<FilterBody>,
}

/// `GET /recommend/{user_id}`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "user_id": 42, "model": "v20261204-101500-1a2b3c", "items": [50, 181],
    "recommendations": [
        {"movie_id": 50, "title": "Star Wars (1977)", "genres": ["Action", "Adventure", "Sci-Fi"], "year": 1977, "score": 0.91},
        {"movie_id": 181, "title": "Return of the Jedi (1983)", "genres": ["Action", "Sci-Fi"], "year": 1983, "score": 0.87}
    ],
    "variant": null,
    "provenance": {
        "request_id": "0193a4c2-7d1e-7c3a-9f00-1b2c3d4e5f60", "timestamp": 1796467200000i64,
        "model_name": "neumf", "model_version": "v20261204-101500-1a2b3c",
        "model_sha256": "9f2c1e0b8a7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3",
        "git_sha": "08b5d44", "data_snapshot_id": "7c6bf09ea975", "function_version": "local",
        "latency_ms": 0.41, "fallback": null, "user_vector": "history",
        "strategy": "fixed", "arm": "primary", "experiment_id": null,
        "policy": "exposure", "policy_params": {"scale": 1.0, "protect": 2, "slots": 3},
        "adjustments": "adj-000042",
        "filter": {"genre": ["Action"], "year_from": 1970}
    },
    "fewer_than_k": "only 2 unseen movies pass the filter"
}))]
pub struct RecommendResponse {
    user_id: u64,
    /// The version that ranked the list.
    model: String,
    /// The movie ids, best first.
    items: Vec<u64>,
    recommendations: Vec<Movie>,
    /// The arm under canary and A/B, else null.
    variant: Option<String>,
    provenance: Provenance,
    /// Present when fewer than k movies came back: why.
    fewer_than_k: Option<String>,
}

/// Provenance of the catalogue lists (`/similar`, `/popular`, `/trending`).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListProvenance {
    request_id: String,
    model_name: String,
    model_version: String,
    model_sha256: String,
    filter: Option<FilterBody>,
    latency_ms: f64,
    /// What the list counts (`/popular`, `/trending`).
    source: Option<String>,
    /// How likeness is measured (`/similar`).
    similarity: Option<String>,
    /// With `user_id`: `history` or `embedding` (null: the user could not be scored).
    user_vector: Option<String>,
    /// `similarity`, or `user_score` when the neighbours are ordered for the user (`/similar`).
    order: Option<String>,
}

/// `GET /similar/{movie_id}`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "movie": {"movie_id": 50, "title": "Star Wars (1977)", "genres": ["Action", "Adventure", "Sci-Fi"], "year": 1977},
    "user_id": 42, "model": "v20261204-101500-1a2b3c", "items": [172],
    "similar": [{"movie_id": 172, "title": "Empire Strikes Back, The (1980)", "genres": ["Action", "Sci-Fi"], "year": 1980, "similarity": 0.93, "score": 0.88}],
    "provenance": {
        "request_id": "0193a4c2-7d1e-7c3a-9f00-1b2c3d4e5f61", "model_name": "neumf",
        "model_version": "v20261204-101500-1a2b3c",
        "model_sha256": "9f2c1e0b8a7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3",
        "filter": null, "latency_ms": 0.05,
        "similarity": "cosine of the model's GMF item factors scaled by its prediction weights",
        "user_vector": "history", "order": "user_score"
    },
    "fewer_than_k": "only 1 of the movie's nearest neighbours remain (seen movies are left out)"
}))]
pub struct SimilarResponse {
    /// The movie asked about.
    movie: Movie,
    /// The `user_id` asked for ("because you watched"), else null.
    user_id: Option<u64>,
    model: String,
    items: Vec<u64>,
    similar: Vec<Movie>,
    provenance: ListProvenance,
    fewer_than_k: Option<String>,
}

/// `GET /popular`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "model": "v20261204-101500-1a2b3c", "items": [50],
    "recommendations": [{"movie_id": 50, "title": "Star Wars (1977)", "genres": ["Action", "Adventure", "Sci-Fi"], "year": 1977, "popularity": 583, "score": 0.0058}],
    "provenance": {
        "request_id": "0193a4c2-7d1e-7c3a-9f00-1b2c3d4e5f62", "model_name": "neumf",
        "model_version": "v20261204-101500-1a2b3c",
        "model_sha256": "9f2c1e0b8a7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3",
        "filter": {"genre": ["Sci-Fi"]}, "latency_ms": 0.03,
        "source": "training interactions per movie"
    },
    "fewer_than_k": "only 1 unseen movies pass the filter"
}))]
pub struct PopularResponse {
    model: String,
    items: Vec<u64>,
    recommendations: Vec<Movie>,
    provenance: ListProvenance,
    fewer_than_k: Option<String>,
}

/// The hours a trending list sums (RFC 3339, UTC; `to` exclusive).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /trending`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "model": "v20261204-101500-1a2b3c", "hours": 24,
    "window": {"from": "2026-12-03T23:00:00Z", "to": "2026-12-05T00:00:00Z"},
    "items": [50],
    "recommendations": [{"movie_id": 50, "title": "Star Wars (1977)", "genres": ["Action", "Adventure", "Sci-Fi"], "year": 1977, "count": 12}],
    "provenance": {
        "request_id": "0193a4c2-7d1e-7c3a-9f00-1b2c3d4e5f63", "model_name": "neumf",
        "model_version": "v20261204-101500-1a2b3c",
        "model_sha256": "9f2c1e0b8a7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3",
        "filter": null, "latency_ms": 0.2,
        "source": "watch and rate events per movie per hour, summed over the window"
    },
    "fewer_than_k": "only 1 catalogue movies were watched or rated in the last 24 hours"
}))]
pub struct TrendingResponse {
    model: String,
    /// The window asked for, 1 to 168 whole UTC hours (the current one included).
    hours: u32,
    window: Window,
    items: Vec<u64>,
    recommendations: Vec<Movie>,
    provenance: ListProvenance,
    fewer_than_k: Option<String>,
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "ok", "model_loaded": true, "serving_versions": ["v20261204-101500-1a2b3c"]}))]
pub struct Healthz {
    /// `ok`, or `unavailable` (503) when no model can serve.
    status: String,
    model_loaded: bool,
    serving_versions: Vec<String>,
}

/// `GET /health` (admin): `/healthz` plus the rollout state and the stores.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "status": "ok", "model_loaded": true, "serving_versions": ["v20261204-101500-1a2b3c"],
    "rollout": {"strategy": "fixed", "served_version": null},
    "adjustments": {"version": 42, "name": "adj-000042", "key": "adj-000042.json",
        "sha256": "4b227777d4dd1fc61c6f884f48641d02b4d121d3fd328cb08b5531fcacdabf8a", "bytes": 20480,
        "updated_ms": 1796467200000i64},
    "stores": {"traces": "ok"}
}))]
pub struct Health {
    status: String,
    model_loaded: bool,
    serving_versions: Vec<String>,
    /// The rollout state as stored (with its salt and who changed it), or `{"error"}`.
    #[schema(value_type = Object)]
    rollout: serde_json::Value,
    /// The exposure controller's adjustments serving (the pointer to the
    /// newest version: name, sha256, end of the last audit window), or null.
    #[schema(value_type = Option<Object>)]
    adjustments: serde_json::Value,
    /// Each store's state.
    #[schema(value_type = Object)]
    stores: serde_json::Value,
}

/// `GET /trace/{request_id}`: the provenance stored when the list was
/// served (failed requests too), kept 30 days. Traces written by older
/// versions may lack the newer fields.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "request_id": "my-id-1", "timestamp": 1796467200000i64, "model_version": "v20261204-101500-1a2b3c",
    "model_name": "neumf", "model_sha256": "9f2c1e0b8a7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3",
    "git_sha": "08b5d44", "data_snapshot_id": "7c6bf09ea975", "function_version": "local",
    "latency_ms": 0.41, "fallback": null, "user_vector": "history", "adjustments": "adj-000042", "filter": {"genre": ["Action"]},
    "strategy": "shadow", "arm": "primary", "experiment_id": "exp-0193a4c2", "variant": null, "policy": "exposure",
    "policy_params": {"scale": 1.0, "protect": 2, "slots": 3}, "user_id": 42, "k": 2, "items": [50, 181], "status": 200, "error": null,
    "path": "/recommend/42", "stored_at": 1796467200003i64,
    "shadow": {"model_version": "v2", "items": [181, 50]}, "replaced_request_id": "my-id-0"
}))]
pub struct TraceBody {
    request_id: String,
    /// When the list was ranked (epoch ms).
    timestamp: i64,
    model_version: String,
    model_name: Option<String>,
    model_sha256: Option<String>,
    git_sha: Option<String>,
    data_snapshot_id: Option<String>,
    function_version: Option<String>,
    latency_ms: Option<f64>,
    fallback: Option<String>,
    user_vector: Option<String>,
    /// The exposure controller's adjustments the list was ranked with.
    adjustments: Option<String>,
    filter: Option<FilterBody>,
    strategy: StrategyName,
    arm: String,
    experiment_id: Option<String>,
    variant: Option<String>,
    policy: Option<String>,
    #[schema(value_type = Object)]
    policy_params: serde_json::Value,
    user_id: u64,
    k: u32,
    /// The movie ids served, best first (empty for a failed request).
    items: Vec<u64>,
    /// The HTTP status answered.
    status: u16,
    /// The error code of a failed request.
    error: Option<String>,
    path: String,
    /// When the trace was written (epoch ms).
    stored_at: i64,
    /// Under `shadow`: what the candidate would have served.
    #[schema(value_type = Option<Object>)]
    shadow: serde_json::Value,
    /// The client's `X-Request-ID` when it named another response's trace.
    replaced_request_id: Option<String>,
}

/// One event of `POST /events` (docs/events.md has every rule).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"type": "watch", "user_id": 42, "movie_id": 50, "minute": 12, "ts": 1796467200000i64, "event_id": "w-1"}))]
pub struct Event {
    /// `watch`, `rate` or `reco_response`.
    #[serde(rename = "type")]
    kind: String,
    user_id: u64,
    /// `watch` and `rate`.
    movie_id: Option<u64>,
    /// `rate`: 1 to 5 in steps of 0.5.
    rating: Option<f64>,
    /// `watch`: 0 to 100000.
    minute: Option<u32>,
    /// `reco_response`: the ids served (at most 1000).
    movie_ids: Option<Vec<u64>>,
    /// Event time, epoch ms (or `timestamp`, ISO-8601): 1995 to a day ahead.
    ts: Option<i64>,
    timestamp: Option<String>,
    /// Makes retries exact (the idempotency key within the caller's namespace).
    event_id: Option<String>,
}

/// One record's outcome, in request order.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordResult {
    index: u32,
    /// `accepted`, `quarantined`, `duplicate` or `rejected`.
    status: String,
    /// The idempotency key.
    key: Option<String>,
    /// The event type, when it could be read.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Why it was rejected or quarantined.
    reason: Option<String>,
    /// The field a rejection names.
    field: Option<String>,
}

/// `POST /events`: 202 when nothing was rejected, 207 otherwise.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "accepted": 1, "rejected": 1, "quarantined": 0, "duplicates": 0,
    "batch": "b-0193a4c2-7d1e-7c3a-9f00-1b2c3d4e5f64",
    "results": [
        {"index": 0, "status": "accepted", "key": "http:local:event:w-1", "type": "watch"},
        {"index": 1, "status": "rejected", "key": "http:local:sha256:1f2e", "type": "rate", "reason": "rating: must be 1 to 5 in steps of 0.5 (got 7)", "field": "rating"}
    ]
}))]
pub struct EventsResponse {
    accepted: u32,
    rejected: u32,
    quarantined: u32,
    duplicates: u32,
    /// The lake batch the accepted records were written in.
    batch: Option<String>,
    results: Vec<RecordResult>,
}

/// `GET /rollout/status`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "strategy": "canary", "primary_version": "v1", "candidate_version": "v2", "percentage": 10.0,
    "experiment_id": "exp-0193a4c2", "updated_at": 1796467200000i64, "updated_by": "token", "revision": 3,
    "served_version": "v1", "primary_policy": null, "candidate_policy": "slots:slots=3",
    "serving_versions": ["v1", "v2"], "detail": null
}))]
#[serde(deny_unknown_fields)]
pub struct RolloutStatus {
    strategy: StrategyName,
    primary_version: Option<String>,
    candidate_version: Option<String>,
    /// Share of users on the candidate, 0 to 100.
    percentage: f64,
    experiment_id: Option<String>,
    updated_at: Option<i64>,
    updated_by: Option<String>,
    /// Increases by one per change (the compare-and-set key).
    revision: u64,
    /// The primary's version (what everyone gets under `fixed`).
    served_version: Option<String>,
    /// Each arm's re-ranking policy spec (null: the service default).
    primary_policy: Option<String>,
    candidate_policy: Option<String>,
    /// The versions this process serves now (`GET /rollout/status` on a function that serves).
    serving_versions: Option<Vec<String>>,
    /// Present when no version was ever switched to: recommend serves the registry's newest.
    detail: Option<String>,
}

/// The body of `POST /rollout`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"strategy": "canary", "primary_version": "v1", "candidate_version": "v2", "percentage": 10, "candidate_policy": "slots:slots=3"}))]
pub struct RolloutRequest {
    strategy: StrategyName,
    primary_version: String,
    /// Required unless `fixed`.
    candidate_version: Option<String>,
    /// Required unless `fixed`: 0 to 100.
    percentage: Option<f64>,
    /// A policy spec like `slots:slots=3`.
    primary_policy: Option<String>,
    candidate_policy: Option<String>,
}

/// What `POST /switch` and `POST /rollout` changed.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "state": {"strategy": "fixed", "served_version": "v2", "candidate_version": null, "percentage": 0.0,
        "experiment_id": null, "salt": null, "revision": 4, "updated_at": 1796467200000i64, "updated_by": "token"},
    "previous": {"strategy": "canary", "served_version": "v1", "candidate_version": "v2", "percentage": 10.0,
        "experiment_id": "exp-0193a4c2", "salt": "exp-0193a4c2", "revision": 3, "updated_at": 1796460000000i64, "updated_by": "token"},
    "status": {"strategy": "fixed", "primary_version": "v2", "candidate_version": null, "percentage": 0.0,
        "experiment_id": null, "updated_at": 1796467200000i64, "updated_by": "token", "revision": 4,
        "served_version": "v2", "primary_policy": null, "candidate_policy": null},
    "effective_within_s": 0, "applied_here": true
}))]
pub struct RolloutChange {
    /// The stored state now.
    #[schema(value_type = Object)]
    state: serde_json::Value,
    /// The state before (null for the first change).
    #[schema(value_type = Option<Object>)]
    previous: serde_json::Value,
    status: RolloutStatus,
    /// Seconds until every instance serves it (0: already here).
    effective_within_s: u64,
    applied_here: bool,
}

/// `GET /rollout/changes`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"changes": [{"revision": 4, "strategy": "fixed", "served_version": "v2"}]}))]
pub struct RolloutChanges {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    changes: serde_json::Value,
}

/// `GET /experiment/analyze`: the running experiment's report over a
/// window of traced lists (per-arm metrics, the conversion test,
/// guardrails, the action the canary would take).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = report_example)]
pub struct ExperimentReport {
    strategy: StrategyName,
    experiment_id: Option<String>,
    primary_version: String,
    candidate_version: Option<String>,
    primary_policy: Option<String>,
    candidate_policy: Option<String>,
    percentage: f64,
    revision: u64,
    /// When the experiment began (epoch ms, from the change log).
    started_at: Option<i64>,
    /// `{"from_ms","to_ms"}`: lists served in it were analysed.
    #[schema(value_type = Object)]
    window: serde_json::Value,
    attribution_window_hours: f64,
    /// Share of the lists whose attribution window has elapsed.
    matured_share: Option<f64>,
    /// `primary`, `candidate`: requests, errors, lists, conversions, p95 latency, fairness.
    #[schema(value_type = Object)]
    arms: serde_json::Value,
    /// The conversion test (canary and ab_test).
    #[schema(value_type = Option<Object>)]
    analysis: serde_json::Value,
    /// Each guardrail: name, primary, candidate, limit, passed, detail.
    #[schema(value_type = Vec<Object>)]
    guardrails: serde_json::Value,
    /// Shadow comparison (shadow only).
    #[schema(value_type = Option<Object>)]
    shadow: serde_json::Value,
    /// `promote`, `rollback`, `keep_primary`, `ramp`, `wait` or `none`.
    action: String,
    rationale: String,
    /// Whether the action raises the rollback alarm.
    alarm: bool,
    /// The rollout the action would write.
    #[schema(value_type = Option<Object>)]
    proposed: serde_json::Value,
}

/// `POST /experiment/promote`: the canary's decision, applied unless `dry_run`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "action": "wait", "rationale": "keep collecting: not enough data", "dry_run": true,
    "applied": false, "status": null, "effective_within_s": null, "report": report_example()
}))]
pub struct PromoteResponse {
    action: String,
    rationale: String,
    dry_run: bool,
    /// Whether a rollout change was written.
    applied: bool,
    /// The rollout status after the change (null when nothing was applied).
    status: Option<RolloutStatus>,
    effective_within_s: Option<u64>,
    report: ExperimentReport,
}
