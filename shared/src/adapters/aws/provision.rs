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

/// Creates whatever does not exist yet. Idempotent.
pub async fn provision(cfg: &SdkConfig, names: &Names) -> Result<(), String> {
    let s3 = s3_client(cfg);
    if s3.head_bucket().bucket(&names.bucket).send().await.is_err() {
        s3.create_bucket()
            .bucket(&names.bucket)
            .send()
            .await
            .map_err(|e| format!("creating bucket {}: {}", names.bucket, sdk_error(e)))?;
    }
    let ddb = aws_sdk_dynamodb::Client::new(cfg);
    let existing = ddb
        .list_tables()
        .send()
        .await
        .map_err(|e| format!("listing tables: {}", sdk_error(e)))?
        .table_names
        .unwrap_or_default();
    let has = |t: &str| existing.iter().any(|e| e == t);
    use ScalarAttributeType::{N, S};
    if !has(&names.traces_table) {
        ddb.create_table()
            .table_name(&names.traces_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("request_id", S))
            .attribute_definitions(attr("time_bucket", S))
            .attribute_definitions(attr("ts", N))
            .key_schema(key("request_id", KeyType::Hash))
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
            )
            .send()
            .await
            .map_err(|e| format!("creating {}: {}", names.traces_table, sdk_error(e)))?;
    }
    if !has(&names.rollout_table) {
        ddb.create_table()
            .table_name(&names.rollout_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("id", S))
            .key_schema(key("id", KeyType::Hash))
            .send()
            .await
            .map_err(|e| format!("creating {}: {}", names.rollout_table, sdk_error(e)))?;
    }
    if !has(&names.history_table) {
        ddb.create_table()
            .table_name(&names.history_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("user_id", N))
            .attribute_definitions(attr("movie_id", N))
            .key_schema(key("user_id", KeyType::Hash))
            .key_schema(key("movie_id", KeyType::Range))
            .send()
            .await
            .map_err(|e| format!("creating {}: {}", names.history_table, sdk_error(e)))?;
    }
    if !has(&names.ingest_table) {
        ddb.create_table()
            .table_name(&names.ingest_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk", S))
            .key_schema(key("pk", KeyType::Hash))
            .send()
            .await
            .map_err(|e| format!("creating {}: {}", names.ingest_table, sdk_error(e)))?;
    }
    if !has(&names.trending_table) {
        ddb.create_table()
            .table_name(&names.trending_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("hour", N))
            .attribute_definitions(attr("movie_id", N))
            .key_schema(key("hour", KeyType::Hash))
            .key_schema(key("movie_id", KeyType::Range))
            .send()
            .await
            .map_err(|e| format!("creating {}: {}", names.trending_table, sdk_error(e)))?;
    }
    for t in [
        &names.traces_table,
        &names.history_table,
        &names.ingest_table,
        &names.trending_table,
    ] {
        ddb.update_time_to_live()
            .table_name(t)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("expires_at")
                    .build()
                    .expect("ttl spec"),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("enabling TTL on {t}: {}", sdk_error(e)))
            .or_else(|e| {
                if e.contains("already enabled") {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
    }
    Ok(())
}
