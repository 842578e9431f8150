//! Serving cost of the exported NeuMF graph: scoring the whole catalogue for one
//! user through ONNX Runtime (`ort`), at the catalogue sizes of ML-100K (1,682),
//! ML-1M implicit (3,043) and ML-1M (3,706), with the default hyper-parameters,
//! and at 3,043 items with 256 predictive factors (README's ML-1M quality run).
//! Besides criterion's estimate, prints the median and p99 over 1,000 users.

use criterion::{criterion_group, criterion_main, Criterion};
use shared::artifact::HyperParams;
use shared::scoring::OnnxModel;
use std::time::Instant;
use trainer::export::export_onnx;
use trainer::NeuMf;

fn model(users: usize, items: usize, factors: usize) -> OnnxModel {
    let hp = HyperParams::default();
    let w = NeuMf::new(users, items, factors, &hp.layers, 7)
        .unwrap()
        .weights()
        .unwrap();
    OnnxModel::from_bytes(&export_onnx(&w, &[]), users, items)
        .expect("ONNX Runtime (run `make setup`)")
}

fn percentiles(m: &OnnxModel, users: usize) -> (f64, f64) {
    let mut out = Vec::new();
    for u in 0..100 {
        m.score(u % users as u32, &mut out).unwrap();
    }
    let mut t: Vec<f64> = (0..1000u32)
        .map(|u| {
            let s = Instant::now();
            m.score(u % users as u32, &mut out).unwrap();
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[499], t[989])
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("score_full_catalogue");
    let f = HyperParams::default().factors;
    for (users, items, factors) in [
        (943, 1682, f),
        (6022, 3043, f),
        (6040, 3706, f),
        (6022, 3043, 256),
    ] {
        let m = model(users, items, factors);
        let (p50, p99) = percentiles(&m, users);
        eprintln!("items={items} factors={factors}: 1,000 users, p50 {p50:.1} µs, p99 {p99:.1} µs");
        let mut out = Vec::new();
        let mut u = 0u32;
        let name = if factors == f {
            format!("items_{items}")
        } else {
            format!("items_{items}_factors_{factors}")
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                u = (u + 1) % users as u32;
                m.score(u, &mut out).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
