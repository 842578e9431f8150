//! `movie-recs serve`: every route in one process on the local stores,
//! with the reload loop and the scheduled canary and audit jobs.

use crate::profile;
use crate::train::SyntheticArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use trainer::pipeline::{train_and_publish, TrainOptions};

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Data folder: registry/ (models) and movie-recs.db (traces, history, rollout).
    #[arg(long, default_value = ".movie-recs")]
    data_dir: PathBuf,
    /// Days to keep traces.
    #[arg(long, default_value_t = 30)]
    trace_ttl_days: i64,
    /// Seconds between checks for a new served version.
    #[arg(long, default_value_t = 5)]
    reload_secs: u64,
    /// Minutes between runs of the automated canary (promote, roll back or
    /// ramp a running canary or A/B test, as the scheduled canary function
    /// does in AWS); 0 turns it off.
    #[arg(long, default_value_t = 60)]
    canary_every_minutes: u64,
    /// Minutes between audits of the last that many minutes (fairness and
    /// spam metrics, the report, and the exposure controller's next
    /// adjustments, as the scheduled audit function does in AWS); 0 turns
    /// it off.
    #[arg(long, default_value_t = 60)]
    audit_every_minutes: u64,
    /// Requests per minute one client address may send (429 with
    /// Retry-After beyond it); 0: no limit.
    #[arg(long, env = "MOVIE_RECS_CLIENT_RATE_LIMIT", default_value_t = 0)]
    client_rate_limit: u32,
    /// Connections open at once; more are closed as they are accepted.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a connection has to send a request's headers.
    #[arg(long, default_value_t = 10)]
    header_timeout_secs: u64,
    /// Seconds a request (its body included) has to finish (else 408).
    #[arg(long, default_value_t = 30)]
    request_timeout_secs: u64,
    /// Write a CPU flamegraph of the whole run here on shutdown (builds
    /// with `--features profiling` only; sampled with SIGPROF, no perf needed).
    #[arg(long, hide = true)]
    profile_svg: Option<PathBuf>,
    /// Shape of the synthetic data trained on when the registry is empty.
    #[command(flatten)]
    synthetic: SyntheticArgs,
}

/// The settings of `movie-recs serve`: every store in `--data-dir` (the
/// environment's store variables are ignored, so a shell set up for the AWS
/// CLI commands never points the local server at AWS), everything else from
/// the environment, `--trace-ttl-days` and `--reload-secs` from the flags.
pub(crate) fn serve_settings(a: &ServeArgs) -> Result<shared::config::Settings> {
    use shared::config::{vars, Kind};
    let d = |p: &str| a.data_dir.join(p).display().to_string();
    let local: std::collections::HashMap<&str, String> = [
        ("MOVIE_RECS_REGISTRY", d("registry")),
        ("MOVIE_RECS_DB", d("movie-recs.db")),
        ("MOVIE_RECS_LAKE", d("lake")),
        ("MOVIE_RECS_METRICS", d("metrics.jsonl")),
        ("MOVIE_RECS_REPORTS", d("reports")),
        ("MOVIE_RECS_EXPOSURE", d("exposure")),
        ("MOVIE_RECS_BATCH", d("batch")),
        ("MOVIE_RECS_TRACE_TTL_DAYS", a.trace_ttl_days.to_string()),
        ("MOVIE_RECS_RELOAD_SECS", a.reload_secs.max(1).to_string()),
    ]
    .into_iter()
    .collect();
    let from_data_dir = |k: &str| {
        local.contains_key(k) || vars::var(k).is_some_and(|v| matches!(v.kind, Kind::Store(_)))
    };
    Ok(shared::config::Settings::from_lookup(
        |k| match from_data_dir(k) {
            true => local.get(k).cloned(),
            false if k.starts_with("AWS_LAMBDA_") => None,
            false => std::env::var(k).ok(),
        },
    )?)
}

/// Ctrl-C or SIGTERM (what `kill` and container runtimes send).
pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    eprintln!("shutting down: finishing requests in flight");
}

pub(crate) fn serve(a: ServeArgs) -> Result<()> {
    use shared::config::Role;
    use shared::http::serving::spawn_reload_loop;
    use shared::http::{sync_model, AppState};
    use shared::wiring::Stores;
    use std::sync::Arc;

    // Log lines go through a buffer written by a thread of their own: a
    // request never waits on stderr (when the buffer is full, lines are
    // dropped and counted by tracing-appender, never the request blocked).
    let (log_writer, _log_guard) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .json()
        .with_writer(log_writer)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("creating --data-dir {}", a.data_dir.display()))?;
    let settings = serve_settings(&a)?;
    let profiler = profile::start(a.profile_svg.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let stores = Stores::build(Role::Serve, &settings).await?;
        let reg = stores.registry()?;
        if reg.list_versions()?.is_empty() {
            eprintln!(
                "no model in {}: training one on the built-in synthetic data first",
                settings.registry
            );
            let version = train_first_model(reg.clone(), &a.synthetic).await?;
            eprintln!("published {version}");
        }
        let (addr, exposed) = listen_addr(&a.addr, settings.admin_token.is_some())?;
        let api = shared::http::ApiConfig {
            events_need_admin: exposed,
            ..settings.api_config()
        };
        let state = Arc::new(
            AppState::with_stores(stores.api_stores(), api)
                .with_registry(reg.clone())
                .with_experiments(stores.experiment_job(&settings)?)
                .with_ingestor(Arc::new(stores.ingestor(&settings)?))
                .with_trace_writer(shared::http::trace_writer::DEFAULT_CAPACITY),
        );
        match sync_model(&state, reg.clone()).await {
            Ok(shared::http::SyncOutcome::Loaded(v)) => eprintln!("serving model {v}"),
            Ok(other) => eprintln!("no model loaded: {other:?}"),
            Err(e) => eprintln!("error: no model loaded: {e}"),
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {}", a.addr))?;
        let addr = listener.local_addr()?;
        print_tour(addr, state.config.admin_token.is_none());
        spawn_reload_loop(
            state.clone(),
            reg.clone(),
            std::time::Duration::from_secs(settings.reload_secs),
        );
        if let (Some(job), every) = (state.experiments.clone(), a.canary_every_minutes) {
            if every > 0 {
                eprintln!("  automated canary every {every} min: curl -s http://{addr}/experiment/analyze");
                spawn_canary(every, job, state.clone(), reg.clone());
            }
        }
        if a.audit_every_minutes > 0 {
            let every = a.audit_every_minutes;
            eprintln!(
                "  audit (and exposure controller) every {every} min: reports in {}",
                settings.reports
            );
            let job = Arc::new(stores.audit_job(&settings)?);
            spawn_audit(every, job, state.clone(), reg.clone());
        }
        if a.client_rate_limit > 0 {
            eprintln!(
                "  at most {} requests per minute per client address",
                a.client_rate_limit
            );
        }
        let opts = shared::http::server::ServerOptions {
            header_timeout: std::time::Duration::from_secs(a.header_timeout_secs.max(1)),
            request_timeout: std::time::Duration::from_secs(a.request_timeout_secs.max(1)),
            max_connections: a.max_connections.max(1),
            client_rate_limit: a.client_rate_limit,
            ..Default::default()
        };
        shared::http::server::serve(listener, state.clone(), opts, shutdown_signal()).await?;
        // Every response is answered: write the traces still queued.
        if let Some(w) = &state.trace_writer {
            w.close().await;
        }
        anyhow::Ok(())
    })?;
    profile::finish(profiler, a.profile_svg.as_deref())
}

/// Trains a model on the built-in synthetic data with the defaults chosen
/// for it and publishes it (a fresh machine's `make run`); its version.
async fn train_first_model(
    reg: std::sync::Arc<dyn shared::ports::ModelStore>,
    synthetic: &SyntheticArgs,
) -> Result<String> {
    let ds = shared::data::load("synthetic", &synthetic.config())?;
    let out = tokio::task::spawn_blocking(move || {
        let chosen = trainer::defaults::for_data(&ds);
        train_and_publish(
            reg.as_ref(),
            &ds,
            &TrainOptions {
                hp: chosen.hp,
                version: None,
                force: false,
                progress: true,
                defaults: Some(shared::artifact::DefaultsChoice {
                    preset: chosen.preset.into(),
                    reason: chosen.reason,
                    overridden: Vec::new(),
                }),
            },
        )
    })
    .await??;
    Ok(out.manifest.version)
}

/// The address to listen on and whether it is beyond loopback. Beyond
/// loopback anyone may connect: the admin token is required, and posting
/// events needs it too.
fn listen_addr(addr: &str, has_admin_token: bool) -> Result<(std::net::SocketAddr, bool)> {
    let parsed: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("--addr {addr}: expected IP:PORT"))?;
    let exposed = !parsed.ip().is_loopback();
    if exposed && !has_admin_token {
        bail!(
            "refusing to listen on {parsed} (beyond loopback) without MOVIE_RECS_ADMIN_TOKEN: \
             anyone who can reach it could post events and read traces; set the token, or use --addr 127.0.0.1:PORT"
        );
    }
    Ok((parsed, exposed))
}

/// The first requests to try, printed when the server listens.
fn print_tour(addr: std::net::SocketAddr, no_admin_token: bool) {
    eprintln!("listening on http://{addr}");
    eprintln!("  curl -s http://{addr}/recommend/1?k=5");
    eprintln!("  curl -s http://{addr}/healthz");
    eprintln!("  curl -s http://{addr}/metrics");
    eprintln!("  curl -s http://{addr}/trace/<X-Request-ID of a response>");
    eprintln!("  curl -s http://{addr}/rollout/status");
    eprintln!("  curl -s -XPOST http://{addr}/events -H 'Content-Type: application/json' -d '[{{\"type\":\"watch\",\"user_id\":1,\"movie_id\":2,\"ts\":'$(date +%s000)'}}]'");
    if no_admin_token {
        eprintln!("  (admin routes POST /switch, POST /rollout, POST /experiment/promote: set MOVIE_RECS_ADMIN_TOKEN to enable)");
    }
}

/// The automated canary every `every` minutes, as the canary function runs on its schedule.
fn spawn_canary(
    every: u64,
    job: std::sync::Arc<shared::canary::job::ExperimentJob>,
    st: std::sync::Arc<shared::http::AppState>,
    reg: std::sync::Arc<dyn shared::ports::ModelStore>,
) {
    every_minutes(every, st, reg, move |now| {
        let job = job.clone();
        async move {
            match job
                .run(now, job.window_minutes, false, "canary-automation")
                .await
            {
                Ok(o) if o.report.alarm => {
                    tracing::warn!(target: "canary", action = o.report.action.as_str(),
                    rationale = %o.report.rationale, applied = o.applied.is_some(), "ALARM: canary rolled back")
                }
                Ok(o) => tracing::info!(target: "canary", action = o.report.action.as_str(),
                    rationale = %o.report.rationale, applied = o.applied.is_some(), "canary run"),
                Err(e) => tracing::warn!(target: "canary", error = %e, "canary run failed"),
            }
        }
    });
}

/// The audit (and the exposure controller) every `every` minutes over the
/// window just ended, as the audit function runs on its schedule.
fn spawn_audit(
    every: u64,
    job: std::sync::Arc<shared::audit::job::AuditJob>,
    st: std::sync::Arc<shared::http::AppState>,
    reg: std::sync::Arc<dyn shared::ports::ModelStore>,
) {
    every_minutes(every, st, reg, move |now| {
        let job = job.clone();
        async move {
            match job.run(now - every as i64 * 60_000, now, now).await {
                Ok(o) => tracing::info!(target: "audit", passed = o.report.passed,
                    adjustments = ?o.control.as_ref().and_then(|c| c.name()), "audit run"),
                Err(e) => tracing::warn!(target: "audit", error = %e, "audit run failed"),
            }
        }
    });
}

/// Runs `job` (given the time, epoch ms) every `minutes` in the background,
/// the first time one period from now, then syncs what serves: what the job
/// changed (a rollout, adjustments) serves from the next request.
pub(crate) fn every_minutes<F, Fut>(
    minutes: u64,
    st: std::sync::Arc<shared::http::AppState>,
    reg: std::sync::Arc<dyn shared::ports::ModelStore>,
    mut job: F,
) where
    F: FnMut(i64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use shared::http::serving::log_sync;
    tokio::spawn(async move {
        let period = std::time::Duration::from_secs(minutes * 60);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tick.tick().await;
            job(chrono::Utc::now().timestamp_millis()).await;
            log_sync(shared::http::sync_model(&st, reg.clone()).await);
        }
    });
}
