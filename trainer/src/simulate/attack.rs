//! The promotion attack scenario: serve a day, inject fake accounts' ratings
//! through ingest, then retrain with and without the training mitigations
//! (and a control without the attack) and measure the target's exposure.

use super::*;
use shared::adapters::local::FileMetrics;
use shared::audit::job::AuditJob;
use shared::audit::AuditConfig;

/// The promotion attack and the mitigations tried against it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttackConfig {
    /// Fake accounts.
    pub users: usize,
    /// Popular movies each fake account rates besides the target.
    pub filler: usize,
    /// The promoted movie; by default the movie at the 75th percentile of
    /// the seed's popularity ranking (a tail movie).
    pub target: Option<u64>,
    /// Young-account mitigation: accounts younger than this many days...
    pub young_account_days: u32,
    /// ...count at this weight.
    pub young_account_weight: f64,
    /// Popularity-aware negative sampling exponent tried as a mitigation.
    pub popularity_negatives: f64,
}

impl Default for AttackConfig {
    fn default() -> Self {
        AttackConfig {
            users: 100,
            filler: 20,
            target: None,
            young_account_days: 14,
            young_account_weight: 0.1,
            popularity_negatives: 0.75,
        }
    }
}

/// The target's exposure under one model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetExposure {
    pub name: String,
    /// Mitigations the model was trained with.
    pub mitigations: Vec<String>,
    pub model_version: String,
    /// Real users' lists holding the target.
    pub lists_with_target: usize,
    pub share: f64,
    /// Share of users with the target in the first [`DEEP_K`] of the model's
    /// ranking of their unseen movies (before re-ranking): a steadier gauge of
    /// the model's shift than the short lists.
    pub deep_share: f64,
    /// Median position (0 = first) of the target in those rankings.
    pub median_rank: Option<usize>,
    /// `share` minus the control's (retrained without the attack).
    pub lift: Option<f64>,
    /// `1 − lift / lift without mitigations`.
    pub lift_cut: Option<f64>,
    /// The same two for `deep_share`.
    pub deep_lift: Option<f64>,
    pub deep_lift_cut: Option<f64>,
}

/// Depth of the model rankings behind [`TargetExposure::deep_share`].
pub const DEEP_K: usize = 50;

/// The promotion attack scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttackReport {
    pub config: AttackConfig,
    pub policy: String,
    pub target: u64,
    pub target_seed_interactions: u32,
    /// Position of the target in the seed's popularity ranking, 0 = most popular.
    pub target_popularity_rank: usize,
    pub users_served: usize,
    /// Fake ratings ingest accepted and quarantined (velocity limit).
    pub attack_accepted: usize,
    pub attack_quarantined: usize,
    /// The audit over the attack's day: fake and real users it quarantined.
    pub audit_flagged_fake: usize,
    pub audit_flagged_real: usize,
    /// Before retraining (the model that served the attack's day), then after.
    pub before: TargetExposure,
    pub after: Vec<TargetExposure>,
}

/// The default target: the movie at the 75th percentile of seed popularity.
pub(super) fn default_target(world: &World) -> u32 {
    let mut order: Vec<u32> = (0..world.items() as u32).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(world.seed_popularity[i as usize]), i));
    order[order.len() * 3 / 4]
}

/// The fake accounts' ratings, spread over day `round`.
pub(super) fn attack_events(
    world: &World,
    a: &AttackConfig,
    target: u32,
    seed: u64,
    round: usize,
) -> Vec<Event> {
    let mut order: Vec<u32> = (0..world.items() as u32).filter(|&i| i != target).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(world.seed_popularity[i as usize]), i));
    let head = &order[..(order.len() / 10).max(a.filler.min(order.len()))];
    let day = SIM_START_MS + round as i64 * DAY_MS;
    let mut out = Vec::new();
    for f in 0..a.users {
        let mut rng = rng_for(seed, 3, f as u64, 0);
        let user_id = (world.users() + f + 1) as u64;
        let filler = rand::seq::index::sample(&mut rng, head.len(), a.filler.min(head.len()));
        let mut movies: Vec<(u32, f32)> = vec![(target, 5.0)];
        movies.extend(
            filler
                .into_iter()
                .map(|j| (head[j], if rng.gen::<bool>() { 5.0 } else { 4.0 })),
        );
        for (i, rating) in movies {
            out.push(Event::Rate(Rate {
                user_id,
                movie_id: i as u64 + 1,
                rating,
                ts_ms: day + rng.gen_range(0..DAY_MS - 60_000),
            }));
        }
    }
    out
}

/// The target's exposure under `version`, and the lists it served.
fn exposure_of(
    lp: &Loop,
    version: &str,
    users: &[usize],
    cfg: &SimConfig,
    target: u32,
    name: &str,
    mitigations: &[&str],
) -> Result<(TargetExposure, Vec<Vec<u32>>), SimError> {
    let model = lp.load(version)?;
    let lists = lp.serve(&model, users, cfg.k, cfg.attack_policy, &[])?;
    let with = lists.iter().filter(|l| l.contains(&target)).count();
    let all = lp.serve(&model, users, model.manifest.items.len(), Policy::None, &[])?;
    let mut ranks: Vec<usize> = all
        .iter()
        .filter_map(|l| l.iter().position(|&i| i == target))
        .collect();
    ranks.sort_unstable();
    let exposure = TargetExposure {
        name: name.into(),
        mitigations: mitigations.iter().map(|s| s.to_string()).collect(),
        model_version: version.into(),
        lists_with_target: with,
        share: with as f64 / users.len().max(1) as f64,
        deep_share: ranks.iter().filter(|&&r| r < DEEP_K).count() as f64
            / users.len().max(1) as f64,
        median_rank: ranks.get(ranks.len() / 2).copied(),
        lift: None,
        lift_cut: None,
        deep_lift: None,
        deep_lift_cut: None,
    };
    Ok((exposure, lists))
}

pub(super) fn attack(
    cfg: &SimConfig,
    a: &AttackConfig,
    dir: &Path,
    pb: &ProgressBar,
) -> Result<AttackReport, SimError> {
    let seed = cfg.world.seed;
    let mut world = World::new(&cfg.world);
    let seed_events = world.seed_events();
    let clean = Loop::new(&dir.join("control"), &seed_events)?;
    let attacked = Loop::new(&dir.join("attacked"), &seed_events)?;
    let target = match a.target {
        Some(t) => t as u32 - 1,
        None => default_target(&world),
    };
    let step = |pb: &ProgressBar, msg: &str| {
        pb.set_message(format!("attack: {msg}"));
        pb.inc(1);
    };
    pb.set_message("attack: training the serving model");
    let m0 = attacked.train(&world, "a0", &cfg.hp)?;
    step(pb, "serving the attack's day");
    // Day 0: the real users are served and react; the fake accounts rate.
    let users = active_users(&world, &cfg.behaviour, seed, 0);
    let (before, lists) = exposure_of(
        &attacked,
        &m0.version,
        &users,
        cfg,
        target,
        "before retraining",
        &[],
    )?;
    let resp = respond(&mut world, &cfg.behaviour, seed, 0, &users, &lists);
    let day_end = SIM_START_MS + DAY_MS;
    clean.ingest(&resp.events, "round-0", day_end)?;
    attacked.ingest(&resp.events, "round-0", day_end)?;
    let fake = attack_events(&world, a, target, seed, 0);
    let fake_ingest = attacked.ingest(&fake, "attack", day_end)?;

    let young = HyperParams {
        young_account_days: a.young_account_days,
        young_account_weight: a.young_account_weight,
        ..cfg.hp.clone()
    };
    let popneg = HyperParams {
        popularity_negatives: a.popularity_negatives,
        ..cfg.hp.clone()
    };
    let all = young.clone();
    let young_name = format!(
        "young accounts (< {} days at weight {})",
        a.young_account_days, a.young_account_weight
    );
    let popneg_name = format!("popularity negatives (β = {})", a.popularity_negatives);
    // Retrains `lp` as `version` with `hp` and measures the target's exposure.
    let retrain = |lp: &Loop,
                   version: &str,
                   hp: &HyperParams,
                   name: &str,
                   mitigations: &[&str]|
     -> Result<TargetExposure, SimError> {
        lp.train(&world, version, hp)?;
        Ok(exposure_of(lp, version, &users, cfg, target, name, mitigations)?.0)
    };
    let mut after = vec![retrain(
        &clean,
        "control",
        &cfg.hp,
        "control: no attack",
        &[],
    )?];
    step(pb, "retraining without mitigations");
    after.push(retrain(
        &attacked,
        "none",
        &cfg.hp,
        "attack, no mitigation",
        &[],
    )?);
    step(pb, "retraining with young-account weighting");
    after.push(retrain(
        &attacked,
        "young",
        &young,
        "attack, young-account weighting",
        &[&young_name],
    )?);
    step(pb, "retraining with popularity negatives");
    after.push(retrain(
        &attacked,
        "popneg",
        &popneg,
        "attack, popularity negatives",
        &[&popneg_name],
    )?);
    // The scheduled audit over the attack's day quarantines flagged users;
    // every later training run excludes them.
    step(pb, "auditing the attack's day");
    let audit = run_audit(&attacked, &world, &m0, day_end)?;
    let fakes = world.users() as u64;
    let audit_flagged_fake = audit.iter().filter(|&&u| u > fakes).count();
    let audit_flagged_real = audit.len() - audit_flagged_fake;
    const QUARANTINE: &str = "exclude users the audit flagged";
    after.push(retrain(
        &attacked,
        "quarantine",
        &cfg.hp,
        "attack, audit quarantine",
        &[QUARANTINE],
    )?);
    step(pb, "retraining with both attack mitigations");
    after.push(retrain(
        &attacked,
        "all",
        &all,
        "attack, both attack mitigations",
        &[QUARANTINE, &young_name],
    )?);
    step(pb, "done");
    set_lifts(&mut after);
    Ok(AttackReport {
        config: a.clone(),
        policy: cfg.attack_policy.spec(),
        target: target as u64 + 1,
        target_seed_interactions: world.seed_popularity[target as usize],
        target_popularity_rank: popularity_rank(&world.seed_popularity, target),
        users_served: users.len(),
        attack_accepted: fake_ingest.accepted,
        attack_quarantined: fake_ingest.quarantined,
        audit_flagged_fake,
        audit_flagged_real,
        before,
        after,
    })
}

/// Each retraining's lift in target exposure over the control (the first),
/// and the share of the unmitigated lift (the second) a mitigation cuts.
fn set_lifts(after: &mut [TargetExposure]) {
    let (control, deep_control) = (after[0].share, after[0].deep_share);
    let unmitigated = after[1].share - control;
    let deep_unmitigated = after[1].deep_share - deep_control;
    for (i, x) in after.iter_mut().enumerate().skip(1) {
        let (lift, deep) = (x.share - control, x.deep_share - deep_control);
        x.lift = Some(lift);
        x.deep_lift = Some(deep);
        x.lift_cut = (i > 1 && unmitigated > 0.0).then(|| 1.0 - lift / unmitigated);
        x.deep_lift_cut = (i > 1 && deep_unmitigated > 0.0).then(|| 1.0 - deep / deep_unmitigated);
    }
}

/// How many movies rank above `target` by popularity (ties by index).
fn popularity_rank(popularity: &[u32], target: u32) -> usize {
    let p = popularity[target as usize];
    popularity
        .iter()
        .enumerate()
        .filter(|&(i, &q)| q > p || (q == p && (i as u32) < target))
        .count()
}

/// The product's audit job over day 0 on the attacked lake; returns the
/// users it quarantined (written to the lake, where training reads them).
fn run_audit(
    lp: &Loop,
    world: &World,
    served: &Manifest,
    day_end: i64,
) -> Result<Vec<u64>, SimError> {
    let db = Arc::new(SqliteStore::in_memory().map_err(store_err)?);
    let job = AuditJob {
        traces: db.clone(),
        lake: lp.lake.clone(),
        registry: lp.registry.clone(),
        rollout: db,
        metrics: Arc::new(FileMetrics::new(lp.dir.join("audit-metrics.jsonl"))),
        reports: Arc::new(FolderLake::new(lp.dir.join("reports"))),
        stage: "simulate".into(),
        config: AuditConfig::default(),
        catalog: Some(world.catalog(served)),
        exposure: None,
    };
    let from = day_end - DAY_MS;
    let out = shared::adapters::aws::block_on(async move { job.run(from, day_end, day_end).await })
        .map_err(store_err)?;
    Ok(out.report.spam.flagged_users)
}
