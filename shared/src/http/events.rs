//! `POST /events`: a JSON array of watch, rate and recommendation events.
//!
//! What it does now (the ingest issue adds full schemas, deduplication,
//! velocity limits and the Parquet lake): checks each record's envelope
//! (an object with a known `type` and a non-negative integer `user_id`),
//! lands the accepted ones in the lake with [`crate::ingest::land`], and
//! answers with a result per record. Over [`MAX_BATCH`] records or
//! [`MAX_BODY`] bytes is a 413; a lake failure is a 503 and nothing is acknowledged.

use super::{error, AppState};
use crate::ingest::{land, Incoming};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

/// Most records in one request.
pub const MAX_BATCH: usize = 500;
/// Largest request body.
pub const MAX_BODY: usize = 1024 * 1024;
/// Event types.
pub const EVENT_TYPES: [&str; 3] = ["watch", "rate", "reco_response"];

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/events", post(post_events))
}

/// The ingest function's HTTP router.
pub fn router(state: Arc<AppState>) -> Router {
    super::finish(routes(), state)
}

/// Why a record's envelope is rejected, naming the field and the rule.
pub fn check_envelope(r: &Value) -> Result<(), String> {
    let Some(o) = r.as_object() else {
        return Err("record: must be a JSON object".into());
    };
    match o.get("type").and_then(Value::as_str) {
        Some(t) if EVENT_TYPES.contains(&t) => {}
        _ => return Err(format!("type: must be one of {EVENT_TYPES:?}")),
    }
    match o.get("user_id") {
        Some(v) if v.as_u64().is_some() => Ok(()),
        _ => Err("user_id: must be a non-negative integer".into()),
    }
}

async fn post_events(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let Some(lake) = st.lake.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_lake",
            "this function has no event lake configured",
        );
    };
    let bytes = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body over {MAX_BODY} bytes"),
            )
        }
    };
    let records: Vec<Value> = match serde_json::from_slice(&bytes) {
        Ok(Value::Array(a)) => a,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "expected a JSON array of events",
            )
        }
    };
    if records.len() > MAX_BATCH {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            format!("{} records; at most {MAX_BATCH} per request", records.len()),
        );
    }
    let mut results = Vec::with_capacity(records.len());
    let mut accepted = Vec::new();
    for (i, r) in records.into_iter().enumerate() {
        match check_envelope(&r) {
            Ok(()) => {
                results.push(json!({"index": i, "status": "accepted"}));
                accepted.push(Incoming {
                    source: "http".into(),
                    body: r,
                });
            }
            Err(reason) => {
                results.push(json!({"index": i, "status": "rejected", "reason": reason}))
            }
        }
    }
    let n_ok = accepted.len();
    let key = if accepted.is_empty() {
        None
    } else {
        match land(
            lake.as_ref(),
            "http",
            &accepted,
            chrono::Utc::now().timestamp_millis(),
        )
        .await
        {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::error!(error = %e, "event lake write failed; nothing acknowledged");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "lake_unavailable",
                    e.to_string(),
                );
            }
        }
    };
    let code = if n_ok == results.len() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::MULTI_STATUS
    };
    (
        code,
        Json(json!({"accepted": n_ok, "rejected": results.len() - n_ok, "batch": key, "results": results})),
    )
        .into_response()
}
