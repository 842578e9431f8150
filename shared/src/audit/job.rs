//! The scheduled audit: gathers a window from the trace store (its time
//! index, never a scan) and the event lake (only the hour partitions the
//! window covers), computes the audit, publishes the metrics, writes the
//! users it flags to the lake's `quarantine/users/` (training excludes them),
//! writes the report (JSON, Markdown, SVG charts) to the reports store, and
//! folds the window's exposure into the exposure controller's adjustments
//! ([`super::control`]).

use super::files::{exposure_from_event, exposure_from_trace};
use super::report;
use super::spam::Rating;
use super::{audit, datums, AuditConfig, AuditInput, AuditReport, Window};
use crate::audit::exposure::Catalog;
use crate::domain::exposure_control::ControllerConfig;
use crate::events::{Event, EventType};
use crate::ingest::lake::{read_under, LakeReadError};
use crate::ports::{
    AdjustmentStore, EventLake, MetricsPublisher, ModelStore, RegistryError, RolloutStore,
    StoreError, TraceStore,
};
use std::collections::HashSet;
use std::sync::Arc;

/// Why an audit could not run.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lake(#[from] LakeReadError),
    #[error("the catalogue is unknown: {0}")]
    Catalog(#[from] CatalogError),
    #[error("invalid window: {0}")]
    Window(String),
}

/// Why the catalogue (the movies and their training popularity) is unknown.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("reading the manifest failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("no model version in the registry to take the catalogue from")]
    NoVersion,
}

/// The audit's ports and settings.
#[derive(Clone)]
pub struct AuditJob {
    pub traces: Arc<dyn TraceStore>,
    pub lake: Arc<dyn EventLake>,
    pub registry: Arc<dyn ModelStore>,
    pub rollout: Arc<dyn RolloutStore>,
    pub metrics: Arc<dyn MetricsPublisher>,
    pub reports: Arc<dyn EventLake>,
    /// The `Stage` dimension of the published metrics.
    pub stage: String,
    pub config: AuditConfig,
    /// A catalogue to judge against instead of the served model's.
    pub catalog: Option<Catalog>,
    /// Where the exposure controller's adjustments live; `None`: no
    /// controller step.
    pub exposure: Option<Arc<dyn AdjustmentStore>>,
}

/// What one run did.
#[derive(Debug)]
pub struct Outcome {
    pub report: AuditReport,
    /// Keys written in the reports store.
    pub report_keys: Vec<String>,
    /// The lake key of the quarantined users, when any were flagged.
    pub quarantine_key: Option<String>,
    pub published: usize,
    /// The exposure controller's step, when the job has an adjustments store.
    pub control: Option<super::control::ControlStep>,
}

const HOUR_MS: i64 = 3_600_000;

/// The `dt=…/hour=…` partitions that overlap `[from_ms, to_ms)`.
pub fn hour_partitions(from_ms: i64, to_ms: i64) -> Vec<String> {
    let first = from_ms.div_euclid(HOUR_MS);
    let last = (to_ms - 1).div_euclid(HOUR_MS);
    (first..=last)
        .map(|h| {
            let t = chrono::DateTime::from_timestamp_millis(h * HOUR_MS).unwrap_or_default();
            format!("dt={}/hour={}", t.format("%Y-%m-%d"), t.format("%H"))
        })
        .collect()
}

/// The key prefix of an audit's report files.
pub fn report_prefix(to_ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(to_ms).unwrap_or_default();
    format!("audit/dt={}/{}", t.format("%Y-%m-%d"), t.format("%H%M%SZ"))
}

/// The lake key of the users an audit quarantines.
pub fn quarantine_key(to_ms: i64, audit_id: &str) -> String {
    let t = chrono::DateTime::from_timestamp_millis(to_ms).unwrap_or_default();
    format!(
        "quarantine/users/dt={}/{audit_id}.jsonl",
        t.format("%Y-%m-%d")
    )
}

/// The catalogue of `version`'s manifest (the newest version when `None`;
/// `None` when the registry is empty): movie ids with training popularity.
pub async fn manifest_catalog(
    registry: Arc<dyn ModelStore>,
    version: Option<String>,
) -> Result<Option<Catalog>, CatalogError> {
    let manifest = tokio::task::spawn_blocking(move || {
        let version = match version {
            Some(v) => Some(v),
            None => registry.list_versions()?.pop(),
        };
        version.map(|v| registry.read_manifest(&v)).transpose()
    })
    .await??;
    Ok(manifest
        .map(|m| Catalog::from_items(m.items.iter().map(|i| (i.movie_id, i.popularity as u64)))))
}

impl AuditJob {
    /// The catalogue: the served version's manifest (else the newest version).
    async fn catalog(&self) -> Result<Option<Catalog>, AuditError> {
        if let Some(c) = &self.catalog {
            return Ok(Some(c.clone()));
        }
        let served = self.rollout.served_version().await?;
        manifest_catalog(self.registry.clone(), served)
            .await
            .map_err(AuditError::from)
    }

    /// Reads the window: traces, and the lake's rate, watch and reco_response
    /// events (accepted and velocity-quarantined ratings both: the spam rules
    /// must see what ingest held back) and its rejected records.
    pub async fn gather(
        &self,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
    ) -> Result<AuditInput, AuditError> {
        if from_ms >= to_ms {
            return Err(AuditError::Window(format!(
                "from {from_ms} is not before to {to_ms}"
            )));
        }
        let mut input = AuditInput {
            window: Some(Window { from_ms, to_ms }),
            ..AuditInput::default()
        };
        let traces = self.traces.window(from_ms, to_ms, now_ms / 1000).await?;
        input.exposures = traces.iter().filter_map(exposure_from_trace).collect();
        let traced: HashSet<String> = input
            .exposures
            .iter()
            .filter_map(|e| e.request_id.clone())
            .collect();
        let in_window = |ts: i64| ts >= from_ms && ts < to_ms;
        let mut seen = HashSet::new();
        for part in hour_partitions(from_ms, to_ms) {
            for (root, t) in [
                ("events", EventType::Rate),
                ("quarantine", EventType::Rate),
                ("events", EventType::Watch),
                ("events", EventType::RecoResponse),
            ] {
                let prefix = format!("{root}/type={t}/{part}/");
                for r in read_under(self.lake.as_ref(), &prefix, t, &mut seen).await? {
                    if !in_window(r.event.ts_ms()) {
                        continue;
                    }
                    match r.event {
                        Event::Rate(x) => input.ratings.push(Rating {
                            user_id: x.user_id,
                            movie_id: x.movie_id,
                            rating: x.rating,
                            ts_ms: x.ts_ms,
                        }),
                        Event::Watch(w) => *input.other_activity.entry(w.user_id).or_insert(0) += 1,
                        // Lists the service served are in the traces already.
                        Event::RecoResponse(e) => {
                            if e.request_id.as_ref().is_none_or(|id| !traced.contains(id))
                                && e.status.unwrap_or(200) == 200
                            {
                                input.exposures.push(exposure_from_event(e));
                            }
                        }
                    }
                }
            }
            for source in ["kafka", "http", "file"] {
                for key in self
                    .lake
                    .list(&format!("rejected/source={source}/{part}/"))
                    .await?
                {
                    let bytes = self.lake.get_object(&key).await?;
                    input.schema_errors += bytes
                        .split(|b| *b == b'\n')
                        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                        .count();
                }
            }
        }
        match self.catalog().await? {
            Some(c) => input.catalog = c,
            None if input.exposures.is_empty() => {}
            None => return Err(CatalogError::NoVersion.into()),
        }
        Ok(input)
    }

    /// Audits `[from_ms, to_ms)`: gather, compute, then write the report,
    /// quarantine flagged users and publish the metrics.
    pub async fn run(&self, from_ms: i64, to_ms: i64, now_ms: i64) -> Result<Outcome, AuditError> {
        let input = self.gather(from_ms, to_ms, now_ms).await?;
        let window = super::control::window_counts(&input.exposures);
        let catalog_size = input.catalog.size;
        let config = self.config.clone();
        let report = tokio::task::spawn_blocking(move || audit(input, &config, now_ms))
            .await
            .map_err(|e| AuditError::Window(e.to_string()))?;
        let prefix = report_prefix(to_ms);
        let mut report_keys = Vec::new();
        for (name, _, bytes) in report::files(&report) {
            let key = format!("{prefix}/{name}");
            self.reports.put_object(&key, bytes).await?;
            report_keys.push(key);
        }
        let latest = serde_json::to_vec_pretty(&serde_json::json!({
            "audit_id": report.audit_id,
            "window": report.window,
            "prefix": prefix,
            "passed": report.passed,
        }))
        .expect("json");
        self.reports.put_object("audit/latest.json", latest).await?;
        let quarantine_key = if report.spam.flagged_users.is_empty() {
            None
        } else {
            let key = quarantine_key(to_ms, &report.audit_id);
            let mut body = String::new();
            for f in report
                .spam
                .flags
                .iter()
                .filter(|f| f.rules.iter().any(|r| *r != "legacy"))
            {
                body.push_str(
                    &serde_json::json!({
                        "user_id": f.user_id,
                        "rules": f.rules,
                        "events": f.events,
                        "robust_score": f.robust_score,
                        "max_per_span": f.max_per_span,
                        "audit_id": report.audit_id,
                        "flagged_at": now_ms,
                    })
                    .to_string(),
                );
                body.push('\n');
            }
            self.lake.put_object(&key, body.into_bytes()).await?;
            Some(key)
        };
        let data = datums(&report, &self.stage);
        self.metrics
            .publish(crate::ports::METRICS_NAMESPACE, &data)
            .await?;
        let control = match &self.exposure {
            None => None,
            Some(store) => {
                let cfg = ControllerConfig::for_thresholds(self.config.thresholds);
                Some(super::control::step(store.as_ref(), &window, catalog_size, &cfg, to_ms).await)
            }
        };
        Ok(Outcome {
            report,
            report_keys,
            quarantine_key,
            published: data.len(),
            control,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cover_the_window() {
        // 2025-11-22T23:30Z to 2025-11-23T01:00Z: hours 23, 00 (01:00 excluded).
        let from = 1_763_854_200_000;
        let to = from + 90 * 60_000;
        assert_eq!(
            hour_partitions(from, to),
            vec!["dt=2025-11-22/hour=23", "dt=2025-11-23/hour=00"]
        );
        assert_eq!(hour_partitions(from, from + 1).len(), 1);
        assert_eq!(report_prefix(to), "audit/dt=2025-11-23/010000Z");
        assert_eq!(
            quarantine_key(to, "audit-x"),
            "quarantine/users/dt=2025-11-23/audit-x.jsonl"
        );
    }
}
