//! The audit's file inputs (`movie-recs audit --recommendations --ratings
//! --catalog --users`), in the formats of the previous system's logs
//! (../shared/data/seed-evidence) and of this system's traces:
//!
//! - recommendations: one JSON object per line, a reco_response event
//!   (`{"user_id","movie_ids","model_version","variant","ts"}`) or a stored
//!   trace (`{"request_id","user_id","items","model_version","variant","timestamp"}`);
//! - ratings: rate events, `ts` (epoch ms) or ISO-8601 `timestamp`; lines
//!   that name `"type": "watch"` count towards activity only;
//! - catalogue: MovieLens `movies.dat` (`MovieID::Title::Genres`);
//! - users: MovieLens-1M `users.dat` (`UserID::Gender::Age::Occupation::Zip`).
//!
//! Invalid records are counted and described (file and line), never fatal:
//! a rating with invalid fields is a schema error, not a user.

use super::spam::Rating;
use super::{Exposure, UserMeta};
use crate::events::{parse_value, Event, EventType, Rejection};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A file that could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct FileError {
    pub file: PathBuf,
    pub reason: String,
}

fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|e| FileError {
        file: path.into(),
        reason: e.to_string(),
    })
}

/// A record that was skipped, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    pub line: usize,
    pub reason: String,
}

/// The valid records of a file and the skipped ones.
#[derive(Clone, Debug, Default)]
pub struct Parsed<T> {
    pub records: Vec<T>,
    /// Valid records of other kinds (watches in a ratings file), by user.
    pub other_activity: HashMap<u64, usize>,
    pub skipped: Vec<Skipped>,
}

/// One line's outcome.
enum Line<T> {
    Record(T),
    Other(u64),
    Skip(String),
}

/// Parses the non-blank lines of `bytes` with `f`, on every core.
fn parse_lines<T: Send>(bytes: &[u8], f: impl Fn(&[u8]) -> Line<T> + Sync) -> Parsed<T> {
    let lines: Vec<(usize, &[u8])> = bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = lines.len().div_ceil(threads).max(1024);
    let parts: Vec<Vec<(usize, Line<T>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(chunk)
            .map(|c| s.spawn(|| c.iter().map(|&(n, l)| (n, f(l))).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("parser thread"))
            .collect()
    });
    let mut out = Parsed {
        records: Vec::with_capacity(lines.len()),
        other_activity: HashMap::new(),
        skipped: Vec::new(),
    };
    for (line, l) in parts.into_iter().flatten() {
        match l {
            Line::Record(r) => out.records.push(r),
            Line::Other(u) => *out.other_activity.entry(u).or_insert(0) += 1,
            Line::Skip(reason) => out.skipped.push(Skipped { line, reason }),
        }
    }
    out
}

fn reject(r: Rejection) -> String {
    format!("{}: {}", r.field, r.rule)
}

/// An exposure from a stored trace (`items`, `timestamp` in epoch ms);
/// `None` unless it is a served (status 200, or no status) list.
pub fn exposure_from_trace(t: &Value) -> Option<Exposure> {
    let t = crate::domain::trace::Trace::read(t).filter(|t| t.ok())?;
    Some(Exposure {
        request_id: Some(t.request_id),
        user_id: t.user_id,
        model_version: t.model_version,
        variant: t.variant.map(|a| a.to_string()),
        ts_ms: t.timestamp,
        movie_ids: t.items,
    })
}

/// An exposure from a reco_response event.
pub fn exposure_from_event(e: crate::events::RecoResponse) -> Exposure {
    Exposure {
        request_id: e.request_id,
        user_id: e.user_id,
        model_version: e.model_version,
        variant: e.variant,
        ts_ms: e.ts_ms,
        movie_ids: e.movie_ids,
    }
}

/// Reads a recommendations file (reco_response events or traces).
pub fn read_recommendations(path: &Path, now_ms: i64) -> Result<Parsed<Exposure>, FileError> {
    let bytes = read(path)?;
    Ok(parse_lines(&bytes, |l| {
        let v: Value = match serde_json::from_slice(l) {
            Ok(v) => v,
            Err(e) => return Line::Skip(format!("not JSON: {e}")),
        };
        if v.get("items").is_some() && v.get("movie_ids").is_none() {
            return match exposure_from_trace(&v) {
                Some(e) => Line::Record(e),
                None => Line::Skip("a trace without user_id, model_version, timestamp and items, or not served (status ≠ 200)".into()),
            };
        }
        match parse_value(&v, Some(EventType::RecoResponse), now_ms) {
            Ok(p) => match p.event {
                Event::RecoResponse(e) => Line::Record(exposure_from_event(e)),
                _ => Line::Skip("not a recommendation".into()),
            },
            Err(r) => Line::Skip(reject(r)),
        }
    }))
}

/// Reads a ratings file (rate events; watch events count as activity).
pub fn read_ratings(path: &Path, now_ms: i64) -> Result<Parsed<Rating>, FileError> {
    let bytes = read(path)?;
    Ok(parse_lines(&bytes, |l| {
        let v: Value = match serde_json::from_slice(l) {
            Ok(v) => v,
            Err(e) => return Line::Skip(format!("not JSON: {e}")),
        };
        let hint = v.get("type").is_none().then_some(EventType::Rate);
        match parse_value(&v, hint, now_ms) {
            Ok(p) => match p.event {
                Event::Rate(r) => Line::Record(Rating {
                    user_id: r.user_id,
                    movie_id: r.movie_id,
                    rating: r.rating,
                    ts_ms: r.ts_ms,
                }),
                Event::Watch(w) => Line::Other(w.user_id),
                Event::RecoResponse(_) => {
                    Line::Skip("type: a reco_response in a ratings file".into())
                }
            },
            Err(r) => Line::Skip(reject(r)),
        }
    }))
}

fn text(path: &Path) -> Result<String, FileError> {
    // MovieLens files are Latin-1: decoded as the training loaders do.
    Ok(crate::data::decode_text(&read(path)?))
}

fn malformed(path: &Path, line: usize, reason: &str) -> FileError {
    FileError {
        file: path.into(),
        reason: format!("line {line}: {reason}"),
    }
}

/// The movie ids of a MovieLens `movies.dat`.
pub fn read_catalog(path: &Path) -> Result<Vec<u64>, FileError> {
    let mut ids = Vec::new();
    for (i, line) in text(path)?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let id = line
            .split("::")
            .next()
            .and_then(|s| s.trim().parse().ok())
            .filter(|_| line.matches("::").count() >= 2)
            .ok_or_else(|| malformed(path, i + 1, "expected MovieID::Title::Genres"))?;
        ids.push(id);
    }
    Ok(ids)
}

/// The MovieLens-1M age band of an age code.
pub fn age_band(code: u32) -> Option<&'static str> {
    Some(match code {
        1 => "under 18",
        18 => "18-24",
        25 => "25-34",
        35 => "35-44",
        45 => "45-49",
        50 => "50-55",
        56 => "56+",
        _ => return None,
    })
}

/// Demographics from a MovieLens-1M `users.dat`.
pub fn read_users(path: &Path) -> Result<HashMap<u64, UserMeta>, FileError> {
    let mut out = HashMap::new();
    for (i, line) in text(path)?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split("::").collect();
        let bad = || {
            malformed(
                path,
                i + 1,
                "expected UserID::Gender::Age::Occupation::Zip-code",
            )
        };
        if f.len() != 5 {
            return Err(bad());
        }
        let user: u64 = f[0].parse().map_err(|_| bad())?;
        let gender = match f[1] {
            "M" | "F" => f[1].to_string(),
            _ => return Err(malformed(path, i + 1, "gender must be M or F")),
        };
        let age = f[2].parse().ok().and_then(age_band).ok_or_else(|| {
            malformed(
                path,
                i + 1,
                "age must be a MovieLens age code (1, 18, 25, 35, 45, 50, 56)",
            )
        })?;
        out.insert(
            user,
            UserMeta {
                gender,
                age_band: age.to_string(),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }

    const NOW: i64 = 1_764_000_000_000;

    #[test]
    fn recommendations_from_events_and_traces() {
        let f = file(concat!(
            r#"{"user_id": 1, "movie_ids": [5, 6], "model_version": "v_ncf", "variant": null, "ts": 1763855708444}"#,
            "\n\n",
            r#"{"request_id": "r1", "user_id": 2, "items": [7], "model_version": "v2", "variant": "candidate", "timestamp": 1763855708000, "status": 200}"#,
            "\n",
            r#"{"user_id": 3, "movie_ids": [1], "ts": 1763855708444}"#,
            "\n",
            r#"{"request_id": "r2", "user_id": 2, "items": [7], "model_version": "v2", "timestamp": 1763855708000, "status": 500}"#,
            "\nnot json\n"
        ));
        let p = read_recommendations(f.path(), NOW).unwrap();
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.records[0].movie_ids, vec![5, 6]);
        assert_eq!(
            (
                p.records[1].variant.as_deref(),
                p.records[1].request_id.as_deref()
            ),
            (Some("candidate"), Some("r1"))
        );
        let lines: Vec<usize> = p.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![4, 5, 6]);
        assert_eq!(p.skipped[0].reason, "model_version: is required");
    }

    #[test]
    fn ratings_with_schema_errors_and_watches() {
        let f = file(concat!(
            r#"{"user_id": 1, "movie_id": 2, "rating": 4, "ts": 1763650561609}"#,
            "\n",
            r#"{"user_id": "INVALID", "movie_id": 2, "rating": 4, "ts": 1763650561609}"#,
            "\n",
            r#"{"user_id": 1, "movie_id": 3, "rating": 3.5, "timestamp": "2025-11-20T10:00:00Z"}"#,
            "\n",
            r#"{"type": "watch", "user_id": 4, "movie_id": 3, "ts": 1763650561609}"#,
            "\n",
        ));
        let p = read_ratings(f.path(), NOW).unwrap();
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.records[1].rating, 3.5);
        assert_eq!(p.other_activity.get(&4), Some(&1));
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].line, 2);
        assert!(p.skipped[0].reason.starts_with("user_id"));
    }

    #[test]
    fn catalog_and_users_files() {
        let m = file("1::Toy Story (1995)::Animation\n2::Jumanji (1995)::Adventure|Fantasy\n");
        assert_eq!(read_catalog(m.path()).unwrap(), vec![1, 2]);
        let bad = file("1::Toy Story (1995)::Animation\nx::y\n");
        let e = read_catalog(bad.path()).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let u = file("1::F::1::10::48067\n2::M::56::16::70072\n");
        let users = read_users(u.path()).unwrap();
        assert_eq!(users[&1].age_band, "under 18");
        assert_eq!(users[&2].gender, "M");
        let bad = file("1::X::1::10::48067\n");
        assert!(read_users(bad.path())
            .unwrap_err()
            .to_string()
            .contains("gender"));
        assert!(read_ratings(Path::new("/nonexistent/r.jsonl"), NOW).is_err());
    }
}
