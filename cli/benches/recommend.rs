//! The recommend hot path, warm and in process, at the ML-1M catalogue size
//! (6,040 users × 3,706 movies) with the default NeuMF: the model alone
//! (score + mask seen + top-k) and the whole router (HTTP parsing, JSON body,
//! trace hand-off). Prints p50/p99 over 5,000 requests besides criterion's estimate.

use axum::body::Body;
use axum::http::Request;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt;
use rand::{Rng, SeedableRng};
use shared::adapters::local::{FolderRegistry, SqliteStore};
use shared::artifact::*;
use shared::http::{router, sync_model, ApiConfig, AppState};
use shared::ports::{ArtifactFile, ModelStore};
use std::sync::Arc;
use std::time::Instant;
use tower::ServiceExt;

const USERS: usize = 6040;
const ITEMS: usize = 3706;

/// Publishes a default-size NeuMF (random weights: serving cost does not depend on them).
fn publish(reg: &FolderRegistry) {
    let hp = HyperParams::default();
    let w = trainer::NeuMf::new(USERS, ITEMS, hp.factors, &hp.layers, 1)
        .unwrap()
        .weights()
        .unwrap();
    let onnx = trainer::export::export_onnx(&w, &[]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    // ~165 seen movies per user, as in ML-1M.
    let hist: Vec<Vec<u32>> = (0..USERS)
        .map(|_| {
            let mut v: Vec<u32> = (0..165).map(|_| rng.gen_range(0..ITEMS as u32)).collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    let history = encode_history(&hist);
    let neighbours = trainer::similar::model_neighbours(&w).encode();
    let m = Manifest {
        format: MANIFEST_FORMAT,
        name: "neumf".into(),
        version: "bench".into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        model_type: "NeuMF".into(),
        hyperparameters: hp,
        git_sha: "bench".into(),
        data: DataInfo {
            source: "bench".into(),
            format: "synthetic".into(),
            snapshot_id: "0".repeat(64),
            users: USERS,
            items: ITEMS,
            interactions: 0,
            excluded_users: Vec::new(),
        },
        files: [
            (MODEL_FILE.to_string(), file_entry(&onnx)),
            (HISTORY_FILE.to_string(), file_entry(&history)),
            (NEIGHBOURS_FILE.to_string(), file_entry(&neighbours)),
        ]
        .into(),
        users: (1..=USERS as u64).collect(),
        items: (0..ITEMS)
            .map(|i| ItemEntry {
                movie_id: i as u64 + 1,
                title: format!("Movie {i}"),
                genres: vec![["Drama", "Comedy", "Action", "Horror"][i % 4].into()],
                year: Some(1930 + (i % 90) as u16),
                popularity: (ITEMS - i) as u32,
            })
            .collect(),
        metrics: Metrics {
            validation: Validation {
                protocol: "ncf".into(),
                users: 0,
                hr10: 0.0,
                ndcg10: 0.0,
                popularity: ValidationBaseline {
                    hr10: 0.0,
                    ndcg10: 0.0,
                },
                best_epoch: 0,
                epochs_run: 0,
            },
            test: None,
            seconds_per_epoch: 0.0,
        },
        quality_gate: QualityGate {
            rule: "bench".into(),
            passed: true,
            forced: false,
        },
        onnx: OnnxInfo {
            opset: 17,
            input: ONNX_INPUT.into(),
            output: ONNX_OUTPUT.into(),
            user_vector: Default::default(),
        },
        defaults: None,
    };
    reg.publish(
        &m,
        &[
            ArtifactFile {
                name: MODEL_FILE,
                bytes: &onnx,
            },
            ArtifactFile {
                name: HISTORY_FILE,
                bytes: &history,
            },
            ArtifactFile {
                name: NEIGHBOURS_FILE,
                bytes: &neighbours,
            },
        ],
    )
    .unwrap();
}

/// A route's request for user (or movie) `u`.
type Uri = fn(u64) -> String;

fn pct(mut t: Vec<f64>) -> (f64, f64) {
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[t.len() * 99 / 100])
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(FolderRegistry::new(dir.path()));
    publish(&reg);
    let db = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    let st = Arc::new(AppState::with_stores(
        shared::http::ApiStores {
            traces: Some(db.clone()),
            history: Some(db.clone()),
            rollout: Some(db.clone()),
            trending: Some(db.clone()),
            exposure: None,
            request_metrics: None,
        },
        ApiConfig::default(),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(sync_model(&st, reg.clone())).unwrap();
    let model = st.current_model().unwrap();
    let app = router(st.clone());
    // A day of trending counts: every movie in some of the last 24 hours.
    let now_h = chrono::Utc::now().timestamp() / 3600;
    let counts: Vec<(i64, u64, u32)> = (0..ITEMS as u64)
        .flat_map(|m| {
            (0..24)
                .filter(move |h| (m + h) % 5 == 0)
                .map(move |h| (now_h - h as i64, m + 1, 1 + (m % 7) as u32))
        })
        .collect();
    rt.block_on(shared::ports::TrendingStore::add(
        db.as_ref(),
        &counts,
        i64::MAX / 2,
    ))
    .unwrap();
    let get = |uri: String| {
        let app = app.clone();
        async move {
            let resp = app
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert!(resp.status().is_success());
            resp.into_body().collect().await.unwrap().to_bytes().len()
        }
    };
    let call = |u: u64| get(format!("/recommend/{u}?k=20"));
    // Warm up, then percentiles.
    for u in 1..=200 {
        rt.block_on(call(u));
    }
    let t: Vec<f64> = (0..5000u64)
        .map(|i| {
            let s = Instant::now();
            model.recommend(1 + i % USERS as u64, 20, &[]).unwrap();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let (p50, p99) = pct(t);
    eprintln!("model.recommend  (3,706 items): p50 {p50:.3} ms, p99 {p99:.3} ms over 5,000 users");
    let t: Vec<f64> = (0..5000u64)
        .map(|i| {
            let s = Instant::now();
            rt.block_on(call(1 + i % USERS as u64));
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let (p50, p99) = pct(t);
    eprintln!("GET /recommend   (3,706 items): p50 {p50:.3} ms, p99 {p99:.3} ms over 5,000 requests (router, JSON, trace hand-off)");

    // The catalogue routes, each next to /recommend (same router, warm).
    let routes: [(&str, Uri); 6] = [
        ("recommend_filtered", |u| {
            format!("/recommend/{u}?k=20&genre=Comedy,Drama&year_from=1960")
        }),
        ("similar", |u| {
            format!("/similar/{}?k=10", 1 + u % ITEMS as u64)
        }),
        ("similar_for_user", |u| {
            format!("/similar/{}?k=10&user_id={u}", 1 + u % ITEMS as u64)
        }),
        ("popular", |_| "/popular?k=20".to_string()),
        ("popular_filtered", |_| {
            "/popular?k=20&genre=Horror&year_to=1980".to_string()
        }),
        ("trending", |_| "/trending?k=20&hours=24".to_string()),
    ];
    for (name, uri) in routes {
        let t: Vec<f64> = (0..5000u64)
            .map(|i| {
                let s = Instant::now();
                rt.block_on(get(uri(1 + i % USERS as u64)));
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let (p50, p99) = pct(t);
        eprintln!("GET {name:<19}: p50 {p50:.3} ms, p99 {p99:.3} ms over 5,000 requests");
    }

    let mut u = 0u64;
    for (name, uri) in routes {
        c.bench_function(&format!("router_{name}_3706"), |b| {
            b.iter(|| {
                u = u % USERS as u64 + 1;
                rt.block_on(get(uri(u)))
            })
        });
    }
    c.bench_function("model_recommend_3706", |b| {
        b.iter(|| {
            u = u % USERS as u64 + 1;
            model.recommend(u, 20, &[]).unwrap()
        })
    });
    c.bench_function("router_recommend_3706", |b| {
        b.iter(|| {
            u = u % USERS as u64 + 1;
            rt.block_on(call(u))
        })
    });
}

/// Fold-in at the same catalogue size: a history-input model (the default
/// of `movie-recs train`; one epoch on synthetic data, as serving cost does
/// not depend on the weights) ranking a user who just watched a movie, so
/// the score cache misses and the user's vector is folded in from their
/// training movies plus the new one, through the ONNX graph. Next to it,
/// the same user without news (a cache hit).
fn bench_fold_in(c: &mut Criterion) {
    use shared::data::synthetic::{generate, SyntheticConfig};
    use trainer::pipeline::{train_and_publish, TrainOptions};
    let dir = tempfile::tempdir().unwrap();
    let reg = FolderRegistry::new(dir.path());
    let ds = generate(&SyntheticConfig {
        users: USERS,
        items: ITEMS,
        ..Default::default()
    })
    .dataset;
    let mut hp = trainer::defaults::for_data(&ds).hp;
    hp.epochs = 1;
    let out = train_and_publish(
        &reg,
        &ds,
        &TrainOptions {
            hp,
            version: Some("fold".into()),
            force: true,
            progress: false,
            defaults: None,
        },
    )
    .unwrap();
    assert_eq!(out.manifest.onnx.user_vector, UserVector::History);
    let model = shared::scoring::ServingModel::load(&reg.fetch("fold").unwrap()).unwrap();
    let users = ds.user_ids.clone();
    let mut n = 0u64;
    // A different new movie on every call: never the cached row.
    let mut miss = || {
        n += 1;
        let u = users[n as usize % users.len()];
        model
            .recommend(u, 20, &[1 + (n * 7919) % ITEMS as u64])
            .unwrap()
    };
    for _ in 0..200 {
        miss();
    }
    let t: Vec<f64> = (0..3000)
        .map(|_| {
            let s = Instant::now();
            miss();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let (p50, p99) = pct(t);
    eprintln!(
        "fold-in, a new event (cache miss): p50 {p50:.3} ms, p99 {p99:.3} ms over 3,000 requests"
    );
    c.bench_function("model_fold_in_miss_3706", |b| b.iter(&mut miss));
    c.bench_function("model_fold_in_hit_3706", |b| {
        b.iter(|| {
            n += 1;
            model.recommend(users[n as usize % 64], 20, &[]).unwrap()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(5));
    targets = bench, bench_fold_in
}
criterion_main!(benches);
