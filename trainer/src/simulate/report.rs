//! The simulation report for people: Markdown tables and SVG charts of the
//! trajectories (one chart per metric, one line per policy) and of the attack.

use super::{AttackReport, RoundMetrics, SimReport};
use shared::audit::report::{esc, frame, px, py, y_ticks, y_ticks_from, B, H, L, R, W};
use std::fmt::Write;

/// A per-round metric: file stem, title, value.
type Metric = (&'static str, &'static str, fn(&RoundMetrics) -> Option<f64>);

/// The metrics charted and tabulated, in report order.
pub const METRICS: [Metric; 9] = [
    ("hr_at_10", "HR@10 against true tastes", |m| {
        Some(m.hr_at_10)
    }),
    ("ndcg_at_10", "NDCG@10 against true tastes", |m| {
        Some(m.ndcg_at_10)
    }),
    ("catalog_coverage", "Catalogue coverage", |m| {
        m.catalog_coverage
    }),
    ("gini_catalog", "Gini of catalogue exposure", |m| {
        m.gini_catalog
    }),
    ("tail_share", "Tail share", |m| m.tail_share),
    ("gini_exposed", "Gini of the exposed movies", |m| {
        m.gini_exposed
    }),
    ("top_10_pct_share", "Top-10% share", |m| m.top_10_pct_share),
    (
        "top_tier_amplification",
        "Amplification of the top popularity tier",
        |m| m.top_tier_amplification,
    ),
    ("starvation_index", "Starvation index", |m| {
        m.starvation_index
    }),
];

const COLOURS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.0}%", v * 100.0))
}

fn f(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.3}"))
}

/// The files of a report: `(name, bytes)`.
pub fn files(r: &SimReport, command: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        (
            "simulation.json".to_string(),
            serde_json::to_vec_pretty(r).expect("report serialises"),
        ),
        ("simulation.md".into(), markdown(r, command).into_bytes()),
    ];
    if !r.trajectories.is_empty() {
        for (stem, title, get) in METRICS {
            out.push((
                format!("{stem}.svg"),
                line_chart(r, title, get).into_bytes(),
            ));
        }
    }
    if r.attack.is_some() {
        out.push(("attack.svg".into(), attack_svg(r).into_bytes()));
    }
    out
}

/// The Markdown report.
pub fn markdown(r: &SimReport, command: &str) -> String {
    let mut s = String::from("# Closed-loop simulation\n\n");
    if !command.is_empty() {
        let _ = writeln!(s, "Written by `{command}`.\n");
    }
    world(&mut s, r);
    if !r.trajectories.is_empty() {
        trajectories(&mut s, r);
        rounds(&mut s, r);
    }
    if let Some(a) = &r.attack {
        attack(&mut s, r, a);
    }
    s
}

/// What the simulated world and its users are.
fn world(s: &mut String, r: &SimReport) {
    let w = &r.world;
    let b = &r.behaviour;
    let hp = &r.hyper_parameters;
    let _ = writeln!(
        s,
        "Synthetic world: {} users, {} movies, about {} interactions per user before the \
         simulation (seed {}). Every round each served user gets a list of {}; they examine \
         position p with probability 1/log2(p + 2), watch an examined movie with probability \
         sigmoid({} · (true affinity − {})), rate {:.0}% of what they watch, and find {} more \
         movies elsewhere on average. The events go through the ingest pipeline into the lake, \
         and the next round's model (NeuMF, {} epochs at most, best on validation) is trained \
         from it. HR@10 and NDCG@10 count a user's ten unseen movies of highest true affinity \
         as relevant; the exposure metrics are the audit's, over the whole catalogue.\n",
        w.users,
        w.items,
        w.mean_interactions,
        w.seed,
        r.k,
        b.watch_slope,
        b.watch_threshold,
        b.rate_share * 100.0,
        b.organic,
        hp.epochs,
    );
}

/// Each policy's first and last round, and the charts.
fn trajectories(s: &mut String, r: &SimReport) {
    s.push_str("## Trajectories\n\nFirst round → last round:\n\n| policy |");
    for (_, title, _) in METRICS {
        let _ = write!(s, " {title} |");
    }
    s.push_str("\n|---|");
    for _ in METRICS {
        s.push_str("---|");
    }
    s.push('\n');
    for t in &r.trajectories {
        let _ = write!(s, "| `{}` |", t.policy);
        let (first, last) = (t.rounds.first(), t.rounds.last());
        for (_, _, get) in METRICS {
            let _ = write!(
                s,
                " {} → {} |",
                f(first.and_then(get)),
                f(last.and_then(get))
            );
        }
        s.push('\n');
    }
    s.push('\n');
    for (stem, title, _) in METRICS {
        let _ = writeln!(s, "![{title}]({stem}.svg)");
    }
}

/// Every round of each policy.
fn rounds(s: &mut String, r: &SimReport) {
    for t in &r.trajectories {
        let _ = writeln!(
            s,
            "\n### `{}`\n\n| round | model | trained on | HR@10 | NDCG@10 | mean affinity | coverage | gini_catalog | tail share | gini_exposed | top-10% share | top-tier amplification | starvation | watches | ratings | found elsewhere | ingest accepted | quarantined | adjustments |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            t.policy
        );
        for m in &t.rounds {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                m.round,
                m.model_version,
                m.train_interactions,
                m.hr_at_10,
                m.ndcg_at_10,
                m.mean_affinity,
                f(m.catalog_coverage),
                f(m.gini_catalog),
                f(m.tail_share),
                f(m.gini_exposed),
                f(m.top_10_pct_share),
                f(m.top_tier_amplification),
                f(m.starvation_index),
                m.watches,
                m.ratings,
                m.organic,
                m.accepted,
                m.quarantined,
                match (&m.adjustments, m.priced_movies, m.subsidised_movies) {
                    (Some(a), Some(p), Some(q)) => format!("{a} ({p} priced, {q} subsidised)"),
                    _ => "–".into(),
                }
            );
        }
    }
}

/// The promotion attack and the mitigations tried against it.
fn attack(s: &mut String, r: &SimReport, a: &AttackReport) {
    let _ = writeln!(
        s,
        "\n## Promotion attack\n\n{} fake accounts each rate movie {} (position {} of the \
         popularity ranking, {} interactions before the attack) 5 stars and {} popular movies \
         4 or 5 stars, spread over one day, through the ingest pipeline (accepted {}, \
         quarantined by the velocity limit {}). The audit of that day flagged {} of the fake \
         accounts and {} real users. Lists of {} served with `{}` to the {} real users of \
         that day; the target's exposure is the share of lists holding it, and the lift is \
         measured against a control model retrained on the same day without the attack. \
         The median rank is the target's position in the model's own ranking of each \
         user's unseen movies (0 = first), before re-ranking.\n",
        a.config.users,
        a.target,
        a.target_popularity_rank,
        a.target_seed_interactions,
        a.config.filler,
        a.attack_accepted,
        a.attack_quarantined,
        a.audit_flagged_fake,
        a.audit_flagged_real,
        r.k,
        a.policy,
        a.users_served
    );
    let _ = writeln!(
        s,
        "| model | mitigations | lists with the target | share | lift | lift cut | share with the target in the model's top {} | lift | lift cut | median rank of the target |\n|---|---|---|---|---|---|---|---|---|---|",
        super::DEEP_K
    );
    for x in std::iter::once(&a.before).chain(&a.after) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.4} | {} | {} | {:.4} | {} | {} | {} |",
            x.name,
            if x.mitigations.is_empty() {
                "–".to_string()
            } else {
                x.mitigations.join("; ")
            },
            x.lists_with_target,
            x.share,
            x.lift.map_or("–".into(), |v| format!("{v:+.4}")),
            pct(x.lift_cut),
            x.deep_share,
            x.deep_lift.map_or("–".into(), |v| format!("{v:+.4}")),
            pct(x.deep_lift_cut),
            x.median_rank.map_or("–".into(), |v| v.to_string()),
        );
    }
    s.push_str("\n![Target exposure](attack.svg)\n");
}

/// One metric over the rounds, one line per policy.
pub fn line_chart(r: &SimReport, title: &str, get: fn(&RoundMetrics) -> Option<f64>) -> String {
    let mut s = frame(title, "round", title);
    let rounds = r
        .trajectories
        .iter()
        .map(|t| t.rounds.len())
        .max()
        .unwrap_or(0);
    let max_v = r
        .trajectories
        .iter()
        .flat_map(|t| t.rounds.iter().filter_map(get))
        .fold(0.0f64, f64::max);
    let min_v = r
        .trajectories
        .iter()
        .flat_map(|t| t.rounds.iter().filter_map(get))
        .fold(f64::INFINITY, f64::min);
    // The axis spans the values with a margin, on round numbers.
    let pad = ((max_v - min_v) * 0.15).max(0.01);
    let lo = ((min_v - pad).max(0.0) * 20.0).floor() / 20.0;
    let hi = ((max_v + pad) * 20.0).ceil() / 20.0;
    let span = (hi - lo).max(0.05);
    y_ticks_from(&mut s, lo, span);
    let max = span;
    let x_of = |i: usize| {
        px(if rounds > 1 {
            i as f64 / (rounds - 1) as f64
        } else {
            0.5
        })
    };
    for i in 0..rounds {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{}" text-anchor="middle">{i}</text>"##,
            x_of(i),
            H - B + 16.0
        );
    }
    for (n, t) in r.trajectories.iter().enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        let pts: Vec<String> = t
            .rounds
            .iter()
            .enumerate()
            .filter_map(|(i, m)| get(m).map(|v| format!("{:.1},{:.1}", x_of(i), py(v - lo, max))))
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"##,
            pts.join(" ")
        );
        for p in &pts {
            let (x, y) = p.split_once(',').expect("point");
            let _ = writeln!(s, r##"<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>"##);
        }
        let ly = 44.0 + 16.0 * n as f64;
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="12" height="4" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            W - R - 170.0,
            ly - 4.0,
            W - R - 152.0,
            ly,
            esc(&t.policy)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The target's exposure before retraining and under each retrained model:
/// share of served lists holding it (blue) and share of users with it in the
/// model's top [`super::DEEP_K`] (orange).
pub fn attack_svg(r: &SimReport) -> String {
    let mut s = frame(
        "Promotion attack: the target's exposure",
        &format!(
            "model (blue: lists holding the target; orange: target in the model's top {})",
            super::DEEP_K
        ),
        "share of users",
    );
    let Some(a) = &r.attack else {
        s.push_str("</svg>\n");
        return s;
    };
    let models: Vec<_> = std::iter::once(&a.before).chain(&a.after).collect();
    let max = models
        .iter()
        .flat_map(|x| [x.share, x.deep_share])
        .fold(0.0f64, f64::max)
        .max(0.01)
        * 1.15;
    y_ticks(&mut s, max);
    let slot = (W - L - R) / models.len() as f64;
    for (i, x) in models.iter().enumerate() {
        let bw = slot * 0.35;
        let x0 = L + i as f64 * slot + slot * 0.15;
        for (j, (v, colour)) in [(x.share, COLOURS[0]), (x.deep_share, COLOURS[1])]
            .into_iter()
            .enumerate()
        {
            let y = py(v, max);
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{y:.1}" width="{bw:.1}" height="{:.1}" fill="{colour}"><title>{}: {v:.4}</title></rect>"##,
                x0 + j as f64 * bw,
                (H - B - y).max(0.0),
                esc(&x.name),
            );
        }
        let label = x
            .name
            .trim_start_matches("attack, ")
            .split(':')
            .next()
            .unwrap_or("");
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{}" text-anchor="middle" font-size="10">{}</text>"##,
            x0 + bw,
            H - B + 14.0 + 12.0 * (i % 2) as f64,
            esc(label)
        );
    }
    s.push_str("</svg>\n");
    s
}
