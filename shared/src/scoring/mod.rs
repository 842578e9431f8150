//! ONNX Runtime scoring. ONNX Runtime is loaded dynamically (`ort` with
//! `load-dynamic`): `ORT_DYLIB_PATH` wins; otherwise the library that `make setup`
//! puts in the repo's `.tools/onnxruntime/` (searched upwards from the executable
//! and the working directory), then the Lambda layer's `/opt/lib`.

pub mod cache;
mod serving;

pub use serving::{LoadError, Ranked, ServingModel, SimilarList};

use crate::artifact::{UserInputs, UserVector, ONNX_HISTORY_ITEMS, ONNX_HISTORY_WEIGHTS};
use crate::artifact::{ONNX_INPUT, ONNX_OUTPUT};
use crate::domain::eval::{ScoreError, Scorer};
use ort::session::Session;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// File name of the ONNX Runtime shared library this build expects.
pub const ORT_LIBRARY: &str = "libonnxruntime.so.1.31.1";

#[derive(Clone, Debug, thiserror::Error)]
pub enum ScoringError {
    #[error(
        "ONNX Runtime library not found: set ORT_DYLIB_PATH or run `make setup` (looked in: {0})"
    )]
    RuntimeNotFound(String),
    #[error("ONNX Runtime could not be initialised from {path}: {reason}")]
    RuntimeInit { path: PathBuf, reason: String },
    #[error("{path}: cannot load ONNX model: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("scoring failed: {0}")]
    Run(String),
    #[error("user index {user} is outside the model (it has {users} users)")]
    UnknownUser { user: u32, users: usize },
    #[error("this graph reads a user's movies, not a user index: load it with the user inputs")]
    NeedsUserInputs,
    #[error("this graph reads a user index, not a user's movies")]
    NotHistoryInput,
    #[error("a user history must name at least one movie, each inside the catalogue")]
    BadHistory,
}

static RUNTIME: OnceLock<Result<(ort::environment::Environment, PathBuf), ScoringError>> =
    OnceLock::new();

fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    for r in roots {
        let p = r.join(".tools/onnxruntime").join(ORT_LIBRARY);
        // The executable's and the working directory's ancestors often overlap.
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out.push(PathBuf::from("/opt/lib").join(ORT_LIBRARY));
    out.push(PathBuf::from("/opt/lib/libonnxruntime.so"));
    out
}

/// Finds the ONNX Runtime library: `ORT_DYLIB_PATH`, then the known locations.
pub fn find_runtime() -> Result<PathBuf, ScoringError> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Ok(PathBuf::from(p));
    }
    let c = candidates();
    c.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let shown: Vec<String> = c.iter().map(|p| p.display().to_string()).collect();
        ScoringError::RuntimeNotFound(shown.join(", "))
    })
}

/// Loads ONNX Runtime once per process; later calls return the same result.
pub fn init_runtime() -> Result<&'static Path, ScoringError> {
    let r = RUNTIME.get_or_init(|| {
        let path = find_runtime()?;
        let init_err = |e: &dyn std::fmt::Display| ScoringError::RuntimeInit {
            path: path.clone(),
            reason: e.to_string(),
        };
        let env = ort::init_from(&path)
            .map_err(|e| init_err(&e))?
            .with_name("movie-recs")
            .build()
            .map_err(|e| init_err(&e))?;
        Ok((env, path.clone()))
    });
    match r {
        Ok((_, p)) => Ok(p.as_path()),
        Err(e) => Err(e.clone()),
    }
}

fn env() -> Result<&'static ort::environment::Environment, ScoringError> {
    init_runtime()?;
    Ok(&RUNTIME
        .get()
        .and_then(|r| r.as_ref().ok())
        .expect("initialised above")
        .0)
}

/// ONNX Runtime sessions for one model version: scores the whole catalogue for
/// one user per call. Created once per version and shared by all requests; one
/// session per core (`Session::run` needs exclusive access), so concurrent
/// requests score in parallel instead of queueing on one lock.
pub struct OnnxModel {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    n_users: usize,
    n_items: usize,
    /// Read from the graph's inputs: a user index, or a user's movies.
    user_vector: UserVector,
    /// A history-input graph's training inputs per user index, so
    /// [`Self::score`] serves training users of either kind of graph.
    inputs: Option<UserInputs>,
}

/// Sessions per model: one per available core, at most 8.
fn pool_size() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

impl OnnxModel {
    /// Loads `model.onnx`; `n_users` / `n_items` come from the manifest.
    pub fn load(path: &Path, n_users: usize, n_items: usize) -> Result<Self, ScoringError> {
        let bytes = std::fs::read(path).map_err(|e| ScoringError::Load {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::build(&bytes, path, n_users, n_items)
    }

    /// Loads a model from bytes already in memory (for example just exported).
    pub fn from_bytes(bytes: &[u8], n_users: usize, n_items: usize) -> Result<Self, ScoringError> {
        Self::build(bytes, Path::new("<memory>"), n_users, n_items)
    }

    fn build(
        bytes: &[u8],
        path: &Path,
        n_users: usize,
        n_items: usize,
    ) -> Result<Self, ScoringError> {
        let load_err = |e: &dyn std::fmt::Display| ScoringError::Load {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let env = env()?;
        let sessions = (0..pool_size())
            .map(|_| {
                Session::builder(env)
                    .map_err(|e| load_err(&e))?
                    .with_intra_threads(1)
                    .map_err(|e| load_err(&e))?
                    .commit_from_memory(bytes)
                    .map(Mutex::new)
                    .map_err(|e| load_err(&e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let names = |s: &Session| -> Vec<String> {
            s.inputs().iter().map(|i| i.name().to_string()).collect()
        };
        let inputs = sessions
            .first()
            .map(|s| names(&s.lock().unwrap_or_else(|p| p.into_inner())))
            .unwrap_or_default();
        let user_vector = if inputs == [ONNX_INPUT] {
            UserVector::Embedding
        } else if inputs.len() == 2
            && inputs.iter().any(|n| n == ONNX_HISTORY_ITEMS)
            && inputs.iter().any(|n| n == ONNX_HISTORY_WEIGHTS)
        {
            UserVector::History
        } else {
            return Err(load_err(&format!(
                "unexpected graph inputs {inputs:?}: want [{ONNX_INPUT:?}] or [{ONNX_HISTORY_ITEMS:?}, {ONNX_HISTORY_WEIGHTS:?}]"
            )));
        };
        let model = OnnxModel {
            sessions,
            next: AtomicUsize::new(0),
            n_users,
            n_items,
            user_vector,
            inputs: None,
        };
        // Run every session once so its first real request is not the one that
        // pays ONNX Runtime's lazy allocations (and a broken graph fails at load).
        let mut out = Vec::new();
        for _ in 0..model.sessions.len() {
            match user_vector {
                UserVector::Embedding if n_users > 0 => model.score(0, &mut out)?,
                UserVector::Embedding => {}
                UserVector::History if n_items > 0 => {
                    model.score_history(&[0], &[1.0], &mut out)?
                }
                UserVector::History => {}
            }
        }
        Ok(model)
    }

    /// A history-input graph with its training users' inputs (one per user
    /// index), so [`Self::score`] works for them; an index graph ignores them.
    pub fn with_user_inputs(mut self, inputs: UserInputs) -> Self {
        if self.user_vector == UserVector::History {
            self.inputs = Some(inputs);
        }
        self
    }

    /// Loads a verified artifact's graph with whatever its kind needs.
    pub fn load_artifact(art: &crate::ports::VerifiedArtifact) -> Result<Self, LoadError> {
        use crate::artifact::{ArtifactError, MODEL_FILE, USER_INPUTS_FILE};
        let m = &art.manifest;
        let model = OnnxModel::load(&art.dir.join(MODEL_FILE), m.users.len(), m.items.len())?;
        if model.user_vector == UserVector::Embedding {
            return Ok(model);
        }
        let bytes =
            std::fs::read(art.dir.join(USER_INPUTS_FILE)).map_err(|e| ArtifactError::Io {
                file: USER_INPUTS_FILE.into(),
                source: e,
            })?;
        let inputs = UserInputs::decode(&bytes, m.items.len())?;
        if inputs.users() != m.users.len() {
            return Err(ArtifactError::Invalid {
                file: USER_INPUTS_FILE.into(),
                reason: format!(
                    "{} users, the manifest has {}",
                    inputs.users(),
                    m.users.len()
                ),
            }
            .into());
        }
        Ok(model.with_user_inputs(inputs))
    }

    pub fn n_users(&self) -> usize {
        self.n_users
    }

    /// Whether the graph reads a user index or a user's movies.
    pub fn user_vector(&self) -> UserVector {
        self.user_vector
    }

    /// The graph's first input, as the manifest's `onnx.input` names it.
    pub fn input_name(&self) -> &'static str {
        match self.user_vector {
            UserVector::Embedding => ONNX_INPUT,
            UserVector::History => ONNX_HISTORY_ITEMS,
        }
    }

    /// A history-input graph's training inputs of user index `user`.
    pub fn user_inputs(&self, user: u32) -> (&[u32], &[f32]) {
        self.inputs
            .as_ref()
            .map(|i| i.get(user))
            .unwrap_or_default()
    }

    /// Scores every item for the model user index `user` into `out` (a
    /// history-input graph from the user's training inputs).
    pub fn score(&self, user: u32, out: &mut Vec<f32>) -> Result<(), ScoringError> {
        if user as usize >= self.n_users {
            return Err(ScoringError::UnknownUser {
                user,
                users: self.n_users,
            });
        }
        if self.user_vector == UserVector::History {
            let inputs = self.inputs.as_ref().ok_or(ScoringError::NeedsUserInputs)?;
            let (items, weights) = inputs.get(user);
            if items.is_empty() {
                // A training user always has movies; without any the graph
                // has nothing to read.
                return Err(ScoringError::BadHistory);
            }
            let items: Vec<i64> = items.iter().map(|&i| i as i64).collect();
            return self.score_history(&items, weights, out);
        }
        let input = [user as i64];
        let tensor = TensorRef::from_array_view(([1usize], &input[..]))
            .map_err(|e| ScoringError::Run(e.to_string()))?;
        self.run(ort::inputs![ONNX_INPUT => tensor], out)
    }

    /// Scores every item for a user given by their movies (model indices)
    /// and recency weights (any positive scale); history-input graphs only.
    pub fn score_history(
        &self,
        items: &[i64],
        weights: &[f32],
        out: &mut Vec<f32>,
    ) -> Result<(), ScoringError> {
        if self.user_vector != UserVector::History {
            return Err(ScoringError::NotHistoryInput);
        }
        if items.is_empty()
            || items.len() != weights.len()
            || items.iter().any(|&i| i < 0 || i as usize >= self.n_items)
        {
            return Err(ScoringError::BadHistory);
        }
        let n = items.len();
        let items = TensorRef::from_array_view(([n], items))
            .map_err(|e| ScoringError::Run(e.to_string()))?;
        let weights = TensorRef::from_array_view(([n], weights))
            .map_err(|e| ScoringError::Run(e.to_string()))?;
        self.run(
            ort::inputs![ONNX_HISTORY_ITEMS => items, ONNX_HISTORY_WEIGHTS => weights],
            out,
        )
    }

    fn run<'i, 'v: 'i>(
        &self,
        inputs: impl Into<ort::session::SessionInputs<'i, 'v>>,
        out: &mut Vec<f32>,
    ) -> Result<(), ScoringError> {
        // Take a free session if there is one, else wait on this caller's turn.
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut session = (0..n)
            .find_map(|i| self.sessions[(start + i) % n].try_lock().ok())
            .unwrap_or_else(|| {
                self.sessions[start]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
            });
        let outputs = session
            .run(inputs)
            .map_err(|e| ScoringError::Run(e.to_string()))?;
        let (_, scores) = outputs[ONNX_OUTPUT]
            .try_extract_tensor::<f32>()
            .map_err(|e| ScoringError::Run(e.to_string()))?;
        if scores.len() != self.n_items {
            return Err(ScoringError::Run(format!(
                "model returned {} scores for {} items",
                scores.len(),
                self.n_items
            )));
        }
        out.clear();
        out.extend_from_slice(scores);
        Ok(())
    }
}

impl Scorer for OnnxModel {
    fn n_items(&self) -> usize {
        self.n_items
    }
    fn score_all(&self, user: u32, out: &mut Vec<f32>) -> Result<(), ScoreError> {
        self.score(user, out).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searched_locations_are_listed_once_each() {
        let c = candidates();
        let mut distinct = c.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), c.len(), "{c:?}");
        assert!(c
            .iter()
            .all(|p| p.to_string_lossy().contains("libonnxruntime.so")));
    }
}
