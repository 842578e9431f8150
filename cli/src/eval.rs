//! `movie-recs eval` and `movie-recs tradeoff`: a published version on a
//! dataset's test protocol, and the re-ranking policies' accuracy against
//! their fairness.

use crate::train::SyntheticArgs;
use crate::{out, split_model};
use anyhow::{bail, Context, Result};
use clap::Args;
use shared::artifact::HyperParams;
use std::path::PathBuf;
use trainer::pipeline::eval_version;

#[derive(Args)]
pub(crate) struct EvalArgs {
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

#[derive(Args)]
pub(crate) struct TradeoffArgs {
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

pub(crate) fn eval(a: EvalArgs) -> Result<()> {
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

pub(crate) fn tradeoff(a: TradeoffArgs) -> Result<()> {
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
