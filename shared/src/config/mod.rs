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

impl Settings {
    /// Reads the settings with `get` (the process environment in production).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let ttl = match var("MOVIE_RECS_TRACE_TTL_DAYS") {
            None => 30,
            Some(v) => v.parse().ok().filter(|d| *d > 0).ok_or(ConfigError {
                var: "MOVIE_RECS_TRACE_TTL_DAYS",
                reason: format!("expected a positive number of days, got {v:?}"),
            })?,
        };
        let positive = |name: &'static str, default: i64| -> Result<i64, ConfigError> {
            match var(name) {
                None => Ok(default),
                Some(v) => v.parse().ok().filter(|d| *d > 0).ok_or(ConfigError {
                    var: name,
                    reason: format!("expected a positive integer, got {v:?}"),
                }),
            }
        };
        let share = |name: &'static str, default: f64| -> Result<f64, ConfigError> {
            match var(name) {
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
        };
        let t = Thresholds::default();
        let audit = AuditConfig {
            thresholds: Thresholds {
                min_catalog_coverage: share(
                    "MOVIE_RECS_AUDIT_MIN_COVERAGE",
                    t.min_catalog_coverage,
                )?,
                max_gini_exposed: share("MOVIE_RECS_AUDIT_MAX_GINI", t.max_gini_exposed)?,
                max_top_10_pct_share: share(
                    "MOVIE_RECS_AUDIT_MAX_TOP_SHARE",
                    t.max_top_10_pct_share,
                )?,
                min_tail_share: share("MOVIE_RECS_AUDIT_MIN_TAIL_SHARE", t.min_tail_share)?,
            },
            spam: SpamConfig {
                velocity_limit: positive("MOVIE_RECS_RATE_LIMIT_PER_HOUR", 20)? as usize,
                ..SpamConfig::default()
            },
        };
        let cd = crate::canary::CanaryConfig::default();
        let ramp = match var("MOVIE_RECS_CANARY_RAMP") {
            None => cd.ramp.clone(),
            Some(v) => parse_ramp(&v).map_err(|reason| ConfigError {
                var: "MOVIE_RECS_CANARY_RAMP",
                reason,
            })?,
        };
        let canary = crate::canary::CanaryConfig {
            rule: crate::domain::experiment::DecisionRule {
                min_per_arm: positive("MOVIE_RECS_CANARY_MIN_PER_ARM", cd.rule.min_per_arm as i64)?
                    as u64,
                ..cd.rule.clone()
            },
            attribution_ms: positive("MOVIE_RECS_ATTRIBUTION_HOURS", 24)? * 3_600_000,
            max_error_rate_increase: share(
                "MOVIE_RECS_CANARY_MAX_ERROR_RATE_INCREASE",
                cd.max_error_rate_increase,
            )?,
            max_p95_regression: share(
                "MOVIE_RECS_CANARY_MAX_P95_REGRESSION",
                cd.max_p95_regression,
            )?,
            min_guardrail_requests: positive(
                "MOVIE_RECS_CANARY_MIN_GUARDRAIL_REQUESTS",
                cd.min_guardrail_requests as i64,
            )? as u64,
            thresholds: audit.thresholds,
            ramp,
            ..cd
        };
        let canary_window_minutes = positive(
            "MOVIE_RECS_CANARY_WINDOW_MINUTES",
            crate::canary::job::MAX_WINDOW_MINUTES,
        )?
        .min(crate::canary::job::MAX_WINDOW_MINUTES);
        let policy =
            match var("MOVIE_RECS_POLICY") {
                None => crate::domain::rerank::DEFAULT_POLICY,
                Some(v) => crate::domain::rerank::Policy::from_spec(&v, crate::http::K_MAX)
                    .map_err(|e| ConfigError {
                        var: "MOVIE_RECS_POLICY",
                        reason: e.to_string(),
                    })?,
            };
        let topics = match var("MOVIE_RECS_TOPIC_SUFFIXES") {
            None => TopicMap::default(),
            Some(v) => TopicMap::parse(&v).map_err(|reason| ConfigError {
                var: "MOVIE_RECS_TOPIC_SUFFIXES",
                reason,
            })?,
        };
        Ok(Settings {
            registry: var("MOVIE_RECS_REGISTRY").unwrap_or_else(|| ".movie-recs/registry".into()),
            model_cache: var("MOVIE_RECS_MODEL_CACHE")
                .unwrap_or_else(|| "/tmp/movie-recs-models".into())
                .into(),
            db: var("MOVIE_RECS_DB")
                .unwrap_or_else(|| ".movie-recs/movie-recs.db".into())
                .into(),
            traces_table: var("MOVIE_RECS_TRACES_TABLE"),
            rollout_table: var("MOVIE_RECS_ROLLOUT_TABLE"),
            history_table: var("MOVIE_RECS_HISTORY_TABLE"),
            ingest_table: var("MOVIE_RECS_INGEST_TABLE"),
            trending_table: var("MOVIE_RECS_TRENDING_TABLE"),
            lake: var("MOVIE_RECS_LAKE").unwrap_or_else(|| ".movie-recs/lake".into()),
            metrics: var("MOVIE_RECS_METRICS")
                .unwrap_or_else(|| ".movie-recs/metrics.jsonl".into()),
            reports: var("MOVIE_RECS_REPORTS").unwrap_or_else(|| ".movie-recs/reports".into()),
            exposure: var("MOVIE_RECS_EXPOSURE").unwrap_or_else(|| ".movie-recs/exposure".into()),
            batch: var("MOVIE_RECS_BATCH").unwrap_or_else(|| ".movie-recs/batch".into()),
            stage: var("MOVIE_RECS_STAGE").unwrap_or_else(|| "local".into()),
            audit_window_minutes: positive("MOVIE_RECS_AUDIT_WINDOW_MINUTES", 60)?,
            audit,
            canary,
            canary_window_minutes,
            policy,
            trace_ttl_days: ttl,
            admin_token: var("MOVIE_RECS_ADMIN_TOKEN"),
            rate_limit_per_hour: positive("MOVIE_RECS_RATE_LIMIT_PER_HOUR", 20)? as usize,
            dedup_ttl_days: positive("MOVIE_RECS_DEDUP_TTL_DAYS", 7)?,
            max_event_age_days: positive("MOVIE_RECS_MAX_EVENT_AGE_DAYS", 7)?,
            max_request_spread_hours: positive("MOVIE_RECS_MAX_REQUEST_SPREAD_HOURS", 6)?,
            topics,
            function_version: var("AWS_LAMBDA_FUNCTION_VERSION").unwrap_or_else(|| "local".into()),
            function_name: var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "local".into()),
            in_lambda: var("AWS_LAMBDA_FUNCTION_NAME").is_some(),
            reload_secs: positive("MOVIE_RECS_RELOAD_SECS", 30)? as u64,
            explicit: vars::VARS
                .iter()
                .map(|v| v.name)
                .filter(|n| var(n).is_some())
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
            function_name: self.function_name.clone(),
            trace_ttl_secs: self.trace_ttl_days * 86_400,
            admin_token: self.admin_token.clone(),
            iam_authorized: self.in_lambda,
            emf: self.in_lambda,
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

/// Canary percentages: increasing numbers in (0, 100], comma-separated.
fn parse_ramp(v: &str) -> Result<Vec<f64>, String> {
    let steps: Vec<f64> = v
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("expected comma-separated percentages like \"5,25,50\", got {v:?}"))?;
    if steps.iter().any(|s| !(*s > 0.0 && *s <= 100.0)) || steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!(
            "expected increasing percentages in (0, 100], got {v:?}"
        ));
    }
    Ok(steps)
}

/// The time (epoch ms) of an EventBridge schedule's invocation of `function`;
/// anything but a `Scheduled Event` with a time is refused with the reason.
pub fn scheduled_time_ms(
    function: &str,
    e: &aws_lambda_events::eventbridge::EventBridgeEvent<serde_json::Value>,
) -> Result<i64, String> {
    if e.detail_type != "Scheduled Event" {
        return Err(format!(
            "{function} runs on EventBridge schedules (detail-type \"Scheduled Event\"); got detail-type {:?} from {:?}",
            e.detail_type, e.source
        ));
    }
    e.time
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| "scheduled event without a time".to_string())
}

/// The window a scheduled audit reads: the `window_minutes` before the
/// schedule's time, or, when an operator invokes it with `detail:
/// {"from_ms", "to_ms"}` (to audit or re-audit a chosen window), that one
/// (at most a day long).
pub fn audit_window(
    e: &aws_lambda_events::eventbridge::EventBridgeEvent<serde_json::Value>,
    window_minutes: i64,
) -> Result<(i64, i64), String> {
    let to_ms = scheduled_time_ms("audit", e)?;
    let field = |k: &'static str| e.detail.get(k).map(move |v| v.as_i64().ok_or(k));
    match (field("from_ms"), field("to_ms")) {
        (None, None) => Ok((to_ms - window_minutes * 60_000, to_ms)),
        (Some(Ok(from)), Some(Ok(to))) if from < to && to - from <= 86_400_000 => Ok((from, to)),
        (Some(Ok(_)), Some(Ok(_))) => {
            Err("detail.from_ms must be before detail.to_ms, at most a day apart".into())
        }
        (Some(Err(k)), _) | (_, Some(Err(k))) => {
            Err(format!("detail.{k} must be an integer (epoch ms)"))
        }
        (None, Some(_)) => Err("detail.from_ms must be given with detail.to_ms".into()),
        (Some(_), None) => Err("detail.to_ms must be given with detail.from_ms".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn an_audit_reads_the_hour_before_the_schedule_or_the_window_an_operator_names() {
        let body = include_str!("../../../events/audit-schedule.json");
        let mut e: aws_lambda_events::eventbridge::EventBridgeEvent<serde_json::Value> =
            serde_json::from_str(body).unwrap();
        let t = e.time.unwrap().timestamp_millis();
        assert_eq!(audit_window(&e, 60), Ok((t - 3_600_000, t)));
        e.detail = serde_json::json!({"from_ms": 5, "to_ms": 9});
        assert_eq!(audit_window(&e, 60), Ok((5, 9)));
        e.detail = serde_json::json!({"from_ms": 9, "to_ms": 5});
        assert!(audit_window(&e, 60).unwrap_err().contains("before"));
        e.detail = serde_json::json!({"from_ms": 5});
        let err = audit_window(&e, 60).unwrap_err();
        assert!(err.starts_with("detail.to_ms must be given"), "{err}");
        e.detail = serde_json::json!({"from_ms": "x", "to_ms": 9});
        let err = audit_window(&e, 60).unwrap_err();
        assert!(err.starts_with("detail.from_ms must be"), "{err}");
    }

    #[test]
    fn scheduled_time_of_the_schedule_payload_and_refusals() {
        let body = include_str!("../../../events/audit-schedule.json");
        let mut e: aws_lambda_events::eventbridge::EventBridgeEvent<serde_json::Value> =
            serde_json::from_str(body).unwrap();
        let want = e.time.unwrap().timestamp_millis();
        assert_eq!(scheduled_time_ms("audit", &e), Ok(want));
        e.time = None;
        assert_eq!(
            scheduled_time_ms("audit", &e),
            Err("scheduled event without a time".into())
        );
        e.detail_type = "Object Created".into();
        let err = scheduled_time_ms("canary", &e).unwrap_err();
        assert!(
            err.starts_with("canary runs on EventBridge schedules"),
            "{err}"
        );
        assert!(err.contains("Object Created"), "{err}");
    }

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
        assert!(api.emf && api.iam_authorized && api.trace_before_response);
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
