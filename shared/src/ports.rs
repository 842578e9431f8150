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

/// Failure of a store other than the registry (traces, history, rollout).
#[derive(Debug, thiserror::Error)]
#[error("{store}: {reason}")]
pub struct StoreError {
    pub store: &'static str,
    pub reason: String,
}

/// Provenance records of recommendation responses, with expiry.
pub trait TraceStore: Send + Sync {
    /// Stores `trace` (a JSON object) under `request_id` until `expires_at` (epoch s).
    fn put(
        &self,
        request_id: &str,
        trace: &serde_json::Value,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    /// The trace, unless absent or expired at `now` (epoch s).
    fn get(&self, request_id: &str, now: i64) -> Result<Option<serde_json::Value>, StoreError>;
    /// Cheap reachability check for health reports.
    fn ping(&self) -> Result<(), StoreError>;
}

/// Movies users watched or rated since their model was trained.
pub trait UserHistory: Send + Sync {
    fn seen(&self, user_id: u64) -> Result<Vec<u64>, StoreError>;
    fn append(&self, user_id: u64, movie_ids: &[u64], ts_ms: i64) -> Result<(), StoreError>;
}

/// Which model version serves (the rollout issue extends this to strategies).
pub trait RolloutStore: Send + Sync {
    fn served_version(&self) -> Result<Option<String>, StoreError>;
    fn set_served_version(&self, version: &str, updated_by: &str) -> Result<(), StoreError>;
}
