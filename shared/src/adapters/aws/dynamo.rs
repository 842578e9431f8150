//! DynamoDB: traces (TTL, time-bucket index), rollout state (one item,
//! conditional writes), user history (recent movies per user, TTL), and
//! ingest state (idempotency keys with TTL, per-user rating windows).
//! Key schemas are in [`super::provision`] and in template.yaml.

use super::sdk_error;
use crate::ports::{
    IngestState, RateWindow, RolloutChange, RolloutSpec, RolloutState, RolloutStore, StoreError,
    TraceStore, UserHistory,
};
use aws_sdk_dynamodb::types::KeysAndAttributes;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use std::collections::HashSet;

/// The traces table's index over time: partition `time_bucket`
/// (`YYYY-MM-DDTHH#shard`), sort `ts` (epoch ms).
pub const TRACE_TIME_INDEX: &str = "by_time";
/// Write shards per hour bucket, so one busy hour does not land on one partition.
pub const TRACE_BUCKET_SHARDS: u32 = 4;
/// How long user-history entries live (the model is retrained well within this).
pub const HISTORY_TTL_SECS: i64 = 180 * 86_400;

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}
fn get_n<T: std::str::FromStr>(item: &Item, k: &str) -> Option<T> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// The hour bucket of an epoch-ms time: `2026-11-28T20`.
pub fn hour_bucket(ts_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H")
        .to_string()
}

fn shard_of(request_id: &str) -> u32 {
    // FNV-1a: stable across processes and releases.
    let h = request_id.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    });
    h % TRACE_BUCKET_SHARDS
}

/// Recommendation traces: `request_id` key, the trace as a JSON string,
/// `expires_at` as the table's TTL attribute (DynamoDB deletes lazily, so reads
/// also filter on it), and `time_bucket`/`ts` for the [`TRACE_TIME_INDEX`].
#[derive(Clone)]
pub struct DynamoTraces {
    client: Client,
    table: String,
}

impl DynamoTraces {
    pub fn new(client: Client, table: &str) -> Self {
        DynamoTraces {
            client,
            table: table.into(),
        }
    }
}

fn parse_trace(item: &Item) -> Result<serde_json::Value, StoreError> {
    let body = get_s(item, "trace")
        .ok_or_else(|| StoreError::unavailable("traces", "item without a trace attribute"))?;
    serde_json::from_str(body).map_err(|e| StoreError::unavailable("traces", e))
}

#[async_trait::async_trait]
impl TraceStore for DynamoTraces {
    async fn put(
        &self,
        request_id: &str,
        trace: &serde_json::Value,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let ts = trace["timestamp"].as_i64().unwrap_or(0);
        self.client
            .put_item()
            .table_name(&self.table)
            .item("request_id", s(request_id))
            .item("trace", s(trace.to_string()))
            .item("expires_at", n(expires_at))
            .item("ts", n(ts))
            .item(
                "time_bucket",
                s(format!("{}#{}", hour_bucket(ts), shard_of(request_id))),
            )
            // One PutItem, no read: an unexpired trace under this id stays.
            .condition_expression("attribute_not_exists(request_id) OR expires_at <= :now")
            .expression_attribute_values(":now", n(chrono::Utc::now().timestamp()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_conditional_check_failed_exception() => StoreError::Conflict {
                    store: "traces",
                    reason: format!("a trace of request {request_id} is stored already"),
                },
                _ => StoreError::unavailable("traces", sdk_error(e)),
            })
    }

    async fn get(
        &self,
        request_id: &str,
        now: i64,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("request_id", s(request_id))
            .send()
            .await
            .map_err(|e| StoreError::unavailable("traces", sdk_error(e)))?;
        match out.item {
            Some(item) if get_n::<i64>(&item, "expires_at").is_some_and(|e| e > now) => {
                parse_trace(&item).map(Some)
            }
            _ => Ok(None),
        }
    }

    async fn window(
        &self,
        from_ms: i64,
        to_ms: i64,
        now: i64,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut out: Vec<(i64, serde_json::Value)> = Vec::new();
        if to_ms <= from_ms {
            return Ok(Vec::new());
        }
        let mut hour = from_ms - from_ms.rem_euclid(3_600_000);
        while hour < to_ms {
            for shard in 0..TRACE_BUCKET_SHARDS {
                let mut pages = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(TRACE_TIME_INDEX)
                    .key_condition_expression("time_bucket = :b AND ts BETWEEN :f AND :t")
                    .filter_expression("expires_at > :now")
                    .expression_attribute_values(":b", s(format!("{}#{shard}", hour_bucket(hour))))
                    .expression_attribute_values(":f", n(from_ms))
                    .expression_attribute_values(":t", n(to_ms - 1))
                    .expression_attribute_values(":now", n(now))
                    .into_paginator()
                    .items()
                    .send();
                while let Some(item) = pages.next().await {
                    let item = item.map_err(|e| StoreError::unavailable("traces", sdk_error(e)))?;
                    out.push((get_n(&item, "ts").unwrap_or(0), parse_trace(&item)?));
                }
            }
            hour += 3_600_000;
        }
        out.sort_by_key(|(ts, _)| *ts);
        Ok(out.into_iter().map(|(_, t)| t).collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::unavailable("traces", sdk_error(e)))
    }
}

/// Recent movies per user: partition `user_id`, sort `movie_id` (so repeats
/// collapse), `ts` of the latest event, `expires_at` TTL.
#[derive(Clone)]
pub struct DynamoHistory {
    client: Client,
    table: String,
}

impl DynamoHistory {
    pub fn new(client: Client, table: &str) -> Self {
        DynamoHistory {
            client,
            table: table.into(),
        }
    }
}

#[async_trait::async_trait]
impl UserHistory for DynamoHistory {
    async fn seen(&self, user_id: u64) -> Result<Vec<u64>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("user_id = :u")
            .expression_attribute_values(":u", n(user_id))
            .projection_expression("movie_id, ts")
            .into_paginator()
            .items()
            .send();
        let mut found = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| StoreError::unavailable("user_history", sdk_error(e)))?;
            if let Some(m) = get_n::<u64>(&item, "movie_id") {
                found.push((get_n::<i64>(&item, "ts").unwrap_or(0), m));
            }
        }
        // Most recent first, as the port promises.
        found.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(found.into_iter().map(|(_, m)| m).collect())
    }

    async fn append(&self, user_id: u64, movie_ids: &[u64], ts_ms: i64) -> Result<(), StoreError> {
        let events: Vec<_> = movie_ids.iter().map(|&m| (user_id, m, ts_ms)).collect();
        self.append_events(&events).await
    }

    async fn append_events(&self, events: &[(u64, u64, i64)]) -> Result<(), StoreError> {
        // One write per (user, movie), with its latest time (a batch may not name a key twice).
        let mut latest: HashMap<(u64, u64), i64> = HashMap::new();
        for &(u, m, ts) in events {
            let e = latest.entry((u, m)).or_insert(ts);
            *e = (*e).max(ts);
        }
        let mut puts: Vec<_> = latest.into_iter().collect();
        puts.sort_unstable();
        let requests = puts
            .into_iter()
            .map(|((u, m), ts)| {
                put_request([
                    ("user_id", n(u)),
                    ("movie_id", n(m)),
                    ("ts", n(ts)),
                    ("expires_at", n(ts / 1000 + HISTORY_TTL_SECS)),
                ])
            })
            .collect();
        batch_put(&self.client, &self.table, requests, "user_history").await
    }
}

fn put_request<const N: usize>(item: [(&str, AttributeValue); N]) -> WriteRequest {
    let mut put = PutRequest::builder();
    for (k, v) in item {
        put = put.item(k, v);
    }
    WriteRequest::builder()
        .put_request(put.build().expect("a put request has its item"))
        .build()
}

/// BatchWriteItem in chunks of 25 (several in flight), retrying unprocessed
/// items with backoff.
async fn batch_put(
    client: &Client,
    table: &str,
    requests: Vec<WriteRequest>,
    store: &'static str,
) -> Result<(), StoreError> {
    const IN_FLIGHT: usize = 8;
    let mut requests = requests.into_iter().peekable();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while tasks.len() < IN_FLIGHT && requests.peek().is_some() {
            let chunk: Vec<WriteRequest> = requests.by_ref().take(25).collect();
            let (client, table) = (client.clone(), table.to_string());
            tasks.spawn(async move { put_chunk(&client, &table, chunk, store).await });
        }
        match tasks.join_next().await {
            None => return Ok(()),
            Some(done) => done.map_err(|e| StoreError::unavailable(store, e))??,
        }
    }
}

async fn put_chunk(
    client: &Client,
    table: &str,
    mut pending: Vec<WriteRequest>,
    store: &'static str,
) -> Result<(), StoreError> {
    // BatchWriteItem may leave items unprocessed under throttling: retry those.
    for attempt in 0..8 {
        if pending.is_empty() {
            return Ok(());
        }
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
        }
        let out = client
            .batch_write_item()
            .request_items(table, pending)
            .send()
            .await
            .map_err(|e| StoreError::unavailable(store, sdk_error(e)))?;
        pending = out
            .unprocessed_items
            .and_then(|mut u| u.remove(table))
            .unwrap_or_default();
    }
    if pending.is_empty() {
        Ok(())
    } else {
        Err(StoreError::unavailable(
            store,
            format!("{} writes still unprocessed after retries", pending.len()),
        ))
    }
}

/// Ingest state in one table keyed by `pk`: `key#<event key>` items mark
/// handled records until `expires_at` (the table's TTL attribute; reads also
/// filter on it), `rate#<user>` items hold a user's rating window as JSON with
/// a `revision` that guards writes.
#[derive(Clone)]
pub struct DynamoIngestState {
    client: Client,
    table: String,
}

/// How long a rating window item lives after its last write.
pub const RATE_WINDOW_TTL_SECS: i64 = 2 * 86_400;

impl DynamoIngestState {
    pub fn new(client: Client, table: &str) -> Self {
        DynamoIngestState {
            client,
            table: table.into(),
        }
    }
}

#[async_trait::async_trait]
impl IngestState for DynamoIngestState {
    async fn seen_keys(&self, keys: &[String], now: i64) -> Result<HashSet<String>, StoreError> {
        let mut unique: Vec<&String> = keys.iter().collect();
        unique.sort_unstable();
        unique.dedup();
        let mut found = HashSet::new();
        for chunk in unique.chunks(100) {
            let mut pending: Vec<Item> = chunk
                .iter()
                .map(|k| HashMap::from([("pk".to_string(), s(format!("key#{k}")))]))
                .collect();
            for attempt in 0..8 {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
                }
                let req = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .projection_expression("pk, expires_at")
                    .consistent_read(true)
                    .build()
                    .expect("keys");
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, req)
                    .send()
                    .await
                    .map_err(|e| StoreError::unavailable("ingest_state", sdk_error(e)))?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    if get_n::<i64>(&item, "expires_at").is_some_and(|e| e > now) {
                        if let Some(k) = get_s(&item, "pk").and_then(|p| p.strip_prefix("key#")) {
                            found.insert(k.to_string());
                        }
                    }
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
            if !pending.is_empty() {
                return Err(StoreError::unavailable(
                    "ingest_state",
                    format!("{} reads still unprocessed after retries", pending.len()),
                ));
            }
        }
        Ok(found)
    }

    async fn remember_keys(&self, keys: &[String], expires_at: i64) -> Result<(), StoreError> {
        let mut unique: Vec<&String> = keys.iter().collect();
        unique.sort_unstable();
        unique.dedup();
        let requests = unique
            .into_iter()
            .map(|k| put_request([("pk", s(format!("key#{k}"))), ("expires_at", n(expires_at))]))
            .collect();
        batch_put(&self.client, &self.table, requests, "ingest_state").await
    }

    async fn rate_window(&self, user_id: u64) -> Result<RateWindow, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("rate#{user_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::unavailable("ingest_state", sdk_error(e)))?;
        let Some(item) = out.item else {
            return Ok(RateWindow::default());
        };
        Ok(RateWindow {
            entries: serde_json::from_str(get_s(&item, "entries").unwrap_or("[]"))
                .map_err(|e| StoreError::unavailable("ingest_state", e))?,
            arrivals: serde_json::from_str(get_s(&item, "arrivals").unwrap_or("[]"))
                .map_err(|e| StoreError::unavailable("ingest_state", e))?,
            revision: get_n(&item, "revision").unwrap_or(0),
        })
    }

    async fn save_rate_window(&self, user_id: u64, w: &RateWindow) -> Result<(), StoreError> {
        let latest = w.entries.iter().map(|e| e.0).max().unwrap_or(0);
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("rate#{user_id}")))
            .item(
                "entries",
                s(serde_json::to_string(&w.entries).expect("pairs")),
            )
            .item(
                "arrivals",
                s(serde_json::to_string(&w.arrivals).expect("pairs")),
            )
            .item("revision", n(w.revision + 1))
            .item(
                "expires_at",
                n((latest / 1000).max(chrono::Utc::now().timestamp()) + RATE_WINDOW_TTL_SECS),
            );
        put = if w.revision == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("revision = :r")
                .expression_attribute_values(":r", n(w.revision))
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict {
                    store: "ingest_state",
                    reason: format!(
                        "rate window of user {user_id} changed since revision {}",
                        w.revision
                    ),
                })
            }
            Err(e) => Err(StoreError::unavailable("ingest_state", sdk_error(e))),
        }
    }
}

/// Rollout state: one item (`id = "current"`) whose `revision` guards every
/// write with a condition expression.
#[derive(Clone)]
pub struct DynamoRollout {
    client: Client,
    table: String,
}

impl DynamoRollout {
    pub const KEY: &'static str = "current";

    pub fn new(client: Client, table: &str) -> Self {
        DynamoRollout {
            client,
            table: table.into(),
        }
    }
}

fn rollout_state(item: &Item) -> Option<RolloutState> {
    Some(RolloutState {
        strategy: get_s(item, "strategy").unwrap_or("fixed").parse().ok()?,
        served_version: get_s(item, "served_version")?.to_string(),
        candidate_version: get_s(item, "candidate_version").map(str::to_string),
        percentage: get_n(item, "percentage").unwrap_or(0.0),
        experiment_id: get_s(item, "experiment_id").map(str::to_string),
        salt: get_s(item, "salt").map(str::to_string),
        primary_policy: get_s(item, "primary_policy").map(str::to_string),
        candidate_policy: get_s(item, "candidate_policy").map(str::to_string),
        revision: get_n(item, "revision")?,
        updated_by: get_s(item, "updated_by").unwrap_or_default().to_string(),
        updated_at: get_n(item, "updated_at").unwrap_or(0),
    })
}

impl DynamoRollout {
    /// The change log item of `revision` (same table, key `change#<revision>`).
    fn change_key(revision: u64) -> String {
        format!("change#{revision:012}")
    }
}

#[async_trait::async_trait]
impl RolloutStore for DynamoRollout {
    async fn state(&self) -> Result<Option<RolloutState>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(Self::KEY))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::unavailable("rollout", sdk_error(e)))?;
        Ok(out.item.as_ref().and_then(rollout_state))
    }

    async fn set(
        &self,
        expected: u64,
        spec: &RolloutSpec,
        updated_by: &str,
    ) -> Result<RolloutState, StoreError> {
        let previous = self.state().await?;
        let state = spec.state(
            expected + 1,
            updated_by,
            chrono::Utc::now().timestamp_millis(),
        );
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", s(Self::KEY))
            .item("strategy", s(state.strategy.as_str()))
            .item("served_version", s(&state.served_version))
            .item("percentage", n(state.percentage))
            .item("revision", n(state.revision))
            .item("updated_by", s(&state.updated_by))
            .item("updated_at", n(state.updated_at));
        for (k, v) in [
            ("candidate_version", &state.candidate_version),
            ("experiment_id", &state.experiment_id),
            ("salt", &state.salt),
            ("primary_policy", &state.primary_policy),
            ("candidate_policy", &state.candidate_policy),
        ] {
            if let Some(v) = v {
                req = req.item(k, s(v));
            }
        }
        req = if expected == 0 {
            req.condition_expression("attribute_not_exists(id)")
        } else {
            req.condition_expression("revision = :expected")
                .expression_attribute_values(":expected", n(expected))
        };
        match req.send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                return Err(StoreError::Conflict {
                    store: "rollout",
                    reason: format!("another change was made after revision {expected} was read"),
                })
            }
            Err(e) => return Err(StoreError::unavailable("rollout", sdk_error(e))),
        }
        // The revision is ours now; its change-log entry follows. `previous`
        // was read before the guarded write, which proves it still held.
        let previous = previous.filter(|p| p.revision == expected);
        let change = RolloutChange {
            state: state.clone(),
            previous,
            reason: spec.reason.clone(),
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .item("id", s(Self::change_key(state.revision)))
            .item("body", s(serde_json::to_string(&change).expect("json")))
            .send()
            .await
            .map_err(|e| {
                StoreError::unavailable("rollout", format!("change log: {}", sdk_error(e)))
            })?;
        Ok(state)
    }

    async fn changes(&self, limit: usize) -> Result<Vec<RolloutChange>, StoreError> {
        let Some(current) = self.state().await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut rev = current.revision;
        while rev > 0 && out.len() < limit {
            let item = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("id", s(Self::change_key(rev)))
                .send()
                .await
                .map_err(|e| StoreError::unavailable("rollout", sdk_error(e)))?
                .item;
            if let Some(body) = item.as_ref().and_then(|i| get_s(i, "body")) {
                out.push(
                    serde_json::from_str(body).map_err(|e| {
                        StoreError::unavailable("rollout", format!("change log: {e}"))
                    })?,
                );
            }
            rev -= 1;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_buckets_and_shards_are_stable() {
        assert_eq!(hour_bucket(0), "1970-01-01T00");
        assert_eq!(hour_bucket(1_764_360_000_000), "2025-11-28T20");
        assert_eq!(shard_of("abc"), shard_of("abc"));
        let spread: std::collections::HashSet<u32> =
            (0..100).map(|i| shard_of(&format!("req-{i}"))).collect();
        assert_eq!(spread.len(), TRACE_BUCKET_SHARDS as usize);
    }
}
