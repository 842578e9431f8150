//! canary: runs on the EventBridge schedule. Analyses the running canary or
//! A/B test up to the scheduled time (the whole experiment, at most
//! `MOVIE_RECS_CANARY_WINDOW_MINUTES`) and takes the automation's action:
//! promote, roll back (with the `CanaryRollback` metric the alarm watches),
//! keep the primary, ramp, or wait ([`shared::canary`]). Each change is
//! written over the analysed revision and logged with its reason, by
//! `canary-automation`. Nothing rolled out, or a fixed rollout, is a no-op.
//! A store failure fails the invocation, so EventBridge retries it.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::{json, Value};
use shared::canary::job::{CanaryError, ExperimentJob};
use shared::config::{Role, Settings};
use shared::wiring::Stores;
use std::sync::Arc;

/// Recorded as `updated_by` of the changes this function makes.
const CALLER: &str = "canary-automation";

async fn handle(
    job: Arc<ExperimentJob>,
    event: LambdaEvent<EventBridgeEvent<Value>>,
) -> Result<Value, Error> {
    let e = event.payload;
    let now_ms = shared::adapters::aws::schedule::scheduled_time_ms("canary", &e)?;
    match job.run(now_ms, job.window_minutes, false, CALLER).await {
        Ok(out) => {
            let r = &out.report;
            let summary = json!({
                "status": "analysed",
                "strategy": r.strategy,
                "experiment_id": r.experiment_id,
                "window": r.window,
                "action": r.action,
                "rationale": r.rationale,
                "alarm": r.alarm,
                "applied": out.applied,
                "published": out.published,
                "arms": r.arms.iter().map(|(k, a)| (k.clone(), json!({
                    "requests": a.requests, "lists": a.lists, "conversions": a.conversions,
                    "error_rate": a.error_rate, "p95_latency_ms": a.p95_latency_ms,
                }))).collect::<serde_json::Map<_, _>>(),
            });
            tracing::info!(summary = %summary, "canary run");
            Ok(summary)
        }
        Err(CanaryError::NoRollout) => Ok(json!({
            "status": "no_rollout",
            "action": "none",
            "rationale": CanaryError::NoRollout.to_string(),
        })),
        Err(e) => Err(e.into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let stores = Stores::build(Role::Canary, &settings).await?;
    let job = Arc::new(stores.experiment_job(&settings)?);
    run(service_fn(move |ev| handle(job.clone(), ev))).await
}
