//! Exposure metrics: how recommendation exposure spreads over the catalogue.
//!
//! Exposures are the multiset of movie ids recommended in a window. With `N`
//! the catalogue size, `n` the number of distinct exposed movies and `v` their
//! exposure counts:
//!
//! | metric | definition |
//! |---|---|
//! | `catalog_coverage` | `n / N` |
//! | `gini_exposed` (legacy) | Gini of the counts of exposed movies only: counts sorted ascending `v_1..v_n`, `G = 2·Σ i·v_i / (n·Σ v) − (n+1)/n` |
//! | `gini_catalog` | the same over the whole catalogue, never-exposed movies counted as 0 |
//! | `top_10_pct_share` (legacy) | share of exposures taken by the top `max(1, floor(0.1·n))` exposed movies |
//! | `tail_share` (legacy) | `1 − top_10_pct_share` |
//! | `head_share_by_popularity` | share of exposures going to the top 10% of the catalogue by training popularity (the `high` popularity tier) |
//! | `starvation_index` | never-exposed movies / `N` |
//!
//! Tiers (legacy, "feedback-loop tiers"): exposed movies ranked by count,
//! descending (ties by movie id), position `i` (0-based): `high` if
//! `i/n < 0.1`, `medium` if `< 0.5`, `low` if `< 0.9`, else `tail`; `zero`
//! holds the never-exposed movies. Per tier: `catalog_pct` = tier size / N,
//! `exposure_pct`, `amplification` = exposure_pct / catalog_pct. Because these
//! tiers are cut by exposure itself, the top tier's amplification is high by
//! construction; the **popularity tiers** cut the catalogue the same way by
//! training popularity (position over N), which is what a feedback loop
//! amplifies.
//!
//! With no exposures every ratio is `None` (nothing was recommended, so
//! nothing can be judged) and no metric is published for the window.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Tier names, from the head of the ranking to never-exposed movies.
pub const TIER_NAMES: [&str; 5] = ["high", "medium", "low", "tail", "zero"];

/// The catalogue a window is judged against.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Number of movies that could be recommended.
    pub size: usize,
    /// The catalogue's movie ids, when known (movies.dat, a model manifest).
    pub ids: Option<HashSet<u64>>,
    /// Training popularity (interaction counts); absent movies count 0.
    pub popularity: HashMap<u64, u64>,
}

impl Catalog {
    /// A catalogue of known ids with their popularity.
    pub fn from_items(items: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut ids = HashSet::new();
        let mut popularity = HashMap::new();
        for (id, pop) in items {
            ids.insert(id);
            if pop > 0 {
                popularity.insert(id, pop);
            }
        }
        Catalog {
            size: ids.len(),
            ids: Some(ids),
            popularity,
        }
    }

    /// The catalogue ranked by popularity (descending, ties by id) over the
    /// movies whose ids are known, and the effective catalogue size: the
    /// declared size, grown to cover any known or exposed id outside it.
    fn ranking(&self, exposed: &HashMap<u64, u64>) -> (Vec<u64>, usize) {
        let mut known: HashSet<u64> = self.popularity.keys().copied().collect();
        if let Some(ids) = &self.ids {
            known.extend(ids.iter().copied());
        }
        known.extend(exposed.keys().copied());
        let mut ranked: Vec<u64> = known.into_iter().collect();
        ranked.sort_unstable_by_key(|id| {
            (
                std::cmp::Reverse(self.popularity.get(id).copied().unwrap_or(0)),
                *id,
            )
        });
        let n = self.size.max(ranked.len());
        (ranked, n)
    }
}

impl Catalog {
    /// The `high` popularity tier: the movies at positions `i` with
    /// `i/N < 0.1` of the popularity ranking (the catalogue grown by `exposed`).
    pub fn popularity_head(&self, exposed: &HashMap<u64, u64>) -> HashSet<u64> {
        let (ranked, n) = self.ranking(exposed);
        ranked
            .into_iter()
            .enumerate()
            .take_while(|&(i, _)| tier_of(i, n) == "high")
            .map(|(_, m)| m)
            .collect()
    }
}

/// One tier's share of the catalogue and of the exposures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tier {
    pub movies: usize,
    pub exposures: u64,
    pub catalog_pct: f64,
    pub exposure_pct: f64,
    /// `exposure_pct / catalog_pct`; `None` for an empty tier.
    pub amplification: Option<f64>,
}

/// Every exposure metric of one set of exposures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExposureMetrics {
    /// Recommendation lists in the window.
    pub requests: usize,
    pub exposures: u64,
    pub distinct_exposed: usize,
    pub catalog_size: usize,
    /// Exposed movies that are not in the catalogue (they are counted in it).
    pub unknown_movies: usize,
    pub catalog_coverage: Option<f64>,
    pub gini_exposed: Option<f64>,
    pub gini_catalog: Option<f64>,
    pub top_10_pct_share: Option<f64>,
    pub tail_share: Option<f64>,
    pub head_share_by_popularity: Option<f64>,
    pub starvation_index: Option<f64>,
    /// Legacy tiers by exposure rank, keyed by [`TIER_NAMES`].
    pub tiers: BTreeMap<&'static str, Tier>,
    /// The same tiers cut by training popularity over the catalogue.
    pub popularity_tiers: BTreeMap<&'static str, Tier>,
    /// Lorenz curve of catalogue exposure: (share of movies, share of
    /// exposures), movies sorted by ascending exposure; at most ~200 points.
    #[serde(skip)]
    pub lorenz: Vec<(f64, f64)>,
}

/// Counts exposures per movie.
#[derive(Clone, Debug, Default)]
pub struct ExposureCounts {
    pub requests: usize,
    pub counts: HashMap<u64, u64>,
}

impl ExposureCounts {
    pub fn add_list(&mut self, movies: &[u64]) {
        self.requests += 1;
        for &m in movies {
            *self.counts.entry(m).or_insert(0) += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// Gini coefficient of `counts` (ascending) padded with `zeros` leading
/// zeros: `2·Σ i·v_i / (N·Σ v) − (N+1)/N` over positions `i = 1..N`.
/// `None` when there is nothing (N = 0 or Σ v = 0).
pub fn gini(sorted_ascending: &[u64], zeros: usize) -> Option<f64> {
    let n = sorted_ascending.len() + zeros;
    let total: u64 = sorted_ascending.iter().sum();
    if n == 0 || total == 0 {
        return None;
    }
    let weighted: f64 = sorted_ascending
        .iter()
        .enumerate()
        .map(|(j, &v)| (zeros + j + 1) as f64 * v as f64)
        .sum();
    let n = n as f64;
    Some(2.0 * weighted / (n * total as f64) - (n + 1.0) / n)
}

/// The tier of position `i` (0-based) in a ranking of `n`.
fn tier_of(i: usize, n: usize) -> &'static str {
    let p = i as f64 / n as f64;
    if p < 0.1 {
        "high"
    } else if p < 0.5 {
        "medium"
    } else if p < 0.9 {
        "low"
    } else {
        "tail"
    }
}

fn finish_tiers(
    acc: BTreeMap<&'static str, (usize, u64)>,
    catalog: usize,
    total: u64,
) -> BTreeMap<&'static str, Tier> {
    acc.into_iter()
        .map(|(name, (movies, exposures))| {
            let catalog_pct = movies as f64 / catalog as f64;
            let exposure_pct = exposures as f64 / total as f64;
            let amplification = (movies > 0).then(|| exposure_pct / catalog_pct);
            (
                name,
                Tier {
                    movies,
                    exposures,
                    catalog_pct,
                    exposure_pct,
                    amplification,
                },
            )
        })
        .collect()
}

/// Every metric of `exposures` against `catalog`.
pub fn metrics(exposures: &ExposureCounts, catalog: &Catalog) -> ExposureMetrics {
    let counts = &exposures.counts;
    let total = exposures.total();
    let (ranked, n_catalog) = catalog.ranking(counts);
    let unknown_movies = match &catalog.ids {
        Some(ids) => counts.keys().filter(|m| !ids.contains(m)).count(),
        None => 0,
    };
    let mut m = ExposureMetrics {
        requests: exposures.requests,
        exposures: total,
        distinct_exposed: counts.values().filter(|&&c| c > 0).count(),
        catalog_size: n_catalog,
        unknown_movies,
        ..ExposureMetrics::default()
    };
    if total == 0 || n_catalog == 0 {
        return m;
    }
    let n = m.distinct_exposed;
    let zeros = n_catalog - n;
    // Exposed movies by count descending, ties by id.
    let mut by_count: Vec<(u64, u64)> = counts
        .iter()
        .filter(|(_, &c)| c > 0)
        .map(|(&id, &c)| (id, c))
        .collect();
    by_count.sort_unstable_by_key(|&(id, c)| (std::cmp::Reverse(c), id));
    let ascending: Vec<u64> = by_count.iter().rev().map(|&(_, c)| c).collect();

    m.catalog_coverage = Some(n as f64 / n_catalog as f64);
    m.starvation_index = Some(zeros as f64 / n_catalog as f64);
    m.gini_exposed = gini(&ascending, 0);
    m.gini_catalog = gini(&ascending, zeros);
    let top = (n / 10).max(1);
    let top_share = by_count[..top].iter().map(|&(_, c)| c).sum::<u64>() as f64 / total as f64;
    m.top_10_pct_share = Some(top_share);
    m.tail_share = Some(1.0 - top_share);

    let mut tiers: BTreeMap<&'static str, (usize, u64)> =
        TIER_NAMES.iter().map(|&t| (t, (0, 0))).collect();
    for (i, &(_, c)) in by_count.iter().enumerate() {
        let t = tiers.get_mut(tier_of(i, n)).expect("tier");
        t.0 += 1;
        t.1 += c;
    }
    tiers.get_mut("zero").expect("tier").0 = zeros;
    m.tiers = finish_tiers(tiers, n_catalog, total);

    let mut pop: BTreeMap<&'static str, (usize, u64)> =
        TIER_NAMES[..4].iter().map(|&t| (t, (0, 0))).collect();
    for i in 0..n_catalog {
        let c = ranked
            .get(i)
            .and_then(|id| counts.get(id))
            .copied()
            .unwrap_or(0);
        let t = pop.get_mut(tier_of(i, n_catalog)).expect("tier");
        t.0 += 1;
        t.1 += c;
    }
    m.popularity_tiers = finish_tiers(pop, n_catalog, total);
    m.head_share_by_popularity = m.popularity_tiers.get("high").map(|t| t.exposure_pct);
    m.lorenz = lorenz(&ascending, zeros, total);
    m
}

/// The Lorenz curve through `zeros` unexposed then `ascending` counts,
/// sampled to at most ~200 points (always including both ends).
fn lorenz(ascending: &[u64], zeros: usize, total: u64) -> Vec<(f64, f64)> {
    let n = ascending.len() + zeros;
    let step = n.div_ceil(200).max(1);
    let mut out = vec![(0.0, 0.0)];
    let mut cum = 0u64;
    for i in 0..n {
        if i >= zeros {
            cum += ascending[i - zeros];
        }
        if (i + 1) % step == 0 || i + 1 == n {
            out.push(((i + 1) as f64 / n as f64, cum as f64 / total as f64));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(lists: &[&[u64]]) -> ExposureCounts {
        let mut c = ExposureCounts::default();
        for l in lists {
            c.add_list(l);
        }
        c
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    /// Catalogue of 10 movies (ids 1..=10, popularity 10 - id + 1, so movie 1
    /// is the most popular). Exposures: movie 1 ×6, movie 2 ×3, movie 3 ×1.
    #[test]
    fn toy_window_worked_by_hand() {
        let cat = Catalog::from_items((1..=10).map(|id| (id, 11 - id)));
        let ex = counts(&[&[1, 2, 3], &[1, 2], &[1, 2], &[1], &[1], &[1]]);
        let m = metrics(&ex, &cat);
        assert_eq!((m.requests, m.exposures, m.distinct_exposed), (6, 10, 3));
        // 3 of 10 exposed; 7 never.
        assert!(close(m.catalog_coverage, 0.3));
        assert!(close(m.starvation_index, 0.7));
        // Ascending 1,3,6 (sum 10, n 3): 2(1·1+2·3+3·6)/(3·10) − 4/3 = 50/30 − 40/30 = 1/3.
        assert!(close(m.gini_exposed, 1.0 / 3.0));
        // With 7 zeros first: positions 8,9,10: 2(8+27+60)/(10·10) − 11/10 = 1.9 − 1.1 = 0.8.
        assert!(close(m.gini_catalog, 0.8));
        // top max(1, floor(0.3)) = 1 movie: 6/10.
        assert!(close(m.top_10_pct_share, 0.6));
        assert!(close(m.tail_share, 0.4));
        // Legacy tiers over n = 3: i=0 → 0 high; i=1 → 0.33 medium; i=2 → 0.67 low.
        let t = &m.tiers;
        assert_eq!((t["high"].movies, t["high"].exposures), (1, 6));
        assert_eq!((t["medium"].movies, t["medium"].exposures), (1, 3));
        assert_eq!((t["low"].movies, t["low"].exposures), (1, 1));
        assert_eq!((t["tail"].movies, t["zero"].movies), (0, 7));
        // high: exposure 0.6 over catalogue 0.1 = 6x.
        assert!(close(t["high"].amplification, 6.0));
        assert!(t["tail"].amplification.is_none());
        assert!(close(t["zero"].amplification, 0.0));
        // Popularity tiers over N = 10: position 0 (movie 1) high; 1-4 medium
        // (movies 2,3 exposed: 4); 5-8 low; 9 tail.
        let p = &m.popularity_tiers;
        assert_eq!((p["high"].movies, p["high"].exposures), (1, 6));
        assert_eq!((p["medium"].movies, p["medium"].exposures), (4, 4));
        assert_eq!((p["low"].movies, p["tail"].movies), (4, 1));
        assert!(close(m.head_share_by_popularity, 0.6));
        assert!(close(p["medium"].amplification, 0.4 / 0.4));
        // Lorenz ends at (1, 1) and starts flat over the 7 zeros.
        assert_eq!(m.lorenz.first(), Some(&(0.0, 0.0)));
        assert_eq!(m.lorenz.last(), Some(&(1.0, 1.0)));
        assert_eq!(m.lorenz[7], (0.7, 0.0));
    }

    #[test]
    fn empty_window_has_no_ratios() {
        let cat = Catalog::from_items((1..=5).map(|i| (i, 1)));
        let m = metrics(&ExposureCounts::default(), &cat);
        assert_eq!((m.exposures, m.catalog_size), (0, 5));
        assert!(m.catalog_coverage.is_none() && m.gini_catalog.is_none() && m.tail_share.is_none());
        assert!(m.tiers.is_empty());
    }

    #[test]
    fn one_movie_and_equal_counts() {
        // One movie exposed 4 times in a catalogue of 4.
        let cat = Catalog {
            size: 4,
            ..Catalog::default()
        };
        let m = metrics(&counts(&[&[7], &[7], &[7], &[7]]), &cat);
        assert!(close(m.gini_exposed, 0.0));
        // positions 4: 2·4·4/(4·4) − 5/4 = 0.75 = (N−1)/N.
        assert!(close(m.gini_catalog, 0.75));
        assert!(close(m.top_10_pct_share, 1.0) && close(m.tail_share, 0.0));
        assert!(close(m.catalog_coverage, 0.25));
        // All counts equal over the whole catalogue: no inequality at all.
        let m = metrics(&counts(&[&[1, 2, 3, 4], &[4, 3, 2, 1]]), &cat);
        assert!(close(m.gini_exposed, 0.0) && close(m.gini_catalog, 0.0));
        assert!(close(m.starvation_index, 0.0));
        // n = 4: top max(1, 0) = 1 movie: 2/8.
        assert!(close(m.top_10_pct_share, 0.25));
    }

    #[test]
    fn exposed_movies_outside_the_catalogue_are_counted_in_it() {
        let cat = Catalog::from_items([(1, 5), (2, 1)]);
        let m = metrics(&counts(&[&[1, 99]]), &cat);
        assert_eq!((m.unknown_movies, m.catalog_size), (1, 3));
        assert!(close(m.catalog_coverage, 2.0 / 3.0));
    }

    #[test]
    fn gini_of_nothing_is_none() {
        assert_eq!(gini(&[], 0), None);
        assert_eq!(gini(&[0, 0], 3), None);
    }
}
