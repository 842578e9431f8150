//! What ingest answers: each record's outcome, in input order, and the
//! call's counts and metrics.

use crate::events::{EventType, Parsed, Rejection};
use crate::ports::MetricDatum;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// What happened to one record.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Accepted,
    /// Kept under `quarantine/`, excluded from training and history.
    Quarantined(String),
    /// Already handled (earlier delivery, or earlier in this batch).
    Duplicate,
    Rejected(Rejection),
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Quarantined(_) => "quarantined",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected(_) => "rejected",
        }
    }
}

/// The result of one record, in input order.
#[derive(Clone, Debug)]
pub struct RecordResult {
    pub key: String,
    pub event_type: Option<EventType>,
    pub outcome: Outcome,
}

impl RecordResult {
    pub fn to_json(&self, index: usize) -> Value {
        let mut v = json!({"index": index, "status": self.outcome.as_str(), "key": self.key});
        match &self.outcome {
            Outcome::Rejected(r) => {
                v["reason"] = r.to_string().into();
                v["field"] = r.field.clone().into();
            }
            Outcome::Quarantined(r) => v["reason"] = r.clone().into(),
            _ => {}
        }
        if let Some(t) = self.event_type {
            v["type"] = t.as_str().into();
        }
        v
    }
}

/// What one call did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub results: Vec<RecordResult>,
    pub accepted: usize,
    pub rejected: usize,
    pub quarantined: usize,
    pub duplicates: usize,
    /// Rejections by field (`movie_ids[3]` counts as `movie_ids`).
    pub rejected_by_field: BTreeMap<String, usize>,
    /// Users with ratings quarantined by the velocity limit.
    pub flagged_users: BTreeSet<u64>,
    /// Objects written, with their sizes.
    pub objects: Vec<(String, usize)>,
    pub batch_id: String,
}

impl Report {
    /// Counts each record's outcome and keeps its result, in input order.
    pub(super) fn tally(
        &mut self,
        keys: Vec<String>,
        parsed: &[Result<Parsed, Rejection>],
        outcomes: Vec<Outcome>,
    ) {
        for ((key, p), outcome) in keys.into_iter().zip(parsed).zip(outcomes) {
            match &outcome {
                Outcome::Accepted => self.accepted += 1,
                Outcome::Quarantined(_) => self.quarantined += 1,
                Outcome::Duplicate => self.duplicates += 1,
                Outcome::Rejected(r) => {
                    self.rejected += 1;
                    let field = r.field.split('[').next().unwrap_or("").to_string();
                    *self.rejected_by_field.entry(field).or_default() += 1;
                }
            }
            self.results.push(RecordResult {
                key,
                event_type: p.as_ref().ok().map(|p| p.event.event_type()),
                outcome,
            });
        }
    }

    pub fn lake_bytes(&self) -> usize {
        self.objects.iter().map(|o| o.1).sum()
    }

    /// The counts, as `movie-recs ingest --json` prints them.
    pub fn counts(&self) -> Value {
        json!({
            "accepted": self.accepted,
            "rejected": self.rejected,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
        })
    }

    /// Everything but the per-record results.
    pub fn summary(&self) -> Value {
        let mut v = self.counts();
        v["rejected_by_field"] = json!(self.rejected_by_field);
        v["flagged_users"] = json!(self.flagged_users);
        v["lake_bytes"] = self.lake_bytes().into();
        v["objects"] = self.objects.iter().map(|o| o.0.clone()).collect();
        v["batch"] = self.batch_id.clone().into();
        v
    }

    /// Per-invocation metrics: `Accepted`, `Rejected`, `Quarantined`,
    /// `Duplicates`, `LakeBytes`, and `Rejected` by `Reason` (the field).
    pub fn metrics(&self, timestamp_ms: i64) -> Vec<MetricDatum> {
        let d =
            |name: &str, value: f64, unit: &'static str, dims: Vec<(String, String)>| MetricDatum {
                name: name.into(),
                value,
                unit,
                dimensions: dims,
                timestamp_ms,
            };
        let mut out = vec![
            d("Accepted", self.accepted as f64, "Count", vec![]),
            d("Rejected", self.rejected as f64, "Count", vec![]),
            d("Quarantined", self.quarantined as f64, "Count", vec![]),
            d("Duplicates", self.duplicates as f64, "Count", vec![]),
            d("LakeBytes", self.lake_bytes() as f64, "Bytes", vec![]),
        ];
        for (field, n) in &self.rejected_by_field {
            out.push(d(
                "Rejected",
                *n as f64,
                "Count",
                vec![("Reason".into(), field.clone())],
            ));
        }
        out
    }
}
