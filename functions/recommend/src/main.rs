//! recommend: `GET /recommend/{user_id}?k=`, `GET /healthz`, `GET /metrics`
//! behind API Gateway. Init (once per container): settings, adapters, the
//! model version the rollout state names (or the newest), verified and loaded;
//! a background task picks up switches every `MOVIE_RECS_RELOAD_SECS` (30).

use lambda_http::{run, tracing, Error};
use shared::config::{Settings, Stores};
use shared::http::{recommend_router, sync_model, AppState, SyncOutcome};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let t0 = Instant::now();
    let settings = Settings::from_env()?;
    let stores = Stores::build(&settings).await?;
    let state = Arc::new(AppState::from_stores(&stores, settings.api_config()));
    match sync_model(&state, stores.registry.clone()).await {
        Ok(SyncOutcome::Loaded(v)) => {
            tracing::info!(version = %v, init_ms = t0.elapsed().as_secs_f64() * 1e3, "model loaded")
        }
        Ok(other) => tracing::warn!(outcome = ?other, "no model loaded; /recommend answers 503"),
        Err(e) => tracing::error!(error = %e, "no model loaded; /recommend answers 503"),
    }
    let every = std::env::var("MOVIE_RECS_RELOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30u64)
        .max(1);
    let (st, reg) = (state.clone(), stores.registry.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(every));
        tick.tick().await;
        loop {
            tick.tick().await;
            match sync_model(&st, reg.clone()).await {
                Ok(SyncOutcome::Loaded(v)) => tracing::info!(version = %v, "now serving"),
                Err(e) => {
                    tracing::error!(error = %e, "new version refused; the current one keeps serving")
                }
                _ => {}
            }
        }
    });
    run(recommend_router(state)).await
}
