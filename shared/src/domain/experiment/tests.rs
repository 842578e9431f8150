use super::*;

/// Chi-square statistic of `counts` against a uniform expectation.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let e = total as f64 / counts.len() as f64;
    counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum()
}

#[test]
fn assignment_is_stable_and_balanced() {
    // Pinned to values computed with Python's hashlib, so a change of
    // hash (which would reshuffle every running experiment) is noticed.
    let pinned: Vec<u32> = (1..=3).map(|u| bucket("exp-1", u)).collect();
    assert_eq!(pinned, vec![6506, 5036, 2270]);
    // Balanced over 100,000 users: 100 groups of 100 buckets, chi-square
    // with 99 degrees of freedom; the 0.999 quantile is 148.2.
    let mut groups = vec![0u64; 100];
    for u in 0..100_000 {
        groups[(bucket("exp-1", u) / 100) as usize] += 1;
    }
    let chi = chi_square(&groups);
    assert!(chi < 148.2, "chi-square {chi}");
    // A 10% canary gets 10% ± 3 standard errors of users.
    let n = (0..100_000)
        .filter(|&u| in_candidate("exp-1", u, 10.0))
        .count() as f64;
    assert!(
        (n - 10_000.0).abs() < 3.0 * (100_000.0f64 * 0.1 * 0.9).sqrt(),
        "{n}"
    );
    assert_eq!((0..1000).filter(|&u| in_candidate("x", u, 0.0)).count(), 0);
    assert_eq!(
        (0..1000).filter(|&u| in_candidate("x", u, 100.0)).count(),
        1000
    );
}

#[test]
fn experiments_assign_independently() {
    // 2x2 table of arms (50%) in two experiments over 100,000 users:
    // chi-square of independence with 1 degree of freedom; 0.999 quantile 10.83.
    let mut t = [[0f64; 2]; 2];
    for u in 0..100_000 {
        let a = in_candidate("exp-a", u, 50.0) as usize;
        let b = in_candidate("exp-b", u, 50.0) as usize;
        t[a][b] += 1.0;
    }
    let n = 100_000.0;
    let mut chi = 0.0;
    for (i, row) in t.iter().enumerate() {
        for (j, &o) in row.iter().enumerate() {
            let e = (t[i][0] + t[i][1]) * (t[0][j] + t[1][j]) / n;
            chi += (o - e).powi(2) / e;
        }
    }
    assert!(chi < 10.83, "chi-square {chi}: {t:?}");
}

#[test]
fn normal_functions_match_tables() {
    for (x, p) in [
        (0.0, 0.5),
        (1.0, 0.841_344_75),
        (1.959_964, 0.975),
        (-2.575_829, 0.005),
        (3.0, 0.998_650_1),
    ] {
        assert!(
            (normal_cdf(x) - p).abs() < 2e-7,
            "Φ({x}) = {}",
            normal_cdf(x)
        );
    }
    assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-6);
    assert!((normal_quantile(0.005) + 2.575_829_304).abs() < 1e-6);
    assert!((normal_quantile(0.5)).abs() < 1e-9);
}

/// A textbook example: 200/1000 vs 250/1000 (pooled p = 0.225, SE =
/// sqrt(0.225·0.775·0.002) = 0.018675, z = 0.05/0.018675 = 2.6774,
/// p = 0.00742; unpooled SE = sqrt(0.16/1000 + 0.1875/1000) = 0.018641,
/// 95% CI 0.05 ± 1.95996·0.018641 = 0.01346 to 0.08654).
#[test]
fn z_test_matches_hand_computation() {
    let z = z_test(
        Counts {
            conversions: 200,
            trials: 1000,
        },
        Counts {
            conversions: 250,
            trials: 1000,
        },
        0.05,
    )
    .unwrap();
    assert!((z.difference - 0.05).abs() < 1e-12);
    assert!((z.z - 2.6774).abs() < 1e-3, "{}", z.z);
    assert!((z.p_value - 0.00742).abs() < 1e-4, "{}", z.p_value);
    assert!(
        (z.ci.0 - 0.01346).abs() < 1e-4 && (z.ci.1 - 0.08654).abs() < 1e-4,
        "{:?}",
        z.ci
    );
    assert!(z_test(
        Counts {
            conversions: 0,
            trials: 10
        },
        Counts {
            conversions: 0,
            trials: 10
        },
        0.05
    )
    .is_none());
    assert!(z_test(
        Counts {
            conversions: 0,
            trials: 0
        },
        Counts {
            conversions: 1,
            trials: 10
        },
        0.05
    )
    .is_none());
}

/// Λ by hand for 200/1000 vs 250/1000, τ = 0.02: σ² = 3.475e-4,
/// τ² = 4e-4: sqrt(3.475/7.475) = 0.68182; exponent 0.0025·4e-4 /
/// (2·3.475e-4·7.475e-4) = 1.92488; Λ = 0.68182·e^1.92488 = 4.6734.
#[test]
fn msprt_matches_hand_computation() {
    let s = sequential(
        Counts {
            conversions: 200,
            trials: 1000,
        },
        Counts {
            conversions: 250,
            trials: 1000,
        },
        0.02,
        0.05,
    )
    .unwrap();
    assert!(
        (s.likelihood_ratio - 4.6734).abs() < 1e-3,
        "{}",
        s.likelihood_ratio
    );
    assert!(
        !s.reject,
        "Λ 4.67 < 1/α = 20: the z-test is significant, the sequential test not yet"
    );
    let s = sequential(
        Counts {
            conversions: 2000,
            trials: 10_000,
        },
        Counts {
            conversions: 2500,
            trials: 10_000,
        },
        0.02,
        0.05,
    )
    .unwrap();
    assert!(s.reject && s.p_value < 1e-6);
}

#[test]
fn decisions_with_rationale() {
    let r = DecisionRule::default();
    let c = |x, n| Counts {
        conversions: x,
        trials: n,
    };
    let a = decide(c(10, 500), c(30, 500), &r);
    assert_eq!(a.decision, Decision::Inconclusive);
    assert!(
        a.rationale.contains("each arm needs 1000"),
        "{}",
        a.rationale
    );
    assert_eq!(
        decide(c(2000, 10_000), c(2500, 10_000), &r).decision,
        Decision::ShipCandidate
    );
    let worse = decide(c(2500, 10_000), c(2000, 10_000), &r);
    assert_eq!(worse.decision, Decision::KeepPrimary);
    assert!(
        worse.rationale.contains("rejects equality"),
        "{}",
        worse.rationale
    );
    // 20.0% vs 20.1% over 100,000 each: CI about ±0.35 points, inside ±1.
    assert_eq!(
        decide(c(20_000, 100_000), c(20_100, 100_000), &r).decision,
        Decision::NoDifference
    );
    // Significant at a fixed horizon, not yet for the always-valid test.
    let early = decide(c(200, 1000), c(250, 1000), &r);
    assert_eq!(early.decision, Decision::Inconclusive);
    assert!(
        early.rationale.contains("not valid under repeated looks"),
        "{}",
        early.rationale
    );
}

/// A/A runs looked at 24 times each: repeated z-tests "find" a
/// difference far more often than α; the always-valid test stays under α.
#[test]
fn repeated_looks_do_not_inflate_the_sequential_tests_false_positives() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let runs = 400;
    let (mut z_fp, mut seq_fp) = (0, 0);
    for _ in 0..runs {
        let (mut a, mut b) = (c0(), c0());
        let (mut z_hit, mut s_hit) = (false, false);
        for _look in 0..24 {
            for _ in 0..200 {
                a.trials += 1;
                a.conversions += rng.gen_bool(0.1) as u64;
                b.trials += 1;
                b.conversions += rng.gen_bool(0.1) as u64;
            }
            z_hit |= z_test(a, b, 0.05).is_some_and(|z| z.p_value < 0.05);
            s_hit |= sequential(a, b, 0.02, 0.05).is_some_and(|s| s.reject);
        }
        z_fp += z_hit as usize;
        seq_fp += s_hit as usize;
    }
    let (z_rate, s_rate) = (z_fp as f64 / runs as f64, seq_fp as f64 / runs as f64);
    println!("A/A, 24 looks: repeated z-tests {z_rate}, mSPRT {s_rate}");
    assert!(z_rate > 0.12, "repeated z-tests: {z_rate}");
    assert!(s_rate <= 0.05, "mSPRT: {s_rate}");
}

fn c0() -> Counts {
    Counts {
        conversions: 0,
        trials: 0,
    }
}

/// Hourly looks for up to two weeks, 250 recommendations per arm per
/// hour, 10% base conversion: a candidate 1.5 points better or worse is
/// found and the right way round; an equal one is almost never shipped
/// or rejected.
#[test]
fn the_decision_rule_decides_right_under_hourly_looks() {
    let rule = DecisionRule::default();
    let run = |p2| simulate(0.10, p2, 250, 336, 200, &rule, 5);
    let better = run(0.115);
    let worse = run(0.085);
    let equal = run(0.10);
    println!("better {better:?}\nworse {worse:?}\nequal {equal:?}");
    assert!(better.ship_candidate as f64 / 200.0 >= 0.9, "{better:?}");
    assert_eq!(better.keep_primary, 0, "{better:?}");
    assert!(worse.keep_primary as f64 / 200.0 >= 0.9, "{worse:?}");
    assert_eq!(worse.ship_candidate, 0, "{worse:?}");
    let wrong = equal.ship_candidate + equal.keep_primary;
    assert!(wrong as f64 / 200.0 <= 0.05, "{equal:?}");
    assert!(equal.no_difference as f64 / 200.0 >= 0.9, "{equal:?}");
}

/// Three lists, worked by hand (window 24 h = 86,400,000 ms):
/// primary user 1 at t=1000 shows [10, 11]: a watch of 11 at t=5000
/// converts it; primary user 2 at t=1000 shows [20]: a rating of 20 at
/// t=1000 (same instant) and one of 21 at t=2000 do not, nor one of 20
/// after the window; candidate user 3 shows [30]: converted at exactly
/// t + window.
#[test]
fn attribution_worked_by_hand() {
    let day = 86_400_000;
    let served = vec![
        Served {
            user_id: 1,
            arm: Arm::Primary,
            ts_ms: 1000,
            items: vec![10, 11],
            latency_ms: Some(5.0),
        },
        Served {
            user_id: 2,
            arm: Arm::Primary,
            ts_ms: 1000,
            items: vec![20],
            latency_ms: Some(9.0),
        },
        Served {
            user_id: 3,
            arm: Arm::Candidate,
            ts_ms: 0,
            items: vec![30],
            latency_ms: None,
        },
    ];
    let e = |u, m, t| Engagement {
        user_id: u,
        movie_id: m,
        ts_ms: t,
    };
    let events = vec![
        e(1, 11, 5000),
        e(2, 20, 1000),
        e(2, 21, 2000),
        e(2, 20, 1000 + day + 1),
        e(3, 30, day),
    ];
    let out = attribute(&served, &events, day);
    let p = &out[&Arm::Primary];
    assert_eq!((p.requests, p.conversions, p.conversion_rate), (2, 1, 0.5));
    // Nearest rank of 95% over [5, 9]: ceil(1.9) = 2nd = 9.
    assert_eq!(p.p95_latency_ms, Some(9.0));
    let c = &out[&Arm::Candidate];
    assert_eq!((c.requests, c.conversions, c.p95_latency_ms), (1, 1, None));
    assert_eq!(
        c.counts(),
        Counts {
            conversions: 1,
            trials: 1
        }
    );
    // 100 values, q = 0.95, z = 3: 95 ∓ 3·√4.75 = 95 ∓ 6.54 → ranks 88 and 100.
    assert_eq!(quantile_ci_ranks(100, 0.95, 3.0), Some((88, 100)));
    assert_eq!(quantile_ci_ranks(1, 0.95, 3.0), Some((1, 1)));
    assert_eq!(quantile_ci_ranks(0, 0.95, 3.0), None);
    // Nearest rank on 1..=100: the 95th value.
    let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(nearest_rank(&mut v, 0.95), Some(95.0));
    assert_eq!(nearest_rank(&mut [], 0.95), None);
}
