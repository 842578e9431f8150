//! Experiment analysis and the automated canary.
//!
//! [`evaluate`] turns one experiment's traces (the lists each arm served,
//! with their status and latency) and the watch and rate events that
//! followed them into, per arm, requests, conversions, conversion rate,
//! error rate, p95 latency and the audit's fairness metrics; the decision of
//! [`crate::domain::experiment::decide`] on conversion; the guardrails; and
//! the action the automation takes:
//!
//! | situation | `canary` | `ab_test` |
//! |---|---|---|
//! | a guardrail fails (incl. conversion significantly worse) | `rollback` + alarm | `rollback` + alarm |
//! | `ship_candidate` | `promote` | `promote` |
//! | `no_difference` | `promote` (no worse, guardrails pass) | `keep_primary` |
//! | `inconclusive`, guardrails measured and passing | `ramp` to the next step | `wait` |
//! | otherwise | `wait` | `wait` |
//!
//! `promote` makes the candidate the fixed version, `rollback` and
//! `keep_primary` the primary; `ramp` raises the percentage and keeps the
//! experiment (id and salt), so users on the candidate stay there. `fixed`
//! and `shadow` rollouts have nothing to act on (`none`); under `shadow` the
//! report compares the candidate's unserved lists with the served ones.
//!
//! Guardrails, each `passed: null` until both arms have
//! [`CanaryConfig::min_guardrail_requests`]:
//! - error rate: the candidate's at most [`CanaryConfig::max_error_rate_increase`]
//!   above the primary's;
//! - p95 latency: at most [`CanaryConfig::max_p95_regression`] (10%) above the
//!   primary's, plus [`CanaryConfig::p95_slack_ms`] of timer noise.
//!
//!   These two are looked at every hour, so noise alone would cross a bare
//!   limit sooner or later: they pass while the candidate is within the
//!   limit, fail only when it is significantly beyond it (one-sided bound at
//!   [`CanaryConfig::guardrail_z`]; for p95, the candidate's distribution-free
//!   interval above the limit taken at the top of the primary's), and in
//!   between stay pending (`null`): the canary waits instead of ramping;
//! - conversion: not significantly worse (the always-valid test);
//! - fairness: catalogue coverage, gini_exposed, top-10% share and tail share
//!   against the audit's thresholds. These grow or shrink with the number of
//!   lists, so both arms are measured on the same number of lists (evenly
//!   spaced in time); a candidate that misses a threshold passes only when the
//!   primary misses it too on the same sample and the candidate is no worse
//!   than [`CanaryConfig::fairness_tolerance`].

mod guardrails;
pub mod job;
pub mod sim;

use guardrails::guardrails;

use crate::audit::exposure::{self, Catalog, ExposureCounts};
use crate::audit::{Thresholds, Window};
use crate::domain::arm::Arm;
use crate::domain::experiment::{
    attribute, decide, nearest_rank, quantile_ci_ranks, Analysis, Decision, DecisionRule,
    Engagement, Served,
};
use crate::domain::strategy::Strategy;
use crate::ports::{RolloutSpec, RolloutState};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

pub const HOUR_MS: i64 = 3_600_000;

/// The automation's parameters (defaults are the product's policy).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CanaryConfig {
    pub rule: DecisionRule,
    /// A list converts when its user watches or rates one of its movies
    /// within this long after it was served.
    pub attribution_ms: i64,
    /// Absolute error-rate increase the candidate may show (0.01 = 1 point).
    pub max_error_rate_increase: f64,
    /// Relative p95 latency regression allowed (0.10 = 10%).
    pub max_p95_regression: f64,
    /// Added to the p95 limit: differences below it are timer noise.
    pub p95_slack_ms: f64,
    /// Requests each arm needs before a guardrail is judged.
    pub min_guardrail_requests: u64,
    /// How sure a guardrail must be before it fails: the normal quantile of
    /// its one-sided bound (3: looked at every hour for weeks, a false
    /// rollback stays rare).
    pub guardrail_z: f64,
    /// How much worse than the primary a fairness metric that misses its
    /// threshold on both arms may be.
    pub fairness_tolerance: f64,
    pub thresholds: Thresholds,
    /// Canary percentages, in order; `ramp` moves to the next one above the
    /// current percentage.
    pub ramp: Vec<f64>,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            rule: DecisionRule::default(),
            attribution_ms: 24 * HOUR_MS,
            max_error_rate_increase: 0.01,
            max_p95_regression: 0.10,
            p95_slack_ms: 0.5,
            min_guardrail_requests: 200,
            guardrail_z: 3.0,
            fairness_tolerance: 0.01,
            thresholds: Thresholds::default(),
            ramp: vec![5.0, 25.0, 50.0],
        }
    }
}

/// The audit's fairness metrics over a set of lists.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Fairness {
    pub lists: usize,
    pub catalog_coverage: Option<f64>,
    pub gini_exposed: Option<f64>,
    pub gini_catalog: Option<f64>,
    pub top_10_pct_share: Option<f64>,
    pub tail_share: Option<f64>,
}

impl Fairness {
    pub fn of(lists: &[&[u64]], catalog: &Catalog) -> Self {
        let mut counts = ExposureCounts::default();
        for l in lists {
            counts.add_list(l);
        }
        let m = exposure::metrics(&counts, catalog);
        Fairness {
            lists: lists.len(),
            catalog_coverage: m.catalog_coverage,
            gini_exposed: m.gini_exposed,
            gini_catalog: m.gini_catalog,
            top_10_pct_share: m.top_10_pct_share,
            tail_share: m.tail_share,
        }
    }
}

/// `n` of `items`, evenly spaced (all of them when `n ≥ len`).
fn evenly<T: Copy>(items: &[T], n: usize) -> Vec<T> {
    if n >= items.len() {
        return items.to_vec();
    }
    (0..n).map(|i| items[i * items.len() / n]).collect()
}

/// What one arm did in the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ArmReport {
    pub model_versions: Vec<String>,
    /// Every traced request of the arm, failed ones included.
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    /// Lists served (status 200): the trials of the conversion test.
    pub lists: u64,
    pub conversions: u64,
    pub conversion_rate: Option<f64>,
    pub p95_latency_ms: Option<f64>,
    /// Distribution-free confidence bounds of the p95 (order statistics at
    /// [`CanaryConfig::guardrail_z`]).
    pub p95_latency_ci_ms: Option<(f64, f64)>,
    /// Over all the arm's lists.
    pub fairness: Fairness,
    /// Over as many lists as the smaller arm served (the guardrails' basis).
    pub fairness_matched: Fairness,
}

/// One guardrail; `passed` is `None` while there is too little data.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub passed: Option<bool>,
    pub candidate: Option<f64>,
    pub primary: Option<f64>,
    pub limit: Option<f64>,
    pub detail: String,
}

/// What the automation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The candidate becomes the fixed version.
    Promote,
    /// Back to the primary alone, with an alarm.
    Rollback,
    /// An A/B test ended without a gain: the primary stays, no alarm.
    KeepPrimary,
    /// A canary passes its guardrails at this percentage: raise it.
    Ramp,
    /// Keep collecting.
    Wait,
    /// No canary or A/B test is running.
    None,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Rollback => "rollback",
            Action::KeepPrimary => "keep_primary",
            Action::Ramp => "ramp",
            Action::Wait => "wait",
            Action::None => "none",
        }
    }
}

/// The candidate's unserved lists under `shadow`, next to the served ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ShadowReport {
    pub candidate_version: Option<String>,
    /// Requests scored by both models.
    pub requests: u64,
    /// Mean share of the candidate's list that the served list also holds.
    pub mean_overlap: Option<f64>,
    /// Share of these requests whose served list converted.
    pub served_conversion_rate: Option<f64>,
    /// Share whose user went on to watch or rate a movie of the candidate's
    /// list. Biased towards the served list (users saw that one), so a
    /// candidate that matches it here is promising, not proven.
    pub shadow_hit_rate: Option<f64>,
    pub served_fairness: Fairness,
    pub shadow_fairness: Fairness,
}

/// Everything an analysis found and what follows from it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExperimentReport {
    pub strategy: Strategy,
    pub experiment_id: Option<String>,
    pub primary_version: String,
    pub candidate_version: Option<String>,
    /// The arms' re-ranking policies (`None`: the service default).
    pub primary_policy: Option<String>,
    pub candidate_policy: Option<String>,
    pub percentage: f64,
    pub revision: u64,
    /// When the experiment (this id) began, from the change log.
    pub started_at: Option<i64>,
    /// Lists served in `[from_ms, to_ms)` were analysed.
    pub window: Window,
    pub attribution_window_hours: f64,
    /// Share of the lists whose attribution window has fully elapsed; the
    /// rest may still convert (both arms alike, as assignment ignores time).
    pub matured_share: Option<f64>,
    /// `primary`, `candidate`.
    pub arms: BTreeMap<String, ArmReport>,
    /// The conversion test (canary and ab_test).
    pub analysis: Option<Analysis>,
    pub guardrails: Vec<Check>,
    pub shadow: Option<ShadowReport>,
    pub action: Action,
    pub rationale: String,
    /// Whether the action raises the rollback alarm.
    pub alarm: bool,
    /// The rollout the action writes (`promote`, `rollback`, `keep_primary`, `ramp`).
    pub proposed: Option<RolloutSpec>,
}

/// One traced request, as the analysis reads it.
#[derive(Clone, Debug, PartialEq)]
struct Traced {
    arm: Arm,
    user_id: u64,
    ts_ms: i64,
    ok: bool,
    latency_ms: Option<f64>,
    items: Vec<u64>,
    model_version: Option<String>,
    shadow: Option<Vec<u64>>,
}

/// The request a trace records, when it belongs to `experiment_id`.
fn traced(t: &Value, experiment_id: Option<&str>) -> Option<Traced> {
    let t = crate::domain::trace::Trace::read(t)?;
    if t.experiment_id.as_deref() != experiment_id {
        return None;
    }
    Some(Traced {
        ok: t.ok(),
        arm: t.arm,
        user_id: t.user_id,
        ts_ms: t.timestamp,
        latency_ms: t.latency_ms,
        items: t.items,
        model_version: Some(t.model_version),
        shadow: t.shadow.and_then(|s| s.items),
    })
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// What an analysis reads.
#[derive(Clone, Copy)]
pub struct Observed<'a> {
    /// Traces of the window; those of other experiments or times are ignored.
    pub traces: &'a [Value],
    /// Watches and ratings up to `now_ms`.
    pub events: &'a [Engagement],
    /// The catalogue the fairness metrics are judged against.
    pub catalog: &'a Catalog,
    pub window: Window,
    /// When the experiment began.
    pub started_at: Option<i64>,
    pub now_ms: i64,
}

/// Analyses the experiment `state` runs.
pub fn evaluate(state: &RolloutState, obs: &Observed, cfg: &CanaryConfig) -> ExperimentReport {
    let Observed {
        traces,
        events,
        catalog,
        window,
        started_at,
        now_ms,
    } = *obs;
    let experiment = state
        .experiment_id
        .as_deref()
        .filter(|_| state.strategy.has_candidate());
    let rows: Vec<Traced> = traces
        .iter()
        .filter_map(|t| traced(t, experiment))
        .filter(|t| t.ts_ms >= window.from_ms && t.ts_ms < window.to_ms)
        .collect();
    let served: Vec<Served> = rows
        .iter()
        .filter(|r| r.ok)
        .map(|r| Served {
            user_id: r.user_id,
            arm: r.arm,
            ts_ms: r.ts_ms,
            items: r.items.clone(),
            latency_ms: r.latency_ms,
        })
        .collect();
    let arms = arm_reports(state, &rows, &served, events, catalog, cfg);
    let matured = served
        .iter()
        .filter(|s| s.ts_ms + cfg.attribution_ms <= now_ms)
        .count();
    let shadow = (state.strategy == Strategy::Shadow)
        .then(|| shadow_report(state, &rows, events, catalog, cfg));

    let mut report = ExperimentReport {
        strategy: state.strategy,
        experiment_id: experiment.map(str::to_string),
        primary_version: state.served_version.clone(),
        candidate_version: state.candidate_version.clone(),
        primary_policy: state.primary_policy.clone(),
        candidate_policy: state.candidate_policy.clone(),
        percentage: state.percentage,
        revision: state.revision,
        started_at,
        window,
        attribution_window_hours: cfg.attribution_ms as f64 / HOUR_MS as f64,
        matured_share: ratio(matured as u64, served.len() as u64),
        arms,
        analysis: None,
        guardrails: Vec::new(),
        shadow,
        action: Action::None,
        rationale: String::new(),
        alarm: false,
        proposed: None,
    };
    plan(&mut report, state, cfg);
    report
}

/// Per arm: requests, errors, conversions, p95 latency (with its interval)
/// and fairness, the latter also on as many lists as the smaller arm served.
fn arm_reports(
    state: &RolloutState,
    rows: &[Traced],
    served: &[Served],
    events: &[Engagement],
    catalog: &Catalog,
    cfg: &CanaryConfig,
) -> BTreeMap<String, ArmReport> {
    let outcomes = attribute(served, events, cfg.attribution_ms);
    let mut arms: BTreeMap<String, ArmReport> = BTreeMap::new();
    let arm_names: &[Arm] = if state.strategy.splits_traffic() {
        &Arm::ALL
    } else {
        &[Arm::Primary]
    };
    for name in arm_names {
        arms.insert(name.to_string(), ArmReport::default());
    }
    for r in rows {
        let a = arms.entry(r.arm.to_string()).or_default();
        a.requests += 1;
        a.errors += (!r.ok) as u64;
        if let Some(v) = &r.model_version {
            if !a.model_versions.iter().any(|x| x == v) {
                a.model_versions.push(v.to_string());
            }
        }
    }
    let lists_of = |arm: &str| -> Vec<&[u64]> {
        rows.iter()
            .filter(|r| r.ok && r.arm.as_str() == arm)
            .map(|r| r.items.as_slice())
            .collect()
    };
    let matched = arms.keys().map(|a| lists_of(a).len()).min().unwrap_or(0);
    for (name, a) in arms.iter_mut() {
        a.error_rate = ratio(a.errors, a.requests);
        if let Some(o) = name.parse::<Arm>().ok().and_then(|arm| outcomes.get(&arm)) {
            a.lists = o.requests;
            a.conversions = o.conversions;
        }
        a.conversion_rate = ratio(a.conversions, a.lists);
        let mut lat: Vec<f64> = rows
            .iter()
            .filter(|r| r.ok && r.arm.as_str() == name)
            .filter_map(|r| r.latency_ms)
            .collect();
        // Sorts `lat`, which the interval's order statistics then read.
        a.p95_latency_ms = nearest_rank(&mut lat, 0.95);
        a.p95_latency_ci_ms = quantile_ci_ranks(lat.len(), 0.95, cfg.guardrail_z)
            .map(|(l, u)| (lat[l - 1], lat[u - 1]));
        let lists = lists_of(name);
        a.fairness = Fairness::of(&lists, catalog);
        a.fairness_matched = Fairness::of(&evenly(&lists, matched), catalog);
    }
    arms
}

fn shadow_report(
    state: &RolloutState,
    rows: &[Traced],
    events: &[Engagement],
    catalog: &Catalog,
    cfg: &CanaryConfig,
) -> ShadowReport {
    let both: Vec<&Traced> = rows.iter().filter(|r| r.ok && r.shadow.is_some()).collect();
    let as_served = |pick: &dyn Fn(&Traced) -> Vec<u64>| -> Vec<Served> {
        both.iter()
            .map(|r| Served {
                user_id: r.user_id,
                arm: Arm::Candidate,
                ts_ms: r.ts_ms,
                items: pick(r),
                latency_ms: None,
            })
            .collect()
    };
    let rate = |s: Vec<Served>| {
        attribute(&s, events, cfg.attribution_ms)
            .get(&Arm::Candidate)
            .map(|o| o.conversion_rate)
    };
    let overlaps: Vec<f64> = both
        .iter()
        .filter_map(|r| {
            let sh = r.shadow.as_ref()?;
            (!sh.is_empty())
                .then(|| sh.iter().filter(|m| r.items.contains(m)).count() as f64 / sh.len() as f64)
        })
        .collect();
    let served_lists: Vec<&[u64]> = both.iter().map(|r| r.items.as_slice()).collect();
    let shadow_lists: Vec<&[u64]> = both.iter().filter_map(|r| r.shadow.as_deref()).collect();
    ShadowReport {
        candidate_version: state.candidate_version.clone(),
        requests: both.len() as u64,
        mean_overlap: (!overlaps.is_empty())
            .then(|| overlaps.iter().sum::<f64>() / overlaps.len() as f64),
        served_conversion_rate: rate(as_served(&|r| r.items.clone())),
        shadow_hit_rate: rate(as_served(&|r| r.shadow.clone().unwrap_or_default())),
        served_fairness: Fairness::of(&served_lists, catalog),
        shadow_fairness: Fairness::of(&shadow_lists, catalog),
    }
}

/// Fills in the analysis, guardrails and action.
fn plan(r: &mut ExperimentReport, state: &RolloutState, cfg: &CanaryConfig) {
    let strategy = state.strategy;
    let Some(candidate) = state.candidate_version.clone() else {
        r.rationale = format!(
            "no experiment is running: strategy {strategy} serves {} to everyone",
            state.served_version
        );
        return;
    };
    if strategy == Strategy::Shadow {
        r.rationale = "shadow serves only the primary: nothing to promote automatically; compare the shadow section, then start a canary".into();
        return;
    }
    if !strategy.splits_traffic() {
        r.rationale = format!("strategy {strategy} has no experiment to act on");
        return;
    }
    let p = r.arms.get("primary").cloned().unwrap_or_default();
    let c = r.arms.get("candidate").cloned().unwrap_or_default();
    let to_counts = |a: &ArmReport| crate::domain::experiment::Counts {
        conversions: a.conversions,
        trials: a.lists,
    };
    let analysis = decide(to_counts(&p), to_counts(&c), &cfg.rule);
    r.guardrails = guardrails(&p, &c, &analysis, cfg);
    let failed: Vec<String> = r
        .guardrails
        .iter()
        .filter(|g| g.passed == Some(false))
        .map(|g| format!("{}: {}", g.name, g.detail))
        .collect();
    if failed.is_empty() {
        act(r, state, &candidate, &analysis, cfg);
    } else {
        let why = failed.join("; ");
        r.action = Action::Rollback;
        r.alarm = true;
        r.rationale = format!("guardrail failed, back to {}: {why}", state.served_version);
        r.proposed = Some(keep_primary(state, format!("canary rollback: {why}")));
    }
    r.analysis = Some(analysis);
}

/// The primary alone, with its policy (the arm that stays keeps it).
fn keep_primary(state: &RolloutState, why: String) -> RolloutSpec {
    RolloutSpec::fixed(&state.served_version)
        .with_primary_policy(state.primary_policy.clone())
        .because(why)
}

/// The action when no guardrail failed: promote, keep the primary, ramp or wait.
fn act(
    r: &mut ExperimentReport,
    state: &RolloutState,
    candidate: &str,
    analysis: &Analysis,
    cfg: &CanaryConfig,
) {
    match (analysis.decision, state.strategy) {
        (Decision::ShipCandidate, _) => {
            r.action = Action::Promote;
            r.rationale = format!("promote {candidate}: {}", analysis.rationale);
        }
        (Decision::NoDifference, Strategy::Canary) => {
            r.action = Action::Promote;
            r.rationale = format!(
                "promote {candidate}: no worse than {} and every guardrail passes; {}",
                state.served_version, analysis.rationale
            );
        }
        (Decision::NoDifference, _) => {
            r.action = Action::KeepPrimary;
            r.rationale = format!(
                "the A/B test found no gain, {} stays: {}",
                state.served_version, analysis.rationale
            );
        }
        _ => ramp_or_wait(r, state, candidate, analysis, cfg),
    }
    match r.action {
        Action::Promote => {
            r.proposed = Some(
                RolloutSpec::fixed(candidate)
                    .with_primary_policy(state.candidate_policy.clone())
                    .because(format!("canary promote: {}", analysis.rationale)),
            )
        }
        Action::KeepPrimary => {
            r.proposed = Some(keep_primary(
                state,
                format!("experiment ended, primary kept: {}", analysis.rationale),
            ))
        }
        _ => {}
    }
}

/// No decision yet: a canary whose error-rate and latency guardrails are
/// measured and pass ramps to its next step (same experiment); otherwise wait.
fn ramp_or_wait(
    r: &mut ExperimentReport,
    state: &RolloutState,
    candidate: &str,
    analysis: &Analysis,
    cfg: &CanaryConfig,
) {
    let measured = r
        .guardrails
        .iter()
        .filter(|g| matches!(g.name, "error_rate" | "p95_latency"))
        .all(|g| g.passed == Some(true));
    let next = cfg.ramp.iter().copied().find(|&s| s > state.percentage);
    if let (Strategy::Canary, true, Some(to)) = (state.strategy, measured, next) {
        r.action = Action::Ramp;
        r.rationale = format!(
            "guardrails pass at {}%: ramp {candidate} to {to}% (same experiment); conversion: {}",
            state.percentage, analysis.rationale
        );
        r.proposed = Some(
            RolloutSpec {
                strategy: state.strategy,
                primary_version: state.served_version.clone(),
                candidate_version: Some(candidate.to_string()),
                percentage: to,
                experiment_id: state.experiment_id.clone(),
                salt: state.salt.clone(),
                primary_policy: state.primary_policy.clone(),
                candidate_policy: state.candidate_policy.clone(),
                reason: None,
            }
            .because(format!("canary ramp {}% → {to}%", state.percentage)),
        );
        return;
    }
    let pending: Vec<&str> = r
        .guardrails
        .iter()
        .filter(|g| g.passed.is_none())
        .map(|g| g.name)
        .collect();
    r.action = Action::Wait;
    r.rationale = if pending.is_empty() {
        format!("keep collecting: {}", analysis.rationale)
    } else {
        format!(
            "keep collecting: {}; guardrails without enough data: {}",
            analysis.rationale,
            pending.join(", ")
        )
    };
}

/// A few lines for people: the arms, the guardrails, the action.
pub fn render(r: &ExperimentReport) -> String {
    use std::fmt::Write;
    let f = |x: Option<f64>, pct: bool| match (x, pct) {
        (Some(v), true) => format!("{:.2}%", 100.0 * v),
        (Some(v), false) => format!("{v:.2}"),
        (None, _) => "-".into(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} (candidate {}, {}%), experiment {}",
        r.strategy,
        r.primary_version,
        r.candidate_version.as_deref().unwrap_or("-"),
        r.percentage,
        r.experiment_id.as_deref().unwrap_or("-"),
    );
    let _ = writeln!(
        out,
        "{:<10} {:>9} {:>7} {:>9} {:>11} {:>8} {:>9} {:>9}",
        "arm", "requests", "errors", "lists", "conversion", "p95 ms", "coverage", "tail"
    );
    for (name, a) in &r.arms {
        let _ = writeln!(
            out,
            "{:<10} {:>9} {:>7} {:>9} {:>11} {:>8} {:>9} {:>9}",
            name,
            a.requests,
            a.errors,
            a.lists,
            f(a.conversion_rate, true),
            f(a.p95_latency_ms, false),
            f(a.fairness.catalog_coverage, false),
            f(a.fairness.tail_share, false),
        );
    }
    for g in &r.guardrails {
        let mark = match g.passed {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "n/a ",
        };
        let _ = writeln!(out, "  [{mark}] {}: {}", g.name, g.detail);
    }
    if let Some(s) = &r.shadow {
        let _ = writeln!(
            out,
            "shadow: {} requests, overlap {}, served conversion {}, shadow hit rate {}",
            s.requests,
            f(s.mean_overlap, true),
            f(s.served_conversion_rate, true),
            f(s.shadow_hit_rate, true)
        );
    }
    let _ = writeln!(out, "action: {} — {}", r.action.as_str(), r.rationale);
    out
}

#[cfg(test)]
mod tests;
