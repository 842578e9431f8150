//! Training data from the ingest event lake: the accepted watch and rate
//! events under `events/type=watch|rate/…` (quarantined and rejected records
//! live under other prefixes and are never read), without the users the
//! audit quarantined (`quarantine/users/…jsonl`). A rating is a positive of
//! its value; a watch, a positive of 1. Repeated event keys (a batch written
//! twice by a crash between the lake write and the idempotency record) count once.
//!
//! This module reads the lake's objects, wherever they come from: a folder
//! here ([`load_lake`]), any [`crate::ports::EventLake`] (S3) through
//! `crate::ingest::lake::dataset`, which hands its objects to the same
//! [`dataset_from_objects`] and [`flagged_users_of`].

use super::{jsonl::from_events, DataError, Snapshot};
use crate::domain::{DataFormat, Dataset};
use crate::events::parquet::{decode, LakeRecord};
use crate::events::{Event, EventType};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The `events/` folder of a lake root, or the folder itself if it holds `type=` partitions.
pub fn events_dir(dir: &Path) -> Option<PathBuf> {
    let has_types = |d: &Path| {
        std::fs::read_dir(d).is_ok_and(|mut it| {
            it.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("type=")))
        })
    };
    [dir.join("events"), dir.to_path_buf()]
        .into_iter()
        .find(|d| has_types(d))
}

/// The dataset of `(key, bytes)` Parquet objects of the given event type, in
/// key order (the snapshot id hashes them), without the events of `excluded` users.
pub fn dataset_from_objects(
    objects: &[(String, EventType, Vec<u8>)],
    source: String,
    excluded: &HashSet<u64>,
) -> Result<Dataset, DataError> {
    let mut snap = Snapshot::default();
    let mut keys = HashSet::new();
    let mut raw = Vec::new();
    let mut dropped = 0usize;
    for (name, t, bytes) in objects {
        snap.add(name, bytes);
        let recs = decode(*t, bytes.clone()).map_err(|e| DataError::Invalid {
            file: name.into(),
            reason: e.to_string(),
        })?;
        for p in positives(recs, &mut keys) {
            if excluded.contains(&p.0) {
                dropped += 1;
            } else {
                raw.push(p);
            }
        }
    }
    let mut ids: Vec<u64> = Vec::new();
    if dropped > 0 {
        ids = excluded.iter().copied().collect();
        ids.sort();
        snap.add("quarantine/users", format!("{ids:?}").as_bytes());
        eprintln!(
            "left out {dropped} events of {} users the audit quarantined",
            excluded.len()
        );
    }
    if raw.is_empty() {
        return Err(DataError::Invalid {
            file: source.into(),
            reason: "the lake holds no accepted watch or rate events".into(),
        });
    }
    let mut ds = from_events(&raw, source, DataFormat::Lake, snap.finish());
    ds.excluded_users = ids;
    Ok(ds)
}

fn positives(
    recs: Vec<LakeRecord>,
    keys: &mut HashSet<String>,
) -> impl Iterator<Item = (u64, u64, f32, i64)> + '_ {
    recs.into_iter().filter_map(move |r| {
        if !keys.insert(r.event_key) {
            return None;
        }
        match r.event {
            Event::Watch(w) => Some((w.user_id, w.movie_id, 1.0, w.ts_ms.div_euclid(1000))),
            Event::Rate(x) => Some((x.user_id, x.movie_id, x.rating, x.ts_ms.div_euclid(1000))),
            Event::RecoResponse(_) => None,
        }
    })
}

/// A line of a quarantine object that names no user.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: expected a JSON object with a user_id")]
pub struct BadFlagLine {
    pub line: usize,
}

/// The users one `quarantine/users/…jsonl` object names (one JSON object
/// with a `user_id` per line); the error names the line.
pub fn flagged_users_of(bytes: &[u8]) -> Result<Vec<u64>, BadFlagLine> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let user = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("user_id").and_then(serde_json::Value::as_u64))
            .ok_or(BadFlagLine { line: i + 1 })?;
        out.push(user);
    }
    Ok(out)
}

/// The keys of the files under `root` that start with `prefix`
/// (`/`-separated, relative to `root`), in key order as an object store
/// lists them; writers' `.tmp-` files are skipped. Only the folder the
/// prefix names is walked. The folder lake's listing and [`load_lake`]
/// both read folders through this.
pub fn keys_under(root: &Path, prefix: &str) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let start = match prefix.rfind('/') {
        Some(i) => root.join(&prefix[..i]),
        None => root.to_path_buf(),
    };
    let mut stack = vec![start];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let path = e.path();
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                continue;
            }
            if e.file_type()?.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                let key = rel.to_string_lossy().replace('\\', "/");
                if key.starts_with(prefix) {
                    out.push(key);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The files under `root/prefix` whose names end in `ext`, as (key, bytes)
/// in key order.
fn files_under(root: &Path, prefix: &str, ext: &str) -> Result<Vec<(String, Vec<u8>)>, DataError> {
    let io = |path: &Path, e: std::io::Error| DataError::Invalid {
        file: path.to_path_buf(),
        reason: e.to_string(),
    };
    keys_under(root, prefix)
        .map_err(|e| io(&root.join(prefix), e))?
        .into_iter()
        .filter(|k| k.ends_with(ext))
        .map(|k| {
            let path = root.join(&k);
            std::fs::read(&path)
                .map(|b| (k, b))
                .map_err(|e| io(&path, e))
        })
        .collect()
}

/// Loads the watch and rate events of a lake folder (its root, or its
/// `events/` folder), as an S3 lake's are read.
pub fn load_lake(dir: &Path) -> Result<Dataset, DataError> {
    let events = events_dir(dir).ok_or_else(|| DataError::Invalid {
        file: dir.into(),
        reason: "not an event lake (no events/type=… folders)".into(),
    })?;
    if events.file_name().is_none_or(|n| n != "events") {
        return Err(DataError::Invalid {
            file: dir.into(),
            reason: "a lake's partitions live under events/; point --data at the lake root".into(),
        });
    }
    let root = events.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut all = Vec::new();
    for t in [EventType::Rate, EventType::Watch] {
        for (key, bytes) in files_under(&root, &format!("events/type={t}/"), ".parquet")? {
            let name = key.strip_prefix("events/").unwrap_or(&key).to_string();
            all.push((name, t, bytes));
        }
    }
    let mut flagged = HashSet::new();
    for (key, bytes) in files_under(&root, "quarantine/users/", ".jsonl")? {
        flagged.extend(flagged_users_of(&bytes).map_err(|e| DataError::Invalid {
            file: root.join(&key),
            reason: e.to_string(),
        })?);
    }
    dataset_from_objects(&all, dir.display().to_string(), &flagged)
}
