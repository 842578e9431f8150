//! Reading the event lake back through the [`EventLake`] port (S3 or a
//! folder): for training from an S3 prefix, the audit and the tests.

use crate::data::lake::dataset_from_objects;
use crate::data::DataError;
use crate::domain::Dataset;
use crate::events::parquet::{decode, LakeRecord};
use crate::events::EventType;
use crate::ports::{EventLake, StoreError};
use std::collections::HashSet;

/// Why the lake could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LakeReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{key}: {reason}")]
    Object { key: String, reason: String },
    #[error(transparent)]
    Data(#[from] DataError),
}

/// The Parquet objects of type `t` under `root` (`events` or `quarantine`).
pub async fn objects(
    lake: &dyn EventLake,
    root: &str,
    t: EventType,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    objects_under(lake, &format!("{root}/type={t}/")).await
}

/// The Parquet objects under `prefix`, in key order.
pub async fn objects_under(
    lake: &dyn EventLake,
    prefix: &str,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    for key in lake.list(prefix).await? {
        if key.ends_with(".parquet") {
            let bytes = lake.get_object(&key).await?;
            out.push((key, bytes));
        }
    }
    Ok(out)
}

/// Every record of type `t` under `root`, each event key once, in key order.
pub async fn read(
    lake: &dyn EventLake,
    root: &str,
    t: EventType,
) -> Result<Vec<LakeRecord>, LakeReadError> {
    read_under(lake, &format!("{root}/type={t}/"), t, &mut HashSet::new()).await
}

/// The records of type `t` in the objects under `prefix`, in key order,
/// leaving out event keys already in `seen` (and adding the rest to it), so
/// reads of several prefixes keep each event once.
pub async fn read_under(
    lake: &dyn EventLake,
    prefix: &str,
    t: EventType,
    seen: &mut HashSet<String>,
) -> Result<Vec<LakeRecord>, LakeReadError> {
    let mut out = Vec::new();
    for (key, bytes) in objects_under(lake, prefix).await? {
        let recs = decode(t, bytes).map_err(|e| LakeReadError::Object {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        out.extend(
            recs.into_iter()
                .filter(|r| seen.insert(r.event_key.clone())),
        );
    }
    Ok(out)
}

/// The users the audit quarantined (`quarantine/users/…jsonl`, one JSON
/// object with a `user_id` per line).
pub async fn flagged_users(lake: &dyn EventLake) -> Result<HashSet<u64>, LakeReadError> {
    let mut out = HashSet::new();
    for key in lake.list("quarantine/users/").await? {
        if !key.ends_with(".jsonl") {
            continue;
        }
        let bytes = lake.get_object(&key).await?;
        out.extend(crate::data::lake::flagged_users_of(&bytes).map_err(|e| {
            LakeReadError::Object {
                key,
                reason: e.to_string(),
            }
        })?);
    }
    Ok(out)
}

/// The training dataset of a lake: its accepted watch and rate events,
/// without the events of users the audit quarantined.
pub async fn dataset(lake: &dyn EventLake, source: String) -> Result<Dataset, LakeReadError> {
    let mut all = Vec::new();
    for t in [EventType::Rate, EventType::Watch] {
        for (key, bytes) in objects(lake, "events", t).await? {
            let name = key.strip_prefix("events/").unwrap_or(&key).to_string();
            all.push((name, t, bytes));
        }
    }
    let flagged = flagged_users(lake).await?;
    Ok(dataset_from_objects(&all, source, &flagged)?)
}
