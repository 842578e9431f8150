//! Step 4's layout of the lake: which objects a batch writes, and where.
//! Accepted and quarantined events go as Parquet per (type, event hour),
//! rejected records as JSON lines per (source, receive hour) with their raw
//! bytes and the reason; `<batch>` names the batch's keys, so a retry
//! rewrites the same objects.

use super::{Outcome, RawRecord};
use crate::events::parquet::{encode, LakeRecord};
use crate::events::{avro, EventType, Parsed, Rejection};
use base64::Engine;
use serde_json::json;
use std::collections::BTreeMap;

/// The hour folder of `ts_ms` (`dt=YYYY-MM-DD/hour=HH`, UTC).
pub(super) fn time_path(ts_ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ts_ms).unwrap_or_default();
    format!("dt={}/hour={}", t.format("%Y-%m-%d"), t.format("%H"))
}

/// The Parquet key of accepted events of type `t` in the hour of `ts_ms`.
pub fn event_key(t: EventType, ts_ms: i64, batch: &str) -> String {
    format!("events/type={t}/{}/{batch}.parquet", time_path(ts_ms))
}

/// The lake objects of a batch: Parquet per (type, hour) for accepted and
/// quarantined events, JSON lines per (source, hour) for rejected ones.
pub(super) fn lake_objects(
    records: &[RawRecord],
    parsed: &[Result<Parsed, Rejection>],
    keys: &[String],
    outcomes: &[Outcome],
    batch: &str,
    now_ms: i64,
) -> Vec<(String, Vec<u8>)> {
    let mut groups: BTreeMap<(bool, EventType, String), Vec<LakeRecord>> = BTreeMap::new();
    let mut dead: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    for i in 0..records.len() {
        let quarantine = match &outcomes[i] {
            Outcome::Duplicate => continue,
            Outcome::Rejected(reason) => {
                let r = &records[i];
                let mut line = json!({
                    "key": keys[i],
                    "source": r.source.to_json(),
                    "reason": {"field": reason.field, "rule": reason.rule},
                    "message": reason.to_string(),
                    "received_at": now_ms,
                    "raw_base64": b64.encode(&r.bytes),
                });
                if let Ok(text) = std::str::from_utf8(&r.bytes) {
                    line["raw_text"] = text.into();
                }
                if let Some(id) = avro::schema_id(&r.bytes) {
                    line["schema_id"] = id.into();
                }
                if let Some(t) = r.hint {
                    line["type_hint"] = t.as_str().into();
                }
                let key = format!(
                    "rejected/source={}/{}/{batch}.jsonl",
                    r.source.kind(),
                    time_path(now_ms)
                );
                let buf = dead.entry(key).or_default();
                serde_json::to_writer(&mut *buf, &line).expect("JSON serialises");
                buf.push(b'\n');
                continue;
            }
            Outcome::Accepted => None,
            Outcome::Quarantined(reason) => Some(reason.clone()),
        };
        let Ok(p) = &parsed[i] else { continue };
        let t = p.event.event_type();
        groups
            .entry((quarantine.is_some(), t, time_path(p.event.ts_ms())))
            .or_default()
            .push(LakeRecord {
                event_key: keys[i].clone(),
                event_id: p.event_id.clone(),
                source: records[i].source.label(),
                ingested_at_ms: now_ms,
                event: p.event.clone(),
                reason: quarantine,
            });
    }
    let mut out: Vec<(String, Vec<u8>)> = groups
        .into_iter()
        .map(|((q, t, hour), recs)| {
            let root = if q { "quarantine" } else { "events" };
            (
                format!("{root}/type={t}/{hour}/{batch}.parquet"),
                encode(t, &recs, q),
            )
        })
        .collect();
    out.extend(dead);
    out
}
