use super::*;
use serde_json::json;

const T0: i64 = 1_800_000_000_000;
const EXP: &str = "exp-1";

fn state(strategy: &str, percentage: f64) -> RolloutState {
    RolloutState {
        strategy: strategy.parse().unwrap(),
        served_version: "v1".into(),
        candidate_version: (strategy != "fixed").then(|| "v2".to_string()),
        percentage,
        experiment_id: (strategy != "fixed").then(|| EXP.to_string()),
        salt: (strategy != "fixed").then(|| "salt-1".to_string()),
        primary_policy: None,
        candidate_policy: None,
        revision: 7,
        updated_by: "test".into(),
        updated_at: T0,
    }
}

fn catalog() -> Catalog {
    Catalog::from_items((1..=1000u64).map(|m| (m, 1001 - m)))
}

/// How an arm behaves in a generated window.
#[derive(Clone)]
struct Arm {
    name: &'static str,
    lists: usize,
    /// Every `n`-th list converts.
    convert_every: usize,
    /// Every `n`-th request fails (0: none).
    fail_every: usize,
    /// Latency of request `i`.
    latency: fn(usize) -> f64,
    /// Movies shown to request `i`.
    items: fn(usize) -> Vec<u64>,
}

fn spread(i: usize) -> Vec<u64> {
    (0..10)
        .map(|j| ((i * 37 + j * 101) % 1000) as u64 + 1)
        .collect()
}

fn narrow(i: usize) -> Vec<u64> {
    (0..10).map(|j| ((i + j) % 20) as u64 + 1).collect()
}

fn flat(i: usize) -> f64 {
    2.0 + (i % 100) as f64 / 100.0
}

fn arm(name: &'static str, lists: usize, convert_every: usize) -> Arm {
    Arm {
        name,
        lists,
        convert_every,
        fail_every: 0,
        latency: flat,
        items: spread,
    }
}

/// Traces and events of the arms; users are unique per list, lists one
/// second apart from T0, conversions an hour after their list.
fn window(arms: &[Arm]) -> (Vec<Value>, Vec<Engagement>) {
    let (mut traces, mut events) = (Vec::new(), Vec::new());
    let mut user = 0u64;
    for a in arms {
        for i in 0..a.lists {
            user += 1;
            let ts = T0 + user as i64 * 1000;
            let failed = a.fail_every > 0 && i % a.fail_every == 0;
            let items = (a.items)(i);
            traces.push(json!({
                "request_id": format!("r{user}"), "user_id": user, "timestamp": ts,
                "arm": a.name, "experiment_id": EXP,
                "model_version": if a.name == "candidate" { "v2" } else { "v1" },
                "status": if failed { 500 } else { 200 },
                "latency_ms": (a.latency)(i),
                "items": if failed { vec![] } else { items.clone() },
            }));
            if !failed && i % a.convert_every == 0 {
                events.push(Engagement {
                    user_id: user,
                    movie_id: items[3],
                    ts_ms: ts + HOUR_MS,
                });
            }
        }
    }
    (traces, events)
}

fn run(st: &RolloutState, arms: &[Arm], cfg: &CanaryConfig) -> ExperimentReport {
    let (traces, events) = window(arms);
    evaluate(
        st,
        &Observed {
            traces: &traces,
            events: &events,
            catalog: &catalog(),
            window: Window {
                from_ms: T0,
                to_ms: T0 + 100 * HOUR_MS,
            },
            started_at: Some(T0),
            now_ms: T0 + 200 * HOUR_MS,
        },
        cfg,
    )
}

fn check<'a>(r: &'a ExperimentReport, name: &str) -> &'a Check {
    r.guardrails.iter().find(|g| g.name == name).unwrap()
}

#[test]
fn a_better_candidate_is_promoted_with_its_reason() {
    let r = run(
        &state("ab_test", 50.0),
        &[arm("primary", 5000, 10), arm("candidate", 5000, 7)],
        &CanaryConfig::default(),
    );
    let c = &r.arms["candidate"];
    assert_eq!((c.lists, c.conversions), (5000, 715));
    assert_eq!(r.arms["primary"].conversions, 500);
    assert_eq!(
        r.analysis.as_ref().unwrap().decision,
        Decision::ShipCandidate
    );
    assert!(
        r.guardrails.iter().all(|g| g.passed == Some(true)),
        "{:?}",
        r.guardrails
    );
    assert_eq!(r.action, Action::Promote);
    assert!(!r.alarm);
    let p = r.proposed.unwrap();
    assert_eq!(
        (p.strategy.as_str(), p.primary_version.as_str()),
        ("fixed", "v2")
    );
    assert!(p.reason.unwrap().starts_with("canary promote"));
    assert_eq!(r.matured_share, Some(1.0));
}

#[test]
fn each_arm_keeps_its_policy_when_the_experiment_ends() {
    let mut st = state("ab_test", 50.0);
    st.primary_policy = Some("none".into());
    st.candidate_policy = Some("slots:slots=3".into());
    let better = [arm("primary", 5000, 10), arm("candidate", 5000, 7)];
    let r = run(&st, &better, &CanaryConfig::default());
    let p = r.proposed.unwrap();
    assert_eq!(
        (p.primary_version.as_str(), p.primary_policy.as_deref()),
        ("v2", Some("slots:slots=3"))
    );
    let worse = [arm("primary", 5000, 7), arm("candidate", 5000, 10)];
    let r = run(&st, &worse, &CanaryConfig::default());
    let p = r.proposed.unwrap();
    assert_eq!(
        (p.primary_version.as_str(), p.primary_policy.as_deref()),
        ("v1", Some("none"))
    );
    assert_eq!(r.candidate_policy.as_deref(), Some("slots:slots=3"));
}

#[test]
fn a_worse_candidate_is_rolled_back_with_an_alarm() {
    let r = run(
        &state("canary", 50.0),
        &[arm("primary", 5000, 7), arm("candidate", 5000, 10)],
        &CanaryConfig::default(),
    );
    assert_eq!(r.analysis.as_ref().unwrap().decision, Decision::KeepPrimary);
    assert_eq!(check(&r, "conversion").passed, Some(false));
    assert_eq!((r.action, r.alarm), (Action::Rollback, true));
    let p = r.proposed.unwrap();
    assert_eq!(p.primary_version, "v1");
    assert!(p.reason.unwrap().contains("conversion"));
}

#[test]
fn equal_arms_promote_a_canary_but_end_an_ab_test_on_the_primary() {
    let arms = [arm("primary", 20_000, 10), arm("candidate", 20_000, 10)];
    let canary = run(&state("canary", 50.0), &arms, &CanaryConfig::default());
    assert_eq!(
        canary.analysis.as_ref().unwrap().decision,
        Decision::NoDifference
    );
    assert_eq!(canary.action, Action::Promote);
    let ab = run(&state("ab_test", 50.0), &arms, &CanaryConfig::default());
    assert_eq!(ab.action, Action::KeepPrimary);
    assert!(!ab.alarm);
    assert_eq!(ab.proposed.unwrap().primary_version, "v1");
}

#[test]
fn errors_count_against_the_candidate() {
    let mut c = arm("candidate", 1000, 10);
    c.fail_every = 20; // 5% of requests fail
    let r = run(
        &state("canary", 5.0),
        &[arm("primary", 19_000, 10), c],
        &CanaryConfig::default(),
    );
    let a = &r.arms["candidate"];
    assert_eq!((a.requests, a.errors, a.lists), (1000, 50, 950));
    assert_eq!(a.error_rate, Some(0.05));
    let g = check(&r, "error_rate");
    assert_eq!(g.passed, Some(false));
    assert_eq!(g.limit, Some(0.01));
    assert_eq!(r.action, Action::Rollback);
}

#[test]
fn p95_latency_may_regress_at_most_ten_percent() {
    fn slow(i: usize) -> f64 {
        flat(i) * 1.5
    }
    fn slightly(i: usize) -> f64 {
        flat(i) * 1.05
    }
    let cfg = CanaryConfig {
        p95_slack_ms: 0.0,
        ..CanaryConfig::default()
    };
    let mut c = arm("candidate", 1000, 10);
    c.latency = slow;
    let r = run(
        &state("canary", 5.0),
        &[arm("primary", 19_000, 10), c.clone()],
        &cfg,
    );
    let g = check(&r, "p95_latency");
    // Nearest-rank p95 of 2.00..2.99 is 2.94.
    assert_eq!(g.primary, Some(2.94));
    assert!((g.limit.unwrap() - 2.94 * 1.1).abs() < 1e-12);
    assert_eq!((g.passed, r.action), (Some(false), Action::Rollback));
    c.latency = slightly;
    let r = run(
        &state("canary", 5.0),
        &[arm("primary", 19_000, 10), c],
        &cfg,
    );
    assert_eq!(check(&r, "p95_latency").passed, Some(true));
}

#[test]
fn fairness_is_compared_on_equal_numbers_of_lists() {
    let mut c = arm("candidate", 1000, 10);
    c.items = narrow;
    let r = run(
        &state("canary", 5.0),
        &[arm("primary", 19_000, 10), c],
        &CanaryConfig::default(),
    );
    let (p, c) = (&r.arms["primary"], &r.arms["candidate"]);
    assert_eq!((p.fairness.lists, p.fairness_matched.lists), (19_000, 1000));
    assert_eq!(c.fairness_matched.lists, 1000);
    assert_eq!(c.fairness.catalog_coverage, Some(0.02));
    assert_eq!(p.fairness.catalog_coverage, Some(1.0));
    let g = check(&r, "catalog_coverage");
    assert_eq!((g.candidate, g.passed), (Some(0.02), Some(false)));
    assert_eq!(r.action, Action::Rollback);
    assert!(r.rationale.contains("catalog_coverage"));
}

#[test]
fn a_threshold_both_arms_miss_does_not_block_a_candidate_that_is_no_worse() {
    let cfg = CanaryConfig {
        thresholds: crate::audit::Thresholds {
            min_catalog_coverage: 0.99,
            ..Default::default()
        },
        ..CanaryConfig::default()
    };
    fn most(i: usize) -> Vec<u64> {
        (0..10)
            .map(|j| ((i * 37 + j * 101) % 900) as u64 + 1)
            .collect()
    }
    let (mut p, mut c) = (arm("primary", 5000, 10), arm("candidate", 5000, 10));
    p.items = most;
    c.items = most;
    let r = run(&state("canary", 50.0), &[p, c], &cfg);
    let g = check(&r, "catalog_coverage");
    assert_eq!((g.primary, g.candidate), (Some(0.9), Some(0.9)));
    assert_eq!(g.passed, Some(true));
}

#[test]
fn a_healthy_canary_ramps_within_its_experiment_then_waits_at_the_last_step() {
    // 300 candidate lists: guardrails measured, conversion not yet (1000 needed).
    let arms = [arm("primary", 5700, 10), arm("candidate", 300, 10)];
    let r = run(&state("canary", 5.0), &arms, &CanaryConfig::default());
    assert_eq!(
        r.analysis.as_ref().unwrap().decision,
        Decision::Inconclusive
    );
    assert_eq!(check(&r, "conversion").passed, None);
    assert_eq!(r.action, Action::Ramp);
    let p = r.proposed.unwrap();
    assert_eq!(p.percentage, 25.0);
    assert_eq!(
        (
            p.strategy.as_str(),
            p.experiment_id.as_deref(),
            p.salt.as_deref()
        ),
        ("canary", Some(EXP), Some("salt-1"))
    );
    let r = run(&state("canary", 50.0), &arms, &CanaryConfig::default());
    assert_eq!((r.action, r.proposed), (Action::Wait, None));
    // Too little data for the guardrails: wait, saying which.
    let r = run(
        &state("canary", 5.0),
        &[arm("primary", 5700, 10), arm("candidate", 100, 10)],
        &CanaryConfig::default(),
    );
    assert_eq!(r.action, Action::Wait);
    assert!(r.rationale.contains("error_rate"), "{}", r.rationale);
}

#[test]
fn an_ab_test_never_ramps() {
    let arms = [arm("primary", 5700, 10), arm("candidate", 300, 10)];
    let r = run(&state("ab_test", 5.0), &arms, &CanaryConfig::default());
    assert_eq!(r.action, Action::Wait);
}

#[test]
fn only_the_running_experiments_traces_in_the_window_count() {
    let (mut traces, events) = window(&[arm("primary", 300, 10), arm("candidate", 300, 10)]);
    traces[0]["experiment_id"] = json!("exp-old");
    traces[1]["timestamp"] = json!(T0 - 1);
    traces.push(json!({"user_id": 1, "timestamp": T0 + 5, "items": [1], "status": 200}));
    let r = evaluate(
        &state("canary", 50.0),
        &Observed {
            traces: &traces,
            events: &events,
            catalog: &catalog(),
            window: Window {
                from_ms: T0,
                to_ms: T0 + HOUR_MS,
            },
            started_at: Some(T0),
            now_ms: T0 + 2 * HOUR_MS,
        },
        &CanaryConfig::default(),
    );
    assert_eq!(r.arms["primary"].requests, 298);
    assert_eq!(r.arms["candidate"].requests, 300);
    assert_eq!(r.arms["candidate"].model_versions, vec!["v2"]);
    // Lists from T0+1s to T0+600s, attribution 24 h: none matured an hour on.
    assert_eq!(r.matured_share, Some(0.0));
}

#[test]
fn fixed_has_nothing_to_act_on() {
    let r = run(
        &state("fixed", 0.0),
        &[arm("primary", 100, 10)],
        &CanaryConfig::default(),
    );
    assert_eq!(
        (r.action, r.proposed, r.analysis),
        (Action::None, None, None)
    );
    assert!(r.rationale.contains("no experiment"));
    // Fixed traces carry no experiment id: they are all read.
    assert_eq!(r.arms["primary"].requests, 0);
}

#[test]
fn shadow_compares_the_unserved_lists() {
    let (mut traces, events) = window(&[arm("primary", 100, 2)]);
    for (i, t) in traces.iter_mut().enumerate() {
        let served: Vec<u64> = serde_json::from_value(t["items"].clone()).unwrap();
        // The candidate shares half its list with the served one; for even
        // requests it holds the movie the user went on to watch (items[3]).
        let mut sh: Vec<u64> = served[..5].to_vec();
        sh.extend([2001, 2002, 2003, 2004, 2005]);
        if i % 4 == 0 {
            sh[0] = 3000;
            sh[1] = 3001;
            sh[2] = 3002;
            sh[3] = 3003;
        }
        t["shadow"] = json!({"model_version": "v2", "items": sh});
    }
    let r = evaluate(
        &state("shadow", 100.0),
        &Observed {
            traces: &traces,
            events: &events,
            catalog: &catalog(),
            window: Window {
                from_ms: T0,
                to_ms: T0 + HOUR_MS,
            },
            started_at: None,
            now_ms: T0 + 30 * HOUR_MS,
        },
        &CanaryConfig::default(),
    );
    assert_eq!(r.action, Action::None);
    let s = r.shadow.unwrap();
    assert_eq!(s.requests, 100);
    assert_eq!(s.served_conversion_rate, Some(0.5));
    // Every 4th list lost items[3]: of the 50 converting users, 25 are hit.
    assert_eq!(s.shadow_hit_rate, Some(0.25));
    assert!((s.mean_overlap.unwrap() - (0.75 * 0.5 + 0.25 * 0.1)).abs() < 1e-12);
    assert_eq!(s.served_fairness.lists, 100);
}

#[test]
fn evenly_spaced_samples() {
    assert_eq!(evenly(&[1, 2, 3, 4, 5, 6], 3), vec![1, 3, 5]);
    assert_eq!(evenly(&[1, 2], 5), vec![1, 2]);
    assert!(evenly::<u8>(&[], 0).is_empty());
}

#[test]
fn metrics_of_a_run() {
    let r = run(
        &state("canary", 50.0),
        &[arm("primary", 5000, 7), arm("candidate", 5000, 10)],
        &CanaryConfig::default(),
    );
    let d = job::datums(&r, "prod", T0);
    let get = |n: &str, arm: Option<&str>| {
        d.iter()
            .find(|m| {
                m.name == n
                    && m.dimensions
                        .iter()
                        .find(|(k, _)| k == "arm")
                        .map(|(_, v)| v.as_str())
                        == arm
            })
            .map(|m| m.value)
    };
    assert_eq!(get("CanaryRollback", None), Some(1.0));
    assert_eq!(get("CanaryPromotion", None), Some(0.0));
    assert_eq!(get("ConversionRate", Some("candidate")), Some(0.1));
    assert_eq!(get("ExperimentRequests", Some("primary")), Some(5000.0));
    let fixed = run(&state("fixed", 0.0), &[], &CanaryConfig::default());
    assert_eq!(job::datums(&fixed, "prod", T0).len(), 2);
}
