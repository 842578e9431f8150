//! Experiment assignment and statistics (pure; no I/O).
//!
//! **Assignment.** A user's bucket is the first 8 bytes of
//! SHA-256(`salt` ‖ `:` ‖ user id) as a big-endian integer, modulo 10,000.
//! A user keeps the bucket for as long as the experiment (its salt) lives,
//! on every platform and build; two experiments with different salts assign
//! independently. Under `canary` and `ab_test` buckets below
//! `percentage × 100` get the candidate.
//!
//! **Statistics.** A two-proportion z-test on conversion (pooled standard
//! error for z, unpooled for the confidence interval of the difference),
//! and an always-valid sequential test, the mixture sequential probability
//! ratio test (mSPRT; Johari, Pekelis and Walsh, "Always valid inference",
//! 2017) with a normal mixing distribution N(0, τ²) over the difference:
//! with θ̂ the observed difference and σ² = p₁(1−p₁)/n₁ + p₂(1−p₂)/n₂ its
//! variance,
//!
//! Λ = sqrt(σ² / (σ² + τ²)) · exp(θ̂² τ² / (2 σ² (σ² + τ²)))
//!
//! and H₀ (no difference) is rejected once Λ ≥ 1/α. Under H₀ the chance that
//! Λ *ever* crosses 1/α is at most α, so the test may be looked at every hour
//! without inflating false positives, unlike repeated z-tests.

pub use super::arm::Arm;
use sha2::{Digest, Sha256};

/// Buckets of the assignment hash.
pub const BUCKETS: u32 = 10_000;

/// The user's bucket in the experiment salted `salt`: 0..10,000.
pub fn bucket(salt: &str, user_id: u64) -> u32 {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(b":");
    h.update(user_id.to_string().as_bytes());
    let d = h.finalize();
    let x = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    (x % BUCKETS as u64) as u32
}

/// Whether the user falls in the candidate's `percentage` (0 to 100, in
/// steps of 0.01) of the experiment salted `salt`.
pub fn in_candidate(salt: &str, user_id: u64, percentage: f64) -> bool {
    let cut = (percentage.clamp(0.0, 100.0) * 100.0).round() as u32;
    bucket(salt, user_id) < cut
}

/// Standard normal CDF Φ(x), from erfc (W. J. Cody's rational Chebyshev
/// approximation as in Numerical Recipes `erfcc`, |error| < 1.2e-7).
pub fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let erfc = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        1.0 - erfc / 2.0
    } else {
        erfc / 2.0
    }
}

/// The standard normal quantile Φ⁻¹(p), 0 < p < 1 (P. J. Acklam's rational
/// approximation; relative error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0, "quantile of {p}");
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let lo = 0.024_25;
    if p < lo {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - lo {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// Conversions out of trials in one arm.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Counts {
    pub conversions: u64,
    pub trials: u64,
}

impl Counts {
    pub fn rate(&self) -> f64 {
        if self.trials == 0 {
            0.0
        } else {
            self.conversions as f64 / self.trials as f64
        }
    }
}

/// The two-proportion z-test of candidate against primary.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ZTest {
    /// Candidate rate − primary rate.
    pub difference: f64,
    pub z: f64,
    /// Two-sided.
    pub p_value: f64,
    /// Confidence interval of the difference at 1 − α (unpooled standard error).
    pub ci: (f64, f64),
    pub alpha: f64,
}

/// The z-test; `None` when an arm has no trials or both rates are 0 or 1.
pub fn z_test(primary: Counts, candidate: Counts, alpha: f64) -> Option<ZTest> {
    let (n1, n2) = (primary.trials as f64, candidate.trials as f64);
    if n1 == 0.0 || n2 == 0.0 {
        return None;
    }
    let (p1, p2) = (primary.rate(), candidate.rate());
    let pooled = (primary.conversions + candidate.conversions) as f64 / (n1 + n2);
    let se_pooled = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se_pooled == 0.0 {
        return None;
    }
    let d = p2 - p1;
    let z = d / se_pooled;
    let se = (p1 * (1.0 - p1) / n1 + p2 * (1.0 - p2) / n2).sqrt();
    let q = normal_quantile(1.0 - alpha / 2.0);
    Some(ZTest {
        difference: d,
        z,
        p_value: 2.0 * (1.0 - normal_cdf(z.abs())),
        ci: (d - q * se, d + q * se),
        alpha,
    })
}

/// The mSPRT of candidate against primary.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Sequential {
    /// The mixture likelihood ratio Λ.
    pub likelihood_ratio: f64,
    /// min(1, 1/Λ): reject at α when ≤ α.
    pub p_value: f64,
    pub tau: f64,
    pub reject: bool,
}

/// The mSPRT with mixing standard deviation `tau` (the size of difference
/// that matters, in conversion-rate points, e.g. 0.02).
pub fn sequential(primary: Counts, candidate: Counts, tau: f64, alpha: f64) -> Option<Sequential> {
    let (n1, n2) = (primary.trials as f64, candidate.trials as f64);
    if n1 == 0.0 || n2 == 0.0 {
        return None;
    }
    let (p1, p2) = (primary.rate(), candidate.rate());
    let var = p1 * (1.0 - p1) / n1 + p2 * (1.0 - p2) / n2;
    if var == 0.0 {
        return None;
    }
    let t2 = tau * tau;
    let d = p2 - p1;
    let log_l = 0.5 * (var / (var + t2)).ln() + d * d * t2 / (2.0 * var * (var + t2));
    let l = log_l.exp();
    Some(Sequential {
        likelihood_ratio: l,
        p_value: (1.0 / l).min(1.0),
        tau,
        reject: log_l >= (1.0 / alpha).ln(),
    })
}

/// What the data say about the candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    ShipCandidate,
    KeepPrimary,
    NoDifference,
    Inconclusive,
}

/// The decision rule's parameters.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DecisionRule {
    pub alpha: f64,
    /// Trials each arm needs before anything is decided.
    pub min_per_arm: u64,
    /// The mSPRT's τ.
    pub tau: f64,
    /// Differences inside ±this are "no difference" (conversion-rate points).
    pub equivalence_margin: f64,
}

impl Default for DecisionRule {
    fn default() -> Self {
        DecisionRule {
            alpha: 0.05,
            min_per_arm: 1000,
            tau: 0.02,
            equivalence_margin: 0.01,
        }
    }
}

/// A decision with the numbers and the reasoning behind it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Analysis {
    pub decision: Decision,
    pub rationale: String,
    pub primary: Counts,
    pub candidate: Counts,
    pub z_test: Option<ZTest>,
    pub sequential: Option<Sequential>,
}

/// Decides from the counts so far; safe to call at every look: only the
/// always-valid test ships or rejects a candidate.
pub fn decide(primary: Counts, candidate: Counts, rule: &DecisionRule) -> Analysis {
    let z = z_test(primary, candidate, rule.alpha);
    let seq = sequential(primary, candidate, rule.tau, rule.alpha);
    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
    let (decision, rationale) = if primary.trials < rule.min_per_arm
        || candidate.trials < rule.min_per_arm
    {
        (
            Decision::Inconclusive,
            format!(
                "not enough data: {} primary and {} candidate recommendations; each arm needs {}",
                primary.trials, candidate.trials, rule.min_per_arm
            ),
        )
    } else {
        match (&z, &seq) {
            (Some(z), Some(s)) if s.reject => {
                let better = z.difference > 0.0;
                (
                    if better {
                        Decision::ShipCandidate
                    } else {
                        Decision::KeepPrimary
                    },
                    format!(
                        "the candidate converts {} vs {} for the primary ({} points, {:.0}% CI {} to {}); the always-valid test rejects equality (mSPRT p = {:.4} ≤ α = {})",
                        pct(candidate.rate()),
                        pct(primary.rate()),
                        pct(z.difference),
                        100.0 * (1.0 - rule.alpha),
                        pct(z.ci.0),
                        pct(z.ci.1),
                        s.p_value,
                        rule.alpha
                    ),
                )
            }
            (Some(z), Some(s))
                if z.ci.0 > -rule.equivalence_margin && z.ci.1 < rule.equivalence_margin =>
            {
                (
                    Decision::NoDifference,
                    format!(
                        "the {:.0}% CI of the difference, {} to {}, lies inside ±{} (mSPRT p = {:.4}): the arms convert alike",
                        100.0 * (1.0 - rule.alpha),
                        pct(z.ci.0),
                        pct(z.ci.1),
                        pct(rule.equivalence_margin),
                        s.p_value
                    ),
                )
            }
            (Some(z), Some(s)) => (
                Decision::Inconclusive,
                format!(
                    "difference {} points ({:.0}% CI {} to {}); the always-valid test has not crossed (mSPRT p = {:.4}; fixed-horizon z-test p = {:.4}, not valid under repeated looks): keep collecting",
                    pct(z.difference),
                    100.0 * (1.0 - rule.alpha),
                    pct(z.ci.0),
                    pct(z.ci.1),
                    s.p_value,
                    z.p_value
                ),
            ),
            _ => (
                Decision::Inconclusive,
                "no variation in conversions yet (every recommendation converted, or none did)".into(),
            ),
        }
    };
    Analysis {
        decision,
        rationale,
        primary,
        candidate,
        z_test: z,
        sequential: seq,
    }
}

/// A recommendation list that was served (from its trace).
#[derive(Clone, Debug, PartialEq)]
pub struct Served {
    pub user_id: u64,
    pub arm: Arm,
    /// Epoch ms.
    pub ts_ms: i64,
    pub items: Vec<u64>,
    pub latency_ms: Option<f64>,
}

/// A watch or a rating.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Engagement {
    pub user_id: u64,
    pub movie_id: u64,
    pub ts_ms: i64,
}

/// What one arm's recommendations led to.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ArmOutcome {
    pub requests: u64,
    pub conversions: u64,
    pub conversion_rate: f64,
    /// Nearest-rank 95th percentile of the lists' latencies.
    pub p95_latency_ms: Option<f64>,
}

impl ArmOutcome {
    pub fn counts(&self) -> Counts {
        Counts {
            conversions: self.conversions,
            trials: self.requests,
        }
    }
}

/// The nearest-rank `q` quantile (0 < q ≤ 1) of `values`.
pub fn nearest_rank(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// 1-based ranks of distribution-free confidence bounds for the `q`
/// quantile of `n` values: `nq ∓ z·√(nq(1−q))` (the normal approximation
/// of the binomial count of values below the quantile), clamped to `1..=n`.
pub fn quantile_ci_ranks(n: usize, q: f64, z: f64) -> Option<(usize, usize)> {
    if n == 0 {
        return None;
    }
    let m = n as f64 * q;
    let h = z * (m * (1.0 - q)).sqrt();
    let clamp = |r: f64| (r as usize).clamp(1, n);
    Some((clamp((m - h).floor()), clamp((m + h).ceil())))
}

/// Attribution: a served list converts when its user watches or rates one
/// of its movies within `window_ms` after it was served (after, not at: an
/// event at the same millisecond cannot have been caused by the list).
/// Per arm: requests, conversions, conversion rate and p95 latency.
pub fn attribute(
    served: &[Served],
    events: &[Engagement],
    window_ms: i64,
) -> std::collections::BTreeMap<Arm, ArmOutcome> {
    let mut by_user: std::collections::HashMap<u64, Vec<(i64, u64)>> =
        std::collections::HashMap::new();
    for e in events {
        by_user
            .entry(e.user_id)
            .or_default()
            .push((e.ts_ms, e.movie_id));
    }
    for v in by_user.values_mut() {
        v.sort_unstable();
    }
    let mut acc: std::collections::BTreeMap<Arm, (u64, u64, Vec<f64>)> = Default::default();
    for s in served {
        let a = acc.entry(s.arm).or_default();
        a.0 += 1;
        if let Some(l) = s.latency_ms {
            a.2.push(l);
        }
        let Some(evs) = by_user.get(&s.user_id) else {
            continue;
        };
        let start = evs.partition_point(|&(t, _)| t <= s.ts_ms);
        let converted = evs[start..]
            .iter()
            .take_while(|&&(t, _)| t <= s.ts_ms + window_ms)
            .any(|(_, m)| s.items.contains(m));
        a.1 += converted as u64;
    }
    acc.into_iter()
        .map(|(arm, (requests, conversions, mut lat))| {
            (
                arm,
                ArmOutcome {
                    requests,
                    conversions,
                    conversion_rate: conversions as f64 / requests as f64,
                    p95_latency_ms: nearest_rank(&mut lat, 0.95),
                },
            )
        })
        .collect()
}

/// How often [`decide`], looked at every hour, reaches each decision when
/// the truth is known: one A/B experiment per run, `per_look` recommendations
/// per arm per hour at the given true conversion rates, stopping at the first
/// decision other than `inconclusive` or after `looks` hours.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SimulationResult {
    pub runs: usize,
    pub ship_candidate: usize,
    pub keep_primary: usize,
    pub no_difference: usize,
    pub inconclusive: usize,
    /// Mean hours until the run's decision (runs that decided).
    pub mean_hours_to_decision: f64,
}

/// Simulates `runs` experiments (seeded) with true rates `p_primary`, `p_candidate`.
pub fn simulate(
    p_primary: f64,
    p_candidate: f64,
    per_look: u64,
    looks: usize,
    runs: usize,
    rule: &DecisionRule,
    seed: u64,
) -> SimulationResult {
    use rand::SeedableRng;
    use rand_distr::{Binomial, Distribution};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let b1 = Binomial::new(per_look, p_primary).expect("rate in [0, 1]");
    let b2 = Binomial::new(per_look, p_candidate).expect("rate in [0, 1]");
    let mut out = SimulationResult {
        runs,
        ..SimulationResult::default()
    };
    let mut hours = 0usize;
    for _ in 0..runs {
        let mut a = Counts {
            conversions: 0,
            trials: 0,
        };
        let mut b = a;
        let mut decided = Decision::Inconclusive;
        for look in 1..=looks {
            a.trials += per_look;
            a.conversions += b1.sample(&mut rng);
            b.trials += per_look;
            b.conversions += b2.sample(&mut rng);
            decided = decide(a, b, rule).decision;
            if decided != Decision::Inconclusive {
                hours += look;
                break;
            }
        }
        match decided {
            Decision::ShipCandidate => out.ship_candidate += 1,
            Decision::KeepPrimary => out.keep_primary += 1,
            Decision::NoDifference => out.no_difference += 1,
            Decision::Inconclusive => out.inconclusive += 1,
        }
    }
    let decided = runs - out.inconclusive;
    out.mean_hours_to_decision = if decided == 0 {
        0.0
    } else {
        hours as f64 / decided as f64
    };
    out
}

#[cfg(test)]
mod tests {
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
}
