//! Configuration from the environment, read once per process and
//! validated: [`Settings`]. Which variables exist, their defaults and who
//! reads them is one table, [`vars::VARS`] (docs/configuration.md is checked
//! against it). Building adapters from settings is [`crate::wiring`]'s job.

pub mod vars;

pub use vars::{Kind, Role, Store};

use crate::audit::spam::SpamConfig;
use crate::audit::{AuditConfig, Thresholds};
use crate::http::ApiConfig;
use crate::ingest::kafka::TopicMap;
use crate::ingest::velocity::Velocity;
use crate::ingest::IngestConfig;
use std::path::PathBuf;

/// Settings read from the environment.
#[derive(Clone, Debug)]
pub struct Settings {
    pub registry: String,
    pub model_cache: PathBuf,
    pub db: PathBuf,
    pub traces_table: Option<String>,
    pub rollout_table: Option<String>,
    pub history_table: Option<String>,
    pub ingest_table: Option<String>,
    pub trending_table: Option<String>,
    pub lake: String,
    pub metrics: String,
    pub reports: String,
    /// The exposure controller's adjustments (a folder or `s3://`).
    pub exposure: String,
    /// Batch recommendation runs (a folder or `s3://`).
    pub batch: String,
    pub stage: String,
    pub audit_window_minutes: i64,
    pub audit: AuditConfig,
    /// The experiment analysis and automated canary.
    pub canary: crate::canary::CanaryConfig,
    /// The scheduled canary's window (capped by the experiment's start).
    pub canary_window_minutes: i64,
    /// The re-ranking policy of requests without `?policy=`.
    pub policy: crate::domain::rerank::Policy,
    pub trace_ttl_days: i64,
    pub admin_token: Option<String>,
    pub rate_limit_per_hour: usize,
    pub dedup_ttl_days: i64,
    /// Live events older than this are refused.
    pub max_event_age_days: i64,
    /// One HTTP request's events span at most this much event time.
    pub max_request_spread_hours: i64,
    pub topics: TopicMap,
    /// `AWS_LAMBDA_FUNCTION_VERSION` (`$LATEST`, `7`), or `local`.
    pub function_version: String,
    /// `AWS_LAMBDA_FUNCTION_NAME`, or `local`.
    pub function_name: String,
    /// Whether this process runs as a Lambda function.
    pub in_lambda: bool,
    /// Seconds between checks for a new served version.
    pub reload_secs: u64,
    /// The variables of [`vars::VARS`] that were set (not defaulted).
    pub explicit: Vec<&'static str>,
}

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

/// The variables, read through one lookup: empty counts as unset, and
/// each typed reader names the variable in its error.
struct Lookup<F>(F);

impl<F: Fn(&str) -> Option<String>> Lookup<F> {
    fn var(&self, k: &str) -> Option<String> {
        (self.0)(k).filter(|v| !v.trim().is_empty())
    }

    fn or(&self, k: &str, default: &str) -> String {
        self.var(k).unwrap_or_else(|| default.into())
    }

    fn positive(&self, name: &'static str, default: i64) -> Result<i64, ConfigError> {
        match self.var(name) {
            None => Ok(default),
            Some(v) => v.parse().ok().filter(|d| *d > 0).ok_or(ConfigError {
                var: name,
                reason: format!("expected a positive integer, got {v:?}"),
            }),
        }
    }

    fn share(&self, name: &'static str, default: f64) -> Result<f64, ConfigError> {
        match self.var(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .ok()
                .filter(|x: &f64| (0.0..=1.0).contains(x))
                .ok_or(ConfigError {
                    var: name,
                    reason: format!("expected a number from 0 to 1, got {v:?}"),
                }),
        }
    }

    /// A variable parsed by `parse`, whose error becomes the reason.
    fn parsed<T, E: std::fmt::Display>(
        &self,
        name: &'static str,
        default: impl FnOnce() -> T,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, ConfigError> {
        match self.var(name) {
            None => Ok(default()),
            Some(v) => parse(&v).map_err(|e| ConfigError {
                var: name,
                reason: e.to_string(),
            }),
        }
    }

    fn audit(&self) -> Result<AuditConfig, ConfigError> {
        let t = Thresholds::default();
        Ok(AuditConfig {
            thresholds: Thresholds {
                min_catalog_coverage: self
                    .share("MOVIE_RECS_AUDIT_MIN_COVERAGE", t.min_catalog_coverage)?,
                max_gini_exposed: self.share("MOVIE_RECS_AUDIT_MAX_GINI", t.max_gini_exposed)?,
                max_top_10_pct_share: self
                    .share("MOVIE_RECS_AUDIT_MAX_TOP_SHARE", t.max_top_10_pct_share)?,
                min_tail_share: self.share("MOVIE_RECS_AUDIT_MIN_TAIL_SHARE", t.min_tail_share)?,
            },
            spam: SpamConfig {
                velocity_limit: self.positive("MOVIE_RECS_RATE_LIMIT_PER_HOUR", 20)? as usize,
                ..SpamConfig::default()
            },
        })
    }

    fn canary(&self, thresholds: Thresholds) -> Result<crate::canary::CanaryConfig, ConfigError> {
        let cd = crate::canary::CanaryConfig::default();
        let ramp = match self.var("MOVIE_RECS_CANARY_RAMP") {
            None => cd.ramp.clone(),
            Some(v) => parse_ramp(&v)?,
        };
        Ok(crate::canary::CanaryConfig {
            rule: crate::domain::experiment::DecisionRule {
                min_per_arm: self
                    .positive("MOVIE_RECS_CANARY_MIN_PER_ARM", cd.rule.min_per_arm as i64)?
                    as u64,
                ..cd.rule.clone()
            },
            attribution_ms: self.positive("MOVIE_RECS_ATTRIBUTION_HOURS", 24)? * 3_600_000,
            max_error_rate_increase: self.share(
                "MOVIE_RECS_CANARY_MAX_ERROR_RATE_INCREASE",
                cd.max_error_rate_increase,
            )?,
            max_p95_regression: self.share(
                "MOVIE_RECS_CANARY_MAX_P95_REGRESSION",
                cd.max_p95_regression,
            )?,
            min_guardrail_requests: self.positive(
                "MOVIE_RECS_CANARY_MIN_GUARDRAIL_REQUESTS",
                cd.min_guardrail_requests as i64,
            )? as u64,
            thresholds,
            ramp,
            ..cd
        })
    }
}

impl Settings {
    /// Reads the settings with `get` (the process environment in production).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let l = Lookup(get);
        let ttl = match l.var("MOVIE_RECS_TRACE_TTL_DAYS") {
            None => 30,
            Some(v) => v.parse().ok().filter(|d| *d > 0).ok_or(ConfigError {
                var: "MOVIE_RECS_TRACE_TTL_DAYS",
                reason: format!("expected a positive number of days, got {v:?}"),
            })?,
        };
        let audit = l.audit()?;
        let canary = l.canary(audit.thresholds)?;
        let max_window = crate::canary::job::MAX_WINDOW_MINUTES;
        Ok(Settings {
            registry: l.or("MOVIE_RECS_REGISTRY", ".movie-recs/registry"),
            model_cache: l
                .or("MOVIE_RECS_MODEL_CACHE", "/tmp/movie-recs-models")
                .into(),
            db: l.or("MOVIE_RECS_DB", ".movie-recs/movie-recs.db").into(),
            traces_table: l.var("MOVIE_RECS_TRACES_TABLE"),
            rollout_table: l.var("MOVIE_RECS_ROLLOUT_TABLE"),
            history_table: l.var("MOVIE_RECS_HISTORY_TABLE"),
            ingest_table: l.var("MOVIE_RECS_INGEST_TABLE"),
            trending_table: l.var("MOVIE_RECS_TRENDING_TABLE"),
            lake: l.or("MOVIE_RECS_LAKE", ".movie-recs/lake"),
            metrics: l.or("MOVIE_RECS_METRICS", ".movie-recs/metrics.jsonl"),
            reports: l.or("MOVIE_RECS_REPORTS", ".movie-recs/reports"),
            exposure: l.or("MOVIE_RECS_EXPOSURE", ".movie-recs/exposure"),
            batch: l.or("MOVIE_RECS_BATCH", ".movie-recs/batch"),
            stage: l.or("MOVIE_RECS_STAGE", "local"),
            audit_window_minutes: l.positive("MOVIE_RECS_AUDIT_WINDOW_MINUTES", 60)?,
            audit,
            canary,
            canary_window_minutes: l
                .positive("MOVIE_RECS_CANARY_WINDOW_MINUTES", max_window)?
                .min(max_window),
            policy: l.parsed(
                "MOVIE_RECS_POLICY",
                || crate::domain::rerank::DEFAULT_POLICY,
                |v| crate::domain::rerank::Policy::from_spec(v, crate::http::K_MAX),
            )?,
            trace_ttl_days: ttl,
            admin_token: l.var("MOVIE_RECS_ADMIN_TOKEN"),
            rate_limit_per_hour: l.positive("MOVIE_RECS_RATE_LIMIT_PER_HOUR", 20)? as usize,
            dedup_ttl_days: l.positive("MOVIE_RECS_DEDUP_TTL_DAYS", 7)?,
            max_event_age_days: l.positive("MOVIE_RECS_MAX_EVENT_AGE_DAYS", 7)?,
            max_request_spread_hours: l.positive("MOVIE_RECS_MAX_REQUEST_SPREAD_HOURS", 6)?,
            topics: l.parsed(
                "MOVIE_RECS_TOPIC_SUFFIXES",
                TopicMap::default,
                TopicMap::parse,
            )?,
            function_version: l.or("AWS_LAMBDA_FUNCTION_VERSION", "local"),
            function_name: l.or("AWS_LAMBDA_FUNCTION_NAME", "local"),
            in_lambda: l.var("AWS_LAMBDA_FUNCTION_NAME").is_some(),
            reload_secs: l.positive("MOVIE_RECS_RELOAD_SECS", 30)? as u64,
            explicit: vars::VARS
                .iter()
                .map(|v| v.name)
                .filter(|n| l.var(n).is_some())
                .collect(),
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Whether any setting selects an AWS adapter (an SDK config is loaded).
    pub fn needs_aws(&self) -> bool {
        self.registry.starts_with("s3://")
            || self.lake.starts_with("s3://")
            || self.reports.starts_with("s3://")
            || self.exposure.starts_with("s3://")
            || self.batch.starts_with("s3://")
            || self.metrics == "cloudwatch"
            || self.traces_table.is_some()
            || self.rollout_table.is_some()
            || self.history_table.is_some()
            || self.ingest_table.is_some()
            || self.trending_table.is_some()
    }

    /// The ingest settings these imply.
    pub fn ingest_config(&self) -> IngestConfig {
        IngestConfig {
            velocity: Velocity {
                limit: self.rate_limit_per_hour,
                span_ms: 3_600_000,
            },
            dedup_ttl_secs: self.dedup_ttl_days * 86_400,
            max_age_ms: self.max_event_age_days * 86_400_000,
            max_request_spread_ms: self.max_request_spread_hours * 3_600_000,
            ..IngestConfig::default()
        }
    }

    /// The API settings these imply.
    pub fn api_config(&self) -> ApiConfig {
        ApiConfig {
            function_version: self.function_version.clone(),
            trace_ttl_secs: self.trace_ttl_days * 86_400,
            admin_token: self.admin_token.clone(),
            iam_authorized: self.in_lambda,
            trace_before_response: self.in_lambda,
            default_policy: self.policy,
            reload_every: self
                .in_lambda
                .then(|| std::time::Duration::from_secs(self.reload_secs)),
            reload_secs: self.reload_secs,
            events_need_admin: false,
        }
    }
}

/// `MOVIE_RECS_CANARY_RAMP`: increasing percentages in (0, 100], comma-separated.
fn parse_ramp(v: &str) -> Result<Vec<f64>, ConfigError> {
    let bad = |reason: String| ConfigError {
        var: "MOVIE_RECS_CANARY_RAMP",
        reason,
    };
    let steps: Vec<f64> = v
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            bad(format!(
                "expected comma-separated percentages like \"5,25,50\", got {v:?}"
            ))
        })?;
    if steps.iter().any(|s| !(*s > 0.0 && *s <= 100.0)) || steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad(format!(
            "expected increasing percentages in (0, 100], got {v:?}"
        )));
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_are_local_and_lambda_is_detected() {
        let s = settings(&[]).unwrap();
        assert!(!s.needs_aws() && !s.in_lambda);
        assert_eq!(s.api_config().function_version, "local");
        let s = settings(&[
            ("MOVIE_RECS_REGISTRY", "s3://bkt/models"),
            ("AWS_LAMBDA_FUNCTION_NAME", "recommend"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "7"),
            ("MOVIE_RECS_TRACE_TTL_DAYS", "3"),
        ])
        .unwrap();
        assert!(s.needs_aws());
        let api = s.api_config();
        assert!(api.iam_authorized && api.trace_before_response);
        assert_eq!(
            (api.function_version.as_str(), api.trace_ttl_secs),
            ("7", 3 * 86_400)
        );
        let e = settings(&[("MOVIE_RECS_TRACE_TTL_DAYS", "-1")]).unwrap_err();
        assert_eq!(e.var, "MOVIE_RECS_TRACE_TTL_DAYS");
        let s = settings(&[
            ("MOVIE_RECS_RATE_LIMIT_PER_HOUR", "5"),
            ("MOVIE_RECS_TOPIC_SUFFIXES", "rate=-r"),
        ])
        .unwrap();
        assert_eq!(s.ingest_config().velocity.limit, 5);
        assert_eq!(
            s.topics.type_of("x-r"),
            Some(crate::events::EventType::Rate)
        );
        for (k, v) in [
            ("MOVIE_RECS_RATE_LIMIT_PER_HOUR", "0"),
            ("MOVIE_RECS_DEDUP_TTL_DAYS", "x"),
            ("MOVIE_RECS_TOPIC_SUFFIXES", "r=.x"),
            ("MOVIE_RECS_CANARY_RAMP", "25,5"),
            ("MOVIE_RECS_CANARY_RAMP", "5,x"),
            ("MOVIE_RECS_CANARY_RAMP", "0,50"),
            ("MOVIE_RECS_CANARY_MAX_P95_REGRESSION", "1.5"),
            ("MOVIE_RECS_ATTRIBUTION_HOURS", "0"),
            ("MOVIE_RECS_POLICY", "popular"),
            ("MOVIE_RECS_POLICY", "mmr:lambda=2"),
        ] {
            assert_eq!(settings(&[(k, v)]).unwrap_err().var, k);
        }
    }

    #[test]
    fn canary_settings_follow_the_environment_and_the_audit_thresholds() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.canary, crate::canary::CanaryConfig::default());
        assert_eq!(s.canary_window_minutes, 30 * 24 * 60);
        let s = settings(&[
            ("MOVIE_RECS_CANARY_RAMP", "1, 10,100"),
            ("MOVIE_RECS_ATTRIBUTION_HOURS", "6"),
            ("MOVIE_RECS_CANARY_MIN_PER_ARM", "50"),
            ("MOVIE_RECS_CANARY_MAX_P95_REGRESSION", "0.2"),
            ("MOVIE_RECS_AUDIT_MIN_COVERAGE", "0.3"),
            ("MOVIE_RECS_CANARY_WINDOW_MINUTES", "99999999"),
        ])
        .unwrap();
        assert_eq!(s.canary.ramp, vec![1.0, 10.0, 100.0]);
        assert_eq!(s.canary.attribution_ms, 6 * 3_600_000);
        assert_eq!(s.canary.rule.min_per_arm, 50);
        assert_eq!(s.canary.max_p95_regression, 0.2);
        assert_eq!(s.canary.thresholds.min_catalog_coverage, 0.3);
        assert_eq!(s.canary_window_minutes, 30 * 24 * 60);
    }
}
