//! recommend: `GET /recommend/{user_id}?k=`, `GET /healthz`, `GET /metrics`
//! behind API Gateway. Init (once per container): settings, the stores this
//! function uses, the model version the rollout state names (or the newest),
//! verified and loaded. Switches are picked up every `MOVIE_RECS_RELOAD_SECS`
//! (30), by a background loop and, since a frozen sandbox runs no timers,
//! from the request path too.

use lambda_http::{run, tracing, Error};
use shared::config::{Role, Settings};
use shared::http::serving::spawn_reload_loop;
use shared::http::{recommend_router, sync_model, AppState, SyncOutcome};
use shared::wiring::Stores;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let t0 = Instant::now();
    let settings = Settings::from_env()?;
    let stores = Stores::build(Role::Recommend, &settings).await?;
    let registry = stores.registry()?;
    let state = Arc::new(
        AppState::with_stores(stores.api_stores(), settings.api_config())
            .with_registry(registry.clone()),
    );
    match sync_model(&state, registry.clone()).await {
        Ok(SyncOutcome::Loaded(v)) => {
            tracing::info!(version = %v, init_ms = t0.elapsed().as_secs_f64() * 1e3, "model loaded")
        }
        Ok(other) => tracing::warn!(outcome = ?other, "no model loaded; /recommend answers 503"),
        Err(e) => tracing::error!(error = %e, "no model loaded; /recommend answers 503"),
    }
    let every = Duration::from_secs(settings.reload_secs);
    spawn_reload_loop(state.clone(), registry, every);
    run(recommend_router(state)).await
}
