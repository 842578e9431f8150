//! `POST /events`: a JSON array of watch, rate and recommendation events,
//! each with a `type`, run through the ingest pipeline ([`crate::ingest`]).
//! The body must be `Content-Type: application/json` (415 otherwise); where
//! the local server listens beyond loopback, the admin token is required too.
//!
//! The answer has a result per record (`accepted`, `quarantined`,
//! `duplicate` or `rejected` with the field and rule), in request order:
//! 202 when nothing was rejected, 207 otherwise. A client that retries a
//! request gets `duplicate` for what was already stored (give each event an
//! `event_id` to make that exact). Over [`MAX_BATCH`] records or
//! [`MAX_BODY`] bytes is a 413 and a body that is not a JSON array a 400,
//! both before anything is stored; a store failure is a 503 and nothing of the
//! request was acknowledged: retry all of it.

use super::rollout::Caller;
use super::{ApiError, AppState};
use crate::ingest::{RawRecord, Source};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use serde_json::value::RawValue;
use std::sync::Arc;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Most records in one request.
pub const MAX_BATCH: usize = 500;
/// Largest request body.
pub const MAX_BODY: usize = 1024 * 1024;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(post_events))
}

/// Refuses a body that does not say it is JSON: a web page can post
/// `text/plain` across origins without a preflight, never `application/json`.
fn require_json(req: &Request) -> Result<(), ApiError> {
    let ct = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "POST /events takes Content-Type: application/json, got {:?}",
            ct
        )))
    }
}

/// The ingest function's HTTP router.
pub fn router(state: Arc<AppState>) -> Router {
    super::finish(routes(), state)
}

/// Ingests a JSON array of at most 500 events (1 MiB); a result per record.
#[utoipa::path(post, path = "/events", tag = "events",
    request_body(content = Vec<super::openapi::Event>, content_type = "application/json"),
    security((), ("admin" = [])),
    responses((status = 202, description = "Nothing was rejected", body = super::openapi::EventsResponse),
        (status = 207, description = "Some records were rejected (each names its field and rule)", body = super::openapi::EventsResponse),
        super::openapi::BadParameter,
        super::openapi::Unauthorized,
        super::openapi::Forbidden,
        super::openapi::TooLarge,
        super::openapi::NotJson,
        super::openapi::RateLimited,
        super::openapi::Unavailable))]
async fn post_events(State(st): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    // Keys are namespaced by caller: the IAM principal API Gateway
    // authenticated (the Lambda adapter sets it), the token holder locally.
    let caller = match (
        st.config.events_need_admin,
        req.extensions().get::<Caller>(),
    ) {
        (true, _) => super::rollout::authorize(&st, &req)?,
        (false, Some(Caller(arn))) => arn.clone(),
        (false, None) => "local".to_string(),
    };
    require_json(&req)?;
    let ingestor = st.ingestor.clone().ok_or_else(|| {
        ApiError::unavailable("no_ingest", "this function has no event lake configured")
    })?;
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| ApiError::TooLarge {
            code: "too_large",
            detail: format!("request body over {MAX_BODY} bytes"),
        })?;
    let records: Vec<&RawValue> = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::InvalidBody(format!("expected a JSON array of events: {e}")))?;
    if records.len() > MAX_BATCH {
        return Err(ApiError::TooLarge {
            code: "too_many_records",
            detail: format!("{} records; at most {MAX_BATCH} per request", records.len()),
        });
    }
    let raw: Vec<RawRecord> = records
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let source = Source::Http {
                index,
                caller: caller.clone(),
            };
            RawRecord::new(r.get().as_bytes().to_vec(), source, None)
        })
        .collect();
    let report = ingestor
        .ingest(&raw, chrono::Utc::now().timestamp_millis())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "ingest failed; nothing acknowledged");
            ApiError::unavailable(
                "ingest_unavailable",
                format!("{e}; nothing of this request was stored, retry all of it"),
            )
        })?;
    if report.accepted > 0 {
        // This process counted them: its trending windows are stale.
        st.trending_cache.clear();
    }
    let code = if report.rejected == 0 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::MULTI_STATUS
    };
    let mut body = report.counts();
    body["batch"] = json!(report.batch_id);
    body["results"] = report
        .results
        .iter()
        .enumerate()
        .map(|(i, r)| r.to_json(i))
        .collect();
    Ok((code, Json(body)).into_response())
}
