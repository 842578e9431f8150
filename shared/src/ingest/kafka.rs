//! The Kafka event source (MSK and self-managed): records grouped under
//! `topic-partition` keys, with base64 keys and values. Topics map to event
//! types by suffix ([`TopicMap`]); a record of an unmapped topic must name
//! its `type` (JSON only).

use super::{RawRecord, Source};
use crate::events::{EventType, Rejection};
use aws_lambda_events::kafka::KafkaEvent;
use base64::Engine;

/// Topic-name suffixes of the event types, e.g. `movies.rate` carries ratings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMap(pub Vec<(String, EventType)>);

impl Default for TopicMap {
    fn default() -> Self {
        TopicMap(vec![
            (".watch".into(), EventType::Watch),
            (".rate".into(), EventType::Rate),
            (".reco_responses".into(), EventType::RecoResponse),
        ])
    }
}

/// Why a topic map spec does not parse; names the part.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicMapError {
    #[error("{0:?}: expected TYPE=SUFFIX")]
    NotAPair(String),
    #[error("{0:?}: not one of watch, rate, reco_response")]
    UnknownType(String),
    #[error("{0:?}: empty suffix")]
    EmptySuffix(String),
    #[error("no TYPE=SUFFIX pairs")]
    Empty,
}

impl TopicMap {
    /// Parses `watch=.watch,rate=.rate,reco_response=.reco_responses`.
    pub fn parse(spec: &str) -> Result<Self, TopicMapError> {
        let mut out = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (t, suffix) = part
                .split_once('=')
                .ok_or_else(|| TopicMapError::NotAPair(part.into()))?;
            let t =
                EventType::parse(t.trim()).ok_or_else(|| TopicMapError::UnknownType(t.into()))?;
            if suffix.trim().is_empty() {
                return Err(TopicMapError::EmptySuffix(part.into()));
            }
            out.push((suffix.trim().to_string(), t));
        }
        if out.is_empty() {
            return Err(TopicMapError::Empty);
        }
        Ok(TopicMap(out))
    }

    /// The type of a topic: the longest matching suffix (a topic named just
    /// the suffix without its dot counts too).
    pub fn type_of(&self, topic: &str) -> Option<EventType> {
        self.0
            .iter()
            .filter(|(s, _)| topic.ends_with(s.as_str()) || topic == s.trim_start_matches('.'))
            .max_by_key(|(s, _)| s.len())
            .map(|(_, t)| *t)
    }
}

/// Why an event source's payload is not a Kafka batch.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// A record's `timestamp` is not whole epoch milliseconds. (The event
    /// type's own decoder asserts on a fraction and would panic.)
    #[error("records[{key:?}][{index}].timestamp: expected whole epoch milliseconds, got {got}")]
    Timestamp {
        key: String,
        index: usize,
        got: String,
    },
    #[error("not a Kafka event source batch: {0}")]
    Shape(#[from] serde_json::Error),
}

/// Decodes an event source's payload. A malformed batch is an error naming
/// the field, so the invocation fails and the event source retries it,
/// bisects it and finally sends the bad record to the failure destination;
/// nothing in it panics.
pub fn decode(payload: serde_json::Value) -> Result<KafkaEvent, BatchError> {
    if let Some(groups) = payload.get("records").and_then(|r| r.as_object()) {
        for (key, recs) in groups {
            for (index, r) in recs.as_array().into_iter().flatten().enumerate() {
                let Some(ts) = r.get("timestamp") else {
                    continue;
                };
                let whole = match ts {
                    serde_json::Value::Number(n) => {
                        n.is_u64() || n.is_i64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
                    }
                    serde_json::Value::String(s) => {
                        s.parse::<f64>().is_ok_and(|f| f.fract() == 0.0)
                    }
                    _ => true, // the decoder names the wrong type itself
                };
                if !whole {
                    return Err(BatchError::Timestamp {
                        key: key.clone(),
                        index,
                        got: ts.to_string(),
                    });
                }
            }
        }
    }
    Ok(serde_json::from_value(payload)?)
}

/// The records of a batch, in partition then offset order.
pub fn records(event: &KafkaEvent, topics: &TopicMap) -> Vec<RawRecord> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    let mut groups: Vec<_> = event.records.iter().collect();
    groups.sort_by(|a, b| a.0.cmp(b.0));
    for (group, recs) in groups {
        for r in recs {
            let topic = r.topic.clone().unwrap_or_else(|| {
                // The group key is `<topic>-<partition>`.
                group
                    .rsplit_once('-')
                    .map_or(group.as_str(), |(t, _)| t)
                    .to_string()
            });
            let (bytes, invalid) = match r.value.as_deref() {
                None => (
                    Vec::new(),
                    Some(Rejection::new("value", "is missing (a tombstone record)")),
                ),
                Some(v) => match b64.decode(v) {
                    Ok(b) => (b, None),
                    Err(e) => (
                        v.as_bytes().to_vec(),
                        Some(Rejection::new("value", format!("must be base64 ({e})"))),
                    ),
                },
            };
            out.push(RawRecord {
                bytes,
                hint: topics.type_of(&topic),
                source: Source::Kafka {
                    topic,
                    partition: r.partition,
                    offset: r.offset,
                },
                invalid,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_map_by_suffix() {
        let m = TopicMap::default();
        assert_eq!(m.type_of("prod.movies.rate"), Some(EventType::Rate));
        assert_eq!(
            m.type_of("movies.reco_responses"),
            Some(EventType::RecoResponse)
        );
        assert_eq!(m.type_of("watch"), Some(EventType::Watch));
        assert_eq!(m.type_of("movies.ratings"), None);
        let m = TopicMap::parse("rate=-ratings, watch=-views").unwrap();
        assert_eq!(m.type_of("movies-ratings"), Some(EventType::Rate));
        assert_eq!(
            TopicMap::parse("click=.c"),
            Err(TopicMapError::UnknownType("click".into()))
        );
        assert_eq!(
            TopicMap::parse("rate").unwrap_err().to_string(),
            "\"rate\": expected TYPE=SUFFIX"
        );
        assert_eq!(
            TopicMap::parse("rate= ").unwrap_err().to_string(),
            "\"rate=\": empty suffix"
        );
        assert_eq!(TopicMap::parse(" , "), Err(TopicMapError::Empty));
    }

    #[test]
    fn records_carry_coordinates_and_bad_values_are_flagged() {
        let e: KafkaEvent = serde_json::from_value(serde_json::json!({
            "eventSource": "aws:kafka",
            "records": {
                "movies.rate-1": [
                    {"topic": "movies.rate", "partition": 1, "offset": 7, "timestamp": 1,
                     "timestampType": "CREATE_TIME", "value": "eyJ4IjoxfQ==", "headers": []},
                    {"topic": "movies.rate", "partition": 1, "offset": 8, "timestamp": 1,
                     "timestampType": "CREATE_TIME", "value": "%%%", "headers": []},
                    {"partition": 1, "offset": 9, "timestamp": 1,
                     "timestampType": "CREATE_TIME", "headers": []}
                ]
            }
        }))
        .unwrap();
        let r = records(&e, &TopicMap::default());
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].bytes, br#"{"x":1}"#);
        assert_eq!(r[0].hint, Some(EventType::Rate));
        assert_eq!(r[0].source.label(), "kafka:movies.rate/1/7");
        assert_eq!(r[1].invalid.as_ref().unwrap().field, "value");
        assert_eq!(r[2].source.label(), "kafka:movies.rate/1/9");
        assert!(r[2].invalid.as_ref().unwrap().rule.contains("tombstone"));
    }

    #[test]
    fn a_fractional_record_timestamp_is_a_named_error_not_a_panic() {
        let batch = |ts: serde_json::Value| {
            serde_json::json!({
                "eventSource": "aws:kafka",
                "records": {"movies.watch-0": [{
                    "topic": "movies.watch", "partition": 0, "offset": 1,
                    "timestamp": ts, "timestampType": "CREATE_TIME",
                    "value": "e30=", "headers": []
                }]}
            })
        };
        for bad in [
            serde_json::json!(1700000000000.5896),
            serde_json::json!("17.5"),
        ] {
            let e = decode(batch(bad)).unwrap_err();
            assert!(
                e.to_string().contains("[\"movies.watch-0\"][0].timestamp"),
                "{e}"
            );
        }
        for good in [
            serde_json::json!(1700000000000u64),
            serde_json::json!("1700000000000"),
        ] {
            let b = decode(batch(good)).unwrap();
            assert_eq!(records(&b, &TopicMap::default()).len(), 1);
        }
        assert!(matches!(
            decode(serde_json::json!({"records": 5})),
            Err(BatchError::Shape(_))
        ));
    }
}
