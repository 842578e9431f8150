//! Re-ranking policies applied after scoring. Each takes the masked score
//! vector of one user (seen items at −∞), the items' features and the
//! user's history, and returns `k` `(item, model score)` pairs in the
//! policy's order:
//!
//! - `none`: the plain model ranking.
//! - `mmr` (`lambda` in [0, 1], default 0.3): maximal marginal relevance over
//!   genres (Carbonell & Goldstein 1998): greedily the item maximising
//!   `(1−λ)·relevance − λ·max Jaccard(genres, genres of an item already chosen)`,
//!   relevance being the score min-max normalised over the candidate pool.
//! - `slots` (`slots` from 0 to k, default 3): `slots` of the `k` places are
//!   reserved for movies outside the top 20% popularity tier, filled by model
//!   score; the rest are the best-scored movies of any tier; the list is in
//!   score order.
//! - `calibrated` (`lambda` in [0, 1], default 0.5): Steck (2018): greedily
//!   maximises `(1−λ)·Σ relevance − λ·KL(p ‖ q̃)`, `p` the genre mix of the
//!   user's history, `q̃ = 0.99·q + 0.01·p` that of the list (each movie's
//!   genres weigh 1/|genres|).
//! - `explore` (`weight` in [0, 1], default 0.1, as AWS Personalize's
//!   exploration weight): ranks by `(1−w)·relevance + w·novelty`, novelty
//!   `1 − ln(1+e)/ln(1+e_max)` of the item's exposure `e`: the lists served
//!   so far (by this process since the version loaded; offline, by the users
//!   before). Until something was served it equals `none`; then it rotates
//!   near-equally relevant movies so that exposure spreads.
//!
//! - `exposure` (`scale` from 0 to 4, default 1; `protect` from 0 to k,
//!   default 2; `slots` from 0 to k, default 3): the service-wide exposure
//!   controller ([`super::exposure_control`]): each movie's price (over its
//!   exposure cap) or subsidy (under its floor), set from the whole
//!   service's recent exposure by the audit, times `scale` times the user's
//!   score spread, moves its score; the user's `protect` best movies stay
//!   first; then `slots` as above (0: the plain ranking). Without
//!   adjustments (a cold start) it equals that base: by default the
//!   service's earlier default, `slots:slots=3`.
//!
//! With their weight at 0, `mmr`, `calibrated` and `explore` equal `none`.

use super::eval::top_k;
use super::param::InvalidParam;
use super::ranking::top_k_scored;
use std::collections::HashMap;

/// The policies' names, as in `?policy=` and `provenance.policy`.
pub const POLICIES: [&str; 6] = ["none", "mmr", "slots", "calibrated", "explore", "exposure"];

/// The service's default policy (`MOVIE_RECS_POLICY` unset): three of the
/// slots of a list go to movies outside the popularity head. Chosen from
/// `docs/tradeoffs.md`: the largest cut in exposure concentration that
/// costs under 3% accuracy on both ML-100K (NCF) and ML-1M (full ranking),
/// and stateless, so every Lambda instance ranks alike.
pub const DEFAULT_POLICY: Policy = Policy::Slots { slots: 3 };

/// Items the greedy policies (mmr, calibrated) choose among: the best-scored.
pub const POOL: usize = 300;

/// A re-ranking policy and its parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Policy {
    #[default]
    None,
    Mmr {
        lambda: f64,
    },
    Slots {
        slots: usize,
    },
    Calibrated {
        lambda: f64,
    },
    Explore {
        weight: f64,
    },
    Exposure {
        scale: f64,
        protect: usize,
        slots: usize,
    },
}

impl Policy {
    pub fn name(&self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Mmr { .. } => "mmr",
            Policy::Slots { .. } => "slots",
            Policy::Calibrated { .. } => "calibrated",
            Policy::Explore { .. } => "explore",
            Policy::Exposure { .. } => "exposure",
        }
    }

    /// The parameter, as `provenance.policy_params` shows it.
    pub fn params(&self) -> serde_json::Value {
        match *self {
            Policy::None => serde_json::json!({}),
            Policy::Mmr { lambda } | Policy::Calibrated { lambda } => {
                serde_json::json!({ "lambda": lambda })
            }
            Policy::Slots { slots } => serde_json::json!({ "slots": slots }),
            Policy::Explore { weight } => serde_json::json!({ "weight": weight }),
            Policy::Exposure {
                scale,
                protect,
                slots,
            } => serde_json::json!({ "scale": scale, "protect": protect, "slots": slots }),
        }
    }

    /// `name[:key=value]`, as settings and the CLI write it.
    pub fn spec(&self) -> String {
        match *self {
            Policy::None => "none".into(),
            Policy::Mmr { lambda } => format!("mmr:lambda={lambda}"),
            Policy::Slots { slots } => format!("slots:slots={slots}"),
            Policy::Calibrated { lambda } => format!("calibrated:lambda={lambda}"),
            Policy::Explore { weight } => format!("explore:weight={weight}"),
            Policy::Exposure {
                scale,
                protect,
                slots,
            } => format!("exposure:scale={scale},protect={protect},slots={slots}"),
        }
    }

    /// A policy from its name and parameters (`lambda`, `slots`, `weight`,
    /// `scale`, `protect`); the error names what is wrong. `k` bounds
    /// `slots` and `protect`.
    pub fn parse(
        name: &str,
        params: &HashMap<String, String>,
        k: usize,
    ) -> Result<Policy, InvalidParam> {
        let number = |key: &str, default: f64, hi: f64| -> Result<f64, InvalidParam> {
            match params.get(key) {
                None => Ok(default),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| (0.0..=hi).contains(x))
                    .ok_or_else(|| {
                        InvalidParam::new(
                            key,
                            format!("must be a number from 0 to {hi} for policy {name}, got {v:?}"),
                        )
                    }),
            }
        };
        let unit = |key: &str, default: f64| number(key, default, 1.0);
        let upto_k = |key: &str, default: usize| -> Result<usize, InvalidParam> {
            match params.get(key) {
                None => Ok(default.min(k)),
                Some(v) => v.parse::<usize>().ok().filter(|s| *s <= k).ok_or_else(|| {
                    InvalidParam::new(
                        key,
                        format!("must be an integer from 0 to k ({k}), got {v:?}"),
                    )
                }),
            }
        };
        let p = match name {
            "none" => Policy::None,
            "exposure" => Policy::Exposure {
                scale: number("scale", 1.0, 4.0)?,
                protect: upto_k("protect", 2)?,
                slots: upto_k("slots", 3)?,
            },
            "mmr" => Policy::Mmr {
                lambda: unit("lambda", 0.3)?,
            },
            "calibrated" => Policy::Calibrated {
                lambda: unit("lambda", 0.5)?,
            },
            "explore" => Policy::Explore {
                weight: unit("weight", 0.1)?,
            },
            "slots" => Policy::Slots {
                slots: upto_k("slots", 3)?,
            },
            other => {
                return Err(InvalidParam::new(
                    "policy",
                    format!("must be one of {POLICIES:?}, got {other:?}"),
                ))
            }
        };
        Ok(p)
    }

    /// Parses `name[:key=value[,key=value]]`.
    pub fn from_spec(spec: &str, k: usize) -> Result<Policy, InvalidParam> {
        let (name, rest) = spec.split_once(':').unwrap_or((spec, ""));
        let mut params = HashMap::new();
        for kv in rest.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                InvalidParam::new(
                    "policy",
                    format!("must be name[:key=value,...], got {kv:?} in {spec:?}"),
                )
            })?;
            params.insert(k.trim().to_string(), v.trim().to_string());
        }
        Policy::parse(name.trim(), &params, k)
    }

    /// The ranking `exposure` applies after its prices (itself for the others).
    pub fn base(self) -> Policy {
        match self {
            Policy::Exposure { slots: 0, .. } => Policy::None,
            Policy::Exposure { slots, .. } => Policy::Slots { slots },
            p => p,
        }
    }

    /// The same policy for lists of `k` (slots never exceed k).
    pub fn for_k(self, k: usize) -> Policy {
        match self {
            Policy::Slots { slots } => Policy::Slots {
                slots: slots.min(k),
            },
            Policy::Exposure {
                scale,
                protect,
                slots,
            } => Policy::Exposure {
                scale,
                protect: protect.min(k),
                slots: slots.min(k),
            },
            p => p,
        }
    }
}

/// What the policies know about the catalogue.
#[derive(Clone, Debug, Default)]
pub struct ItemFeatures {
    /// Genre bitmask per item (bit i: the i-th genre name seen).
    pub genres: Vec<u64>,
    /// Training interactions per item.
    pub popularity: Vec<u32>,
    /// In the top 20% of the catalogue by popularity.
    pub head: Vec<bool>,
}

impl ItemFeatures {
    /// Features of items with these genres and popularity.
    pub fn new<'a>(items: impl IntoIterator<Item = (&'a [String], u32)>) -> Self {
        let mut names: HashMap<&str, u32> = HashMap::new();
        let mut f = ItemFeatures::default();
        for (genres, pop) in items {
            let mut mask = 0u64;
            for g in genres {
                let n = names.len() as u32;
                let bit = *names.entry(g.as_str()).or_insert(n);
                if bit < 64 {
                    mask |= 1 << bit;
                }
            }
            f.genres.push(mask);
            f.popularity.push(pop);
        }
        let order = super::ranking::popularity_order(&f.popularity);
        let head_n = (order.len() as f64 * 0.2).ceil() as usize;
        f.head = vec![false; order.len()];
        for &i in order.iter().take(head_n) {
            f.head[i as usize] = true;
        }
        f
    }

    pub fn len(&self) -> usize {
        self.genres.len()
    }

    pub fn is_empty(&self) -> bool {
        self.genres.is_empty()
    }
}

fn jaccard(a: u64, b: u64) -> f64 {
    let u = (a | b).count_ones();
    if u == 0 {
        0.0
    } else {
        (a & b).count_ones() as f64 / u as f64
    }
}

/// Scores min-max normalised over `idx` (all 1 when they are equal).
fn relevance(scores: &[f32], idx: &[u32]) -> Vec<f64> {
    let vals: Vec<f64> = idx.iter().map(|&i| scores[i as usize] as f64).collect();
    let (lo, hi) = vals
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    vals.iter()
        .map(|&v| if hi > lo { (v - lo) / (hi - lo) } else { 1.0 })
        .collect()
}

/// Genre distribution of `items` (each item's genres weigh 1/|genres|).
fn genre_mix(items: impl IntoIterator<Item = u32>, f: &ItemFeatures) -> [f64; 64] {
    let mut p = [0.0; 64];
    let mut total = 0.0;
    for i in items {
        let g = f.genres[i as usize];
        let n = g.count_ones();
        if n == 0 {
            continue;
        }
        for (b, slot) in p.iter_mut().enumerate() {
            if g >> b & 1 == 1 {
                *slot += 1.0 / n as f64;
            }
        }
        total += 1.0;
    }
    if total > 0.0 {
        for v in &mut p {
            *v /= total;
        }
    }
    p
}

/// Re-ranks one user's `scores` (seen items at −∞) into `k` items under
/// `policy`. `history` is what the user interacted with (for calibration);
/// `exposure` counts the lists served since load, per item (for explore; may
/// be empty).
pub fn rerank(
    policy: Policy,
    scores: &[f32],
    k: usize,
    f: &ItemFeatures,
    history: &[u32],
    exposure: &[u64],
) -> Vec<(u32, f32)> {
    match policy.for_k(k).base() {
        Policy::None | Policy::Exposure { .. } => top_k_scored(scores, k),
        Policy::Slots { slots } => slotted(scores, k, f, slots),
        Policy::Explore { weight } => explore(scores, k, exposure, weight),
        Policy::Mmr { lambda } => mmr(scores, k, f, lambda),
        Policy::Calibrated { lambda } => calibrated(scores, k, f, history, lambda),
    }
}

/// The indices with their scores.
fn with_scores(scores: &[f32], idx: Vec<u32>) -> Vec<(u32, f32)> {
    idx.into_iter().map(|i| (i, scores[i as usize])).collect()
}

/// `slots`: the best `slots` tail movies replace the lowest of the top `k`.
fn slotted(scores: &[f32], k: usize, f: &ItemFeatures, slots: usize) -> Vec<(u32, f32)> {
    let finite = |i: &u32| scores[*i as usize].is_finite();
    let tail: Vec<u32> = top_k(
        &scores
            .iter()
            .enumerate()
            .map(|(i, &s)| if f.head[i] { f32::NEG_INFINITY } else { s })
            .collect::<Vec<f32>>(),
        slots,
    )
    .into_iter()
    .filter(finite)
    .collect();
    let mut out: Vec<u32> = top_k(scores, k)
        .into_iter()
        .filter(finite)
        .filter(|i| !tail.contains(i))
        .take(k - tail.len())
        .collect();
    out.extend(&tail);
    out.sort_by(|a, b| {
        scores[*b as usize]
            .total_cmp(&scores[*a as usize])
            .then(a.cmp(b))
    });
    with_scores(scores, out)
}

/// `explore`: relevance blended with novelty (how rarely served) by `weight`.
fn explore(scores: &[f32], k: usize, exposure: &[u64], weight: f64) -> Vec<(u32, f32)> {
    let finite = |i: &u32| scores[*i as usize].is_finite();
    let cand: Vec<u32> = (0..scores.len() as u32).filter(finite).collect();
    if cand.is_empty() {
        return Vec::new();
    }
    let rel = relevance(scores, &cand);
    let e = |i: u32| exposure.get(i as usize).copied().unwrap_or(0) as f64;
    let e_max = cand.iter().map(|&i| e(i)).fold(0.0, f64::max);
    let denom = (1.0 + e_max).ln();
    if weight == 0.0 || denom == 0.0 {
        return top_k_scored(scores, k);
    }
    let key: Vec<f64> = cand
        .iter()
        .enumerate()
        .map(|(j, &i)| {
            let novelty = 1.0 - (1.0 + e(i)).ln() / denom;
            (1.0 - weight) * rel[j] + weight * novelty
        })
        .collect();
    // Best combined first; ties by model score, then index.
    let mut order: Vec<usize> = (0..cand.len()).collect();
    let better = |a: &usize, b: &usize| {
        key[*b]
            .total_cmp(&key[*a])
            .then(scores[cand[*b] as usize].total_cmp(&scores[cand[*a] as usize]))
            .then(cand[*a].cmp(&cand[*b]))
    };
    let k = k.min(order.len());
    if k < order.len() {
        order.select_nth_unstable_by(k, better);
        order.truncate(k);
    }
    order.sort_by(better);
    with_scores(scores, order.into_iter().map(|j| cand[j]).collect())
}

/// The candidates the greedy policies choose from: the best [`POOL`] (at
/// least `k`) unseen items, with their [`relevance`].
fn pool(scores: &[f32], k: usize) -> (Vec<u32>, Vec<f64>) {
    let pool: Vec<u32> = top_k(scores, POOL.max(k))
        .into_iter()
        .filter(|&i| scores[i as usize].is_finite())
        .collect();
    let rel = relevance(scores, &pool);
    (pool, rel)
}

/// `mmr`: maximal marginal relevance over genre overlap, trading relevance
/// against similarity to what is already chosen by `lambda`.
fn mmr(scores: &[f32], k: usize, f: &ItemFeatures, lambda: f64) -> Vec<(u32, f32)> {
    let (pool, rel) = pool(scores, k);
    greedy(&pool, k, |j, chosen: &[usize]| {
        let sim = chosen
            .iter()
            .map(|&c| jaccard(f.genres[pool[j] as usize], f.genres[pool[c] as usize]))
            .fold(0.0, f64::max);
        (1.0 - lambda) * rel[j] - lambda * sim
    })
    .into_iter()
    .map(|j| (pool[j], scores[pool[j] as usize]))
    .collect()
}

/// `calibrated`: greedily matches the list's genre mix to the user's
/// history's (KL divergence), traded against relevance by `lambda`.
fn calibrated(
    scores: &[f32],
    k: usize,
    f: &ItemFeatures,
    history: &[u32],
    lambda: f64,
) -> Vec<(u32, f32)> {
    let (pool, rel) = pool(scores, k);
    let p = genre_mix(history.iter().copied(), f);
    let support: Vec<usize> = (0..64).filter(|&b| p[b] > 0.0).collect();
    // The list's genre mass so far (unnormalised) and its genred items.
    let (mut mass, mut n, mut sum_rel) = ([0.0f64; 64], 0.0f64, 0.0f64);
    let share = |g: u64| -> f64 {
        let c = g.count_ones();
        if c == 0 {
            0.0
        } else {
            1.0 / c as f64
        }
    };
    let mut taken = vec![false; pool.len()];
    let mut out = Vec::with_capacity(k);
    while out.len() < k.min(pool.len()) {
        let mut best: Option<(usize, f64)> = None;
        for (j, _) in taken.iter().enumerate().filter(|(_, t)| !**t) {
            let g = f.genres[pool[j] as usize];
            let (w, nj) = (share(g), n + (g != 0) as u8 as f64);
            // KL(p ‖ q̃) over p's support; q from the list with item j added.
            let kl: f64 = support
                .iter()
                .map(|&b| {
                    let q = if nj > 0.0 {
                        (mass[b] + if g >> b & 1 == 1 { w } else { 0.0 }) / nj
                    } else {
                        0.0
                    };
                    p[b] * (p[b] / (0.99 * q + 0.01 * p[b])).ln()
                })
                .sum();
            let gain = (1.0 - lambda) * (sum_rel + rel[j]) - lambda * kl;
            if best.is_none_or(|(_, bg)| gain > bg) {
                best = Some((j, gain));
            }
        }
        let (j, _) = best.expect("a position is left");
        taken[j] = true;
        let g = f.genres[pool[j] as usize];
        let w = share(g);
        for (b, m) in mass.iter_mut().enumerate() {
            if g >> b & 1 == 1 {
                *m += w;
            }
        }
        n += (g != 0) as u8 as f64;
        sum_rel += rel[j];
        out.push((pool[j], scores[pool[j] as usize]));
    }
    out
}

/// [`rerank`] with the exposure controller's net adjustments (`prices`:
/// price − subsidy per item index; see
/// [`super::exposure_control::apply_prices`]) for the `exposure` policy: its
/// base ranks the adjusted scores, and the items keep their model scores.
/// Other policies ignore `prices`.
pub fn rerank_priced(
    policy: Policy,
    scores: &[f32],
    k: usize,
    f: &ItemFeatures,
    history: &[u32],
    exposure: &[u64],
    prices: &[f32],
) -> Vec<(u32, f32)> {
    let unit = super::exposure_control::spread(scores);
    rerank_priced_in(policy, scores, k, f, history, exposure, prices, unit)
}

/// [`rerank_priced`] with the price unit given: the user's spread over the
/// whole catalogue, when `scores` hold only some candidates (the offline
/// NCF protocol). `None` (no finite score) prices nothing.
#[allow(clippy::too_many_arguments)]
pub fn rerank_priced_in(
    policy: Policy,
    scores: &[f32],
    k: usize,
    f: &ItemFeatures,
    history: &[u32],
    exposure: &[u64],
    prices: &[f32],
    unit: Option<f64>,
) -> Vec<(u32, f32)> {
    let (Policy::Exposure { scale, protect, .. }, Some(unit)) = (policy.for_k(k), unit) else {
        return rerank(policy, scores, k, f, history, exposure);
    };
    let mut priced = scores.to_vec();
    super::exposure_control::apply_prices_with(&mut priced, prices, scale, protect, unit);
    rerank(policy, &priced, k, f, history, exposure)
        .into_iter()
        .map(|(i, _)| (i, scores[i as usize]))
        .collect()
}

/// Greedy selection of `k` of `pool` (positions), each step taking the
/// position with the highest `gain(position, chosen so far)`; ties go to
/// the earlier (better-scored) position.
fn greedy(pool: &[u32], k: usize, gain: impl Fn(usize, &[usize]) -> f64) -> Vec<usize> {
    let mut chosen: Vec<usize> = Vec::with_capacity(k);
    let mut taken = vec![false; pool.len()];
    while chosen.len() < k.min(pool.len()) {
        let mut best: Option<(usize, f64)> = None;
        for (j, _) in taken.iter().enumerate().filter(|(_, t)| !**t) {
            let g = gain(j, &chosen);
            if best.is_none_or(|(_, bg)| g > bg) {
                best = Some((j, g));
            }
        }
        let (j, _) = best.expect("a position is left");
        taken[j] = true;
        chosen.push(j);
    }
    chosen
}

#[cfg(test)]
mod tests;
