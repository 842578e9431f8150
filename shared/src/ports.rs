//! Ports: one small trait per capability. Adapters in [`crate::adapters`]
//! implement them (a local folder now; S3 and DynamoDB with the AWS adapters).

use crate::artifact::{ArtifactError, Manifest};
use std::path::PathBuf;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("version {0:?} already exists in the registry; versions are immutable")]
    AlreadyExists(String),
    #[error("version {0:?} not found in the registry")]
    NotFound(String),
    #[error("invalid version name {0:?}: use 1-64 characters from A-Z a-z 0-9 . _ - not starting with '.'")]
    InvalidVersion(String),
    #[error("version {version}: {source}")]
    Artifact {
        version: String,
        source: ArtifactError,
    },
    #[error("registry I/O at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A model version whose files were checked against its manifest and can be
/// read from `dir`.
#[derive(Clone, Debug)]
pub struct VerifiedArtifact {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// One file to publish in a version.
pub struct ArtifactFile<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// The model registry: immutable, checksummed model versions.
pub trait ModelStore: Send + Sync {
    /// All published versions, oldest first (by creation time, then name).
    fn list_versions(&self) -> Result<Vec<String>, RegistryError>;
    /// The manifest of one version (not yet verified against the files).
    fn read_manifest(&self, version: &str) -> Result<Manifest, RegistryError>;
    /// Publishes a new version; refuses to overwrite an existing one.
    fn publish(&self, manifest: &Manifest, files: &[ArtifactFile<'_>])
        -> Result<(), RegistryError>;
    /// Makes a version available locally with every checksum verified.
    fn fetch(&self, version: &str) -> Result<VerifiedArtifact, RegistryError>;
}

/// Whether a version name is safe as a folder name and an S3 key segment.
pub fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && !v.starts_with('.')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Failure of a store other than the registry (traces, history, rollout, lake, metrics).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or answered with an error.
    #[error("{store}: {reason}")]
    Unavailable { store: &'static str, reason: String },
    /// A conditional write lost against a concurrent writer; re-read and retry.
    #[error("{store}: conflicting update: {reason}")]
    Conflict { store: &'static str, reason: String },
}

impl StoreError {
    pub fn unavailable(store: &'static str, reason: impl std::fmt::Display) -> Self {
        StoreError::Unavailable {
            store,
            reason: reason.to_string(),
        }
    }
}

/// Provenance records of recommendation responses, with expiry.
#[async_trait::async_trait]
pub trait TraceStore: Send + Sync {
    /// Stores `trace` (a JSON object with a `timestamp` in epoch ms) under
    /// `request_id` until `expires_at` (epoch s), unless an unexpired trace
    /// is stored under that id already: then [`StoreError::Conflict`] and the
    /// first trace stays (a client cannot overwrite another response's trace).
    async fn put(
        &self,
        request_id: &str,
        trace: &serde_json::Value,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    /// [`Self::put`] for many traces `(request_id, trace, expires_at)`, one
    /// result each, in order. Stores that can write a batch at once (one
    /// SQLite transaction) override it; the default writes one by one.
    async fn put_many(
        &self,
        traces: &[(String, serde_json::Value, i64)],
    ) -> Vec<Result<(), StoreError>> {
        let mut out = Vec::with_capacity(traces.len());
        for (id, t, exp) in traces {
            out.push(self.put(id, t, *exp).await);
        }
        out
    }
    /// The trace, unless absent or expired at `now` (epoch s).
    async fn get(
        &self,
        request_id: &str,
        now: i64,
    ) -> Result<Option<serde_json::Value>, StoreError>;
    /// Unexpired traces whose `timestamp` lies in `[from_ms, to_ms)`, oldest
    /// first: the audit's window read, served by an index, never a scan.
    async fn window(
        &self,
        from_ms: i64,
        to_ms: i64,
        now: i64,
    ) -> Result<Vec<serde_json::Value>, StoreError>;
    /// Cheap reachability check for health reports.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Movies users watched or rated since their model was trained.
#[async_trait::async_trait]
pub trait UserHistory: Send + Sync {
    /// The user's recent movies (most recent first where the store keeps order).
    async fn seen(&self, user_id: u64) -> Result<Vec<u64>, StoreError>;
    async fn append(&self, user_id: u64, movie_ids: &[u64], ts_ms: i64) -> Result<(), StoreError>;
    /// Appends many `(user_id, movie_id, ts_ms)` events (ingest); stores
    /// batch these where they can.
    async fn append_events(&self, events: &[(u64, u64, i64)]) -> Result<(), StoreError> {
        for &(u, m, ts) in events {
            self.append(u, &[m], ts).await?;
        }
        Ok(())
    }
}

/// Watch and rate counts per movie per hour (UTC epoch hours): ingest adds
/// to them, `GET /trending` sums a window of them.
#[async_trait::async_trait]
pub trait TrendingStore: Send + Sync {
    /// Adds each `(hour, movie_id, count)`; the rows may be dropped after
    /// `expires_at` (epoch seconds).
    async fn add(&self, counts: &[(i64, u64, u32)], expires_at: i64) -> Result<(), StoreError>;
    /// Every movie's count summed over the hours `from_hour..=to_hour`
    /// (movies with none left out).
    async fn window(&self, from_hour: i64, to_hour: i64) -> Result<Vec<(u64, u64)>, StoreError>;
}

/// The stored rollout state. `revision` counts writes and guards them: a
/// write names the revision it read and loses if another write came first.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RolloutState {
    pub strategy: crate::domain::strategy::Strategy,
    /// The primary version: every user's under `fixed`, the control otherwise.
    pub served_version: String,
    /// The candidate under `canary`, `ab_test` and `shadow`.
    #[serde(default)]
    pub candidate_version: Option<String>,
    /// Share of users (0 to 100) the candidate serves under `canary` and
    /// `ab_test`; under `shadow`, the share of users whose requests it also scores.
    #[serde(default)]
    pub percentage: f64,
    /// Names the experiment; a new one starts whenever the strategy or the
    /// versions change (not when only the percentage does, so a canary
    /// ramps up without reshuffling its users).
    #[serde(default)]
    pub experiment_id: Option<String>,
    /// The assignment hash's salt (the experiment id unless set).
    #[serde(default)]
    pub salt: Option<String>,
    /// The re-ranking policy (`name[:key=value]`) of the primary's lists;
    /// `None`: the service default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_policy: Option<String>,
    /// The same for the candidate's lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_policy: Option<String>,
    pub revision: u64,
    pub updated_by: String,
    /// Epoch ms.
    pub updated_at: i64,
}

/// What a rollout write sets; the store adds revision, caller and time.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RolloutSpec {
    pub strategy: crate::domain::strategy::Strategy,
    pub primary_version: String,
    pub candidate_version: Option<String>,
    pub percentage: f64,
    pub experiment_id: Option<String>,
    pub salt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_policy: Option<String>,
    /// Why the change was made (recorded in the change log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RolloutSpec {
    /// Every user on `version`.
    pub fn fixed(version: &str) -> Self {
        RolloutSpec {
            strategy: crate::domain::strategy::Strategy::Fixed,
            primary_version: version.into(),
            candidate_version: None,
            percentage: 0.0,
            experiment_id: None,
            salt: None,
            primary_policy: None,
            candidate_policy: None,
            reason: None,
        }
    }

    /// The same change with the primary's lists re-ranked by `policy`.
    pub fn with_primary_policy(mut self, policy: Option<String>) -> Self {
        self.primary_policy = policy;
        self
    }

    /// The same change, with the reason the change log records.
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The state this spec makes as revision `revision`.
    pub fn state(&self, revision: u64, updated_by: &str, updated_at: i64) -> RolloutState {
        RolloutState {
            strategy: self.strategy,
            served_version: self.primary_version.clone(),
            candidate_version: self.candidate_version.clone(),
            percentage: self.percentage,
            experiment_id: self.experiment_id.clone(),
            salt: self.salt.clone(),
            primary_policy: self.primary_policy.clone(),
            candidate_policy: self.candidate_policy.clone(),
            revision,
            updated_by: updated_by.into(),
            updated_at,
        }
    }
}

/// One entry of the rollout change log: who changed what, when, from what.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RolloutChange {
    pub state: RolloutState,
    pub previous: Option<RolloutState>,
    /// Why, when the writer said (the automated canary always does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Which model versions serve, and how users are split between them.
#[async_trait::async_trait]
pub trait RolloutStore: Send + Sync {
    /// The current state; `None` before the first write.
    async fn state(&self) -> Result<Option<RolloutState>, StoreError>;
    /// Writes `spec` as revision `expected + 1` if the stored revision is
    /// still `expected` (0: nothing stored yet), and appends the change to
    /// the change log; otherwise [`StoreError::Conflict`].
    async fn set(
        &self,
        expected: u64,
        spec: &RolloutSpec,
        updated_by: &str,
    ) -> Result<RolloutState, StoreError>;
    /// The latest `limit` changes, newest first.
    async fn changes(&self, limit: usize) -> Result<Vec<RolloutChange>, StoreError>;
    /// Makes `version` the only served one (strategy `fixed`).
    async fn switch(
        &self,
        expected: u64,
        version: &str,
        updated_by: &str,
    ) -> Result<RolloutState, StoreError> {
        self.set(expected, &RolloutSpec::fixed(version), updated_by)
            .await
    }
    async fn served_version(&self) -> Result<Option<String>, StoreError> {
        Ok(self.state().await?.map(|s| s.served_version))
    }
}

/// The raw event lake: immutable objects under keys like
/// `events/type=rate/dt=2026-11-28/hour=20/<batch>.parquet`.
#[async_trait::async_trait]
pub trait EventLake: Send + Sync {
    /// Writes one object; fails rather than losing it (the caller retries).
    /// Writing a key again replaces the object (retries rewrite the same keys).
    async fn put_object(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError>;
    /// Keys under `prefix` (relative to the lake root), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    async fn get_object(&self, key: &str) -> Result<Vec<u8>, StoreError>;
    /// The object, or `None` when there is none at `key` (told apart from
    /// a failing store). The default lists first; adapters answer in one call.
    async fn get_optional(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.list(key).await?.iter().any(|k| k == key) {
            true => Ok(Some(self.get_object(key).await?)),
            false => Ok(None),
        }
    }
}

/// Why adjustments could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AdjustmentsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Artifact(#[from] crate::artifact::ArtifactError),
}

/// Where the exposure controller's adjustments live: immutable versions
/// and a pointer to the newest ([`crate::artifact::adjustments`]). The
/// audit publishes, every recommend instance reads.
#[async_trait::async_trait]
pub trait AdjustmentStore: Send + Sync {
    /// The pointer to the newest adjustments; `None` before the first (a cold start).
    async fn latest(&self)
        -> Result<Option<crate::artifact::AdjustmentsPointer>, AdjustmentsError>;
    /// The adjustments `pointer` names, checksum-verified.
    async fn fetch(
        &self,
        pointer: &crate::artifact::AdjustmentsPointer,
    ) -> Result<crate::domain::exposure_control::Adjustments, AdjustmentsError>;
    /// Stores `adjustments` as a new version and points `latest` at it.
    async fn publish(
        &self,
        adjustments: &crate::domain::exposure_control::Adjustments,
    ) -> Result<crate::artifact::AdjustmentsPointer, AdjustmentsError>;
}

/// The accepted ratings of one user within the velocity horizon: `(event
/// time ms, event key)` pairs, and the revision that guards writes.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RateWindow {
    pub entries: Vec<(i64, String)>,
    /// `(arrival time ms, event key)` of the ratings admitted from live
    /// sources within the last span: the limit by arrival time.
    #[serde(default)]
    pub arrivals: Vec<(i64, String)>,
    pub revision: u64,
}

/// Ingest's own state: the idempotency keys of records already handled
/// (with expiry) and the per-user rating windows of the velocity limit.
#[async_trait::async_trait]
pub trait IngestState: Send + Sync {
    /// Which of `keys` were recorded and have not expired at `now` (epoch s).
    async fn seen_keys(
        &self,
        keys: &[String],
        now: i64,
    ) -> Result<std::collections::HashSet<String>, StoreError>;
    /// Records `keys` as handled until `expires_at` (epoch s).
    async fn remember_keys(&self, keys: &[String], expires_at: i64) -> Result<(), StoreError>;
    /// The user's window (empty, revision 0, if none).
    async fn rate_window(&self, user_id: u64) -> Result<RateWindow, StoreError>;
    /// Stores `entries` as revision `window.revision + 1` if the stored
    /// revision is still `window.revision`; otherwise [`StoreError::Conflict`].
    async fn save_rate_window(&self, user_id: u64, window: &RateWindow) -> Result<(), StoreError>;
}

/// One metric value for [`MetricsPublisher`].
#[derive(Clone, Debug, PartialEq)]
pub struct MetricDatum {
    pub name: String,
    pub value: f64,
    /// A CloudWatch unit name: `None`, `Count`, `Percent`, `Milliseconds`, ...
    pub unit: &'static str,
    pub dimensions: Vec<(String, String)>,
    /// Epoch ms.
    pub timestamp_ms: i64,
}

/// Whether `key` is a relative object key: no empty, `.` or `..` segment
/// (so no leading `/`), so a folder store cannot be led out of its root.
pub fn is_relative_key(key: &str) -> bool {
    !key.split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
}

/// The namespace of every movie-recs metric.
pub const METRICS_NAMESPACE: &str = "MovieRecs";

/// One answered request, as the per-request metrics record it.
#[derive(Clone, Copy, Debug)]
pub struct RequestSample<'a> {
    pub route: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    /// Whether the answer fell back (popularity for an unknown user).
    pub fallback: bool,
    pub request_id: &'a str,
}

/// Where every answered request's metrics go besides the process's own
/// counters: in Lambda, an EMF line on stdout that CloudWatch turns into
/// metrics, so the request path makes no API call.
pub trait RequestMetricsSink: Send + Sync {
    fn record(&self, sample: &RequestSample<'_>);
}

/// Where the audit, the canary and ingest publish their metrics (CloudWatch
/// or EMF log lines in AWS, a file locally).
#[async_trait::async_trait]
pub trait MetricsPublisher: Send + Sync {
    async fn publish(&self, namespace: &str, data: &[MetricDatum]) -> Result<(), StoreError>;
}
