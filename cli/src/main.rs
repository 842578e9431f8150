//! `movie-recs`: train, evaluate and inspect NeuMF models.
//!
//! Progress and summaries go to stderr; stdout carries only what scripts read
//! (the published version from `train`, JSON from `eval --json`).

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use shared::adapters::local::FolderRegistry;
use shared::artifact::{HyperParams, Loss, UserInput};
use shared::data::synthetic::SyntheticConfig;
use shared::ports::ModelStore;
use std::path::PathBuf;
use trainer::pipeline::{eval_version, train_and_publish, TrainOptions};

mod audit;
mod batch;
mod ingest;
mod profile;
mod simulate;

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
    /// Compare the re-ranking policies offline: accuracy on the data's test
    /// protocol next to the fairness of every user's top-10 list.
    Tradeoff(TradeoffArgs),
    /// Closed loop on a synthetic world with hidden tastes: serve, let users
    /// react, ingest, retrain, for R rounds per policy; then a promotion
    /// attack with and without the training mitigations.
    Simulate(Box<simulate::SimulateArgs>),
    /// Serve the HTTP API locally (trains a model on synthetic data first if none exists).
    Serve(ServeArgs),
    /// Inspect the model registry.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Read or change which version serves, in the store the environment
    /// configures (MOVIE_RECS_ROLLOUT_TABLE for DynamoDB, else MOVIE_RECS_DB).
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
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

#[derive(Subcommand)]
enum RolloutCommand {
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
    Set {
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
    },
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

#[derive(Args)]
struct TrainArgs {
    /// Data folder (format detected from its files: MovieLens, NCF, LCFN,
    /// JSONL, an ingest lake folder), an S3 lake (s3://bucket/prefix), or `synthetic`.
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// Registry to publish into: a folder, or s3://bucket/prefix.
    #[arg(long)]
    registry: String,
    /// Version name (default: v<UTC timestamp>). Versions are immutable.
    #[arg(long)]
    version: Option<String>,
    // Every hyper-parameter flag below overrides the default the data
    // chooses (trainer::defaults: the best measured configuration for the
    // data's test protocol and size; the manifest records the choice).
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long, default_value_t = HyperParams::default().seed)]
    seed: u64,
    /// Predictive factors of the GMF tower (default: 32, or 64/256 for full-ranking data).
    #[arg(long)]
    factors: Option<usize>,
    /// MLP widths, comma-separated; the first is the concatenated embedding width [default: 64,32,16].
    #[arg(long, value_delimiter = ',')]
    layers: Option<Vec<usize>>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Training objective: `bce` (each positive and --negatives sampled items,
    /// --batch-size samples), `softmax` (each user's movies against the whole
    /// catalogue, --batch-size users) or `squared` (every movie's score
    /// regressed to watched 1 / unwatched 0, --batch-size users) [default: squared].
    #[arg(long)]
    loss: Option<Loss>,
    /// With --loss softmax or squared: a user's movie counts 0.5^(k/N), k = how many of
    /// their movies came later (0: every movie counts 1).
    #[arg(long)]
    recency_half_life: Option<f64>,
    /// What the user embedding layer reads: `id` (one free row per user),
    /// `history` (the user's weighted movies, one row per movie; served by
    /// fold-in, so new events and new users count at once) or `id+history`
    /// (their sum, served as per-user rows); the last two need --loss softmax
    /// or squared [default: history].
    #[arg(long)]
    user_input: Option<UserInput>,
    /// With a history input: a movie in the user's input counts
    /// 0.5^(k/N), k = how many of their movies came later (0: all count 1).
    #[arg(long)]
    history_half_life: Option<f64>,
    /// With a history input: share of a user's input movies dropped at
    /// random in each training step (denoising; 0 to below 1).
    #[arg(long)]
    input_dropout: Option<f64>,
    /// With --input-dropout: the loss counts only the movies dropped from the
    /// input (predict what the input lacks, not the input itself).
    #[arg(long, conflicts_with = "no_dropped_targets")]
    dropped_targets: bool,
    /// Score the whole input too (the opposite of --dropped-targets).
    #[arg(long)]
    no_dropped_targets: bool,
    /// With --loss squared: a watched movie's error counts 1 + α times an
    /// unwatched one's (WMF's confidence weight α).
    #[arg(long)]
    positive_weight: Option<f64>,
    /// Sampled negatives per positive (redrawn every epoch; --loss bce).
    #[arg(long)]
    negatives: Option<usize>,
    /// L2 penalty on the embeddings of each batch.
    #[arg(long)]
    l2: Option<f64>,
    /// Stop after this many epochs without better validation HR@10 (0: never).
    #[arg(long)]
    patience: Option<usize>,
    /// Keep the selection run's weights instead of refitting on all training data.
    #[arg(long, conflicts_with = "refit")]
    no_refit: bool,
    /// Refit on all training data for the chosen epoch count.
    #[arg(long)]
    refit: bool,
    /// Mitigation: draw negatives ∝ (popularity + 1)^β (0: uniform; 0.75 is
    /// word2vec's choice). Recorded in the manifest.
    #[arg(long, default_value_t = 0.0)]
    popularity_negatives: f64,
    /// Mitigation: accounts younger than N days (first interaction before
    /// the data's last) count at --young-account-weight (0: off). Recorded.
    #[arg(long, default_value_t = 0)]
    young_account_days: u32,
    /// Weight of young accounts' interactions (0 to 1).
    #[arg(long, default_value_t = 0.2)]
    young_account_weight: f64,
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
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Data folder: registry/ (models) and movie-recs.db (traces, history, rollout).
    #[arg(long, default_value = ".movie-recs")]
    data_dir: PathBuf,
    /// Days to keep traces.
    #[arg(long, default_value_t = 30)]
    trace_ttl_days: i64,
    /// Seconds between checks for a new served version.
    #[arg(long, default_value_t = 5)]
    reload_secs: u64,
    /// Minutes between runs of the automated canary (promote, roll back or
    /// ramp a running canary or A/B test, as the scheduled canary function
    /// does in AWS); 0 turns it off.
    #[arg(long, default_value_t = 60)]
    canary_every_minutes: u64,
    /// Minutes between audits of the last that many minutes (fairness and
    /// spam metrics, the report, and the exposure controller's next
    /// adjustments, as the scheduled audit function does in AWS); 0 turns
    /// it off.
    #[arg(long, default_value_t = 60)]
    audit_every_minutes: u64,
    /// Requests per minute one client address may send (429 with
    /// Retry-After beyond it); 0: no limit.
    #[arg(long, env = "MOVIE_RECS_CLIENT_RATE_LIMIT", default_value_t = 0)]
    client_rate_limit: u32,
    /// Connections open at once; more are closed as they are accepted.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a connection has to send a request's headers.
    #[arg(long, default_value_t = 10)]
    header_timeout_secs: u64,
    /// Seconds a request (its body included) has to finish (else 408).
    #[arg(long, default_value_t = 30)]
    request_timeout_secs: u64,
    /// Write a CPU flamegraph of the whole run here on shutdown (builds
    /// with `--features profiling` only; sampled with SIGPROF, no perf needed).
    #[arg(long, hide = true)]
    profile_svg: Option<PathBuf>,
    /// Shape of the synthetic data trained on when the registry is empty.
    #[command(flatten)]
    synthetic: SyntheticArgs,
}

#[derive(Args)]
struct TradeoffArgs {
    /// Model as <REGISTRY>/<VERSION>, trained on --data.
    #[arg(long)]
    model: String,
    /// Data folder whose test protocol to run.
    #[arg(long)]
    data: String,
    /// movies.dat or u.item with the genres of the data's movies (for data
    /// without them, such as the NCF files).
    #[arg(long)]
    genres: Option<PathBuf>,
    /// Added to the data's movie id to find it in --genres (1 for
    /// ml-100k-ncf, whose item k is MovieLens movie k + 1).
    #[arg(long, default_value_t = 0)]
    genre_id_offset: u64,
    /// Policies to compare (name[:key=value]), comma-separated by `;`.
    #[arg(long, value_delimiter = ';')]
    policies: Vec<String>,
    /// Markdown file to write the table into (its own section, replaced on re-runs).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Title of the table (and key of its section in --out).
    #[arg(long, default_value = "trade-off")]
    title: String,
    /// SVG file for the chart of accuracy against gini_exposed, every policy.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Print JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    synthetic: SyntheticArgs,
}

#[derive(Args)]
struct EvalArgs {
    /// Model as <REGISTRY>/<VERSION> (REGISTRY a folder or s3://bucket/prefix).
    #[arg(long, required_unless_present = "fold_in_users")]
    model: Option<String>,
    /// Data folder whose test protocol to run, or `synthetic`.
    #[arg(long)]
    data: String,
    /// The new-users protocol instead of evaluating --model: leave this share
    /// of the users with test data out of training, serve them by fold-in
    /// from their training movies, and compare their test metrics with the
    /// same users' from a model trained on them (trains both with the
    /// data-chosen defaults; a history-input model).
    #[arg(long, conflicts_with = "model")]
    fold_in_users: Option<f64>,
    /// With --model: the quality of the version's `/similar` neighbour lists
    /// (genre agreement, next-watch hit rate) next to item co-occurrence.
    #[arg(long, requires = "model")]
    similar: bool,
    /// Seed of the training runs (--fold-in-users).
    #[arg(long, default_value_t = HyperParams::default().seed)]
    seed: u64,
    /// No progress bars (--fold-in-users).
    #[arg(long, short)]
    quiet: bool,
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
    /// Synthetic data: weight of personal taste in each user's choices.
    #[arg(long, default_value_t = SyntheticConfig::default().taste_beta, value_parser = weight_0_to_20)]
    synthetic_taste_beta: f64,
    /// Synthetic data: exponent on a movie's popularity in each user's choices.
    #[arg(long, default_value_t = SyntheticConfig::default().popularity_alpha, value_parser = weight_0_to_20)]
    synthetic_popularity_alpha: f64,
}

/// A finite weight in [0, 20] (the choice model's exp() stays finite in f32).
fn weight_0_to_20(s: &str) -> Result<f64> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=20.0).contains(&x) => Ok(x),
        _ => bail!("expected a number from 0 to 20, got {s:?}"),
    }
}

impl SyntheticArgs {
    fn config(&self) -> SyntheticConfig {
        SyntheticConfig {
            users: self.synthetic_users,
            items: self.synthetic_items,
            seed: self.synthetic_seed,
            taste_beta: self.synthetic_taste_beta,
            popularity_alpha: self.synthetic_popularity_alpha,
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
        let (bucket, prefix) = aws::parse_s3_url(spec).map_err(anyhow::Error::msg)?;
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

fn train(a: TrainArgs) -> Result<()> {
    let reg = registry(&a.registry)?;
    let ds = load_data(&a.data, &a.synthetic.config())?;
    eprintln!(
        "data: {} ({:?}) — {} users, {} movies, {} interactions, snapshot {}",
        ds.source,
        ds.format,
        ds.n_users(),
        ds.n_items(),
        ds.train.len(),
        &ds.snapshot_id[..12]
    );
    let chosen = trainer::defaults::for_data(&ds);
    let (hp, overridden) = train_overrides(chosen.hp, &a);
    eprintln!(
        "defaults: {} preset ({}){}",
        chosen.preset,
        chosen.reason,
        if overridden.is_empty() {
            String::new()
        } else {
            format!("; overridden: {}", overridden.join(" "))
        }
    );
    let defaults = Some(shared::artifact::DefaultsChoice {
        preset: chosen.preset.into(),
        reason: chosen.reason,
        overridden,
    });
    let progress = !a.quiet;
    let outcome = train_and_publish(
        reg.as_ref(),
        &ds,
        &TrainOptions {
            hp,
            version: a.version,
            force: a.force,
            progress,
            defaults,
        },
    )?;
    let m = &outcome.manifest;
    let v = &m.metrics.validation;
    eprintln!(
        "best epoch {} of {}: validation HR@10 {:.4} NDCG@10 {:.4} (popularity {:.4} / {:.4}); {:.1} s/epoch",
        v.best_epoch, v.epochs_run, v.hr10, v.ndcg10, v.popularity.hr10, v.popularity.ndcg10, m.metrics.seconds_per_epoch
    );
    eprintln!("test: {}", outcome.test.to_json());
    if m.quality_gate.forced {
        eprintln!("warning: published with --force although the quality gate failed");
    }
    eprintln!("published {} to {}", m.version, a.registry);
    out(&m.version);
    Ok(())
}

/// The chosen defaults with every flag given on the command line applied,
/// and the flags that were.
fn train_overrides(mut hp: HyperParams, a: &TrainArgs) -> (HyperParams, Vec<String>) {
    let mut given = Vec::new();
    // Another objective than the preset's starts from that objective's own
    // defaults (the preset's step sizes and epochs are the squared loss's).
    if a.loss.is_some_and(|l| l != hp.loss) {
        hp = HyperParams::default();
    }
    macro_rules! set {
        ($($field:ident <- $arg:ident),* $(,)?) => {$(
            if let Some(v) = &a.$arg {
                hp.$field = v.clone();
                given.push(format!("--{}", stringify!($arg).replace('_', "-")));
            }
        )*};
    }
    set!(
        epochs <- epochs, factors <- factors, layers <- layers, learning_rate <- lr,
        batch_size <- batch_size, loss <- loss, recency_half_life <- recency_half_life,
        user_input <- user_input, history_half_life <- history_half_life,
        input_dropout <- input_dropout, positive_weight <- positive_weight,
        negatives <- negatives, l2 <- l2, patience <- patience,
    );
    if a.dropped_targets {
        hp.dropped_targets = true;
        given.push("--dropped-targets".into());
    }
    if a.no_dropped_targets {
        hp.dropped_targets = false;
        given.push("--no-dropped-targets".into());
    }
    for (on, flag, value) in [
        (a.refit, "--refit", true),
        (a.no_refit, "--no-refit", false),
    ] {
        if on {
            hp.refit = value;
            given.push(flag.into());
        }
    }
    // Options that only mean something with a history input, a whole-catalogue
    // loss or input dropout follow a flag that turns those off.
    if hp.user_input == UserInput::Id {
        if a.history_half_life.is_none() {
            hp.history_half_life = 0.0;
        }
        if a.input_dropout.is_none() {
            hp.input_dropout = 0.0;
        }
    }
    if hp.input_dropout == 0.0 && !a.dropped_targets {
        hp.dropped_targets = false;
    }
    if !hp.loss.whole_catalogue() {
        if a.recency_half_life.is_none() {
            hp.recency_half_life = 0.0;
        }
        if a.positive_weight.is_none() {
            hp.positive_weight = 0.0;
        }
    }
    hp.seed = a.seed;
    hp.popularity_negatives = a.popularity_negatives;
    hp.young_account_days = a.young_account_days;
    hp.young_account_weight = if a.young_account_days > 0 {
        a.young_account_weight
    } else {
        1.0
    };
    (hp, given)
}

/// A dataset from a `--data` argument; `s3://bucket/prefix` is an ingest lake in S3.
fn load_data(spec: &str, synthetic: &SyntheticConfig) -> Result<shared::domain::Dataset> {
    if spec.starts_with("s3://") {
        use shared::adapters::aws;
        let (bucket, prefix) = aws::parse_s3_url(spec).map_err(anyhow::Error::msg)?;
        let cfg = aws::block_on(aws::load_sdk_config(None));
        let lake = aws::s3::S3Lake::new(aws::s3_client(&cfg), &bucket, &prefix);
        let source = spec.to_string();
        return aws::block_on(async move { shared::ingest::lake::dataset(&lake, source).await })
            .with_context(|| format!("loading --data {spec}"));
    }
    shared::data::load(spec, synthetic).with_context(|| format!("loading --data {spec}"))
}

fn eval(a: EvalArgs) -> Result<()> {
    let ds = shared::data::load(&a.data, &a.synthetic.config())
        .with_context(|| format!("loading --data {}", a.data))?;
    let json = match (&a.model, a.fold_in_users) {
        (_, Some(fraction)) => {
            let chosen = trainer::defaults::for_data(&ds);
            let hp = HyperParams {
                seed: a.seed,
                ..chosen.hp
            };
            eprintln!(
                "new-users protocol: {:.0}% of the tested users left out; defaults: {} preset ({})",
                fraction * 100.0,
                chosen.preset,
                chosen.reason
            );
            let r = trainer::fold_in::new_users(&ds, &hp, fraction, a.seed, !a.quiet)?;
            serde_json::to_value(r)?
        }
        (Some(model), None) if a.similar => {
            let (reg, version) = split_model(model)?;
            trainer::similar::report(reg.as_ref(), &version, &ds)?
        }
        (Some(model), None) => {
            let (reg, version) = split_model(model)?;
            eval_version(reg.as_ref(), &version, &ds)?.to_json()
        }
        (None, None) => bail!("give --model REGISTRY/VERSION or --fold-in-users FRACTION"),
    };
    if a.json {
        out(json);
    } else {
        out(serde_json::to_string_pretty(&json)?);
    }
    Ok(())
}

fn tradeoff(a: TradeoffArgs) -> Result<()> {
    use shared::domain::rerank::Policy;
    let (reg, version) = split_model(&a.model)?;
    let mut ds = shared::data::load(&a.data, &a.synthetic.config())
        .with_context(|| format!("loading --data {}", a.data))?;
    if let Some(g) = &a.genres {
        let meta = shared::data::read_item_meta(g)?;
        let mut found = 0;
        for it in &mut ds.items {
            if let Some(m) = meta.get(&(it.movie_id + a.genre_id_offset)) {
                it.genres = m.genres.clone();
                it.title = m.title.clone();
                found += 1;
            }
        }
        eprintln!(
            "genres for {found} of {} movies from {}",
            ds.items.len(),
            g.display()
        );
    }
    let policies = if a.policies.is_empty() {
        trainer::tradeoff::default_policies()
    } else {
        a.policies
            .iter()
            .map(|p| Policy::from_spec(p, 10).map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?
    };
    let art = reg.fetch(&version)?;
    let m = &art.manifest;
    if m.users != ds.user_ids || m.items.len() != ds.n_items() {
        bail!(
            "{} was not trained on --data {} (users or items differ)",
            a.model,
            a.data
        );
    }
    let model = shared::scoring::OnnxModel::load_artifact(&art)?;
    let t = trainer::tradeoff::compare(&model, &ds, &policies, true)
        .map_err(|e| anyhow::anyhow!("scoring: {e}"))?;
    let md = t.markdown(&a.title);
    if let Some(out) = &a.out {
        let doc = std::fs::read_to_string(out).unwrap_or_default();
        let key = a
            .title
            .to_ascii_lowercase()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        std::fs::write(out, trainer::tradeoff::splice(&doc, &key, &md))
            .with_context(|| format!("writing --out {}", out.display()))?;
        eprintln!("wrote {} ({})", out.display(), a.title);
    }
    if let Some(chart) = &a.chart {
        let max_gini = shared::audit::Thresholds::default().max_gini_exposed;
        std::fs::write(chart, t.pareto_svg(&a.title, max_gini))
            .with_context(|| format!("writing --chart {}", chart.display()))?;
        eprintln!("wrote {}", chart.display());
    }
    if a.json {
        out(serde_json::to_string(&t)?);
    } else {
        out(md);
    }
    Ok(())
}

/// The settings of `movie-recs serve`: every store in `--data-dir` (the
/// environment's store variables are ignored, so a shell set up for the AWS
/// CLI commands never points the local server at AWS), everything else from
/// the environment, `--trace-ttl-days` and `--reload-secs` from the flags.
fn serve_settings(a: &ServeArgs) -> Result<shared::config::Settings> {
    use shared::config::{vars, Kind};
    let d = |p: &str| a.data_dir.join(p).display().to_string();
    let local: std::collections::HashMap<&str, String> = [
        ("MOVIE_RECS_REGISTRY", d("registry")),
        ("MOVIE_RECS_DB", d("movie-recs.db")),
        ("MOVIE_RECS_LAKE", d("lake")),
        ("MOVIE_RECS_METRICS", d("metrics.jsonl")),
        ("MOVIE_RECS_REPORTS", d("reports")),
        ("MOVIE_RECS_EXPOSURE", d("exposure")),
        ("MOVIE_RECS_BATCH", d("batch")),
        ("MOVIE_RECS_TRACE_TTL_DAYS", a.trace_ttl_days.to_string()),
        ("MOVIE_RECS_RELOAD_SECS", a.reload_secs.max(1).to_string()),
    ]
    .into_iter()
    .collect();
    let from_data_dir = |k: &str| {
        local.contains_key(k) || vars::var(k).is_some_and(|v| matches!(v.kind, Kind::Store(_)))
    };
    Ok(shared::config::Settings::from_lookup(
        |k| match from_data_dir(k) {
            true => local.get(k).cloned(),
            false if k.starts_with("AWS_LAMBDA_") => None,
            false => std::env::var(k).ok(),
        },
    )?)
}

/// Ctrl-C or SIGTERM (what `kill` and container runtimes send).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    eprintln!("shutting down: finishing requests in flight");
}

fn serve(a: ServeArgs) -> Result<()> {
    use shared::config::Role;
    use shared::http::serving::spawn_reload_loop;
    use shared::http::{sync_model, AppState};
    use shared::wiring::Stores;
    use std::sync::Arc;

    // Log lines go through a buffer written by a thread of their own: a
    // request never waits on stderr (when the buffer is full, lines are
    // dropped and counted by tracing-appender, never the request blocked).
    let (log_writer, _log_guard) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .json()
        .with_writer(log_writer)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("creating --data-dir {}", a.data_dir.display()))?;
    let settings = serve_settings(&a)?;
    let profiler = profile::start(a.profile_svg.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let stores = Stores::build(Role::Serve, &settings).await?;
        let reg = stores.registry()?;
        if reg.list_versions()?.is_empty() {
            eprintln!(
                "no model in {}: training one on the built-in synthetic data first",
                settings.registry
            );
            let ds = shared::data::load("synthetic", &a.synthetic.config())?;
            let reg2 = reg.clone();
            let out = tokio::task::spawn_blocking(move || {
                let chosen = trainer::defaults::for_data(&ds);
                train_and_publish(
                    reg2.as_ref(),
                    &ds,
                    &TrainOptions {
                        hp: chosen.hp,
                        version: None,
                        force: false,
                        progress: true,
                        defaults: Some(shared::artifact::DefaultsChoice {
                            preset: chosen.preset.into(),
                            reason: chosen.reason,
                            overridden: Vec::new(),
                        }),
                    },
                )
            })
            .await??;
            eprintln!("published {}", out.manifest.version);
        }
        // Beyond loopback anyone may connect: the admin token is required,
        // and posting events needs it too.
        let addr: std::net::SocketAddr = a
            .addr
            .parse()
            .with_context(|| format!("--addr {}: expected IP:PORT", a.addr))?;
        let exposed = !addr.ip().is_loopback();
        if exposed && settings.admin_token.is_none() {
            bail!(
                "refusing to listen on {addr} (beyond loopback) without MOVIE_RECS_ADMIN_TOKEN: \
                 anyone who can reach it could post events and read traces; set the token, or use --addr 127.0.0.1:PORT"
            );
        }
        let api = shared::http::ApiConfig {
            events_need_admin: exposed,
            ..settings.api_config()
        };
        let state = Arc::new(
            AppState::from_stores(&stores, api)
                .with_registry(reg.clone())
                .with_experiments(stores.experiment_job(&settings)?)
                .with_ingestor(Arc::new(stores.ingestor(&settings)?))
                .with_trace_writer(shared::http::trace_writer::DEFAULT_CAPACITY),
        );
        match sync_model(&state, reg.clone()).await {
            Ok(shared::http::SyncOutcome::Loaded(v)) => eprintln!("serving model {v}"),
            Ok(other) => eprintln!("no model loaded: {other:?}"),
            Err(e) => eprintln!("error: no model loaded: {e}"),
        }
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {}", a.addr))?;
        let addr = listener.local_addr()?;
        eprintln!("listening on http://{addr}");
        eprintln!("  curl -s http://{addr}/recommend/1?k=5");
        eprintln!("  curl -s http://{addr}/healthz");
        eprintln!("  curl -s http://{addr}/metrics");
        eprintln!("  curl -s http://{addr}/trace/<X-Request-ID of a response>");
        eprintln!("  curl -s http://{addr}/rollout/status");
        eprintln!("  curl -s -XPOST http://{addr}/events -H 'Content-Type: application/json' -d '[{{\"type\":\"watch\",\"user_id\":1,\"movie_id\":2,\"ts\":'$(date +%s000)'}}]'");
        if state.config.admin_token.is_none() {
            eprintln!("  (admin routes POST /switch, POST /rollout, POST /experiment/promote: set MOVIE_RECS_ADMIN_TOKEN to enable)");
        }
        spawn_reload_loop(state.clone(), reg.clone(), std::time::Duration::from_secs(settings.reload_secs));
        if let (Some(job), every) = (state.experiments.clone(), a.canary_every_minutes) {
            if every > 0 {
                eprintln!("  automated canary every {every} min: curl -s http://{addr}/experiment/analyze");
                every_minutes(every, state.clone(), reg.clone(), move |now| {
                    let job = job.clone();
                    async move {
                        match job.run(now, job.window_minutes, false, "canary-automation").await {
                            Ok(o) if o.report.alarm => tracing::warn!(target: "canary", action = o.report.action.as_str(),
                                rationale = %o.report.rationale, applied = o.applied.is_some(), "ALARM: canary rolled back"),
                            Ok(o) => tracing::info!(target: "canary", action = o.report.action.as_str(),
                                rationale = %o.report.rationale, applied = o.applied.is_some(), "canary run"),
                            Err(e) => tracing::warn!(target: "canary", error = %e, "canary run failed"),
                        }
                    }
                });
            }
        }
        if a.audit_every_minutes > 0 {
            let every = a.audit_every_minutes;
            eprintln!("  audit (and exposure controller) every {every} min: reports in {}", settings.reports);
            let job = Arc::new(stores.audit_job(&settings)?);
            every_minutes(every, state.clone(), reg.clone(), move |now| {
                let job = job.clone();
                async move {
                    match job.run(now - every as i64 * 60_000, now, now).await {
                        Ok(o) => tracing::info!(target: "audit", passed = o.report.passed,
                            adjustments = ?o.control.as_ref().and_then(|c| c.name()), "audit run"),
                        Err(e) => tracing::warn!(target: "audit", error = %e, "audit run failed"),
                    }
                }
            });
        }
        if a.client_rate_limit > 0 {
            eprintln!("  at most {} requests per minute per client address", a.client_rate_limit);
        }
        let opts = shared::http::server::ServerOptions {
            header_timeout: std::time::Duration::from_secs(a.header_timeout_secs.max(1)),
            request_timeout: std::time::Duration::from_secs(a.request_timeout_secs.max(1)),
            max_connections: a.max_connections.max(1),
            client_rate_limit: a.client_rate_limit,
            ..Default::default()
        };
        shared::http::server::serve(listener, state.clone(), opts, shutdown_signal()).await?;
        // Every response is answered: write the traces still queued.
        if let Some(w) = &state.trace_writer {
            w.close().await;
        }
        anyhow::Ok(())
    })?;
    profile::finish(profiler, a.profile_svg.as_deref())
}

/// Runs `job` (given the time, epoch ms) every `minutes` in the background,
/// the first time one period from now, then syncs what serves: what the job
/// changed (a rollout, adjustments) serves from the next request.
fn every_minutes<F, Fut>(
    minutes: u64,
    st: std::sync::Arc<shared::http::AppState>,
    reg: std::sync::Arc<dyn shared::ports::ModelStore>,
    mut job: F,
) where
    F: FnMut(i64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use shared::http::serving::log_sync;
    tokio::spawn(async move {
        let period = std::time::Duration::from_secs(minutes * 60);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tick.tick().await;
            job(chrono::Utc::now().timestamp_millis()).await;
            log_sync(shared::http::sync_model(&st, reg.clone()).await);
        }
    });
}

fn rollout(c: RolloutCommand) -> Result<()> {
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
                let reg = stores.registry()?;
                let v = version.clone();
                tokio::task::spawn_blocking(move || reg.fetch(&v))
                    .await?
                    .with_context(|| format!("version {version} in {}", settings.registry))?;
                let expected = rollout.state().await?.map_or(0, |s| s.revision);
                let s = rollout.switch(expected, &version, &by).await?;
                eprintln!("now serving {} (revision {})", s.served_version, s.revision);
                out(serde_json::to_string(&s)?);
            }
            RolloutCommand::Set {
                strategy,
                primary,
                candidate,
                percentage,
                by,
            } => {
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
                    let (reg, v2) = (stores.registry()?, v.clone());
                    tokio::task::spawn_blocking(move || reg.fetch(&v2))
                        .await?
                        .with_context(|| format!("version {v} in {}", settings.registry))?;
                }
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
            }
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
                let minutes = window_minutes.unwrap_or(job.window_minutes);
                let o = job
                    .run(chrono::Utc::now().timestamp_millis(), minutes, dry_run, &by)
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
            }
        }
        anyhow::Ok(())
    })
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
    })
    .map_err(anyhow::Error::msg)?;
    eprintln!("provisioned {names:?}");
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Serve(a) => serve(a),
        Command::Train(a) => train(a),
        Command::Eval(a) => eval(a),
        Command::Tradeoff(a) => tradeoff(a),
        Command::Simulate(a) => simulate::run(*a),
        Command::Rollout { command } => rollout(command),
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
