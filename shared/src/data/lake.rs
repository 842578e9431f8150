//! Training data from the ingest event lake: the accepted watch and rate
//! events under `events/type=watch|rate/…` (quarantined and rejected records
//! live under other prefixes and are never read). A rating is a positive of
//! its value; a watch, a positive of 1. Repeated event keys (a batch written
//! twice by a crash between the lake write and the idempotency record) count once.

use super::{jsonl::from_events, DataError, Snapshot};
use crate::adapters::local::FolderLake;
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

/// Loads the watch and rate events of a lake folder (its root, or its
/// `events/` folder), through the same reader as an S3 lake.
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
    let lake = FolderLake::new(root);
    let source = dir.display().to_string();
    let file = dir.to_path_buf();
    crate::adapters::aws::block_on(async move { crate::ingest::lake::dataset(&lake, source).await })
        .map_err(|e| match e {
            crate::ingest::lake::LakeReadError::Data(d) => d,
            other => DataError::Invalid {
                file,
                reason: other.to_string(),
            },
        })
}
