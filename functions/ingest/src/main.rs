//! ingest: the Kafka event source (MSK and self-managed, `LambdaEvent<KafkaEvent>`)
//! and `POST /events` through API Gateway, in one function, both through the
//! ingest pipeline (`shared::ingest`): validate, deduplicate, rate-limit,
//! write Parquet to the lake, dead-letter the rest, append user history.
//!
//! A Kafka batch that cannot be stored fails the invocation, so the event
//! source retries it: nothing is acknowledged that is not stored, and the
//! idempotency keys make the retry write nothing twice.

use lambda_http::request::LambdaRequest;
use lambda_http::tower::ServiceExt;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;
use shared::config::{Role, Settings};
use shared::http::AppState;
use shared::ingest::kafka::{records, TopicMap};
use shared::wiring::Stores;
use std::sync::Arc;

/// Whether a payload is a Kafka event-source batch.
fn is_kafka(v: &Value) -> bool {
    v.get("records").is_some_and(Value::is_object)
        && v.get("eventSource")
            .and_then(Value::as_str)
            .is_some_and(|s| s == "aws:kafka" || s == "SelfManagedKafka")
}

async fn handle(
    state: Arc<AppState>,
    topics: Arc<TopicMap>,
    event: LambdaEvent<Value>,
) -> Result<Value, Error> {
    let (payload, ctx) = event.into_parts();
    if is_kafka(&payload) {
        let batch = shared::ingest::kafka::decode(payload)?;
        let recs = records(&batch, &topics);
        let ingestor = state
            .ingestor
            .clone()
            .ok_or("no ingest pipeline configured")?;
        // Failing here fails the invocation: the event source retries the batch.
        let report = ingestor
            .ingest(&recs, chrono::Utc::now().timestamp_millis())
            .await?;
        tracing::info!(summary = %report.summary(), "kafka batch ingested");
        return Ok(report.summary());
    }
    // Otherwise an API Gateway request for POST /events.
    let req: LambdaRequest = serde_json::from_value(payload)
        .map_err(|e| format!("neither a Kafka batch nor an API Gateway request: {e}"))?;
    let app = shared::http::events::router(state).layer(axum::middleware::from_fn(
        shared::http::lambda::caller_from_context,
    ));
    let resp = lambda_http::Adapter::from(app)
        .oneshot(LambdaEvent::new(req, ctx))
        .await?;
    Ok(serde_json::to_value(resp)?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let stores = Stores::build(Role::Ingest, &settings).await?;
    let ingestor = Arc::new(stores.ingestor(&settings)?);
    let state = Arc::new(
        AppState::with_stores(stores.api_stores(), settings.api_config()).with_ingestor(ingestor),
    );
    let topics = Arc::new(settings.topics.clone());
    run(service_fn(move |e| {
        handle(state.clone(), topics.clone(), e)
    }))
    .await
}
