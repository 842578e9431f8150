//! The model artifact: `model.onnx`, `history.bin`, `manifest.json` and the
//! sidecars (`user_inputs.bin`, `neighbours.bin`) in one
//! immutable registry version. This module is the single source of truth for
//! the manifest's fields, the sidecar format and checksum verification.

pub mod adjustments;
mod neighbours;

pub use adjustments::AdjustmentsPointer;
pub use neighbours::{Neighbours, NEIGHBOURS_FILE, NEIGHBOURS_PER_ITEM};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const MODEL_FILE: &str = "model.onnx";
pub const HISTORY_FILE: &str = "history.bin";
/// A history-input graph's per-user training inputs ([`UserInputs`]).
pub const USER_INPUTS_FILE: &str = "user_inputs.bin";
/// Bumped when the manifest changes incompatibly.
pub const MANIFEST_FORMAT: u32 = 1;
/// Name of the graph input (user index, int64 `[1]`) and output (`[n_items]` scores).
pub const ONNX_INPUT: &str = "user";
pub const ONNX_OUTPUT: &str = "score";
/// A history-input graph's inputs instead of [`ONNX_INPUT`]: the user's movie
/// indices (int64 `[n]`) and their recency weights (float `[n]`, any scale:
/// the graph L2-normalises them).
pub const ONNX_HISTORY_ITEMS: &str = "history_items";
pub const ONNX_HISTORY_WEIGHTS: &str = "history_weights";

/// NeuMF hyper-parameters; the trainer's flags map one to one onto these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HyperParams {
    /// Predictive factors of the GMF tower.
    pub factors: usize,
    /// MLP layer widths; the first is the concatenated user+item embedding width.
    pub layers: Vec<usize>,
    pub learning_rate: f64,
    pub epochs: usize,
    pub batch_size: usize,
    /// Sampled negatives per positive, redrawn every epoch.
    pub negatives: usize,
    /// L2 penalty on the embeddings of each batch.
    pub l2: f64,
    /// Stop after this many epochs without a better validation HR@10.
    pub patience: usize,
    pub seed: u64,
    /// After choosing the epoch count on validation, retrain on all training data
    /// (validation items included) for that many epochs.
    #[serde(default)]
    pub refit: bool,
    /// With `refit`: 0 retrains from a fresh start for the chosen epoch
    /// count; N > 0 continues the chosen weights for N epochs on all training
    /// data instead (a warm refit: the validation holdout is learnt at a
    /// fraction of a full refit's cost).
    #[serde(default)]
    pub refit_epochs: usize,
    /// Mitigation: negatives drawn ∝ (training interactions + 1)^this
    /// instead of uniformly (0); 0.75 as word2vec's unigram sampler. Popular
    /// movies are then seen as negatives more often, which counters
    /// popularity bias.
    #[serde(default)]
    pub popularity_negatives: f64,
    /// Mitigation: accounts whose first interaction is less than this many
    /// days before the data's last one count at `young_account_weight`
    /// (0: off). Fresh fake accounts are what promotion attacks use.
    #[serde(default)]
    pub young_account_days: u32,
    /// The weight of a young account's interactions (each epoch keeps each
    /// of their positives with this probability).
    #[serde(default = "one")]
    pub young_account_weight: f64,
    /// Training objective (older manifests: `bce`).
    #[serde(default)]
    pub loss: Loss,
    /// With a whole-catalogue loss, a user's positive counts 0.5^(k / this), k being
    /// how many of the user's movies came strictly later (0: all count 1).
    /// Recent tastes then weigh more in the user's factors; data without
    /// timestamps is unaffected.
    #[serde(default)]
    pub recency_half_life: f64,
    /// The user's input feature vector (older manifests: `id`).
    #[serde(default)]
    pub user_input: UserInput,
    /// With `user_input: history`, a movie in the user's input counts
    /// 0.5^(k / this), k being how many of the user's movies came strictly
    /// later (0: all count 1): the user's embedding leans to recent tastes.
    #[serde(default)]
    pub history_half_life: f64,
    /// With `user_input: history`, the share of a user's input movies
    /// dropped at random in each training step (denoising, as Mult-DAE); the
    /// model learns to predict a user's movies from the rest of them.
    #[serde(default)]
    pub input_dropout: f64,
    /// With `input_dropout`, the loss counts only the movies dropped from
    /// the input (a cloze objective: nothing is learnt from reproducing
    /// the input itself).
    #[serde(default)]
    pub dropped_targets: bool,
    /// With `loss: squared`, an interaction's squared error counts
    /// `1 + this` times an unobserved movie's (WMF's confidence α).
    #[serde(default)]
    pub positive_weight: f64,
}

/// What NeuMF's user embedding layer reads (NCF's input feature vector of
/// the user, He et al. 2017 §3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserInput {
    /// The one-hot user id: one free embedding row per user.
    #[default]
    Id,
    /// The user's weighted multi-hot history: one embedding row per movie,
    /// a user's embedding is the L2-normalised weighted sum over their
    /// movies. The export folds each user's training history into the same
    /// per-user tables, so serving is unchanged.
    History,
    /// Both: a user's embedding is their free row plus the history part
    /// (as SVD++ adds implicit feedback to a user factor).
    #[serde(rename = "id+history")]
    IdHistory,
}

impl std::str::FromStr for UserInput {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "id" => Ok(UserInput::Id),
            "history" => Ok(UserInput::History),
            "id+history" => Ok(UserInput::IdHistory),
            _ => Err(format!(
                "unknown user input {s:?}: use id, history or id+history"
            )),
        }
    }
}

impl std::fmt::Display for UserInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UserInput::Id => "id",
            UserInput::History => "history",
            UserInput::IdHistory => "id+history",
        })
    }
}

/// NeuMF's training objective.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Pointwise log loss on each positive and `negatives` sampled items
    /// (He et al. 2017); `batch_size` counts samples.
    #[default]
    Bce,
    /// Each user's interactions against the whole catalogue: the multinomial
    /// log-likelihood of a softmax over every item's score (as Mult-VAE's
    /// likelihood); `batch_size` counts users, `negatives` is unused.
    Softmax,
    /// Each user's interactions against the whole catalogue: the weighted
    /// squared error of every item's score against 1 (interacted) or 0, an
    /// interaction weighted `1 + positive_weight` (WMF, Hu et al. 2008; with
    /// a history input and input dropout, a denoising linear autoencoder's
    /// loss); `batch_size` counts users.
    Squared,
}

impl Loss {
    /// Whether the loss scores each user against the whole catalogue (no
    /// sampled negatives).
    pub fn whole_catalogue(self) -> bool {
        self != Loss::Bce
    }
}

impl std::str::FromStr for Loss {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bce" => Ok(Loss::Bce),
            "softmax" => Ok(Loss::Softmax),
            "squared" => Ok(Loss::Squared),
            _ => Err(format!("unknown loss {s:?}: use bce, softmax or squared")),
        }
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Loss::Bce => "bce",
            Loss::Softmax => "softmax",
            Loss::Squared => "squared",
        })
    }
}

fn one() -> f64 {
    1.0
}

impl Default for HyperParams {
    fn default() -> Self {
        HyperParams {
            factors: 32,
            layers: vec![64, 32, 16],
            learning_rate: 0.001,
            epochs: 20,
            batch_size: 256,
            negatives: 4,
            l2: 0.0,
            patience: 3,
            seed: 42,
            refit: true,
            refit_epochs: 0,
            popularity_negatives: 0.0,
            young_account_days: 0,
            young_account_weight: 1.0,
            loss: Loss::Bce,
            recency_half_life: 0.0,
            user_input: UserInput::Id,
            history_half_life: 0.0,
            input_dropout: 0.0,
            dropped_targets: false,
            positive_weight: 0.0,
        }
    }
}

/// Where the training data came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub source: String,
    pub format: String,
    /// sha256 over the training data (or the generator's parameters).
    pub snapshot_id: String,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    /// Mitigation: users whose events were left out because the audit or
    /// ingest flagged them (training from a lake).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_users: Vec<u64>,
}

/// Size and sha256 of one artifact file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub sha256: String,
    pub bytes: u64,
}

/// A catalogue entry: external id, display data and training popularity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemEntry {
    pub movie_id: u64,
    pub title: String,
    pub genres: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<u16>,
    /// Training interactions with this movie.
    pub popularity: u32,
}

/// Validation results behind model selection and the quality gate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub protocol: String,
    pub users: usize,
    #[serde(rename = "hr@10")]
    pub hr10: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg10: f64,
    pub popularity: ValidationBaseline,
    pub best_epoch: usize,
    pub epochs_run: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationBaseline {
    #[serde(rename = "hr@10")]
    pub hr10: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg10: f64,
}

/// Evaluation metrics stored with the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub validation: Validation,
    /// Test-set report (`movie-recs eval --json` shape), when the data has a test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<serde_json::Value>,
    /// Seconds per training epoch, averaged.
    pub seconds_per_epoch: f64,
}

/// The quality gate's verdict at publish time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualityGate {
    pub rule: String,
    pub passed: bool,
    /// True when `--force` published a model that failed the gate.
    pub forced: bool,
}

/// Everything a consumer needs to know about a model version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    pub version: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub model_type: String,
    pub hyperparameters: HyperParams,
    pub git_sha: String,
    pub data: DataInfo,
    /// sha256 of every artifact file except the manifest itself.
    pub files: BTreeMap<String, FileEntry>,
    /// Model user index → external user id.
    pub users: Vec<u64>,
    /// Model item index → catalogue entry.
    pub items: Vec<ItemEntry>,
    pub metrics: Metrics,
    pub quality_gate: QualityGate,
    pub onnx: OnnxInfo,
    /// How the hyper-parameters not given as flags were chosen (absent for
    /// runs that named every one, and in older manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<DefaultsChoice>,
}

/// The data-chosen defaults of one training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DefaultsChoice {
    /// The preset (`leave-one-out`, `full-ranking`).
    pub preset: String,
    /// Why the data chose it.
    pub reason: String,
    /// Flags given on the command line, which won over the preset.
    pub overridden: Vec<String>,
}

/// How to call the exported graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnnxInfo {
    pub opset: i64,
    /// The graph's input: [`ONNX_INPUT`], or [`ONNX_HISTORY_ITEMS`] (with
    /// [`ONNX_HISTORY_WEIGHTS`]) when `user_vector` is `history`.
    pub input: String,
    pub output: String,
    /// Where the user vector comes from (older manifests: `embedding`).
    #[serde(default)]
    pub user_vector: UserVector,
}

/// How the exported graph gets a user's vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserVector {
    /// A row per training user, looked up by user index: users unknown to
    /// the model cannot be scored, and events after training change nothing.
    #[default]
    Embedding,
    /// Computed per request from the user's movies and recency weights
    /// (fold-in): training history ([`USER_INPUTS_FILE`]) plus every event
    /// recorded since, so any user with one event can be scored.
    History,
}

impl UserVector {
    pub fn as_str(self) -> &'static str {
        match self {
            UserVector::Embedding => "embedding",
            UserVector::History => "history",
        }
    }
}

/// Artifact integrity errors; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{file}: checksum mismatch (manifest says sha256 {expected}, file has {actual}); refusing a tampered or corrupt artifact")]
    ChecksumMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file}: missing from the artifact")]
    Missing { file: String },
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {reason}")]
    Invalid { file: String, reason: String },
}

/// Hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The manifest entry for a byte slice.
pub fn file_entry(bytes: &[u8]) -> FileEntry {
    FileEntry {
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
    }
}

impl Manifest {
    /// Parses `manifest.json` bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ArtifactError> {
        serde_json::from_slice(bytes).map_err(|e| ArtifactError::Invalid {
            file: MANIFEST_FILE.into(),
            reason: e.to_string(),
        })
    }

    /// Checks every file listed in the manifest against its sha256 in `dir`.
    pub fn verify_dir(&self, dir: &Path) -> Result<(), ArtifactError> {
        for (name, entry) in &self.files {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ArtifactError::Missing { file: name.clone() },
                _ => ArtifactError::Io {
                    file: name.clone(),
                    source: e,
                },
            })?;
            let actual = sha256_hex(&bytes);
            if actual != entry.sha256 {
                return Err(ArtifactError::ChecksumMismatch {
                    file: name.clone(),
                    expected: entry.sha256.clone(),
                    actual,
                });
            }
        }
        let inputs = (self.onnx.user_vector == UserVector::History).then_some(USER_INPUTS_FILE);
        for required in [MODEL_FILE, HISTORY_FILE].into_iter().chain(inputs) {
            if !self.files.contains_key(required) {
                return Err(ArtifactError::Missing {
                    file: required.into(),
                });
            }
        }
        Ok(())
    }

    /// sha256 of the ONNX model file.
    pub fn model_sha256(&self) -> Option<&str> {
        self.files.get(MODEL_FILE).map(|e| e.sha256.as_str())
    }
}

const HISTORY_MAGIC: &[u8; 8] = b"MRHIST1\0";

/// Encodes per-user training histories (model indices) as the compact sidecar:
/// magic, u32 user count, u32 entry count, u32 offsets (users + 1), u32 items; all LE.
pub fn encode_history(histories: &[Vec<u32>]) -> Vec<u8> {
    let total: usize = histories.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(16 + 4 * (histories.len() + 1 + total));
    out.extend_from_slice(HISTORY_MAGIC);
    out.extend_from_slice(&(histories.len() as u32).to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    let mut off = 0u32;
    out.extend_from_slice(&off.to_le_bytes());
    for h in histories {
        off += h.len() as u32;
        out.extend_from_slice(&off.to_le_bytes());
    }
    for h in histories {
        for i in h {
            out.extend_from_slice(&i.to_le_bytes());
        }
    }
    out
}

/// Per-user training histories, stored as one flat CSR array for cheap lookups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    offsets: Vec<u32>,
    items: Vec<u32>,
}

impl History {
    /// Decodes the sidecar written by [`encode_history`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let bad = |reason: &str| ArtifactError::Invalid {
            file: HISTORY_FILE.into(),
            reason: reason.into(),
        };
        if bytes.len() < 16 || &bytes[..8] != HISTORY_MAGIC {
            return Err(bad("not a movie-recs history file"));
        }
        let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let (users, total) = (word(8) as usize, word(12) as usize);
        if bytes.len() != 16 + 4 * (users + 1 + total) {
            return Err(bad("length does not match its header"));
        }
        let offsets: Vec<u32> = (0..=users).map(|i| word(16 + 4 * i)).collect();
        let items: Vec<u32> = (0..total).map(|i| word(16 + 4 * (users + 1 + i))).collect();
        if offsets.windows(2).any(|w| w[0] > w[1]) || offsets[users] as usize != total {
            return Err(bad("offsets are inconsistent"));
        }
        Ok(History { offsets, items })
    }

    /// Number of users.
    pub fn users(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The user's training items (sorted), or empty for an unknown index.
    pub fn items(&self, user: u32) -> &[u32] {
        let u = user as usize;
        if u + 1 >= self.offsets.len() {
            return &[];
        }
        &self.items[self.offsets[u] as usize..self.offsets[u + 1] as usize]
    }
}

const USER_INPUTS_MAGIC: &[u8; 8] = b"MRINPT1\0";

/// A history-input model's per-user training inputs: each user's movies
/// (model indices) with the recency weight training gave them, so serving
/// computes exactly the user vector the trainer did and extends it with
/// newer events. One flat CSR array, like [`History`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserInputs {
    offsets: Vec<u32>,
    items: Vec<u32>,
    weights: Vec<f32>,
}

impl UserInputs {
    /// From one `(movie, weight)` list per user, movies ascending.
    pub fn new(per_user: &[Vec<(u32, f32)>]) -> Self {
        let mut out = UserInputs {
            offsets: vec![0],
            ..Default::default()
        };
        for u in per_user {
            out.items.extend(u.iter().map(|&(i, _)| i));
            out.weights.extend(u.iter().map(|&(_, w)| w));
            out.offsets.push(out.items.len() as u32);
        }
        out
    }

    /// The sidecar bytes: magic, users, total, offsets, items, weights (LE).
    pub fn encode(&self) -> Vec<u8> {
        let total = self.items.len();
        let mut out = Vec::with_capacity(16 + 4 * (self.offsets.len() + 2 * total));
        out.extend_from_slice(USER_INPUTS_MAGIC);
        out.extend_from_slice(&(self.users() as u32).to_le_bytes());
        out.extend_from_slice(&(total as u32).to_le_bytes());
        for o in &self.offsets {
            out.extend_from_slice(&o.to_le_bytes());
        }
        for i in &self.items {
            out.extend_from_slice(&i.to_le_bytes());
        }
        for w in &self.weights {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Decodes [`Self::encode`]'s bytes, checking every movie index is below `n_items`.
    pub fn decode(bytes: &[u8], n_items: usize) -> Result<Self, ArtifactError> {
        let bad = |reason: &str| ArtifactError::Invalid {
            file: USER_INPUTS_FILE.into(),
            reason: reason.into(),
        };
        if bytes.len() < 16 || &bytes[..8] != USER_INPUTS_MAGIC {
            return Err(bad("not a movie-recs user inputs file"));
        }
        let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let (users, total) = (word(8) as usize, word(12) as usize);
        if bytes.len() as u64 != 16 + 4 * (users as u64 + 1 + 2 * total as u64) {
            return Err(bad("length does not match its header"));
        }
        let offsets: Vec<u32> = (0..=users).map(|i| word(16 + 4 * i)).collect();
        let base = 16 + 4 * (users + 1);
        let items: Vec<u32> = (0..total).map(|i| word(base + 4 * i)).collect();
        let weights: Vec<f32> = (0..total)
            .map(|i| f32::from_bits(word(base + 4 * (total + i))))
            .collect();
        if offsets[0] != 0
            || offsets.windows(2).any(|w| w[0] > w[1])
            || offsets[users] as usize != total
        {
            return Err(bad("offsets are inconsistent"));
        }
        if items.iter().any(|&i| i as usize >= n_items) {
            return Err(bad("a movie index is outside the catalogue"));
        }
        let ascending = offsets.windows(2).all(|o| {
            items[o[0] as usize..o[1] as usize]
                .windows(2)
                .all(|p| p[0] < p[1])
        });
        if !ascending {
            return Err(bad("a user's movies are not in ascending order"));
        }
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(bad("a weight is negative or not finite"));
        }
        Ok(UserInputs {
            offsets,
            items,
            weights,
        })
    }

    pub fn users(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The user's training movies and their weights (empty for an unknown index).
    pub fn get(&self, user: u32) -> (&[u32], &[f32]) {
        let u = user as usize;
        if u + 1 >= self.offsets.len() {
            return (&[], &[]);
        }
        let r = self.offsets[u] as usize..self.offsets[u + 1] as usize;
        (&self.items[r.clone()], &self.weights[r])
    }
}

#[cfg(test)]
mod tests;
