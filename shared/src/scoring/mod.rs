//! ONNX Runtime scoring. ONNX Runtime is loaded dynamically (`ort` with
//! `load-dynamic`): `ORT_DYLIB_PATH` wins; otherwise the library that `make setup`
//! puts in the repo's `.tools/onnxruntime/` (searched upwards from the executable
//! and the working directory), then the Lambda layer's `/opt/lib`.

pub mod cache;
mod serving;

pub use serving::{LoadError, Ranked, ServingModel};

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
        let model = OnnxModel {
            sessions,
            next: AtomicUsize::new(0),
            n_users,
            n_items,
        };
        // Run every session once so its first real request is not the one that
        // pays ONNX Runtime's lazy allocations (and a broken graph fails at load).
        if n_users > 0 {
            let mut out = Vec::new();
            for _ in 0..model.sessions.len() {
                model.score(0, &mut out)?;
            }
        }
        Ok(model)
    }

    pub fn n_users(&self) -> usize {
        self.n_users
    }

    /// Scores every item for the model user index `user` into `out`.
    pub fn score(&self, user: u32, out: &mut Vec<f32>) -> Result<(), ScoringError> {
        if user as usize >= self.n_users {
            return Err(ScoringError::UnknownUser {
                user,
                users: self.n_users,
            });
        }
        let input = [user as i64];
        let tensor = TensorRef::from_array_view(([1usize], &input[..]))
            .map_err(|e| ScoringError::Run(e.to_string()))?;
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
            .run(ort::inputs![ONNX_INPUT => tensor])
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
