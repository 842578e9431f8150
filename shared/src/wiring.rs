//! Wiring: builds the adapters a [`Role`] uses from validated [`Settings`],
//! once per process (in Lambda, during the init phase). Each role builds
//! only the stores it uses ([`Role::stores`]).
//!
//! Inside Lambda every one of those stores must be configured for AWS: a
//! missing or local value is an init error that names the variable and the
//! function, never a silent fallback to SQLite or a folder (Lambda's working
//! directory is read-only; only `/tmp` is writable, and it is not shared).
//! Locally, a store left unset is a folder or the one SQLite file.

use crate::adapters::adjustments::AdjustmentObjects;
use crate::adapters::aws::emf::EmfStdout;
use crate::adapters::aws::{self, CallBudget, SdkConfig};
use crate::adapters::local::{FileMetrics, FolderLake, FolderRegistry, SqliteStore};
use crate::audit::job::AuditJob;
use crate::canary::job::ExperimentJob;
use crate::config::{ConfigError, Role, Settings, Store};
use crate::ingest::{Ingestor, MetricsSink};
use crate::ports::{
    AdjustmentStore, EventLake, IngestState, MetricsPublisher, ModelStore, RequestMetricsSink,
    RolloutStore, TraceStore, TrendingStore, UserHistory,
};
use std::sync::Arc;

/// The adapters one role uses.
#[derive(Clone)]
pub struct Stores {
    pub role: Role,
    registry: Option<Arc<dyn ModelStore>>,
    traces: Option<Arc<dyn TraceStore>>,
    history: Option<Arc<dyn UserHistory>>,
    rollout: Option<Arc<dyn RolloutStore>>,
    ingest_state: Option<Arc<dyn IngestState>>,
    trending: Option<Arc<dyn TrendingStore>>,
    lake: Option<Arc<dyn EventLake>>,
    reports: Option<Arc<dyn EventLake>>,
    metrics: Option<Arc<dyn MetricsPublisher>>,
    exposure: Option<Arc<dyn AdjustmentStore>>,
    batch: Option<Arc<dyn EventLake>>,
    /// In Lambda: EMF lines on stdout, for each request's metrics and
    /// ingest's (no API call on those paths).
    emf: Option<Arc<EmfStdout>>,
    /// The SDK config, when any AWS adapter is in use.
    pub sdk: Option<SdkConfig>,
}

/// What `store`'s variable holds, if set.
fn value(s: &Settings, store: Store) -> Option<&str> {
    match store {
        Store::Registry => Some(s.registry.as_str()),
        Store::Lake => Some(s.lake.as_str()),
        Store::Reports => Some(s.reports.as_str()),
        Store::Metrics => Some(s.metrics.as_str()),
        Store::Exposure => Some(s.exposure.as_str()),
        Store::Batch => Some(s.batch.as_str()),
        Store::Traces => s.traces_table.as_deref(),
        Store::History => s.history_table.as_deref(),
        Store::Rollout => s.rollout_table.as_deref(),
        Store::IngestState => s.ingest_table.as_deref(),
        Store::Trending => s.trending_table.as_deref(),
    }
}

/// Whether `store` is configured for AWS (what Lambda requires).
fn is_aws(s: &Settings, store: Store) -> bool {
    match (store, value(s, store)) {
        (
            Store::Registry | Store::Lake | Store::Reports | Store::Exposure | Store::Batch,
            Some(v),
        ) => v.starts_with("s3://"),
        (Store::Metrics, Some(v)) => v == "cloudwatch",
        (_, v) => v.is_some(),
    }
}

/// Inside Lambda: every store of `role` configured for AWS, and the model
/// cache under `/tmp`.
pub fn check_lambda(role: Role, s: &Settings) -> Result<(), ConfigError> {
    for &store in role.stores() {
        if !is_aws(s, store) {
            let got = match s.explicit.contains(&store.var()) {
                true => format!("{:?}", value(s, store).unwrap_or_default()),
                false => "nothing".into(),
            };
            return Err(ConfigError {
                var: store.var(),
                reason: format!(
                    "the {role} function needs its {} here: set {} to {} (got {got}; inside Lambda nothing falls back to a local store)",
                    store.what(),
                    store.var(),
                    store.lambda_form(),
                ),
            });
        }
    }
    if role.stores().contains(&Store::Registry) && !s.model_cache.starts_with("/tmp") {
        return Err(ConfigError {
            var: "MOVIE_RECS_MODEL_CACHE",
            reason: format!(
                "the {role} function can write only under /tmp in Lambda, got {}",
                s.model_cache.display()
            ),
        });
    }
    Ok(())
}

impl Stores {
    /// Builds the stores `role` uses. In Lambda, [`check_lambda`] first.
    pub async fn build(role: Role, s: &Settings) -> Result<Self, ConfigError> {
        if s.in_lambda {
            check_lambda(role, s)?;
        }
        let b = Builder::new(role, s).await?;
        use aws::dynamo::{DynamoHistory, DynamoIngestState, DynamoRollout, DynamoTraces};
        Ok(Stores {
            role,
            registry: b.registry()?,
            traces: b.table::<dyn TraceStore>(
                Store::Traces,
                |c, t| Arc::new(DynamoTraces::new(c, t)),
                |db| db,
            ),
            history: b.table::<dyn UserHistory>(
                Store::History,
                |c, t| Arc::new(DynamoHistory::new(c, t)),
                |db| db,
            ),
            rollout: b.table::<dyn RolloutStore>(
                Store::Rollout,
                |c, t| Arc::new(DynamoRollout::new(c, t)),
                |db| db,
            ),
            ingest_state: b.table::<dyn IngestState>(
                Store::IngestState,
                |c, t| Arc::new(DynamoIngestState::new(c, t)),
                |db| db,
            ),
            trending: b.table::<dyn TrendingStore>(
                Store::Trending,
                |c, t| Arc::new(aws::trending::DynamoTrending::new(c, t)),
                |db| db,
            ),
            lake: b.objects(Store::Lake)?,
            reports: b.objects(Store::Reports)?,
            exposure: b
                .objects(Store::Exposure)?
                .map(|o| Arc::new(AdjustmentObjects::new(o)) as Arc<dyn AdjustmentStore>),
            batch: b.objects(Store::Batch)?,
            metrics: b.metrics(),
            emf: s
                .in_lambda
                .then(|| Arc::new(EmfStdout::new(&s.function_name))),
            sdk: b.sdk,
        })
    }

    fn get<T: ?Sized>(&self, store: Store, slot: &Option<Arc<T>>) -> Result<Arc<T>, ConfigError> {
        slot.clone().ok_or_else(|| ConfigError {
            var: store.var(),
            reason: format!("the {} role does not build the {}", self.role, store.what()),
        })
    }

    pub fn registry(&self) -> Result<Arc<dyn ModelStore>, ConfigError> {
        self.get(Store::Registry, &self.registry)
    }
    pub fn traces(&self) -> Result<Arc<dyn TraceStore>, ConfigError> {
        self.get(Store::Traces, &self.traces)
    }
    pub fn history(&self) -> Result<Arc<dyn UserHistory>, ConfigError> {
        self.get(Store::History, &self.history)
    }
    pub fn rollout(&self) -> Result<Arc<dyn RolloutStore>, ConfigError> {
        self.get(Store::Rollout, &self.rollout)
    }
    pub fn ingest_state(&self) -> Result<Arc<dyn IngestState>, ConfigError> {
        self.get(Store::IngestState, &self.ingest_state)
    }
    pub fn trending(&self) -> Result<Arc<dyn TrendingStore>, ConfigError> {
        self.get(Store::Trending, &self.trending)
    }
    pub fn lake(&self) -> Result<Arc<dyn EventLake>, ConfigError> {
        self.get(Store::Lake, &self.lake)
    }
    pub fn reports(&self) -> Result<Arc<dyn EventLake>, ConfigError> {
        self.get(Store::Reports, &self.reports)
    }
    pub fn metrics(&self) -> Result<Arc<dyn MetricsPublisher>, ConfigError> {
        self.get(Store::Metrics, &self.metrics)
    }
    pub fn exposure(&self) -> Result<Arc<dyn AdjustmentStore>, ConfigError> {
        self.get(Store::Exposure, &self.exposure)
    }
    pub fn batch(&self) -> Result<Arc<dyn EventLake>, ConfigError> {
        self.get(Store::Batch, &self.batch)
    }

    /// The batch recommendations' steps on these stores, ranking on every
    /// core the process has.
    pub fn batch_job(&self, s: &Settings) -> Result<crate::batch::job::BatchJob, ConfigError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(crate::batch::job::BatchJob::new(
            self.registry()?,
            self.rollout()?,
            self.history()?,
            self.exposure()?,
            self.batch()?,
            threads,
        )
        .with_default_policy(s.policy))
    }

    /// The store handles the HTTP routers share (the ones this role built).
    pub fn api_stores(&self) -> crate::http::ApiStores {
        crate::http::ApiStores {
            traces: self.traces.clone(),
            history: self.history.clone(),
            rollout: self.rollout.clone(),
            trending: self.trending.clone(),
            exposure: self.exposure.clone(),
            request_metrics: self.emf.clone().map(|e| e as Arc<dyn RequestMetricsSink>),
        }
    }

    /// The audit on these stores.
    pub fn audit_job(&self, s: &Settings) -> Result<AuditJob, ConfigError> {
        Ok(AuditJob {
            traces: self.traces()?,
            lake: self.lake()?,
            registry: self.registry()?,
            rollout: self.rollout()?,
            metrics: self.metrics()?,
            reports: self.reports()?,
            stage: s.stage.clone(),
            config: s.audit.clone(),
            catalog: None,
            exposure: self.exposure.clone(),
        })
    }

    /// The experiment analysis and automated canary on these stores.
    pub fn experiment_job(&self, s: &Settings) -> Result<ExperimentJob, ConfigError> {
        Ok(ExperimentJob {
            traces: self.traces()?,
            lake: self.lake()?,
            registry: self.registry()?,
            rollout: self.rollout()?,
            metrics: self.metrics()?,
            stage: s.stage.clone(),
            config: s.canary.clone(),
            window_minutes: s.canary_window_minutes,
            catalog: None,
        })
    }

    /// The ingest pipeline on these stores: metrics as EMF lines in Lambda
    /// (no API call on the ingest path), into the metrics publisher otherwise.
    pub fn ingestor(&self, s: &Settings) -> Result<Ingestor, ConfigError> {
        let metrics = match (&self.emf, &self.metrics) {
            (Some(emf), _) => MetricsSink::Publisher(emf.clone()),
            (None, Some(p)) => MetricsSink::Publisher(p.clone()),
            (None, None) => MetricsSink::None,
        };
        Ok(
            Ingestor::new(self.lake()?, self.ingest_state()?, self.history()?)
                .with_trending(self.trending()?)
                .with_config(s.ingest_config())
                .with_metrics(metrics),
        )
    }
}

/// The user-history store alone, for readers that need nothing else
/// (`movie-recs batch`): DynamoDB when `MOVIE_RECS_HISTORY_TABLE` is set,
/// else the SQLite file `MOVIE_RECS_DB` if it exists; `None` when neither
/// holds any history (no file is created).
pub async fn history_reader(s: &Settings) -> Result<Option<Arc<dyn UserHistory>>, ConfigError> {
    if let Some(table) = &s.history_table {
        let cfg = aws::load_sdk_config(None).await;
        let client = aws_sdk_dynamodb::Client::new(&CallBudget::BACKGROUND.apply(&cfg));
        return Ok(Some(Arc::new(aws::dynamo::DynamoHistory::new(
            client, table,
        ))));
    }
    Ok(match s.db.exists() {
        true => Some(open_sqlite(s)?),
        false => None,
    })
}

/// What building a role's stores shares: the settings, the AWS clients
/// (when a store is in AWS) and the SQLite file (when a table store is
/// left unset outside Lambda).
struct Builder<'a> {
    s: &'a Settings,
    wants: &'static [Store],
    sdk: Option<SdkConfig>,
    ddb: Option<aws_sdk_dynamodb::Client>,
    s3: Option<aws_sdk_s3::Client>,
    sqlite: Option<Arc<SqliteStore>>,
}

impl<'a> Builder<'a> {
    async fn new(role: Role, s: &'a Settings) -> Result<Self, ConfigError> {
        let wants = role.stores();
        let sdk = match wants.iter().any(|&st| is_aws(s, st)) {
            true => Some(aws::load_sdk_config(None).await),
            false => None,
        };
        // A request's own DynamoDB calls fail fast; everything else may wait.
        let ddb = sdk.as_ref().map(|cfg| {
            let budget = match role {
                Role::Recommend | Role::Trace | Role::Serve => CallBudget::INTERACTIVE,
                _ => CallBudget::BACKGROUND,
            };
            aws_sdk_dynamodb::Client::new(&budget.apply(cfg))
        });
        let table_stores = [
            Store::Traces,
            Store::History,
            Store::Rollout,
            Store::IngestState,
            Store::Trending,
        ];
        let local_tables = table_stores
            .iter()
            .any(|&st| wants.contains(&st) && value(s, st).is_none());
        Ok(Builder {
            s,
            wants,
            s3: sdk.as_ref().map(aws::s3_client),
            sdk,
            ddb,
            sqlite: match local_tables {
                true => Some(open_sqlite(s)?),
                false => None,
            },
        })
    }

    fn wanted(&self, st: Store) -> bool {
        self.wants.contains(&st)
    }

    /// A table store: DynamoDB when its table is named, else the SQLite file.
    fn table<T: ?Sized>(
        &self,
        st: Store,
        dynamo: impl FnOnce(aws_sdk_dynamodb::Client, &str) -> Arc<T>,
        local: impl FnOnce(Arc<SqliteStore>) -> Arc<T>,
    ) -> Option<Arc<T>> {
        if !self.wanted(st) {
            return None;
        }
        Some(match (value(self.s, st), &self.ddb) {
            (Some(t), Some(c)) => dynamo(c.clone(), t),
            _ => local(
                self.sqlite
                    .clone()
                    .expect("opened when a table store is local"),
            ),
        })
    }

    /// `s3://bucket/prefix` and its bucket and prefix, or the reason it is not one.
    fn s3_location(&self, st: Store, url: &str) -> Result<(String, String), ConfigError> {
        aws::parse_s3_url(url).map_err(|e| ConfigError {
            var: st.var(),
            reason: e.to_string(),
        })
    }

    /// An object store: S3 for an `s3://` URL, else a folder.
    fn objects(&self, st: Store) -> Result<Option<Arc<dyn EventLake>>, ConfigError> {
        let url = match value(self.s, st) {
            Some(url) if self.wanted(st) => url,
            _ => return Ok(None),
        };
        Ok(Some(match url.starts_with("s3://") {
            true => {
                let (bucket, prefix) = self.s3_location(st, url)?;
                let client = self.s3.clone().expect("sdk loaded for an s3:// store");
                Arc::new(aws::s3::S3Lake::new(client, &bucket, &prefix))
            }
            false => Arc::new(FolderLake::new(url)),
        }))
    }

    fn registry(&self) -> Result<Option<Arc<dyn ModelStore>>, ConfigError> {
        let s = self.s;
        Ok(match self.wanted(Store::Registry) {
            false => None,
            true if s.registry.starts_with("s3://") => {
                let (bucket, prefix) = self.s3_location(Store::Registry, &s.registry)?;
                Some(Arc::new(aws::s3::S3Registry::new(
                    self.s3.clone().expect("sdk loaded for an s3:// registry"),
                    &bucket,
                    &prefix,
                    &s.model_cache,
                )))
            }
            true => Some(Arc::new(FolderRegistry::new(&s.registry))),
        })
    }

    fn metrics(&self) -> Option<Arc<dyn MetricsPublisher>> {
        match self.wanted(Store::Metrics) {
            false => None,
            true if self.s.metrics == "cloudwatch" => {
                let cfg = self.sdk.as_ref().expect("sdk loaded for cloudwatch");
                Some(Arc::new(aws::cloudwatch::CloudWatchPublisher::new(
                    aws_sdk_cloudwatch::Client::new(cfg),
                )))
            }
            true => Some(Arc::new(FileMetrics::new(&self.s.metrics))),
        }
    }
}

fn open_sqlite(s: &Settings) -> Result<Arc<SqliteStore>, ConfigError> {
    let db_err = |reason: String| ConfigError {
        var: "MOVIE_RECS_DB",
        reason,
    };
    if let Some(dir) = s.db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| db_err(format!("creating {}: {e}", dir.display())))?;
    }
    SqliteStore::open(&s.db)
        .map(Arc::new)
        .map_err(|e| db_err(e.to_string()))
}

#[cfg(test)]
mod tests;
