//! The synthetic world: the hidden true tastes and what every user has
//! seen, and the seeded random streams of the simulation.

use super::*;

/// The synthetic world plus what every user has seen (model item indices).
pub(super) struct World {
    pub(super) truth: SyntheticWorld,
    /// Per user (0-based), the world's items (0-based) the user interacted with.
    pub(super) seen: Vec<HashSet<u32>>,
    /// Seed interactions per item.
    pub(super) seed_popularity: Vec<u32>,
}

impl World {
    pub(super) fn new(cfg: &SyntheticConfig) -> Self {
        let truth = generate(cfg);
        let mut seen = vec![HashSet::new(); cfg.users];
        let mut seed_popularity = vec![0u32; cfg.items];
        for x in &truth.dataset.train {
            // Synthetic ids are dense: user index u is user u + 1, item i is movie i + 1.
            seen[x.user as usize].insert(x.item);
            seed_popularity[x.item as usize] += 1;
        }
        World {
            truth,
            seen,
            seed_popularity,
        }
    }

    pub(super) fn users(&self) -> usize {
        self.truth.config.users
    }

    pub(super) fn items(&self) -> usize {
        self.truth.config.items
    }

    /// The seed interactions as events, their timestamps compressed into the
    /// 365 days before [`SIM_START_MS`] (at noon, so one Parquet object per day).
    pub(super) fn seed_events(&self) -> Vec<Event> {
        let train = &self.truth.dataset.train;
        let (lo, hi) = train
            .iter()
            .fold((i64::MAX, i64::MIN), |(a, b), x| (a.min(x.ts), b.max(x.ts)));
        let span = (hi - lo + 1).max(1) as f64;
        train
            .iter()
            .map(|x| {
                let day = ((x.ts - lo) as f64 / span * 365.0).floor() as i64;
                let ts_ms = SIM_START_MS - 365 * DAY_MS
                    + day * DAY_MS
                    + 12 * HOUR_MS
                    + (x.ts.rem_euclid(3600)) * 1000;
                Event::Rate(Rate {
                    user_id: x.user as u64 + 1,
                    movie_id: x.item as u64 + 1,
                    rating: x.rating,
                    ts_ms,
                })
            })
            .collect()
    }

    /// The catalogue judged against: every movie of the world, with the
    /// serving model's training popularity (0 for movies it does not know).
    pub(super) fn catalog(&self, m: &Manifest) -> Catalog {
        let mut pop = vec![0u64; self.items()];
        for it in &m.items {
            if let Some(p) = pop.get_mut(it.movie_id as usize - 1) {
                *p = it.popularity as u64;
            }
        }
        Catalog::from_items(pop.into_iter().enumerate().map(|(i, p)| (i as u64 + 1, p)))
    }

    /// The user's ten unseen movies (world indices) of highest true affinity.
    pub(super) fn truth_top(&self, user: usize) -> Vec<u32> {
        let mut all: Vec<(f32, u32)> = (0..self.items() as u32)
            .filter(|i| !self.seen[user].contains(i))
            .map(|i| (self.truth.affinity(user as u32, i), i))
            .collect();
        let n = TRUTH_K.min(all.len());
        if n == 0 {
            return Vec::new();
        }
        all.select_nth_unstable_by(n - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all[..n].iter().map(|x| x.1).collect()
    }

    /// Rating of a watched movie: as the synthetic world rates, from affinity.
    pub(super) fn stars(&self, user: usize, item: u32, rng: &mut ChaCha8Rng) -> f32 {
        let noise: f32 = rng.sample(rand_distr::StandardNormal);
        (3.3 + 1.6 * self.truth.affinity(user as u32, item) + 0.7 * noise)
            .round()
            .clamp(1.0, 5.0)
    }

    /// Movies the user finds elsewhere: Gumbel top-n over the world's choice model.
    pub(super) fn organic(&self, user: usize, n: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
        let cfg = &self.truth.config;
        let mut keys: Vec<(f32, u32)> = (0..self.items() as u32)
            .filter(|i| !self.seen[user].contains(i))
            .map(|i| {
                let logit = cfg.popularity_alpha as f32
                    * self.truth.item_log_popularity[i as usize]
                    + cfg.taste_beta as f32 * self.truth.affinity(user as u32, i);
                let g = -(-(rng.gen::<f32>().max(1e-12)).ln()).ln();
                (logit + g, i)
            })
            .collect();
        let n = n.min(keys.len());
        if n == 0 {
            return Vec::new();
        }
        keys.select_nth_unstable_by(n - 1, |a, b| b.0.total_cmp(&a.0));
        keys[..n].iter().map(|k| k.1).collect()
    }
}

/// A deterministic generator for (seed, stream, a, b).
pub(super) fn rng_for(seed: u64, stream: u64, a: u64, b: u64) -> ChaCha8Rng {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    for v in [stream, a, b] {
        x = (x ^ v).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 31;
    }
    ChaCha8Rng::seed_from_u64(x)
}
