//! Batch recommendations on a distributed engine: the three steps of the
//! Step Functions state machine in template.yaml, each an invocation of the
//! batch function ([`BatchJob::handle`]).
//!
//! 1. `plan`: resolves the model version (the one the rollout serves, else
//!    the newest) and the users (`"all"`: the version's training users, or
//!    the key of a user list in the batch store), and splits them into
//!    shards of index ranges ([`super::plan_shards`]).
//! 2. `shard` (a Distributed Map runs one per shard, in parallel): ranks
//!    the shard's users exactly as `GET /recommend` would (training history
//!    and the user-history store masked, filter, policy, the controller's
//!    adjustments for `exposure`) and writes one object,
//!    `<run>/part-00000.parquet`. A retried shard rewrites the same key.
//! 3. `finish`: writes `<run>/manifest.json` with the counts, refusing a
//!    run whose shards did not write one row per user.
//!
//! What travels between the steps is small (the job's parameters and index
//! ranges, never user ids), so a run of millions of users stays within
//! Step Functions' 256 KB state payload.

use super::{plan_shards, read_seen, recommend_all, BatchManifest, Format, ShardOutput};
use crate::domain::filter::Filter;
use crate::domain::rerank::{Policy, DEFAULT_POLICY};
use crate::ports::{AdjustmentStore, EventLake, ModelStore, RolloutStore, UserHistory};
use crate::scoring::ServingModel;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What an execution is started with (the state machine's input).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    /// The version to rank with; default: the one the rollout serves.
    #[serde(default)]
    pub model_version: Option<String>,
    /// `"all"` (the version's training users) or the key of a user list
    /// (one id a line) in the batch store.
    #[serde(default = "all")]
    pub users: String,
    #[serde(default = "default_k")]
    pub k: usize,
    /// `name[:key=value,...]`; default: the service's (`MOVIE_RECS_POLICY`).
    #[serde(default)]
    pub policy: Option<String>,
    /// As `GET /recommend`'s parameters: `genre`, `exclude_genre`,
    /// `year_from`, `year_to`, `exclude`.
    #[serde(default)]
    pub filter: HashMap<String, String>,
    #[serde(default)]
    pub format: Format,
    /// Users per shard (one object and one function invocation each).
    #[serde(default = "default_shard_users")]
    pub shard_users: usize,
    /// Shards ranked at once (the Distributed Map's concurrency; the
    /// function's reserved concurrency bounds all runs together).
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
}

fn all() -> String {
    "all".into()
}
fn default_k() -> usize {
    20
}
fn default_shard_users() -> usize {
    DEFAULT_SHARD_USERS_AWS
}
fn default_max_concurrency() -> usize {
    20
}

/// Users per shard in AWS unless told otherwise: a shard's ranking and
/// history reads finish well inside the function's 15-minute limit.
pub const DEFAULT_SHARD_USERS_AWS: usize = 5_000;

/// The resolved parameters every shard ranks with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// The execution's name: the prefix of everything it writes.
    pub run: String,
    pub model_version: String,
    pub users: String,
    pub k: usize,
    /// The policy's spec, resolved.
    pub policy: String,
    pub filter: HashMap<String, String>,
    pub format: Format,
    /// The controller's adjustments `exposure` ranks with (resolved once, so
    /// every shard ranks alike).
    pub adjustments: Option<String>,
}

/// One shard: users `from..to` of the job's user list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    pub index: usize,
    pub from: usize,
    pub to: usize,
}

/// The plan step's answer: the state machine maps over `shards`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub job: Job,
    pub users_total: usize,
    pub max_concurrency: usize,
    pub shards: Vec<Shard>,
}

/// What the batch function is invoked with, by step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum BatchRequest {
    Plan {
        /// The execution's name (`$$.Execution.Name`).
        run: String,
        input: BatchInput,
    },
    Shard {
        job: Job,
        shard: Shard,
    },
    Finish {
        job: Job,
        users_total: usize,
        shards: Vec<ShardOutput>,
    },
}

/// Why a step failed (the state machine retries, then fails the execution
/// with this message).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("invalid batch input: {0}")]
    Input(String),
    #[error(transparent)]
    Store(#[from] crate::ports::StoreError),
    #[error(transparent)]
    Registry(#[from] crate::ports::RegistryError),
    #[error(transparent)]
    Load(#[from] crate::scoring::LoadError),
    #[error(transparent)]
    Scoring(#[from] crate::scoring::ScoringError),
    #[error(transparent)]
    Adjustments(#[from] crate::ports::AdjustmentsError),
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("the shards wrote {rows} rows for {users} users")]
    Incomplete { rows: usize, users: usize },
}

/// The batch function's ports, and the model it loaded last (a warm
/// function ranks the next shard without loading again).
pub struct BatchJob {
    pub registry: Arc<dyn ModelStore>,
    pub rollout: Arc<dyn RolloutStore>,
    pub history: Arc<dyn UserHistory>,
    pub exposure: Arc<dyn AdjustmentStore>,
    /// Where runs are written (and user lists are read from).
    pub out: Arc<dyn EventLake>,
    /// Threads a shard ranks on.
    pub threads: usize,
    /// The policy of a run that names none (the service's, `MOVIE_RECS_POLICY`).
    pub default_policy: Policy,
    loaded: Mutex<Option<Arc<ServingModel>>>,
}

/// The key of `name` under run `run`.
fn run_key(run: &str, name: &str) -> String {
    format!("{run}/{name}")
}

impl BatchJob {
    pub fn new(
        registry: Arc<dyn ModelStore>,
        rollout: Arc<dyn RolloutStore>,
        history: Arc<dyn UserHistory>,
        exposure: Arc<dyn AdjustmentStore>,
        out: Arc<dyn EventLake>,
        threads: usize,
    ) -> Self {
        BatchJob {
            registry,
            rollout,
            history,
            exposure,
            out,
            threads: threads.max(1),
            default_policy: DEFAULT_POLICY,
            loaded: Mutex::new(None),
        }
    }

    /// The same job with `policy` for runs that name none.
    pub fn with_default_policy(mut self, policy: Policy) -> Self {
        self.default_policy = policy;
        self
    }

    /// Runs one step; the answer is what the state machine passes on.
    pub async fn handle(&self, req: BatchRequest) -> Result<serde_json::Value, BatchError> {
        Ok(match req {
            BatchRequest::Plan { run, input } => {
                serde_json::to_value(self.plan(&run, input).await?)
            }
            BatchRequest::Shard { job, shard } => {
                serde_json::to_value(self.shard(&job, shard).await?)
            }
            BatchRequest::Finish {
                job,
                users_total,
                shards,
            } => serde_json::to_value(self.finish(&job, users_total, shards).await?),
        }
        .expect("batch answers serialise"))
    }

    /// The model of `version`, verified and loaded once per warm function.
    async fn model(&self, version: &str) -> Result<Arc<ServingModel>, BatchError> {
        if let Some(m) = self.loaded.lock().expect("lock").as_ref() {
            if m.version() == version {
                return Ok(m.clone());
            }
        }
        let (reg, v) = (self.registry.clone(), version.to_string());
        let model = tokio::task::spawn_blocking(move || -> Result<ServingModel, BatchError> {
            let art = reg.fetch(&v)?;
            Ok(ServingModel::load(&art)?)
        })
        .await
        .map_err(|e| BatchError::Input(e.to_string()))??;
        let model = Arc::new(model);
        *self.loaded.lock().expect("lock") = Some(model.clone());
        Ok(model)
    }

    /// The job's users, in order.
    async fn users(&self, job: &Job, model: &ServingModel) -> Result<Vec<u64>, BatchError> {
        if job.users == "all" {
            return Ok(model.manifest.users.clone());
        }
        let bytes = self.out.get_object(&job.users).await?;
        let text = String::from_utf8(bytes)
            .map_err(|_| BatchError::Input(format!("users {}: not UTF-8 text", job.users)))?;
        super::parse_users(&text)
            .map_err(|e| BatchError::Input(format!("users {}, {e}", job.users)))
    }

    /// Step 1: resolves the job and splits its users into shards.
    pub async fn plan(&self, run: &str, input: BatchInput) -> Result<Plan, BatchError> {
        let bad = |m: String| Err(BatchError::Input(m));
        // Step Functions execution names: 1-80 of A-Z a-z 0-9 _ - (the run
        // is a key prefix, so nothing else is admitted).
        let name_ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if run.is_empty() || run.len() > 80 || !run.chars().all(name_ok) {
            return bad(format!(
                "run {run:?}: use 1-80 characters from A-Z a-z 0-9 _ -"
            ));
        }
        if input.users != "all" && !crate::ports::is_relative_key(&input.users) {
            return bad(format!(
                "users {:?}: \"all\" or the key of a list in the batch store (no empty, . or .. segments)",
                input.users
            ));
        }
        if !(1..=crate::http::K_MAX).contains(&input.k) {
            return bad(format!(
                "k must be from 1 to {}, got {}",
                crate::http::K_MAX,
                input.k
            ));
        }
        if input.shard_users == 0 || input.shard_users > 100_000 {
            return bad(format!(
                "shard_users must be from 1 to 100000, got {}",
                input.shard_users
            ));
        }
        if !(1..=1000).contains(&input.max_concurrency) {
            return bad(format!(
                "max_concurrency must be from 1 to 1000, got {}",
                input.max_concurrency
            ));
        }
        let policy = match &input.policy {
            None => self.default_policy.for_k(input.k),
            Some(p) => Policy::from_spec(p, input.k)
                .map_err(|e| BatchError::Input(format!("policy: {e}")))?,
        };
        let version = match input.model_version.clone() {
            Some(v) => v,
            None => match self.rollout.served_version().await? {
                Some(v) => v,
                None => {
                    let reg = self.registry.clone();
                    tokio::task::spawn_blocking(move || reg.list_versions())
                        .await
                        .map_err(|e| BatchError::Input(e.to_string()))??
                        .pop()
                        .ok_or_else(|| {
                            BatchError::Input("the registry has no model version".into())
                        })?
                }
            },
        };
        let model = self.model(&version).await?;
        Filter::parse(&input.filter, model.genres())
            .map_err(|e| BatchError::Input(format!("filter.{e}")))?;
        let adjustments = match policy {
            Policy::Exposure { .. } => self.exposure.latest().await?.map(|p| p.name),
            _ => None,
        };
        let job = Job {
            run: run.to_string(),
            model_version: version,
            users: input.users,
            k: input.k,
            policy: policy.spec(),
            filter: input.filter,
            format: input.format,
            adjustments,
        };
        let users = self.users(&job, &model).await?;
        let shards = plan_shards(users.len(), input.shard_users)
            .into_iter()
            .enumerate()
            .map(|(index, r)| Shard {
                index,
                from: r.start,
                to: r.end,
            })
            .collect();
        Ok(Plan {
            job,
            users_total: users.len(),
            max_concurrency: input.max_concurrency,
            shards,
        })
    }

    /// Step 2: ranks one shard's users and writes its object.
    pub async fn shard(&self, job: &Job, shard: Shard) -> Result<ShardOutput, BatchError> {
        let model = self.model(&job.model_version).await?;
        let users = self.users(job, &model).await?;
        let ids = users.get(shard.from..shard.to).ok_or_else(|| {
            BatchError::Input(format!(
                "shard {} ({}..{}) is outside the {} users",
                shard.index,
                shard.from,
                shard.to,
                users.len()
            ))
        })?;
        let policy =
            Policy::from_spec(&job.policy, job.k).map_err(|e| BatchError::Input(e.to_string()))?;
        let filter = Filter::parse(&job.filter, model.genres())
            .map_err(|e| BatchError::Input(format!("filter.{e}")))?;
        // The adjustments the plan named, so every shard ranks alike.
        let net = match &job.adjustments {
            None => Vec::new(),
            Some(name) => {
                let p = self
                    .exposure
                    .latest()
                    .await?
                    .filter(|p| &p.name == name)
                    .ok_or_else(|| {
                        BatchError::Input(format!(
                            "adjustments {name} are no longer the newest; start the run again"
                        ))
                    })?;
                model.adjustment_vector(&self.exposure.fetch(&p).await?)
            }
        };
        let with_seen = read_seen(Some(&self.history), ids).await?;
        let (threads, k, m) = (self.threads, job.k, model.clone());
        let rows = tokio::task::spawn_blocking(move || {
            recommend_all(&m, &with_seen, k, policy, &filter, &net, threads, &|_| {})
        })
        .await
        .map_err(|e| BatchError::Input(e.to_string()))??;
        let bytes = match job.format {
            Format::Parquet => super::to_parquet(&rows)?,
            Format::Jsonl => super::to_jsonl(&rows),
        };
        let key = super::shard_key(&job.run, shard.index, job.format);
        let len = bytes.len();
        self.out.put_object(&key, bytes).await?;
        Ok(ShardOutput {
            key,
            rows: rows.len(),
            bytes: len,
        })
    }

    /// Step 3: the manifest of the run, once every user has a row.
    pub async fn finish(
        &self,
        job: &Job,
        users_total: usize,
        mut shards: Vec<ShardOutput>,
    ) -> Result<BatchManifest, BatchError> {
        shards.sort_by(|a, b| a.key.cmp(&b.key));
        let rows: usize = shards.iter().map(|s| s.rows).sum();
        if rows != users_total {
            return Err(BatchError::Incomplete {
                rows,
                users: users_total,
            });
        }
        let manifest = BatchManifest {
            model_version: job.model_version.clone(),
            policy: job.policy.clone(),
            adjustments: job.adjustments.clone(),
            k: job.k,
            filter: serde_json::json!(job.filter),
            format: job.format,
            users: users_total,
            rows,
            shards,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            seconds: None,
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        self.out
            .put_object(&run_key(&job.run, "manifest.json"), json)
            .await?;
        Ok(manifest)
    }
}
