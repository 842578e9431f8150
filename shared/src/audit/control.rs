//! The exposure controller's step after an audit: the window's exposure
//! counts (every list served, whatever its arm or policy: the thresholds are
//! about all traffic) fold into the newest adjustments, and the result is
//! published as the next version for every recommend instance to pick up
//! ([`crate::domain::exposure_control`] has the rule).
//!
//! A window is folded at most once: an audit retried for the same window
//! (EventBridge retries a failed invocation) finds it folded and writes
//! nothing. The step assumes audits do not overlap (the audit function's
//! reserved concurrency is 1).

use super::Exposure;
use crate::artifact::ArtifactError;
use crate::domain::exposure_control::{Adjustments, ControllerConfig};
use crate::ports::AdjustmentStore;
use crate::ports::AdjustmentsError;
use serde::Serialize;
use std::collections::HashMap;

/// What the controller's step of one audit did.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ControlStep {
    /// A new version was published.
    Published {
        name: String,
        priced: usize,
        subsidised: usize,
    },
    /// The newest version already folded this window in: nothing written.
    AlreadyFolded { name: String },
    /// The step failed (the audit's report and metrics stand); the
    /// controller keeps its last version until an audit succeeds.
    Failed { error: String },
}

impl ControlStep {
    /// The version serving will use after this step, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            ControlStep::Published { name, .. } | ControlStep::AlreadyFolded { name } => Some(name),
            ControlStep::Failed { .. } => None,
        }
    }
}

/// Exposures per movie id of the lists in a window.
pub fn window_counts(exposures: &[Exposure]) -> HashMap<u64, u64> {
    let mut counts = HashMap::new();
    for e in exposures {
        for &m in &e.movie_ids {
            *counts.entry(m).or_insert(0) += 1;
        }
    }
    counts
}

/// Folds the window ending at `end_ms` into the newest adjustments in
/// `store` and publishes the result.
pub async fn step(
    store: &dyn AdjustmentStore,
    window: &HashMap<u64, u64>,
    catalog_size: usize,
    cfg: &ControllerConfig,
    end_ms: i64,
) -> ControlStep {
    let run = async {
        let current = match store.latest().await? {
            None => Adjustments::default(),
            Some(p) if p.updated_ms >= end_ms => {
                return Ok(ControlStep::AlreadyFolded { name: p.name });
            }
            Some(p) => match store.fetch(&p).await {
                Ok(a) => a,
                // The newest object expired (no audit for longer than the
                // bucket keeps them): start again from a cold start, the
                // version numbers going on.
                Err(AdjustmentsError::Artifact(ArtifactError::Missing { file })) => {
                    tracing::warn!(missing = %file, "exposure controller: restarting from a cold start");
                    Adjustments {
                        version: p.version,
                        ..Adjustments::default()
                    }
                }
                Err(e) => return Err(e),
            },
        };
        let next = current.update(window, catalog_size, cfg, end_ms);
        let pointer = store.publish(&next).await?;
        Ok::<_, AdjustmentsError>(ControlStep::Published {
            name: pointer.name,
            priced: next.prices.len(),
            subsidised: next.subsidies.len(),
        })
    };
    match run.await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "exposure controller: adjustments not updated");
            ControlStep::Failed {
                error: e.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::adjustments::AdjustmentObjects;
    use std::sync::Arc;

    fn list(user: u64, movies: &[u64]) -> Exposure {
        Exposure {
            request_id: None,
            user_id: user,
            model_version: "v".into(),
            variant: None,
            ts_ms: 0,
            movie_ids: movies.to_vec(),
        }
    }

    #[tokio::test]
    async fn a_window_is_folded_once_and_a_corrupt_version_fails_the_step_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = AdjustmentObjects::new(Arc::new(crate::adapters::local::FolderLake::new(
            dir.path(),
        )));
        let w = window_counts(&[list(1, &[1, 2]), list(2, &[1, 3])]);
        assert_eq!(w, [(1, 2), (2, 1), (3, 1)].into_iter().collect());
        let cfg = ControllerConfig::default();
        let s = step(&store, &w, 10, &cfg, 3_600_000).await;
        assert!(
            matches!(&s, ControlStep::Published { name, .. } if name == "adj-000001"),
            "{s:?}"
        );
        // The same window again (a retried audit): nothing new.
        let again = step(&store, &w, 10, &cfg, 3_600_000).await;
        assert_eq!(again.name(), Some("adj-000001"));
        assert!(matches!(again, ControlStep::AlreadyFolded { .. }));
        let next = step(&store, &w, 10, &cfg, 7_200_000).await;
        assert_eq!(next.name(), Some("adj-000002"));
        let p = store.latest().await.unwrap().unwrap();
        let a = store.fetch(&p).await.unwrap();
        let expect = Adjustments::default()
            .update(&w, 10, &cfg, 3_600_000)
            .update(&w, 10, &cfg, 7_200_000);
        assert_eq!(a, expect);
        std::fs::write(dir.path().join("adj-000002.json"), b"{\"version\": 2}").unwrap();
        let failed = step(&store, &w, 10, &cfg, 10_800_000).await;
        match failed {
            ControlStep::Failed { error } => assert!(error.contains("adj-000002.json"), "{error}"),
            other => panic!("{other:?}"),
        }
        // The newest object gone (expired by the bucket's lifecycle): the
        // next step starts from a cold start and the numbering goes on.
        std::fs::remove_file(dir.path().join("adj-000002.json")).unwrap();
        let restarted = step(&store, &w, 10, &cfg, 10_800_000).await;
        assert_eq!(restarted.name(), Some("adj-000003"), "{restarted:?}");
        let p = store.latest().await.unwrap().unwrap();
        let fresh = Adjustments {
            version: 2,
            ..Adjustments::default()
        }
        .update(&w, 10, &cfg, 10_800_000);
        assert_eq!(store.fetch(&p).await.unwrap(), fresh);
    }
}
