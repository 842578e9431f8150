//! What ingest receives: one record's bytes, where it came from, and how
//! its bytes are encoded.

use crate::events::{EventType, Rejection};
use serde_json::{json, Value};

/// How record bytes are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// Confluent Avro when the first byte is 0, JSON otherwise.
    #[default]
    Auto,
    Json,
    Avro,
}

/// Where a record came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Kafka {
        topic: String,
        partition: i64,
        offset: i64,
    },
    /// The `index`-th record of a `POST /events` body, from `caller` (the
    /// IAM principal in AWS; `token` or `local` on the local server).
    Http { index: usize, caller: String },
    /// Line (or Avro record) `line`, from 1, of a file.
    File { path: String, line: usize },
}

impl Source {
    /// `kafka`, `http` or `file`: the dead-letter partition.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Kafka { .. } => "kafka",
            Source::Http { .. } => "http",
            Source::File { .. } => "file",
        }
    }

    /// What the lake's `source` column holds.
    pub fn label(&self) -> String {
        match self {
            Source::Kafka {
                topic,
                partition,
                offset,
            } => format!("kafka:{topic}/{partition}/{offset}"),
            Source::Http { .. } => "http".into(),
            Source::File { path, line } => format!("file:{path}:{line}"),
        }
    }

    pub(super) fn to_json(&self) -> Value {
        match self {
            Source::Kafka {
                topic,
                partition,
                offset,
            } => json!({"kind": "kafka", "topic": topic, "partition": partition, "offset": offset}),
            Source::Http { index, caller } => {
                json!({"kind": "http", "index": index, "caller": caller})
            }
            Source::File { path, line } => json!({"kind": "file", "path": path, "line": line}),
        }
    }
}

/// One record as received.
#[derive(Clone, Debug)]
pub struct RawRecord {
    pub bytes: Vec<u8>,
    pub source: Source,
    /// The type the source implies (Kafka topic, `--type`), if any.
    pub hint: Option<EventType>,
    /// Set when the source already found the record unusable (a Kafka value
    /// that is not base64); it is dead-lettered with this reason.
    pub invalid: Option<Rejection>,
}

impl RawRecord {
    pub fn new(bytes: Vec<u8>, source: Source, hint: Option<EventType>) -> Self {
        RawRecord {
            bytes,
            source,
            hint,
            invalid: None,
        }
    }
}
