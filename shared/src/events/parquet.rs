//! The event lake's Parquet files: one schema per event type, Snappy
//! compressed, written by ingest and read back by training, the audit and
//! the tests. Columns (documented in the README and declared for Athena in
//! template.yaml's Glue tables):
//!
//! | column | type | types |
//! |---|---|---|
//! | `event_key` | string | all: the idempotency key (event id or source coordinates) |
//! | `event_id` | string, null | all |
//! | `user_id` | int64 | all |
//! | `ts` | timestamp(ms, UTC) | all: event time |
//! | `source` | string | all: `kafka:<topic>/<partition>/<offset>`, `http`, `file:<path>:<line>` |
//! | `ingested_at` | timestamp(ms, UTC) | all |
//! | `movie_id` | int64 | watch, rate |
//! | `minute` | int32, null | watch |
//! | `rating` | double | rate |
//! | `request_id`, `variant` | string, null | reco_response |
//! | `movie_ids` | list<int64> | reco_response |
//! | `model_version` | string | reco_response |
//! | `status` | int32, null | reco_response |
//! | `latency_ms` | double, null | reco_response |
//! | `reason` | string | quarantine files only |

use super::{Event, EventType, Rate, RecoResponse, Watch};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::sync::Arc;

/// One event as the lake keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct LakeRecord {
    pub event_key: String,
    pub event_id: Option<String>,
    pub source: String,
    pub ingested_at_ms: i64,
    pub event: Event,
    /// Why it was quarantined (quarantine files only).
    pub reason: Option<String>,
}

/// Why a lake file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LakeFileError {
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("column {0:?} is missing or has the wrong type")]
    Column(&'static str),
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The Arrow schema of a type's files (`quarantine` adds the `reason` column).
pub fn schema(t: EventType, quarantine: bool) -> Schema {
    let mut f = vec![
        Field::new("event_key", DataType::Utf8, false),
        Field::new("event_id", DataType::Utf8, true),
        Field::new("user_id", DataType::Int64, false),
        Field::new("ts", ts_type(), false),
        Field::new("source", DataType::Utf8, false),
        Field::new("ingested_at", ts_type(), false),
    ];
    match t {
        EventType::Watch => f.extend([
            Field::new("movie_id", DataType::Int64, false),
            Field::new("minute", DataType::Int32, true),
        ]),
        EventType::Rate => f.extend([
            Field::new("movie_id", DataType::Int64, false),
            Field::new("rating", DataType::Float64, false),
        ]),
        EventType::RecoResponse => f.extend([
            Field::new("request_id", DataType::Utf8, true),
            Field::new(
                "movie_ids",
                DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))),
                false,
            ),
            Field::new("model_version", DataType::Utf8, false),
            Field::new("variant", DataType::Utf8, true),
            Field::new("status", DataType::Int32, true),
            Field::new("latency_ms", DataType::Float64, true),
        ]),
    }
    if quarantine {
        f.push(Field::new("reason", DataType::Utf8, false));
    }
    Schema::new(f)
}

fn strings<'a>(it: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(it))
}

fn times(it: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(it).with_timezone("UTC"))
}

/// Encodes records, all of type `t`, as one Parquet file.
///
/// # Panics
/// If a record is of another type (a caller bug).
pub fn encode(t: EventType, records: &[LakeRecord], quarantine: bool) -> Vec<u8> {
    assert!(records.iter().all(|r| r.event.event_type() == t));
    let schema = Arc::new(schema(t, quarantine));
    let r = records;
    let mut cols: Vec<ArrayRef> = vec![
        strings(r.iter().map(|x| Some(x.event_key.as_str()))),
        strings(r.iter().map(|x| x.event_id.as_deref())),
        Arc::new(Int64Array::from_iter_values(
            r.iter().map(|x| x.event.user_id() as i64),
        )),
        times(r.iter().map(|x| x.event.ts_ms())),
        strings(r.iter().map(|x| Some(x.source.as_str()))),
        times(r.iter().map(|x| x.ingested_at_ms)),
    ];
    let movie = || -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            r.iter().map(|x| x.event.movie_id().unwrap_or(0) as i64),
        ))
    };
    let recos = || {
        r.iter().filter_map(|x| match &x.event {
            Event::RecoResponse(e) => Some(e),
            _ => None,
        })
    };
    match t {
        EventType::Watch => cols.extend([
            movie(),
            Arc::new(Int32Array::from_iter(r.iter().map(|x| match &x.event {
                Event::Watch(w) => w.minute.map(|m| m as i32),
                _ => None,
            }))) as ArrayRef,
        ]),
        EventType::Rate => cols.extend([
            movie(),
            Arc::new(Float64Array::from_iter_values(r.iter().map(
                |x| match &x.event {
                    Event::Rate(e) => f64::from(e.rating),
                    _ => 0.0,
                },
            ))) as ArrayRef,
        ]),
        EventType::RecoResponse => cols.extend([
            strings(recos().map(|e| e.request_id.as_deref())),
            Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(
                recos().map(|e| {
                    Some(
                        e.movie_ids
                            .iter()
                            .map(|&m| Some(m as i64))
                            .collect::<Vec<_>>(),
                    )
                }),
            )) as ArrayRef,
            strings(recos().map(|e| Some(e.model_version.as_str()))),
            strings(recos().map(|e| e.variant.as_deref())),
            Arc::new(Int32Array::from_iter(
                recos().map(|e| e.status.map(i32::from)),
            )),
            Arc::new(Float64Array::from_iter(recos().map(|e| e.latency_ms))),
        ]),
    }
    if quarantine {
        cols.push(strings(
            r.iter().map(|x| Some(x.reason.as_deref().unwrap_or(""))),
        ));
    }
    let batch = RecordBatch::try_new(schema.clone(), cols).expect("columns match the schema");
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema, Some(props)).expect("in-memory writer");
    w.write(&batch).expect("in-memory write");
    w.close().expect("in-memory close");
    out
}

fn col<'a>(b: &'a RecordBatch, name: &'static str) -> Result<&'a ArrayRef, LakeFileError> {
    b.column_by_name(name).ok_or(LakeFileError::Column(name))
}

fn i64s<'a>(
    b: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a arrow_array::PrimitiveArray<Int64Type>, LakeFileError> {
    col(b, name)?
        .as_primitive_opt::<Int64Type>()
        .ok_or(LakeFileError::Column(name))
}

fn tss<'a>(
    b: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a arrow_array::PrimitiveArray<TimestampMillisecondType>, LakeFileError> {
    col(b, name)?
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or(LakeFileError::Column(name))
}

fn strs<'a>(b: &'a RecordBatch, name: &'static str) -> Result<&'a StringArray, LakeFileError> {
    col(b, name)?
        .as_string_opt::<i32>()
        .ok_or(LakeFileError::Column(name))
}

fn opt_str(a: &StringArray, i: usize) -> Option<String> {
    a.is_valid(i).then(|| a.value(i).to_string())
}

/// Reads a Parquet file written by [`encode`] for type `t`.
pub fn decode(t: EventType, bytes: Vec<u8>) -> Result<Vec<LakeRecord>, LakeFileError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))?.build()?;
    let mut out = Vec::new();
    for batch in reader {
        let b = batch?;
        let (key, id, user, ts, src, ing) = (
            strs(&b, "event_key")?,
            strs(&b, "event_id")?,
            i64s(&b, "user_id")?,
            tss(&b, "ts")?,
            strs(&b, "source")?,
            tss(&b, "ingested_at")?,
        );
        let reason = b
            .column_by_name("reason")
            .and_then(|c| c.as_string_opt::<i32>());
        for i in 0..b.num_rows() {
            let (user_id, ts_ms) = (user.value(i) as u64, ts.value(i));
            let event = match t {
                EventType::Watch => {
                    let minute = col(&b, "minute")?
                        .as_primitive_opt::<Int32Type>()
                        .ok_or(LakeFileError::Column("minute"))?;
                    Event::Watch(Watch {
                        user_id,
                        movie_id: i64s(&b, "movie_id")?.value(i) as u64,
                        minute: minute.is_valid(i).then(|| minute.value(i) as u32),
                        ts_ms,
                    })
                }
                EventType::Rate => Event::Rate(Rate {
                    user_id,
                    movie_id: i64s(&b, "movie_id")?.value(i) as u64,
                    rating: col(&b, "rating")?
                        .as_primitive_opt::<Float64Type>()
                        .ok_or(LakeFileError::Column("rating"))?
                        .value(i) as f32,
                    ts_ms,
                }),
                EventType::RecoResponse => {
                    let ids = col(&b, "movie_ids")?
                        .as_list_opt::<i32>()
                        .ok_or(LakeFileError::Column("movie_ids"))?;
                    let status = col(&b, "status")?
                        .as_primitive_opt::<Int32Type>()
                        .ok_or(LakeFileError::Column("status"))?;
                    let lat = col(&b, "latency_ms")?
                        .as_primitive_opt::<Float64Type>()
                        .ok_or(LakeFileError::Column("latency_ms"))?;
                    let list = ids.value(i);
                    let list = list
                        .as_primitive_opt::<Int64Type>()
                        .ok_or(LakeFileError::Column("movie_ids"))?;
                    Event::RecoResponse(RecoResponse {
                        request_id: opt_str(strs(&b, "request_id")?, i),
                        user_id,
                        movie_ids: list.values().iter().map(|&m| m as u64).collect(),
                        model_version: strs(&b, "model_version")?.value(i).to_string(),
                        variant: opt_str(strs(&b, "variant")?, i),
                        status: status.is_valid(i).then(|| status.value(i) as u16),
                        latency_ms: lat.is_valid(i).then(|| lat.value(i)),
                        ts_ms,
                    })
                }
            };
            out.push(LakeRecord {
                event_key: key.value(i).to_string(),
                event_id: opt_str(id, i),
                source: src.value(i).to_string(),
                ingested_at_ms: ing.value(i),
                event,
                reason: reason.and_then(|r| opt_str(r, i)),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64, event: Event) -> LakeRecord {
        LakeRecord {
            event_key: format!("kafka:t/0/{i}"),
            event_id: i.is_multiple_of(2).then(|| format!("e{i}")),
            source: format!("kafka:t/0/{i}"),
            ingested_at_ms: 1_764_000_000_000 + i as i64,
            event,
            reason: None,
        }
    }

    #[test]
    fn each_type_survives_a_parquet_round_trip() {
        let watch: Vec<_> = (0..50)
            .map(|i| {
                rec(
                    i,
                    Event::Watch(Watch {
                        user_id: i,
                        movie_id: i * 3,
                        minute: (i % 3 == 0).then_some(i as u32),
                        ts_ms: 1_700_000_000_000 + i as i64,
                    }),
                )
            })
            .collect();
        let rate: Vec<_> = (0..50)
            .map(|i| {
                let mut r = rec(
                    i,
                    Event::Rate(Rate {
                        user_id: u64::from(u32::MAX) + i,
                        movie_id: i,
                        rating: 1.0 + (i % 9) as f32 * 0.5,
                        ts_ms: 1_700_000_000_000,
                    }),
                );
                r.reason = Some(format!("velocity: {i}"));
                r
            })
            .collect();
        let reco: Vec<_> = (0..50)
            .map(|i| {
                rec(
                    i,
                    Event::RecoResponse(RecoResponse {
                        request_id: (i % 4 != 0).then(|| format!("r{i}")),
                        user_id: i,
                        movie_ids: (0..i % 7).collect(),
                        model_version: "v1".into(),
                        variant: (i % 2 == 0).then(|| "candidate".into()),
                        status: (i % 5 != 0).then_some(200),
                        latency_ms: (i % 3 != 0).then_some(i as f64 / 4.0),
                        ts_ms: 1_700_000_000_000,
                    }),
                )
            })
            .collect();
        assert_eq!(
            decode(EventType::Watch, encode(EventType::Watch, &watch, false)).unwrap(),
            watch
        );
        assert_eq!(
            decode(EventType::Rate, encode(EventType::Rate, &rate, true)).unwrap(),
            rate
        );
        assert_eq!(
            decode(
                EventType::RecoResponse,
                encode(EventType::RecoResponse, &reco, false)
            )
            .unwrap(),
            reco
        );
    }

    #[test]
    fn a_file_of_another_type_is_refused_by_column() {
        let w = vec![rec(
            1,
            Event::Watch(Watch {
                user_id: 1,
                movie_id: 2,
                minute: None,
                ts_ms: 1_700_000_000_000,
            }),
        )];
        let e = decode(EventType::Rate, encode(EventType::Watch, &w, false)).unwrap_err();
        assert!(matches!(e, LakeFileError::Column("rating")), "{e}");
        assert!(decode(EventType::Rate, b"not parquet".to_vec()).is_err());
    }
}
