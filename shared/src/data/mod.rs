//! Loaders for every supported data format, format detection for `--data DIR`,
//! and the synthetic generator used when no data is given.
//!
//! | files present                                   | format                 |
//! |-------------------------------------------------|------------------------|
//! | `ratings.dat` (+ `movies.dat`)                  | MovieLens-1M           |
//! | `u.data` (+ `u.item`)                           | MovieLens-100K         |
//! | `<name>.train.rating`, `.test.rating`, `.test.negative` | NCF repository |
//! | `train.txt`, `test.txt`                         | LCFN / LightGCN lists  |
//! | `events/type=…/` (or `type=…/`) Parquet         | ingest's event lake    |
//! | `*.jsonl`                                       | JSONL rate/watch events|

mod jsonl;
pub mod lake;
mod lists;
mod movielens;
pub mod synthetic;

use crate::domain::{Dataset, ItemMeta};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use jsonl::load_jsonl;
pub use lake::load_lake;
pub use lists::{load_lcfn, load_ncf};
pub use movielens::{load_ml100k, load_ml1m, read_item_meta};

/// Why a data source could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {reason}")]
    Malformed {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{dir}: no known data format (looked for ratings.dat, u.data, *.train.rating, train.txt + test.txt, events/type=*, *.jsonl; found: {found})")]
    UnknownFormat { dir: PathBuf, found: String },
    #[error("{file}: {reason}")]
    Invalid { file: PathBuf, reason: String },
}

impl DataError {
    pub(crate) fn malformed(file: &Path, line: usize, reason: impl Into<String>) -> Self {
        DataError::Malformed {
            file: file.to_path_buf(),
            line,
            reason: reason.into(),
        }
    }
}

/// Loads the data named by a `--data` argument: `synthetic` or a directory.
pub fn load(spec: &str, synthetic: &synthetic::SyntheticConfig) -> Result<Dataset, DataError> {
    if spec == "synthetic" {
        return Ok(synthetic::generate(synthetic).dataset);
    }
    load_dir(Path::new(spec))
}

/// Detects the format of a directory from the files present and loads it.
pub fn load_dir(dir: &Path) -> Result<Dataset, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::Io {
        file: dir.into(),
        source: e,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let has = |n: &str| names.iter().any(|x| x == n);
    if has("ratings.dat") {
        return load_ml1m(dir);
    }
    if has("u.data") {
        return load_ml100k(dir);
    }
    if let Some(train) = names.iter().find(|n| n.ends_with(".train.rating")) {
        let stem = train.trim_end_matches(".train.rating").to_string();
        return load_ncf(dir, &stem);
    }
    if has("train.txt") && has("test.txt") {
        return load_lcfn(dir);
    }
    if lake::events_dir(dir).is_some() {
        return load_lake(dir);
    }
    let jsonl: Vec<PathBuf> = names
        .iter()
        .filter(|n| n.ends_with(".jsonl"))
        .map(|n| dir.join(n))
        .collect();
    if !jsonl.is_empty() {
        return load_jsonl(&jsonl);
    }
    Err(DataError::UnknownFormat {
        dir: dir.into(),
        found: if names.is_empty() {
            "nothing".into()
        } else {
            names.join(", ")
        },
    })
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::Io {
        file: path.into(),
        source: e,
    })
}

/// Decodes ISO-8859-1 (the MovieLens metadata encoding) or UTF-8 when valid.
pub(crate) fn decode_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

/// Running sha256 over the files a dataset was built from: the data snapshot id.
#[derive(Default)]
pub(crate) struct Snapshot(Sha256);

impl Snapshot {
    pub fn add(&mut self, name: &str, bytes: &[u8]) {
        self.0.update((name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// Maps external ids to dense indices in ascending id order.
pub(crate) fn dense_ids(ids: impl Iterator<Item = u64>) -> (Vec<u64>, HashMap<u64, u32>) {
    let mut v: Vec<u64> = ids.collect();
    v.sort_unstable();
    v.dedup();
    let map = v
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as u32))
        .collect();
    (v, map)
}

/// Item metadata for dense ids, falling back to bare entries where none is known.
pub(crate) fn items_for(ids: &[u64], meta: &HashMap<u64, ItemMeta>) -> Vec<ItemMeta> {
    ids.iter()
        .map(|id| meta.get(id).cloned().unwrap_or_else(|| ItemMeta::bare(*id)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::dataset::year_from_title;

    #[test]
    fn years_from_titles() {
        assert_eq!(year_from_title("Toy Story (1995)"), Some(1995));
        assert_eq!(
            year_from_title("City of Lost Children, The (Cité des enfants perdus, La) (1995)"),
            Some(1995)
        );
        assert_eq!(year_from_title("unknown"), None);
    }

    #[test]
    fn unknown_format_names_what_was_found() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("notes.md"), "x").unwrap();
        let e = load_dir(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("notes.md") && e.contains("no known data format"),
            "{e}"
        );
    }
}
