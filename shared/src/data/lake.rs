//! Training data from the ingest event lake: the accepted watch and rate
//! events under `events/type=watch|rate/…` (quarantined and rejected records
//! live under other prefixes and are never read). A rating is a positive of
//! its value; a watch, a positive of 1. Repeated event keys (a batch written
//! twice by a crash between the lake write and the idempotency record) count once.

use super::{jsonl::from_events, read_file, DataError, Snapshot};
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
/// key order (the snapshot id hashes them).
pub fn dataset_from_objects(
    objects: &[(String, EventType, Vec<u8>)],
    source: String,
) -> Result<Dataset, DataError> {
    let mut snap = Snapshot::default();
    let mut keys = HashSet::new();
    let mut raw = Vec::new();
    for (name, t, bytes) in objects {
        snap.add(name, bytes);
        let recs = decode(*t, bytes.clone()).map_err(|e| DataError::Invalid {
            file: name.into(),
            reason: e.to_string(),
        })?;
        raw.extend(positives(recs, &mut keys));
    }
    if raw.is_empty() {
        return Err(DataError::Invalid {
            file: source.into(),
            reason: "the lake holds no accepted watch or rate events".into(),
        });
    }
    Ok(from_events(&raw, source, DataFormat::Lake, snap.finish()))
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

/// Loads the watch and rate events of a lake folder.
pub fn load_lake(dir: &Path) -> Result<Dataset, DataError> {
    let events = events_dir(dir).ok_or_else(|| DataError::Invalid {
        file: dir.into(),
        reason: "not an event lake (no events/type=… folders)".into(),
    })?;
    let mut objects = Vec::new();
    for t in [EventType::Rate, EventType::Watch] {
        let mut files = Vec::new();
        walk(&events.join(format!("type={t}")), &mut files)?;
        files.sort();
        for f in files {
            let name = f
                .strip_prefix(&events)
                .unwrap_or(&f)
                .to_string_lossy()
                .into_owned();
            objects.push((name, t, read_file(&f)?));
        }
    }
    dataset_from_objects(&objects, dir.display().to_string())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(DataError::Io {
                file: dir.into(),
                source: e,
            })
        }
    };
    for e in entries {
        let e = e.map_err(|e| DataError::Io {
            file: dir.into(),
            source: e,
        })?;
        let p = e.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    Ok(())
}
