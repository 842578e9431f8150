//! The audit report as Markdown and SVG charts: the exposure Lorenz curve,
//! amplification by tier, and the distribution of spam scores.

use super::exposure::{Tier, TIER_NAMES};
use super::AuditReport;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The files of a report: `(name, content type, bytes)`.
pub fn files(r: &AuditReport) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        (
            "report.json",
            "application/json",
            serde_json::to_vec_pretty(r).expect("report serialises"),
        ),
        ("report.md", "text/markdown", markdown(r).into_bytes()),
        ("lorenz.svg", "image/svg+xml", lorenz_svg(r).into_bytes()),
        ("tiers.svg", "image/svg+xml", tiers_svg(r).into_bytes()),
        ("spam.svg", "image/svg+xml", spam_svg(r).into_bytes()),
    ]
}

fn f(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.3}"))
}

/// Escapes text for SVG and HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report for people: summary, checks, tiers, groups, segments, spam.
pub fn markdown(r: &AuditReport) -> String {
    let mut s = String::new();
    for section in [summary, checks, exposure, groups, segments, spam] {
        section(&mut s, r);
    }
    s.push_str("\nCharts: `lorenz.svg` (exposure Lorenz curve), `tiers.svg` (amplification by tier), `spam.svg` (spam score distribution).\n");
    s
}

/// Title, window, what was audited and the verdict.
fn summary(s: &mut String, r: &AuditReport) {
    let m = &r.overall;
    let _ = writeln!(s, "# Audit {}\n", r.audit_id);
    if let Some(w) = r.window {
        let t = |ms| {
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        let _ = writeln!(
            s,
            "Window: {} to {} (exclusive).\n",
            t(w.from_ms),
            t(w.to_ms)
        );
    }
    let _ =
        writeln!(
        s,
        "{} recommendation lists, {} exposures of {} distinct movies; catalogue of {} movies{}.\n",
        m.requests,
        m.exposures,
        m.distinct_exposed,
        m.catalog_size,
        if m.unknown_movies > 0 {
            format!(" ({} exposed movies were not in it and are counted in it)", m.unknown_movies)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        s,
        "**{}**\n",
        if r.passed {
            "All thresholds hold."
        } else {
            "Thresholds breached."
        }
    );
}

/// Each threshold check.
fn checks(s: &mut String, r: &AuditReport) {
    s.push_str("| check | value | threshold | result |\n|---|---|---|---|\n");
    for c in &r.checks {
        let _ = writeln!(
            s,
            "| {} | {} | {} {} | {} |",
            c.metric,
            f(c.value),
            c.op,
            c.threshold,
            match c.passed {
                Some(true) => "ok",
                Some(false) => "**breached**",
                None => "no data",
            }
        );
    }
}

/// The headline exposure metrics and the tier tables.
fn exposure(s: &mut String, r: &AuditReport) {
    let m = &r.overall;
    s.push_str("\n## Exposure\n\n| metric | value |\n|---|---|\n");
    for (name, v) in r.headline() {
        let _ = writeln!(s, "| {name} | {} |", f(v));
    }
    let tiers = |s: &mut String, title: &str, t: &BTreeMap<&'static str, Tier>| {
        let _ = writeln!(
            s,
            "\n### {title}\n\n| tier | movies | catalog_pct | exposure_pct | amplification |\n|---|---|---|---|---|"
        );
        for name in TIER_NAMES {
            if let Some(x) = t.get(name) {
                let _ = writeln!(
                    s,
                    "| {name} | {} | {:.3} | {:.3} | {} |",
                    x.movies,
                    x.catalog_pct,
                    x.exposure_pct,
                    f(x.amplification)
                );
            }
        }
    };
    tiers(s, "Tiers by exposure (legacy)", &m.tiers);
    tiers(s, "Tiers by training popularity", &m.popularity_tiers);
}

/// Fairness by model version and variant.
fn groups(s: &mut String, r: &AuditReport) {
    if !r.groups.is_empty() {
        s.push_str("\n## By model version and variant\n\n| model_version | variant | users | lists | coverage | gini_exposed | gini_catalog | tail_share | head_share_by_popularity |\n|---|---|---|---|---|---|---|---|---|\n");
        for g in &r.groups {
            let x = &g.metrics;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                g.model_version,
                g.variant.as_deref().unwrap_or("–"),
                g.users,
                x.requests,
                f(x.catalog_coverage),
                f(x.gini_exposed),
                f(x.gini_catalog),
                f(x.tail_share),
                f(x.head_share_by_popularity)
            );
        }
    }
}

/// Exposure by user segment.
fn segments(s: &mut String, r: &AuditReport) {
    if !r.segments.is_empty() {
        s.push_str("\n## Segments\n\n| dimension | segment | users | user share | exposure share | mean popularity | head share |\n|---|---|---|---|---|---|---|\n");
        for x in &r.segments {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.3} | {:.3} | {:.1} | {:.3} |",
                x.dimension,
                x.segment,
                x.users,
                x.user_share,
                x.exposure_share,
                x.mean_popularity,
                x.head_share_by_popularity
            );
        }
    }
}

/// The rating spam rules and the users they flagged.
fn spam(s: &mut String, r: &AuditReport) {
    let p = &r.spam;
    let _ = writeln!(
        s,
        "\n## Rating spam\n\n{} valid ratings from {} users; {} records with invalid fields (schema errors).\n\n\
         - legacy rule (count > mean + 3σ = {:.2}): {} users\n\
         - robust rule (count > median + {}·1.4826·MAD = {:.2}; median {}, MAD {}): {} users\n\
         - identical extreme ratings (≥ {}): {} users\n\
         - velocity (> {} per hour): {} users\n\n\
         Quarantined (any rule but legacy): {}\n",
        p.events,
        p.users,
        p.schema_errors,
        p.threshold,
        p.by_rule.get("legacy").unwrap_or(&0),
        p.config.robust_k,
        p.robust_threshold,
        p.median,
        p.mad,
        p.by_rule.get("robust").unwrap_or(&0),
        p.config.identical_min_ratings,
        p.by_rule.get("identical_extreme").unwrap_or(&0),
        p.config.velocity_limit,
        p.by_rule.get("velocity").unwrap_or(&0),
        if p.flagged_users.is_empty() {
            "none".to_string()
        } else {
            p.flagged_users
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if !p.flags.is_empty() {
        s.push_str(
            "\n| user | ratings | max per hour | robust score | rules |\n|---|---|---|---|---|\n",
        );
        for x in &p.flags {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {} |",
                x.user_id,
                x.events,
                x.max_per_span,
                x.robust_score,
                x.rules.join(", ")
            );
        }
    }
}

pub const W: f64 = 640.0;
pub const H: f64 = 400.0;
pub const L: f64 = 60.0;
pub const R: f64 = 20.0;
pub const T: f64 = 40.0;
pub const B: f64 = 50.0;

/// A blank chart: title, axes and their labels (the chart primitives are
/// shared with the simulator's trajectories).
pub fn frame(title: &str, x_label: &str, y_label: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="#ffffff"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
<line x1="{L}" y1="{}" x2="{}" y2="{}" stroke="#333"/>
<line x1="{L}" y1="{T}" x2="{L}" y2="{}" stroke="#333"/>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>
"##,
        W / 2.0,
        esc(title),
        H - B,
        W - R,
        H - B,
        H - B,
        L + (W - L - R) / 2.0,
        H - 12.0,
        esc(x_label),
        T + (H - T - B) / 2.0,
        T + (H - T - B) / 2.0,
        esc(y_label)
    );
    s
}

/// x pixel of a fraction 0..1 of the plot width.
pub fn px(x: f64) -> f64 {
    L + x * (W - L - R)
}

/// y pixel of `y` on a 0..`max` axis.
pub fn py(y: f64, max: f64) -> f64 {
    H - B - (y / max) * (H - T - B)
}

/// Five ticks of a 0..`max` y axis.
pub fn y_ticks(s: &mut String, max: f64) {
    y_ticks_from(s, 0.0, max);
}

/// Five ticks of a `lo..lo + span` y axis (values plotted as `py(v − lo, span)`).
pub fn y_ticks_from(s: &mut String, lo: f64, span: f64) {
    for i in 0..=4 {
        let v = span * i as f64 / 4.0;
        let label = lo + v;
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{y:.1}" x2="{L}" y2="{y:.1}" stroke="#333"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            L - 4.0,
            L - 6.0,
            py(v, span) + 4.0,
            if span >= 10.0 {
                format!("{label:.0}")
            } else {
                format!("{label:.2}")
            },
            y = py(v, span)
        );
    }
}

/// The Lorenz curve of catalogue exposure, with the line of equality.
pub fn lorenz_svg(r: &AuditReport) -> String {
    let m = &r.overall;
    let mut s = frame(
        &format!("Exposure Lorenz curve (gini_catalog {})", f(m.gini_catalog)),
        "share of catalogue (movies by ascending exposure)",
        "share of exposures",
    );
    y_ticks(&mut s, 1.0);
    for i in 0..=4 {
        let x = i as f64 / 4.0;
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{}" text-anchor="middle">{x:.2}</text>"##,
            px(x),
            H - B + 16.0
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999" stroke-dasharray="4 4"/>"##,
        px(0.0),
        py(0.0, 1.0),
        px(1.0),
        py(1.0, 1.0)
    );
    if m.lorenz.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle">no exposures in the window</text>"##,
            W / 2.0,
            H / 2.0
        );
    } else {
        let pts: Vec<String> = m
            .lorenz
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y, 1.0)))
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#1f77b4" stroke-width="2"/>"##,
            pts.join(" ")
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Amplification (exposure share / catalogue share) per tier, by exposure
/// rank (legacy) and by training popularity, with the parity line at 1.
pub fn tiers_svg(r: &AuditReport) -> String {
    let m = &r.overall;
    let mut s = frame(
        "Amplification by tier",
        "tier (blue: by exposure rank, legacy; orange: by training popularity)",
        "exposure share / catalogue share",
    );
    let val =
        |t: &BTreeMap<&str, Tier>, n: &str| t.get(n).and_then(|x| x.amplification).unwrap_or(0.0);
    let max = TIER_NAMES
        .iter()
        .flat_map(|n| [val(&m.tiers, n), val(&m.popularity_tiers, n)])
        .fold(1.0f64, f64::max)
        * 1.1;
    y_ticks(&mut s, max);
    let slot = (W - L - R) / TIER_NAMES.len() as f64;
    for (i, n) in TIER_NAMES.iter().enumerate() {
        let x0 = L + i as f64 * slot;
        for (j, (v, colour)) in [
            (val(&m.tiers, n), "#1f77b4"),
            (val(&m.popularity_tiers, n), "#ff7f0e"),
        ]
        .into_iter()
        .enumerate()
        {
            let bw = slot * 0.35;
            let x = x0 + slot * 0.12 + j as f64 * bw;
            let y = py(v, max);
            let _ = writeln!(
                s,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{:.1}" fill="{colour}"><title>{n}: {v:.3}</title></rect>"##,
                (H - B - y).max(0.0)
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{}" text-anchor="middle">{n}</text>"##,
            x0 + slot / 2.0,
            H - B + 16.0
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{L}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#d62728" stroke-dasharray="4 4"/>"##,
        W - R,
        y = py(1.0, max)
    );
    s.push_str("</svg>\n");
    s
}

/// Histogram of users' robust spam scores, with the flagging threshold.
pub fn spam_svg(r: &AuditReport) -> String {
    let p = &r.spam;
    let mut s = frame(
        &format!(
            "Spam score distribution ({} users, {} quarantined)",
            p.users,
            p.flagged_users.len()
        ),
        "robust score (count − median) / (1.4826·MAD)",
        "users (log scale)",
    );
    let k = p.config.robust_k;
    let hi = p.scores.iter().copied().fold(k * 1.5, f64::max).ceil();
    let lo = p.scores.iter().copied().fold(-1.0, f64::min).floor();
    const BINS: usize = 40;
    let width = (hi - lo) / BINS as f64;
    let mut bins = [0usize; BINS];
    for &v in &p.scores {
        bins[(((v - lo) / width) as usize).min(BINS - 1)] += 1;
    }
    let log = |c: usize| (c as f64 + 1.0).log10();
    let max = bins.iter().map(|&c| log(c)).fold(1.0, f64::max);
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end">{:.0}</text>"##,
            L - 6.0,
            py(v, max) + 4.0,
            10f64.powf(v) - 1.0
        );
    }
    let bx = |v: f64| px((v - lo) / (hi - lo));
    for (i, &c) in bins.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let x = bx(lo + i as f64 * width);
        let y = py(log(c), max);
        let flagged = lo + (i as f64 + 0.5) * width > k;
        let _ = writeln!(
            s,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{c} users</title></rect>"##,
            (bx(width + lo) - bx(lo) - 1.0).max(1.0),
            H - B - y,
            if flagged { "#d62728" } else { "#1f77b4" }
        );
    }
    for v in [lo, 0.0, k, hi] {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{}" text-anchor="middle">{v:.1}</text>"##,
            bx(v),
            H - B + 16.0
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{}" stroke="#d62728" stroke-dasharray="4 4"/><text x="{:.1}" y="{}" fill="#d62728">k = {k}</text>"##,
        H - B,
        bx(k) + 4.0,
        T + 12.0,
        x = bx(k)
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests;
