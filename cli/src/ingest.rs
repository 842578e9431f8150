//! `movie-recs ingest --file F`: the ingest pipeline on a file, into the
//! local data folder (lake under `lake/`, idempotency keys, rating windows
//! and user history in `movie-recs.db`, metrics in `metrics.jsonl`).
//!
//! `--format json` (default): one JSON event per line; the type from each
//! record's `type` or from `--type`. `--format avro`: an Avro object container
//! file; the type from `--type` or the file's schema name (Watch, Rate,
//! RecoResponse). The records' coordinates are `file:<path>:<line>` (record
//! number for Avro), so ingesting the same file twice stores nothing twice.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use shared::adapters::local::{FileMetrics, FolderLake, SqliteStore};
use shared::events::avro::to_json;
use shared::events::EventType;
use shared::ingest::velocity::Velocity;
use shared::ingest::{IngestConfig, Ingestor, MetricsSink, RawRecord, Report, Source};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Copy, ValueEnum)]
pub enum TypeArg {
    Watch,
    Rate,
    #[value(name = "reco_response", alias = "reco-response")]
    RecoResponse,
}

impl From<TypeArg> for EventType {
    fn from(t: TypeArg) -> Self {
        match t {
            TypeArg::Watch => EventType::Watch,
            TypeArg::Rate => EventType::Rate,
            TypeArg::RecoResponse => EventType::RecoResponse,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FormatArg {
    Json,
    Avro,
}

#[derive(Args)]
pub struct IngestArgs {
    /// Events file (JSON lines, or an Avro object container file with --format avro).
    #[arg(long)]
    file: PathBuf,
    /// Event type of records that do not name one (default: from the file
    /// name, e.g. rate_events.jsonl, watch_snapshot.jsonl, reco_responses.jsonl).
    #[arg(long = "type", value_enum)]
    event_type: Option<TypeArg>,
    #[arg(long, value_enum, default_value = "json")]
    format: FormatArg,
    /// Print the counts as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Data folder: lake/, movie-recs.db, metrics.jsonl.
    #[arg(long, default_value = ".movie-recs")]
    data_dir: PathBuf,
    /// Most ratings one user may add per hour before the rest is quarantined.
    #[arg(long, default_value_t = Velocity::default().limit)]
    rate_limit_per_hour: usize,
    /// Records per pipeline call (each call is one set of lake objects).
    #[arg(long, default_value_t = 5000)]
    batch: usize,
}

fn read_records(a: &IngestArgs) -> Result<Vec<RawRecord>> {
    let path =
        std::fs::canonicalize(&a.file).with_context(|| format!("--file {}", a.file.display()))?;
    let label = path.display().to_string();
    let hint = a.event_type.map(EventType::from).or_else(|| {
        let t = type_from_name(&path);
        if let Some(t) = t {
            eprintln!("records without a type are taken as {t} events (from the file name; --type overrides)");
        }
        t
    });
    let bytes = std::fs::read(&path).with_context(|| format!("reading {label}"))?;
    let source = |line| Source::File {
        path: label.clone(),
        line,
    };
    match a.format {
        FormatArg::Json => Ok(bytes
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .map(|(i, l)| {
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                RawRecord::new(l.to_vec(), source(i + 1), hint)
            })
            .collect()),
        FormatArg::Avro => {
            shared::events::avro::limit_allocations();
            let reader = apache_avro::Reader::new(&bytes[..])
                .with_context(|| format!("{label}: not an Avro object container file"))?;
            let hint = match hint {
                Some(h) => Some(h),
                None => match reader.writer_schema() {
                    apache_avro::Schema::Record(r) => match r.name.name() {
                        "Watch" => Some(EventType::Watch),
                        "Rate" => Some(EventType::Rate),
                        "RecoResponse" => Some(EventType::RecoResponse),
                        _ => None,
                    },
                    _ => None,
                },
            };
            let Some(hint) = hint else {
                bail!("{label}: the schema does not name an event type; pass --type");
            };
            let mut out = Vec::new();
            for (i, v) in reader.enumerate() {
                let v = v.with_context(|| format!("{label}: record {}", i + 1))?;
                // The container already checked the datum against its schema;
                // the event rules run on its JSON form.
                let json = to_json(v).to_string().into_bytes();
                out.push(RawRecord::new(json, source(i + 1), Some(hint)));
            }
            Ok(out)
        }
    }
}

/// The event type a file name names: a `rate`/`ratings`, `watch`/`watches`
/// or `reco`/`reco_responses` word in its stem.
fn type_from_name(path: &std::path::Path) -> Option<EventType> {
    let stem = path.file_stem()?.to_string_lossy().to_lowercase();
    let words: Vec<&str> = stem.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    let found: Vec<EventType> = words
        .iter()
        .filter_map(|w| match *w {
            "rate" | "rates" | "rating" | "ratings" => Some(EventType::Rate),
            "watch" | "watches" | "views" => Some(EventType::Watch),
            "reco" | "recos" | "recommendations" => Some(EventType::RecoResponse),
            _ => None,
        })
        .collect();
    match found.as_slice() {
        [t] => Some(*t),
        _ => None,
    }
}

fn merge(total: &mut Report, r: Report) {
    total.accepted += r.accepted;
    total.rejected += r.rejected;
    total.quarantined += r.quarantined;
    total.duplicates += r.duplicates;
    for (k, v) in r.rejected_by_field {
        *total.rejected_by_field.entry(k).or_default() += v;
    }
    total.flagged_users.extend(r.flagged_users);
    total.objects.extend(r.objects);
    total.results.extend(r.results);
}

pub fn run(a: IngestArgs) -> Result<()> {
    if a.batch == 0 || a.rate_limit_per_hour == 0 {
        bail!("--batch and --rate-limit-per-hour must be positive");
    }
    let records = read_records(&a)?;
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("creating --data-dir {}", a.data_dir.display()))?;
    let db = Arc::new(SqliteStore::open(&a.data_dir.join("movie-recs.db"))?);
    let ingestor = Ingestor::new(
        Arc::new(FolderLake::new(a.data_dir.join("lake"))),
        db.clone(),
        db,
    )
    .with_config(IngestConfig {
        velocity: Velocity {
            limit: a.rate_limit_per_hour,
            ..Velocity::default()
        },
        ..IngestConfig::default()
    })
    .with_metrics(MetricsSink::Publisher(Arc::new(FileMetrics::new(
        a.data_dir.join("metrics.jsonl"),
    ))));
    let bar = indicatif::ProgressBar::new(records.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} records {msg}")
            .expect("template"),
    );
    if records.len() <= a.batch {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut total = Report::default();
    for chunk in records.chunks(a.batch) {
        let r = rt
            .block_on(ingestor.ingest(chunk, chrono::Utc::now().timestamp_millis()))
            .context("ingest failed; this chunk was not stored (run the command again: what was stored is skipped)")?;
        bar.inc(chunk.len() as u64);
        merge(&mut total, r);
    }
    bar.finish_and_clear();
    if a.json {
        crate::out(total.counts());
    } else {
        let reasons: Vec<String> = total
            .rejected_by_field
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        crate::out(format!(
            "accepted {}, rejected {}{}, quarantined {}{}, duplicates {}",
            total.accepted,
            total.rejected,
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            },
            total.quarantined,
            if total.flagged_users.is_empty() {
                String::new()
            } else {
                format!(
                    " (users over the rate limit: {})",
                    total
                        .flagged_users
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            total.duplicates,
        ));
        for (i, r) in total.results.iter().enumerate() {
            if let shared::ingest::Outcome::Rejected(why) = &r.outcome {
                if i < 1000 {
                    eprintln!("rejected {}: {why}", r.key);
                }
            }
        }
        eprintln!(
            "lake: {} ({} objects, {} bytes); dead letters under rejected/",
            a.data_dir.join("lake").display(),
            total.objects.len(),
            total.lake_bytes()
        );
    }
    Ok(())
}
