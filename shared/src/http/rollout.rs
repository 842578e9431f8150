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

use super::{ApiError, AppState};
use crate::domain::strategy::Strategy;
use crate::ports::{RolloutSpec, RolloutState};
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The authenticated principal of an admin request, set by the Lambda
/// adapter from API Gateway's IAM identity.
#[derive(Clone, Debug)]
pub struct Caller(pub String);

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(switch))
        .routes(routes!(set_rollout))
        .routes(routes!(changes))
        .routes(routes!(analyze))
        .routes(routes!(promote))
}

/// The rollout function's router.
pub fn router(state: Arc<AppState>) -> Router {
    super::finish(routes(), state)
}

/// Who is calling an admin route: 401 without credentials, 403 with wrong ones.
pub fn authorize(st: &AppState, req: &Request) -> Result<String, ApiError> {
    if let Some(Caller(arn)) = req.extensions().get::<Caller>() {
        return Ok(arn.clone());
    }
    let bearer = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (&st.config.admin_token, bearer) {
        (_, None) if st.config.iam_authorized => Err(ApiError::Unauthorized(
            "admin routes need an IAM-signed request",
        )),
        (_, None) => Err(ApiError::Unauthorized(
            "admin routes need Authorization: Bearer <MOVIE_RECS_ADMIN_TOKEN>",
        )),
        (None, Some(_)) => Err(ApiError::Forbidden(
            "admin routes are disabled: no MOVIE_RECS_ADMIN_TOKEN is configured",
        )),
        (Some(want), Some(got)) if constant_time_eq(want.as_bytes(), got.as_bytes()) => {
            Ok("token".into())
        }
        (Some(_), Some(_)) => Err(ApiError::Forbidden("wrong admin token")),
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

#[utoipa::path(get, path = "/rollout/status", tag = "rollout",
    responses((status = 200, description = "The rollout state", body = super::openapi::RolloutStatus),
        super::openapi::Unavailable))]
async fn status(State(st): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    Ok(Json(match st.rollout()?.state().await? {
        Some(s) => {
            let mut v = status_json(&s);
            if let Some(serving) = st.serving() {
                v["serving_versions"] = json!(serving.versions());
            }
            v
        }
        None => json!({
            "strategy": Strategy::Fixed,
            "primary_version": null,
            "candidate_version": null,
            "percentage": 0.0,
            "experiment_id": null,
            "updated_at": null,
            "updated_by": null,
            "served_version": null,
            "revision": 0,
            "detail": "no version was switched to: recommend serves the newest in the registry",
        }),
    }))
}

#[utoipa::path(get, path = "/rollout/changes", tag = "rollout",
    params(("limit" = Option<u32>, Query, description = "1 to 500 (default 20)", minimum = 1, maximum = 500)),
    responses((status = 200, description = "The change log, newest first", body = super::openapi::RolloutChanges),
        super::openapi::BadParameter,
        super::openapi::Unavailable))]
async fn changes(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(l)) if (1..=500).contains(&l) => l,
        Some(_) => {
            return Err(ApiError::InvalidParameter(
                "limit must be an integer from 1 to 500".into(),
            ))
        }
    };
    let c = st.rollout()?.changes(limit).await?;
    Ok(Json(json!({"changes": c})))
}

/// Checks that `version` exists in the registry and every checksum verifies.
async fn verify_version(st: &AppState, version: &str) -> Result<(), ApiError> {
    use crate::ports::RegistryError as R;
    let reg = st.registry.clone().ok_or_else(|| {
        ApiError::unavailable(
            "no_registry",
            "this function has no model registry configured",
        )
    })?;
    let v = version.to_string();
    match tokio::task::spawn_blocking(move || reg.fetch(&v)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e @ (R::NotFound(_) | R::InvalidVersion(_)))) => {
            Err(ApiError::InvalidParameter(e.to_string()))
        }
        Ok(Err(e @ R::Artifact { .. })) => Err(ApiError::ArtifactInvalid(e.to_string())),
        Ok(Err(e)) => Err(ApiError::unavailable("registry_unavailable", e.to_string())),
        Err(e) => Err(ApiError::internal("internal", e.to_string())),
    }
}

/// Gives a non-fixed `spec` its experiment id and salt: those of `previous`
/// when only the percentage changes, new ones when the strategy or a
/// version changes.
pub fn name_experiment(spec: &mut RolloutSpec, previous: Option<&RolloutState>) {
    if spec.strategy == Strategy::Fixed || spec.experiment_id.is_some() {
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

/// When a written change serves: at once in this process when it serves
/// requests itself (it syncs before answering), else (the rollout function,
/// whose change the recommend function reads) within the reload interval.
async fn take_effect(st: &AppState) -> Value {
    let serves_here = st.serving().is_some();
    match (serves_here, st.registry.clone()) {
        (true, Some(reg)) => {
            let out = super::sync_model(st, reg).await;
            let applied = matches!(
                out,
                Ok(super::SyncOutcome::Loaded(_)) | Ok(super::SyncOutcome::Unchanged(_))
            );
            if !applied {
                tracing::warn!(outcome = ?out, "the change did not apply here yet; the reload loop retries it");
            }
            json!({
                "effective_within_s": if applied { 0 } else { st.config.reload_secs },
                "applied_here": applied,
            })
        }
        _ => json!({"effective_within_s": st.config.reload_secs, "applied_here": false}),
    }
}

/// Writes `spec` with a guarded write over the state just read.
async fn apply(st: &AppState, mut spec: RolloutSpec, caller: &str) -> Result<Response, ApiError> {
    let rollout = st.rollout()?;
    let previous = rollout.state().await?;
    name_experiment(&mut spec, previous.as_ref());
    let expected = previous.as_ref().map_or(0, |s| s.revision);
    let now = rollout.set(expected, &spec, caller).await?;
    tracing::info!(target: "audit", caller, strategy = %now.strategy, primary = %now.served_version,
        candidate = ?now.candidate_version, percentage = now.percentage, revision = now.revision, "rollout changed");
    let effect = take_effect(st).await;
    Ok(Json(json!({
        "state": now,
        "previous": previous,
        "status": status_json(&now),
        "effective_within_s": effect["effective_within_s"],
        "applied_here": effect["applied_here"],
    }))
    .into_response())
}

/// Verifies `version`, then makes it the only served one, its lists
/// re-ranked by `policy` (the service default when `None`).
async fn apply_fixed(
    st: &AppState,
    version: &str,
    policy: Option<String>,
    caller: &str,
) -> Result<Response, ApiError> {
    verify_version(st, version).await?;
    apply(
        st,
        RolloutSpec::fixed(version).with_primary_policy(policy),
        caller,
    )
    .await
}

/// Serves one version to everyone (`fixed`).
#[utoipa::path(post, path = "/switch", tag = "rollout", security(("admin" = [])),
    params(("model" = String, Query, description = "A version of the registry")),
    responses((status = 200, description = "Switched", body = super::openapi::RolloutChange),
        super::openapi::BadParameter,
        super::openapi::Unauthorized,
        super::openapi::Forbidden,
        super::openapi::Conflict,
        super::openapi::ArtifactInvalid,
        super::openapi::Unavailable))]
async fn switch(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Response, ApiError> {
    let caller = authorize(&st, &req)?;
    let version = q.get("model").filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::InvalidParameter("model is required: POST /switch?model=VERSION".into())
    })?;
    apply_fixed(&st, version, None, &caller).await
}

/// Strategies `POST /rollout` accepts.
pub const STRATEGIES: [&str; 4] = [
    Strategy::Fixed.as_str(),
    Strategy::Canary.as_str(),
    Strategy::AbTest.as_str(),
    Strategy::Shadow.as_str(),
];

/// The optional re-ranking policy of one arm (`name[:key=value]`), normalised.
fn arm_policy(body: &Value, key: &str) -> Result<Option<String>, ApiError> {
    match &body[key] {
        Value::Null => Ok(None),
        Value::String(spec) => crate::domain::rerank::Policy::from_spec(spec, super::K_MAX)
            .map(|p| Some(p.spec()))
            .map_err(|d| ApiError::InvalidParameter(format!("{key}: {d}"))),
        other => Err(ApiError::InvalidParameter(format!(
            "{key} must be a string like \"slots:slots=3\", got {other}"
        ))),
    }
}

/// Sets the rollout: `fixed`, `canary`, `ab_test` or `shadow`.
#[utoipa::path(post, path = "/rollout", tag = "rollout", security(("admin" = [])),
    request_body(content = super::openapi::RolloutRequest, content_type = "application/json"),
    responses((status = 200, description = "Set", body = super::openapi::RolloutChange),
        super::openapi::BadParameter,
        super::openapi::Unauthorized,
        super::openapi::Forbidden,
        super::openapi::Conflict,
        super::openapi::TooLarge,
        super::openapi::ArtifactInvalid,
        super::openapi::Unavailable))]
async fn set_rollout(State(st): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    let caller = authorize(&st, &req)?;
    let bytes = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .map_err(|_| ApiError::TooLarge {
            code: "too_large",
            detail: "body over 64 KiB".into(),
        })?;
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Err(ApiError::InvalidBody(
            "expected a JSON object {\"strategy\",\"primary_version\",\"candidate_version\",\"percentage\"}".into(),
        )),
    };
    let Some(strategy) = body["strategy"]
        .as_str()
        .and_then(|s| s.parse::<Strategy>().ok())
    else {
        return Err(ApiError::InvalidParameter(format!(
            "strategy must be one of {STRATEGIES:?}, got {}",
            body["strategy"]
        )));
    };
    let primary = body["primary_version"]
        .as_str()
        .ok_or_else(|| ApiError::InvalidParameter("primary_version is required".into()))?;
    let primary_policy = arm_policy(&body, "primary_policy")?;
    let candidate_policy = arm_policy(&body, "candidate_policy")?;
    if strategy == Strategy::Fixed {
        return apply_fixed(&st, primary, primary_policy, &caller).await;
    }
    let candidate = body["candidate_version"].as_str().ok_or_else(|| {
        ApiError::InvalidParameter(format!("candidate_version is required for {strategy}"))
    })?;
    let percentage = body["percentage"]
        .as_f64()
        .filter(|p| (0.0..=100.0).contains(p))
        .ok_or_else(|| {
            ApiError::InvalidParameter(format!(
                "percentage must be a number from 0 to 100, got {}",
                body["percentage"]
            ))
        })?;
    if candidate == primary && primary_policy == candidate_policy {
        return Err(ApiError::InvalidParameter(
            "candidate_version must differ from primary_version (or the arms' policies must differ)"
                .into(),
        ));
    }
    for v in [primary, candidate] {
        verify_version(&st, v).await?;
    }
    let spec = RolloutSpec {
        strategy,
        primary_version: primary.into(),
        candidate_version: Some(candidate.into()),
        percentage,
        experiment_id: None,
        salt: None,
        primary_policy,
        candidate_policy,
        reason: None,
    };
    apply(&st, spec, &caller).await
}

impl From<crate::canary::job::CanaryError> for ApiError {
    fn from(e: crate::canary::job::CanaryError) -> Self {
        use crate::canary::job::CanaryError as E;
        match e {
            E::NoRollout => ApiError::NoExperiment(e.to_string()),
            E::Window(d) => ApiError::InvalidParameter(d),
            E::Store(s) => s.into(),
            E::Lake(_) | E::Catalog(_) => ApiError::unavailable("store_unavailable", e.to_string()),
        }
    }
}

/// `window_minutes` (1 to 43,200), else `default`.
fn window_minutes(q: &HashMap<String, String>, default: i64) -> Result<i64, ApiError> {
    let max = crate::canary::job::MAX_WINDOW_MINUTES;
    match q.get("window_minutes").map(|w| w.parse::<i64>()) {
        None => Ok(default),
        Some(Ok(w)) if (1..=max).contains(&w) => Ok(w),
        Some(_) => Err(ApiError::InvalidParameter(format!(
            "window_minutes must be an integer from 1 to {max}"
        ))),
    }
}

fn experiments(st: &AppState) -> Result<Arc<crate::canary::job::ExperimentJob>, ApiError> {
    st.experiments.clone().ok_or_else(|| {
        ApiError::unavailable(
            "no_experiments",
            "this function has no experiment analysis configured",
        )
    })
}

#[utoipa::path(get, path = "/experiment/analyze", tag = "rollout",
    params(("window_minutes" = Option<u32>, Query, description = "Lists served in the last this many minutes (default 60)", minimum = 1)),
    responses((status = 200, description = "The experiment's report", body = super::openapi::ExperimentReport),
        super::openapi::BadParameter,
        super::openapi::Conflict,
        super::openapi::Unavailable))]
async fn analyze(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let job = experiments(&st)?;
    let minutes = window_minutes(&q, 60)?;
    let report = job
        .analyze(chrono::Utc::now().timestamp_millis(), minutes)
        .await?;
    Ok(Json(report).into_response())
}

/// Runs the canary's decision now (promote, roll back, ramp or wait).
#[utoipa::path(post, path = "/experiment/promote", tag = "rollout", security(("admin" = [])),
    params(("window_minutes" = Option<u32>, Query, description = "Default: the canary's window", minimum = 1),
        ("dry_run" = Option<bool>, Query, description = "Decide without applying")),
    responses((status = 200, description = "The decision", body = super::openapi::PromoteResponse),
        super::openapi::BadParameter,
        super::openapi::Unauthorized,
        super::openapi::Forbidden,
        super::openapi::Conflict,
        super::openapi::Unavailable))]
async fn promote(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Response, ApiError> {
    let caller = authorize(&st, &req)?;
    let job = experiments(&st)?;
    let minutes = window_minutes(&q, job.window_minutes)?;
    let dry_run = match q.get("dry_run").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => {
            return Err(ApiError::InvalidParameter(format!(
                "dry_run must be true or false, got {other:?}"
            )))
        }
    };
    let out = job
        .run(
            chrono::Utc::now().timestamp_millis(),
            minutes,
            dry_run,
            &caller,
        )
        .await?;
    let effect = match out.applied.is_some() {
        true => take_effect(&st).await,
        false => json!({"effective_within_s": null, "applied_here": false}),
    };
    Ok(Json(json!({
        "action": out.report.action,
        "rationale": out.report.rationale,
        "dry_run": dry_run,
        "applied": out.applied.is_some(),
        "status": out.applied.as_ref().map(status_json),
        "effective_within_s": effect["effective_within_s"],
        "report": out.report,
    }))
    .into_response())
}
