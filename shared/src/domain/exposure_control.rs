//! The exposure controller: per-movie prices that keep the whole service's
//! exposure inside the audit's thresholds (the `exposure` policy).
//!
//! A per-request policy ranks each list without knowing what the other lists
//! showed; the thresholds are about all of them. The controller closes the
//! loop through the audit: after each audit window it reads how often every
//! movie was served and updates two multipliers per movie by projected dual
//! ascent on a band around the mean exposure:
//!
//! ```text
//! e_i ← d · e_i + window_i            decayed exposure, d = 0.5^(1 / half_life_windows)
//! s_i = e_i / Σ e                     share;  μ = 1 / n,  n the exposed movies
//! price_i   ← clamp(price_i   + step · clamp(s_i / cap − 1, −1, 1), 0, max_price)          (cap)
//! subsidy_i ← clamp(subsidy_i + step · clamp(1 − s_i / (lo · μ), −1, 1), 0, max_subsidy) (floor, exposed movies only)
//! reach     ← clamp(reach + step · clamp(1 − n / (coverage_goal · N), −1, 1), 0, max_subsidy)  (coverage)
//! ```
//!
//! `n` counts the movies in the decayed exposure (a movie leaves it once its
//! exposure decays below 0.05), `N` the catalogue; `reach` is one subsidy
//! for every movie outside that set: the coverage constraint's multiplier.
//!
//! Serving ranks by `score − scale · (price − subsidy) · spread`, `spread`
//! being the user's own gap between their best and their 50th best score, so
//! a price of 1 moves a movie about as far as that gap whatever the model's
//! score scale. The user's `protect` best movies are kept at the head of
//! the list whatever the prices: the controller cannot push out what the
//! model is surest the user wants (accuracy's guard).
//!
//! **The band from the thresholds.** The audit judges the movies exposed in
//! a window (`gini_exposed`, `top_10_pct_share`, `tail_share` are over them)
//! and coverage over the catalogue.
//! - *Cap*: when none of the `n` exposed movies takes more than
//!   `margin · t / max(1, ⌊n/10⌋)`, the audit's top tenth of them
//!   (`max(1, ⌊n/10⌋)` movies) takes at most `margin · t`, with
//!   `t = min(max_top_10_pct_share, 1 − min_tail_share)` and a margin for
//!   the noise of a window; for n ≥ 10 that is `hi · μ` with
//!   `hi = margin · t / 0.1` (2.1 at the defaults).
//! - *Floor* `lo`: of all distributions inside `[lo, hi]` times the mean,
//!   the two-point one at the ends has the largest Gini,
//!   `(1 − lo)(hi − 1) / (hi − lo)`. Setting that to `margin · max_gini`
//!   gives `lo = (hi − 1 − g·hi) / (hi − 1 − g)` with `g = margin ·
//!   max_gini` (0.68 at the defaults): inside the band the window's
//!   `gini_exposed` cannot exceed the threshold.
//! - *Coverage* `coverage_goal = min(1, min_coverage / margin)` (0.57):
//!   while fewer movies are exposed, every unexposed movie gets the `reach`
//!   subsidy (the band cannot force coverage: it is relative to the movies
//!   exposed, as the audit's metrics are; relative to the goal instead, a
//!   model that can only reach a few movies would have all of them over
//!   the cap, priced alike, and nothing evened out).
//!
//! A cold start (no adjustments) has no prices: the policy equals its base.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The audit's alarm thresholds (the defaults are the product's policy);
/// the controller steers to the same ones.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub min_catalog_coverage: f64,
    /// Applied to `gini_exposed`, the definition the threshold was set for.
    pub max_gini_exposed: f64,
    pub max_top_10_pct_share: f64,
    pub min_tail_share: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_catalog_coverage: 0.40,
            max_gini_exposed: 0.35,
            max_top_10_pct_share: 0.30,
            min_tail_share: 0.70,
        }
    }
}

/// How the multipliers move (the band itself comes from [`Thresholds`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    pub thresholds: Thresholds,
    /// Change of a multiplier per window at full violation (a share at
    /// twice the cap, or none at all under the floor).
    pub step: f64,
    /// The highest price, in units of the user's score spread.
    pub max_price: f64,
    /// The highest subsidy, in the same units.
    pub max_subsidy: f64,
    /// Share of each threshold aimed at, for the noise of one window.
    pub margin: f64,
    /// Windows after which an exposure counts half.
    pub half_life_windows: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            thresholds: Thresholds::default(),
            step: 0.2,
            max_price: 1.0,
            max_subsidy: 1.0,
            margin: 0.7,
            half_life_windows: 3.0,
        }
    }
}

/// Why a configuration or an adjustments object is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ControlError {
    #[error("{field} must be {expected}, got {got}")]
    Invalid {
        field: &'static str,
        expected: &'static str,
        got: f64,
    },
}

impl ControllerConfig {
    /// The default movement toward `thresholds`.
    pub fn for_thresholds(thresholds: Thresholds) -> Self {
        ControllerConfig {
            thresholds,
            ..ControllerConfig::default()
        }
    }

    /// Checks every field (the error names the first one out of range).
    pub fn validate(&self) -> Result<(), ControlError> {
        let t = &self.thresholds;
        let check = |field, v: f64, ok: bool, expected| match ok && v.is_finite() {
            true => Ok(()),
            false => Err(ControlError::Invalid {
                field,
                expected,
                got: v,
            }),
        };
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        check(
            "min_catalog_coverage",
            t.min_catalog_coverage,
            unit(t.min_catalog_coverage),
            "0 to 1",
        )?;
        check(
            "max_top_10_pct_share",
            t.max_top_10_pct_share,
            t.max_top_10_pct_share > 0.0 && t.max_top_10_pct_share <= 1.0,
            "above 0, at most 1",
        )?;
        check(
            "min_tail_share",
            t.min_tail_share,
            t.min_tail_share >= 0.0 && t.min_tail_share < 1.0,
            "0 or more, below 1",
        )?;
        check(
            "max_gini_exposed",
            t.max_gini_exposed,
            unit(t.max_gini_exposed),
            "0 to 1",
        )?;
        check("step", self.step, self.step > 0.0, "above 0")?;
        check(
            "max_price",
            self.max_price,
            self.max_price >= 0.0,
            "0 or more",
        )?;
        check(
            "max_subsidy",
            self.max_subsidy,
            self.max_subsidy >= 0.0,
            "0 or more",
        )?;
        check(
            "margin",
            self.margin,
            self.margin > 0.0 && self.margin <= 1.0,
            "above 0, at most 1",
        )?;
        check(
            "half_life_windows",
            self.half_life_windows,
            self.half_life_windows > 0.0,
            "above 0",
        )
    }

    /// The cap as a multiple of the mean share (see the module doc).
    pub fn cap_ratio(&self) -> f64 {
        let t = &self.thresholds;
        let top = t.max_top_10_pct_share.min(1.0 - t.min_tail_share);
        (self.margin * top / 0.1).max(1.0)
    }

    /// The largest share one of `n` exposed movies may take: the top
    /// `max(1, ⌊n / 10⌋)` of them (the audit's top tenth) then take at
    /// most `margin · t` of the exposures; `cap_ratio() / n` for n ≥ 10.
    pub fn cap_share(&self, n: usize) -> f64 {
        let t = &self.thresholds;
        let top = t.max_top_10_pct_share.min(1.0 - t.min_tail_share);
        (self.margin * top / (n / 10).max(1) as f64).min(1.0)
    }

    /// The floor as a multiple of the mean share: the largest Gini inside
    /// `[lo, hi]` is `margin · max_gini_exposed`.
    pub fn floor_ratio(&self) -> f64 {
        let hi = self.cap_ratio();
        let g = self.margin * self.thresholds.max_gini_exposed;
        if hi - 1.0 - g <= 0.0 {
            return 0.0;
        }
        ((hi - 1.0 - g * hi) / (hi - 1.0 - g)).clamp(0.0, 1.0)
    }

    /// Share of the catalogue the mean is taken over, at least.
    pub fn coverage_goal(&self) -> f64 {
        (self.thresholds.min_catalog_coverage / self.margin).min(1.0)
    }
}

/// The controller's state after a number of audit windows: the multipliers
/// and the decayed exposure they were set from. Keyed by movie id, so they
/// survive a model switch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adjustments {
    /// Increments with every update; `0` is the cold start.
    pub version: u64,
    /// End of the last window folded in (ms since the epoch).
    pub updated_ms: i64,
    /// Catalogue size of the last update.
    pub catalog_size: usize,
    /// The mean share `μ` (1 / exposed movies) the band of the last update
    /// was relative to.
    pub mean_share: f64,
    pub config: Option<ControllerConfig>,
    /// The cap's multiplier per movie id (absent: 0).
    pub prices: BTreeMap<u64, f64>,
    /// The floor's multiplier per movie id (absent: 0).
    pub subsidies: BTreeMap<u64, f64>,
    /// The coverage constraint's multiplier: a subsidy for every movie
    /// outside the decayed exposure.
    #[serde(default)]
    pub reach: f64,
    /// Decayed exposure per movie id.
    pub exposure: BTreeMap<u64, f64>,
}

/// Exposures under this are dropped from the state: the movie no longer
/// counts as exposed.
const FORGOTTEN: f64 = 0.05;

impl Adjustments {
    /// The name provenance and traces show: `adj-<version>`.
    pub fn name(&self) -> String {
        name_of(self.version)
    }

    /// The net adjustment of a movie: price − subsidy, − reach for a
    /// movie outside the exposed set (positive lowers it).
    pub fn net(&self, movie_id: u64) -> f64 {
        let reach = match self.exposure.contains_key(&movie_id) {
            true => 0.0,
            false => self.reach,
        };
        self.prices.get(&movie_id).copied().unwrap_or(0.0)
            - self.subsidies.get(&movie_id).copied().unwrap_or(0.0)
            - reach
    }

    /// Whether any movie is priced or subsidised.
    pub fn is_neutral(&self) -> bool {
        self.prices.is_empty() && self.subsidies.is_empty() && self.reach == 0.0
    }

    /// The net adjustment of every movie of a catalogue, in its order.
    pub fn vector(&self, movie_ids: impl IntoIterator<Item = u64>) -> Vec<f32> {
        movie_ids.into_iter().map(|m| self.net(m) as f32).collect()
    }

    /// The state after one more audit window: `window` the exposures per
    /// movie id it counted, `catalog_size` the movies that could be served,
    /// `end_ms` the window's end.
    pub fn update(
        &self,
        window: &HashMap<u64, u64>,
        catalog_size: usize,
        cfg: &ControllerConfig,
        end_ms: i64,
    ) -> Adjustments {
        let decay = 0.5f64.powf(1.0 / cfg.half_life_windows);
        let mut exposure: BTreeMap<u64, f64> = self
            .exposure
            .iter()
            .map(|(&m, &e)| (m, e * decay))
            .collect();
        for (&m, &c) in window {
            if c > 0 {
                *exposure.entry(m).or_insert(0.0) += c as f64;
            }
        }
        exposure.retain(|_, e| *e >= FORGOTTEN);
        let total: f64 = exposure.values().sum();
        let mean = match exposure.is_empty() {
            false => 1.0 / exposure.len() as f64,
            true => 1.0,
        };
        let (cap, floor) = (cfg.cap_share(exposure.len()), cfg.floor_ratio() * mean);
        let share = |m: u64| match total > 0.0 {
            true => exposure.get(&m).copied().unwrap_or(0.0) / total,
            false => 0.0,
        };
        let movies: BTreeSet<u64> = self
            .prices
            .keys()
            .chain(self.subsidies.keys())
            .chain(exposure.keys())
            .copied()
            .collect();
        let (mut prices, mut subsidies) = (BTreeMap::new(), BTreeMap::new());
        let get = |map: &BTreeMap<u64, f64>, m| map.get(&m).copied().unwrap_or(0.0);
        for m in movies {
            let s = share(m);
            let g = (s / cap - 1.0).clamp(-1.0, 1.0);
            let p = (get(&self.prices, m) + cfg.step * g).clamp(0.0, cfg.max_price);
            // The floor binds only movies the audit counts as exposed; a
            // movie that left that set lets its subsidy fall.
            let h = match (exposure.contains_key(&m), floor > 0.0) {
                (true, true) => (1.0 - s / floor).clamp(-1.0, 1.0),
                _ => -1.0,
            };
            let q = (get(&self.subsidies, m) + cfg.step * h).clamp(0.0, cfg.max_subsidy);
            if p > 0.0 {
                prices.insert(m, p);
            }
            if q > 0.0 {
                subsidies.insert(m, q);
            }
        }
        let goal = cfg.coverage_goal() * catalog_size as f64;
        let reach = match goal > 0.0 {
            true => {
                let g = (1.0 - exposure.len() as f64 / goal).clamp(-1.0, 1.0);
                (self.reach + cfg.step * g).clamp(0.0, cfg.max_subsidy)
            }
            false => 0.0,
        };
        Adjustments {
            version: self.version + 1,
            updated_ms: end_ms,
            catalog_size,
            mean_share: mean,
            config: Some(*cfg),
            prices,
            subsidies,
            reach,
            exposure,
        }
    }

    /// Checks what a stored object may hold (finite, in range, the config valid).
    pub fn validate(&self) -> Result<(), ControlError> {
        if let Some(c) = &self.config {
            c.validate()?;
        }
        let bad = |field, got: f64| ControlError::Invalid {
            field,
            expected: "a finite number, 0 or more",
            got,
        };
        for (field, map) in [
            ("prices", &self.prices),
            ("subsidies", &self.subsidies),
            ("exposure", &self.exposure),
        ] {
            if let Some(v) = map.values().find(|v| !(v.is_finite() && **v >= 0.0)) {
                return Err(bad(field, *v));
            }
        }
        if !(self.mean_share.is_finite() && self.mean_share >= 0.0) {
            return Err(bad("mean_share", self.mean_share));
        }
        if !(self.reach.is_finite() && self.reach >= 0.0) {
            return Err(bad("reach", self.reach));
        }
        Ok(())
    }
}

/// The name of adjustments version `version`: `adj-000042`.
pub fn name_of(version: u64) -> String {
    format!("adj-{version:06}")
}

/// The best `SPREAD_RANK`-th score sets a user's price unit.
pub const SPREAD_RANK: usize = 50;

/// A user's price unit: the gap between their best and `SPREAD_RANK`-th
/// best finite score (`None` when no score is finite).
pub fn spread(scores: &[f32]) -> Option<f64> {
    let head = super::ranking::top_k_scored(scores, SPREAD_RANK);
    let (first, last) = (head.first()?, head.last()?);
    Some(((first.1 - last.1) as f64).max(f32::EPSILON as f64))
}

/// Ranks by adjusted scores: subtracts `scale · net · spread` from every
/// finite score (`net` per score index, price − subsidy; shorter slices
/// leave the rest alone), `spread` the user's [`spread`], and lifts the
/// user's `protect` best movies above every other, in their order.
pub fn apply_prices(scores: &mut [f32], net: &[f32], scale: f64, protect: usize) {
    if let Some(unit) = spread(scores) {
        apply_prices_with(scores, net, scale, protect, unit);
    }
}

/// [`apply_prices`] with the price unit given (the user's spread over the
/// whole catalogue, when `scores` hold only some candidates).
pub fn apply_prices_with(scores: &mut [f32], net: &[f32], scale: f64, protect: usize, unit: f64) {
    let most = net.iter().fold(0.0f32, |a, p| a.max(p.abs()));
    if scale == 0.0 || most == 0.0 {
        return;
    }
    let head = super::ranking::top_k_scored(scores, protect);
    for (i, s) in scores.iter_mut().enumerate() {
        let p = net.get(i).copied().unwrap_or(0.0) as f64;
        if p != 0.0 && s.is_finite() {
            *s = (*s as f64 - scale * p * unit) as f32;
        }
    }
    // Above anything a subsidy can lift another movie to, order kept.
    let lift = (2.0 * scale * most as f64 * unit + unit) as f32;
    for &(i, s) in &head {
        scores[i as usize] = s + lift;
    }
}

#[cfg(test)]
mod tests;
