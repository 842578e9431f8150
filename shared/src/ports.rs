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
    /// `request_id` until `expires_at` (epoch s).
    async fn put(
        &self,
        request_id: &str,
        trace: &serde_json::Value,
        expires_at: i64,
    ) -> Result<(), StoreError>;
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

/// The stored rollout state. `revision` counts writes and guards them: a
/// write names the revision it read and loses if another write came first.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RolloutState {
    pub strategy: String,
    pub served_version: String,
    pub revision: u64,
    pub updated_by: String,
    /// Epoch ms.
    pub updated_at: i64,
}

/// Which model version serves (the rollout issue extends this to strategies).
#[async_trait::async_trait]
pub trait RolloutStore: Send + Sync {
    /// The current state; `None` before the first write.
    async fn state(&self) -> Result<Option<RolloutState>, StoreError>;
    /// Makes `version` the served one if the stored revision is still
    /// `expected` (0: nothing stored yet); otherwise [`StoreError::Conflict`].
    async fn switch(
        &self,
        expected: u64,
        version: &str,
        updated_by: &str,
    ) -> Result<RolloutState, StoreError>;
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
}

/// The accepted ratings of one user within the velocity horizon: `(event
/// time ms, event key)` pairs, and the revision that guards writes.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RateWindow {
    pub entries: Vec<(i64, String)>,
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

/// Where the audit publishes its metrics (CloudWatch in AWS, a file locally).
#[async_trait::async_trait]
pub trait MetricsPublisher: Send + Sync {
    async fn publish(&self, namespace: &str, data: &[MetricDatum]) -> Result<(), StoreError>;
}
