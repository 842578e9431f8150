//! The rollout function's routes: `GET /rollout/status`, `POST /switch?model=VERSION`
//! (kept for clients of the previous system) and `POST /rollout`.
//!
//! Admin routes (`POST`) need a caller: in AWS, API Gateway's IAM authorizer
//! admits the request and the function records the caller's ARN ([`Caller`]);
//! locally, `Authorization: Bearer $MOVIE_RECS_ADMIN_TOKEN`. Missing
//! credentials answer 401, wrong ones 403.
//!
//! `POST /rollout` validates every field (versions exist in the registry and
//! their checksums verify; percentage 0 to 100) and applies any strategy:
//! `fixed`, `canary`, `ab_test`, `shadow`. A new experiment (id and salt)
//! starts when the strategy or a version changes; changing only the
//! percentage keeps it, so a canary ramps up without reshuffling users.
//! Every change lands in the change log (`GET /rollout/changes`).
//!
//! `GET /experiment/analyze?window_minutes=60` reports the running
//! experiment per arm (requests, conversions, error rate, p95 latency,
//! fairness), the conversion test, the guardrails and the action the
//! automated canary would take ([`crate::canary`]). `POST
//! /experiment/promote?dry_run=true` (admin) takes that action (promote,
//! roll back, keep the primary or ramp) unless `dry_run`; without
//! `window_minutes` it judges the whole experiment.

use super::{error, AppState};
use crate::ports::{RolloutSpec, RolloutState, StoreError};
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The authenticated principal of an admin request, set by the Lambda
/// adapter from API Gateway's IAM identity.
#[derive(Clone, Debug)]
pub struct Caller(pub String);

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/rollout/status", get(status))
        .route("/switch", post(switch))
        .route("/rollout", post(set_rollout))
        .route("/rollout/changes", get(changes))
        .route("/experiment/analyze", get(analyze))
        .route("/experiment/promote", post(promote))
}

/// The rollout function's router.
pub fn router(state: Arc<AppState>) -> Router {
    super::finish(routes(), state)
}

/// Why an admin request is refused: 401 without credentials, 403 with wrong ones.
#[derive(Debug, PartialEq)]
pub struct Denied {
    pub status: StatusCode,
    pub detail: &'static str,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let code = if self.status == StatusCode::UNAUTHORIZED {
            "unauthorized"
        } else {
            "forbidden"
        };
        error(self.status, code, self.detail)
    }
}

/// Who is calling an admin route.
pub fn authorize(st: &AppState, req: &Request) -> Result<String, Denied> {
    if let Some(Caller(arn)) = req.extensions().get::<Caller>() {
        return Ok(arn.clone());
    }
    let bearer = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let deny = |status, detail| Err(Denied { status, detail });
    match (&st.config.admin_token, bearer) {
        (_, None) if st.config.iam_authorized => deny(
            StatusCode::UNAUTHORIZED,
            "admin routes need an IAM-signed request",
        ),
        (_, None) => deny(
            StatusCode::UNAUTHORIZED,
            "admin routes need Authorization: Bearer <MOVIE_RECS_ADMIN_TOKEN>",
        ),
        (None, Some(_)) => deny(
            StatusCode::FORBIDDEN,
            "admin routes are disabled: no MOVIE_RECS_ADMIN_TOKEN is configured",
        ),
        (Some(want), Some(got)) if constant_time_eq(want.as_bytes(), got.as_bytes()) => {
            Ok("token".into())
        }
        (Some(_), Some(_)) => deny(StatusCode::FORBIDDEN, "wrong admin token"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Conflict { .. } => error(StatusCode::CONFLICT, "conflict", e.to_string()),
        StoreError::Unavailable { .. } => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        ),
    }
}

/// The state as clients read it: the fields, plus `served_version`
/// (= primary, for clients of the previous system) and `revision`.
pub fn status_json(s: &RolloutState) -> Value {
    json!({
        "strategy": s.strategy,
        "primary_version": s.served_version,
        "candidate_version": s.candidate_version,
        "percentage": s.percentage,
        "experiment_id": s.experiment_id,
        "updated_at": s.updated_at,
        "updated_by": s.updated_by,
        "revision": s.revision,
        "served_version": s.served_version,
        "primary_policy": s.primary_policy,
        "candidate_policy": s.candidate_policy,
    })
}

async fn status(State(st): State<Arc<AppState>>) -> Response {
    match st.rollout.state().await {
        Ok(Some(s)) => {
            let mut v = status_json(&s);
            if let Some(serving) = st.serving() {
                v["serving_versions"] = json!(serving.versions());
            }
            Json(v).into_response()
        }
        Ok(None) => Json(json!({
            "strategy": "fixed",
            "primary_version": null,
            "candidate_version": null,
            "percentage": 0.0,
            "experiment_id": null,
            "updated_at": null,
            "updated_by": null,
            "served_version": null,
            "revision": 0,
            "detail": "no version was switched to: recommend serves the newest in the registry",
        }))
        .into_response(),
        Err(e) => store_error(e),
    }
}

async fn changes(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(l)) if (1..=500).contains(&l) => l,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                "limit must be an integer from 1 to 500",
            )
        }
    };
    match st.rollout.changes(limit).await {
        Ok(c) => Json(json!({"changes": c})).into_response(),
        Err(e) => store_error(e),
    }
}

/// Checks that `version` exists in the registry and every checksum verifies.
async fn verify_version(st: &AppState, version: &str) -> Result<(), Response> {
    let Some(reg) = st.registry.clone() else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_registry",
            "this function has no model registry configured",
        ));
    };
    let v = version.to_string();
    match tokio::task::spawn_blocking(move || reg.fetch(&v)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e @ crate::ports::RegistryError::NotFound(_)))
        | Ok(Err(e @ crate::ports::RegistryError::InvalidVersion(_))) => Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            e.to_string(),
        )),
        Ok(Err(e @ crate::ports::RegistryError::Artifact { .. })) => Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "artifact_invalid",
            e.to_string(),
        )),
        Ok(Err(e)) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "registry_unavailable",
            e.to_string(),
        )),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )),
    }
}

/// Gives a non-fixed `spec` its experiment id and salt: those of `previous`
/// when only the percentage changes, new ones when the strategy or a
/// version changes.
pub fn name_experiment(spec: &mut RolloutSpec, previous: Option<&RolloutState>) {
    if spec.strategy == "fixed" || spec.experiment_id.is_some() {
        return;
    }
    let same = previous.filter(|p| {
        p.strategy == spec.strategy
            && p.served_version == spec.primary_version
            && p.candidate_version == spec.candidate_version
            && p.primary_policy == spec.primary_policy
            && p.candidate_policy == spec.candidate_policy
    });
    spec.experiment_id = match same.and_then(|p| p.experiment_id.clone()) {
        Some(id) => Some(id),
        None => Some(format!("exp-{}", uuid::Uuid::new_v4())),
    };
    if spec.salt.is_none() {
        spec.salt = same
            .and_then(|p| p.salt.clone())
            .or(spec.experiment_id.clone());
    }
}

/// Writes `spec` with a guarded write over the state just read.
async fn apply(st: &AppState, mut spec: RolloutSpec, caller: &str) -> Response {
    let previous = match st.rollout.state().await {
        Ok(s) => s,
        Err(e) => return store_error(e),
    };
    name_experiment(&mut spec, previous.as_ref());
    let expected = previous.as_ref().map_or(0, |s| s.revision);
    match st.rollout.set(expected, &spec, caller).await {
        Ok(now) => {
            tracing::info!(target: "audit", caller, strategy = %now.strategy, primary = %now.served_version,
                candidate = ?now.candidate_version, percentage = now.percentage, revision = now.revision, "rollout changed");
            Json(json!({
                "state": now,
                "previous": previous,
                "status": status_json(&now),
            }))
            .into_response()
        }
        Err(e) => store_error(e),
    }
}

/// Verifies `version`, then makes it the only served one, its lists
/// re-ranked by `policy` (the service default when `None`).
async fn apply_fixed(
    st: &AppState,
    version: &str,
    policy: Option<String>,
    caller: &str,
) -> Response {
    if let Err(r) = verify_version(st, version).await {
        return r;
    }
    apply(
        st,
        RolloutSpec::fixed(version).with_primary_policy(policy),
        caller,
    )
    .await
}

async fn switch(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let caller = match authorize(&st, &req) {
        Ok(c) => c,
        Err(d) => return d.into_response(),
    };
    let Some(version) = q.get("model").filter(|v| !v.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "model is required: POST /switch?model=VERSION",
        );
    };
    apply_fixed(&st, version, None, &caller).await
}

/// Strategies `POST /rollout` accepts.
pub const STRATEGIES: [&str; 4] = ["fixed", "canary", "ab_test", "shadow"];

async fn set_rollout(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let caller = match authorize(&st, &req) {
        Ok(c) => c,
        Err(d) => return d.into_response(),
    };
    let bytes = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "body over 64 KiB",
            )
        }
    };
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "expected a JSON object {\"strategy\",\"primary_version\",\"candidate_version\",\"percentage\"}",
            )
        }
    };
    let strategy = body["strategy"].as_str().unwrap_or("");
    if !STRATEGIES.contains(&strategy) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!(
                "strategy must be one of {STRATEGIES:?}, got {}",
                body["strategy"]
            ),
        );
    }
    let Some(primary) = body["primary_version"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "primary_version is required",
        );
    };
    // Optional re-ranking policies per arm (`name[:key=value]`).
    let mut policies = [None, None];
    for (slot, key) in policies
        .iter_mut()
        .zip(["primary_policy", "candidate_policy"])
    {
        match &body[key] {
            Value::Null => {}
            Value::String(spec) => {
                match crate::domain::rerank::Policy::from_spec(spec, crate::http::K_MAX) {
                    Ok(p) => *slot = Some(p.spec()),
                    Err(d) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "invalid_parameter",
                            format!("{key}: {d}"),
                        )
                    }
                }
            }
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_parameter",
                    format!("{key} must be a string like \"slots:slots=3\", got {other}"),
                )
            }
        }
    }
    let [primary_policy, candidate_policy] = policies;
    if strategy == "fixed" {
        return apply_fixed(&st, primary, primary_policy, &caller).await;
    }
    let Some(candidate) = body["candidate_version"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("candidate_version is required for {strategy}"),
        );
    };
    match body["percentage"].as_f64() {
        Some(p) if (0.0..=100.0).contains(&p) => {}
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                format!(
                    "percentage must be a number from 0 to 100, got {}",
                    body["percentage"]
                ),
            )
        }
    }
    if candidate == primary && primary_policy == candidate_policy {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "candidate_version must differ from primary_version (or the arms' policies must differ)",
        );
    }
    for v in [primary, candidate] {
        if let Err(r) = verify_version(&st, v).await {
            return r;
        }
    }
    let spec = RolloutSpec {
        strategy: strategy.into(),
        primary_version: primary.into(),
        candidate_version: Some(candidate.into()),
        percentage: body["percentage"].as_f64().unwrap_or(0.0),
        experiment_id: None,
        salt: None,
        primary_policy,
        candidate_policy,
        reason: None,
    };
    apply(&st, spec, &caller).await
}

fn canary_error(e: crate::canary::job::CanaryError) -> Response {
    use crate::canary::job::CanaryError as E;
    match e {
        E::NoRollout => error(StatusCode::CONFLICT, "no_experiment", e.to_string()),
        E::Window(d) => error(StatusCode::BAD_REQUEST, "invalid_parameter", d),
        E::Store(s) => store_error(s),
        E::Lake(_) | E::Catalog(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        ),
    }
}

/// `window_minutes` (1 to 43,200), else `default`; the error is the 400 detail.
fn window_minutes(q: &HashMap<String, String>, default: i64) -> Result<i64, String> {
    let max = crate::canary::job::MAX_WINDOW_MINUTES;
    match q.get("window_minutes").map(|w| w.parse::<i64>()) {
        None => Ok(default),
        Some(Ok(w)) if (1..=max).contains(&w) => Ok(w),
        Some(_) => Err(format!("window_minutes must be an integer from 1 to {max}")),
    }
}

fn bad_window(detail: String) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_parameter", detail)
}

fn no_experiments() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_experiments",
        "this function has no experiment analysis configured",
    )
}

async fn analyze(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(job) = st.experiments.clone() else {
        return no_experiments();
    };
    let minutes = match window_minutes(&q, 60) {
        Ok(m) => m,
        Err(d) => return bad_window(d),
    };
    match job
        .analyze(chrono::Utc::now().timestamp_millis(), minutes)
        .await
    {
        Ok(report) => Json(report).into_response(),
        Err(e) => canary_error(e),
    }
}

async fn promote(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let caller = match authorize(&st, &req) {
        Ok(c) => c,
        Err(d) => return d.into_response(),
    };
    let Some(job) = st.experiments.clone() else {
        return no_experiments();
    };
    let minutes = match window_minutes(&q, job.window_minutes) {
        Ok(m) => m,
        Err(d) => return bad_window(d),
    };
    let dry_run = match q.get("dry_run").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                format!("dry_run must be true or false, got {other:?}"),
            )
        }
    };
    match job
        .run(
            chrono::Utc::now().timestamp_millis(),
            minutes,
            dry_run,
            &caller,
        )
        .await
    {
        Ok(out) => Json(json!({
            "action": out.report.action,
            "rationale": out.report.rationale,
            "dry_run": dry_run,
            "applied": out.applied.is_some(),
            "status": out.applied.as_ref().map(status_json),
            "report": out.report,
        }))
        .into_response(),
        Err(e) => canary_error(e),
    }
}
