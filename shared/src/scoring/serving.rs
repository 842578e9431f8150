//! A model version ready to serve: the verified artifact, its ONNX Runtime
//! session, the training histories and the id maps, all built once at load time
//! so a request does only scoring, masking and top-k.

use super::{OnnxModel, ScoringError};
use crate::artifact::{ArtifactError, History, Manifest, HISTORY_FILE, MODEL_FILE};
use crate::domain::ranking::{popular_unseen, popularity_order, top_k_unseen};
use crate::ports::VerifiedArtifact;
use std::collections::HashMap;

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
    by_popularity: Vec<u32>,
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
            by_popularity: popularity_order(&popularity),
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
        let extra: Vec<u32> = also_seen
            .iter()
            .filter_map(|m| self.item_index(*m))
            .collect();
        match self.user_index.get(&user_id) {
            Some(&u) => {
                let mut scores = Vec::with_capacity(self.popularity.len());
                self.onnx.score(u, &mut scores)?;
                let seen = self.history.items(u).iter().copied().chain(extra);
                Ok(Ranked {
                    items: top_k_unseen(&mut scores, seen, k),
                    fallback: None,
                })
            }
            None => Ok(Ranked {
                items: popular_unseen(
                    &self.by_popularity,
                    &self.popularity,
                    |i| extra.contains(&i),
                    k,
                ),
                fallback: Some("popularity"),
            }),
        }
    }
}
