//! trace: `GET /trace/{request_id}`, the stored provenance of a response
//! (IAM-authorized in API Gateway). Init: settings and the trace store.

use lambda_http::{run, tracing, Error};
use shared::config::{Role, Settings};
use shared::http::{trace_router, AppState};
use shared::wiring::Stores;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let stores = Stores::build(Role::Trace, &settings).await?;
    let state = Arc::new(AppState::with_stores(
        stores.api_stores(),
        settings.api_config(),
    ));
    run(trace_router(state)).await
}
