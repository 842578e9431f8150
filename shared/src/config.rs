//! Configuration from the environment, read once per process, and the
//! adapters it selects. The same binary runs on AWS (S3, DynamoDB, CloudWatch)
//! or locally (folders, SQLite, a metrics file); `AWS_ENDPOINT_URL` points the
//! AWS adapters at an emulator.
//!
//! | variable | AWS value | local default |
//! |---|---|---|
//! | `MOVIE_RECS_REGISTRY` | `s3://bucket/models` | `.movie-recs/registry` |
//! | `MOVIE_RECS_MODEL_CACHE` | `/tmp/movie-recs-models` | same |
//! | `MOVIE_RECS_TRACES_TABLE` | table name | SQLite (`MOVIE_RECS_DB`) |
//! | `MOVIE_RECS_ROLLOUT_TABLE` | table name | SQLite |
//! | `MOVIE_RECS_HISTORY_TABLE` | table name | SQLite |
//! | `MOVIE_RECS_INGEST_TABLE` | table name (idempotency keys, rating windows) | SQLite |
//! | `MOVIE_RECS_RATE_LIMIT_PER_HOUR` | `20` | `20` |
//! | `MOVIE_RECS_DEDUP_TTL_DAYS` | `7` | `7` |
//! | `MOVIE_RECS_TOPIC_SUFFIXES` | `watch=.watch,rate=.rate,reco_response=.reco_responses` | same |
//! | `MOVIE_RECS_DB` | (unused) | `.movie-recs/movie-recs.db` |
//! | `MOVIE_RECS_LAKE` | `s3://bucket/lake` | `.movie-recs/lake` |
//! | `MOVIE_RECS_METRICS` | `cloudwatch` | `.movie-recs/metrics.jsonl` |
//! | `MOVIE_RECS_REPORTS` | `s3://bucket/reports` | `.movie-recs/reports` |
//! | `MOVIE_RECS_STAGE` | `dev`, `prod` (the `Stage` metric dimension) | `local` |
//! | `MOVIE_RECS_AUDIT_WINDOW_MINUTES` | `60` | `60` |
//! | `MOVIE_RECS_AUDIT_MIN_COVERAGE`, `_MAX_GINI`, `_MAX_TOP_SHARE`, `_MIN_TAIL_SHARE` | `0.40`, `0.35`, `0.30`, `0.70` | same |
//! | `MOVIE_RECS_TRACE_TTL_DAYS` | `30` | `30` |
//! | `MOVIE_RECS_ADMIN_TOKEN` | (IAM instead) | unset: admin routes refused |

use crate::adapters::aws::{self, SdkConfig};
use crate::adapters::local::{FileMetrics, FolderLake, FolderRegistry, SqliteStore};
use crate::audit::job::AuditJob;
use crate::audit::spam::SpamConfig;
use crate::audit::{AuditConfig, Thresholds};
use crate::http::ApiConfig;
use crate::ingest::kafka::TopicMap;
use crate::ingest::velocity::Velocity;
use crate::ingest::{IngestConfig, Ingestor, MetricsSink};
use crate::ports::{
    EventLake, IngestState, MetricsPublisher, ModelStore, RolloutStore, TraceStore, UserHistory,
};
use std::path::PathBuf;
use std::sync::Arc;

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
    pub lake: String,
    pub metrics: String,
    pub reports: String,
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
    pub topics: TopicMap,
    /// `AWS_LAMBDA_FUNCTION_VERSION` (`$LATEST`, `7`), or `local`.
    pub function_version: String,
    /// `AWS_LAMBDA_FUNCTION_NAME`, or `local`.
    pub function_name: String,
    /// Whether this process runs as a Lambda function.
    pub in_lambda: bool,
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
            thresholds: audit.thresholds.clone(),
            ramp,
            ..cd
        };
        let canary_window_minutes = positive(
            "MOVIE_RECS_CANARY_WINDOW_MINUTES",
            crate::canary::job::MAX_WINDOW_MINUTES,
        )?
        .min(crate::canary::job::MAX_WINDOW_MINUTES);
        let policy = match var("MOVIE_RECS_POLICY") {
            None => crate::domain::rerank::DEFAULT_POLICY,
            Some(v) => crate::domain::rerank::Policy::from_spec(&v, crate::http::K_MAX).map_err(
                |reason| ConfigError {
                    var: "MOVIE_RECS_POLICY",
                    reason,
                },
            )?,
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
            lake: var("MOVIE_RECS_LAKE").unwrap_or_else(|| ".movie-recs/lake".into()),
            metrics: var("MOVIE_RECS_METRICS")
                .unwrap_or_else(|| ".movie-recs/metrics.jsonl".into()),
            reports: var("MOVIE_RECS_REPORTS").unwrap_or_else(|| ".movie-recs/reports".into()),
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
            topics,
            function_version: var("AWS_LAMBDA_FUNCTION_VERSION").unwrap_or_else(|| "local".into()),
            function_name: var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "local".into()),
            in_lambda: var("AWS_LAMBDA_FUNCTION_NAME").is_some(),
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    fn needs_aws(&self) -> bool {
        self.registry.starts_with("s3://")
            || self.lake.starts_with("s3://")
            || self.reports.starts_with("s3://")
            || self.metrics == "cloudwatch"
            || self.traces_table.is_some()
            || self.rollout_table.is_some()
            || self.history_table.is_some()
            || self.ingest_table.is_some()
    }

    /// The ingest settings these imply.
    pub fn ingest_config(&self) -> IngestConfig {
        IngestConfig {
            velocity: Velocity {
                limit: self.rate_limit_per_hour,
                span_ms: 3_600_000,
            },
            dedup_ttl_secs: self.dedup_ttl_days * 86_400,
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

/// Every adapter a function may need, built once per process (in Lambda,
/// during the init phase).
#[derive(Clone)]
pub struct Stores {
    pub registry: Arc<dyn ModelStore>,
    pub traces: Arc<dyn TraceStore>,
    pub history: Arc<dyn UserHistory>,
    pub rollout: Arc<dyn RolloutStore>,
    pub ingest_state: Arc<dyn IngestState>,
    pub lake: Arc<dyn EventLake>,
    /// Where the audit writes its reports (an object store like the lake).
    pub reports: Arc<dyn EventLake>,
    pub metrics: Arc<dyn MetricsPublisher>,
    /// The SDK config, when any AWS adapter is in use.
    pub sdk: Option<SdkConfig>,
}

impl Stores {
    pub async fn build(s: &Settings) -> Result<Self, ConfigError> {
        let sdk = if s.needs_aws() {
            Some(aws::load_sdk_config(None).await)
        } else {
            None
        };
        let ddb = sdk.as_ref().map(aws_sdk_dynamodb::Client::new);
        let s3 = sdk.as_ref().map(aws::s3_client);
        // SQLite is opened only if some store is local.
        let local_needed = s.traces_table.is_none()
            || s.rollout_table.is_none()
            || s.history_table.is_none()
            || s.ingest_table.is_none();
        let sqlite = if local_needed {
            if let Some(dir) = s.db.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| ConfigError {
                    var: "MOVIE_RECS_DB",
                    reason: format!("creating {}: {e}", dir.display()),
                })?;
            }
            Some(Arc::new(SqliteStore::open(&s.db).map_err(|e| {
                ConfigError {
                    var: "MOVIE_RECS_DB",
                    reason: e.to_string(),
                }
            })?))
        } else {
            None
        };
        let registry: Arc<dyn ModelStore> = if s.registry.starts_with("s3://") {
            let (bucket, prefix) =
                aws::parse_s3_url(&s.registry).map_err(|reason| ConfigError {
                    var: "MOVIE_RECS_REGISTRY",
                    reason,
                })?;
            Arc::new(aws::s3::S3Registry::new(
                s3.clone().expect("sdk"),
                &bucket,
                &prefix,
                &s.model_cache,
            ))
        } else {
            Arc::new(FolderRegistry::new(&s.registry))
        };
        let objects = |var: &'static str, url: &str| -> Result<Arc<dyn EventLake>, ConfigError> {
            Ok(if url.starts_with("s3://") {
                let (bucket, prefix) =
                    aws::parse_s3_url(url).map_err(|reason| ConfigError { var, reason })?;
                Arc::new(aws::s3::S3Lake::new(
                    s3.clone().expect("sdk"),
                    &bucket,
                    &prefix,
                ))
            } else {
                Arc::new(FolderLake::new(url))
            })
        };
        let lake = objects("MOVIE_RECS_LAKE", &s.lake)?;
        let reports = objects("MOVIE_RECS_REPORTS", &s.reports)?;
        let metrics: Arc<dyn MetricsPublisher> = if s.metrics == "cloudwatch" {
            Arc::new(aws::cloudwatch::CloudWatchPublisher::new(
                aws_sdk_cloudwatch::Client::new(sdk.as_ref().expect("sdk")),
            ))
        } else {
            Arc::new(FileMetrics::new(&s.metrics))
        };
        let local = || sqlite.clone().expect("sqlite opened when a store is local");
        let traces: Arc<dyn TraceStore> = match (&s.traces_table, &ddb) {
            (Some(t), Some(c)) => Arc::new(aws::dynamo::DynamoTraces::new(c.clone(), t)),
            _ => local(),
        };
        let history: Arc<dyn UserHistory> = match (&s.history_table, &ddb) {
            (Some(t), Some(c)) => Arc::new(aws::dynamo::DynamoHistory::new(c.clone(), t)),
            _ => local(),
        };
        let rollout: Arc<dyn RolloutStore> = match (&s.rollout_table, &ddb) {
            (Some(t), Some(c)) => Arc::new(aws::dynamo::DynamoRollout::new(c.clone(), t)),
            _ => local(),
        };
        let ingest_state: Arc<dyn IngestState> = match (&s.ingest_table, &ddb) {
            (Some(t), Some(c)) => Arc::new(aws::dynamo::DynamoIngestState::new(c.clone(), t)),
            _ => local(),
        };
        Ok(Stores {
            registry,
            traces,
            history,
            rollout,
            ingest_state,
            lake,
            reports,
            metrics,
            sdk,
        })
    }
}

impl Stores {
    /// The audit on these stores.
    pub fn audit_job(&self, s: &Settings) -> AuditJob {
        AuditJob {
            traces: self.traces.clone(),
            lake: self.lake.clone(),
            registry: self.registry.clone(),
            rollout: self.rollout.clone(),
            metrics: self.metrics.clone(),
            reports: self.reports.clone(),
            stage: s.stage.clone(),
            config: s.audit.clone(),
            catalog: None,
        }
    }

    /// The experiment analysis and automated canary on these stores.
    pub fn experiment_job(&self, s: &Settings) -> crate::canary::job::ExperimentJob {
        crate::canary::job::ExperimentJob {
            traces: self.traces.clone(),
            lake: self.lake.clone(),
            registry: self.registry.clone(),
            rollout: self.rollout.clone(),
            metrics: self.metrics.clone(),
            stage: s.stage.clone(),
            config: s.canary.clone(),
            window_minutes: s.canary_window_minutes,
            catalog: None,
        }
    }

    /// The ingest pipeline on these stores: metrics as EMF lines in Lambda,
    /// into the metrics publisher otherwise.
    pub fn ingestor(&self, s: &Settings) -> Ingestor {
        let metrics = if s.in_lambda {
            MetricsSink::Emf {
                function: s.function_name.clone(),
            }
        } else {
            MetricsSink::Publisher(self.metrics.clone())
        };
        Ingestor::new(
            self.lake.clone(),
            self.ingest_state.clone(),
            self.history.clone(),
        )
        .with_config(s.ingest_config())
        .with_metrics(metrics)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn scheduled_time_of_the_schedule_payload_and_refusals() {
        let body = include_str!("../../events/audit-schedule.json");
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

    #[tokio::test]
    async fn local_stores_build_in_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
        let s = settings(&[
            ("MOVIE_RECS_REGISTRY", &p("reg")),
            ("MOVIE_RECS_DB", &p("db/m.db")),
            ("MOVIE_RECS_LAKE", &p("lake")),
        ])
        .unwrap();
        let st = Stores::build(&s).await.unwrap();
        assert!(st.sdk.is_none());
        assert!(st.registry.list_versions().unwrap().is_empty());
        st.history.append(1, &[2], 3).await.unwrap();
        assert_eq!(st.history.seen(1).await.unwrap(), vec![2]);
        assert!(dir.path().join("db/m.db").is_file());
    }
}
