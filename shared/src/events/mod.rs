//! Event schemas: the one definition of watch, rate and recommendation-response
//! events that ingest validates, the lake stores, training reads and the audit
//! and rollout measure.
//!
//! | type | fields |
//! |---|---|
//! | `watch` | `user_id`, `movie_id`, optional `minute`, time |
//! | `rate` | `user_id`, `movie_id`, `rating` (1 to 5 in steps of 0.5), time |
//! | `reco_response` | optional `request_id`, `user_id`, `movie_ids[]`, `model_version`, optional `variant`, `status`, `latency_ms`, time |
//!
//! Every type also takes an optional `event_id` (a client's idempotency key).
//! Time is `ts` (epoch milliseconds) or `timestamp` (ISO-8601; without an
//! offset it is UTC). Encodings: JSON ([`parse_json`]) and Avro in the
//! Confluent wire format ([`avro`]), decoded into the same checks, so a rule
//! holds whatever the encoding. A rejection names the field and the rule
//! ([`Rejection`]). Unknown fields are ignored, so producers can add fields
//! before consumers know them.
//!
//! `request_id`, `status` and `latency_ms` are optional on `reco_response`
//! because the previous system's logs (`seed-evidence/reco_responses.jsonl`)
//! lack them; what is present is checked.

pub mod avro;
pub mod parquet;

use serde_json::{Map, Value};

/// The kinds of event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    Watch,
    Rate,
    RecoResponse,
}

impl EventType {
    pub const ALL: [EventType; 3] = [EventType::Watch, EventType::Rate, EventType::RecoResponse];

    /// The name in JSON (`type`), in lake paths (`type=`) and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Watch => "watch",
            EventType::Rate => "rate",
            EventType::RecoResponse => "reco_response",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user watched a movie.
#[derive(Clone, Debug, PartialEq)]
pub struct Watch {
    pub user_id: u64,
    pub movie_id: u64,
    /// Minutes watched, when the client knows.
    pub minute: Option<u32>,
    /// Event time, epoch ms.
    pub ts_ms: i64,
}

/// A user rated a movie.
#[derive(Clone, Debug, PartialEq)]
pub struct Rate {
    pub user_id: u64,
    pub movie_id: u64,
    /// 1.0 to 5.0 in steps of 0.5.
    pub rating: f32,
    pub ts_ms: i64,
}

/// A recommendation list served to a user.
#[derive(Clone, Debug, PartialEq)]
pub struct RecoResponse {
    pub request_id: Option<String>,
    pub user_id: u64,
    pub movie_ids: Vec<u64>,
    pub model_version: String,
    pub variant: Option<String>,
    /// HTTP status of the response.
    pub status: Option<u16>,
    pub latency_ms: Option<f64>,
    pub ts_ms: i64,
}

/// One valid event.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Watch(Watch),
    Rate(Rate),
    RecoResponse(RecoResponse),
}

impl Event {
    pub fn event_type(&self) -> EventType {
        match self {
            Event::Watch(_) => EventType::Watch,
            Event::Rate(_) => EventType::Rate,
            Event::RecoResponse(_) => EventType::RecoResponse,
        }
    }

    pub fn user_id(&self) -> u64 {
        match self {
            Event::Watch(e) => e.user_id,
            Event::Rate(e) => e.user_id,
            Event::RecoResponse(e) => e.user_id,
        }
    }

    /// Event time, epoch ms.
    pub fn ts_ms(&self) -> i64 {
        match self {
            Event::Watch(e) => e.ts_ms,
            Event::Rate(e) => e.ts_ms,
            Event::RecoResponse(e) => e.ts_ms,
        }
    }

    /// The movie a watch or rating is about.
    pub fn movie_id(&self) -> Option<u64> {
        match self {
            Event::Watch(e) => Some(e.movie_id),
            Event::Rate(e) => Some(e.movie_id),
            Event::RecoResponse(_) => None,
        }
    }

    /// The JSON form [`parse_json`] reads back into an equal event.
    pub fn to_json(&self, event_id: Option<&str>) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), self.event_type().as_str().into());
        if let Some(id) = event_id {
            m.insert("event_id".into(), id.into());
        }
        m.insert("user_id".into(), self.user_id().into());
        match self {
            Event::Watch(e) => {
                m.insert("movie_id".into(), e.movie_id.into());
                if let Some(x) = e.minute {
                    m.insert("minute".into(), x.into());
                }
            }
            Event::Rate(e) => {
                m.insert("movie_id".into(), e.movie_id.into());
                m.insert("rating".into(), f64::from(e.rating).into());
            }
            Event::RecoResponse(e) => {
                if let Some(r) = &e.request_id {
                    m.insert("request_id".into(), r.clone().into());
                }
                m.insert("movie_ids".into(), e.movie_ids.clone().into());
                m.insert("model_version".into(), e.model_version.clone().into());
                m.insert("variant".into(), e.variant.clone().into());
                if let Some(s) = e.status {
                    m.insert("status".into(), s.into());
                }
                if let Some(l) = e.latency_ms {
                    m.insert("latency_ms".into(), l.into());
                }
            }
        }
        m.insert("ts".into(), self.ts_ms().into());
        Value::Object(m)
    }
}

/// An event with the client's idempotency key, if it sent one.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub event: Event,
    pub event_id: Option<String>,
}

/// Why a record was refused: the field and the rule it broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// A field name, or `json` / `avro` / `record` / `type` for the record as a whole.
    pub field: String,
    pub rule: String,
}

impl Rejection {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Rejection {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

/// The earliest accepted event time (1995-01-01T00:00:00Z, before any MovieLens rating).
pub const MIN_TS_MS: i64 = 788_918_400_000;
/// How far in the future of the receiver's clock an event time may be.
pub const MAX_FUTURE_MS: i64 = 24 * 3_600_000;
/// Longest string field (ids, versions, variants).
pub const MAX_STRING: usize = 128;
/// Most movies in one recommendation list.
pub const MAX_MOVIE_IDS: usize = 1000;

/// Parses one JSON record. `hint` is the type the source implies (a Kafka
/// topic, `--type`); a `type` field, if present, must agree with it. `now_ms`
/// bounds event times (no more than a day ahead).
pub fn parse_json(bytes: &[u8], hint: Option<EventType>, now_ms: i64) -> Result<Parsed, Rejection> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| Rejection::new("json", format!("must be valid JSON ({e})")))?;
    parse_value(&v, hint, now_ms)
}

/// [`parse_json`] on an already parsed value.
pub fn parse_value(v: &Value, hint: Option<EventType>, now_ms: i64) -> Result<Parsed, Rejection> {
    let Some(o) = v.as_object() else {
        return Err(Rejection::new("record", "must be a JSON object"));
    };
    let ty = event_type(o, hint)?;
    let event_id = opt_string(o, "event_id")?;
    let user_id = id_field(o, "user_id")?;
    let ts_ms = time_field(o, now_ms)?;
    let event = match ty {
        EventType::Watch => Event::Watch(Watch {
            user_id,
            movie_id: id_field(o, "movie_id")?,
            minute: opt_field(o, "minute", "must be an integer from 0 to 100000", |m| {
                m.as_u64()
                    .and_then(|m| u32::try_from(m).ok())
                    .filter(|m| *m <= 100_000)
            })?,
            ts_ms,
        }),
        EventType::Rate => Event::Rate(Rate {
            user_id,
            movie_id: id_field(o, "movie_id")?,
            rating: rating_field(o)?,
            ts_ms,
        }),
        EventType::RecoResponse => Event::RecoResponse(RecoResponse {
            request_id: opt_string(o, "request_id")?,
            user_id,
            movie_ids: movie_ids_field(o)?,
            model_version: opt_string(o, "model_version")?
                .ok_or_else(|| Rejection::new("model_version", "is required"))?,
            variant: opt_string(o, "variant")?,
            status: opt_field(o, "status", "must be an HTTP status from 100 to 599", |s| {
                s.as_u64()
                    .filter(|s| (100..=599).contains(s))
                    .map(|s| s as u16)
            })?,
            latency_ms: opt_field(o, "latency_ms", "must be a non-negative number", |l| {
                l.as_f64().filter(|l| l.is_finite() && *l >= 0.0)
            })?,
            ts_ms,
        }),
    };
    Ok(Parsed { event, event_id })
}

/// The record's type: its `type` field, which must agree with the type
/// the source implies (`hint`), or the hint alone.
fn event_type(o: &Map<String, Value>, hint: Option<EventType>) -> Result<EventType, Rejection> {
    let named = match o.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(EventType::parse(s).ok_or_else(|| {
            Rejection::new(
                "type",
                format!("must be one of watch, rate, reco_response (got {s:?})"),
            )
        })?),
        Some(other) => {
            return Err(Rejection::new(
                "type",
                format!("must be a string (got {other})"),
            ))
        }
    };
    match (named, hint) {
        (Some(n), Some(h)) if n != h => Err(Rejection::new(
            "type",
            format!("is {n} but the source carries {h} events"),
        )),
        (Some(t), _) | (None, Some(t)) => Ok(t),
        (None, None) => Err(Rejection::new(
            "type",
            "is required (one of watch, rate, reco_response)",
        )),
    }
}

/// An optional field: absent or null is `None`; a value `check` refuses is
/// rejected with `rule` and the value.
fn opt_field<T>(
    o: &Map<String, Value>,
    name: &str,
    rule: &str,
    check: impl FnOnce(&Value) -> Option<T>,
) -> Result<Option<T>, Rejection> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => check(v)
            .map(Some)
            .ok_or_else(|| Rejection::new(name, format!("{rule} (got {v})"))),
    }
}

fn id_field(o: &Map<String, Value>, name: &str) -> Result<u64, Rejection> {
    match o.get(name) {
        None | Some(Value::Null) => Err(Rejection::new(name, "is required")),
        Some(v) => v.as_u64().ok_or_else(|| {
            Rejection::new(name, format!("must be a non-negative integer (got {v})"))
        }),
    }
}

fn opt_string(o: &Map<String, Value>, name: &str) -> Result<Option<String>, Rejection> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_STRING => Ok(Some(s.clone())),
        Some(v) => Err(Rejection::new(
            name,
            format!("must be a string of 1 to {MAX_STRING} bytes (got {v})"),
        )),
    }
}

fn rating_field(o: &Map<String, Value>) -> Result<f32, Rejection> {
    let v = o
        .get("rating")
        .filter(|v| !v.is_null())
        .ok_or_else(|| Rejection::new("rating", "is required"))?;
    match v.as_f64() {
        Some(r) if (1.0..=5.0).contains(&r) && (r * 2.0).fract() == 0.0 => Ok(r as f32),
        _ => Err(Rejection::new(
            "rating",
            format!("must be from 1 to 5 in steps of 0.5 (got {v})"),
        )),
    }
}

fn movie_ids_field(o: &Map<String, Value>) -> Result<Vec<u64>, Rejection> {
    let Some(Value::Array(a)) = o.get("movie_ids") else {
        return Err(Rejection::new(
            "movie_ids",
            "is required: an array of movie ids",
        ));
    };
    if a.len() > MAX_MOVIE_IDS {
        return Err(Rejection::new(
            "movie_ids",
            format!("has {} entries; at most {MAX_MOVIE_IDS}", a.len()),
        ));
    }
    a.iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_u64().ok_or_else(|| {
                Rejection::new(
                    format!("movie_ids[{i}]"),
                    format!("must be a non-negative integer (got {v})"),
                )
            })
        })
        .collect()
}

/// Event time in epoch ms from `ts` or `timestamp`, within
/// [`MIN_TS_MS`] and `now_ms` + [`MAX_FUTURE_MS`].
fn time_field(o: &Map<String, Value>, now_ms: i64) -> Result<i64, Rejection> {
    let (field, ms) = match (o.get("ts").filter(|v| !v.is_null()), o.get("timestamp")) {
        (Some(ts), _) => (
            "ts",
            ts.as_i64().ok_or_else(|| {
                Rejection::new(
                    "ts",
                    format!("must be an integer of epoch milliseconds (got {ts})"),
                )
            })?,
        ),
        (None, Some(Value::String(s))) => (
            "timestamp",
            parse_iso8601(s).ok_or_else(|| {
                Rejection::new(
                    "timestamp",
                    format!("must be an ISO-8601 date-time (got {s:?})"),
                )
            })?,
        ),
        (None, Some(v)) if !v.is_null() => {
            return Err(Rejection::new(
                "timestamp",
                format!("must be an ISO-8601 string (got {v})"),
            ))
        }
        _ => {
            return Err(Rejection::new(
                "ts",
                "is required (epoch milliseconds), or timestamp (ISO-8601)",
            ))
        }
    };
    if ms < MIN_TS_MS {
        return Err(Rejection::new(
            field,
            format!(
                "must not be before 1995-01-01 (got {ms} ms; seconds instead of milliseconds?)"
            ),
        ));
    }
    if ms > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(Rejection::new(
            field,
            format!("must not be more than a day in the future (got {ms} ms, now {now_ms} ms)"),
        ));
    }
    Ok(ms)
}

/// RFC 3339, or a date-time without offset (taken as UTC).
pub fn parse_iso8601(s: &str) -> Option<i64> {
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp_millis());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
        .map(|d| d.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests;
