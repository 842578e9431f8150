//! The experiment analysis on the stores: the running experiment's traces
//! (the trace store's time index) and the lake's watch and rate events (only
//! the hour partitions from the window's start to now), the catalogue from
//! the primary's manifest. [`ExperimentJob::run`] applies the action with a
//! guarded write over the analysed revision (a concurrent change wins and
//! this run fails with a conflict), records it in the change log with its
//! reason, and publishes `CanaryRollback` (the alarm's metric),
//! `CanaryPromotion` and per-arm conversion, error rate and p95 latency.

use super::{evaluate, Action, CanaryConfig, ExperimentReport, Observed};
use crate::audit::exposure::Catalog;
use crate::audit::job::{hour_partitions, manifest_catalog, CatalogError};
use crate::audit::Window;
use crate::domain::experiment::Engagement;
use crate::events::{Event, EventType};
use crate::ingest::lake::{read_under, LakeReadError};
use crate::ports::{
    EventLake, MetricDatum, MetricsPublisher, ModelStore, RolloutState, RolloutStore, StoreError,
    TraceStore,
};
use std::collections::HashSet;
use std::sync::Arc;

/// Why an analysis could not run.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lake(#[from] LakeReadError),
    #[error("the catalogue is unknown: {0}")]
    Catalog(#[from] CatalogError),
    #[error("no rollout state: nothing is being rolled out (POST /rollout starts a canary)")]
    NoRollout,
    #[error("invalid window: {0}")]
    Window(String),
}

/// The analysis' ports and settings.
#[derive(Clone)]
pub struct ExperimentJob {
    pub traces: Arc<dyn TraceStore>,
    pub lake: Arc<dyn EventLake>,
    pub registry: Arc<dyn ModelStore>,
    pub rollout: Arc<dyn RolloutStore>,
    pub metrics: Arc<dyn MetricsPublisher>,
    /// The `Stage` dimension of the published metrics.
    pub stage: String,
    pub config: CanaryConfig,
    /// The window of scheduled runs and of promotions (capped by the
    /// experiment's start); analyses default to 60 minutes.
    pub window_minutes: i64,
    /// A catalogue to judge fairness against instead of the primary's.
    pub catalog: Option<Catalog>,
}

/// What one run did.
#[derive(Debug)]
pub struct Outcome {
    pub report: ExperimentReport,
    /// The state written, when the action changed the rollout.
    pub applied: Option<RolloutState>,
    pub published: usize,
}

/// The longest window analysed: traces expire after 30 days by default.
pub const MAX_WINDOW_MINUTES: i64 = 30 * 24 * 60;

impl ExperimentJob {
    /// When the current experiment began: the oldest change, walking back
    /// from the newest, that still carries its id.
    pub async fn started_at(&self, state: &RolloutState) -> Result<Option<i64>, CanaryError> {
        let Some(id) = state.experiment_id.as_deref() else {
            return Ok(None);
        };
        let mut start = None;
        for c in self.rollout.changes(50).await? {
            if c.state.experiment_id.as_deref() != Some(id) {
                break;
            }
            start = Some(c.state.updated_at);
        }
        Ok(start.or(Some(state.updated_at)))
    }

    /// Accepted watches and ratings with event times in `[from_ms, to_ms)`.
    pub async fn engagements(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Engagement>, CanaryError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for part in hour_partitions(from_ms, to_ms) {
            for t in [EventType::Watch, EventType::Rate] {
                let prefix = format!("events/type={t}/{part}/");
                for r in read_under(self.lake.as_ref(), &prefix, t, &mut seen).await? {
                    let (user_id, movie_id, ts_ms) = match r.event {
                        Event::Watch(w) => (w.user_id, w.movie_id, w.ts_ms),
                        Event::Rate(x) => (x.user_id, x.movie_id, x.ts_ms),
                        Event::RecoResponse(_) => continue,
                    };
                    if ts_ms >= from_ms && ts_ms < to_ms {
                        out.push(Engagement {
                            user_id,
                            movie_id,
                            ts_ms,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Analyses the running experiment over the last `window_minutes`
    /// (never before the experiment began), with events up to `now_ms`.
    pub async fn analyze(
        &self,
        now_ms: i64,
        window_minutes: i64,
    ) -> Result<ExperimentReport, CanaryError> {
        if !(1..=MAX_WINDOW_MINUTES).contains(&window_minutes) {
            return Err(CanaryError::Window(format!(
                "window_minutes must be from 1 to {MAX_WINDOW_MINUTES}, got {window_minutes}"
            )));
        }
        let state = self.rollout.state().await?.ok_or(CanaryError::NoRollout)?;
        let started_at = self.started_at(&state).await?;
        let from_ms = (now_ms - window_minutes * 60_000).max(started_at.unwrap_or(i64::MIN));
        let window = Window {
            from_ms,
            to_ms: now_ms,
        };
        let running = state.strategy.has_candidate() && state.candidate_version.is_some();
        let (traces, events, catalog) = if running && from_ms < now_ms {
            let traces = self.traces.window(from_ms, now_ms, now_ms / 1000).await?;
            let events = self.engagements(from_ms, now_ms + 1).await?;
            let catalog = match &self.catalog {
                Some(c) => c.clone(),
                None => manifest_catalog(self.registry.clone(), Some(state.served_version.clone()))
                    .await
                    .map_err(CanaryError::from)?
                    .unwrap_or_default(),
            };
            (traces, events, catalog)
        } else {
            Default::default()
        };
        Ok(evaluate(
            &state,
            &Observed {
                traces: &traces,
                events: &events,
                catalog: &catalog,
                window,
                started_at,
                now_ms,
            },
            &self.config,
        ))
    }

    /// Analyses, then (unless `dry_run`) applies the action as `by` and
    /// publishes the metrics.
    pub async fn run(
        &self,
        now_ms: i64,
        window_minutes: i64,
        dry_run: bool,
        by: &str,
    ) -> Result<Outcome, CanaryError> {
        let report = self.analyze(now_ms, window_minutes).await?;
        if dry_run {
            return Ok(Outcome {
                report,
                applied: None,
                published: 0,
            });
        }
        let applied = match &report.proposed {
            Some(spec) => Some(self.rollout.set(report.revision, spec, by).await?),
            None => None,
        };
        if let Some(s) = &applied {
            tracing::info!(target: "audit", by, action = report.action.as_str(), strategy = %s.strategy,
                primary = %s.served_version, candidate = ?s.candidate_version, percentage = s.percentage,
                revision = s.revision, reason = ?report.proposed.as_ref().and_then(|p| p.reason.clone()), "rollout changed by the canary automation");
        }
        let data = datums(&report, &self.stage, now_ms);
        self.metrics
            .publish(crate::ports::METRICS_NAMESPACE, &data)
            .await?;
        Ok(Outcome {
            report,
            applied,
            published: data.len(),
        })
    }
}

/// `CanaryRollback` and `CanaryPromotion` (1 or 0, by `Stage`, every run so
/// the alarm sees data) and, while an experiment runs, per arm (`Stage`,
/// `arm`): `ExperimentRequests`, `ConversionRate`, `ErrorRate`, `P95LatencyMs`.
pub fn datums(r: &ExperimentReport, stage: &str, now_ms: i64) -> Vec<MetricDatum> {
    let dims = |arm: Option<&str>| {
        let mut d = vec![("Stage".to_string(), stage.to_string())];
        if let Some(a) = arm {
            d.push(("arm".to_string(), a.to_string()));
        }
        d
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let mut out = vec![
        MetricDatum {
            name: "CanaryRollback".into(),
            value: flag(r.action == Action::Rollback),
            unit: "Count",
            dimensions: dims(None),
            timestamp_ms: now_ms,
        },
        MetricDatum {
            name: "CanaryPromotion".into(),
            value: flag(r.action == Action::Promote),
            unit: "Count",
            dimensions: dims(None),
            timestamp_ms: now_ms,
        },
    ];
    if r.analysis.is_none() {
        return out;
    }
    for (arm, a) in &r.arms {
        for (name, value, unit) in [
            ("ExperimentRequests", Some(a.requests as f64), "Count"),
            ("ConversionRate", a.conversion_rate, "None"),
            ("ErrorRate", a.error_rate, "None"),
            ("P95LatencyMs", a.p95_latency_ms, "Milliseconds"),
        ] {
            if let Some(value) = value {
                out.push(MetricDatum {
                    name: name.into(),
                    value,
                    unit,
                    dimensions: dims(Some(arm)),
                    timestamp_ms: now_ms,
                });
            }
        }
    }
    out
}
