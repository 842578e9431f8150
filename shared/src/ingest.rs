//! Landing incoming events in the lake before anything else happens to them.
//!
//! For now (until the ingest issue adds schemas, validation, deduplication
//! and the Parquet lake) every batch that reaches the ingest function is
//! written as one JSON-lines object under `incoming/`, each line holding the
//! record and its source coordinates. If the write fails the caller fails
//! the invocation, so the source (Kafka, the HTTP client) retries: nothing is
//! acknowledged that is not stored.

use crate::ports::{EventLake, StoreError};
use serde_json::{json, Value};

/// One record as received.
#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    /// Where it came from: `http`, or `kafka:<topic>/<partition>/<offset>`.
    pub source: String,
    /// The record: parsed JSON when it parses, else the raw text.
    pub body: Value,
}

/// The lake key of a batch landed at `now_ms`.
pub fn incoming_key(source: &str, now_ms: i64, batch_id: &str) -> String {
    let t = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    format!(
        "incoming/source={source}/dt={}/hour={}/{batch_id}.jsonl",
        t.format("%Y-%m-%d"),
        t.format("%H")
    )
}

/// Writes `records` as one object; returns its key.
pub async fn land(
    lake: &dyn EventLake,
    source: &str,
    records: &[Incoming],
    now_ms: i64,
) -> Result<String, StoreError> {
    let batch = uuid::Uuid::new_v4().to_string();
    let key = incoming_key(source, now_ms, &batch);
    let mut buf = Vec::new();
    for r in records {
        let line = json!({"source": r.source, "received_at": now_ms, "record": r.body});
        serde_json::to_writer(&mut buf, &line).expect("JSON value serialises");
        buf.push(b'\n');
    }
    lake.put_object(&key, buf).await?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::FolderLake;

    #[tokio::test]
    async fn a_batch_lands_as_json_lines_with_coordinates() {
        let dir = tempfile::tempdir().unwrap();
        let lake = FolderLake::new(dir.path());
        let recs = vec![
            Incoming {
                source: "kafka:movies.watch/0/41".into(),
                body: json!({"user_id": 1}),
            },
            Incoming {
                source: "kafka:movies.watch/0/42".into(),
                body: json!("not json"),
            },
        ];
        let key = land(&lake, "kafka", &recs, 1_764_360_000_000)
            .await
            .unwrap();
        assert!(
            key.starts_with("incoming/source=kafka/dt=2025-11-28/hour=20/"),
            "{key}"
        );
        let text = std::fs::read_to_string(dir.path().join(&key)).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["source"], "kafka:movies.watch/0/42");
        assert_eq!(lines[0]["record"]["user_id"], 1);
    }
}
