//! A model version ready to serve: the verified artifact, its ONNX Runtime
//! session, the training histories and the id maps, all built once at load time
//! so a request does only scoring, masking and top-k.

use super::cache::{ScoreCache, DEFAULT_BUDGET_BYTES};
use super::{OnnxModel, ScoringError};
use crate::artifact::{ArtifactError, History, Manifest, HISTORY_FILE, MODEL_FILE};
use crate::domain::ranking::mask_seen;
use crate::domain::rerank::{rerank, ItemFeatures, Policy};
use crate::ports::VerifiedArtifact;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a version could not be made servable.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Scoring(#[from] ScoringError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

/// One ranked list, with the fallback used (if any).
#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    /// `(item index, score)`, best first.
    pub items: Vec<(u32, f32)>,
    /// `Some("popularity")` for users the model does not know.
    pub fallback: Option<&'static str>,
}

/// An immutable, shareable handle to one model version.
pub struct ServingModel {
    pub manifest: Manifest,
    onnx: OnnxModel,
    history: History,
    user_index: HashMap<u64, u32>,
    item_index: HashMap<u64, u32>,
    popularity: Vec<u32>,
    /// Unknown users' scores are popularity / this.
    max_popularity: u32,
    /// Genres, popularity and head tier, for the re-ranking policies.
    features: ItemFeatures,
    /// Times each item was served by this process since the version loaded
    /// (the `explore` policy's exposure, with training popularity).
    exposure: Vec<AtomicU64>,
    /// Users' raw scores, so a returning user costs no graph run.
    cache: ScoreCache,
}

impl ServingModel {
    /// Builds the serving state of a verified artifact.
    pub fn load(art: &VerifiedArtifact) -> Result<Self, LoadError> {
        let m = art.manifest.clone();
        let bytes = std::fs::read(art.dir.join(HISTORY_FILE)).map_err(|e| ArtifactError::Io {
            file: HISTORY_FILE.into(),
            source: e,
        })?;
        let history = History::decode(&bytes)?;
        let onnx = OnnxModel::load(&art.dir.join(MODEL_FILE), m.users.len(), m.items.len())?;
        let popularity: Vec<u32> = m.items.iter().map(|i| i.popularity).collect();
        Ok(ServingModel {
            user_index: m
                .users
                .iter()
                .enumerate()
                .map(|(i, &u)| (u, i as u32))
                .collect(),
            item_index: m
                .items
                .iter()
                .enumerate()
                .map(|(i, it)| (it.movie_id, i as u32))
                .collect(),
            max_popularity: popularity.iter().copied().max().unwrap_or(0).max(1),
            features: ItemFeatures::new(
                m.items.iter().map(|i| (i.genres.as_slice(), i.popularity)),
            ),
            exposure: (0..m.items.len()).map(|_| AtomicU64::new(0)).collect(),
            cache: ScoreCache::new(m.users.len(), m.items.len(), DEFAULT_BUDGET_BYTES),
            popularity,
            history,
            onnx,
            manifest: m,
        })
    }

    pub fn version(&self) -> &str {
        &self.manifest.version
    }

    /// Model item index of an external movie id.
    pub fn item_index(&self, movie_id: u64) -> Option<u32> {
        self.item_index.get(&movie_id).copied()
    }

    /// Ranks the catalogue for `user_id`, excluding the training history and the
    /// externally recorded `also_seen` movie ids; unknown users get the most
    /// popular unseen movies.
    pub fn recommend(
        &self,
        user_id: u64,
        k: usize,
        also_seen: &[u64],
    ) -> Result<Ranked, ScoringError> {
        self.recommend_with(user_id, k, also_seen, Policy::None)
    }

    /// [`Self::recommend`] re-ranked by `policy` ([`crate::domain::rerank`]);
    /// for unknown users the policy re-ranks popularity.
    pub fn recommend_with(
        &self,
        user_id: u64,
        k: usize,
        also_seen: &[u64],
        policy: Policy,
    ) -> Result<Ranked, ScoringError> {
        let extra: Vec<u32> = also_seen
            .iter()
            .filter_map(|m| self.item_index(*m))
            .collect();
        let (mut scores, history, fallback): (Vec<f32>, Vec<u32>, _) =
            match self.user_index.get(&user_id) {
                Some(&u) => {
                    let mut scores = Vec::with_capacity(self.popularity.len());
                    self.cache
                        .scores(u, &mut scores, |out| self.onnx.score(u, out))?;
                    let history = self.history.items(u).iter().copied().chain(extra).collect();
                    (scores, history, None)
                }
                None => {
                    let max = self.max_popularity as f32;
                    let scores = self.popularity.iter().map(|&p| p as f32 / max).collect();
                    (scores, extra, Some("popularity"))
                }
            };
        mask_seen(&mut scores, history.iter().copied());
        let exposure: Vec<u64> = if matches!(policy, Policy::Explore { .. }) {
            self.exposure
                .iter()
                .map(|e| e.load(Ordering::Relaxed))
                .collect()
        } else {
            Vec::new()
        };
        let items = rerank(policy, &scores, k, &self.features, &history, &exposure);
        for (i, _) in &items {
            self.exposure[*i as usize].fetch_add(1, Ordering::Relaxed);
        }
        Ok(Ranked { items, fallback })
    }

    /// The score cache's `(hits, misses)` and how many users it holds at once.
    pub fn score_cache_stats(&self) -> (u64, u64, usize) {
        let (h, m) = self.cache.stats();
        (h, m, self.cache.capacity())
    }

    /// The policies' view of the catalogue.
    pub fn features(&self) -> &ItemFeatures {
        &self.features
    }
}
