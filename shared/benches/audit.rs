//! One audit over 1,000,000 exposures (100,000 lists of 10 over a 3,883-movie
//! catalogue, Zipf-like popularity) and 1,000,000 rating events (50,000
//! users, 20 spammers): the computation alone, as the audit function runs it
//! once the window is read. `cargo bench -p movie-recs-shared --bench audit`.
//! End to end from JSONL files, with peak memory: `make bench-audit`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shared::audit::exposure::Catalog;
use shared::audit::spam::Rating;
use shared::audit::{audit, AuditConfig, AuditInput, Exposure};
use std::hint::black_box;

const CATALOG: u64 = 3883;

/// A deterministic generator (splitmix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A movie with probability falling like 1/rank.
    fn movie(&mut self) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((CATALOG as f64).powf(u) as u64).clamp(1, CATALOG)
    }
}

fn input() -> AuditInput {
    let mut rng = Rng(7);
    let exposures = (0..100_000u64)
        .map(|i| Exposure {
            request_id: None,
            user_id: i % 50_000,
            model_version: "v1".into(),
            variant: Some(if i % 10 == 0 { "candidate" } else { "primary" }.into()),
            ts_ms: 1_795_896_000_000 + i as i64,
            movie_ids: (0..10).map(|_| rng.movie()).collect(),
        })
        .collect();
    let mut ratings = Vec::with_capacity(1_000_000);
    for i in 0..1_000_000u64 {
        let spammer = i % 1000 == 0;
        ratings.push(Rating {
            user_id: if spammer {
                90_000 + i % 20
            } else {
                rng.next() % 50_000
            },
            movie_id: rng.movie(),
            rating: if spammer {
                5.0
            } else {
                1.0 + (rng.next() % 5) as f32
            },
            ts_ms: 1_795_896_000_000 + (rng.next() % 3_600_000) as i64,
        });
    }
    AuditInput {
        exposures,
        ratings,
        catalog: Catalog::from_items((1..=CATALOG).map(|m| (m, 10_000 / m))),
        ..AuditInput::default()
    }
}

fn bench(c: &mut Criterion) {
    let input = input();
    let cfg = AuditConfig::default();
    let mut g = c.benchmark_group("audit");
    g.sample_size(10);
    g.throughput(Throughput::Elements(2_000_000));
    g.bench_function("1M exposures + 1M ratings", |b| {
        b.iter_batched(
            || input.clone(),
            |i| black_box(audit(i, &cfg, 0)),
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
