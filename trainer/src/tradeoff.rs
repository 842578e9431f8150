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

use crate::pipeline::test_split;
use shared::audit::exposure::Catalog;
use shared::canary::Fairness;
use shared::domain::dataset::{histories, popularity};
use shared::domain::eval::{recall_ndcg, Scorer};
use shared::domain::rerank::{rerank, ItemFeatures, Policy};
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
    ]
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
    let hist = histories(nu, &train);
    let pop = popularity(ni, &train);
    let features = ItemFeatures::new(
        ds.items
            .iter()
            .zip(&pop)
            .map(|(i, &p)| (i.genres.as_slice(), p)),
    );
    let catalog = Catalog::from_items(
        ds.items
            .iter()
            .zip(&pop)
            .map(|(i, &p)| (i.movie_id, p as u64)),
    );
    let bar = if progress {
        indicatif::ProgressBar::new((nu * (policies.len() + 1)) as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} users ({eta})")
            .expect("template")
            .progress_chars("=> "),
    );
    // Every user's masked scores, once.
    bar.set_message("scoring");
    let mut all: Vec<Vec<f32>> = Vec::with_capacity(nu);
    let mut buf = Vec::new();
    for (u, h) in hist.iter().enumerate() {
        model.score_all(u as u32, &mut buf)?;
        for &i in h {
            buf[i as usize] = f32::NEG_INFINITY;
        }
        all.push(buf.clone());
        bar.inc(1);
    }
    let mut rows = Vec::new();
    for &policy in policies {
        bar.set_message(policy.spec());
        // Fairness: every user's top-10 over the catalogue, in user order.
        let mut exposure = vec![0u64; ni];
        let mut lists: Vec<Vec<u64>> = Vec::with_capacity(nu);
        for (u, scores) in all.iter().enumerate() {
            let l = rerank(policy, scores, FAIR_K, &features, &hist[u], &exposure);
            for (i, _) in &l {
                exposure[*i as usize] += 1;
            }
            lists.push(
                l.iter()
                    .map(|(i, _)| ds.items[*i as usize].movie_id)
                    .collect(),
            );
            bar.inc(1);
        }
        let refs: Vec<&[u64]> = lists.iter().map(Vec::as_slice).collect();
        let fairness = Fairness::of(&refs, &catalog);
        let accuracy = match &test {
            TestSet::LeaveOneOut(cases) => {
                let (mut hr, mut ndcg) = (0.0, 0.0);
                let mut scores = vec![f32::NEG_INFINITY; ni];
                for c in cases {
                    let full = &all[c.user as usize];
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
                    let l = rerank(
                        policy,
                        &scores,
                        10,
                        &features,
                        &hist[c.user as usize],
                        &exposure,
                    );
                    if let Some(pos) = l.iter().position(|(i, _)| *i == c.item) {
                        hr += 1.0;
                        ndcg += 1.0 / ((pos + 2) as f64).log2();
                    }
                    for &i in std::iter::once(&c.item).chain(&c.negatives) {
                        scores[i as usize] = f32::NEG_INFINITY;
                    }
                }
                let n = cases.len().max(1) as f64;
                [
                    ("hr@10".to_string(), hr / n),
                    ("ndcg@10".to_string(), ndcg / n),
                ]
            }
            TestSet::Full(lists) => {
                let (mut recall, mut ndcg, mut users) = (0.0, 0.0, 0usize);
                for (u, relevant) in lists {
                    if relevant.is_empty() {
                        continue;
                    }
                    let l = rerank(
                        policy,
                        &all[*u as usize],
                        20,
                        &features,
                        &hist[*u as usize],
                        &exposure,
                    );
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
        };
        rows.push(Row {
            policy: policy.spec(),
            accuracy,
            fairness,
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
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_its_own_section_only() {
        let d = splice("# T\n", "a", "one\n");
        assert_eq!(d, "# T\n\n<!-- tradeoff:a -->\none\n<!-- /tradeoff:a -->\n");
        let d = splice(&d, "b", "two\n");
        let d = splice(&d, "a", "uno\n");
        assert!(
            d.contains("uno\n") && !d.contains("one\n") && d.contains("two\n"),
            "{d}"
        );
        assert!(d.find("tradeoff:a").unwrap() < d.find("tradeoff:b").unwrap());
    }
}
