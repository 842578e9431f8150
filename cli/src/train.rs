//! `movie-recs train`: the data-chosen defaults, the flags that override
//! them, and the data a run reads (a folder, an S3 lake, or synthetic).

use crate::{out, registry};
use anyhow::{bail, Context, Result};
use clap::Args;
use shared::artifact::{HyperParams, Loss, UserInput};
use shared::data::synthetic::SyntheticConfig;
use trainer::pipeline::{train_and_publish, TrainOptions};

#[derive(Args)]
pub(crate) struct TrainArgs {
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
    /// With the refit: continue the chosen weights for N epochs on all
    /// training data (0: retrain from scratch for the chosen epoch count).
    #[arg(long)]
    refit_epochs: Option<usize>,
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

/// Shape of the synthetic data (used when `--data synthetic`).
#[derive(Args)]
pub(crate) struct SyntheticArgs {
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
pub(crate) fn weight_0_to_20(s: &str) -> Result<f64> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=20.0).contains(&x) => Ok(x),
        _ => bail!("expected a number from 0 to 20, got {s:?}"),
    }
}

impl SyntheticArgs {
    pub(crate) fn config(&self) -> SyntheticConfig {
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

pub(crate) fn train(a: TrainArgs) -> Result<()> {
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
pub(crate) fn train_overrides(mut hp: HyperParams, a: &TrainArgs) -> (HyperParams, Vec<String>) {
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
        refit_epochs <- refit_epochs,
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
pub(crate) fn load_data(
    spec: &str,
    synthetic: &SyntheticConfig,
) -> Result<shared::domain::Dataset> {
    if spec.starts_with("s3://") {
        use shared::adapters::aws;
        let (bucket, prefix) = aws::parse_s3_url(spec)?;
        let cfg = aws::block_on(aws::load_sdk_config(None));
        let lake = aws::s3::S3Lake::new(aws::s3_client(&cfg), &bucket, &prefix);
        let source = spec.to_string();
        return aws::block_on(async move { shared::ingest::lake::dataset(&lake, source).await })
            .with_context(|| format!("loading --data {spec}"));
    }
    shared::data::load(spec, synthetic).with_context(|| format!("loading --data {spec}"))
}
