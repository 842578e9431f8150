//! Rating-spam rules, per user over the audit window.
//!
//! | rule | flags a user when |
//! |---|---|
//! | `legacy` | event count > mean + 3·σ (population σ over the window's users): the previous system's rule, kept for comparability; a few heavy spammers inflate σ and hide the rest |
//! | `robust` | robust score `(count − median) / (1.4826·MAD)` > k (default 3.5); MAD is floored at one event so a window where most users have the same count does not flag users one rating above it |
//! | `identical_extreme` | at least 5 ratings, every one the same and at an end of the scale (≤ 1 or ≥ 5) |
//! | `velocity` | more than 20 ratings inside some hour of event time (ingest's own limit) |
//!
//! The users flagged by `robust`, `identical_extreme` or `velocity` are the
//! ones quarantined (training excludes them); `legacy` is reported only.
//! Records with invalid fields never reach these rules: they are counted as
//! schema errors.

use serde::Serialize;

/// One valid rating.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rating {
    pub user_id: u64,
    pub movie_id: u64,
    pub rating: f32,
    pub ts_ms: i64,
}

/// The rules' parameters.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpamConfig {
    pub legacy_sigmas: f64,
    pub robust_k: f64,
    pub identical_min_ratings: usize,
    pub velocity_limit: usize,
    pub velocity_span_ms: i64,
}

impl Default for SpamConfig {
    fn default() -> Self {
        SpamConfig {
            legacy_sigmas: 3.0,
            robust_k: 3.5,
            identical_min_ratings: 5,
            velocity_limit: 20,
            velocity_span_ms: 3_600_000,
        }
    }
}

/// Rule names, in report order.
pub const RULES: [&str; 4] = ["legacy", "robust", "identical_extreme", "velocity"];

/// A flagged user and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UserFlag {
    pub user_id: u64,
    pub events: usize,
    pub robust_score: f64,
    /// Most ratings inside one velocity span.
    pub max_per_span: usize,
    pub rules: Vec<&'static str>,
}

/// The spam section of an audit.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SpamReport {
    /// Users with at least one valid rating in the window.
    pub users: usize,
    pub events: usize,
    pub schema_errors: usize,
    pub mean: f64,
    pub std: f64,
    /// The legacy threshold, mean + 3σ events.
    pub threshold: f64,
    pub median: f64,
    pub mad: f64,
    /// Events above which the robust rule flags.
    pub robust_threshold: f64,
    /// Users quarantined: flagged by any rule but `legacy`, ascending.
    pub flagged_users: Vec<u64>,
    /// Users the legacy rule flags, ascending.
    pub legacy_flagged_users: Vec<u64>,
    /// Users flagged per rule.
    pub by_rule: std::collections::BTreeMap<&'static str, usize>,
    /// Every user any rule flags, with the evidence.
    pub flags: Vec<UserFlag>,
    pub config: SpamConfig,
    /// Every user's robust score (for the distribution chart).
    #[serde(skip)]
    pub scores: Vec<f64>,
}

fn median_of(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Runs every rule over `ratings` (any order; sorted in place by user and time).
pub fn detect(ratings: &mut [Rating], schema_errors: usize, cfg: &SpamConfig) -> SpamReport {
    ratings.sort_unstable_by_key(|r| (r.user_id, r.ts_ms));
    struct U {
        user: u64,
        events: usize,
        max_per_span: usize,
        identical_extreme: bool,
    }
    let mut users = Vec::new();
    for group in ratings.chunk_by(|a, b| a.user_id == b.user_id) {
        let mut j = 0;
        let mut max_per_span = 0;
        for i in 0..group.len() {
            while group[i].ts_ms - group[j].ts_ms >= cfg.velocity_span_ms {
                j += 1;
            }
            max_per_span = max_per_span.max(i - j + 1);
        }
        let first = group[0].rating;
        let identical_extreme = group.len() >= cfg.identical_min_ratings
            && group.iter().all(|r| r.rating == first)
            && (first <= 1.0 || first >= 5.0);
        users.push(U {
            user: group[0].user_id,
            events: group.len(),
            max_per_span,
            identical_extreme,
        });
    }
    let mut rep = SpamReport {
        users: users.len(),
        events: ratings.len(),
        schema_errors,
        config: cfg.clone(),
        ..SpamReport::default()
    };
    for r in RULES {
        rep.by_rule.insert(r, 0);
    }
    if users.is_empty() {
        return rep;
    }
    let n = users.len() as f64;
    let counts: Vec<f64> = users.iter().map(|u| u.events as f64).collect();
    rep.mean = counts.iter().sum::<f64>() / n;
    rep.std = (counts.iter().map(|c| (c - rep.mean).powi(2)).sum::<f64>() / n).sqrt();
    rep.threshold = rep.mean + cfg.legacy_sigmas * rep.std;
    let mut sorted = counts.clone();
    sorted.sort_unstable_by(f64::total_cmp);
    rep.median = median_of(&sorted);
    let mut dev: Vec<f64> = sorted.iter().map(|c| (c - rep.median).abs()).collect();
    dev.sort_unstable_by(f64::total_cmp);
    rep.mad = median_of(&dev);
    let scale = 1.4826 * rep.mad.max(1.0);
    rep.robust_threshold = rep.median + cfg.robust_k * scale;
    for u in &users {
        let score = (u.events as f64 - rep.median) / scale;
        rep.scores.push(score);
        let mut rules = Vec::new();
        if u.events as f64 > rep.threshold {
            rules.push("legacy");
        }
        if score > cfg.robust_k {
            rules.push("robust");
        }
        if u.identical_extreme {
            rules.push("identical_extreme");
        }
        if u.max_per_span > cfg.velocity_limit {
            rules.push("velocity");
        }
        if rules.is_empty() {
            continue;
        }
        for r in &rules {
            *rep.by_rule.get_mut(r).expect("rule") += 1;
        }
        if rules.contains(&"legacy") {
            rep.legacy_flagged_users.push(u.user);
        }
        if rules.iter().any(|r| *r != "legacy") {
            rep.flagged_users.push(u.user);
        }
        rep.flags.push(UserFlag {
            user_id: u.user,
            events: u.events,
            robust_score: score,
            max_per_span: u.max_per_span,
            rules,
        });
    }
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(user: u64, rating: f32, ts_ms: i64) -> Rating {
        Rating {
            user_id: user,
            movie_id: ts_ms as u64,
            rating,
            ts_ms,
        }
    }

    /// Ten ordinary users with 2 ratings, one with 6 (mixed, spread over
    /// days), one spammer with 30 five-star ratings in 30 minutes.
    #[test]
    fn rules_worked_by_hand() {
        let day = 86_400_000;
        let mut v = Vec::new();
        for u in 1..=10 {
            v.push(r(u, 3.0, 0));
            v.push(r(u, 4.0, day));
        }
        for i in 0..6 {
            v.push(r(11, 2.0 + (i % 3) as f32, i * day));
        }
        for i in 0..30 {
            v.push(r(12, 5.0, i * 60_000));
        }
        let rep = detect(&mut v, 4, &SpamConfig::default());
        assert_eq!((rep.users, rep.events, rep.schema_errors), (12, 56, 4));
        // counts: 2 ×10, 6, 30; mean 56/12.
        let mean = 56.0 / 12.0;
        assert!((rep.mean - mean).abs() < 1e-12);
        let var =
            (10.0 * (2.0 - mean).powi(2) + (6.0 - mean).powi(2) + (30.0 - mean).powi(2)) / 12.0;
        assert!((rep.std - var.sqrt()).abs() < 1e-12);
        assert!((rep.threshold - (mean + 3.0 * var.sqrt())).abs() < 1e-12);
        // median 2, MAD 0 → floored to 1: threshold 2 + 3.5·1.4826 = 7.1891.
        assert_eq!((rep.median, rep.mad), (2.0, 0.0));
        assert!((rep.robust_threshold - 7.1891).abs() < 1e-9);
        // 30 > 4.667 + 3·7.717 = 27.8: legacy flags the spammer too.
        assert_eq!(rep.legacy_flagged_users, vec![12]);
        assert_eq!(rep.flagged_users, vec![12]);
        let f = &rep.flags[0];
        assert_eq!(
            f.rules,
            vec!["legacy", "robust", "identical_extreme", "velocity"]
        );
        assert_eq!((f.events, f.max_per_span), (30, 30));
        assert!((f.robust_score - 28.0 / 1.4826).abs() < 1e-9);
        assert_eq!(rep.scores.len(), 12);
    }

    #[test]
    fn patterns_below_the_count_thresholds() {
        // Users 1-20 have 5 mixed ratings; user 21 five identical 1-star
        // ratings (flagged by pattern only); user 22 five identical 3s (not extreme).
        let mut v = Vec::new();
        for u in 1..=20 {
            for i in 0..5 {
                v.push(r(u, 1.0 + i as f32, i * 10_000_000));
            }
        }
        for i in 0..5 {
            v.push(r(21, 1.0, i * 10_000_000));
            v.push(r(22, 3.0, i * 10_000_000));
        }
        let rep = detect(&mut v, 0, &SpamConfig::default());
        assert_eq!(rep.flagged_users, vec![21]);
        assert_eq!(rep.flags[0].rules, vec!["identical_extreme"]);
        assert!(rep.legacy_flagged_users.is_empty());
        assert_eq!(rep.by_rule["robust"], 0);
    }

    #[test]
    fn velocity_counts_a_sliding_hour() {
        // 21 ratings: 20 inside one hour, the 21st exactly an hour after the first.
        let mut v: Vec<Rating> = (0..20)
            .map(|i| r(1, 3.0 + (i % 2) as f32, i * 1000))
            .collect();
        v.push(r(1, 4.0, 3_600_000));
        let cfg = SpamConfig::default();
        let rep = detect(&mut v.clone(), 0, &cfg);
        assert_eq!(rep.flags.len(), 0, "20 per hour is the limit, not over it");
        v.push(r(1, 4.0, 3_599_999));
        let rep = detect(&mut v, 0, &cfg);
        assert_eq!(rep.flags[0].max_per_span, 21);
        assert_eq!(rep.flags[0].rules, vec!["velocity"]);
    }

    #[test]
    fn empty_window() {
        let rep = detect(&mut [], 3, &SpamConfig::default());
        assert_eq!((rep.users, rep.schema_errors), (0, 3));
        assert!(rep.flagged_users.is_empty() && rep.scores.is_empty());
    }
}
