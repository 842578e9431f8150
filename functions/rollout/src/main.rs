//! rollout: `GET /rollout/status`, `GET /rollout/changes`, `POST /switch?model=`,
//! `POST /rollout` (fixed, canary, ab_test, shadow), `GET /experiment/analyze`,
//! `POST /experiment/promote`. API Gateway authorizes
//! the admin routes with IAM; the caller's ARN from the request context is
//! recorded as `updated_by` and in the change log. Init: settings, registry
//! (to verify versions before a change), the rollout store, and the traces
//! and lake the experiment analysis reads. The recommend function picks
//! changes up within `MOVIE_RECS_RELOAD_SECS`, which every answer to a
//! change reports as `effective_within_s`.

use lambda_http::{run, tracing, Error};
use shared::config::{Role, Settings};
use shared::http::lambda::caller_from_context;
use shared::http::rollout::router;
use shared::http::AppState;
use shared::wiring::Stores;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let stores = Stores::build(Role::Rollout, &settings).await?;
    let state = Arc::new(
        AppState::with_stores(stores.api_stores(), settings.api_config())
            .with_experiments(stores.experiment_job(&settings)?)
            .with_registry(stores.registry()?),
    );
    run(router(state).layer(axum::middleware::from_fn(caller_from_context))).await
}
