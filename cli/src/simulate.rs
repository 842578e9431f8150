//! `movie-recs simulate`: the closed loop of recommender and users on a
//! synthetic world ([`trainer::simulate`]), written as JSON, Markdown and SVG.

use anyhow::{bail, Context, Result};
use clap::Args;
use shared::domain::exposure_control::ControllerConfig;
use shared::domain::rerank::Policy;
use std::path::PathBuf;
use trainer::simulate::{report, simulate, AttackConfig, Behaviour, SimConfig};

/// Marks `<out>/work` as the simulator's, so a later run may clear it.
const WORK_MARKER: &str = ".movie-recs-simulate";

#[derive(Args)]
pub struct SimulateArgs {
    /// Users of the synthetic world.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Movies of the synthetic world.
    #[arg(long, default_value_t = 800)]
    items: usize,
    /// Mean interactions per user before the simulation.
    #[arg(long, default_value_t = 40.0)]
    mean_interactions: f64,
    /// Seed of the world, the users' behaviour and training.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Rounds (days) of each trajectory; one retraining per round (0: the attack only).
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// List length served to every user.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// One trajectory per policy (name[:key=value,...]), separated by `;`.
    #[arg(long, value_delimiter = ';', default_value = "none;slots:slots=3")]
    policies: Vec<String>,
    /// Most epochs of each retraining (the best on validation is kept).
    #[arg(long, default_value_t = 12)]
    epochs: usize,
    /// Share of users served each round.
    #[arg(long, default_value_t = 1.0)]
    active_share: f64,
    /// Mean movies a user finds outside the recommendations per round.
    #[arg(long, default_value_t = 1.0)]
    organic: f64,
    /// Fake accounts of the promotion attack.
    #[arg(long, default_value_t = 100)]
    attack_users: usize,
    /// Popular movies each fake account rates besides the target.
    #[arg(long, default_value_t = 20)]
    attack_filler: usize,
    /// The promoted movie id (default: a tail movie, the 75th percentile of popularity).
    #[arg(long)]
    attack_target: Option<u64>,
    /// Policy of the lists the attack is measured on.
    #[arg(long, default_value = "slots:slots=3")]
    attack_policy: String,
    /// Skip the attack scenario.
    #[arg(long)]
    no_attack: bool,
    /// Audit windows per simulated day: users are served in that many
    /// slices, and the exposure controller (policy `exposure`) updates
    /// after each, as the hourly audit does.
    #[arg(long, default_value_t = 24)]
    audit_windows: usize,
    /// Exposure controller: change of a price or subsidy per window at full violation.
    #[arg(long, default_value_t = ControllerConfig::default().step)]
    controller_step: f64,
    /// Exposure controller: the highest price, in units of a user's score spread.
    #[arg(long, default_value_t = ControllerConfig::default().max_price)]
    controller_max_price: f64,
    /// Exposure controller: the highest subsidy, in the same units.
    #[arg(long, default_value_t = ControllerConfig::default().max_subsidy)]
    controller_max_subsidy: f64,
    /// Exposure controller: windows after which an exposure counts half.
    #[arg(long, default_value_t = ControllerConfig::default().half_life_windows)]
    controller_half_life: f64,
    /// Exposure controller: share of each threshold aimed at.
    #[arg(long, default_value_t = ControllerConfig::default().margin)]
    controller_margin: f64,
    /// Folder for simulation.json, simulation.md and the charts.
    #[arg(long, default_value = ".movie-recs/simulation")]
    out: PathBuf,
    /// Keep the lakes and registries of the runs (under <out>/work).
    #[arg(long)]
    keep_work: bool,
    /// Print the report's JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: SimulateArgs) -> Result<()> {
    let cfg = config(&a)?;
    cfg.controller
        .validate()
        .map_err(|e| anyhow::anyhow!("controller: {e}"))?;
    let work = work_folder(&a.out)?;
    announce(&cfg);
    let started = std::time::Instant::now();
    let r = simulate(&cfg, &work)?;
    if !a.keep_work {
        std::fs::remove_dir_all(&work).ok();
    }
    for (name, bytes) in report::files(&r, &command_line()) {
        let path = a.out.join(&name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!(
        "simulated in {:.0} s; wrote {}/simulation.{{json,md}} and charts",
        started.elapsed().as_secs_f64(),
        a.out.display()
    );
    print_summary(&r);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    Ok(())
}

/// The command line, quoted where a shell needs it.
fn command_line() -> String {
    std::iter::once("movie-recs".to_string())
        .chain(std::env::args().skip(1).map(|x| {
            let plain = x
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_./:=,-".contains(c));
            if plain && !x.is_empty() {
                x
            } else {
                format!("\"{x}\"")
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The simulation the flags describe.
fn config(a: &SimulateArgs) -> Result<SimConfig> {
    let policy = |spec: &str| {
        Policy::from_spec(spec, a.k).map_err(|e| anyhow::anyhow!("policy {spec:?}: {e}"))
    };
    let defaults = SimConfig::default();
    Ok(SimConfig {
        world: shared::data::synthetic::SyntheticConfig {
            users: a.users,
            items: a.items,
            mean_interactions: a.mean_interactions,
            seed: a.seed,
            ..defaults.world.clone()
        },
        rounds: a.rounds,
        k: a.k,
        policies: a
            .policies
            .iter()
            .map(|p| policy(p))
            .collect::<Result<_>>()?,
        hp: shared::artifact::HyperParams {
            epochs: a.epochs,
            seed: a.seed,
            ..defaults.hp.clone()
        },
        behaviour: Behaviour {
            active_share: a.active_share,
            organic: a.organic,
            ..Behaviour::default()
        },
        attack: (!a.no_attack).then(|| AttackConfig {
            users: a.attack_users,
            filler: a.attack_filler,
            target: a.attack_target,
            ..AttackConfig::default()
        }),
        attack_policy: policy(&a.attack_policy)?,
        windows: a.audit_windows.max(1),
        controller: ControllerConfig {
            step: a.controller_step,
            max_price: a.controller_max_price,
            max_subsidy: a.controller_max_subsidy,
            half_life_windows: a.controller_half_life,
            margin: a.controller_margin,
            ..ControllerConfig::default()
        },
        progress: true,
    })
}

/// The runs' folder under `out`: a leftover of an earlier simulation (it
/// has the marker) is cleared, anything else is never touched.
fn work_folder(out: &std::path::Path) -> Result<std::path::PathBuf> {
    let work = out.join("work");
    let marker = work.join(WORK_MARKER);
    if work.exists() {
        if !marker.exists() {
            bail!(
                "{} exists and is not a simulation's work folder; choose another --out",
                work.display()
            );
        }
        std::fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    std::fs::write(&marker, b"movie-recs simulate\n")
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok(work)
}

fn announce(cfg: &SimConfig) {
    if cfg.rounds == 0 {
        eprintln!(
            "simulating the promotion attack on {} users × {} movies",
            cfg.world.users, cfg.world.items
        );
    } else {
        eprintln!(
            "simulating {} rounds × {} policies on {} users × {} movies{}",
            cfg.rounds,
            cfg.policies.len(),
            cfg.world.users,
            cfg.world.items,
            if cfg.attack.is_some() {
                ", then the promotion attack"
            } else {
                ""
            }
        );
    }
}

/// Each policy's first and last round, and the attack's rows.
fn print_summary(r: &trainer::simulate::SimReport) {
    for t in &r.trajectories {
        if let (Some(f), Some(l)) = (t.rounds.first(), t.rounds.last()) {
            eprintln!(
                "{}: HR@10 {:.3} → {:.3}, coverage {:.3} → {:.3}, gini_catalog {:.3} → {:.3}, starvation {:.3} → {:.3}",
                t.policy,
                f.hr_at_10,
                l.hr_at_10,
                f.catalog_coverage.unwrap_or(0.0),
                l.catalog_coverage.unwrap_or(0.0),
                f.gini_catalog.unwrap_or(0.0),
                l.gini_catalog.unwrap_or(0.0),
                f.starvation_index.unwrap_or(0.0),
                l.starvation_index.unwrap_or(0.0),
            );
        }
    }
    if let Some(at) = &r.attack {
        for x in std::iter::once(&at.before).chain(&at.after) {
            eprintln!(
                "attack: {}: target in {:.2}% of lists, {:.1}% of top-{} rankings, median rank {}{}",
                x.name,
                x.share * 100.0,
                x.deep_share * 100.0,
                trainer::simulate::DEEP_K,
                x.median_rank.map_or("–".into(), |r| r.to_string()),
                match (x.lift_cut, x.deep_lift_cut) {
                    (None, None) => String::new(),
                    (a, b) => format!(
                        "; lift cut {} (lists), {} (top {})",
                        a.map_or("–".into(), |c| format!("{:.0}%", c * 100.0)),
                        b.map_or("–".into(), |c| format!("{:.0}%", c * 100.0)),
                        trainer::simulate::DEEP_K
                    ),
                }
            );
        }
    }
}
