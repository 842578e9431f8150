//! The audit: fairness, feedback-loop and rating-spam analysis of a window of
//! recommendations and ratings. One module defines every metric
//! ([`exposure`] for exposure, [`spam`] for spam); the previous system's
//! definitions are kept beside better ones and marked `legacy`.
//!
//! - [`audit`] computes a whole [`AuditReport`] from an [`AuditInput`]
//!   (pure, no I/O): overall and per (model version, variant) exposure
//!   metrics, segment parity, spam, and the threshold checks.
//! - [`job`] gathers the window from the trace store and the event lake,
//!   publishes the metrics, quarantines flagged users and writes the report
//!   (the audit Lambda function and `movie-recs audit` on the data dir).
//! - [`files`] reads the JSONL files of `movie-recs audit --recommendations
//!   --ratings`; [`report`] renders Markdown and SVG charts.
//!
//! Segment parity: per segment (rollout variant, user activity bucket, and
//! gender and age band when user metadata is given) the users, their share,
//! their share of exposures, and the mean training popularity of the movies
//! they were shown, so a group served mostly blockbusters stands out.
//! Activity counts a user's valid rating and watch events in the audit input:
//! `cold_start` < 5, `light` < 20, `regular` < 100, `heavy` otherwise.

pub mod control;
pub mod exposure;
pub mod files;
pub mod job;
pub mod report;
pub mod spam;

use crate::ports::MetricDatum;
use exposure::{Catalog, ExposureCounts, ExposureMetrics};
use serde::Serialize;
use spam::{Rating, SpamConfig, SpamReport};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One recommendation list shown to a user.
#[derive(Clone, Debug, PartialEq)]
pub struct Exposure {
    pub request_id: Option<String>,
    pub user_id: u64,
    pub model_version: String,
    pub variant: Option<String>,
    pub ts_ms: i64,
    pub movie_ids: Vec<u64>,
}

/// Demographics of a user (MovieLens-1M `users.dat`).
#[derive(Clone, Debug, PartialEq)]
pub struct UserMeta {
    pub gender: String,
    pub age_band: String,
}

/// The audited window, epoch ms, `[from_ms, to_ms)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Everything an audit looks at.
#[derive(Clone, Debug, Default)]
pub struct AuditInput {
    pub exposures: Vec<Exposure>,
    pub ratings: Vec<Rating>,
    /// Rating (and other) records with invalid fields.
    pub schema_errors: usize,
    /// Other valid events per user (watches), for activity buckets.
    pub other_activity: HashMap<u64, usize>,
    pub catalog: Catalog,
    pub users: HashMap<u64, UserMeta>,
    pub window: Option<Window>,
}

/// Alarm thresholds: the controller of the `exposure` policy steers to the same ones.
pub use crate::domain::exposure_control::Thresholds;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AuditConfig {
    pub thresholds: Thresholds,
    pub spam: SpamConfig,
}

/// One threshold check; `passed` is `None` when the metric is undefined
/// (an empty window).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    pub metric: &'static str,
    pub value: Option<f64>,
    pub op: &'static str,
    pub threshold: f64,
    pub passed: Option<bool>,
}

/// Exposure metrics of one (model version, variant).
#[derive(Clone, Debug, Serialize)]
pub struct Group {
    pub model_version: String,
    pub variant: Option<String>,
    pub users: usize,
    #[serde(flatten)]
    pub metrics: ExposureMetrics,
}

/// Parity figures of one segment of users.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Segment {
    pub dimension: &'static str,
    pub segment: String,
    pub users: usize,
    pub user_share: f64,
    pub requests: usize,
    pub exposures: u64,
    pub exposure_share: f64,
    /// Mean training popularity of the movies the segment was shown.
    pub mean_popularity: f64,
    /// Share of the segment's exposures in the top 10% by popularity.
    pub head_share_by_popularity: f64,
}

/// Metric names defined by the previous system (kept for comparability).
pub const LEGACY_METRICS: [&str; 5] = [
    "gini_exposed",
    "top_10_pct_share",
    "tail_share",
    "tiers",
    "spam.threshold",
];

/// A whole audit.
#[derive(Clone, Debug, Serialize)]
pub struct AuditReport {
    pub audit_id: String,
    /// Epoch ms.
    pub generated_at: i64,
    pub window: Option<Window>,
    #[serde(flatten)]
    pub overall: ExposureMetrics,
    pub groups: Vec<Group>,
    pub segments: Vec<Segment>,
    pub spam: SpamReport,
    pub config: AuditConfig,
    pub checks: Vec<Check>,
    /// Whether every defined check passed.
    pub passed: bool,
    pub legacy_metrics: [&'static str; 5],
}

/// The activity bucket of a user with `events` events.
pub fn activity_bucket(events: usize) -> &'static str {
    match events {
        0..=4 => "cold_start",
        5..=19 => "light",
        20..=99 => "regular",
        _ => "heavy",
    }
}

fn checks(m: &ExposureMetrics, t: &Thresholds) -> Vec<Check> {
    let c = |metric, value: Option<f64>, op, threshold: f64| Check {
        metric,
        value,
        op,
        threshold,
        passed: value.map(|v| {
            if op == ">=" {
                v >= threshold
            } else {
                v <= threshold
            }
        }),
    };
    vec![
        c(
            "catalog_coverage",
            m.catalog_coverage,
            ">=",
            t.min_catalog_coverage,
        ),
        c("gini_exposed", m.gini_exposed, "<=", t.max_gini_exposed),
        c(
            "top_10_pct_share",
            m.top_10_pct_share,
            "<=",
            t.max_top_10_pct_share,
        ),
        c("tail_share", m.tail_share, ">=", t.min_tail_share),
    ]
}

fn segments(input: &AuditInput, all: &ExposureCounts) -> Vec<Segment> {
    let total_exposures = all.total();
    let mut activity: HashMap<u64, usize> = input.other_activity.clone();
    for r in &input.ratings {
        *activity.entry(r.user_id).or_insert(0) += 1;
    }
    let head = input.catalog.popularity_head(&all.counts);
    #[derive(Default)]
    struct Acc {
        users: HashSet<u64>,
        requests: usize,
        exposures: u64,
        popularity: f64,
        head: u64,
    }
    let mut acc: BTreeMap<(&'static str, String), Acc> = BTreeMap::new();
    let mut all_users = HashSet::new();
    for e in &input.exposures {
        all_users.insert(e.user_id);
        let mut keys = vec![
            (
                "variant",
                e.variant.clone().unwrap_or_else(|| "none".into()),
            ),
            (
                "activity",
                activity_bucket(activity.get(&e.user_id).copied().unwrap_or(0)).to_string(),
            ),
        ];
        if let Some(u) = input.users.get(&e.user_id) {
            keys.push(("gender", u.gender.clone()));
            keys.push(("age", u.age_band.clone()));
        }
        let pop: f64 = e
            .movie_ids
            .iter()
            .map(|m| input.catalog.popularity.get(m).copied().unwrap_or(0) as f64)
            .sum();
        let in_head = e.movie_ids.iter().filter(|m| head.contains(m)).count() as u64;
        for k in keys {
            let a = acc.entry(k).or_default();
            a.users.insert(e.user_id);
            a.requests += 1;
            a.exposures += e.movie_ids.len() as u64;
            a.popularity += pop;
            a.head += in_head;
        }
    }
    let n_users = all_users.len().max(1) as f64;
    let total = total_exposures.max(1) as f64;
    acc.into_iter()
        .map(|((dimension, segment), a)| {
            let ex = a.exposures.max(1) as f64;
            Segment {
                dimension,
                segment,
                users: a.users.len(),
                user_share: a.users.len() as f64 / n_users,
                requests: a.requests,
                exposures: a.exposures,
                exposure_share: a.exposures as f64 / total,
                mean_popularity: a.popularity / ex,
                head_share_by_popularity: a.head as f64 / ex,
            }
        })
        .collect()
}

/// The id of an audit of the window ending at `to_ms` (or generated then).
pub fn audit_id(to_ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(to_ms).unwrap_or_default();
    format!("audit-{}", t.format("%Y%m%dT%H%M%SZ"))
}

/// Computes the whole audit of `input`.
pub fn audit(mut input: AuditInput, cfg: &AuditConfig, now_ms: i64) -> AuditReport {
    let mut all = ExposureCounts::default();
    let mut by_group: BTreeMap<(String, Option<String>), (ExposureCounts, HashSet<u64>)> =
        BTreeMap::new();
    for e in &input.exposures {
        all.add_list(&e.movie_ids);
        let g = by_group
            .entry((e.model_version.clone(), e.variant.clone()))
            .or_default();
        g.0.add_list(&e.movie_ids);
        g.1.insert(e.user_id);
    }
    let overall = exposure::metrics(&all, &input.catalog);
    let groups = by_group
        .into_iter()
        .map(|((model_version, variant), (counts, users))| Group {
            model_version,
            variant,
            users: users.len(),
            metrics: exposure::metrics(&counts, &input.catalog),
        })
        .collect();
    let segments = segments(&input, &all);
    let spam = spam::detect(&mut input.ratings, input.schema_errors, &cfg.spam);
    let checks = checks(&overall, &cfg.thresholds);
    let passed = checks.iter().all(|c| c.passed != Some(false));
    AuditReport {
        audit_id: audit_id(input.window.map_or(now_ms, |w| w.to_ms)),
        generated_at: now_ms,
        window: input.window,
        overall,
        groups,
        segments,
        spam,
        config: cfg.clone(),
        checks,
        passed,
        legacy_metrics: LEGACY_METRICS,
    }
}

impl AuditReport {
    /// The overall exposure metrics by display name, legacy ones marked.
    pub fn headline(&self) -> [(&'static str, Option<f64>); 7] {
        let m = &self.overall;
        [
            ("catalog_coverage", m.catalog_coverage),
            ("gini_exposed (legacy)", m.gini_exposed),
            ("gini_catalog", m.gini_catalog),
            ("top_10_pct_share (legacy)", m.top_10_pct_share),
            ("tail_share (legacy)", m.tail_share),
            ("head_share_by_popularity", m.head_share_by_popularity),
            ("starvation_index", m.starvation_index),
        ]
    }

    /// The headline figures, for logs and the function's result.
    pub fn summary(&self) -> serde_json::Value {
        let m = &self.overall;
        serde_json::json!({
            "audit_id": self.audit_id,
            "window": self.window,
            "passed": self.passed,
            "breached": self.checks.iter().filter(|c| c.passed == Some(false)).map(|c| c.metric).collect::<Vec<_>>(),
            "requests": m.requests,
            "exposures": m.exposures,
            "catalog_coverage": m.catalog_coverage,
            "gini_exposed": m.gini_exposed,
            "gini_catalog": m.gini_catalog,
            "tail_share": m.tail_share,
            "top_10_pct_share": m.top_10_pct_share,
            "starvation_index": m.starvation_index,
            "groups": self.groups.len(),
            "rating_events": self.spam.events,
            "schema_errors": self.spam.schema_errors,
            "flagged_users": self.spam.flagged_users,
        })
    }
}

/// The dimension value of "every model version" / "every variant".
pub const ALL: &str = "all";

fn exposure_datums(m: &ExposureMetrics, dims: Vec<(String, String)>, ts: i64) -> Vec<MetricDatum> {
    let d = |name: &str, value: Option<f64>, unit: &'static str| {
        value.map(|value| MetricDatum {
            name: name.into(),
            value,
            unit,
            dimensions: dims.clone(),
            timestamp_ms: ts,
        })
    };
    let amp =
        |tiers: &BTreeMap<&str, exposure::Tier>| tiers.get("high").and_then(|t| t.amplification);
    [
        d("Recommendations", Some(m.requests as f64), "Count"),
        d("Exposures", Some(m.exposures as f64), "Count"),
        d("CatalogCoverage", m.catalog_coverage, "None"),
        d("GiniExposed", m.gini_exposed, "None"),
        d("GiniCatalog", m.gini_catalog, "None"),
        d("Top10PctShare", m.top_10_pct_share, "None"),
        d("TailShare", m.tail_share, "None"),
        d("HeadShareByPopularity", m.head_share_by_popularity, "None"),
        d("StarvationIndex", m.starvation_index, "None"),
        d("TopTierAmplification", amp(&m.tiers), "None"),
        d(
            "PopularityHeadAmplification",
            amp(&m.popularity_tiers),
            "None",
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The CloudWatch data of a report: exposure metrics overall
/// (`model_version` = `variant` = `all`) and per group (`variant` `none`
/// under a fixed strategy), spam metrics overall; each also by `Stage`.
/// Undefined metrics (an empty window) are left out, so alarms see missing
/// data rather than a false zero.
pub fn datums(r: &AuditReport, stage: &str) -> Vec<MetricDatum> {
    let ts = r.window.map_or(r.generated_at, |w| w.to_ms);
    let dims = |mv: &str, v: &str| {
        vec![
            ("Stage".to_string(), stage.to_string()),
            ("model_version".to_string(), mv.to_string()),
            ("variant".to_string(), v.to_string()),
        ]
    };
    let mut out = exposure_datums(&r.overall, dims(ALL, ALL), ts);
    for g in &r.groups {
        let v = g.variant.as_deref().unwrap_or("none");
        out.extend(exposure_datums(&g.metrics, dims(&g.model_version, v), ts));
    }
    let s = &r.spam;
    for (name, value) in [
        ("SpamUsersFlagged", s.flagged_users.len()),
        ("SpamLegacyUsersFlagged", s.legacy_flagged_users.len()),
        ("SpamSchemaErrors", s.schema_errors),
        ("RatingEvents", s.events),
        ("RatingUsers", s.users),
    ] {
        out.push(MetricDatum {
            name: name.into(),
            value: value as f64,
            unit: "Count",
            dimensions: dims(ALL, ALL),
            timestamp_ms: ts,
        });
    }
    out
}

#[cfg(test)]
mod tests;
