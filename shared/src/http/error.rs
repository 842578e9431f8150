//! The API's one error type: each variant knows its status and its stable
//! `error` code, and answers as JSON `{"error","detail"}`.

use crate::ports::StoreError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_parameter`: a path or query parameter, named in the detail.
    #[error("{0}")]
    InvalidParameter(String),
    /// 400 `invalid_body`.
    #[error("{0}")]
    InvalidBody(String),
    /// 401 `unauthorized`: no credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403 `forbidden`: wrong or unusable credentials.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 409 `conflict`: a concurrent change won.
    #[error("{0}")]
    Conflict(String),
    /// 409 `no_experiment`.
    #[error("{0}")]
    NoExperiment(String),
    /// 408 `request_timeout`: the request (its body) took too long.
    #[error("{0}")]
    RequestTimeout(String),
    /// 413 with its code (`too_large`, `too_many_records`).
    #[error("{detail}")]
    TooLarge { code: &'static str, detail: String },
    /// 415 `unsupported_media_type`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422 `artifact_invalid`: a version whose checksums fail.
    #[error("{0}")]
    ArtifactInvalid(String),
    /// 429 `rate_limited`, with `Retry-After`.
    #[error("{detail}")]
    RateLimited { retry_after_s: u64, detail: String },
    /// 500 with its code (`scoring_failed`, `internal`).
    #[error("{detail}")]
    Internal { code: &'static str, detail: String },
    /// 503 with its code (`no_model`, `store_unavailable`, ...).
    #[error("{detail}")]
    Unavailable { code: &'static str, detail: String },
}

impl ApiError {
    pub fn unavailable(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Unavailable {
            code,
            detail: detail.into(),
        }
    }

    pub fn internal(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Internal {
            code,
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidParameter(_) | ApiError::InvalidBody(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::NoExperiment(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::ArtifactInvalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The body's `error` field: stable, for clients to branch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidParameter(_) => "invalid_parameter",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::NoExperiment(_) => "no_experiment",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::ArtifactInvalid(_) => "artifact_invalid",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::TooLarge { code, .. }
            | ApiError::Internal { code, .. }
            | ApiError::Unavailable { code, .. } => code,
        }
    }
}

impl From<crate::domain::param::InvalidParam> for ApiError {
    fn from(e: crate::domain::param::InvalidParam) -> Self {
        ApiError::InvalidParameter(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => ApiError::Conflict(e.to_string()),
            StoreError::Unavailable { .. } => {
                ApiError::unavailable("store_unavailable", e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.code(), "detail": self.to_string()});
        let mut resp = (self.status(), Json(body)).into_response();
        if let ApiError::RateLimited { retry_after_s, .. } = self {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from(retry_after_s.max(1)),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_answers_its_status_code_and_detail() {
        let cases = [
            (
                ApiError::InvalidParameter("k: x".into()),
                400,
                "invalid_parameter",
            ),
            (ApiError::Unauthorized("no"), 401, "unauthorized"),
            (ApiError::Forbidden("no"), 403, "forbidden"),
            (ApiError::NotFound("x".into()), 404, "not_found"),
            (
                StoreError::Conflict {
                    store: "rollout",
                    reason: "r".into(),
                }
                .into(),
                409,
                "conflict",
            ),
            (
                StoreError::unavailable("traces", "down").into(),
                503,
                "store_unavailable",
            ),
            (
                ApiError::TooLarge {
                    code: "too_many_records",
                    detail: "d".into(),
                },
                413,
                "too_many_records",
            ),
            (
                ApiError::UnsupportedMediaType("x".into()),
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::internal("scoring_failed", "x"),
                500,
                "scoring_failed",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status().as_u16(), e.code()), (status, code));
            let detail = e.to_string();
            let resp = e.into_response();
            assert_eq!(resp.status().as_u16(), status);
            let _ = detail;
        }
        let r = ApiError::RateLimited {
            retry_after_s: 7,
            detail: "slow down".into(),
        }
        .into_response();
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
    }
}
