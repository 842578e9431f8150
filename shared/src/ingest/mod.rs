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
mod objects;
mod record;
mod report;
#[cfg(test)]
mod tests;
pub mod velocity;

use crate::events::{self, avro, Event, Parsed, Rejection};
use crate::ports::{
    EventLake, IngestState, MetricDatum, MetricsPublisher, StoreError, UserHistory,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use velocity::Velocity;

pub use objects::event_key;
pub use record::{Encoding, RawRecord, Source};
pub use report::{Outcome, RecordResult, Report};

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
    /// A publisher: in Lambda, EMF lines on stdout (CloudWatch metrics
    /// without an API call); locally, the metrics file.
    Publisher(Arc<dyn MetricsPublisher>),
}

impl MetricsSink {
    /// Emits `data`; a failure is logged, never fatal.
    pub async fn emit(&self, data: &[MetricDatum]) {
        if let MetricsSink::Publisher(p) = self {
            if let Err(e) = p.publish(crate::ports::METRICS_NAMESPACE, data).await {
                tracing::warn!(error = %e, "ingest metrics not published");
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
        let mut report = Report::default();
        // 1. Parse, and hold live sources to their bounds.
        let mut parsed: Vec<Result<Parsed, Rejection>> =
            records.iter().map(|r| self.parse(r, now_ms)).collect();
        let keys: Vec<String> = records
            .iter()
            .zip(&parsed)
            .map(|(r, p)| key_of(r, p.as_ref().ok()))
            .collect();
        self.bound(records, &mut parsed, now_ms);
        // 2. Deduplicate.
        let mut outcomes = self.deduplicate(&keys, &parsed, now_s).await?;
        // 3. Velocity limit on the fresh ratings, per user. Live ratings
        // count by arrival too, so back-dating refills nothing.
        let live = records
            .first()
            .is_some_and(|r| !matches!(r.source, Source::File { .. }));
        let arrival_ms = live.then_some(now_ms);
        self.limit_ratings(&keys, &parsed, &mut outcomes, arrival_ms, &mut report)
            .await?;
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Accepted))
            .collect();
        // 4. Write the lake.
        let fresh = self
            .write_lake(records, &parsed, &keys, &outcomes, now_ms, &mut report)
            .await?;
        // 5. User history (and the trending counts).
        self.record_history(&parsed, &outcomes, now_ms).await?;
        // 6. Remember.
        if !fresh.is_empty() {
            self.state
                .remember_keys(&fresh, now_s + self.config.dedup_ttl_secs)
                .await?;
        }
        report.tally(keys, &parsed, outcomes);
        Ok(report)
    }

    /// Step 2: duplicates (keys handled before, or earlier in the batch)
    /// and rejections; `None` for a record still to be decided.
    async fn deduplicate(
        &self,
        keys: &[String],
        parsed: &[Result<Parsed, Rejection>],
        now_s: i64,
    ) -> Result<Vec<Option<Outcome>>, IngestError> {
        let seen = self.state.seen_keys(keys, now_s).await?;
        let mut in_batch = HashSet::new();
        Ok(keys
            .iter()
            .zip(parsed)
            .map(|(k, p)| {
                if seen.contains(k) || !in_batch.insert(k.as_str()) {
                    Some(Outcome::Duplicate)
                } else {
                    p.as_ref().err().map(|r| Outcome::Rejected(r.clone()))
                }
            })
            .collect())
    }

    /// Step 3: quarantines each user's ratings over the velocity limit. Users
    /// are independent: their windows are decided concurrently (each is a
    /// read and a conditional write; one at a time, 2,500 users cost 5,000
    /// round trips).
    async fn limit_ratings(
        &self,
        keys: &[String],
        parsed: &[Result<Parsed, Rejection>],
        outcomes: &mut [Option<Outcome>],
        arrival_ms: Option<i64>,
        report: &mut Report,
    ) -> Result<(), IngestError> {
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
        Ok(())
    }

    /// Step 4: writes the batch's objects ([`objects::lake_objects`]) in
    /// parallel; answers the keys that were not duplicates (to remember).
    async fn write_lake(
        &self,
        records: &[RawRecord],
        parsed: &[Result<Parsed, Rejection>],
        keys: &[String],
        outcomes: &[Outcome],
        now_ms: i64,
        report: &mut Report,
    ) -> Result<Vec<String>, IngestError> {
        let mut fresh: Vec<String> = keys
            .iter()
            .zip(outcomes)
            .filter(|(_, o)| **o != Outcome::Duplicate)
            .map(|(k, _)| k.clone())
            .collect();
        fresh.sort_unstable();
        report.batch_id = sha_hex(&fresh);
        let objects =
            objects::lake_objects(records, parsed, keys, outcomes, &report.batch_id, now_ms);
        let mut writes = tokio::task::JoinSet::new();
        for (key, bytes) in objects {
            report.objects.push((key.clone(), bytes.len()));
            let lake = self.lake.clone();
            writes.spawn(async move { lake.put_object(&key, bytes).await });
        }
        while let Some(r) = writes.join_next().await {
            r.map_err(|e| StoreError::unavailable("event_lake", e))??;
        }
        Ok(fresh)
    }

    /// Step 5: appends the accepted watches and ratings to the user history
    /// and the trending counts.
    async fn record_history(
        &self,
        parsed: &[Result<Parsed, Rejection>],
        outcomes: &[Outcome],
        now_ms: i64,
    ) -> Result<(), IngestError> {
        let seen_movies: Vec<(u64, u64, i64)> = parsed
            .iter()
            .zip(outcomes)
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
        Ok(())
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
}
