//! What API Gateway adds to a request, for the routers: the IAM principal
//! it authenticated ([`Caller`]), recorded as `updated_by` of rollout changes
//! and as the namespace of ingest's idempotency keys.

use super::rollout::Caller;
use lambda_http::request::RequestContext;

/// The IAM principal API Gateway authenticated, if any.
pub fn iam_caller(ctx: &RequestContext) -> Option<String> {
    match ctx {
        RequestContext::ApiGatewayV1(c) => {
            c.identity.user_arn.clone().or(c.identity.caller.clone())
        }
        RequestContext::ApiGatewayV2(c) => c
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|i| i.user_arn.clone()),
        _ => None,
    }
}

/// Middleware: the request's [`Caller`] from API Gateway's request context.
pub async fn caller_from_context(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(arn) = req
        .extensions()
        .get::<RequestContext>()
        .and_then(iam_caller)
    {
        req.extensions_mut().insert(Caller(arn));
    }
    next.run(req).await
}
