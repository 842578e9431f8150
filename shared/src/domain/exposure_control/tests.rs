use super::*;

fn counts(pairs: &[(u64, u64)]) -> HashMap<u64, u64> {
    pairs.iter().copied().collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// A configuration with round numbers for the hand-worked cases.
fn round_numbers() -> ControllerConfig {
    ControllerConfig {
        step: 0.1,
        max_subsidy: 0.5,
        margin: 0.8,
        ..ControllerConfig::default()
    }
}

#[test]
fn the_band_comes_from_the_thresholds() {
    let d = ControllerConfig::default();
    // hi = 0.7 · 0.3 / 0.1 = 2.1; g = 0.245; lo = (1.1 − 0.5145) / 0.855.
    assert!(close(d.cap_ratio(), 2.1) && close(d.coverage_goal(), 0.4 / 0.7));
    assert!(
        close(d.floor_ratio(), 0.5855 / 0.855),
        "{}",
        d.floor_ratio()
    );
    let cfg = round_numbers();
    // hi = 0.8 · 0.30 / 0.1 = 2.4; g = 0.8 · 0.35 = 0.28;
    // lo = (1.4 − 0.672) / (1.4 − 0.28) = 0.65.
    assert!(close(cfg.cap_ratio(), 2.4), "{}", cfg.cap_ratio());
    assert!(close(cfg.floor_ratio(), 0.65), "{}", cfg.floor_ratio());
    assert!(close(cfg.coverage_goal(), 0.5));
    // At the floor and the cap, the two-point distribution's Gini is
    // exactly margin · max_gini: q at hi, 1 − q at lo, mean 1.
    let (lo, hi) = (cfg.floor_ratio(), cfg.cap_ratio());
    let q = (1.0 - lo) / (hi - lo);
    assert!(close(q * (1.0 - q) * (hi - lo), 0.28));
    // A tail-share threshold tighter than the top share sets the cap.
    let t = Thresholds {
        min_tail_share: 0.8,
        ..Thresholds::default()
    };
    let tight = ControllerConfig {
        thresholds: t,
        ..round_numbers()
    };
    assert!(close(tight.cap_ratio(), 1.6));
    assert_eq!(ControllerConfig::for_thresholds(t).thresholds, t);
}

#[test]
fn an_update_on_hand_worked_counts() {
    // 50 movies, 20 exposed: movie 1 200 times, movies 2 to 20 10 times
    // each, 390 in all. μ = 1/20; the top tenth is 2 movies, so the cap
    // is 0.8 · 0.3 / 2 = 0.12 and the floor 0.65 · 0.05 = 0.0325.
    // Movie 1 (0.513) is far over the cap: g = 1, price 0.1. The others
    // (0.0256) are under the floor: h = 1 − 0.0256 / 0.0325, subsidy
    // 0.1 · h each.
    let cfg = round_numbers();
    let mut window = vec![(1, 200)];
    window.extend((2..=20).map(|m| (m, 10)));
    let a = Adjustments::default().update(&counts(&window), 50, &cfg, 5);
    assert!(close(a.mean_share, 0.05));
    assert!(close(cfg.cap_share(20), 0.12) && close(cfg.cap_share(3), 0.24));
    assert_eq!(a.prices.len(), 1);
    assert!(close(a.prices[&1], 0.1), "{:?}", a.prices);
    assert_eq!(a.subsidies.len(), 19);
    let h = 1.0 - (10.0 / 390.0) / 0.0325;
    assert!(close(a.subsidies[&3], 0.1 * h));
    assert!(close(a.net(1), 0.1) && close(a.net(3), -0.1 * h));
    // 20 of the goal's 25 movies (0.5 · 50) exposed: reach = 0.1 · (1 −
    // 20/25), a subsidy of every unexposed movie.
    assert!(close(a.reach, 0.02), "{}", a.reach);
    assert!(close(a.net(40), -0.02));
    assert_eq!((a.version, a.updated_ms, a.catalog_size), (1, 5, 50));
    assert_eq!(a.name(), "adj-000001");

    // The next window: only movie 21, 100 times. Decayed exposure
    // d = 0.5^(1/3): 200d, 10d × 19, plus 100; 21 exposed: cap 0.12,
    // floor 0.65 / 21.
    let b = a.update(&counts(&[(21, 100)]), 50, &cfg, 6);
    let d = 0.5f64.powf(1.0 / 3.0);
    let total = 390.0 * d + 100.0;
    assert!(close(b.exposure[&1], 200.0 * d) && close(b.mean_share, 1.0 / 21.0));
    // Movie 1 (0.388) is still far over the cap, and movie 21 (0.244) too.
    assert!(close(b.prices[&1], 0.2) && close(b.prices[&21], 0.1));
    // Movie 3 (7.94 / 409.5 = 0.0194) is further under the floor.
    let h3 = 1.0 - (10.0 * d / total) / (0.65 / 21.0);
    assert!(close(b.subsidies[&3], a.subsidies[&3] + 0.1 * h3));
    assert!(!b.subsidies.contains_key(&21));
    // 21 of 25: reach grows by 0.1 · (1 − 21/25).
    assert!(
        close(b.reach, 0.02 + 0.1 * (1.0 - 21.0 / 25.0)),
        "{}",
        b.reach
    );
}

#[test]
fn multipliers_stay_bounded_and_fall_back_to_zero() {
    let cfg = round_numbers();
    let mut a = Adjustments::default();
    for w in 0..40 {
        a = a.update(&counts(&[(1, 1000), (2, 1)]), 100, &cfg, w);
    }
    assert_eq!(a.prices[&1], cfg.max_price, "bounded above");
    assert_eq!(a.subsidies[&2], cfg.max_subsidy, "bounded above");
    assert_eq!(a.reach, cfg.max_subsidy, "2 of the goal's 50 exposed");
    // Then an even spread over 60 movies (the coverage goal is 50):
    // each is at the mean, inside the band.
    let even: HashMap<u64, u64> = (3..63).map(|m| (m, 10)).collect();
    for w in 40..140 {
        a = a.update(&even, 100, &cfg, w);
    }
    assert!(a.is_neutral(), "{:?} {:?}", a.prices, a.subsidies);
    // Movies 1 and 2 have left the exposed set.
    assert!(!a.exposure.contains_key(&1) && !a.exposure.contains_key(&2));
}

#[test]
fn an_empty_window_only_decays() {
    let cfg = round_numbers();
    let a = Adjustments::default().update(&counts(&[(1, 100)]), 10, &cfg, 0);
    assert!(a.net(1) > 0.0);
    let b = a.update(&HashMap::new(), 10, &cfg, 1);
    // Still the only exposed movie (decayed): its share stays 1.
    assert!(b.net(1) > a.net(1));
    assert_eq!(b.version, 2);
}

#[test]
fn prices_move_scores_by_the_users_spread_and_keep_the_protected_first() {
    // 60 finite scores 60, 59, …, 1 (index i has 60 − i); spread = 60 − 11 = 49.
    let base: Vec<f32> = (0..60).map(|i| 60.0 - i as f32).collect();
    let mut net = vec![0.0f32; 60];
    net[0] = 0.5; // protected with protect = 1
    net[1] = 0.5; // 59 − 0.5·49 = 34.5
    net[30] = -0.5; // 30 + 24.5 = 54.5
    let mut s = base.clone();
    apply_prices(&mut s, &net, 1.0, 1);
    assert!(s[0] > s.iter().skip(1).fold(f32::MIN, |a, b| a.max(*b)));
    assert!((s[1] - 34.5).abs() < 1e-4, "{}", s[1]);
    assert!((s[30] - 54.5).abs() < 1e-4, "{}", s[30]);
    assert_eq!(s[2..30], base[2..30]);
    // Scale 0, or no adjustments: unchanged.
    let mut t = base.clone();
    apply_prices(&mut t, &net, 0.0, 1);
    assert_eq!(t, base);
    let mut u = base.clone();
    apply_prices(&mut u, &[0.0; 60], 1.0, 3);
    assert_eq!(u, base);
}

#[test]
fn the_protected_stay_ahead_of_the_largest_subsidy() {
    let base: Vec<f32> = (0..60).map(|i| 60.0 - i as f32).collect();
    let mut net = vec![-4.0f32; 60];
    net[0] = 4.0;
    let mut s = base.clone();
    apply_prices(&mut s, &net, 4.0, 2);
    let order = crate::domain::ranking::top_k_scored(&s, 3);
    assert_eq!(order[0].0, 0);
    assert_eq!(order[1].0, 1);
}

#[test]
fn masked_scores_stay_masked_and_few_scores_still_work() {
    let mut s = vec![3.0, f32::NEG_INFINITY, 1.0];
    apply_prices(&mut s, &[1.0, 1.0, 1.0], 1.0, 0);
    // spread = 3 − 1 = 2 over the two finite scores.
    assert_eq!(s[1], f32::NEG_INFINITY);
    assert!(
        (s[0] - 1.0).abs() < 1e-6 && (s[2] + 1.0).abs() < 1e-6,
        "{s:?}"
    );
}

#[test]
fn a_configuration_or_object_out_of_range_names_its_field() {
    let mut cfg = ControllerConfig::default();
    assert_eq!(cfg.validate(), Ok(()));
    cfg.step = 0.0;
    assert!(matches!(
        cfg.validate(),
        Err(ControlError::Invalid { field: "step", .. })
    ));
    cfg.step = 0.1;
    cfg.thresholds.min_tail_share = 1.0;
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.starts_with("min_tail_share must be"), "{e}");
    let mut a = Adjustments::default();
    a.prices.insert(3, f64::NAN);
    let e = a.validate().unwrap_err().to_string();
    assert!(e.starts_with("prices must be"), "{e}");
}
