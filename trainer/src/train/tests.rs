use super::*;
use candle_core::DType;

/// Batched validation ranks exactly as one scoring call per user does,
/// across chunk boundaries, with users out of order and repeated.
#[test]
fn batched_validation_equals_scoring_user_by_user() {
    let (n_users, n_items) = (1500, 40);
    let m = crate::model::spread(&NeuMf::new(n_users, n_items, 4, &[8, 4], 3).unwrap());
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let cases: Vec<LooCase> = (0..1300)
        .map(|k| LooCase {
            user: ((k * 7919) % n_users + k % 3) as u32 % n_users as u32,
            item: rng.gen_range(0..n_items as u32),
            negatives: (0..20).map(|_| rng.gen_range(0..n_items as u32)).collect(),
        })
        .collect();
    let batched = validate_model(&m, &cases).unwrap();
    let one_by_one = eval_loo(&m, &cases, 10).unwrap();
    assert_eq!(batched.users, 1300);
    assert!(
        (batched.hr - one_by_one.hr).abs() < 1e-12,
        "{batched:?} {one_by_one:?}"
    );
    assert!((batched.ndcg - one_by_one.ndcg).abs() < 1e-12);
    assert!(batched.hr > 0.0 && batched.hr < 1.0);
}

fn x(user: u32, item: u32, ts: i64) -> Interaction {
    Interaction::implicit(user, item, ts)
}

/// A warm refit continues the chosen weights for `refit_epochs` epochs
/// (at a vanishing step size they barely move); a cold one starts
/// afresh for the chosen epoch count. Both log their epochs after the
/// selection run's.
#[test]
fn a_warm_refit_continues_the_chosen_weights_and_a_cold_one_starts_afresh() {
    let (nu, ni) = (40usize, 30usize);
    let data: Vec<Interaction> = (0..nu as u32)
        .flat_map(|u| (0..6).map(move |k| x(u, (u * 7 + k * 5) % ni as u32, k as i64)))
        .collect();
    for user_input in [UserInput::History, UserInput::Id] {
        let hp = HyperParams {
            factors: 4,
            layers: vec![8, 4],
            epochs: 3,
            batch_size: 8,
            loss: Loss::Squared,
            positive_weight: 3.0,
            user_input,
            ..HyperParams::default()
        };
        let selected = train(nu, ni, &data, None, &hp, false).unwrap();
        let moved = |a: &NeuMfWeights, b: &NeuMfWeights| {
            a.gmf_item
                .iter()
                .zip(&b.gmf_item)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max)
        };
        let tiny = HyperParams {
            learning_rate: 1e-9,
            refit_epochs: 2,
            ..hp.clone()
        };
        let mut warm = selected.clone();
        refit(nu, ni, &data, &tiny, &mut warm, false).unwrap();
        assert_eq!(warm.epochs.len(), 3 + 2, "{user_input:?}");
        assert!(
            moved(&warm.weights, &selected.weights) < 1e-5,
            "{user_input:?}"
        );
        let mut cold = selected.clone();
        refit(
            nu,
            ni,
            &data,
            &HyperParams {
                refit_epochs: 0,
                ..tiny
            },
            &mut cold,
            false,
        )
        .unwrap();
        assert_eq!(cold.epochs.len(), 3 + selected.best_epoch);
        assert!(
            moved(&cold.weights, &selected.weights) > 1e-3,
            "{user_input:?}"
        );
    }
}

#[test]
fn popularity_negatives_follow_the_power_of_popularity() {
    // Item 0: 150 interactions, item 1: 50, items 2..9: none.
    let train: Vec<Interaction> = (0..200)
        .map(|u| x(u, if u < 150 { 0 } else { 1 }, 0))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let draw = |hp: &HyperParams, rng: &mut ChaCha8Rng| {
        let s = Sampler::new(200, 10, &train, hp);
        let mut c = [0usize; 10];
        for _ in 0..100_000 {
            c[s.negative(rng) as usize] += 1;
        }
        c.map(|v| v as f64 / 100_000.0)
    };
    let uniform = draw(&HyperParams::default(), &mut rng);
    assert!(
        uniform.iter().all(|p| (p - 0.1).abs() < 0.01),
        "{uniform:?}"
    );
    // β = 1: weights 151, 51 and 1 × 8 of 210.
    let hp = HyperParams {
        popularity_negatives: 1.0,
        ..HyperParams::default()
    };
    let p = draw(&hp, &mut rng);
    assert!((p[0] - 151.0 / 210.0).abs() < 0.01, "{p:?}");
    assert!((p[1] - 51.0 / 210.0).abs() < 0.01, "{p:?}");
    assert!((p[9] - 1.0 / 210.0).abs() < 0.002, "{p:?}");
}

#[test]
fn batch_targets_score_only_what_is_predicted() {
    // User 0 watched movies 0, 2, 3 (weights 1, 0.5, 0.25); user 1 movie 1.
    let seen = vec![vec![0u32, 2, 3], vec![1]];
    let weights = vec![vec![1.0f32, 0.5, 0.25], vec![1.0]];
    let train: Vec<Interaction> = [(0, 0), (0, 2), (0, 3), (1, 1)]
        .iter()
        .map(|&(u, i)| x(u, i, 0))
        .collect();
    let sampler = Sampler::new(2, 5, &train, &HyperParams::default());
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (mut y, mut obs, mut counted) = (Vec::new(), Vec::new(), Vec::new());
    let mut fill = |only: bool, dropped: &[(usize, u32)]| {
        let c = batch_targets(
            &[0, 1],
            &seen,
            &weights,
            dropped,
            &sampler,
            only,
            &mut rng,
            (&mut y, &mut obs, &mut counted),
        );
        (c, y.clone(), obs.clone(), counted.clone())
    };
    // Every watched movie is a target; every cell is scored.
    let (c, y1, o1, s1) = fill(false, &[(0, 2)]);
    assert_eq!(c, 2.75);
    assert_eq!(y1, [1.0, 0.0, 0.5, 0.25, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(o1, [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    assert!(s1.iter().all(|v| *v == 1.0));
    // Only the dropped movie 2 is predicted; movies 0 and 3, still in the
    // input, are not scored (nor is user 1's, nothing of theirs dropped).
    let (c, y2, o2, s2) = fill(true, &[(0, 2)]);
    assert_eq!(c, 0.5);
    assert_eq!(y2, [0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(o2, [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(s2, [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
}

#[test]
fn catalogue_losses_worked_by_hand() {
    let dev = candle_core::Device::Cpu;
    let logits = Tensor::new(&[[0.5f32, -1.0, 2.0], [0.0, 0.0, 0.0]], &dev).unwrap();
    let targets = Tensor::new(&[[1.0f32, 0.0, 0.5], [0.0, 2.0, 0.0]], &dev).unwrap();
    let observed = targets.gt(0.0).unwrap().to_dtype(DType::F32).unwrap();
    let all = observed.ones_like().unwrap();
    let loss = |hp: &HyperParams, counted: &Tensor| {
        catalogue_loss(hp, &logits, &targets, &observed, counted)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    // Squared, α = 2: 3·0.25 + 1·1 + 2·1, then 1·0 + 5·1 + 1·0.
    let squared = HyperParams {
        loss: Loss::Squared,
        positive_weight: 2.0,
        ..HyperParams::default()
    };
    assert!((loss(&squared, &all) - 8.75).abs() < 1e-5);
    // A cell not scored (the first row's third movie) adds nothing.
    let counted = Tensor::new(&[[1.0f32, 1.0, 0.0], [1.0, 1.0, 1.0]], &dev).unwrap();
    assert!((loss(&squared, &counted) - 6.75).abs() < 1e-5);
    // Softmax: row 1 −(1·ln p₀ + 0.5·ln p₂), row 2 −2·ln(1/3).
    let e = [0.5f64.exp(), (-1f64).exp(), 2f64.exp()];
    let z: f64 = e.iter().sum();
    let want = -((e[0] / z).ln() + 0.5 * (e[2] / z).ln()) + 2.0 * 3f64.ln();
    let softmax = HyperParams {
        loss: Loss::Softmax,
        ..HyperParams::default()
    };
    assert!((loss(&softmax, &all) - want).abs() < 1e-5, "{want}");
}

#[test]
fn recency_weights_halve_every_half_life_of_later_movies() {
    // User 0: items 5 (t=1), 2 (t=3), 9 (t=3), 7 (t=4); item 5 again at t=2.
    // User 1: no timestamps (all 0).
    let train = vec![
        x(0, 5, 1),
        x(0, 2, 3),
        x(0, 9, 3),
        x(0, 7, 4),
        x(0, 5, 2),
        x(1, 1, 0),
        x(1, 3, 0),
    ];
    let seen = shared::domain::dataset::histories(2, &train);
    assert_eq!(seen[0], vec![2, 5, 7, 9]);
    let w = recency_weights(&seen, &train, 2.0);
    // Later movies: 2 → 1 (7), 5 → 3 (2, 9, 7; its latest is t=2), 7 → 0, 9 → 1.
    let want = [0.5f32.powf(0.5), 0.5f32.powf(1.5), 1.0, 0.5f32.powf(0.5)];
    for (a, b) in w[0].iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{:?}", w[0]);
    }
    assert_eq!(w[1], vec![1.0, 1.0]);
    assert_eq!(recency_weights(&seen, &train, 0.0)[0], vec![1.0; 4]);
}

#[test]
fn young_accounts_count_at_their_weight() {
    let day = 86_400;
    // User 0 since day 0; user 1's first interaction one day before the last.
    let mut train: Vec<Interaction> = (0..4000).map(|i| x(0, i % 50, i as i64 * 60)).collect();
    let last = 4000 * 60 + 30 * day;
    train.extend((0..4000).map(|i| x(1, 50 + i % 50, last - day + i as i64)));
    let seen = shared::domain::dataset::histories(2, &train);
    let positives = |t: &[Interaction]| t.iter().map(|x| (x.user, x.item)).collect::<Vec<_>>();
    let count = |hp: &HyperParams| {
        let s = Sampler::new(2, 200, &train, hp);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (mut us, mut is, mut ys) = (Vec::new(), Vec::new(), Vec::new());
        s.epoch(
            &mut positives(&train),
            &seen,
            &mut rng,
            (&mut us, &mut is, &mut ys),
        );
        let pos = |u: u32| {
            us.iter()
                .zip(&ys)
                .filter(|(x, y)| **x == u && **y == 1.0)
                .count()
        };
        (s.young_users(), pos(0), pos(1), us.len())
    };
    let off = count(&HyperParams::default());
    assert_eq!(off, (0, 4000, 4000, 8000 * 5));
    let hp = HyperParams {
        young_account_days: 7,
        young_account_weight: 0.25,
        ..HyperParams::default()
    };
    let (young, old, kept, _) = count(&hp);
    assert_eq!((young, old), (1, 4000));
    // Binomial(4000, 0.25): 1000 ± 3·27.
    assert!((kept as f64 - 1000.0).abs() < 82.0, "{kept}");
    let (_, _, none, n) = count(&HyperParams {
        young_account_weight: 0.0,
        ..hp
    });
    assert_eq!((none, n), (0, 4000 * 5));
}
