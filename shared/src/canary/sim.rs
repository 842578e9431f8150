//! How often the automation decides right, simulated: hourly looks at a
//! canary or A/B test whose truth is known (conversion, error rate and
//! latency of each arm), with the real decision code ([`super::plan`]:
//! conversion test, guardrails, ramps) acting on each look. A ramp changes
//! the share of traffic the candidate gets from the next hour on; promote,
//! roll back or keep the primary ends the run.
//!
//! Latencies are lognormal and kept in a log-spaced histogram (0.5%
//! resolution), so the p95 guardrail sees the sampling noise a real window
//! has. Fairness is not simulated (it needs the lists; the unit tests judge it).

use super::{plan, Action, ArmReport, CanaryConfig, ExperimentReport};
use crate::audit::Window;
use crate::domain::experiment::quantile_ci_ranks;
use crate::ports::RolloutState;
use rand::SeedableRng;
use rand_distr::{Binomial, Distribution, LogNormal};
use serde::Serialize;

/// The truth of one simulated experiment.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub p_primary: f64,
    pub p_candidate: f64,
    pub error_primary: f64,
    pub error_candidate: f64,
    /// The candidate's latencies are the primary's times this.
    pub latency_factor: f64,
    /// What a perfect automation does.
    pub right: Action,
}

/// Traffic and timing of a simulated experiment.
#[derive(Clone, Debug, Serialize)]
pub struct Traffic {
    /// Recommendation requests per hour, both arms.
    pub per_hour: u64,
    pub strategy: crate::domain::strategy::Strategy,
    /// The candidate's starting percentage.
    pub percentage: f64,
    /// Looks (hours) before a run gives up undecided.
    pub hours: usize,
    /// Median and log-sd of the primary's latency.
    pub latency_median_ms: f64,
    pub latency_sigma: f64,
}

/// Outcomes over many runs of one scenario.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcomes {
    pub scenario: String,
    pub runs: usize,
    pub promote: usize,
    pub rollback: usize,
    pub keep_primary: usize,
    pub undecided: usize,
    /// Runs that ended as the scenario's `right` action.
    pub right: usize,
    /// Mean hours to the end of the runs that ended.
    pub mean_hours: f64,
    /// Rollbacks by the first failing guardrail.
    pub rollback_by: std::collections::BTreeMap<String, usize>,
}

/// Log-spaced latency histogram from 0.01 ms, bins 0.5% wide.
struct Histogram {
    counts: Vec<u64>,
    n: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

const H_MIN: f64 = 0.01;
const H_RATIO: f64 = 1.005;
const H_BINS: usize = 4000;

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: vec![0; H_BINS],
            n: 0,
        }
    }

    fn add(&mut self, v: f64) {
        let i = ((v / H_MIN).ln() / H_RATIO.ln()).floor().max(0.0) as usize;
        self.counts[i.min(H_BINS - 1)] += 1;
        self.n += 1;
    }

    /// Nearest-rank quantile, as the upper edge of its bin.
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        self.at_rank(((q * self.n as f64).ceil() as u64).clamp(1, self.n))
    }

    /// The `rank`-th smallest value (1-based), as the upper edge of its bin.
    fn at_rank(&self, rank: u64) -> Option<f64> {
        let mut cum = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cum += c;
            if cum >= rank {
                return Some(H_MIN * H_RATIO.powi(i as i32 + 1));
            }
        }
        None
    }
}

#[derive(Default)]
struct Arm {
    requests: u64,
    errors: u64,
    lists: u64,
    conversions: u64,
    latencies: Histogram,
}

impl Arm {
    /// One hour of `n` requests: errors at `err`, conversions of the lists
    /// at `conv`, latencies scaled by `factor`.
    fn serve(&mut self, n: u64, err: f64, conv: f64, factor: f64, sim: &mut Sampler) {
        let errors = sim.binomial(n, err);
        let lists = n - errors;
        self.requests += n;
        self.errors += errors;
        self.lists += lists;
        self.conversions += sim.binomial(lists, conv);
        for _ in 0..lists {
            self.latencies.add(sim.latency() * factor);
        }
    }

    fn report(&self, cfg: &CanaryConfig) -> ArmReport {
        let h = &self.latencies;
        ArmReport {
            requests: self.requests,
            errors: self.errors,
            error_rate: super::ratio(self.errors, self.requests),
            lists: self.lists,
            conversions: self.conversions,
            conversion_rate: super::ratio(self.conversions, self.lists),
            p95_latency_ms: h.quantile(0.95),
            p95_latency_ci_ms: quantile_ci_ranks(h.n as usize, 0.95, cfg.guardrail_z)
                .and_then(|(l, u)| Some((h.at_rank(l as u64)?, h.at_rank(u as u64)?))),
            ..ArmReport::default()
        }
    }
}

/// The simulation's one random stream.
struct Sampler {
    rng: rand_chacha::ChaCha8Rng,
    latency: LogNormal<f64>,
}

impl Sampler {
    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        Binomial::new(n, p.clamp(0.0, 1.0))
            .expect("valid binomial")
            .sample(&mut self.rng)
    }

    fn latency(&mut self) -> f64 {
        self.latency.sample(&mut self.rng)
    }
}

/// A fresh experiment between `primary` and `candidate`.
fn start(traffic: &Traffic) -> RolloutState {
    RolloutState {
        strategy: traffic.strategy,
        served_version: "primary".into(),
        candidate_version: Some("candidate".into()),
        percentage: traffic.percentage,
        experiment_id: Some("sim".into()),
        salt: Some("sim".into()),
        primary_policy: None,
        candidate_policy: None,
        revision: 1,
        updated_by: "sim".into(),
        updated_at: 0,
    }
}

/// The report the hourly canary run would see after `hour` hours.
fn report(
    state: &RolloutState,
    hour: usize,
    p: &Arm,
    c: &Arm,
    cfg: &CanaryConfig,
) -> ExperimentReport {
    ExperimentReport {
        strategy: state.strategy,
        experiment_id: state.experiment_id.clone(),
        primary_version: state.served_version.clone(),
        candidate_version: state.candidate_version.clone(),
        primary_policy: None,
        candidate_policy: None,
        percentage: state.percentage,
        revision: state.revision,
        started_at: Some(0),
        window: Window {
            from_ms: 0,
            to_ms: hour as i64 * super::HOUR_MS,
        },
        attribution_window_hours: 24.0,
        matured_share: None,
        arms: [
            ("primary".to_string(), p.report(cfg)),
            ("candidate".to_string(), c.report(cfg)),
        ]
        .into_iter()
        .collect(),
        analysis: None,
        guardrails: Vec::new(),
        shadow: None,
        action: Action::None,
        rationale: String::new(),
        alarm: false,
        proposed: None,
    }
}

/// One simulated experiment, hour by hour until the automation ends it:
/// the ending action and hour (`None` when undecided after the last hour).
fn run_one(
    scenario: &Scenario,
    traffic: &Traffic,
    cfg: &CanaryConfig,
    sim: &mut Sampler,
    out: &mut Outcomes,
) -> Option<(Action, usize)> {
    let mut state = start(traffic);
    let (mut p, mut c) = (Arm::default(), Arm::default());
    for hour in 1..=traffic.hours {
        let to_candidate = sim.binomial(traffic.per_hour, state.percentage / 100.0);
        p.serve(
            traffic.per_hour - to_candidate,
            scenario.error_primary,
            scenario.p_primary,
            1.0,
            sim,
        );
        c.serve(
            to_candidate,
            scenario.error_candidate,
            scenario.p_candidate,
            scenario.latency_factor,
            sim,
        );
        let mut r = report(&state, hour, &p, &c, cfg);
        plan(&mut r, &state, cfg);
        match r.action {
            Action::Ramp => {
                state.percentage = r
                    .proposed
                    .as_ref()
                    .map_or(state.percentage, |s| s.percentage);
            }
            Action::Promote | Action::Rollback | Action::KeepPrimary => {
                if r.action == Action::Rollback {
                    let by = r
                        .guardrails
                        .iter()
                        .find(|g| g.passed == Some(false))
                        .map_or("?", |g| g.name);
                    *out.rollback_by.entry(by.to_string()).or_insert(0) += 1;
                }
                return Some((r.action, hour));
            }
            _ => {}
        }
    }
    None
}

/// Runs `runs` simulated experiments of `scenario` (seeded).
pub fn simulate(
    scenario: &Scenario,
    traffic: &Traffic,
    runs: usize,
    cfg: &CanaryConfig,
    seed: u64,
) -> Outcomes {
    let mut sim = Sampler {
        rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        latency: LogNormal::new(traffic.latency_median_ms.ln(), traffic.latency_sigma)
            .expect("valid lognormal"),
    };
    let mut out = Outcomes {
        scenario: scenario.name.into(),
        runs,
        ..Outcomes::default()
    };
    let mut hours_sum = 0usize;
    for _ in 0..runs {
        match run_one(scenario, traffic, cfg, &mut sim, &mut out) {
            Some((a, hours)) => {
                hours_sum += hours;
                match a {
                    Action::Promote => out.promote += 1,
                    Action::Rollback => out.rollback += 1,
                    _ => out.keep_primary += 1,
                }
                out.right += (a == scenario.right) as usize;
            }
            None => out.undecided += 1,
        }
    }
    let ended = runs - out.undecided;
    out.mean_hours = if ended == 0 {
        0.0
    } else {
        hours_sum as f64 / ended as f64
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(name: &'static str, p_c: f64, err_c: f64, lat: f64, right: Action) -> Scenario {
        Scenario {
            name,
            p_primary: 0.10,
            p_candidate: p_c,
            error_primary: 0.002,
            error_candidate: err_c,
            latency_factor: lat,
            right,
        }
    }

    fn traffic(strategy: &'static str, percentage: f64) -> Traffic {
        Traffic {
            per_hour: 4000,
            strategy: strategy.parse().unwrap(),
            percentage,
            hours: 336,
            latency_median_ms: 20.0,
            latency_sigma: 0.3,
        }
    }

    #[test]
    fn histogram_quantiles_are_within_a_bin() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.add(v as f64);
        }
        let q = h.quantile(0.95).unwrap();
        assert!(q > 95.0 && q <= 95.0 * H_RATIO * H_RATIO, "{q}");
        assert_eq!(Histogram::new().quantile(0.5), None);
    }

    /// A canary from 5% (ramps 5, 25, 50) at 4,000 requests an hour, looked
    /// at every hour for up to two weeks, 200 runs per truth.
    #[test]
    fn the_canary_automation_decides_right() {
        let cfg = CanaryConfig::default();
        let t = traffic("canary", 5.0);
        let cases = [
            scenario("better (+1.5 pts)", 0.115, 0.002, 1.0, Action::Promote),
            scenario("worse (-1.5 pts)", 0.085, 0.002, 1.0, Action::Rollback),
            scenario("equal", 0.10, 0.002, 1.0, Action::Promote),
            scenario("equal, 5% slower", 0.10, 0.002, 1.05, Action::Promote),
            scenario("equal, 30% slower", 0.10, 0.002, 1.3, Action::Rollback),
            scenario("equal, 3% errors", 0.10, 0.03, 1.0, Action::Rollback),
        ];
        for (i, s) in cases.iter().enumerate() {
            let o = simulate(s, &t, 200, &cfg, 11 + i as u64);
            println!("{}", serde_json::to_string(&o).unwrap());
            assert!(o.right as f64 / o.runs as f64 >= 0.9, "{o:?}");
            if s.right == Action::Promote {
                // A false rollback raises an alarm: rare.
                assert!(o.rollback as f64 / o.runs as f64 <= 0.05, "{o:?}");
            } else {
                // Shipping a bad candidate is worse: rarer still.
                assert!(o.promote as f64 / o.runs as f64 <= 0.02, "{o:?}");
            }
        }
    }

    /// An A/B test at 50%: better ships, worse rolls back, equal keeps the primary.
    #[test]
    fn the_ab_automation_decides_right() {
        let cfg = CanaryConfig::default();
        let t = Traffic {
            per_hour: 500,
            ..traffic("ab_test", 50.0)
        };
        for (i, s) in [
            scenario("better (+1.5 pts)", 0.115, 0.002, 1.0, Action::Promote),
            scenario("worse (-1.5 pts)", 0.085, 0.002, 1.0, Action::Rollback),
            scenario("equal", 0.10, 0.002, 1.0, Action::KeepPrimary),
        ]
        .iter()
        .enumerate()
        {
            let o = simulate(s, &t, 200, &cfg, 21 + i as u64);
            println!("{}", serde_json::to_string(&o).unwrap());
            assert!(o.right as f64 / o.runs as f64 >= 0.9, "{o:?}");
        }
    }
}
