//! ingest: the Kafka event source (MSK and self-managed, `LambdaEvent<KafkaEvent>`)
//! and `POST /events` through API Gateway, in one function.
//!
//! For now it lands every batch in the event lake as JSON lines with source
//! coordinates (`shared::ingest::land`) and fails the invocation if that
//! write fails, so Kafka redelivers; the ingest issue adds schemas,
//! validation, deduplication, velocity limits and the Parquet lake.

use aws_lambda_events::kafka::KafkaEvent;
use base64::Engine;
use lambda_http::request::LambdaRequest;
use lambda_http::tower::ServiceExt;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::{json, Value};
use shared::config::{Settings, Stores};
use shared::http::AppState;
use shared::ingest::{land, Incoming};
use std::sync::Arc;

/// Whether a payload is a Kafka event-source batch.
fn is_kafka(v: &Value) -> bool {
    v.get("records").is_some_and(Value::is_object)
        && v.get("eventSource")
            .and_then(Value::as_str)
            .is_some_and(|s| s == "aws:kafka" || s == "SelfManagedKafka")
}

/// Decodes the records of a Kafka batch; a value that is not JSON is kept as text.
fn kafka_records(e: &KafkaEvent) -> Vec<Incoming> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for recs in e.records.values() {
        for r in recs {
            let raw = r
                .value
                .as_deref()
                .and_then(|v| b64.decode(v).ok())
                .unwrap_or_default();
            let body = serde_json::from_slice(&raw)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
            out.push(Incoming {
                source: format!(
                    "kafka:{}/{}/{}",
                    r.topic.as_deref().unwrap_or(""),
                    r.partition,
                    r.offset
                ),
                body,
            });
        }
    }
    out
}

async fn handle(state: Arc<AppState>, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, ctx) = event.into_parts();
    if is_kafka(&payload) {
        let batch: KafkaEvent = serde_json::from_value(payload)?;
        let records = kafka_records(&batch);
        let lake = state.lake.clone().ok_or("no event lake configured")?;
        // Failing here fails the invocation: the event source retries the batch.
        let key = land(
            lake.as_ref(),
            "kafka",
            &records,
            chrono::Utc::now().timestamp_millis(),
        )
        .await?;
        tracing::info!(records = records.len(), key, "kafka batch landed");
        return Ok(json!({"landed": records.len(), "batch": key}));
    }
    // Otherwise an API Gateway request for POST /events.
    let req: LambdaRequest = serde_json::from_value(payload)
        .map_err(|e| format!("neither a Kafka batch nor an API Gateway request: {e}"))?;
    let app = shared::http::events::router(state);
    let resp = lambda_http::Adapter::from(app)
        .oneshot(LambdaEvent::new(req, ctx))
        .await?;
    Ok(serde_json::to_value(resp)?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let stores = Stores::build(&settings).await?;
    let state =
        Arc::new(AppState::from_stores(&stores, settings.api_config()).with_lake(stores.lake));
    run(service_fn(move |e| handle(state.clone(), e))).await
}
