//! `movie-recs simulate`: the closed loop between the recommender and its
//! users, on a synthetic world whose users have hidden true tastes.
//!
//! Every piece on the product's path is the product's own code: the model is
//! trained by [`train_and_publish`] on the training dataset read from the event
//! lake ([`shared::ingest::lake::dataset`]), published to a folder registry,
//! verified and loaded as a [`ServingModel`], and every active user is served by
//! [`ServingModel::recommend_with`] with the seen-movie exclusion of the
//! user-history store. What users do with their lists goes through the ingest
//! pipeline ([`Ingestor`]: validation, deduplication, the velocity limit, the
//! Parquet lake and the history store), and the next model is trained from
//! that lake. Only the users are simulated:
//!
//! - a user **examines** position `p` (0-based) of a list with probability
//!   `1 / log2(p + 2)` (position bias) and **watches** an examined movie with
//!   probability `sigmoid(slope · (affinity − threshold))` of its hidden true
//!   affinity; a share of watched movies are **rated** (stars from the
//!   affinity, as in the synthetic world), the rest are plain watch events;
//! - users also find movies **elsewhere** (on average `organic` a round), by
//!   the world's own choice model (popularity × taste), so the data does not
//!   come from the recommender alone.
//!
//! The world starts from the synthetic data (its timestamps compressed into
//! the year before the simulation; each round is one day after it). Per round
//! the report has HR@10 and NDCG@10 against the truth (the user's ten unseen
//! movies of highest true affinity), and the audit's exposure metrics of the
//! round's lists over the whole catalogue (coverage, gini_catalog, tail share,
//! the top popularity tier's amplification, the starvation index).
//!
//! The **attack** scenario serves a round, injects a promotion attack (fake
//! accounts rating one tail movie 5 stars plus popular filler) through the
//! same ingest, and retrains with and without the training mitigations; a
//! control retrains on the same lake without the attack. The target's exposure
//! is the share of real users' lists that hold it.
//!
//! Everything is seeded: the same configuration gives the same report.

mod attack;
pub mod report;

pub use attack::{AttackConfig, AttackReport, TargetExposure, DEEP_K};

use crate::pipeline::{train_and_publish, PipelineError, TrainOptions};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use shared::adapters::local::{FolderLake, FolderRegistry, SqliteStore};
use shared::artifact::{HyperParams, Manifest};
use shared::audit::exposure::{metrics, Catalog, ExposureCounts};
use shared::data::synthetic::{generate, SyntheticConfig, SyntheticWorld};
use shared::domain::exposure_control::{Adjustments, ControllerConfig};
use shared::domain::rerank::{Policy, DEFAULT_POLICY};
use shared::events::{Event, Rate, Watch};
use shared::ingest::{Ingestor, RawRecord, Source};
use shared::ports::{ModelStore, UserHistory};
use shared::scoring::ServingModel;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// 2025-01-01T00:00:00Z: the first simulated day.
pub const SIM_START_MS: i64 = 1_735_689_600_000;
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// Cut-off of the truth metrics.
pub const TRUTH_K: usize = 10;

/// How simulated users treat their lists.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Behaviour {
    /// Share of users served in a round.
    pub active_share: f64,
    /// Watch probability of an examined movie: `sigmoid(slope · (affinity − threshold))`.
    pub watch_slope: f64,
    pub watch_threshold: f64,
    /// Share of watched movies that are also rated.
    pub rate_share: f64,
    /// Mean movies a user finds outside the recommendations per round.
    pub organic: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            active_share: 1.0,
            watch_slope: 8.0,
            watch_threshold: 0.4,
            rate_share: 0.5,
            organic: 1.0,
        }
    }
}

/// One simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub world: SyntheticConfig,
    /// Rounds of the trajectories.
    pub rounds: usize,
    /// List length served.
    pub k: usize,
    /// One trajectory per policy.
    pub policies: Vec<Policy>,
    /// Training of every round (the version names and `force` are the simulator's).
    pub hp: HyperParams,
    pub behaviour: Behaviour,
    pub attack: Option<AttackConfig>,
    /// The policy the attack's lists are served with.
    pub attack_policy: Policy,
    /// Audit windows per round (a simulated day: 24 hourly audits). The
    /// users of a round are served in that many slices; after each, the
    /// audit's exposure counts update the controller's adjustments, which
    /// the next slice of an `exposure` trajectory is ranked with.
    pub windows: usize,
    /// How the controller moves (its thresholds are the audit's).
    pub controller: ControllerConfig,
    pub progress: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            world: SyntheticConfig {
                users: 1000,
                items: 800,
                mean_interactions: 40.0,
                cold_start_users: 10,
                // The world docs/closed-loop.md measured: milder tastes than
                // the training default, so popularity feedback has room to
                // act (kept when that default grew stronger tastes).
                popularity_alpha: 0.9,
                taste_beta: 2.5,
                seed: 7,
                ..SyntheticConfig::default()
            },
            rounds: 10,
            k: 10,
            policies: vec![Policy::None, DEFAULT_POLICY],
            hp: HyperParams {
                epochs: 12,
                patience: 2,
                refit: false,
                ..HyperParams::default()
            },
            behaviour: Behaviour::default(),
            attack: Some(AttackConfig::default()),
            attack_policy: DEFAULT_POLICY,
            windows: 24,
            controller: ControllerConfig::default(),
            progress: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("{0}")]
    Store(String),
    #[error("invalid simulation: {0}")]
    Config(String),
}

fn store_err(e: impl std::fmt::Display) -> SimError {
    SimError::Store(e.to_string())
}

/// One round of one trajectory: the lists served and what users did with them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoundMetrics {
    pub round: usize,
    pub model_version: String,
    /// Interactions the serving model was trained on.
    pub train_interactions: usize,
    pub users_served: usize,
    /// Share of users whose list holds one of their ten best unseen movies by true taste.
    pub hr_at_10: f64,
    /// NDCG@10 with those ten movies as the relevant ones.
    pub ndcg_at_10: f64,
    /// Mean true affinity of the movies served.
    pub mean_affinity: f64,
    pub catalog_coverage: Option<f64>,
    pub gini_catalog: Option<f64>,
    pub tail_share: Option<f64>,
    /// Gini of the exposed movies' counts (the audit's alarm metric).
    pub gini_exposed: Option<f64>,
    /// Share of the exposures the top tenth of the exposed movies took.
    pub top_10_pct_share: Option<f64>,
    /// Exposure share / catalogue share of the top 10% of movies by training popularity.
    pub top_tier_amplification: Option<f64>,
    pub starvation_index: Option<f64>,
    /// Events users produced from the lists (watches, ratings) and elsewhere.
    pub watches: usize,
    pub ratings: usize,
    pub organic: usize,
    /// What ingest did with the round's events.
    pub accepted: usize,
    pub quarantined: usize,
    /// The controller's adjustments at the end of the round (`exposure`
    /// trajectories), and how many movies they price and subsidise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjustments: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priced_movies: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subsidised_movies: Option<usize>,
}

/// The rounds of one policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trajectory {
    pub policy: String,
    pub rounds: Vec<RoundMetrics>,
}

/// The whole simulation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimReport {
    pub world: SyntheticConfig,
    pub behaviour: Behaviour,
    pub rounds: usize,
    pub k: usize,
    pub hyper_parameters: HyperParams,
    pub trajectories: Vec<Trajectory>,
    pub attack: Option<AttackReport>,
}

/// The synthetic world plus what every user has seen (model item indices).
struct World {
    truth: SyntheticWorld,
    /// Per user (0-based), the world's items (0-based) the user interacted with.
    seen: Vec<HashSet<u32>>,
    /// Seed interactions per item.
    seed_popularity: Vec<u32>,
}

impl World {
    fn new(cfg: &SyntheticConfig) -> Self {
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

    fn users(&self) -> usize {
        self.truth.config.users
    }

    fn items(&self) -> usize {
        self.truth.config.items
    }

    /// The seed interactions as events, their timestamps compressed into the
    /// 365 days before [`SIM_START_MS`] (at noon, so one Parquet object per day).
    fn seed_events(&self) -> Vec<Event> {
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
    fn catalog(&self, m: &Manifest) -> Catalog {
        let mut pop = vec![0u64; self.items()];
        for it in &m.items {
            if let Some(p) = pop.get_mut(it.movie_id as usize - 1) {
                *p = it.popularity as u64;
            }
        }
        Catalog::from_items(pop.into_iter().enumerate().map(|(i, p)| (i as u64 + 1, p)))
    }

    /// The user's ten unseen movies (world indices) of highest true affinity.
    fn truth_top(&self, user: usize) -> Vec<u32> {
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
    fn stars(&self, user: usize, item: u32, rng: &mut ChaCha8Rng) -> f32 {
        let noise: f32 = rng.sample(rand_distr::StandardNormal);
        (3.3 + 1.6 * self.truth.affinity(user as u32, item) + 0.7 * noise)
            .round()
            .clamp(1.0, 5.0)
    }

    /// Movies the user finds elsewhere: Gumbel top-n over the world's choice model.
    fn organic(&self, user: usize, n: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
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
fn rng_for(seed: u64, stream: u64, a: u64, b: u64) -> ChaCha8Rng {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    for v in [stream, a, b] {
        x = (x ^ v).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 31;
    }
    ChaCha8Rng::seed_from_u64(x)
}

/// One closed loop: a lake, an ingest pipeline and a registry in a folder.
struct Loop {
    dir: PathBuf,
    lake: Arc<FolderLake>,
    registry: Arc<FolderRegistry>,
    ingestor: Arc<Ingestor>,
    history: Arc<SqliteStore>,
}

/// What one ingest call did.
#[derive(Default)]
struct Ingested {
    accepted: usize,
    quarantined: usize,
}

impl Loop {
    fn new(dir: &Path, seed_events: &[Event]) -> Result<Self, SimError> {
        std::fs::create_dir_all(dir).map_err(store_err)?;
        let lake = Arc::new(FolderLake::new(dir.join("lake")));
        let registry = Arc::new(FolderRegistry::new(dir.join("registry")));
        let db = Arc::new(SqliteStore::in_memory().map_err(store_err)?);
        let ingestor = Arc::new(Ingestor::new(lake.clone(), db.clone(), db.clone()));
        let l = Loop {
            dir: dir.to_path_buf(),
            lake,
            registry,
            ingestor,
            history: db,
        };
        l.ingest(seed_events, "seed", SIM_START_MS)?;
        Ok(l)
    }

    /// Sends events through the ingest pipeline as one batch.
    fn ingest(&self, events: &[Event], tag: &str, now_ms: i64) -> Result<Ingested, SimError> {
        let records: Vec<RawRecord> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let id = format!("{tag}-{i}");
                RawRecord::new(
                    e.to_json(Some(&id)).to_string().into_bytes(),
                    Source::File {
                        path: format!("simulate/{tag}"),
                        line: i + 1,
                    },
                    None,
                )
            })
            .collect();
        let ing = self.ingestor.clone();
        let report =
            shared::adapters::aws::block_on(async move { ing.ingest(&records, now_ms).await })
                .map_err(store_err)?;
        if report.rejected > 0 {
            return Err(SimError::Store(format!(
                "ingest rejected {} simulated events: {:?}",
                report.rejected, report.rejected_by_field
            )));
        }
        Ok(Ingested {
            accepted: report.accepted,
            quarantined: report.quarantined,
        })
    }

    /// Trains `version` on the lake's training dataset (the world's titles and
    /// genres attached) and publishes it.
    fn train(&self, world: &World, version: &str, hp: &HyperParams) -> Result<Manifest, SimError> {
        let lake = self.lake.clone();
        let source = self.dir.join("lake").display().to_string();
        let mut ds = shared::adapters::aws::block_on(async move {
            shared::ingest::lake::dataset(lake.as_ref(), source).await
        })
        .map_err(store_err)?;
        for it in &mut ds.items {
            if let Some(meta) = world.truth.dataset.items.get(it.movie_id as usize - 1) {
                *it = meta.clone();
            }
        }
        let out = train_and_publish(
            self.registry.as_ref(),
            &ds,
            &TrainOptions {
                hp: hp.clone(),
                version: Some(version.to_string()),
                force: true,
                progress: false,
                defaults: None,
            },
        )?;
        Ok(out.manifest)
    }

    fn load(&self, version: &str) -> Result<ServingModel, SimError> {
        let art = self.registry.fetch(version).map_err(store_err)?;
        ServingModel::load(&art).map_err(store_err)
    }

    /// Serves `users` (0-based) one after the other; lists of world item indices.
    fn serve(
        &self,
        model: &ServingModel,
        users: &[usize],
        k: usize,
        policy: Policy,
        adjustments: &[f32],
    ) -> Result<Vec<Vec<u32>>, SimError> {
        let history = self.history.clone();
        let ids: Vec<u64> = users.iter().map(|&u| u as u64 + 1).collect();
        let seen: Vec<Vec<u64>> = shared::adapters::aws::block_on(async move {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push(history.seen(id).await?);
            }
            Ok::<_, shared::ports::StoreError>(out)
        })
        .map_err(store_err)?;
        users
            .iter()
            .zip(seen)
            .map(|(&u, also_seen)| {
                let ranked = model
                    .recommend_adjusted(
                        u as u64 + 1,
                        k,
                        &also_seen,
                        policy,
                        &Default::default(),
                        adjustments,
                    )
                    .map_err(store_err)?;
                Ok(ranked
                    .items
                    .iter()
                    .map(|(i, _)| (model.manifest.items[*i as usize].movie_id - 1) as u32)
                    .collect())
            })
            .collect()
    }
}

/// What users did with a round's lists.
struct Responses {
    events: Vec<Event>,
    watches: usize,
    ratings: usize,
    organic: usize,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Users react to their lists (and find movies elsewhere) during day `round`.
fn respond(
    world: &mut World,
    b: &Behaviour,
    seed: u64,
    round: usize,
    users: &[usize],
    lists: &[Vec<u32>],
) -> Responses {
    let mut out = Responses {
        events: Vec::new(),
        watches: 0,
        ratings: 0,
        organic: 0,
    };
    let day = SIM_START_MS + round as i64 * DAY_MS;
    for (&u, list) in users.iter().zip(lists) {
        let mut rng = rng_for(seed, 1, round as u64, u as u64);
        let mut picked: Vec<(u32, bool)> = Vec::new();
        for (p, &i) in list.iter().enumerate() {
            let examine = 1.0 / ((p + 2) as f64).log2();
            let aff = world.truth.affinity(u as u32, i) as f64;
            let watch = sigmoid(b.watch_slope * (aff - b.watch_threshold));
            if rng.gen::<f64>() < examine && rng.gen::<f64>() < watch {
                picked.push((i, false));
            }
        }
        // Poisson(organic) by inversion.
        let n_organic = {
            let (mut n, mut p, l) = (0usize, 1.0f64, (-b.organic).exp());
            loop {
                p *= rng.gen::<f64>();
                if p <= l {
                    break n;
                }
                n += 1;
            }
        };
        for i in world.organic(u, n_organic, &mut rng) {
            if !picked.iter().any(|x| x.0 == i) {
                picked.push((i, true));
            }
        }
        for (i, organic) in picked {
            world.seen[u].insert(i);
            let ts_ms = day + rng.gen_range(0..DAY_MS - 60_000);
            let (user_id, movie_id) = (u as u64 + 1, i as u64 + 1);
            out.organic += usize::from(organic);
            if rng.gen::<f64>() < b.rate_share {
                out.ratings += 1;
                let rating = world.stars(u, i, &mut rng);
                out.events.push(Event::Rate(Rate {
                    user_id,
                    movie_id,
                    rating,
                    ts_ms,
                }));
            } else {
                out.watches += 1;
                out.events.push(Event::Watch(Watch {
                    user_id,
                    movie_id,
                    minute: None,
                    ts_ms,
                }));
            }
        }
    }
    out
}

/// The served users of a round (the same for every policy).
fn active_users(world: &World, b: &Behaviour, seed: u64, round: usize) -> Vec<usize> {
    let mut rng = rng_for(seed, 2, round as u64, 0);
    (0..world.users())
        .filter(|_| rng.gen::<f64>() < b.active_share)
        .collect()
}

/// The round's users in the order they are served: shuffled (seeded), so
/// each audit window sees a sample of all users, as hours of traffic would.
/// (Positions in `users`; the lists are kept in `users`' order.)
fn served_order(users: &[usize], seed: u64, round: usize) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..users.len()).collect();
    order.shuffle(&mut rng_for(seed, 3, round as u64, 0));
    order
}

/// `users` in `windows` consecutive slices of near-equal size.
fn slices(users: &[usize], windows: usize) -> impl Iterator<Item = &[usize]> + '_ {
    let n = users.len();
    (0..windows).map(move |w| &users[w * n / windows..(w + 1) * n / windows])
}

/// HR@10, NDCG@10 against the truth, and mean true affinity, of the lists.
fn truth_metrics(world: &World, users: &[usize], lists: &[Vec<u32>]) -> (f64, f64, f64) {
    let disc = |p: usize| 1.0 / ((p + 2) as f64).log2();
    let (mut hr, mut ndcg, mut aff, mut n_aff) = (0.0, 0.0, 0.0, 0usize);
    for (&u, list) in users.iter().zip(lists) {
        let truth: HashSet<u32> = world.truth_top(u).into_iter().collect();
        let top = &list[..list.len().min(TRUTH_K)];
        let dcg: f64 = top
            .iter()
            .enumerate()
            .filter(|(_, i)| truth.contains(i))
            .map(|(p, _)| disc(p))
            .sum();
        let idcg: f64 = (0..truth.len().min(TRUTH_K)).map(disc).sum();
        if dcg > 0.0 {
            hr += 1.0;
            ndcg += dcg / idcg;
        }
        for &i in list {
            aff += world.truth.affinity(u as u32, i) as f64;
            n_aff += 1;
        }
    }
    let n = users.len().max(1) as f64;
    (hr / n, ndcg / n, aff / n_aff.max(1) as f64)
}

fn progress_bar(show: bool, len: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb
}

fn check(cfg: &SimConfig) -> Result<(), SimError> {
    let w = &cfg.world;
    if w.users < 10 || w.items < 2 * cfg.k.max(TRUTH_K) {
        return Err(SimError::Config(format!(
            "a world of {} users and {} movies is too small for lists of {}",
            w.users, w.items, cfg.k
        )));
    }
    if !(1..=100).contains(&cfg.k) {
        return Err(SimError::Config(format!(
            "k must be 1 to 100 (got {})",
            cfg.k
        )));
    }
    let b = &cfg.behaviour;
    for (name, v) in [
        ("active share", b.active_share),
        ("rate share", b.rate_share),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(SimError::Config(format!("{name} must be 0 to 1 (got {v})")));
        }
    }
    if !(b.organic >= 0.0 && b.organic <= 50.0) {
        return Err(SimError::Config(format!(
            "organic must be 0 to 50 (got {})",
            b.organic
        )));
    }
    if let Some(a) = &cfg.attack {
        if a.users == 0 {
            return Err(SimError::Config(
                "the attack needs at least one fake user".into(),
            ));
        }
        if let Some(t) = a.target {
            if t == 0 || t > w.items as u64 {
                return Err(SimError::Config(format!(
                    "attack target {t} is not a movie of the world (1 to {})",
                    w.items
                )));
            }
        }
    }
    Ok(())
}

/// Runs the trajectories and the attack in folders under `work`.
pub fn simulate(cfg: &SimConfig, work: &Path) -> Result<SimReport, SimError> {
    check(cfg)?;
    // No rounds: the attack alone.
    let policies = if cfg.rounds == 0 {
        &[][..]
    } else {
        &cfg.policies[..]
    };
    let steps = policies.len() * (cfg.rounds + 1) + cfg.attack.as_ref().map_or(0, |_| 7);
    let pb = progress_bar(cfg.progress, steps as u64);
    let mut trajectories = Vec::new();
    for (p, policy) in policies.iter().enumerate() {
        trajectories.push(trajectory(
            cfg,
            *policy,
            &work.join(format!("policy-{p}")),
            &pb,
        )?);
    }
    let attack = match &cfg.attack {
        Some(a) => Some(attack::attack(cfg, a, &work.join("attack"), &pb)?),
        None => None,
    };
    pb.finish_and_clear();
    Ok(SimReport {
        world: cfg.world.clone(),
        behaviour: cfg.behaviour.clone(),
        rounds: cfg.rounds,
        k: cfg.k,
        hyper_parameters: cfg.hp.clone(),
        trajectories,
        attack,
    })
}

fn trajectory(
    cfg: &SimConfig,
    policy: Policy,
    dir: &Path,
    pb: &ProgressBar,
) -> Result<Trajectory, SimError> {
    let mut world = World::new(&cfg.world);
    let lp = Loop::new(dir, &world.seed_events())?;
    let seed = cfg.world.seed;
    pb.set_message(format!("{}: training round 0", policy.spec()));
    let mut manifest = lp.train(&world, "r00", &cfg.hp)?;
    pb.inc(1);
    let mut rounds = Vec::new();
    let controlled = matches!(policy, Policy::Exposure { .. });
    let mut adjustments = Adjustments::default();
    for r in 0..cfg.rounds {
        pb.set_message(format!("{}: round {r}", policy.spec()));
        let model = lp.load(&manifest.version)?;
        let users = active_users(&world, &cfg.behaviour, seed, r);
        // The day in audit windows: serve a slice, audit it, update.
        let order = served_order(&users, seed, r);
        let windows = cfg.windows.clamp(1, users.len().max(1));
        let mut lists = vec![Vec::new(); users.len()];
        for (w, slice) in slices(&order, windows).enumerate() {
            let slice_users: Vec<usize> = slice.iter().map(|&p| users[p]).collect();
            let net = match controlled {
                true => model.adjustment_vector(&adjustments),
                false => Vec::new(),
            };
            let served = lp.serve(&model, &slice_users, cfg.k, policy, &net)?;
            if controlled {
                let mut window = ExposureCounts::default();
                for l in &served {
                    window.add_list(&l.iter().map(|&i| i as u64 + 1).collect::<Vec<_>>());
                }
                let end =
                    SIM_START_MS + r as i64 * DAY_MS + (w as i64 + 1) * DAY_MS / windows as i64;
                adjustments =
                    adjustments.update(&window.counts, world.items(), &cfg.controller, end);
            }
            for (&p, l) in slice.iter().zip(served) {
                lists[p] = l;
            }
        }
        let mut counts = ExposureCounts::default();
        for l in &lists {
            counts.add_list(&l.iter().map(|&i| i as u64 + 1).collect::<Vec<_>>());
        }
        let m = metrics(&counts, &world.catalog(&manifest));
        let (hr, ndcg, aff) = truth_metrics(&world, &users, &lists);
        let resp = respond(&mut world, &cfg.behaviour, seed, r, &users, &lists);
        let day_end = SIM_START_MS + (r as i64 + 1) * DAY_MS;
        let ing = lp.ingest(&resp.events, &format!("round-{r}"), day_end)?;
        rounds.push(RoundMetrics {
            round: r,
            model_version: manifest.version.clone(),
            train_interactions: manifest.data.interactions,
            users_served: users.len(),
            hr_at_10: hr,
            ndcg_at_10: ndcg,
            mean_affinity: aff,
            catalog_coverage: m.catalog_coverage,
            gini_catalog: m.gini_catalog,
            tail_share: m.tail_share,
            gini_exposed: m.gini_exposed,
            top_10_pct_share: m.top_10_pct_share,
            top_tier_amplification: m.popularity_tiers.get("high").and_then(|t| t.amplification),
            starvation_index: m.starvation_index,
            watches: resp.watches,
            ratings: resp.ratings,
            organic: resp.organic,
            accepted: ing.accepted,
            quarantined: ing.quarantined,
            adjustments: controlled.then(|| adjustments.name()),
            priced_movies: controlled.then_some(adjustments.prices.len()),
            subsidised_movies: controlled.then_some(adjustments.subsidies.len()),
        });
        if r + 1 < cfg.rounds {
            manifest = lp.train(&world, &format!("r{:02}", r + 1), &cfg.hp)?;
        }
        pb.inc(1);
    }
    Ok(Trajectory {
        policy: policy.spec(),
        rounds,
    })
}

#[cfg(test)]
mod tests;
