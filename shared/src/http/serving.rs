//! What serves: the loaded model versions, the rollout state that splits
//! users between them and the exposure controller's adjustments
//! ([`Serving`], swapped whole), and [`sync_model`], which makes it match the
//! rollout store and the newest adjustments. A sync is bounded in time and
//! never runs twice at once, so a hung registry call cannot stop later
//! reloads. Every instance that synced to the same adjustments version ranks
//! the `exposure` policy alike.

use super::AppState;
use crate::artifact::AdjustmentsPointer;
use crate::domain::arm::Arm;
use crate::domain::exposure_control::Adjustments;
use crate::domain::strategy::Strategy;
use crate::http::ApiError;
use crate::ports::{AdjustmentsError, ModelStore, RegistryError, RolloutState, StoreError};
use crate::scoring::{LoadError, ServingModel};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Longest a sync may take (registry listing, manifest, files, ONNX load)
/// before the reload loop gives up on it and tries again next tick.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a sync changed nothing; whatever served keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The process has no rollout store.
    #[error(transparent)]
    NotConfigured(#[from] ApiError),
    /// Reading the rollout state failed.
    #[error(transparent)]
    Rollout(#[from] StoreError),
    /// Listing or fetching (verifying) a version failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A fetched version could not be loaded.
    #[error("version {version}: {source}")]
    Load {
        version: String,
        #[source]
        source: LoadError,
    },
    /// The newest adjustments could not be read or verified.
    #[error(transparent)]
    Adjustments(#[from] AdjustmentsError),
    /// The sync took longer than [`SYNC_TIMEOUT`].
    #[error("sync gave up after {} s", SYNC_TIMEOUT.as_secs())]
    TimedOut,
    /// The blocking task that loads models panicked or was cancelled.
    #[error("sync task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The models serving now and the rollout state that split users between
/// them: one immutable value, swapped whole. A request takes one handle and
/// scores with the version its arm names, whatever is swapped in meanwhile.
#[derive(Clone)]
pub struct Serving {
    /// `None` when no rollout state was ever written (the newest version serves).
    pub rollout: Option<RolloutState>,
    pub primary: Arc<ServingModel>,
    /// Loaded under `canary`, `ab_test` and `shadow`.
    pub candidate: Option<Arc<ServingModel>>,
    /// The exposure controller's newest adjustments; `None` before the
    /// first (the `exposure` policy then ranks as its base).
    pub adjustments: Option<Arc<ServedAdjustments>>,
}

/// Adjustments serving now, as each loaded model's vector (built once per
/// adjustments version and model, not per request).
pub struct ServedAdjustments {
    pub pointer: AdjustmentsPointer,
    adjustments: Arc<Adjustments>,
    primary: Arc<[f32]>,
    candidate: Option<Arc<[f32]>>,
}

impl ServedAdjustments {
    /// The vectors of `adjustments` for the models of `serving`.
    fn build(
        pointer: AdjustmentsPointer,
        adjustments: Arc<Adjustments>,
        primary: &ServingModel,
        candidate: Option<&ServingModel>,
    ) -> Self {
        ServedAdjustments {
            primary: primary.adjustment_vector(&adjustments).into(),
            candidate: candidate.map(|c| c.adjustment_vector(&adjustments).into()),
            pointer,
            adjustments,
        }
    }

    /// The same adjustments for other models.
    fn rebuilt(&self, primary: &ServingModel, candidate: Option<&ServingModel>) -> Self {
        Self::build(
            self.pointer.clone(),
            self.adjustments.clone(),
            primary,
            candidate,
        )
    }
}

/// The adjustments a request's arm ranks the `exposure` policy with.
#[derive(Clone)]
pub struct ArmAdjustments {
    /// `adj-000042`, for provenance and traces.
    pub name: String,
    /// Net adjustment per item index of the arm's model.
    pub net: Arc<[f32]>,
}

/// Which model a request gets.
#[derive(Clone)]
pub struct Assignment {
    pub model: Arc<ServingModel>,
    pub arm: Arm,
    /// The response's `variant`: the arm under `canary` and `ab_test`, else null.
    pub variant: Option<Arm>,
    /// The candidate to score in the shadow of the served list.
    pub shadow: Option<Arc<ServingModel>>,
    pub strategy: Strategy,
    pub experiment_id: Option<String>,
    /// The arm's re-ranking policy (`name[:key=value]`), if the rollout sets one.
    pub policy: Option<String>,
    /// The controller's adjustments for the arm's model, once there are any.
    pub adjustments: Option<ArmAdjustments>,
}

impl Serving {
    /// The arm of `user_id`: a stable hash of (salt, user) into 10,000 buckets.
    pub fn assign(&self, user_id: u64) -> Assignment {
        let primary = Assignment {
            model: self.primary.clone(),
            arm: Arm::Primary,
            variant: None,
            shadow: None,
            strategy: Strategy::Fixed,
            experiment_id: None,
            policy: self.rollout.as_ref().and_then(|r| r.primary_policy.clone()),
            adjustments: self.adjustments.as_ref().map(|a| ArmAdjustments {
                name: a.pointer.name.clone(),
                net: a.primary.clone(),
            }),
        };
        let (Some(r), Some(cand)) = (&self.rollout, &self.candidate) else {
            return Assignment {
                strategy: self
                    .rollout
                    .as_ref()
                    .map_or(Strategy::Fixed, |r| r.strategy),
                ..primary
            };
        };
        let salt = r
            .salt
            .as_deref()
            .or(r.experiment_id.as_deref())
            .unwrap_or_default();
        let hit = crate::domain::experiment::in_candidate(salt, user_id, r.percentage);
        let base = Assignment {
            strategy: r.strategy,
            experiment_id: r.experiment_id.clone(),
            ..primary
        };
        match r.strategy {
            Strategy::Canary | Strategy::AbTest if hit => Assignment {
                model: cand.clone(),
                arm: Arm::Candidate,
                variant: Some(Arm::Candidate),
                policy: r.candidate_policy.clone(),
                adjustments: self.adjustments.as_ref().and_then(|a| {
                    Some(ArmAdjustments {
                        name: a.pointer.name.clone(),
                        net: a.candidate.clone()?,
                    })
                }),
                ..base
            },
            Strategy::Canary | Strategy::AbTest => Assignment {
                variant: Some(Arm::Primary),
                ..base
            },
            Strategy::Shadow if hit => Assignment {
                shadow: Some(cand.clone()),
                ..base
            },
            _ => base,
        }
    }

    /// The versions loaded, primary first.
    pub fn versions(&self) -> Vec<String> {
        std::iter::once(&self.primary)
            .chain(self.candidate.iter())
            .map(|m| m.version().to_string())
            .collect()
    }
}

/// Outcome of [`sync_model`].
#[derive(Debug, PartialEq)]
pub enum SyncOutcome {
    /// What serves is what the rollout state names (the primary version).
    Unchanged(String),
    /// New versions or a new split were verified, loaded and swapped in
    /// (the primary version).
    Loaded(String),
    /// Nothing to load (empty registry).
    NoVersion,
    /// Another sync of this process is still running; this one did nothing.
    Busy,
}

/// Clears the in-flight flag when a sync ends, however it ends.
struct InFlight<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Makes what serves match the rollout state: its primary version (or,
/// when no state was written, the newest in the registry) and, under
/// canary, A/B and shadow, its candidate; both loaded before either serves.
/// A version that fails verification or loading is refused with the reason,
/// and whatever was serving keeps serving. Loaded versions are reused.
/// Registry I/O and model loading run on the blocking pool; at most one
/// sync runs at a time per process ([`SyncOutcome::Busy`] otherwise), and
/// a sync gives up after [`SYNC_TIMEOUT`].
pub async fn sync_model(
    st: &AppState,
    registry: Arc<dyn ModelStore>,
) -> Result<SyncOutcome, SyncError> {
    if st
        .syncing
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Ok(SyncOutcome::Busy);
    }
    let guard = InFlight(&st.syncing);
    st.mark_synced();
    let out = tokio::time::timeout(SYNC_TIMEOUT, async {
        let models = sync_once(st, registry).await;
        // Adjustments follow whatever serves now, even when a model was
        // refused (the current one keeps serving, with the newest prices).
        if let Err(e) = sync_adjustments(st).await {
            tracing::error!(error = %e, "exposure adjustments refused; the current ones keep serving");
        }
        models
    })
    .await
    .map_err(|_| SyncError::TimedOut)?;
    drop(guard);
    out
}

/// Makes the adjustments serving match the newest in the adjustments store
/// (when the process has one and a model serves): a new version is
/// fetched, checksum-verified and swapped in whole; a refused one leaves
/// the current adjustments serving.
pub async fn sync_adjustments(st: &AppState) -> Result<Option<String>, SyncError> {
    let (Some(store), Some(current)) = (st.exposure_store(), st.serving()) else {
        return Ok(None);
    };
    let Some(pointer) = store.latest().await? else {
        return Ok(None);
    };
    if current
        .adjustments
        .as_ref()
        .is_some_and(|a| a.pointer == pointer)
    {
        return Ok(Some(pointer.name));
    }
    let adjustments = Arc::new(store.fetch(&pointer).await?);
    let name = pointer.name.clone();
    let built = {
        let c = current.clone();
        tokio::task::spawn_blocking(move || {
            ServedAdjustments::build(pointer, adjustments, &c.primary, c.candidate.as_deref())
        })
        .await?
    };
    // Swap only if what serves did not change meanwhile (a sync is the
    // only writer, and at most one runs at a time).
    st.set_serving(Serving {
        adjustments: Some(Arc::new(built)),
        ..(*current).clone()
    });
    tracing::info!(adjustments = %name, "exposure adjustments now serving");
    Ok(Some(name))
}

async fn sync_once(st: &AppState, registry: Arc<dyn ModelStore>) -> Result<SyncOutcome, SyncError> {
    let rollout = st.rollout()?.state().await?;
    let current = st.serving();
    if let (Some(cur), Some(r)) = (&current, &rollout) {
        if cur.rollout.as_ref() == Some(r) {
            return Ok(SyncOutcome::Unchanged(cur.primary.version().to_string()));
        }
    }
    type Loaded = (SyncOutcome, Option<Serving>);
    let outcome = tokio::task::spawn_blocking(move || -> Result<Loaded, SyncError> {
        let primary = match rollout.as_ref().map(|r| r.served_version.clone()) {
            Some(v) => v,
            None => match registry.list_versions()?.pop() {
                Some(v) => v,
                None => return Ok((SyncOutcome::NoVersion, None)),
            },
        };
        let candidate = rollout
            .as_ref()
            .filter(|r| r.strategy.has_candidate())
            .and_then(|r| r.candidate_version.clone());
        if rollout.is_none()
            && current
                .as_ref()
                .is_some_and(|c| c.rollout.is_none() && c.primary.version() == primary)
        {
            return Ok((SyncOutcome::Unchanged(primary), None));
        }
        let loaded: Vec<Arc<ServingModel>> = current
            .iter()
            .flat_map(|c| std::iter::once(c.primary.clone()).chain(c.candidate.clone()))
            .collect();
        let load = |v: &str| -> Result<Arc<ServingModel>, SyncError> {
            if let Some(m) = loaded.iter().find(|m| m.version() == v) {
                return Ok(m.clone());
            }
            let art = registry.fetch(v)?;
            let model = ServingModel::load(&art).map_err(|source| SyncError::Load {
                version: v.to_string(),
                source,
            })?;
            Ok(Arc::new(model))
        };
        let primary_model = load(&primary)?;
        // A policy experiment may run one version in both arms.
        let candidate_model = match candidate.as_deref() {
            Some(c) if c == primary => Some(primary_model.clone()),
            Some(c) => Some(load(c)?),
            None => None,
        };
        // The adjustments serving so far, for the models now loaded.
        let adjustments = current
            .as_ref()
            .and_then(|c| c.adjustments.as_ref())
            .map(|a| Arc::new(a.rebuilt(&primary_model, candidate_model.as_deref())));
        let serving = Serving {
            primary: primary_model,
            candidate: candidate_model,
            rollout,
            adjustments,
        };
        Ok((SyncOutcome::Loaded(primary), Some(serving)))
    })
    .await??;
    let (outcome, serving) = outcome;
    if let Some(serving) = serving {
        st.set_serving(serving);
    }
    Ok(outcome)
}

/// Syncs every `every` from now on, in the background, logging what changed.
/// (In Lambda a frozen sandbox runs no timers; [`super::AppState::sync_if_due`]
/// also syncs from the request path.)
pub fn spawn_reload_loop(st: Arc<AppState>, registry: Arc<dyn ModelStore>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            log_sync(sync_model(&st, registry.clone()).await);
        }
    });
}

/// Logs a sync's outcome: a new version as info, a refusal as an error.
pub fn log_sync(out: Result<SyncOutcome, SyncError>) {
    match out {
        Ok(SyncOutcome::Loaded(v)) => tracing::info!(version = %v, "now serving"),
        Err(e) => tracing::error!(error = %e, "new version refused; the current one keeps serving"),
        Ok(SyncOutcome::Busy) => tracing::debug!("a sync is still running"),
        Ok(_) => {}
    }
}
