//! Trending counts in DynamoDB: partition `hour` (UTC epoch hours), sort
//! `movie_id`, the count `n` grown by atomic `ADD` updates, `expires_at`
//! the table's TTL attribute. A window is one query per hour, in parallel.

use super::sdk_error;
use crate::ports::{StoreError, TrendingStore};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::collections::BTreeMap;

/// Updates (or hourly queries) in flight at once.
const IN_FLIGHT: usize = 16;

pub struct DynamoTrending {
    client: Client,
    table: String,
}

impl DynamoTrending {
    pub fn new(client: Client, table: &str) -> Self {
        DynamoTrending {
            client,
            table: table.into(),
        }
    }
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::unavailable("trending", e)
}

#[async_trait::async_trait]
impl TrendingStore for DynamoTrending {
    async fn add(&self, counts: &[(i64, u64, u32)], expires_at: i64) -> Result<(), StoreError> {
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in counts.chunks(counts.len().div_ceil(IN_FLIGHT).max(1)) {
            let (client, table, chunk) = (self.client.clone(), self.table.clone(), chunk.to_vec());
            tasks.spawn(async move {
                for (hour, movie, count) in chunk {
                    client
                        .update_item()
                        .table_name(&table)
                        .key("hour", n(hour))
                        .key("movie_id", n(movie))
                        .update_expression("ADD n :c SET expires_at = :e")
                        .expression_attribute_values(":c", n(count))
                        .expression_attribute_values(":e", n(expires_at))
                        .send()
                        .await
                        .map_err(|e| unavailable(sdk_error(e)))?;
                }
                Ok::<(), StoreError>(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.map_err(unavailable)??;
        }
        Ok(())
    }

    async fn window(&self, from_hour: i64, to_hour: i64) -> Result<Vec<(u64, u64)>, StoreError> {
        let hours: Vec<i64> = (from_hour..=to_hour).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in hours.chunks(hours.len().div_ceil(IN_FLIGHT).max(1)) {
            let (client, table, chunk) = (self.client.clone(), self.table.clone(), chunk.to_vec());
            tasks.spawn(async move {
                let mut found = Vec::new();
                for hour in chunk {
                    let mut pages = client
                        .query()
                        .table_name(&table)
                        .key_condition_expression("#h = :h")
                        .expression_attribute_names("#h", "hour")
                        .expression_attribute_names("#n", "n")
                        .expression_attribute_values(":h", n(hour))
                        .projection_expression("movie_id, #n")
                        .into_paginator()
                        .items()
                        .send();
                    while let Some(item) = pages.next().await {
                        let item = item.map_err(|e| unavailable(sdk_error(e)))?;
                        let get = |k: &str| {
                            item.get(k)
                                .and_then(|v| v.as_n().ok())
                                .and_then(|v| v.parse::<u64>().ok())
                        };
                        if let (Some(m), Some(c)) = (get("movie_id"), get("n")) {
                            found.push((m, c));
                        }
                    }
                }
                Ok::<_, StoreError>(found)
            });
        }
        let mut sums: BTreeMap<u64, u64> = BTreeMap::new();
        while let Some(r) = tasks.join_next().await {
            for (m, c) in r.map_err(unavailable)?? {
                *sums.entry(m).or_default() += c;
            }
        }
        Ok(sums.into_iter().filter(|&(_, c)| c > 0).collect())
    }
}
