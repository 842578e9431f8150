//! `movie-recs`: train, evaluate and inspect NeuMF models.
//!
//! Progress and summaries go to stderr; stdout carries only what scripts read
//! (the published version from `train`, JSON from `eval --json`).

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use shared::adapters::local::FolderRegistry;
use shared::ports::ModelStore;

mod audit;
mod batch;
mod eval;
mod ingest;
mod profile;
mod rollout;
mod serve;
mod simulate;
mod train;

/// candle allocates and frees large gradient and optimiser buffers every step;
/// with glibc malloc each one is an mmap/munmap pair (measured: sys time 1.8x user
/// time, 10.5 s/epoch). mimalloc keeps them in its pools: 3.9 s/epoch.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "movie-recs",
    version,
    about = "Movie recommendations with Neural Collaborative Filtering"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train NeuMF, evaluate it, and publish it to the registry (prints the version last).
    Train(train::TrainArgs),
    /// Evaluate a published model on a dataset's test protocol.
    Eval(eval::EvalArgs),
    /// Compare the re-ranking policies offline: accuracy on the data's test
    /// protocol next to the fairness of every user's top-10 list.
    Tradeoff(eval::TradeoffArgs),
    /// Closed loop on a synthetic world with hidden tastes: serve, let users
    /// react, ingest, retrain, for R rounds per policy; then a promotion
    /// attack with and without the training mitigations.
    Simulate(Box<simulate::SimulateArgs>),
    /// Serve the HTTP API locally (trains a model on synthetic data first if none exists).
    Serve(serve::ServeArgs),
    /// Inspect the model registry.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Read or change which version serves, in the store the environment
    /// configures (MOVIE_RECS_ROLLOUT_TABLE for DynamoDB, else MOVIE_RECS_DB).
    Rollout {
        #[command(subcommand)]
        command: rollout::RolloutCommand,
    },
    /// Run the ingest pipeline on a file of events into the local data folder.
    Ingest(ingest::IngestArgs),
    /// Fairness, feedback-loop and rating-spam audit of recommendation and
    /// rating files, or of the local data folder's last window.
    Audit(Box<audit::AuditArgs>),
    /// Recommendations for many users at once (all cores), as /recommend
    /// ranks them, into Parquet or JSON-lines shards with a manifest.
    Batch(Box<batch::BatchArgs>),
    /// Create the bucket and tables template.yaml declares on an AWS emulator
    /// (AWS_ENDPOINT_URL), for local trials of the AWS adapters.
    Provision(ProvisionArgs),
}

#[derive(Args)]
struct ProvisionArgs {
    #[arg(long, default_value = "movie-recs-local")]
    bucket: String,
    #[arg(long, default_value = "movie-recs-traces")]
    traces_table: String,
    #[arg(long, default_value = "movie-recs-rollout")]
    rollout_table: String,
    #[arg(long, default_value = "movie-recs-history")]
    history_table: String,
    #[arg(long, default_value = "movie-recs-ingest")]
    ingest_table: String,
    #[arg(long, default_value = "movie-recs-trending")]
    trending_table: String,
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// List versions, oldest first.
    List {
        #[arg(long)]
        registry: String,
    },
    /// Print a version's manifest.
    Show {
        #[arg(long)]
        registry: String,
        version: String,
    },
    /// Verify every checksum of a version.
    Verify {
        #[arg(long)]
        registry: String,
        version: String,
    },
}

/// Prints a line on stdout; a closed pipe (`movie-recs … | head`) ends the
/// process quietly instead of panicking.
pub(crate) fn out(line: impl std::fmt::Display) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// A registry from a folder path or an `s3://bucket/prefix` URL (credentials,
/// region and AWS_ENDPOINT_URL from the environment, as the SDK reads them).
fn registry(spec: &str) -> Result<Box<dyn ModelStore>> {
    if spec.starts_with("s3://") {
        use shared::adapters::aws;
        let (bucket, prefix) = aws::parse_s3_url(spec)?;
        let cfg = aws::block_on(aws::load_sdk_config(None));
        let cache = std::env::var("MOVIE_RECS_MODEL_CACHE")
            .unwrap_or_else(|_| "/tmp/movie-recs-models".into());
        return Ok(Box::new(aws::s3::S3Registry::new(
            aws::s3_client(&cfg),
            &bucket,
            &prefix,
            cache,
        )));
    }
    Ok(Box::new(FolderRegistry::new(spec)))
}

pub(crate) fn split_model(model: &str) -> Result<(Box<dyn ModelStore>, String)> {
    let trimmed = model.trim_end_matches('/');
    let (root, version) = match trimmed.rsplit_once('/') {
        Some((r, v)) if !r.is_empty() && !r.ends_with(':') && !v.is_empty() => (r, v),
        None if !trimmed.is_empty() => (".", trimmed),
        _ => bail!("--model {model}: expected <REGISTRY>/<VERSION>"),
    };
    Ok((registry(root)?, version.to_string()))
}

fn provision(a: ProvisionArgs) -> Result<()> {
    use shared::adapters::aws;
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        bail!("provision is for emulators: set AWS_ENDPOINT_URL (in AWS, `sam deploy` creates these resources)");
    }
    let names = aws::provision::Names {
        bucket: a.bucket,
        traces_table: a.traces_table,
        rollout_table: a.rollout_table,
        history_table: a.history_table,
        ingest_table: a.ingest_table,
        trending_table: a.trending_table,
    };
    let n = names.clone();
    aws::block_on(async move {
        let cfg = aws::load_sdk_config(None).await;
        aws::provision::provision(&cfg, &n).await
    })?;
    eprintln!("provisioned {names:?}");
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Serve(a) => serve::serve(a),
        Command::Train(a) => train::train(a),
        Command::Eval(a) => eval::eval(a),
        Command::Tradeoff(a) => eval::tradeoff(a),
        Command::Simulate(a) => simulate::run(*a),
        Command::Rollout { command } => rollout::rollout(command),
        Command::Provision(a) => provision(a),
        Command::Batch(a) => batch::run(*a),
        Command::Ingest(a) => ingest::run(a),
        Command::Audit(a) => audit::run(*a),
        Command::Registry { command } => match command {
            RegistryCommand::List { registry: r } => {
                let reg = registry(&r)?;
                for v in reg.list_versions()? {
                    let m = reg.read_manifest(&v)?;
                    out(format!(
                        "{v}\t{}\t{}\tval_hr@10={:.4}",
                        m.created_at, m.data.format, m.metrics.validation.hr10
                    ));
                }
                Ok(())
            }
            RegistryCommand::Show {
                registry: r,
                version,
            } => {
                let m = registry(&r)?.read_manifest(&version)?;
                let mut v = serde_json::to_value(&m)?;
                // Id maps and the catalogue are long; summarise them.
                v["users"] = serde_json::json!(format!("{} ids", m.users.len()));
                v["items"] = serde_json::json!(format!("{} movies", m.items.len()));
                out(serde_json::to_string_pretty(&v)?);
                Ok(())
            }
            RegistryCommand::Verify {
                registry: r,
                version,
            } => {
                let art = registry(&r)?.fetch(&version)?;
                out(format!(
                    "{version}: {} files verified",
                    art.manifest.files.len()
                ));
                Ok(())
            }
        },
    }
}
