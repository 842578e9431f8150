//! `movie-recs rollout`: read or change which version serves, and run the
//! canary's analysis and action by hand.

use crate::out;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

#[derive(Args)]
pub(crate) struct SetArgs {
    #[arg(long, value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<shared::domain::strategy::Strategy>()))]
    strategy: shared::domain::strategy::Strategy,
    #[arg(long)]
    primary: String,
    /// Required unless --strategy fixed.
    #[arg(long)]
    candidate: Option<String>,
    /// Share of users (0 to 100) on the candidate (canary, ab_test) or
    /// also scored by it (shadow).
    #[arg(long, default_value_t = 0.0)]
    percentage: f64,
    #[arg(long, default_value = "cli")]
    by: String,
}

#[derive(Subcommand)]
pub(crate) enum RolloutCommand {
    /// Print the rollout state as JSON.
    Status,
    /// Serve VERSION (verified in MOVIE_RECS_REGISTRY first); fails on a concurrent change.
    Switch {
        version: String,
        /// Recorded as updated_by.
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Set the strategy: fixed, canary, ab_test or shadow (versions verified first).
    Set(SetArgs),
    /// The latest changes (who, when, what, previous state), newest first.
    Changes {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Analyse the running canary or A/B test: per arm requests,
    /// conversions, error rate, p95 latency and fairness; the conversion
    /// test, the guardrails and what the automation would do. JSON on stdout.
    Analyze {
        #[arg(long, default_value_t = 60)]
        window_minutes: i64,
    },
    /// Take the automation's action now: promote, roll back, keep the
    /// primary or ramp (judged over the whole experiment by default).
    Promote {
        /// Report what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Judge only the last N minutes instead of the whole experiment.
        #[arg(long)]
        window_minutes: Option<i64>,
        #[arg(long, default_value = "cli")]
        by: String,
    },
}

pub(crate) fn rollout(c: RolloutCommand) -> Result<()> {
    use shared::config::{Role, Settings};
    use shared::wiring::Stores;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let settings = Settings::from_env()?;
        let stores = Stores::build(Role::Cli, &settings).await?;
        let rollout = stores.rollout()?;
        match c {
            RolloutCommand::Status => {
                let s = rollout.state().await?;
                out(serde_json::to_string_pretty(&s)?);
            }
            RolloutCommand::Switch { version, by } => {
                verify(&stores, &settings, &version).await?;
                let expected = rollout.state().await?.map_or(0, |s| s.revision);
                let s = rollout.switch(expected, &version, &by).await?;
                eprintln!("now serving {} (revision {})", s.served_version, s.revision);
                out(serde_json::to_string(&s)?);
            }
            RolloutCommand::Set(a) => set(&stores, &settings, a).await?,
            RolloutCommand::Changes { limit } => {
                let c = rollout.changes(limit).await?;
                out(serde_json::to_string_pretty(&c)?);
            }
            RolloutCommand::Analyze { window_minutes } => {
                let job = stores.experiment_job(&settings)?;
                let r = job
                    .analyze(chrono::Utc::now().timestamp_millis(), window_minutes)
                    .await?;
                eprint!("{}", shared::canary::render(&r));
                out(serde_json::to_string_pretty(&r)?);
            }
            RolloutCommand::Promote {
                dry_run,
                window_minutes,
                by,
            } => {
                let job = stores.experiment_job(&settings)?;
                promote(&job, dry_run, window_minutes, &by).await?;
            }
        }
        anyhow::Ok(())
    })
}

/// Fails unless `version` is in the registry and verifies.
async fn verify(
    stores: &shared::wiring::Stores,
    settings: &shared::config::Settings,
    version: &str,
) -> Result<()> {
    let (reg, v) = (stores.registry()?, version.to_string());
    tokio::task::spawn_blocking(move || reg.fetch(&v))
        .await?
        .with_context(|| format!("version {version} in {}", settings.registry))?;
    Ok(())
}

/// `rollout set`: a strategy over verified versions.
async fn set(
    stores: &shared::wiring::Stores,
    settings: &shared::config::Settings,
    a: SetArgs,
) -> Result<()> {
    let SetArgs {
        strategy,
        primary,
        candidate,
        percentage,
        by,
    } = a;
    if !(0.0..=100.0).contains(&percentage) {
        bail!("--percentage must be from 0 to 100, got {percentage}");
    }
    let candidate = match (strategy, candidate) {
        (shared::domain::strategy::Strategy::Fixed, _) => None,
        (_, Some(c)) if c != primary => Some(c),
        (_, Some(_)) => bail!("--candidate must differ from --primary"),
        (s, None) => bail!("--candidate is required for --strategy {s}"),
    };
    for v in std::iter::once(&primary).chain(candidate.iter()) {
        verify(stores, settings, v).await?;
    }
    let rollout = stores.rollout()?;
    let previous = rollout.state().await?;
    let mut spec = shared::ports::RolloutSpec {
        strategy,
        primary_version: primary,
        percentage: if candidate.is_some() { percentage } else { 0.0 },
        candidate_version: candidate,
        experiment_id: None,
        salt: None,
        primary_policy: None,
        candidate_policy: None,
        reason: None,
    };
    shared::http::rollout::name_experiment(&mut spec, previous.as_ref());
    let expected = previous.map_or(0, |s| s.revision);
    let s = rollout.set(expected, &spec, &by).await?;
    eprintln!(
        "{} {} (candidate {:?} at {}%), revision {}",
        s.strategy, s.served_version, s.candidate_version, s.percentage, s.revision
    );
    out(serde_json::to_string(&shared::http::rollout::status_json(
        &s,
    ))?);
    Ok(())
}

/// `rollout promote`: the canary automation's run, now (or its dry run).
async fn promote(
    job: &shared::canary::job::ExperimentJob,
    dry_run: bool,
    window_minutes: Option<i64>,
    by: &str,
) -> Result<()> {
    let minutes = window_minutes.unwrap_or(job.window_minutes);
    let o = job
        .run(chrono::Utc::now().timestamp_millis(), minutes, dry_run, by)
        .await?;
    eprint!("{}", shared::canary::render(&o.report));
    match &o.applied {
        Some(s) => eprintln!(
            "applied: {} {} (candidate {:?} at {}%), revision {}",
            s.strategy, s.served_version, s.candidate_version, s.percentage, s.revision
        ),
        None if dry_run => eprintln!("dry run: nothing changed"),
        None => eprintln!("nothing to change"),
    }
    out(serde_json::to_string_pretty(&serde_json::json!({
        "action": o.report.action,
        "dry_run": dry_run,
        "applied": o.applied.is_some(),
        "status": o.applied.as_ref().map(shared::http::rollout::status_json),
        "report": o.report,
    }))?);
    Ok(())
}
