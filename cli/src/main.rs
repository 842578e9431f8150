//! `movie-recs`: train, evaluate and inspect NeuMF models.
//!
//! Progress and summaries go to stderr; stdout carries only what scripts read
//! (the published version from `train`, JSON from `eval --json`).

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use shared::adapters::local::FolderRegistry;
use shared::artifact::HyperParams;
use shared::data::synthetic::SyntheticConfig;
use shared::ports::ModelStore;
use std::path::{Path, PathBuf};
use trainer::pipeline::{eval_version, train_and_publish, TrainOptions};

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
    Train(TrainArgs),
    /// Evaluate a published model on a dataset's test protocol.
    Eval(EvalArgs),
    /// Inspect the model registry.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// Data folder (format detected from its files) or `synthetic`.
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// Registry folder to publish into.
    #[arg(long)]
    registry: String,
    /// Version name (default: v<UTC timestamp>). Versions are immutable.
    #[arg(long)]
    version: Option<String>,
    #[arg(long, default_value_t = HyperParams::default().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = HyperParams::default().seed)]
    seed: u64,
    /// Predictive factors of the GMF tower.
    #[arg(long, default_value_t = HyperParams::default().factors)]
    factors: usize,
    /// MLP widths, comma-separated; the first is the concatenated embedding width.
    #[arg(long, default_value = "64,32,16", value_delimiter = ',')]
    layers: Vec<usize>,
    #[arg(long, default_value_t = HyperParams::default().learning_rate)]
    lr: f64,
    #[arg(long, default_value_t = HyperParams::default().batch_size)]
    batch_size: usize,
    /// Sampled negatives per positive (redrawn every epoch).
    #[arg(long, default_value_t = HyperParams::default().negatives)]
    negatives: usize,
    /// L2 penalty on the embeddings of each batch.
    #[arg(long, default_value_t = HyperParams::default().l2)]
    l2: f64,
    /// Stop after this many epochs without better validation HR@10 (0: never).
    #[arg(long, default_value_t = HyperParams::default().patience)]
    patience: usize,
    /// Publish even if the model does not beat popularity on validation (recorded).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    synthetic: SyntheticArgs,
    /// No progress bar or per-epoch lines.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// Model as <REGISTRY>/<VERSION>.
    #[arg(long)]
    model: PathBuf,
    /// Data folder whose test protocol to run, or `synthetic`.
    #[arg(long)]
    data: String,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    synthetic: SyntheticArgs,
}

/// Shape of the synthetic data (used when `--data synthetic`).
#[derive(Args)]
struct SyntheticArgs {
    /// Synthetic data: number of users.
    #[arg(long, default_value_t = SyntheticConfig::default().users)]
    synthetic_users: usize,
    /// Synthetic data: number of movies.
    #[arg(long, default_value_t = SyntheticConfig::default().items)]
    synthetic_items: usize,
    /// Synthetic data: generator seed.
    #[arg(long, default_value_t = SyntheticConfig::default().seed)]
    synthetic_seed: u64,
}

impl SyntheticArgs {
    fn config(&self) -> SyntheticConfig {
        SyntheticConfig {
            users: self.synthetic_users,
            items: self.synthetic_items,
            seed: self.synthetic_seed,
            ..Default::default()
        }
    }
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

fn registry(spec: &str) -> Result<FolderRegistry> {
    if spec.starts_with("s3://") {
        bail!("S3 registries ({spec}) arrive with the AWS adapters; use a folder for now");
    }
    Ok(FolderRegistry::new(spec))
}

fn split_model(model: &Path) -> Result<(FolderRegistry, String)> {
    let version = model
        .file_name()
        .map(|v| v.to_string_lossy().into_owned())
        .with_context(|| format!("--model {}: expected <REGISTRY>/<VERSION>", model.display()))?;
    let root = model
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((FolderRegistry::new(root), version))
}

fn train(a: TrainArgs) -> Result<()> {
    let reg = registry(&a.registry)?;
    let ds = shared::data::load(&a.data, &a.synthetic.config())
        .with_context(|| format!("loading --data {}", a.data))?;
    eprintln!(
        "data: {} ({:?}) — {} users, {} movies, {} interactions, snapshot {}",
        ds.source,
        ds.format,
        ds.n_users(),
        ds.n_items(),
        ds.train.len(),
        &ds.snapshot_id[..12]
    );
    let hp = HyperParams {
        factors: a.factors,
        layers: a.layers,
        learning_rate: a.lr,
        epochs: a.epochs,
        batch_size: a.batch_size,
        negatives: a.negatives,
        l2: a.l2,
        patience: a.patience,
        seed: a.seed,
    };
    let progress = !a.quiet;
    let out = train_and_publish(
        &reg,
        &ds,
        &TrainOptions {
            hp,
            version: a.version,
            force: a.force,
            progress,
        },
    )?;
    let m = &out.manifest;
    let v = &m.metrics.validation;
    eprintln!(
        "best epoch {} of {}: validation HR@10 {:.4} NDCG@10 {:.4} (popularity {:.4} / {:.4}); {:.1} s/epoch",
        v.best_epoch, v.epochs_run, v.hr10, v.ndcg10, v.popularity.hr10, v.popularity.ndcg10, m.metrics.seconds_per_epoch
    );
    eprintln!("test: {}", out.test.to_json());
    if m.quality_gate.forced {
        eprintln!("warning: published with --force although the quality gate failed");
    }
    eprintln!("published {} to {}", m.version, reg.root().display());
    println!("{}", m.version);
    Ok(())
}

fn eval(a: EvalArgs) -> Result<()> {
    let (reg, version) = split_model(&a.model)?;
    let ds = shared::data::load(&a.data, &a.synthetic.config())
        .with_context(|| format!("loading --data {}", a.data))?;
    let report = eval_version(&reg, &version, &ds)?;
    let json = report.to_json();
    if a.json {
        println!("{json}");
    } else {
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Train(a) => train(a),
        Command::Eval(a) => eval(a),
        Command::Registry { command } => match command {
            RegistryCommand::List { registry: r } => {
                let reg = registry(&r)?;
                for v in reg.list_versions()? {
                    let m = reg.read_manifest(&v)?;
                    println!(
                        "{v}\t{}\t{}\tval_hr@10={:.4}",
                        m.created_at, m.data.format, m.metrics.validation.hr10
                    );
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
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            }
            RegistryCommand::Verify {
                registry: r,
                version,
            } => {
                let art = registry(&r)?.fetch(&version)?;
                println!("{version}: {} files verified", art.manifest.files.len());
                Ok(())
            }
        },
    }
}
