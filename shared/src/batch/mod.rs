//! Batch recommendations: every asked user's list from one model version,
//! ranked exactly as `GET /recommend` ranks it (same masking, filter and
//! policy), written as Parquet or JSON lines, one object per shard of
//! users, with a manifest of counts. `movie-recs batch` runs it on all
//! cores; in AWS a Step Functions state machine fans it out over shards of
//! users, each scored by the batch function ([`job`]).

pub mod job;

use crate::domain::filter::Filter;
use crate::domain::param::InvalidParam;
use crate::domain::rerank::Policy;
use crate::scoring::{ScoringError, ServingModel};
use arrow_array::types::{Float32Type, UInt64Type};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Users per output object unless told otherwise.
pub const DEFAULT_SHARD_USERS: usize = 10_000;

/// One user's list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub user_id: u64,
    pub movie_ids: Vec<u64>,
    pub scores: Vec<f32>,
    pub model_version: String,
    pub policy: String,
}

/// How the output is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Parquet,
    Jsonl,
}

impl Format {
    pub fn parse(s: &str) -> Result<Self, InvalidParam> {
        match s {
            "parquet" => Ok(Format::Parquet),
            "jsonl" => Ok(Format::Jsonl),
            _ => Err(InvalidParam::new(
                "format",
                format!("must be parquet or jsonl, got {s:?}"),
            )),
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Jsonl => "jsonl",
        }
    }
}

/// A line of a user list that holds no user id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {text:?} is not a user id")]
pub struct BadUserLine {
    /// From 1.
    pub line: usize,
    pub text: String,
}

/// User ids, one per line (a `#` starts a comment; anything after the
/// first comma, tab or space is ignored, so a CSV's first column works);
/// the error names the line.
pub fn parse_users(text: &str) -> Result<Vec<u64>, BadUserLine> {
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.split('#').next().unwrap_or("").trim();
        let t = t.split([',', '\t', ' ']).next().unwrap_or("");
        if t.is_empty() {
            continue;
        }
        users.push(t.parse::<u64>().map_err(|_| BadUserLine {
            line: n + 1,
            text: t.to_string(),
        })?);
    }
    Ok(users)
}

/// History reads in flight at once: against DynamoDB each is a round trip,
/// which one at a time would dominate the run.
pub const HISTORY_READS_IN_FLIGHT: usize = 32;

/// Each user of `ids` with the movies the history store recorded (none
/// without a store), in order, read [`HISTORY_READS_IN_FLIGHT`] at a time.
pub async fn read_seen(
    hist: Option<&Arc<dyn crate::ports::UserHistory>>,
    ids: &[u64],
) -> Result<Vec<(u64, Vec<u64>)>, crate::ports::StoreError> {
    let Some(h) = hist else {
        return Ok(ids.iter().map(|&u| (u, Vec::new())).collect());
    };
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(HISTORY_READS_IN_FLIGHT) {
        let mut set = tokio::task::JoinSet::new();
        for (j, &u) in chunk.iter().enumerate() {
            let h = h.clone();
            set.spawn(async move { (j, h.seen(u).await) });
        }
        let mut got: Vec<Vec<u64>> = vec![Vec::new(); chunk.len()];
        while let Some(done) = set.join_next().await {
            let (j, seen) =
                done.map_err(|e| crate::ports::StoreError::unavailable("history", e))?;
            got[j] = seen.map_err(|e| {
                crate::ports::StoreError::unavailable("history", format!("user {}: {e}", chunk[j]))
            })?;
        }
        out.extend(chunk.iter().copied().zip(got));
    }
    Ok(out)
}

/// Splits `n` users into consecutive shards of at most `per_shard` (at
/// least one user each; none for no users).
pub fn plan_shards(n: usize, per_shard: usize) -> Vec<Range<usize>> {
    let per = per_shard.max(1);
    (0..n.div_ceil(per))
        .map(|i| i * per..((i + 1) * per).min(n))
        .collect()
}

/// The object key of shard `index` under `prefix`.
pub fn shard_key(prefix: &str, index: usize, format: Format) -> String {
    let p = prefix.trim_end_matches('/');
    let name = format!("part-{index:05}.{}", format.extension());
    match p.is_empty() {
        true => name,
        false => format!("{p}/{name}"),
    }
}

/// Ranks every `(user_id, movies recorded since training)` of `users` on
/// `threads` threads, in input order; `done` is told how many are ranked
/// as they finish. `adjustments`: the exposure controller's net adjustment
/// per item index (the `exposure` policy's; empty for none).
#[allow(clippy::too_many_arguments)]
pub fn recommend_all(
    model: &ServingModel,
    users: &[(u64, Vec<u64>)],
    k: usize,
    policy: Policy,
    filter: &Filter,
    adjustments: &[f32],
    threads: usize,
    done: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Row>, ScoringError> {
    let next = AtomicUsize::new(0);
    const CHUNK: usize = 64;
    let mut parts: Vec<(usize, Result<Vec<Row>, ScoringError>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let start = next.fetch_add(CHUNK, Ordering::Relaxed);
                        if start >= users.len() {
                            break;
                        }
                        let chunk = &users[start..(start + CHUNK).min(users.len())];
                        let rows: Result<Vec<Row>, ScoringError> = chunk
                            .iter()
                            .map(|(u, seen)| {
                                let r = model.recommend_adjusted(
                                    *u,
                                    k,
                                    seen,
                                    policy,
                                    filter,
                                    adjustments,
                                )?;
                                Ok(row(model, *u, &r.items, policy))
                            })
                            .collect();
                        done(chunk.len());
                        out.push((start, rows));
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    parts.sort_by_key(|(start, _)| *start);
    let mut rows = Vec::with_capacity(users.len());
    for (_, part) in parts {
        rows.extend(part?);
    }
    Ok(rows)
}

fn row(model: &ServingModel, user_id: u64, items: &[(u32, f32)], policy: Policy) -> Row {
    Row {
        user_id,
        movie_ids: items
            .iter()
            .map(|(i, _)| model.manifest.items[*i as usize].movie_id)
            .collect(),
        scores: items.iter().map(|(_, s)| *s).collect(),
        model_version: model.version().to_string(),
        policy: policy.spec(),
    }
}

/// Rows as JSON lines.
pub fn to_jsonl(rows: &[Row]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        serde_json::to_writer(&mut out, r).expect("a row serialises");
        out.push(b'\n');
    }
    out
}

/// Rows as one Snappy-compressed Parquet file: `user_id` uint64,
/// `movie_ids` list<uint64>, `scores` list<float>, `model_version`, `policy`.
pub fn to_parquet(rows: &[Row]) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::UInt64, false),
        Field::new("movie_ids", list(DataType::UInt64), false),
        Field::new("scores", list(DataType::Float32), false),
        Field::new("model_version", DataType::Utf8, false),
        Field::new("policy", DataType::Utf8, false),
    ]));
    let ids = ListArray::from_iter_primitive::<UInt64Type, _, _>(
        rows.iter()
            .map(|r| Some(r.movie_ids.iter().map(|&m| Some(m)))),
    );
    let scores = ListArray::from_iter_primitive::<Float32Type, _, _>(
        rows.iter().map(|r| Some(r.scores.iter().map(|&x| Some(x)))),
    );
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.user_id),
        )),
        Arc::new(ids),
        Arc::new(scores),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.model_version.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.policy.as_str()),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props))?;
    w.write(&batch)?;
    w.close()?;
    Ok(out)
}

/// Reads [`to_parquet`]'s rows back.
pub fn from_parquet(bytes: Vec<u8>) -> Result<Vec<Row>, parquet::errors::ParquetError> {
    use arrow_array::cast::AsArray;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(bytes),
    )?
    .build()?;
    let mut rows = Vec::new();
    for batch in reader {
        let b = batch?;
        let bad = || parquet::errors::ParquetError::General("unexpected batch schema".into());
        let users = b
            .column(0)
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(bad)?;
        let ids = b.column(1).as_list_opt::<i32>().ok_or_else(bad)?;
        let scores = b.column(2).as_list_opt::<i32>().ok_or_else(bad)?;
        let versions = b.column(3).as_string_opt::<i32>().ok_or_else(bad)?;
        let policies = b.column(4).as_string_opt::<i32>().ok_or_else(bad)?;
        for i in 0..b.num_rows() {
            rows.push(Row {
                user_id: users.value(i),
                movie_ids: ids.value(i).as_primitive::<UInt64Type>().values().to_vec(),
                scores: scores
                    .value(i)
                    .as_primitive::<Float32Type>()
                    .values()
                    .to_vec(),
                model_version: versions.value(i).to_string(),
                policy: policies.value(i).to_string(),
            });
        }
    }
    Ok(rows)
}

/// What a batch run wrote: `manifest.json` beside the shards.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchManifest {
    pub model_version: String,
    pub policy: String,
    /// The exposure controller's adjustments `exposure` ranked with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjustments: Option<String>,
    pub k: usize,
    pub filter: serde_json::Value,
    pub format: Format,
    pub users: usize,
    pub rows: usize,
    pub shards: Vec<ShardOutput>,
    pub created_at: String,
    /// Wall time of the whole run, where one process saw it all (the CLI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardOutput {
    pub key: String,
    pub rows: usize,
    pub bytes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_user_once_in_order() {
        assert_eq!(plan_shards(0, 10), Vec::<Range<usize>>::new());
        assert_eq!(plan_shards(25, 10), vec![0..10, 10..20, 20..25]);
        assert_eq!(plan_shards(20, 10), vec![0..10, 10..20]);
        assert_eq!(
            plan_shards(3, 0),
            vec![0..1, 1..2, 2..3],
            "at least one user a shard"
        );
        for (n, per) in [(1, 1), (999, 7), (10_000, 10_000), (10_001, 10_000)] {
            let s = plan_shards(n, per);
            assert_eq!(s.iter().map(|r| r.len()).sum::<usize>(), n);
            assert!(s.windows(2).all(|w| w[0].end == w[1].start) && s[0].start == 0);
            assert!(s.iter().all(|r| !r.is_empty() && r.len() <= per));
        }
        assert_eq!(
            shard_key("out/run1/", 3, Format::Parquet),
            "out/run1/part-00003.parquet"
        );
        assert_eq!(shard_key("", 12, Format::Jsonl), "part-00012.jsonl");
    }

    #[test]
    fn a_user_list_reads_ids_comments_and_csv_and_names_a_bad_line() {
        assert_eq!(
            parse_users("# users\n7\n  8 # eight\n9,extra\n\n10\tx\n").unwrap(),
            vec![7, 8, 9, 10]
        );
        assert_eq!(
            parse_users("1\nx2\n").unwrap_err().to_string(),
            "line 2: \"x2\" is not a user id"
        );
    }

    #[test]
    fn parquet_and_jsonl_round_trip_rows() {
        let rows = vec![
            Row {
                user_id: 7,
                movie_ids: vec![3, 1],
                scores: vec![0.5, 0.25],
                model_version: "v1".into(),
                policy: "none".into(),
            },
            Row {
                user_id: 8,
                movie_ids: vec![],
                scores: vec![],
                model_version: "v1".into(),
                policy: "none".into(),
            },
            Row {
                user_id: u64::MAX,
                movie_ids: vec![9],
                scores: vec![-1.0],
                model_version: "v1".into(),
                policy: "slots:slots=3".into(),
            },
        ];
        assert_eq!(from_parquet(to_parquet(&rows).unwrap()).unwrap(), rows);
        let lines: Vec<serde_json::Value> = String::from_utf8(to_jsonl(&rows))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["movie_ids"], serde_json::json!([3, 1]));
        assert_eq!(lines[2]["policy"], "slots:slots=3");
        assert_eq!(
            Format::parse("csv").unwrap_err().to_string(),
            "format must be parquet or jsonl, got \"csv\""
        );
    }
}
