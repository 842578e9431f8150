//! The bodies of the fuzz targets (`fuzz/`, cargo-fuzz on nightly), here so
//! that the stable test suite runs every corpus entry and every crash input
//! found through exactly the same code (`shared/tests/fuzz_regressions.rs`).
//! Each takes arbitrary bytes and must neither panic nor allocate without bound.

use crate::events::EventType;
use std::collections::HashMap;

/// A fixed "now" (2026-11-28T20:00:00Z), so runs are reproducible.
const NOW_MS: i64 = 1_795_896_000_000;

const TYPES: [Option<EventType>; 4] = [
    None,
    Some(EventType::Watch),
    Some(EventType::Rate),
    Some(EventType::RecoResponse),
];

/// The event JSON decoder, with and without a type hint.
pub fn event_json(data: &[u8]) {
    for hint in TYPES {
        let _ = crate::events::parse_json(data, hint, NOW_MS);
    }
}

/// The Confluent Avro decoder (magic byte, schema id, binary datum), for
/// each event type.
pub fn avro_confluent(data: &[u8]) {
    for t in TYPES.into_iter().flatten() {
        let _ = crate::events::avro::parse_confluent(data, t, NOW_MS);
    }
}

/// The Kafka batch decoder: an event source's JSON payload, its records
/// (base64 values), and each record through the event decoders.
pub fn kafka_batch(data: &[u8]) {
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(batch) = crate::ingest::kafka::decode(payload) else {
        return;
    };
    let topics = crate::ingest::kafka::TopicMap::default();
    for r in crate::ingest::kafka::records(&batch, &topics) {
        if crate::events::avro::is_confluent(&r.bytes) {
            if let Some(t) = r.hint {
                let _ = crate::events::avro::parse_confluent(&r.bytes, t, NOW_MS);
            }
        } else {
            let _ = crate::events::parse_json(&r.bytes, r.hint, NOW_MS);
        }
    }
}

/// The artifact readers: a manifest, the training-history sidecar, and the
/// fold-in inputs and neighbour lists (for the catalogue size their header
/// claims, so a well-formed file is read through).
pub fn artifact(data: &[u8]) {
    let _ = crate::artifact::Manifest::from_json(data);
    let _ = crate::artifact::History::decode(data);
    let claimed = data.get(8..12).map_or(0, |w| {
        u32::from_le_bytes(w.try_into().expect("4 bytes")) as usize
    });
    let _ = crate::artifact::UserInputs::decode(data, claimed.max(1));
    let _ = crate::artifact::Neighbours::decode(data, claimed);
}

/// The recommend route's parameters: the path segment and the query string
/// (`k`, `policy` and its options, the filters, `hours`) as the router hands them over.
pub fn recommend_query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (path, query) = text.split_once('?').unwrap_or((&text, ""));
    let _ = crate::http::parse_user_id(path);
    let q: HashMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Ok(k) = crate::http::parse_k(&q) {
        if let Some(name) = q.get("policy") {
            let _ = crate::domain::rerank::Policy::parse(name, &q, k);
        }
    }
    let _ = crate::domain::rerank::Policy::from_spec(&text, crate::http::K_MAX);
    // The catalogue filters (`genre`, years, `exclude`) and `/trending`'s `hours`.
    let genres: Vec<String> = crate::domain::dataset::GENRES
        .iter()
        .map(|g| g.to_string())
        .collect();
    if let Ok(f) = crate::domain::filter::Filter::parse(&q, &genres) {
        let _ = f.admits(&genres[..2], Some(1990));
    }
    let _ = crate::domain::trending::parse_hours(q.get("hours").map(String::as_str));
}

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/` and the regression test know them.
pub const TARGETS: [(&str, Target); 5] = [
    ("event_json", event_json),
    ("avro_confluent", avro_confluent),
    ("kafka_batch", kafka_batch),
    ("artifact", artifact),
    ("recommend_query", recommend_query),
];
