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
mod tests;
