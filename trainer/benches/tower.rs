//! Training cost of NeuMF's MLP tower on the whole-catalogue objectives: one
//! batch of 128 users against ML-1M implicit's 3,043 movies with the default
//! tower (first-layer halves of width 32, then 16), forward and backward,
//! through the fused op (`trainer::tower::PairTower`) and through the same
//! tower written with candle's tensor ops (`trainer::tower::reference`).
//! This is the benchmark behind the hand-written backward pass.

use candle_core::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion};
use trainer::tower::{reference, PairTower};

fn var(shape: &[usize], seed: u64) -> Var {
    let len: usize = shape.iter().product();
    let mut x = seed;
    let v: Vec<f32> = (0..len)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect();
    Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let (b, n, w0, w1) = (128, 3043, 32, 16);
    let u = var(&[b, w0], 1);
    let i = var(&[n, w0], 2);
    let w = var(&[w0, w1], 3);
    let bias = var(&[w1], 4);
    let out = var(&[w1, 1], 5);
    let r = var(&[b, n], 6).as_tensor().clone();
    let tower = PairTower::new(&[w0, w1]);
    let mut g = c.benchmark_group("tower_128x3043");
    g.sample_size(20);
    g.bench_function("fused_forward_backward", |bch| {
        bch.iter(|| {
            let p = tower
                .pack(&[(w.as_tensor(), bias.as_tensor())], out.as_tensor())
                .unwrap();
            let y = tower.forward(u.as_tensor(), i.as_tensor(), &p).unwrap();
            (y * &r).unwrap().sum_all().unwrap().backward().unwrap()
        })
    });
    g.bench_function("candle_ops_forward_backward", |bch| {
        bch.iter(|| {
            let y = reference(
                u.as_tensor(),
                i.as_tensor(),
                &[(w.as_tensor(), bias.as_tensor())],
                out.as_tensor(),
            )
            .unwrap();
            (y * &r).unwrap().sum_all().unwrap().backward().unwrap()
        })
    });
    g.bench_function("fused_forward", |bch| {
        let p = tower
            .pack(&[(w.as_tensor(), bias.as_tensor())], out.as_tensor())
            .unwrap();
        bch.iter(|| tower.forward(u.as_tensor(), i.as_tensor(), &p).unwrap())
    });
    g.bench_function("candle_ops_forward", |bch| {
        bch.iter(|| {
            reference(
                u.as_tensor(),
                i.as_tensor(),
                &[(w.as_tensor(), bias.as_tensor())],
                out.as_tensor(),
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
