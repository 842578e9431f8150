//! Ingest throughput per core: parse + validate + Parquet-encode a batch of
//! 10,000 events, JSON and Confluent Avro, and the encode step alone.
//! `cargo bench -p movie-recs-shared --bench ingest`; criterion reports
//! elements (events) per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shared::events::parquet::{encode, LakeRecord};
use shared::events::{avro, parse_json, Event, EventType, Rate, Watch};
use std::hint::black_box;

const N: usize = 10_000;
const NOW: i64 = 1_795_896_000_000;

fn events() -> Vec<Event> {
    (0..N as u64)
        .map(|i| {
            if i % 2 == 0 {
                Event::Watch(Watch {
                    user_id: i % 6040,
                    movie_id: (i * 7919) % 3883,
                    minute: Some((i % 120) as u32),
                    ts_ms: NOW - (i as i64) * 1000,
                })
            } else {
                Event::Rate(Rate {
                    user_id: i % 6040,
                    movie_id: (i * 7919) % 3883,
                    rating: 1.0 + (i % 9) as f32 * 0.5,
                    ts_ms: NOW - (i as i64) * 1000,
                })
            }
        })
        .collect()
}

/// What ingest does per record before the write: decode, check, build the
/// lake record; then one Parquet file per type for the batch.
fn pipeline(records: &[(Vec<u8>, EventType)], avro_in: bool) -> usize {
    let mut by_type: [Vec<LakeRecord>; 3] = Default::default();
    for (i, (bytes, t)) in records.iter().enumerate() {
        let p = if avro_in {
            avro::parse_confluent(bytes, *t, NOW)
        } else {
            parse_json(bytes, Some(*t), NOW)
        }
        .expect("valid");
        by_type[*t as usize].push(LakeRecord {
            event_key: format!("kafka:movies/0/{i}"),
            event_id: p.event_id,
            source: format!("kafka:movies/0/{i}"),
            ingested_at_ms: NOW,
            event: p.event,
            reason: None,
        });
    }
    by_type
        .iter()
        .zip(EventType::ALL)
        .filter(|(r, _)| !r.is_empty())
        .map(|(r, t)| encode(t, r, false).len())
        .sum()
}

fn bench(c: &mut Criterion) {
    let evs = events();
    let json: Vec<(Vec<u8>, EventType)> = evs
        .iter()
        .map(|e| (e.to_json(None).to_string().into_bytes(), e.event_type()))
        .collect();
    let avro_in: Vec<(Vec<u8>, EventType)> = evs
        .iter()
        .map(|e| (avro::encode_confluent(e, None, 1), e.event_type()))
        .collect();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(20);
    g.bench_function(BenchmarkId::new("parse+validate+parquet", "json"), |b| {
        b.iter(|| black_box(pipeline(&json, false)))
    });
    g.bench_function(BenchmarkId::new("parse+validate+parquet", "avro"), |b| {
        b.iter(|| black_box(pipeline(&avro_in, true)))
    });
    let recs: Vec<LakeRecord> = evs
        .iter()
        .filter(|e| e.event_type() == EventType::Rate)
        .map(|e| LakeRecord {
            event_key: "k".into(),
            event_id: None,
            source: "s".into(),
            ingested_at_ms: NOW,
            event: e.clone(),
            reason: None,
        })
        .collect();
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.bench_function("parquet-encode-only/rate", |b| {
        b.iter(|| black_box(encode(EventType::Rate, &recs, false).len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
