//! The offline trade-off of the re-ranking policies: for each policy, the
//! test protocol's accuracy (NCF: HR@10 and NDCG@10 of the held-out item
//! among its candidates, re-ranked; full ranking: Recall@20 and NDCG@20)
//! next to the audit's fairness metrics of every user's top-10 list over
//! the whole catalogue (coverage, gini_catalog, tail share, top-10% share,
//! gini_exposed).
//!
//! Lists are produced user after user as a server would, so `explore` sees
//! the exposure of the lists before (training popularity plus what was
//! shown). Scores are computed once per user and shared by all policies.
//!
//! The `exposure` policy is the service-wide controller: it is iterated
//! over [`CONTROLLER_PASSES`] passes of every user's list, as hours of
//! traffic would be, each pass one audit window that updates the
//! adjustments the next pass ranks with (from a cold start); its row is the
//! last pass, and its accuracy is measured with the adjustments that pass
//! used. The price unit is each user's spread over the whole catalogue,
//! as in serving (the NCF protocol ranks only the candidates).

use crate::pipeline::test_split;
use shared::audit::exposure::Catalog;
use shared::canary::Fairness;
use shared::domain::dataset::{histories, popularity};
use shared::domain::eval::{recall_ndcg, Scorer};
use shared::domain::exposure_control::{spread, Adjustments, ControllerConfig};
use shared::domain::rerank::{rerank_priced_in, ItemFeatures, Policy};
use shared::domain::{Dataset, TestSet};

/// Accuracy and fairness of one policy.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub policy: String,
    /// `hr@10`/`ndcg@10` (NCF) or `recall@20`/`ndcg@20` (full ranking).
    pub accuracy: [(String, f64); 2],
    pub fairness: Fairness,
}

/// The whole comparison.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Tradeoff {
    pub data: String,
    pub protocol: &'static str,
    pub users: usize,
    pub catalog: usize,
    /// Whether the catalogue has genres (mmr and calibrated need them).
    pub genres: bool,
    pub rows: Vec<Row>,
}

/// Length of the lists whose fairness is measured.
pub const FAIR_K: usize = 10;

/// Passes of every user's list the exposure controller is iterated over
/// (a day of hourly audits, each hour serving every user once).
pub const CONTROLLER_PASSES: usize = 24;

/// The policies compared by default.
pub fn default_policies() -> Vec<Policy> {
    vec![
        Policy::None,
        Policy::Mmr { lambda: 0.3 },
        Policy::Mmr { lambda: 0.6 },
        Policy::Calibrated { lambda: 0.5 },
        Policy::Calibrated { lambda: 0.9 },
        Policy::Slots { slots: 2 },
        Policy::Slots { slots: 3 },
        Policy::Slots { slots: 5 },
        Policy::Explore { weight: 0.05 },
        Policy::Explore { weight: 0.1 },
        Policy::Explore { weight: 0.15 },
        Policy::Explore { weight: 0.2 },
        Policy::Explore { weight: 0.3 },
        Policy::Explore { weight: 0.5 },
        exposure(0.05),
        exposure(0.1),
        exposure(0.2),
        exposure(0.5),
        exposure(1.0),
        exposure(2.0),
    ]
}

/// The controller at `scale`, with its default guard and base.
fn exposure(scale: f64) -> Policy {
    Policy::Exposure {
        scale,
        protect: 2,
        slots: 3,
    }
}

/// Runs the comparison of `policies` for `model` on `ds` (whose items carry
/// the genres the policies see), with a progress bar.
pub fn compare(
    model: &dyn Scorer,
    ds: &Dataset,
    policies: &[Policy],
    progress: bool,
) -> Result<Tradeoff, shared::domain::eval::ScoreError> {
    let (train, test) = test_split(ds);
    let (nu, ni) = (ds.n_users(), ds.n_items());
    let pop = popularity(ni, &train);
    let catalog = Catalog::from_items(
        ds.items
            .iter()
            .zip(&pop)
            .map(|(i, &p)| (i.movie_id, p as u64)),
    );
    let bar = progress_bar(progress, (nu * (policies.len() + 1)) as u64);
    bar.set_message("scoring");
    let scored = Scored::new(model, ds, histories(nu, &train), &pop, &bar)?;
    let mut rows = Vec::new();
    for &policy in policies {
        bar.set_message(policy.spec());
        let (ranker, lists) = scored.fair_lists(policy, &bar);
        let refs: Vec<&[u64]> = lists.iter().map(Vec::as_slice).collect();
        rows.push(Row {
            policy: policy.spec(),
            accuracy: match &test {
                TestSet::LeaveOneOut(cases) => ranker.leave_one_out(model, cases)?,
                TestSet::Full(lists) => ranker.full_ranking(lists),
            },
            fairness: Fairness::of(&refs, &catalog),
        });
    }
    bar.finish_and_clear();
    Ok(Tradeoff {
        data: ds.source.clone(),
        protocol: test.protocol(),
        users: nu,
        catalog: ni,
        genres: ds.items.iter().any(|i| !i.genres.is_empty()),
        rows,
    })
}

fn progress_bar(shown: bool, len: u64) -> indicatif::ProgressBar {
    let bar = if shown {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} users ({eta})")
            .expect("template")
            .progress_chars("=> "),
    );
    bar
}

/// What every policy ranks from: each user's scores over the catalogue
/// (computed once, training history masked), history and score spread.
struct Scored<'a> {
    ds: &'a Dataset,
    all: Vec<Vec<f32>>,
    hist: Vec<Vec<u32>>,
    spreads: Vec<Option<f64>>,
    features: ItemFeatures,
}

impl<'a> Scored<'a> {
    fn new(
        model: &dyn Scorer,
        ds: &'a Dataset,
        hist: Vec<Vec<u32>>,
        pop: &[u32],
        bar: &indicatif::ProgressBar,
    ) -> Result<Self, shared::domain::eval::ScoreError> {
        let mut all: Vec<Vec<f32>> = Vec::with_capacity(hist.len());
        let mut buf = Vec::new();
        for (u, h) in hist.iter().enumerate() {
            model.score_all(u as u32, &mut buf)?;
            for &i in h {
                buf[i as usize] = f32::NEG_INFINITY;
            }
            all.push(buf.clone());
            bar.inc(1);
        }
        let features = ItemFeatures::new(
            ds.items
                .iter()
                .zip(pop)
                .map(|(i, &p)| (i.genres.as_slice(), p)),
        );
        Ok(Scored {
            ds,
            spreads: all.iter().map(|s| spread(s)).collect(),
            all,
            hist,
            features,
        })
    }

    /// Every user's top-[`FAIR_K`] under `policy`, in user order (the
    /// controller's last pass), and the ranker as that pass left it.
    fn fair_lists(
        &self,
        policy: Policy,
        bar: &indicatif::ProgressBar,
    ) -> (Ranker<'_>, Vec<Vec<u64>>) {
        let (nu, ni) = (self.all.len(), self.ds.n_items());
        let movie_ids: Vec<u64> = self.ds.items.iter().map(|i| i.movie_id).collect();
        let cfg = ControllerConfig::default();
        let passes = if matches!(policy, Policy::Exposure { .. }) {
            CONTROLLER_PASSES
        } else {
            1
        };
        let mut adjustments = Adjustments::default();
        let mut r = Ranker {
            s: self,
            policy,
            exposure: vec![0u64; ni],
            net: Vec::new(),
        };
        let mut lists: Vec<Vec<u64>> = Vec::with_capacity(nu);
        for pass in 0..passes {
            r.net = adjustments.vector(movie_ids.iter().copied());
            r.exposure.fill(0);
            lists.clear();
            for (u, scores) in self.all.iter().enumerate() {
                let l = r.list(u, scores, FAIR_K);
                for (i, _) in &l {
                    r.exposure[*i as usize] += 1;
                }
                lists.push(l.iter().map(|(i, _)| movie_ids[*i as usize]).collect());
            }
            if passes > 1 {
                let mut window = std::collections::HashMap::new();
                for &m in lists.iter().flatten() {
                    *window.entry(m).or_insert(0u64) += 1;
                }
                adjustments = adjustments.update(&window, ni, &cfg, pass as i64);
            }
            bar.inc(nu as u64 / passes as u64);
        }
        (r, lists)
    }
}

/// A policy with the exposure and controller adjustments its fairness
/// lists were ranked under; accuracy is measured with the same.
struct Ranker<'a> {
    s: &'a Scored<'a>,
    policy: Policy,
    exposure: Vec<u64>,
    net: Vec<f32>,
}

impl Ranker<'_> {
    fn list(&self, user: usize, scores: &[f32], k: usize) -> Vec<(u32, f32)> {
        rerank_priced_in(
            self.policy,
            scores,
            k,
            &self.s.features,
            &self.s.hist[user],
            &self.exposure,
            &self.net,
            self.s.spreads[user],
        )
    }

    /// HR@10 and NDCG@10 of each held-out item among its candidates.
    fn leave_one_out(
        &self,
        model: &dyn Scorer,
        cases: &[shared::domain::LooCase],
    ) -> Result<[(String, f64); 2], shared::domain::eval::ScoreError> {
        let (mut hr, mut ndcg) = (0.0, 0.0);
        let mut scores = vec![f32::NEG_INFINITY; self.s.ds.n_items()];
        for c in cases {
            let full = &self.s.all[c.user as usize];
            // The candidates: the held-out item and its negatives (once each).
            for &i in std::iter::once(&c.item).chain(&c.negatives) {
                scores[i as usize] = full[i as usize];
            }
            // The held-out item may be in the train history's mask: unmask it.
            if !scores[c.item as usize].is_finite() {
                let mut one = Vec::new();
                model.score_items(c.user, &[c.item], &mut one)?;
                scores[c.item as usize] = one[0];
            }
            let l = self.list(c.user as usize, &scores, 10);
            if let Some(pos) = l.iter().position(|(i, _)| *i == c.item) {
                hr += 1.0;
                ndcg += 1.0 / ((pos + 2) as f64).log2();
            }
            for &i in std::iter::once(&c.item).chain(&c.negatives) {
                scores[i as usize] = f32::NEG_INFINITY;
            }
        }
        let n = cases.len().max(1) as f64;
        Ok([
            ("hr@10".to_string(), hr / n),
            ("ndcg@10".to_string(), ndcg / n),
        ])
    }

    /// Recall@20 and NDCG@20 over the whole catalogue.
    fn full_ranking(&self, lists: &[(u32, Vec<u32>)]) -> [(String, f64); 2] {
        let (mut recall, mut ndcg, mut users) = (0.0, 0.0, 0usize);
        for (u, relevant) in lists {
            if relevant.is_empty() {
                continue;
            }
            let l = self.list(*u as usize, &self.s.all[*u as usize], 20);
            let ranked: Vec<u32> = l.iter().map(|(i, _)| *i).collect();
            let (r, n) = recall_ndcg(&ranked, relevant, 20);
            recall += r;
            ndcg += n;
            users += 1;
        }
        let n = users.max(1) as f64;
        [
            ("recall@20".to_string(), recall / n),
            ("ndcg@20".to_string(), ndcg / n),
        ]
    }
}

fn f4(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{v:.4}"))
}

fn rel(x: f64, base: f64) -> String {
    if base == 0.0 {
        "–".into()
    } else {
        format!("{:+.1}%", 100.0 * (x / base - 1.0))
    }
}

impl Tradeoff {
    /// A Markdown table, `none` first as the reference of the relative columns.
    pub fn markdown(&self, title: &str) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let base = self.rows.iter().find(|r| r.policy == "none");
        let (a0, a1) = match self.rows.first() {
            Some(r) => (r.accuracy[0].0.clone(), r.accuracy[1].0.clone()),
            None => ("accuracy".into(), "".into()),
        };
        let _ = writeln!(s, "### {title}\n");
        let _ = writeln!(
            s,
            "`{}`, {} protocol; accuracy over the test users, fairness of top-{FAIR_K} lists for all {} users over the {} movies{}.\n",
            self.data,
            self.protocol,
            self.users,
            self.catalog,
            if self.genres { "" } else { " (no genres: `mmr` and `calibrated` fall back to the model's order)" }
        );
        let _ = writeln!(
            s,
            "| policy | {a0} | {a1} | Δ{a0} | coverage | gini_catalog | Δgini_catalog | tail share | top-10% share | gini_exposed |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let (d_acc, d_gini) = match base {
                Some(b) => (
                    rel(r.accuracy[0].1, b.accuracy[0].1),
                    match (r.fairness.gini_catalog, b.fairness.gini_catalog) {
                        (Some(x), Some(y)) => rel(x, y),
                        _ => "–".into(),
                    },
                ),
                None => ("–".into(), "–".into()),
            };
            let _ = writeln!(
                s,
                "| `{}` | {:.4} | {:.4} | {} | {} | {} | {} | {} | {} | {} |",
                r.policy,
                r.accuracy[0].1,
                r.accuracy[1].1,
                d_acc,
                f4(r.fairness.catalog_coverage),
                f4(r.fairness.gini_catalog),
                d_gini,
                f4(r.fairness.tail_share),
                f4(r.fairness.top_10_pct_share),
                f4(r.fairness.gini_exposed),
            );
        }
        s
    }
}

/// One colour per policy family in the chart.
const FAMILIES: [(&str, &str); 6] = [
    ("none", "#333333"),
    ("mmr", "#9467bd"),
    ("calibrated", "#8c564b"),
    ("slots", "#1f77b4"),
    ("explore", "#ff7f0e"),
    ("exposure", "#2ca02c"),
];

impl Tradeoff {
    /// An SVG of accuracy (the first measure) against `gini_exposed`, one
    /// point per policy, each family's points joined in order of Gini; the
    /// audit's Gini threshold dashed. Up and to the left is better.
    pub fn pareto_svg(&self, title: &str, max_gini: f64) -> String {
        use shared::audit::report::{esc, frame, px, py, y_ticks_from, B, H, R, W};
        let acc = self
            .rows
            .first()
            .map_or("accuracy".into(), |r| r.accuracy[0].0.clone());
        let mut s = frame(title, "gini_exposed (lower is fairer)", &acc);
        let pts: Vec<(&str, &str, f64, f64)> = self
            .rows
            .iter()
            .filter_map(|r| {
                let family = r.policy.split(':').next().unwrap_or("");
                Some((
                    family,
                    r.policy.as_str(),
                    r.fairness.gini_exposed?,
                    r.accuracy[0].1,
                ))
            })
            .collect();
        let (gx_lo, gx_hi) = pts
            .iter()
            .fold((max_gini, max_gini), |(a, b), p| (a.min(p.2), b.max(p.2)));
        let (x_lo, x_hi) = (
            ((gx_lo - 0.05) * 20.0).floor() / 20.0,
            ((gx_hi + 0.05) * 20.0).ceil() / 20.0,
        );
        let (a_lo, a_hi) = pts.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| {
            (a.min(p.3), b.max(p.3))
        });
        let pad = ((a_hi - a_lo) * 0.1).max(0.005);
        let lo = ((a_lo - pad).max(0.0) * 100.0).floor() / 100.0;
        let span = (((a_hi + pad) * 100.0).ceil() / 100.0 - lo).max(0.01);
        y_ticks_from(&mut s, lo, span);
        let x = |g: f64| px((g - x_lo) / (x_hi - x_lo));
        let y = |a: f64| py(a - lo, span);
        let mut tick = x_lo;
        while tick <= x_hi + 1e-9 {
            let _ = std::fmt::Write::write_fmt(
                &mut s,
                format_args!(
                    "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{tick:.2}</text>\n",
                    x(tick),
                    H - B + 16.0
                ),
            );
            tick += 0.05;
        }
        let _ = std::fmt::Write::write_fmt(
            &mut s,
            format_args!(
                "<line x1=\"{0:.1}\" y1=\"40\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#d62728\" stroke-dasharray=\"5,4\"/><text x=\"{2:.1}\" y=\"52\" fill=\"#d62728\">gini_exposed threshold {max_gini}</text>\n",
                x(max_gini),
                H - B,
                x(max_gini) + 4.0
            ),
        );
        for (n, (family, colour)) in FAMILIES.iter().enumerate() {
            let mut mine: Vec<&(&str, &str, f64, f64)> =
                pts.iter().filter(|p| p.0 == *family).collect();
            if mine.is_empty() {
                continue;
            }
            mine.sort_by(|a, b| a.2.total_cmp(&b.2));
            let line: Vec<String> = mine
                .iter()
                .map(|p| format!("{:.1},{:.1}", x(p.2), y(p.3)))
                .collect();
            let _ = std::fmt::Write::write_fmt(
                &mut s,
                format_args!(
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/>\n",
                    line.join(" ")
                ),
            );
            for p in &mine {
                // Each point labelled with its parameter (the family is the colour).
                let label =
                    p.1.split_once(':')
                        .map_or("", |(_, params)| params.split(',').next().unwrap_or(""));
                let _ = std::fmt::Write::write_fmt(
                    &mut s,
                    format_args!(
                        "<circle cx=\"{0:.1}\" cy=\"{1:.1}\" r=\"4\" fill=\"{colour}\"><title>{2}</title></circle><text x=\"{3:.1}\" y=\"{4:.1}\" font-size=\"9\" fill=\"{colour}\">{5}</text>\n",
                        x(p.2),
                        y(p.3),
                        esc(p.1),
                        x(p.2) + 5.0,
                        y(p.3) - 5.0,
                        esc(label)
                    ),
                );
            }
            let ly = 70.0 + 16.0 * n as f64;
            let _ = std::fmt::Write::write_fmt(
                &mut s,
                format_args!(
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"4\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{ly:.1}\">{family}</text>\n",
                    W - R - 110.0,
                    ly - 4.0,
                    W - R - 92.0
                ),
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// Replaces (or appends) the section between `<!-- tradeoff:KEY -->` and
/// `<!-- /tradeoff:KEY -->` in `doc`.
pub fn splice(doc: &str, key: &str, section: &str) -> String {
    let (open, close) = (
        format!("<!-- tradeoff:{key} -->"),
        format!("<!-- /tradeoff:{key} -->"),
    );
    let block = format!("{open}\n{section}{close}\n");
    match (doc.find(&open), doc.find(&close)) {
        (Some(a), Some(b)) if a < b => {
            let end = b + close.len();
            let end = if doc[end..].starts_with('\n') {
                end + 1
            } else {
                end
            };
            format!("{}{}{}", &doc[..a], block, &doc[end..])
        }
        _ => {
            let sep = if doc.is_empty() || doc.ends_with("\n\n") {
                ""
            } else if doc.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            format!("{doc}{sep}{block}")
        }
    }
}

#[cfg(test)]
mod tests;
