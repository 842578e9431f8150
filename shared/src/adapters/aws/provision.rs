//! Creates the bucket and tables that template.yaml declares, with the same
//! keys, index and TTL attributes, on an emulator (moto, LocalStack) for tests
//! and local trials. In AWS, the SAM stack owns these resources.

use super::dynamo::TRACE_TIME_INDEX;
use super::{s3_client, sdk_error, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

/// Names of the resources, as the functions read them from the environment.
#[derive(Clone, Debug)]
pub struct Names {
    pub bucket: String,
    pub traces_table: String,
    pub rollout_table: String,
    pub history_table: String,
    pub ingest_table: String,
    pub trending_table: String,
}

fn attr(name: &str, t: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(t)
        .build()
        .expect("attribute definition")
}

fn key(name: &str, t: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(t)
        .build()
        .expect("key schema element")
}

/// A step of provisioning that failed, with the service's answer.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {detail}")]
pub struct ProvisionError {
    pub step: String,
    pub detail: String,
}

impl ProvisionError {
    fn new<E, R>(step: impl Into<String>, e: aws_sdk_s3::error::SdkError<E, R>) -> Self
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        ProvisionError {
            step: step.into(),
            detail: sdk_error(e),
        }
    }
}

/// One table's keys: the hash key, the range key if any, and the time
/// index (traces only), as template.yaml declares them.
struct TableSpec<'a> {
    name: &'a str,
    hash: (&'static str, ScalarAttributeType),
    range: Option<(&'static str, ScalarAttributeType)>,
    time_index: bool,
    /// Items expire at `expires_at`.
    ttl: bool,
}

fn tables(names: &Names) -> [TableSpec<'_>; 5] {
    use ScalarAttributeType::{N, S};
    let spec = |name, hash, range, ttl| TableSpec {
        name,
        hash,
        range,
        time_index: false,
        ttl,
    };
    [
        TableSpec {
            time_index: true,
            ..spec(&names.traces_table, ("request_id", S), None, true)
        },
        spec(&names.rollout_table, ("id", S), None, false),
        spec(
            &names.history_table,
            ("user_id", N),
            Some(("movie_id", N)),
            true,
        ),
        spec(&names.ingest_table, ("pk", S), None, true),
        spec(
            &names.trending_table,
            ("hour", N),
            Some(("movie_id", N)),
            true,
        ),
    ]
}

/// Creates whatever does not exist yet. Idempotent.
pub async fn provision(cfg: &SdkConfig, names: &Names) -> Result<(), ProvisionError> {
    let s3 = s3_client(cfg);
    if s3.head_bucket().bucket(&names.bucket).send().await.is_err() {
        s3.create_bucket()
            .bucket(&names.bucket)
            .send()
            .await
            .map_err(|e| ProvisionError::new(format!("creating bucket {}", names.bucket), e))?;
    }
    let ddb = aws_sdk_dynamodb::Client::new(cfg);
    let existing = ddb
        .list_tables()
        .send()
        .await
        .map_err(|e| ProvisionError::new("listing tables", e))?
        .table_names
        .unwrap_or_default();
    for t in tables(names) {
        if !existing.iter().any(|e| e == t.name) {
            create_table(&ddb, &t).await?;
        }
        if t.ttl {
            enable_ttl(&ddb, t.name).await?;
        }
    }
    Ok(())
}

async fn create_table(
    ddb: &aws_sdk_dynamodb::Client,
    t: &TableSpec<'_>,
) -> Result<(), ProvisionError> {
    let mut req = ddb
        .create_table()
        .table_name(t.name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(t.hash.0, t.hash.1.clone()))
        .key_schema(key(t.hash.0, KeyType::Hash));
    if let Some((name, ty)) = &t.range {
        req = req
            .attribute_definitions(attr(name, ty.clone()))
            .key_schema(key(name, KeyType::Range));
    }
    if t.time_index {
        req = req
            .attribute_definitions(attr("time_bucket", ScalarAttributeType::S))
            .attribute_definitions(attr("ts", ScalarAttributeType::N))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(TRACE_TIME_INDEX)
                    .key_schema(key("time_bucket", KeyType::Hash))
                    .key_schema(key("ts", KeyType::Range))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .expect("index"),
            );
    }
    req.send()
        .await
        .map_err(|e| ProvisionError::new(format!("creating {}", t.name), e))?;
    Ok(())
}

/// Turns on expiry at `expires_at` (already on counts as done).
async fn enable_ttl(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), ProvisionError> {
    let out = ddb
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()
                .expect("ttl spec"),
        )
        .send()
        .await;
    match out.map_err(|e| ProvisionError::new(format!("enabling TTL on {table}"), e)) {
        Err(e) if !e.detail.contains("already enabled") => Err(e),
        _ => Ok(()),
    }
}
