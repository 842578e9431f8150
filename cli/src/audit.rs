//! `movie-recs audit`: the audit's code on JSONL files (`--recommendations`,
//! `--ratings`), or, with neither, on the local data dir's traces and lake
//! (the same job the audit Lambda function runs).

use anyhow::{bail, Context, Result};
use clap::Args;
use shared::audit::control::ControlStep;
use shared::audit::exposure::Catalog;
use shared::audit::files::{self, Parsed};
use shared::audit::job::AuditJob;
use shared::audit::spam::SpamConfig;
use shared::audit::{audit, report, AuditConfig, AuditInput, AuditReport, Thresholds};
use shared::config::{Role, Settings};
use shared::wiring::Stores;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct AuditArgs {
    /// Recommendation lists, one JSON object per line: reco_response events
    /// ({"user_id","movie_ids","model_version","variant","ts"}) or stored traces.
    #[arg(long)]
    recommendations: Option<PathBuf>,
    /// Rating events, one JSON object per line ({"user_id","movie_id","rating","ts"}
    /// or an ISO-8601 "timestamp").
    #[arg(long)]
    ratings: Option<PathBuf>,
    /// The catalogue as a MovieLens movies.dat (default without files: the
    /// catalogue of the served model).
    #[arg(long, conflicts_with = "catalog_size")]
    catalog: Option<PathBuf>,
    /// The catalogue's size, when no movies.dat is at hand.
    #[arg(long)]
    catalog_size: Option<usize>,
    /// MovieLens-1M users.dat: adds gender and age-band segments.
    #[arg(long)]
    users: Option<PathBuf>,
    /// Training data (any `movie-recs train --data` folder) whose interaction
    /// counts are the movies' popularity; default: the counts in --ratings.
    #[arg(long)]
    popularity_from: Option<PathBuf>,
    /// Print the whole audit as one JSON object.
    #[arg(long)]
    json: bool,
    /// Write report.json, report.md and the SVG charts into this folder.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Exit with status 3 when a threshold is breached.
    #[arg(long)]
    check: bool,
    /// Without file arguments: the data folder to audit (traces in
    /// movie-recs.db, lake/, registry/); reports go to its reports/ and
    /// metrics to its metrics.jsonl, flagged users to lake/quarantine/users/.
    #[arg(long, default_value = ".movie-recs")]
    data_dir: PathBuf,
    /// Without file arguments: minutes of traces and events to audit.
    #[arg(long, default_value_t = 60)]
    window_minutes: i64,
    /// Without file arguments: the end of the window (RFC 3339 or epoch ms; default now).
    #[arg(long)]
    until: Option<String>,
    #[arg(long, default_value_t = Thresholds::default().min_catalog_coverage)]
    min_coverage: f64,
    #[arg(long, default_value_t = Thresholds::default().max_gini_exposed)]
    max_gini: f64,
    #[arg(long, default_value_t = Thresholds::default().max_top_10_pct_share)]
    max_top_share: f64,
    #[arg(long, default_value_t = Thresholds::default().min_tail_share)]
    min_tail_share: f64,
    /// The robust spam rule's k (flag when (count − median)/(1.4826·MAD) > k).
    #[arg(long, default_value_t = SpamConfig::default().robust_k)]
    robust_k: f64,
    /// The velocity rule: most ratings per hour before a user is flagged.
    #[arg(long, default_value_t = SpamConfig::default().velocity_limit)]
    velocity_limit: usize,
}

impl AuditArgs {
    fn config(&self) -> Result<AuditConfig> {
        for (name, v) in [
            ("--min-coverage", self.min_coverage),
            ("--max-gini", self.max_gini),
            ("--max-top-share", self.max_top_share),
            ("--min-tail-share", self.min_tail_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("{name} must be from 0 to 1, got {v}");
            }
        }
        if !self.robust_k.is_finite() || self.robust_k <= 0.0 || self.velocity_limit == 0 {
            bail!("--robust-k and --velocity-limit must be positive");
        }
        Ok(AuditConfig {
            thresholds: Thresholds {
                min_catalog_coverage: self.min_coverage,
                max_gini_exposed: self.max_gini,
                max_top_10_pct_share: self.max_top_share,
                min_tail_share: self.min_tail_share,
            },
            spam: SpamConfig {
                robust_k: self.robust_k,
                velocity_limit: self.velocity_limit,
                ..SpamConfig::default()
            },
        })
    }
}

fn warn_skipped<T>(path: &Path, what: &str, p: &Parsed<T>) {
    if p.skipped.is_empty() {
        return;
    }
    eprintln!(
        "{}: {} {what} skipped; first: line {}: {}",
        path.display(),
        p.skipped.len(),
        p.skipped[0].line,
        p.skipped[0].reason
    );
}

fn popularity_from(dir: &Path) -> Result<HashMap<u64, u64>> {
    let ds = shared::data::load_dir(dir)
        .with_context(|| format!("--popularity-from {}", dir.display()))?;
    let mut pop = HashMap::new();
    for i in &ds.train {
        *pop.entry(ds.items[i.item as usize].movie_id).or_insert(0) += 1;
    }
    Ok(pop)
}

fn from_files(a: &AuditArgs, cfg: &AuditConfig) -> Result<AuditReport> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut input = AuditInput::default();
    if let Some(path) = &a.recommendations {
        let p = files::read_recommendations(path, now)?;
        warn_skipped(path, "invalid recommendation records", &p);
        if a.catalog.is_none() && a.catalog_size.is_none() {
            bail!("--recommendations needs the catalogue they are judged against: --catalog movies.dat or --catalog-size N");
        }
        input.exposures = p.records;
    }
    if let Some(path) = &a.ratings {
        let p = files::read_ratings(path, now)?;
        warn_skipped(path, "records with invalid fields (schema errors)", &p);
        input.schema_errors = p.skipped.len();
        input.other_activity = p.other_activity;
        input.ratings = p.records;
    }
    let popularity = match &a.popularity_from {
        Some(dir) => popularity_from(dir)?,
        None => {
            let mut pop = HashMap::new();
            for r in &input.ratings {
                *pop.entry(r.movie_id).or_insert(0) += 1;
            }
            pop
        }
    };
    input.catalog = catalog_arg(a, popularity)?.unwrap_or(Catalog {
        popularity: HashMap::new(),
        ..Catalog::default()
    });
    if let Some(path) = &a.users {
        input.users = files::read_users(path)?;
    }
    Ok(audit(input, cfg, now))
}

/// The catalogue of --catalog or --catalog-size, with `popularity`.
fn catalog_arg(a: &AuditArgs, popularity: HashMap<u64, u64>) -> Result<Option<Catalog>> {
    Ok(match (&a.catalog, a.catalog_size) {
        (Some(path), _) => {
            let ids = files::read_catalog(path)?;
            Some(Catalog::from_items(
                ids.into_iter()
                    .map(|id| (id, popularity.get(&id).copied().unwrap_or(0))),
            ))
        }
        (None, Some(size)) => Some(Catalog {
            size,
            ids: None,
            popularity,
        }),
        (None, None) => return Ok(None),
    })
}

fn parse_until(s: &str) -> Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .with_context(|| {
            format!("--until {s:?}: expected RFC 3339 (2026-11-28T20:00:00Z) or epoch ms")
        })
}

fn from_data_dir(a: &AuditArgs, cfg: &AuditConfig) -> Result<(AuditReport, Vec<String>)> {
    if a.window_minutes <= 0 {
        bail!("--window-minutes must be positive");
    }
    if !a.data_dir.is_dir() {
        bail!(
            "--data-dir {} does not exist; give --recommendations/--ratings files, or run `movie-recs serve` first",
            a.data_dir.display()
        );
    }
    let d = |p: &str| a.data_dir.join(p).display().to_string();
    let reports = a
        .report
        .as_ref()
        .map_or_else(|| d("reports"), |p| p.display().to_string());
    let local = HashMap::from([
        ("MOVIE_RECS_REGISTRY", d("registry")),
        ("MOVIE_RECS_DB", d("movie-recs.db")),
        ("MOVIE_RECS_LAKE", d("lake")),
        ("MOVIE_RECS_METRICS", d("metrics.jsonl")),
        ("MOVIE_RECS_REPORTS", reports.clone()),
        ("MOVIE_RECS_EXPOSURE", d("exposure")),
    ]);
    let settings = Settings::from_lookup(|k| local.get(k).cloned())?;
    let now = chrono::Utc::now().timestamp_millis();
    let to = a
        .until
        .as_deref()
        .map(parse_until)
        .transpose()?
        .unwrap_or(now);
    let popularity = match &a.popularity_from {
        Some(dir) => popularity_from(dir)?,
        None => HashMap::new(),
    };
    let catalog = catalog_arg(a, popularity)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(async {
        let stores = Stores::build(Role::Cli, &settings).await?;
        let job = AuditJob {
            config: cfg.clone(),
            catalog,
            ..stores.audit_job(&settings)?
        };
        anyhow::Ok(job.run(to - a.window_minutes * 60_000, to, now).await?)
    })?;
    let mut notes: Vec<String> = out
        .report_keys
        .iter()
        .map(|k| format!("{reports}/{k}"))
        .collect();
    if let Some(q) = &out.quarantine_key {
        notes.push(format!("{}/{q}", d("lake")));
    }
    notes.push(format!(
        "metrics: {} ({} data points)",
        d("metrics.jsonl"),
        out.published
    ));
    match &out.control {
        Some(ControlStep::Published {
            name,
            priced,
            subsidised,
        }) => notes.push(format!(
            "exposure controller: {}/{name}.json ({priced} movies priced, {subsidised} subsidised)",
            d("exposure")
        )),
        Some(ControlStep::AlreadyFolded { name }) => notes.push(format!(
            "exposure controller: this window is folded into {name} already"
        )),
        Some(ControlStep::Failed { error }) => {
            notes.push(format!("exposure controller: not updated: {error}"))
        }
        None => {}
    }
    Ok((out.report, notes))
}

fn human(r: &AuditReport) -> String {
    let m = &r.overall;
    let f = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{v:.3}"));
    let mut s = format!(
        "{} lists, {} exposures, {} distinct movies of {}\n",
        m.requests, m.exposures, m.distinct_exposed, m.catalog_size
    );
    for (name, v) in r.headline() {
        s.push_str(&format!("  {name:<28} {}\n", f(v)));
    }
    if let Some(t) = m.tiers.get("high") {
        s.push_str(&format!(
            "  {:<28} {}\n",
            "top-tier amplification",
            f(t.amplification)
        ));
    }
    for c in &r.checks {
        if c.passed == Some(false) {
            s.push_str(&format!(
                "  BREACHED: {} = {} (must be {} {})\n",
                c.metric,
                f(c.value),
                c.op,
                c.threshold
            ));
        }
    }
    let p = &r.spam;
    s.push_str(&format!(
        "spam: {} ratings from {} users, {} schema errors; legacy threshold {:.2} flags {:?}; quarantined {:?}",
        p.events, p.users, p.schema_errors, p.threshold, p.legacy_flagged_users, p.flagged_users
    ));
    s
}

pub fn run(a: AuditArgs) -> Result<()> {
    let cfg = a.config()?;
    let files_mode = a.recommendations.is_some() || a.ratings.is_some();
    let (report, notes) = if files_mode {
        let r = from_files(&a, &cfg)?;
        let mut notes = Vec::new();
        if let Some(dir) = &a.report {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating --report {}", dir.display()))?;
            for (name, _, bytes) in report::files(&r) {
                let p = dir.join(name);
                std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
                notes.push(p.display().to_string());
            }
        }
        (r, notes)
    } else {
        from_data_dir(&a, &cfg)?
    };
    if a.json {
        crate::out(serde_json::to_string_pretty(&report)?);
    } else {
        crate::out(human(&report));
    }
    for n in notes {
        eprintln!("wrote {n}");
    }
    if a.check && !report.passed {
        std::process::exit(3);
    }
    Ok(())
}
