//! batch: the steps of the batch recommendations state machine (Step
//! Functions, template.yaml): `plan` splits a run's users into shards,
//! `shard` (a Distributed Map runs one per shard) ranks one shard as
//! `GET /recommend` would and writes one Parquet object, `finish` writes the
//! run's manifest. Init: settings and the stores the steps use; the model is
//! loaded by the first step that needs it and kept while the function is warm.

use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use shared::batch::job::{BatchJob, BatchRequest};
use shared::config::{Role, Settings};
use shared::wiring::Stores;
use std::sync::Arc;

async fn handle(
    job: Arc<BatchJob>,
    event: LambdaEvent<BatchRequest>,
) -> Result<serde_json::Value, Error> {
    Ok(job.handle(event.payload).await?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let stores = Stores::build(Role::Batch, &settings).await?;
    let job = Arc::new(stores.batch_job(&settings)?);
    run(service_fn(move |ev| handle(job.clone(), ev))).await
}
