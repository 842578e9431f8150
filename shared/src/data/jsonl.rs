//! JSONL rating and watch events: `{"user_id","movie_id","rating","ts"}` per line,
//! with time as epoch milliseconds (`ts`) or ISO-8601 (`timestamp`). A watch event
//! has no rating. The ingest pipeline's own schemas extend this.

use super::{decode_text, dense_ids, read_file, DataError, Snapshot};
use crate::domain::{DataFormat, Dataset, Interaction, ItemMeta};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn int_field(v: &Value, name: &str, file: &Path, line: usize) -> Result<u64, DataError> {
    match v.get(name) {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            DataError::malformed(
                file,
                line,
                format!("{name} must be a non-negative integer, got {n}"),
            )
        }),
        Some(Value::String(s)) => s.parse().map_err(|_| {
            DataError::malformed(file, line, format!("{name} must be an integer, got {s:?}"))
        }),
        Some(other) => Err(DataError::malformed(
            file,
            line,
            format!("{name} must be an integer, got {other}"),
        )),
        None => Err(DataError::malformed(
            file,
            line,
            format!("{name} is missing"),
        )),
    }
}

/// Event time in epoch seconds from `ts` (epoch ms) or `timestamp` (ISO-8601).
fn time_field(v: &Value, file: &Path, line: usize) -> Result<i64, DataError> {
    if let Some(ts) = v.get("ts") {
        return ts.as_i64().map(|ms| ms.div_euclid(1000)).ok_or_else(|| {
            DataError::malformed(
                file,
                line,
                format!("ts must be epoch milliseconds, got {ts}"),
            )
        });
    }
    if let Some(t) = v.get("timestamp") {
        let s = t.as_str().ok_or_else(|| {
            DataError::malformed(file, line, "timestamp must be an ISO-8601 string")
        })?;
        return chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp())
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                    .map(|d| d.and_utc().timestamp())
            })
            .map_err(|_| {
                DataError::malformed(file, line, format!("timestamp is not ISO-8601: {s:?}"))
            });
    }
    Err(DataError::malformed(
        file,
        line,
        "ts or timestamp is missing",
    ))
}

/// Loads one or more JSONL event files into a dataset (all events are positives).
pub fn load_jsonl(files: &[PathBuf]) -> Result<Dataset, DataError> {
    let mut snap = Snapshot::default();
    let mut raw = Vec::new();
    for file in files {
        let bytes = read_file(file)?;
        snap.add(
            &file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            &bytes,
        );
        for (i, line) in decode_text(&bytes).lines().enumerate() {
            let n = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .map_err(|e| DataError::malformed(file, n, format!("invalid JSON: {e}")))?;
            let user = int_field(&v, "user_id", file, n)?;
            let movie = int_field(&v, "movie_id", file, n)?;
            let rating = match v.get("rating") {
                None | Some(Value::Null) => 1.0,
                Some(r) => {
                    let r = r.as_f64().ok_or_else(|| {
                        DataError::malformed(file, n, format!("rating must be a number, got {r}"))
                    })?;
                    if !(0.5..=5.0).contains(&r) {
                        return Err(DataError::malformed(
                            file,
                            n,
                            format!("rating {r} is outside 0.5..=5"),
                        ));
                    }
                    r as f32
                }
            };
            raw.push((user, movie, rating, time_field(&v, file, n)?));
        }
    }
    let source = files
        .first()
        .and_then(|f| f.parent())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Ok(from_events(&raw, source, DataFormat::Jsonl, snap.finish()))
}

/// A dataset of `(user id, movie id, rating, epoch s)` events, every one a positive.
pub(crate) fn from_events(
    raw: &[(u64, u64, f32, i64)],
    source: String,
    format: DataFormat,
    snapshot_id: String,
) -> Dataset {
    let (user_ids, umap) = dense_ids(raw.iter().map(|r| r.0));
    let (item_ids, imap) = dense_ids(raw.iter().map(|r| r.1));
    let train = raw
        .iter()
        .map(|r| Interaction {
            user: umap[&r.0],
            item: imap[&r.1],
            rating: r.2,
            ts: r.3,
        })
        .collect();
    Dataset {
        source,
        format,
        user_ids,
        items: item_ids.iter().map(|&i| ItemMeta::bare(i)).collect(),
        train,
        test: None,
        snapshot_id,
        excluded_users: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_both_time_forms_and_watch_events() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("events.jsonl"),
            "{\"user_id\": 7, \"movie_id\": 3, \"rating\": 4, \"ts\": 1700000000000}\n\
             {\"user_id\": \"8\", \"movie_id\": 3, \"timestamp\": \"2024-01-02T03:04:05Z\"}\n",
        )
        .unwrap();
        let ds = super::super::load_dir(d.path()).unwrap();
        assert_eq!(ds.format, DataFormat::Jsonl);
        assert_eq!(ds.user_ids, vec![7, 8]);
        assert_eq!(ds.train[0].ts, 1_700_000_000);
        assert_eq!(ds.train[1].ts, 1_704_164_645);
        assert_eq!(ds.train[1].rating, 1.0);
    }

    #[test]
    fn jsonl_bad_user_is_named_with_line() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("e.jsonl");
        std::fs::write(&f, "{\"user_id\": 1, \"movie_id\": 2, \"ts\": 5}\n{\"user_id\": \"abc\", \"movie_id\": 2, \"ts\": 5}\n").unwrap();
        let e = load_jsonl(&[f]).unwrap_err().to_string();
        assert!(e.contains("e.jsonl:2") && e.contains("user_id"), "{e}");
    }
}
