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
mod product;
pub mod report;
mod users;
mod world;

pub use attack::{AttackConfig, AttackReport, TargetExposure, DEEP_K};
use product::Loop;
use users::{active_users, respond, served_order, slices, truth_metrics};
use world::{rng_for, World};

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
