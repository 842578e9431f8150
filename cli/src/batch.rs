//! `movie-recs batch`: every asked user's list from one model version, on
//! all cores, into Parquet or JSON-lines shards (a folder or
//! `s3://bucket/prefix`) with a `manifest.json` of counts. Each list is the
//! one `GET /recommend` would answer: the same masking (training history
//! plus the user-history store), filter and policy.

use anyhow::{bail, Context, Result};
use clap::Args;
use shared::adapters::adjustments::AdjustmentObjects;
use shared::adapters::aws;
use shared::adapters::local::FolderLake;
use shared::batch::{self, BatchManifest, Format, ShardOutput};
use shared::domain::exposure_control::Adjustments;
use shared::domain::filter::Filter;
use shared::domain::rerank::{Policy, DEFAULT_POLICY};
use shared::ports::{AdjustmentStore, EventLake, UserHistory};
use shared::scoring::ServingModel;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct BatchArgs {
    /// Model as <REGISTRY>/<VERSION> (REGISTRY a folder or s3://bucket/prefix).
    #[arg(long)]
    model: String,
    /// A file of user ids (one per line; `#` comments and blank lines
    /// skipped), or `all`: every user the model was trained on.
    #[arg(long, default_value = "all")]
    users: String,
    #[arg(long, default_value_t = 20)]
    k: usize,
    /// Re-ranking policy as `name[:key=value,...]` (as MOVIE_RECS_POLICY);
    /// default: the service default.
    #[arg(long)]
    policy: Option<String>,
    /// Keep movies of any of these genres (comma list).
    #[arg(long)]
    genre: Option<String>,
    #[arg(long)]
    exclude_genre: Option<String>,
    #[arg(long)]
    year_from: Option<String>,
    #[arg(long)]
    year_to: Option<String>,
    /// Movie ids to leave out (comma list).
    #[arg(long)]
    exclude: Option<String>,
    /// Output folder or s3://bucket/prefix.
    #[arg(long)]
    out: String,
    #[arg(long, default_value = "parquet")]
    format: String,
    /// Users per output object.
    #[arg(long, default_value_t = batch::DEFAULT_SHARD_USERS)]
    shard_users: usize,
    /// Data folder whose user-history store (movie-recs.db) masks what users
    /// did since training; MOVIE_RECS_HISTORY_TABLE (DynamoDB) wins when set.
    #[arg(long, default_value = ".movie-recs")]
    data_dir: PathBuf,
    /// Scoring threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, short)]
    quiet: bool,
}

fn read_users(spec: &str, model: &ServingModel) -> Result<Vec<u64>> {
    if spec == "all" {
        return Ok(model.manifest.users.clone());
    }
    let text = std::fs::read_to_string(spec).with_context(|| format!("reading --users {spec}"))?;
    batch::parse_users(&text).map_err(|e| anyhow::anyhow!("--users {spec}, {e}"))
}

async fn history(a: &BatchArgs) -> Result<Option<Arc<dyn UserHistory>>> {
    let db = a.data_dir.join("movie-recs.db").display().to_string();
    let s = shared::config::Settings::from_lookup(|k| match k {
        "MOVIE_RECS_DB" => Some(db.clone()),
        _ if k.starts_with("AWS_LAMBDA_") => None,
        _ => std::env::var(k).ok(),
    })?;
    Ok(shared::wiring::history_reader(&s).await?)
}

/// The exposure controller's newest adjustments (for `--policy exposure`):
/// from MOVIE_RECS_EXPOSURE when set, else `<data-dir>/exposure`; `None`
/// before the first audit published any (the policy ranks as its base).
async fn adjustments(a: &BatchArgs) -> Result<Option<Adjustments>> {
    let url = std::env::var("MOVIE_RECS_EXPOSURE")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| a.data_dir.join("exposure").display().to_string());
    let store = AdjustmentObjects::new(output(&url).await?);
    match store.latest().await? {
        None => Ok(None),
        Some(p) => {
            Ok(Some(store.fetch(&p).await.with_context(|| {
                format!("reading the adjustments in {url}")
            })?))
        }
    }
}

async fn output(out: &str) -> Result<Arc<dyn EventLake>> {
    Ok(match out.starts_with("s3://") {
        true => {
            let (bucket, prefix) = aws::parse_s3_url(out)?;
            let cfg = aws::load_sdk_config(None).await;
            Arc::new(aws::s3::S3Lake::new(aws::s3_client(&cfg), &bucket, &prefix))
        }
        false => Arc::new(FolderLake::new(out)),
    })
}

/// The filter the flags name, as `GET /recommend` parses its query (an
/// error names the flag).
fn filter_of(a: &BatchArgs, model: &ServingModel) -> Result<Filter> {
    let q: HashMap<String, String> = [
        ("genre", &a.genre),
        ("exclude_genre", &a.exclude_genre),
        ("year_from", &a.year_from),
        ("year_to", &a.year_to),
        ("exclude", &a.exclude),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
    .collect();
    Filter::parse(&q, model.genres())
        .map_err(|e| anyhow::anyhow!("--{}", e.to_string().replacen('_', "-", 1)))
}

fn progress_bar(users: usize, quiet: bool) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(users as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} users {per_sec} eta {eta}")
            .expect("template"),
    );
    if quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

pub fn run(a: BatchArgs) -> Result<()> {
    let start = std::time::Instant::now();
    let format = Format::parse(&a.format).map_err(anyhow::Error::msg)?;
    if !(1..=shared::http::K_MAX).contains(&a.k) {
        bail!("--k must be from 1 to {}", shared::http::K_MAX);
    }
    let (reg, version) = crate::split_model(&a.model)?;
    let art = reg.fetch(&version)?;
    let model = ServingModel::load(&art)?;
    let policy = match &a.policy {
        Some(p) => Policy::from_spec(p, a.k).map_err(|e| anyhow::anyhow!("--policy: {e}"))?,
        None => DEFAULT_POLICY.for_k(a.k),
    };
    let filter = filter_of(&a, &model)?;
    let users = read_users(&a.users, &model)?;
    let rt = tokio::runtime::Runtime::new()?;
    let lake = rt.block_on(output(&a.out))?;
    let hist = rt.block_on(history(&a))?;
    let adjusted = match policy {
        Policy::Exposure { .. } => rt.block_on(adjustments(&a))?,
        _ => None,
    };
    let net = adjusted
        .as_ref()
        .map(|x| model.adjustment_vector(x))
        .unwrap_or_default();
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let bar = progress_bar(users.len(), a.quiet);
    let mut shards = Vec::new();
    let mut rows_total = 0;
    for (index, range) in batch::plan_shards(users.len(), a.shard_users)
        .into_iter()
        .enumerate()
    {
        let ids = &users[range];
        let with_seen = rt.block_on(batch::read_seen(hist.as_ref(), ids))?;
        let rows = batch::recommend_all(
            &model,
            &with_seen,
            a.k,
            policy,
            &filter,
            &net,
            threads,
            &|n| bar.inc(n as u64),
        )?;
        let bytes = match format {
            Format::Parquet => batch::to_parquet(&rows)?,
            Format::Jsonl => batch::to_jsonl(&rows),
        };
        let key = batch::shard_key("", index, format);
        let len = bytes.len();
        rt.block_on(lake.put_object(&key, bytes))?;
        rows_total += rows.len();
        shards.push(ShardOutput {
            key,
            rows: rows.len(),
            bytes: len,
        });
    }
    bar.finish_and_clear();
    let manifest = BatchManifest {
        model_version: model.version().to_string(),
        policy: policy.spec(),
        adjustments: adjusted.as_ref().map(|x| x.name()),
        k: a.k,
        filter: filter.to_json(),
        format,
        users: users.len(),
        rows: rows_total,
        shards,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        seconds: Some(start.elapsed().as_secs_f64()),
    };
    let json = serde_json::to_vec_pretty(&manifest)?;
    rt.block_on(lake.put_object("manifest.json", json))?;
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "{} users ranked in {seconds:.1} s ({:.0} users/s on {threads} threads) into {}",
        users.len(),
        users.len() as f64 / seconds.max(1e-9),
        a.out
    );
    crate::out(serde_json::to_string(&manifest)?);
    Ok(())
}
