//! audit: runs on the EventBridge schedule. For now it validates the
//! scheduled event and acknowledges it, computing nothing: the audit issue
//! adds the fairness and spam metrics and publishes them with the
//! `MetricsPublisher` built here at init (CloudWatch `PutMetricData` in AWS).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::{json, Value};
use shared::config::{Settings, Stores};

async fn handle(event: LambdaEvent<EventBridgeEvent<Value>>) -> Result<Value, Error> {
    let e = event.payload;
    if e.detail_type != "Scheduled Event" {
        return Err(format!(
            "audit runs on EventBridge schedules (detail-type \"Scheduled Event\"); got detail-type {:?} from {:?}",
            e.detail_type, e.source
        )
        .into());
    }
    let Some(time) = e.time else {
        return Err("scheduled event without a time".into());
    };
    let scheduled_for = time.timestamp_millis();
    tracing::info!(scheduled_for, rule = ?e.resources, "audit acknowledged (metrics arrive with the audit issue)");
    Ok(json!({
        "status": "acknowledged",
        "computed": false,
        "scheduled_for": scheduled_for,
        "rules": e.resources,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let _stores = Stores::build(&settings).await?;
    run(service_fn(handle)).await
}
