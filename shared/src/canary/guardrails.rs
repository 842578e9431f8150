//! The guardrails of a canary or A/B test (the rules are in the parent
//! module's doc): error rate, p95 latency, conversion and the four fairness
//! thresholds, each a [`Check`] that passes, fails or is pending (`None`).

use super::{ArmReport, CanaryConfig, Check};
use crate::domain::experiment::{Analysis, Decision};

/// Every guardrail of `c` (the candidate's arm) against `p` (the primary's).
pub(super) fn guardrails(
    p: &ArmReport,
    c: &ArmReport,
    analysis: &Analysis,
    cfg: &CanaryConfig,
) -> Vec<Check> {
    let short = format!(
        "not enough data: {} primary and {} candidate requests; each arm needs {}",
        p.requests, c.requests, cfg.min_guardrail_requests
    );
    let mut out = vec![
        error_rate(p, c, cfg, &short),
        p95_latency(p, c, cfg, &short),
        conversion(p, c, analysis, cfg),
    ];
    out.extend(fairness(p, c, cfg, &short));
    out
}

/// Whether both arms served enough lists for the list-based guardrails.
fn enough_lists(p: &ArmReport, c: &ArmReport, cfg: &CanaryConfig) -> bool {
    p.lists >= cfg.min_guardrail_requests && c.lists >= cfg.min_guardrail_requests
}

/// Note for a check over its limit but not significantly beyond it.
fn pending_note(passed: Option<bool>) -> &'static str {
    if passed.is_none() {
        ": over the limit, not yet significantly"
    } else {
        ""
    }
}

/// Error rate: over the limit passes never; failing needs the excess to be
/// significant (z = guardrail_z, unpooled standard error), else the check
/// is pending and the canary waits rather than ramps.
fn error_rate(p: &ArmReport, c: &ArmReport, cfg: &CanaryConfig, short: &str) -> Check {
    let enough =
        p.requests >= cfg.min_guardrail_requests && c.requests >= cfg.min_guardrail_requests;
    let limit = p.error_rate.map(|e| e + cfg.max_error_rate_increase);
    let (true, Some(ce), Some(pe), Some(l)) = (enough, c.error_rate, p.error_rate, limit) else {
        return Check {
            name: "error_rate",
            passed: None,
            candidate: c.error_rate,
            primary: p.error_rate,
            limit,
            detail: short.to_string(),
        };
    };
    let se = (ce * (1.0 - ce) / c.requests as f64 + pe * (1.0 - pe) / p.requests as f64).sqrt();
    let low = ce - pe - cfg.guardrail_z * se;
    let passed = if ce <= l + 1e-12 {
        Some(true)
    } else if low > cfg.max_error_rate_increase {
        Some(false)
    } else {
        None
    };
    Check {
        name: "error_rate",
        passed,
        candidate: Some(ce),
        primary: Some(pe),
        limit: Some(l),
        detail: format!(
            "candidate {:.2}% of requests failed vs {:.2}% (limit +{} points; excess at least {:.2} points at z = {}){}",
            100.0 * ce,
            100.0 * pe,
            100.0 * cfg.max_error_rate_increase,
            100.0 * low.max(0.0),
            cfg.guardrail_z,
            pending_note(passed)
        ),
    }
}

/// p95 latency: over the limit passes never; failing needs the candidate's
/// p95 confidence interval to lie above the limit taken at the top of the
/// primary's.
fn p95_latency(p: &ArmReport, c: &ArmReport, cfg: &CanaryConfig, short: &str) -> Check {
    let enough = enough_lists(p, c, cfg);
    let limit_of = |l: f64| l * (1.0 + cfg.max_p95_regression) + cfg.p95_slack_ms;
    let limit = p.p95_latency_ms.map(limit_of);
    let (true, Some(cl), Some(l), Some((c_low, _)), Some((_, p_high))) = (
        enough,
        c.p95_latency_ms,
        limit,
        c.p95_latency_ci_ms,
        p.p95_latency_ci_ms,
    ) else {
        return Check {
            name: "p95_latency",
            passed: None,
            candidate: c.p95_latency_ms,
            primary: p.p95_latency_ms,
            limit,
            detail: if enough {
                "no latencies in the traces".into()
            } else {
                short.to_string()
            },
        };
    };
    let passed = if cl <= l {
        Some(true)
    } else if c_low > limit_of(p_high) {
        Some(false)
    } else {
        None
    };
    Check {
        name: "p95_latency",
        passed,
        candidate: Some(cl),
        primary: p.p95_latency_ms,
        limit: Some(l),
        detail: format!(
            "candidate p95 {cl:.2} ms (CI from {c_low:.2}) vs {:.2} ms (CI to {p_high:.2}); limit +{:.0}% + {} ms{}",
            p.p95_latency_ms.unwrap_or(0.0),
            100.0 * cfg.max_p95_regression,
            cfg.p95_slack_ms,
            pending_note(passed)
        ),
    }
}

/// Conversion: not significantly worse (the decision rule's verdict).
fn conversion(p: &ArmReport, c: &ArmReport, analysis: &Analysis, cfg: &CanaryConfig) -> Check {
    let measured = p.lists >= cfg.rule.min_per_arm && c.lists >= cfg.rule.min_per_arm;
    Check {
        name: "conversion",
        passed: match analysis.decision {
            Decision::KeepPrimary => Some(false),
            _ if measured => Some(true),
            _ => None,
        },
        candidate: c.conversion_rate,
        primary: p.conversion_rate,
        limit: None,
        detail: analysis.rationale.clone(),
    }
}

/// Fairness, on equal numbers of lists: a candidate that misses a
/// threshold passes only when the primary misses it too and the candidate
/// is no worse than the tolerance.
fn fairness(p: &ArmReport, c: &ArmReport, cfg: &CanaryConfig, short: &str) -> Vec<Check> {
    let enough = enough_lists(p, c, cfg);
    let (cf, pf, t) = (&c.fairness_matched, &p.fairness_matched, &cfg.thresholds);
    [
        (
            "catalog_coverage",
            cf.catalog_coverage,
            pf.catalog_coverage,
            t.min_catalog_coverage,
            true,
        ),
        (
            "gini_exposed",
            cf.gini_exposed,
            pf.gini_exposed,
            t.max_gini_exposed,
            false,
        ),
        (
            "top_10_pct_share",
            cf.top_10_pct_share,
            pf.top_10_pct_share,
            t.max_top_10_pct_share,
            false,
        ),
        (
            "tail_share",
            cf.tail_share,
            pf.tail_share,
            t.min_tail_share,
            true,
        ),
    ]
    .into_iter()
    .map(|(name, cand, prim, limit, higher_is_better)| {
        let meets = |v: f64| {
            if higher_is_better {
                v >= limit
            } else {
                v <= limit
            }
        };
        // How much worse the candidate is than the primary (> 0: worse).
        let worse_by = |c: f64, p: f64| if higher_is_better { p - c } else { c - p };
        let passed = match (enough, cand, prim) {
            (true, Some(cv), Some(pv)) => {
                Some(meets(cv) || (!meets(pv) && worse_by(cv, pv) <= cfg.fairness_tolerance))
            }
            _ => None,
        };
        let detail = match (passed, cand, prim) {
            (Some(_), Some(cv), Some(pv)) => format!(
                "candidate {cv:.4} vs primary {pv:.4} on {} lists each ({} {limit})",
                cf.lists.min(pf.lists),
                if higher_is_better {
                    "threshold ≥"
                } else {
                    "threshold ≤"
                }
            ),
            _ => short.to_string(),
        };
        Check {
            name,
            passed,
            candidate: cand,
            primary: prim,
            limit: Some(limit),
            detail,
        }
    })
    .collect()
}
