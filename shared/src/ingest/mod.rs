//! The ingest pipeline, the same for Kafka batches, `POST /events` and
//! `movie-recs ingest --file`:
//!
//! 1. **Parse and check** each record ([`crate::events`]: JSON, or Avro in
//!    the Confluent wire format); a failure is a rejection naming the field
//!    and the rule.
//! 2. **Deduplicate** by idempotency key: the client's `event_id` (or a
//!    response's `request_id`) when present, else the source coordinates
//!    (`kafka:<topic>/<partition>/<offset>`, `file:<path>:<line>`), else
//!    (HTTP without an id) a hash of the record's bytes. Keys already in the
//!    [`IngestState`] (or earlier in the batch) are duplicates: counted, not written.
//! 3. **Velocity limit** on ratings per user ([`velocity`]); ratings over it
//!    are quarantined.
//! 4. **Write** accepted events as Parquet under
//!    `events/type=<t>/dt=<YYYY-MM-DD>/hour=<HH>/<batch>.parquet` (event
//!    time), quarantined ones under `quarantine/…` (with a `reason` column),
//!    and rejected ones as JSON lines under
//!    `rejected/source=<kafka|http|file>/dt=…/hour=…/<batch>.jsonl` (receive
//!    time) with the raw bytes, the source coordinates and the reason.
//!    `<batch>` is derived from the batch's keys, so a retried batch rewrites
//!    the same objects instead of adding copies.
//! 5. **User history**: accepted watches and ratings are appended.
//! 6. **Remember** every key handled, with expiry (default 7 days, Kafka's
//!    default retention).
//!
//! Any store failure in 4 to 6 fails the whole call before anything is
//! acknowledged, so the source retries: nothing is lost. Readers of the lake
//! ([`lake::read`]) drop repeated event keys, so even a crash between
//! writing the lake and remembering the keys doubles nothing.

pub mod kafka;
pub mod lake;
pub mod velocity;

use crate::events::parquet::{encode, LakeRecord};
use crate::events::{self, avro, Event, EventType, Parsed, Rejection};
use crate::ports::{
    EventLake, IngestState, MetricDatum, MetricsPublisher, StoreError, UserHistory,
};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use velocity::Velocity;

/// How record bytes are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// Confluent Avro when the first byte is 0, JSON otherwise.
    #[default]
    Auto,
    Json,
    Avro,
}

/// Where a record came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Kafka {
        topic: String,
        partition: i64,
        offset: i64,
    },
    /// The `index`-th record of a `POST /events` body, from `caller` (the
    /// IAM principal in AWS; `token` or `local` on the local server).
    Http { index: usize, caller: String },
    /// Line (or Avro record) `line`, from 1, of a file.
    File { path: String, line: usize },
}

impl Source {
    /// `kafka`, `http` or `file`: the dead-letter partition.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Kafka { .. } => "kafka",
            Source::Http { .. } => "http",
            Source::File { .. } => "file",
        }
    }

    /// What the lake's `source` column holds.
    pub fn label(&self) -> String {
        match self {
            Source::Kafka {
                topic,
                partition,
                offset,
            } => format!("kafka:{topic}/{partition}/{offset}"),
            Source::Http { .. } => "http".into(),
            Source::File { path, line } => format!("file:{path}:{line}"),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Source::Kafka {
                topic,
                partition,
                offset,
            } => json!({"kind": "kafka", "topic": topic, "partition": partition, "offset": offset}),
            Source::Http { index, caller } => {
                json!({"kind": "http", "index": index, "caller": caller})
            }
            Source::File { path, line } => json!({"kind": "file", "path": path, "line": line}),
        }
    }
}

/// One record as received.
#[derive(Clone, Debug)]
pub struct RawRecord {
    pub bytes: Vec<u8>,
    pub source: Source,
    /// The type the source implies (Kafka topic, `--type`), if any.
    pub hint: Option<EventType>,
    /// Set when the source already found the record unusable (a Kafka value
    /// that is not base64); it is dead-lettered with this reason.
    pub invalid: Option<Rejection>,
}

impl RawRecord {
    pub fn new(bytes: Vec<u8>, source: Source, hint: Option<EventType>) -> Self {
        RawRecord {
            bytes,
            source,
            hint,
            invalid: None,
        }
    }
}

/// Ingest settings.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    pub encoding: Encoding,
    pub velocity: Velocity,
    /// How long idempotency keys are kept.
    pub dedup_ttl_secs: i64,
    /// Live sources (HTTP, Kafka): events older than this at arrival are
    /// refused with the reason (files may backfill any age).
    pub max_age_ms: i64,
    /// One HTTP request's events may span at most this much event time;
    /// later ones are refused (this bounds the lake objects a request writes).
    pub max_request_spread_ms: i64,
    /// One HTTP request may rate for at most this many users (each costs a
    /// rate-window read and write); ratings of more are refused.
    pub max_rating_users_per_request: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            encoding: Encoding::Auto,
            velocity: Velocity::default(),
            dedup_ttl_secs: 7 * 86_400,
            max_age_ms: 7 * 86_400_000,
            max_request_spread_ms: 6 * 3_600_000,
            max_rating_users_per_request: 100,
        }
    }
}

/// What happened to one record.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Accepted,
    /// Kept under `quarantine/`, excluded from training and history.
    Quarantined(String),
    /// Already handled (earlier delivery, or earlier in this batch).
    Duplicate,
    Rejected(Rejection),
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Quarantined(_) => "quarantined",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected(_) => "rejected",
        }
    }
}

/// The result of one record, in input order.
#[derive(Clone, Debug)]
pub struct RecordResult {
    pub key: String,
    pub event_type: Option<EventType>,
    pub outcome: Outcome,
}

impl RecordResult {
    pub fn to_json(&self, index: usize) -> Value {
        let mut v = json!({"index": index, "status": self.outcome.as_str(), "key": self.key});
        match &self.outcome {
            Outcome::Rejected(r) => {
                v["reason"] = r.to_string().into();
                v["field"] = r.field.clone().into();
            }
            Outcome::Quarantined(r) => v["reason"] = r.clone().into(),
            _ => {}
        }
        if let Some(t) = self.event_type {
            v["type"] = t.as_str().into();
        }
        v
    }
}

/// What one call did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub results: Vec<RecordResult>,
    pub accepted: usize,
    pub rejected: usize,
    pub quarantined: usize,
    pub duplicates: usize,
    /// Rejections by field (`movie_ids[3]` counts as `movie_ids`).
    pub rejected_by_field: BTreeMap<String, usize>,
    /// Users with ratings quarantined by the velocity limit.
    pub flagged_users: BTreeSet<u64>,
    /// Objects written, with their sizes.
    pub objects: Vec<(String, usize)>,
    pub batch_id: String,
}

impl Report {
    pub fn lake_bytes(&self) -> usize {
        self.objects.iter().map(|o| o.1).sum()
    }

    /// The counts, as `movie-recs ingest --json` prints them.
    pub fn counts(&self) -> Value {
        json!({
            "accepted": self.accepted,
            "rejected": self.rejected,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
        })
    }

    /// Everything but the per-record results.
    pub fn summary(&self) -> Value {
        let mut v = self.counts();
        v["rejected_by_field"] = json!(self.rejected_by_field);
        v["flagged_users"] = json!(self.flagged_users);
        v["lake_bytes"] = self.lake_bytes().into();
        v["objects"] = self.objects.iter().map(|o| o.0.clone()).collect();
        v["batch"] = self.batch_id.clone().into();
        v
    }

    /// Per-invocation metrics: `Accepted`, `Rejected`, `Quarantined`,
    /// `Duplicates`, `LakeBytes`, and `Rejected` by `Reason` (the field).
    pub fn metrics(&self, timestamp_ms: i64) -> Vec<MetricDatum> {
        let d =
            |name: &str, value: f64, unit: &'static str, dims: Vec<(String, String)>| MetricDatum {
                name: name.into(),
                value,
                unit,
                dimensions: dims,
                timestamp_ms,
            };
        let mut out = vec![
            d("Accepted", self.accepted as f64, "Count", vec![]),
            d("Rejected", self.rejected as f64, "Count", vec![]),
            d("Quarantined", self.quarantined as f64, "Count", vec![]),
            d("Duplicates", self.duplicates as f64, "Count", vec![]),
            d("LakeBytes", self.lake_bytes() as f64, "Bytes", vec![]),
        ];
        for (field, n) in &self.rejected_by_field {
            out.push(d(
                "Rejected",
                *n as f64,
                "Count",
                vec![("Reason".into(), field.clone())],
            ));
        }
        out
    }
}

/// Why a call failed; nothing of it may be acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rate window of user {0} kept changing under concurrent writers")]
    Contended(u64),
}

/// Where per-call metrics go.
#[derive(Clone, Default)]
pub enum MetricsSink {
    #[default]
    None,
    /// EMF lines on stdout (in Lambda: CloudWatch metrics without an API call).
    Emf { function: String },
    /// A publisher (locally: the metrics file).
    Publisher(Arc<dyn MetricsPublisher>),
}

impl MetricsSink {
    /// Emits `data`; a failure is logged, never fatal.
    pub async fn emit(&self, data: &[MetricDatum]) {
        match self {
            MetricsSink::None => {}
            MetricsSink::Emf { function } => {
                crate::adapters::aws::emf::print_documents(function, data)
            }
            MetricsSink::Publisher(p) => {
                if let Err(e) = p.publish(crate::adapters::aws::emf::NAMESPACE, data).await {
                    tracing::warn!(error = %e, "ingest metrics not published");
                }
            }
        }
    }
}

/// The pipeline with its stores.
pub struct Ingestor {
    pub lake: Arc<dyn EventLake>,
    pub state: Arc<dyn IngestState>,
    pub history: Arc<dyn UserHistory>,
    /// Hourly watch and rate counts (`GET /trending`), when configured.
    pub trending: Option<Arc<dyn crate::ports::TrendingStore>>,
    pub config: IngestConfig,
    pub metrics: MetricsSink,
}

fn sha_hex(parts: impl IntoIterator<Item = impl AsRef<[u8]>>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_ref());
        h.update(b"\n");
    }
    hex::encode(&h.finalize()[..16])
}

/// The namespace of a source's idempotency keys: one source (or, over
/// HTTP, one caller) cannot pre-empt another's records by sending their ids first.
fn namespace(source: &Source) -> String {
    match source {
        Source::Kafka { .. } => "kafka".into(),
        Source::File { .. } => "file".into(),
        Source::Http { caller, .. } => format!("http:{caller}"),
    }
}

/// The idempotency key of a record: the client's id (`event_id`, or a
/// response's `request_id`) within its source's namespace, else the
/// source coordinates, else (HTTP) a hash of the bytes within the caller's.
fn key_of(r: &RawRecord, parsed: Option<&Parsed>) -> String {
    if let Some(p) = parsed {
        if let Some(id) = &p.event_id {
            return format!("{}:event:{id}", namespace(&r.source));
        }
        if let Event::RecoResponse(e) = &p.event {
            if let Some(rid) = &e.request_id {
                return format!("{}:request:{rid}", namespace(&r.source));
            }
        }
    }
    match &r.source {
        Source::Http { .. } => format!("{}:{}", namespace(&r.source), sha_hex([&r.bytes])),
        s => s.label(),
    }
}

fn time_path(ts_ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ts_ms).unwrap_or_default();
    format!("dt={}/hour={}", t.format("%Y-%m-%d"), t.format("%H"))
}

/// The Parquet key of accepted events of type `t` in the hour of `ts_ms`.
pub fn event_key(t: EventType, ts_ms: i64, batch: &str) -> String {
    format!("events/type={t}/{}/{batch}.parquet", time_path(ts_ms))
}

/// Rating windows decided at once per batch.
const WINDOW_CONCURRENCY: usize = 32;

/// Applies the velocity limit to a user's ratings, retrying on concurrent writers.
async fn admit_ratings(
    state: &dyn IngestState,
    velocity: Velocity,
    user: u64,
    cands: &[(i64, String)],
    arrival_ms: Option<i64>,
) -> Result<Vec<bool>, IngestError> {
    for _ in 0..5 {
        let mut w = state.rate_window(user).await?;
        let before = w.clone();
        let admitted = velocity.admit_window(&mut w, cands, arrival_ms);
        if w.entries == before.entries && w.arrivals == before.arrivals {
            return Ok(admitted);
        }
        match state.save_rate_window(user, &w).await {
            Ok(()) => return Ok(admitted),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(IngestError::Contended(user))
}

impl Ingestor {
    /// Parses one record per the configured encoding.
    pub fn parse(&self, r: &RawRecord, now_ms: i64) -> Result<Parsed, Rejection> {
        if let Some(reason) = &r.invalid {
            return Err(reason.clone());
        }
        let avro = match self.config.encoding {
            Encoding::Avro => true,
            Encoding::Json => false,
            Encoding::Auto => avro::is_confluent(&r.bytes),
        };
        if avro {
            let t = r.hint.ok_or_else(|| {
                Rejection::new(
                    "type",
                    "an Avro record needs its type from the source (Kafka topic suffix or --type)",
                )
            })?;
            avro::parse_confluent(&r.bytes, t, now_ms)
        } else {
            events::parse_json(&r.bytes, r.hint, now_ms)
        }
    }

    pub fn new(
        lake: Arc<dyn EventLake>,
        state: Arc<dyn IngestState>,
        history: Arc<dyn UserHistory>,
    ) -> Self {
        Ingestor {
            lake,
            state,
            history,
            trending: None,
            config: IngestConfig::default(),
            metrics: MetricsSink::None,
        }
    }

    /// Counts accepted watches and ratings per movie per hour into `store`.
    pub fn with_trending(mut self, store: Arc<dyn crate::ports::TrendingStore>) -> Self {
        self.trending = Some(store);
        self
    }

    pub fn with_config(mut self, config: IngestConfig) -> Self {
        self.config = config;
        self
    }

    pub fn with_metrics(mut self, metrics: MetricsSink) -> Self {
        self.metrics = metrics;
        self
    }

    /// Refuses, with the reason, what live sources may not send: events older
    /// than the age bound (HTTP and Kafka), and in one HTTP request events
    /// older than the spread bound before its newest event, or ratings for
    /// more users than the request may touch. Files may backfill anything.
    fn bound(&self, records: &[RawRecord], parsed: &mut [Result<Parsed, Rejection>], now_ms: i64) {
        let c = &self.config;
        let hours = |ms: i64| ms as f64 / 3_600_000.0;
        for (r, p) in records.iter().zip(parsed.iter_mut()) {
            let old = matches!(&p, Ok(e) if now_ms - e.event.ts_ms() > c.max_age_ms);
            if old && !matches!(r.source, Source::File { .. }) {
                *p = Err(Rejection::new(
                    "ts",
                    format!(
                        "older than {} days; live sources send events as they happen (backfill with movie-recs ingest --file)",
                        c.max_age_ms / 86_400_000
                    ),
                ));
            }
        }
        if !records
            .iter()
            .any(|r| matches!(r.source, Source::Http { .. }))
        {
            return;
        }
        // Anchored at the newest event: a client sending what just happened
        // keeps it, whatever older events it mixes in.
        let Some(newest) = parsed.iter().flatten().map(|e| e.event.ts_ms()).max() else {
            return;
        };
        let mut users: BTreeSet<u64> = BTreeSet::new();
        for p in parsed.iter_mut() {
            let Ok(e) = p else { continue };
            if e.event.ts_ms() < newest - c.max_request_spread_ms {
                *p = Err(Rejection::new(
                    "ts",
                    format!(
                        "more than {} hours before this request's newest event; send events of different times in separate requests",
                        hours(c.max_request_spread_ms)
                    ),
                ));
                continue;
            }
            if let Event::Rate(r) = &e.event {
                if !users.contains(&r.user_id) && users.len() >= c.max_rating_users_per_request {
                    *p = Err(Rejection::new(
                        "user_id",
                        format!(
                            "one request may rate for at most {} users; send the rest in another request",
                            c.max_rating_users_per_request
                        ),
                    ));
                    continue;
                }
                users.insert(r.user_id);
            }
        }
    }

    /// Runs the pipeline on one batch and emits its metrics. On `Err` nothing
    /// was acknowledged and the whole batch must be retried.
    pub async fn ingest(&self, records: &[RawRecord], now_ms: i64) -> Result<Report, IngestError> {
        let out = self.run(records, now_ms).await;
        let mut data = match &out {
            Ok(r) => r.metrics(now_ms),
            Err(_) => Vec::new(),
        };
        data.push(MetricDatum {
            name: "BatchFailures".into(),
            value: f64::from(u8::from(out.is_err())),
            unit: "Count",
            dimensions: vec![],
            timestamp_ms: now_ms,
        });
        self.metrics.emit(&data).await;
        out
    }

    async fn run(&self, records: &[RawRecord], now_ms: i64) -> Result<Report, IngestError> {
        let now_s = now_ms.div_euclid(1000);
        // 1. Parse, and hold live sources to their bounds.
        let mut parsed: Vec<Result<Parsed, Rejection>> =
            records.iter().map(|r| self.parse(r, now_ms)).collect();
        let keys: Vec<String> = records
            .iter()
            .zip(&parsed)
            .map(|(r, p)| key_of(r, p.as_ref().ok()))
            .collect();
        self.bound(records, &mut parsed, now_ms);
        // Live ratings count by arrival too, so back-dating refills nothing.
        let live = records
            .first()
            .is_some_and(|r| !matches!(r.source, Source::File { .. }));
        let arrival_ms = live.then_some(now_ms);
        // 2. Deduplicate.
        let seen = self.state.seen_keys(&keys, now_s).await?;
        let mut in_batch = HashSet::new();
        let mut outcomes: Vec<Option<Outcome>> = keys
            .iter()
            .map(|k| {
                (seen.contains(k) || !in_batch.insert(k.as_str())).then_some(Outcome::Duplicate)
            })
            .collect();
        for (o, p) in outcomes.iter_mut().zip(&parsed) {
            if o.is_none() {
                if let Err(r) = p {
                    *o = Some(Outcome::Rejected(r.clone()));
                }
            }
        }
        // 3. Velocity limit on the fresh ratings, per user.
        let mut ratings: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (i, p) in parsed.iter().enumerate() {
            if let (
                None,
                Ok(Parsed {
                    event: Event::Rate(r),
                    ..
                }),
            ) = (&outcomes[i], p)
            {
                ratings.entry(r.user_id).or_default().push(i);
            }
        }
        let mut report = Report::default();
        // Users are independent: decide their windows concurrently (each is a
        // read and a conditional write; one at a time, 2,500 users cost 5,000 round trips).
        let mut tasks = tokio::task::JoinSet::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(WINDOW_CONCURRENCY));
        for (user, idx) in ratings {
            let cands: Vec<(i64, String)> = idx
                .iter()
                .map(|&i| {
                    (
                        parsed[i].as_ref().map_or(0, |p| p.event.ts_ms()),
                        keys[i].clone(),
                    )
                })
                .collect();
            let (state, velocity, permits) =
                (self.state.clone(), self.config.velocity, permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore open");
                let admitted =
                    admit_ratings(state.as_ref(), velocity, user, &cands, arrival_ms).await;
                (user, idx, admitted)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (user, idx, admitted) =
                done.map_err(|e| StoreError::unavailable("ingest_state", e))?;
            for (&i, ok) in idx.iter().zip(admitted?) {
                if !ok {
                    report.flagged_users.insert(user);
                    outcomes[i] = Some(Outcome::Quarantined(format!(
                        "velocity: over {} ratings per {} min by user {user}",
                        self.config.velocity.limit,
                        self.config.velocity.span_ms / 60_000
                    )));
                }
            }
        }
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Accepted))
            .collect();
        // 4. Write the lake.
        let mut fresh: Vec<&str> = keys
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o != Outcome::Duplicate)
            .map(|(k, _)| k.as_str())
            .collect();
        fresh.sort_unstable();
        report.batch_id = sha_hex(&fresh);
        let objects = self.objects(records, &parsed, &keys, &outcomes, &report.batch_id, now_ms);
        let mut writes = tokio::task::JoinSet::new();
        for (key, bytes) in objects {
            report.objects.push((key.clone(), bytes.len()));
            let lake = self.lake.clone();
            writes.spawn(async move { lake.put_object(&key, bytes).await });
        }
        while let Some(r) = writes.join_next().await {
            r.map_err(|e| StoreError::unavailable("event_lake", e))??;
        }
        // 5. User history.
        let seen_movies: Vec<(u64, u64, i64)> = parsed
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == Outcome::Accepted)
            .filter_map(|(p, _)| {
                let e = &p.as_ref().ok()?.event;
                Some((e.user_id(), e.movie_id()?, e.ts_ms()))
            })
            .collect();
        if !seen_movies.is_empty() {
            self.history.append_events(&seen_movies).await?;
            self.count_trending(&seen_movies, now_ms).await;
        }
        // 6. Remember.
        let fresh: Vec<String> = fresh.into_iter().map(String::from).collect();
        if !fresh.is_empty() {
            self.state
                .remember_keys(&fresh, now_s + self.config.dedup_ttl_secs)
                .await?;
        }
        for ((key, p), outcome) in keys.into_iter().zip(&parsed).zip(outcomes) {
            match &outcome {
                Outcome::Accepted => report.accepted += 1,
                Outcome::Quarantined(_) => report.quarantined += 1,
                Outcome::Duplicate => report.duplicates += 1,
                Outcome::Rejected(r) => {
                    report.rejected += 1;
                    let field = r.field.split('[').next().unwrap_or("").to_string();
                    *report.rejected_by_field.entry(field).or_default() += 1;
                }
            }
            report.results.push(RecordResult {
                key,
                event_type: p.as_ref().ok().map(|p| p.event.event_type()),
                outcome,
            });
        }
        Ok(report)
    }

    /// Adds a batch's accepted watches and ratings to the hourly trending
    /// counts. Best effort: the counts are a popularity signal, not a
    /// record (the lake is), so a failure is logged and counted, and never
    /// fails the batch (whose retry would count its events twice).
    async fn count_trending(&self, events: &[(u64, u64, i64)], now_ms: i64) {
        let Some(store) = &self.trending else {
            return;
        };
        let counts =
            crate::domain::trending::hourly_counts(events.iter().map(|&(_, m, ts)| (m, ts)));
        let expires = crate::domain::trending::expires_at(now_ms);
        if let Err(e) = store.add(&counts, expires).await {
            tracing::warn!(error = %e, "trending counts not updated");
            self.metrics
                .emit(&[MetricDatum {
                    name: "TrendingWriteFailures".into(),
                    value: 1.0,
                    unit: "Count",
                    dimensions: Vec::new(),
                    timestamp_ms: now_ms,
                }])
                .await;
        }
    }

    /// The lake objects of a batch: Parquet per (type, hour) for accepted and
    /// quarantined events, JSON lines per (source, hour) for rejected ones.
    fn objects(
        &self,
        records: &[RawRecord],
        parsed: &[Result<Parsed, Rejection>],
        keys: &[String],
        outcomes: &[Outcome],
        batch: &str,
        now_ms: i64,
    ) -> Vec<(String, Vec<u8>)> {
        let mut groups: BTreeMap<(bool, EventType, String), Vec<LakeRecord>> = BTreeMap::new();
        let mut dead: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let b64 = base64::engine::general_purpose::STANDARD;
        for i in 0..records.len() {
            let quarantine = match &outcomes[i] {
                Outcome::Duplicate => continue,
                Outcome::Rejected(reason) => {
                    let r = &records[i];
                    let mut line = json!({
                        "key": keys[i],
                        "source": r.source.to_json(),
                        "reason": {"field": reason.field, "rule": reason.rule},
                        "message": reason.to_string(),
                        "received_at": now_ms,
                        "raw_base64": b64.encode(&r.bytes),
                    });
                    if let Ok(text) = std::str::from_utf8(&r.bytes) {
                        line["raw_text"] = text.into();
                    }
                    if let Some(id) = avro::schema_id(&r.bytes) {
                        line["schema_id"] = id.into();
                    }
                    if let Some(t) = r.hint {
                        line["type_hint"] = t.as_str().into();
                    }
                    let key = format!(
                        "rejected/source={}/{}/{batch}.jsonl",
                        r.source.kind(),
                        time_path(now_ms)
                    );
                    let buf = dead.entry(key).or_default();
                    serde_json::to_writer(&mut *buf, &line).expect("JSON serialises");
                    buf.push(b'\n');
                    continue;
                }
                Outcome::Accepted => None,
                Outcome::Quarantined(reason) => Some(reason.clone()),
            };
            let Ok(p) = &parsed[i] else { continue };
            let t = p.event.event_type();
            groups
                .entry((quarantine.is_some(), t, time_path(p.event.ts_ms())))
                .or_default()
                .push(LakeRecord {
                    event_key: keys[i].clone(),
                    event_id: p.event_id.clone(),
                    source: records[i].source.label(),
                    ingested_at_ms: now_ms,
                    event: p.event.clone(),
                    reason: quarantine,
                });
        }
        let mut out: Vec<(String, Vec<u8>)> = groups
            .into_iter()
            .map(|((q, t, hour), recs)| {
                let root = if q { "quarantine" } else { "events" };
                (
                    format!("{root}/type={t}/{hour}/{batch}.parquet"),
                    encode(t, &recs, q),
                )
            })
            .collect();
        out.extend(dead);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::{FolderLake, SqliteStore};
    use crate::events::parquet::decode;
    use crate::events::{Rate, Watch};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const NOW: i64 = 1_764_000_000_000;

    /// A lake that fails its first `fail` writes.
    struct Flaky {
        inner: FolderLake,
        fail: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl EventLake for Flaky {
        async fn put_object(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
            if self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(StoreError::unavailable("event_lake", "injected failure"));
            }
            self.inner.put_object(key, bytes).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.inner.list(prefix).await
        }
        async fn get_object(&self, key: &str) -> Result<Vec<u8>, StoreError> {
            self.inner.get_object(key).await
        }
    }

    struct Fixture {
        dir: tempfile::TempDir,
        db: Arc<SqliteStore>,
        ingestor: Ingestor,
    }

    fn fixture(fail_writes: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(SqliteStore::in_memory().unwrap());
        let lake = Arc::new(Flaky {
            inner: FolderLake::new(dir.path()),
            fail: AtomicUsize::new(fail_writes),
        });
        let ingestor = Ingestor::new(lake, db.clone(), db.clone());
        Fixture { dir, db, ingestor }
    }

    fn http(i: usize, v: Value) -> RawRecord {
        RawRecord::new(
            v.to_string().into_bytes(),
            Source::Http {
                index: i,
                caller: "test".into(),
            },
            None,
        )
    }

    fn kafka(topic: &str, offset: i64, bytes: Vec<u8>, hint: Option<EventType>) -> RawRecord {
        RawRecord::new(
            bytes,
            Source::Kafka {
                topic: topic.into(),
                partition: 0,
                offset,
            },
            hint,
        )
    }

    fn rate(user: u64, movie: u64, ts: i64) -> Value {
        json!({"type": "rate", "user_id": user, "movie_id": movie, "rating": 4, "ts": ts})
    }

    async fn keys(f: &Fixture, prefix: &str) -> Vec<String> {
        FolderLake::new(f.dir.path()).list(prefix).await.unwrap()
    }

    #[tokio::test]
    async fn a_mixed_batch_lands_each_record_where_it_belongs() {
        let f = fixture(0);
        let avro_rate = avro::encode_confluent(
            &Event::Rate(Rate {
                user_id: 5,
                movie_id: 50,
                rating: 2.5,
                ts_ms: NOW - 1000,
            }),
            None,
            3,
        );
        let batch = vec![
            kafka("m.watch", 1, br#"{"user_id": 1, "movie_id": 10, "ts": 1763999000000}"#.to_vec(), Some(EventType::Watch)),
            kafka("m.rate", 2, avro_rate, Some(EventType::Rate)),
            kafka("m.rate", 3, br#"{"user_id": "INVALID", "movie_id": 3, "rating": 5, "ts": 1763999000000}"#.to_vec(), Some(EventType::Rate)),
            kafka("m.rate", 4, b"{not json".to_vec(), Some(EventType::Rate)),
            kafka("m.reco_responses", 5, br#"{"request_id": "r1", "user_id": 1, "movie_ids": [10, 11], "model_version": "v1", "ts": 1763999000000}"#.to_vec(), Some(EventType::RecoResponse)),
            kafka("m.rate", 6, vec![0, 0, 0, 0, 3, 0xff], Some(EventType::Rate)),
        ];
        let r = f.ingestor.ingest(&batch, NOW).await.unwrap();
        assert_eq!(
            (r.accepted, r.rejected, r.quarantined, r.duplicates),
            (3, 3, 0, 0)
        );
        assert_eq!(r.rejected_by_field.get("user_id"), Some(&1));
        assert_eq!(r.rejected_by_field.get("json"), Some(&1));
        assert_eq!(r.rejected_by_field.get("avro"), Some(&1));
        let statuses: Vec<_> = r.results.iter().map(|x| x.outcome.as_str()).collect();
        assert_eq!(
            statuses,
            ["accepted", "accepted", "rejected", "rejected", "accepted", "rejected"]
        );
        // Parquet by type and event hour, dead letters by source and receive hour.
        let ev = keys(&f, "events/").await;
        assert_eq!(ev.len(), 3, "{ev:?}");
        assert!(ev
            .iter()
            .any(|k| k.starts_with("events/type=watch/dt=2025-11-24/hour=15/")));
        assert!(ev
            .iter()
            .any(|k| k.starts_with("events/type=reco_response/")));
        let rates = decode(
            EventType::Rate,
            std::fs::read(
                f.dir
                    .path()
                    .join(ev.iter().find(|k| k.contains("type=rate")).unwrap()),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(rates.len(), 1);
        assert_eq!(rates[0].source, "kafka:m.rate/0/2");
        assert_eq!(rates[0].event_key, "kafka:m.rate/0/2");
        let dead = keys(&f, "rejected/").await;
        assert_eq!(dead.len(), 1);
        assert!(dead[0].starts_with("rejected/source=kafka/dt=2025-11-24/hour=16/"));
        let lines: Vec<Value> = std::fs::read_to_string(f.dir.path().join(&dead[0]))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0]["source"],
            json!({"kind": "kafka", "topic": "m.rate", "partition": 0, "offset": 3})
        );
        assert_eq!(lines[0]["reason"]["field"], "user_id");
        assert!(lines[0]["raw_text"].as_str().unwrap().contains("INVALID"));
        let b64 = base64::engine::general_purpose::STANDARD;
        assert_eq!(
            b64.decode(lines[2]["raw_base64"].as_str().unwrap())
                .unwrap(),
            vec![0, 0, 0, 0, 3, 0xff]
        );
        assert_eq!(lines[2]["schema_id"], 3);
        assert!(lines[2].get("raw_text").is_none() || lines[2]["raw_text"].is_string());
        // Accepted watches and ratings reach the user history; rejected ones do not.
        assert_eq!(f.db.seen(1).await.unwrap(), vec![10]);
        assert_eq!(f.db.seen(5).await.unwrap(), vec![50]);
        // The metrics of the call.
        let m = r.metrics(NOW);
        let get = |n: &str| {
            m.iter()
                .find(|d| d.name == n && d.dimensions.is_empty())
                .unwrap()
                .value
        };
        assert_eq!((get("Accepted"), get("Rejected")), (3.0, 3.0));
        assert_eq!(get("LakeBytes"), r.lake_bytes() as f64);
        assert!(r.lake_bytes() > 0);
    }

    #[tokio::test]
    async fn redelivery_is_written_once() {
        let f = fixture(0);
        let batch: Vec<_> = (0..4)
            .map(|i| {
                kafka(
                    "m.rate",
                    i,
                    rate(1, i as u64, NOW - 10_000).to_string().into_bytes(),
                    None,
                )
            })
            .collect();
        let first = f.ingestor.ingest(&batch, NOW).await.unwrap();
        assert_eq!(first.accepted, 4);
        let objects = keys(&f, "").await;
        // Kafka redelivers the same offsets: all duplicates, nothing new written.
        let again = f.ingestor.ingest(&batch, NOW + 5).await.unwrap();
        assert_eq!((again.accepted, again.duplicates), (0, 4));
        assert_eq!(keys(&f, "").await, objects);
        // Over HTTP, the same event id twice in a batch and again later.
        let with_id = |i| {
            let mut v = rate(2, 9, NOW);
            v["event_id"] = "e-9".into();
            http(i, v)
        };
        let r = f
            .ingestor
            .ingest(&[with_id(0), with_id(1)], NOW)
            .await
            .unwrap();
        assert_eq!((r.accepted, r.duplicates), (1, 1));
        let r = f.ingestor.ingest(&[with_id(0)], NOW).await.unwrap();
        assert_eq!(r.duplicates, 1);
        // Without an id, identical bytes are one event; a different rating is another.
        let r = f
            .ingestor
            .ingest(
                &[
                    http(0, rate(3, 1, NOW)),
                    http(1, rate(3, 1, NOW)),
                    http(2, rate(3, 2, NOW)),
                ],
                NOW,
            )
            .await
            .unwrap();
        assert_eq!((r.accepted, r.duplicates), (2, 1));
        // Rejected records are dead-lettered once too.
        let bad = kafka("m.rate", 99, b"oops".to_vec(), None);
        assert_eq!(
            f.ingestor
                .ingest(std::slice::from_ref(&bad), NOW)
                .await
                .unwrap()
                .rejected,
            1
        );
        assert_eq!(f.ingestor.ingest(&[bad], NOW).await.unwrap().duplicates, 1);
        assert_eq!(keys(&f, "rejected/").await.len(), 1);
        // Keys expire: after the TTL the same coordinates are new again.
        let later = NOW + (f.ingestor.config.dedup_ttl_secs + 1) * 1000;
        let r = f.ingestor.ingest(&batch[..1], later).await.unwrap();
        assert_eq!(r.duplicates, 0);
    }

    #[tokio::test]
    async fn a_failed_lake_write_fails_the_batch_and_the_retry_doubles_nothing() {
        let f = fixture(1);
        let batch: Vec<_> = (0..30)
            .map(|i| {
                kafka(
                    "m.rate",
                    i,
                    rate(7, i as u64, NOW - 60_000 + i).to_string().into_bytes(),
                    None,
                )
            })
            .chain([kafka("m.rate", 30, b"bad".to_vec(), None)])
            .collect();
        let err = f.ingestor.ingest(&batch, NOW).await.unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        // Nothing was remembered, so the retry is not taken for a duplicate,
        // and the velocity window makes the same decisions.
        let r = f.ingestor.ingest(&batch, NOW + 1000).await.unwrap();
        assert_eq!(
            (r.accepted, r.quarantined, r.rejected, r.duplicates),
            (20, 10, 1, 0)
        );
        let ev = keys(&f, "events/").await;
        assert_eq!(ev.len(), 1);
        let stored = decode(
            EventType::Rate,
            std::fs::read(f.dir.path().join(&ev[0])).unwrap(),
        )
        .unwrap();
        assert_eq!(stored.len(), 20);
        assert_eq!(f.db.seen(7).await.unwrap().len(), 20);
    }

    #[tokio::test]
    async fn no_source_can_pre_empt_another_ones_event_ids() {
        let f = fixture(0);
        let with_id =
            json!({"type": "watch", "user_id": 1, "movie_id": 2, "ts": NOW, "event_id": "k-1"});
        // An HTTP caller posts the id first ...
        let r = f
            .ingestor
            .ingest(&[http(0, with_id.clone())], NOW)
            .await
            .unwrap();
        assert_eq!(r.accepted, 1);
        // ... the genuine Kafka record with that id is still taken,
        let k = kafka("movies.watch", 7, with_id.to_string().into_bytes(), None);
        let r = f
            .ingestor
            .ingest(std::slice::from_ref(&k), NOW)
            .await
            .unwrap();
        assert_eq!((r.accepted, r.duplicates), (1, 0));
        assert_eq!(r.results[0].key, "kafka:event:k-1");
        // and another HTTP caller's id lives in its own namespace; a retry
        // from the same source is still a duplicate.
        let other = RawRecord {
            source: Source::Http {
                index: 0,
                caller: "arn:aws:iam::1:role/other".into(),
            },
            ..http(0, with_id.clone())
        };
        assert_eq!(f.ingestor.ingest(&[other], NOW).await.unwrap().accepted, 1);
        assert_eq!(f.ingestor.ingest(&[k], NOW).await.unwrap().duplicates, 1);
        assert_eq!(
            f.ingestor
                .ingest(&[http(0, with_id)], NOW)
                .await
                .unwrap()
                .duplicates,
            1
        );
    }

    #[tokio::test]
    async fn live_sources_are_held_to_age_spread_and_fan_out_bounds() {
        let f = fixture(0);
        let day = 86_400_000;
        let watch =
            |user: u64, ts: i64| json!({"type": "watch", "user_id": user, "movie_id": 2, "ts": ts});
        // At the age bound: taken; a millisecond older: refused, naming ts.
        let r = f
            .ingestor
            .ingest(
                &[
                    http(0, watch(1, NOW - 7 * day)),
                    http(1, watch(1, NOW - 7 * day - 1)),
                ],
                NOW,
            )
            .await
            .unwrap();
        assert_eq!((r.accepted, r.rejected), (1, 1));
        assert!(matches!(&r.results[1].outcome, Outcome::Rejected(j) if j.field == "ts"));
        // Kafka: the same age bound; a file may backfill anything.
        let old = watch(2, NOW - 30 * day).to_string().into_bytes();
        let r = f
            .ingestor
            .ingest(&[kafka("movies.watch", 1, old.clone(), None)], NOW)
            .await
            .unwrap();
        assert_eq!(r.rejected, 1);
        let file = RawRecord::new(
            old,
            Source::File {
                path: "f".into(),
                line: 1,
            },
            None,
        );
        assert_eq!(f.ingestor.ingest(&[file], NOW).await.unwrap().accepted, 1);
        // One request spans at most 6 hours before its newest event.
        let h = 3_600_000;
        let r = f
            .ingestor
            .ingest(
                &[
                    http(0, watch(3, NOW)),
                    http(1, watch(3, NOW - 6 * h)),
                    http(2, watch(3, NOW - 6 * h - 1)),
                ],
                NOW,
            )
            .await
            .unwrap();
        assert_eq!((r.accepted, r.rejected), (2, 1));
        // Ratings for at most 100 users per request.
        let many: Vec<_> = (0..101)
            .map(|u| http(u, rate(1000 + u as u64, 1, NOW)))
            .collect();
        let r = f.ingestor.ingest(&many, NOW).await.unwrap();
        assert_eq!((r.accepted, r.rejected), (100, 1));
        assert!(matches!(&r.results[100].outcome, Outcome::Rejected(j) if j.field == "user_id"));
    }

    #[tokio::test]
    async fn velocity_quarantines_the_excess_and_keeps_it_out_of_history() {
        let f = fixture(0);
        let mut cfg = IngestConfig::default();
        cfg.velocity.limit = 3;
        let ingestor =
            Ingestor::new(f.ingestor.lake.clone(), f.db.clone(), f.db.clone()).with_config(cfg);
        // Across two calls: 2 + 3 ratings by user 9 within an hour, one by user 8.
        let first: Vec<_> = (0..2)
            .map(|i| http(i, rate(9, 100 + i as u64, NOW - 50_000 + i as i64)))
            .collect();
        assert_eq!(ingestor.ingest(&first, NOW).await.unwrap().accepted, 2);
        let second: Vec<_> = (2..5)
            .map(|i| http(i, rate(9, 100 + i as u64, NOW - 50_000 + i as i64)))
            .chain([http(9, rate(8, 1, NOW))])
            .collect();
        let r = ingestor.ingest(&second, NOW).await.unwrap();
        assert_eq!((r.accepted, r.quarantined), (2, 2));
        assert_eq!(r.flagged_users.iter().copied().collect::<Vec<_>>(), vec![9]);
        let q = &r.results[1];
        assert!(matches!(&q.outcome, Outcome::Quarantined(why) if why.contains("velocity")));
        // Quarantined ratings are kept, flagged, and excluded from history.
        let qk = keys(&f, "quarantine/type=rate/").await;
        assert_eq!(qk.len(), 1);
        let held = decode(
            EventType::Rate,
            std::fs::read(f.dir.path().join(&qk[0])).unwrap(),
        )
        .unwrap();
        assert_eq!(held.len(), 2);
        assert!(held
            .iter()
            .all(|h| h.reason.as_deref().is_some_and(|r| r.contains("velocity"))));
        assert_eq!(f.db.seen(9).await.unwrap().len(), 3);
        // Watches are not rate-limited.
        let watches: Vec<_> = (0..10)
            .map(|i| {
                http(
                    i,
                    json!({"type": "watch", "user_id": 9, "movie_id": i, "ts": NOW}),
                )
            })
            .collect();
        assert_eq!(ingestor.ingest(&watches, NOW).await.unwrap().accepted, 10);
    }

    #[tokio::test]
    async fn the_lake_reads_back_what_was_written_and_trains() {
        let f = fixture(0);
        let events: Vec<Event> = (0..40u64)
            .map(|i| {
                if i % 2 == 0 {
                    Event::Watch(Watch {
                        user_id: i % 5,
                        movie_id: i,
                        minute: Some(i as u32),
                        ts_ms: NOW - 3_600_000 * (i as i64 % 3),
                    })
                } else {
                    Event::Rate(Rate {
                        user_id: i % 5,
                        movie_id: i,
                        rating: 3.5,
                        ts_ms: NOW - 1000,
                    })
                }
            })
            .collect();
        let batch: Vec<_> = events
            .iter()
            .enumerate()
            .map(|(i, e)| http(i, e.to_json(Some(&format!("id-{i}")))))
            .collect();
        assert_eq!(f.ingestor.ingest(&batch, NOW).await.unwrap().accepted, 40);
        let mut back = Vec::new();
        for t in [EventType::Watch, EventType::Rate] {
            back.extend(
                lake::read(f.ingestor.lake.as_ref(), "events", t)
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(back.len(), 40);
        for r in &back {
            let i: usize = r.event_id.as_ref().unwrap()[3..].parse().unwrap();
            assert_eq!(r.event, events[i]);
            assert_eq!(r.event_key, format!("http:test:event:id-{i}"));
        }
        let ds = crate::data::load_dir(f.dir.path()).unwrap();
        assert_eq!(ds.format, crate::domain::DataFormat::Lake);
        assert_eq!(ds.train.len(), 40);
        assert_eq!(ds.user_ids, vec![0, 1, 2, 3, 4]);
        let via_port = lake::dataset(f.ingestor.lake.as_ref(), "lake".into())
            .await
            .unwrap();
        assert_eq!(via_port.train.len(), 40);
        assert_eq!(via_port.snapshot_id, ds.snapshot_id);
        // Users the audit quarantined leave training, folder and port alike.
        let flagged = events.iter().filter(|e| e.user_id() == 3).count();
        f.ingestor
            .lake
            .put_object(
                "quarantine/users/dt=2025-11-24/audit-x.jsonl",
                b"{\"user_id\": 3, \"rules\": [\"robust\"]}\n".to_vec(),
            )
            .await
            .unwrap();
        let ds2 = crate::data::load_dir(f.dir.path()).unwrap();
        assert_eq!(ds2.train.len(), 40 - flagged);
        assert_eq!(ds2.user_ids, vec![0, 1, 2, 4]);
        assert_ne!(ds2.snapshot_id, ds.snapshot_id);
        // Recorded, for the manifest.
        assert!(ds.excluded_users.is_empty());
        assert_eq!(ds2.excluded_users, vec![3]);
        let via_port = lake::dataset(f.ingestor.lake.as_ref(), "lake".into())
            .await
            .unwrap();
        assert_eq!(via_port.snapshot_id, ds2.snapshot_id);
    }

    #[tokio::test]
    async fn the_committed_kafka_fixtures_ingest_as_documented() {
        let f = fixture(0);
        let topics = kafka::TopicMap::default();
        let msk: aws_lambda_events::kafka::KafkaEvent =
            serde_json::from_str(include_str!("../../../events/ingest-msk.json")).unwrap();
        let recs = kafka::records(&msk, &topics);
        assert_eq!(recs.len(), 6);
        // The fixture's event times are 2026-11-28T20:00Z; ingest "now" just after.
        let now = 1_795_896_000_000 + 60_000;
        let r = f.ingestor.ingest(&recs, now).await.unwrap();
        assert_eq!((r.accepted, r.rejected), (4, 2));
        let rejected: Vec<_> = r
            .results
            .iter()
            .filter_map(|x| match &x.outcome {
                Outcome::Rejected(why) => Some((x.key.as_str(), why.field.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            rejected,
            [
                ("kafka:movies.rate/3/8", "rating"),
                ("kafka:movies.watch/0/43", "user_id")
            ]
        );
        // The Avro-encoded rating arrived intact.
        let rates = lake::read(f.ingestor.lake.as_ref(), "events", EventType::Rate)
            .await
            .unwrap();
        assert_eq!(rates.len(), 1);
        assert!(matches!(&rates[0].event, Event::Rate(x) if x.rating == 4.5 && x.movie_id == 50));
        let smk: aws_lambda_events::kafka::KafkaEvent =
            serde_json::from_str(include_str!("../../../events/ingest-self-managed.json")).unwrap();
        let r = f
            .ingestor
            .ingest(&kafka::records(&smk, &topics), now)
            .await
            .unwrap();
        assert_eq!(r.accepted, 1);
    }
}
