//! Avro in the Confluent wire format: a zero magic byte, a 4-byte big-endian
//! schema id, then the binary Avro datum. The schemas of the three event
//! types are committed in `shared/avro/*.avsc`; records are decoded with the
//! schema of their type (from the Kafka topic or `--type`) and then go
//! through the same checks as JSON ([`super::parse_value`]). The schema id is
//! kept with the record (and in dead letters) but not resolved: there is no
//! schema registry in the loop, so producers must write with these schemas.

use super::{parse_value, Event, EventType, Parsed, Rejection};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde_json::{Map, Number, Value};
use std::sync::LazyLock;

/// The committed Avro schemas, as JSON text.
pub const WATCH_SCHEMA: &str = include_str!("../../avro/watch.avsc");
pub const RATE_SCHEMA: &str = include_str!("../../avro/rate.avsc");
pub const RECO_RESPONSE_SCHEMA: &str = include_str!("../../avro/reco_response.avsc");

static SCHEMAS: LazyLock<[Schema; 3]> = LazyLock::new(|| {
    [WATCH_SCHEMA, RATE_SCHEMA, RECO_RESPONSE_SCHEMA]
        .map(|s| Schema::parse_str(s).expect("committed Avro schemas parse"))
});

/// One decoder per type, resolved once (building one per record cost ~25%).
static READERS: LazyLock<[GenericDatumReader<'static>; 3]> = LazyLock::new(|| {
    EventType::ALL.map(|t| {
        GenericDatumReader::builder(schema(t))
            .build()
            .expect("committed schemas resolve")
    })
});

/// The schema of an event type.
pub fn schema(t: EventType) -> &'static Schema {
    &SCHEMAS[t as usize]
}

/// The Confluent magic byte.
pub const MAGIC: u8 = 0;

/// Whether bytes look like a Confluent-framed Avro message (JSON never starts with 0).
pub fn is_confluent(bytes: &[u8]) -> bool {
    bytes.len() >= 5 && bytes[0] == MAGIC
}

/// The schema id of a framed message.
pub fn schema_id(bytes: &[u8]) -> Option<u32> {
    is_confluent(bytes).then(|| u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]))
}

/// Decodes and checks one Confluent-framed record of type `t`.
/// Most apache-avro may allocate for one length it decodes (a string, an
/// array, a block): a record's own length prefix cannot ask for hundreds of
/// MiB (the crate's default is 512 MiB). Records are at most 1 MiB; container
/// files' blocks stay well under this.
pub const MAX_ALLOCATION_BYTES: usize = 8 * 1024 * 1024;

/// Sets [`MAX_ALLOCATION_BYTES`] (once per process, before any decoding).
pub fn limit_allocations() {
    apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
}

pub fn parse_confluent(bytes: &[u8], t: EventType, now_ms: i64) -> Result<Parsed, Rejection> {
    limit_allocations();
    if bytes.len() < 5 {
        return Err(Rejection::new(
            "avro",
            format!(
                "a Confluent frame needs at least 5 bytes (got {})",
                bytes.len()
            ),
        ));
    }
    if bytes[0] != MAGIC {
        return Err(Rejection::new(
            "avro",
            format!("the magic byte must be 0 (got {})", bytes[0]),
        ));
    }
    let value = decode_datum(&bytes[5..], t)?;
    parse_value(&value, Some(t), now_ms)
}

/// Decodes a bare Avro datum of type `t` into the JSON shape [`parse_value`] checks.
pub fn decode_datum(body: &[u8], t: EventType) -> Result<Value, Rejection> {
    let reader = &READERS[t as usize];
    let mut cursor = body;
    let v = reader.read_value(&mut cursor).map_err(|e| {
        Rejection::new(
            "avro",
            format!("the body must be a {t} datum of the committed schema ({e})"),
        )
    })?;
    if !cursor.is_empty() {
        return Err(Rejection::new(
            "avro",
            format!(
                "the body must be exactly one {t} datum ({} bytes left over)",
                cursor.len()
            ),
        ));
    }
    let mut json = to_json(v);
    if let Value::Object(o) = &mut json {
        o.insert("type".into(), t.as_str().into());
    }
    Ok(json)
}

/// The JSON shape of a decoded Avro value (unions unwrapped, timestamps as epoch ms).
pub fn to_json(v: Avro) -> Value {
    match v {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => b.into(),
        Avro::Int(i) => i.into(),
        Avro::Long(i) | Avro::TimestampMillis(i) => i.into(),
        Avro::Float(f) => Number::from_f64(f64::from(f)).map_or(Value::Null, Value::Number),
        Avro::Double(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Avro::String(s) => s.into(),
        Avro::Union(_, b) => to_json(*b),
        Avro::Array(a) => a.into_iter().map(to_json).collect(),
        Avro::Record(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, to_json(v)))
                .collect::<Map<_, _>>(),
        ),
        other => Value::String(format!("{other:?}")),
    }
}

fn opt_string(s: Option<&str>) -> Avro {
    match s {
        None => Avro::Union(0, Box::new(Avro::Null)),
        Some(s) => Avro::Union(1, Box::new(Avro::String(s.into()))),
    }
}

fn opt<T>(x: Option<T>, f: impl FnOnce(T) -> Avro) -> Avro {
    match x {
        None => Avro::Union(0, Box::new(Avro::Null)),
        Some(v) => Avro::Union(1, Box::new(f(v))),
    }
}

/// The Avro datum of an event (producers, tests and benchmarks).
pub fn encode_datum(e: &Event, event_id: Option<&str>) -> Vec<u8> {
    let mut fields = vec![("event_id".to_string(), opt_string(event_id))];
    match e {
        Event::Watch(w) => fields.extend([
            ("user_id".into(), Avro::Long(w.user_id as i64)),
            ("movie_id".into(), Avro::Long(w.movie_id as i64)),
            ("minute".into(), opt(w.minute, |m| Avro::Int(m as i32))),
            ("ts".into(), Avro::TimestampMillis(w.ts_ms)),
        ]),
        Event::Rate(r) => fields.extend([
            ("user_id".into(), Avro::Long(r.user_id as i64)),
            ("movie_id".into(), Avro::Long(r.movie_id as i64)),
            ("rating".into(), Avro::Double(f64::from(r.rating))),
            ("ts".into(), Avro::TimestampMillis(r.ts_ms)),
        ]),
        Event::RecoResponse(r) => fields.extend([
            ("request_id".into(), opt_string(r.request_id.as_deref())),
            ("user_id".into(), Avro::Long(r.user_id as i64)),
            (
                "movie_ids".into(),
                Avro::Array(r.movie_ids.iter().map(|&m| Avro::Long(m as i64)).collect()),
            ),
            (
                "model_version".into(),
                Avro::String(r.model_version.clone()),
            ),
            ("variant".into(), opt_string(r.variant.as_deref())),
            ("status".into(), opt(r.status, |s| Avro::Int(i32::from(s)))),
            ("latency_ms".into(), opt(r.latency_ms, Avro::Double)),
            ("ts".into(), Avro::TimestampMillis(r.ts_ms)),
        ]),
    }
    let writer = GenericDatumWriter::builder(schema(e.event_type()))
        .build()
        .expect("committed schema");
    let mut out = Vec::new();
    writer
        .write_value(&mut out, Avro::Record(fields))
        .expect("an event always matches its own schema");
    out
}

/// An event framed for Kafka: magic byte, `schema_id`, datum.
pub fn encode_confluent(e: &Event, event_id: Option<&str>, schema_id: u32) -> Vec<u8> {
    let mut out = vec![MAGIC];
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend(encode_datum(e, event_id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Rate, RecoResponse, Watch};

    const NOW: i64 = 1_764_000_000_000;

    fn samples() -> Vec<Event> {
        vec![
            Event::Watch(Watch {
                user_id: 7,
                movie_id: 11,
                minute: Some(42),
                ts_ms: NOW - 5,
            }),
            Event::Watch(Watch {
                user_id: 7,
                movie_id: 12,
                minute: None,
                ts_ms: NOW,
            }),
            Event::Rate(Rate {
                user_id: 8,
                movie_id: 3,
                rating: 4.5,
                ts_ms: NOW,
            }),
            Event::RecoResponse(RecoResponse {
                request_id: Some("r-9".into()),
                user_id: 9,
                movie_ids: vec![5, 6, 7],
                model_version: "v2".into(),
                variant: None,
                status: Some(200),
                latency_ms: Some(3.25),
                ts_ms: NOW,
            }),
        ]
    }

    #[test]
    fn every_type_round_trips_through_the_wire_format() {
        for (i, e) in samples().into_iter().enumerate() {
            let id = (i % 2 == 0).then_some("evt-1");
            let bytes = encode_confluent(&e, id, 42);
            assert!(is_confluent(&bytes));
            assert_eq!(schema_id(&bytes), Some(42));
            let p = parse_confluent(&bytes, e.event_type(), NOW).unwrap();
            assert_eq!(p.event, e);
            assert_eq!(p.event_id.as_deref(), id);
        }
    }

    #[test]
    fn malformed_frames_and_bodies_are_rejected_as_avro() {
        let good = encode_confluent(&samples()[2], None, 1);
        let mut bad_magic = good.clone();
        bad_magic[0] = 1;
        let truncated = &good[..good.len() - 3];
        let mut trailing = good.clone();
        trailing.extend([0, 0]);
        for (bytes, rule) in [
            (&good[..4], "at least 5 bytes"),
            (&bad_magic[..], "magic byte"),
            (truncated, "datum of the committed schema"),
            (&trailing[..], "left over"),
        ] {
            let r = parse_confluent(bytes, EventType::Rate, NOW).unwrap_err();
            assert_eq!(r.field, "avro");
            assert!(r.rule.contains(rule), "{r}");
        }
        // A watch body read as a rating does not pass either.
        let w = encode_confluent(&samples()[0], None, 1);
        assert!(parse_confluent(&w, EventType::RecoResponse, NOW).is_err());
    }

    #[test]
    fn the_json_rules_hold_for_avro_too() {
        let mut e = samples()[2].clone();
        if let Event::Rate(r) = &mut e {
            r.rating = 3.3;
        }
        let r = parse_confluent(&encode_confluent(&e, None, 1), EventType::Rate, NOW).unwrap_err();
        assert_eq!(r.field, "rating");
        // A negative id is representable in Avro's long, and refused.
        let mut body = vec![MAGIC, 0, 0, 0, 1];
        let writer = GenericDatumWriter::builder(schema(EventType::Watch))
            .build()
            .unwrap();
        writer
            .write_value(
                &mut body,
                Avro::Record(vec![
                    ("event_id".into(), Avro::Union(0, Box::new(Avro::Null))),
                    ("user_id".into(), Avro::Long(-4)),
                    ("movie_id".into(), Avro::Long(1)),
                    ("minute".into(), Avro::Union(0, Box::new(Avro::Null))),
                    ("ts".into(), Avro::TimestampMillis(NOW)),
                ]),
            )
            .unwrap();
        let r = parse_confluent(&body, EventType::Watch, NOW).unwrap_err();
        assert_eq!(r.field, "user_id");
    }
}
