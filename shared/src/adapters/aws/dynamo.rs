//! DynamoDB: traces (TTL, time-bucket index), rollout state (one item,
//! conditional writes), user history (recent movies per user, TTL).
//! Key schemas are in [`super::provision`] and in template.yaml.

use super::sdk_error;
use crate::ports::{RolloutState, RolloutStore, StoreError, TraceStore, UserHistory};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;

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
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::unavailable("traces", sdk_error(e)))
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
        let mut unique = movie_ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let expires = ts_ms / 1000 + HISTORY_TTL_SECS;
        for chunk in unique.chunks(25) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|m| {
                    let put = PutRequest::builder()
                        .item("user_id", n(user_id))
                        .item("movie_id", n(m))
                        .item("ts", n(ts_ms))
                        .item("expires_at", n(expires))
                        .build()
                        .expect("user_history put request has its item");
                    WriteRequest::builder().put_request(put).build()
                })
                .collect();
            // BatchWriteItem may leave items unprocessed under throttling: retry those.
            for attempt in 0..8 {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| StoreError::unavailable("user_history", sdk_error(e)))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .unwrap_or_default();
            }
            if !pending.is_empty() {
                return Err(StoreError::unavailable(
                    "user_history",
                    format!("{} writes still unprocessed after retries", pending.len()),
                ));
            }
        }
        Ok(())
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
        strategy: get_s(item, "strategy").unwrap_or("fixed").to_string(),
        served_version: get_s(item, "served_version")?.to_string(),
        revision: get_n(item, "revision")?,
        updated_by: get_s(item, "updated_by").unwrap_or_default().to_string(),
        updated_at: get_n(item, "updated_at").unwrap_or(0),
    })
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

    async fn switch(
        &self,
        expected: u64,
        version: &str,
        updated_by: &str,
    ) -> Result<RolloutState, StoreError> {
        let state = RolloutState {
            strategy: "fixed".into(),
            served_version: version.into(),
            revision: expected + 1,
            updated_by: updated_by.into(),
            updated_at: chrono::Utc::now().timestamp_millis(),
        };
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", s(Self::KEY))
            .item("strategy", s(&state.strategy))
            .item("served_version", s(&state.served_version))
            .item("revision", n(state.revision))
            .item("updated_by", s(&state.updated_by))
            .item("updated_at", n(state.updated_at));
        req = if expected == 0 {
            req.condition_expression("attribute_not_exists(id)")
        } else {
            req.condition_expression("revision = :expected")
                .expression_attribute_values(":expected", n(expected))
        };
        match req.send().await {
            Ok(_) => Ok(state),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict {
                    store: "rollout",
                    reason: format!(
                        "another switch changed the state after revision {expected} was read"
                    ),
                })
            }
            Err(e) => Err(StoreError::unavailable("rollout", sdk_error(e))),
        }
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
