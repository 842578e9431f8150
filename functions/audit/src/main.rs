//! audit: runs on the EventBridge schedule. Audits the window that ends at
//! the scheduled time (`MOVIE_RECS_AUDIT_WINDOW_MINUTES`, default 60; an
//! operator's invocation may name another with `detail: {"from_ms", "to_ms"}`): the
//! recommendation traces (DynamoDB time index) and the lake's events of those
//! hours; publishes the fairness and spam metrics to CloudWatch, quarantines
//! flagged users in the lake, writes the report to `MOVIE_RECS_REPORTS` and
//! publishes the exposure controller's next adjustments to `MOVIE_RECS_EXPOSURE`.
//! A failure fails the invocation, so EventBridge retries it.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;
use shared::audit::job::AuditJob;
use shared::config::{Role, Settings};
use shared::wiring::Stores;
use std::sync::Arc;

async fn handle(
    job: Arc<AuditJob>,
    window_minutes: i64,
    event: LambdaEvent<EventBridgeEvent<Value>>,
) -> Result<Value, Error> {
    let e = event.payload;
    let (from_ms, to_ms) = shared::adapters::aws::schedule::audit_window(&e, window_minutes)?;
    let out = job
        .run(from_ms, to_ms, chrono::Utc::now().timestamp_millis())
        .await?;
    let mut summary = out.report.summary();
    summary["status"] = "audited".into();
    summary["rules"] = serde_json::json!(e.resources);
    summary["report_keys"] = serde_json::json!(out.report_keys);
    summary["quarantine_key"] = serde_json::json!(out.quarantine_key);
    summary["published"] = out.published.into();
    summary["exposure_controller"] = serde_json::json!(out.control);
    tracing::info!(summary = %summary, "audit done");
    Ok(summary)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let stores = Stores::build(Role::Audit, &settings).await?;
    let job = Arc::new(stores.audit_job(&settings)?);
    let minutes = settings.audit_window_minutes;
    run(service_fn(move |ev| handle(job.clone(), minutes, ev))).await
}
