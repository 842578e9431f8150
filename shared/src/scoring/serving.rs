//! A model version ready to serve: the verified artifact, its ONNX Runtime
//! session, the training histories and the id maps, all built once at load time
//! so a request does only scoring, masking and top-k.

use super::cache::{CacheKey, ScoreCache, DEFAULT_BUDGET_BYTES};
use super::{OnnxModel, ScoringError};
use crate::artifact::{ArtifactError, History, Manifest, UserVector, HISTORY_FILE};
use crate::artifact::{Neighbours, NEIGHBOURS_FILE};
use crate::domain::exposure_control::Adjustments;
use crate::domain::filter::Filter;
use crate::domain::ranking::mask_seen;
use crate::domain::rerank::{rerank_priced, ItemFeatures, Policy};
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

/// Most events since training a history-input model folds into a user's
/// vector, newest first: at the default half-life of 10 movies, the 257th
/// newest weighs 0.5^25.6 of the newest, far below f32 rounding of the sum.
pub const MAX_FOLD_IN_EVENTS: usize = 256;

/// One ranked list, with the fallback used (if any).
#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    /// `(item index, score)`, best first.
    pub items: Vec<(u32, f32)>,
    /// `Some("popularity")` for users the model cannot score.
    pub fallback: Option<&'static str>,
    /// Where the user's vector came from: `embedding` (a training user's
    /// row), `history` (folded in from their movies at request time), or
    /// `None` with the popularity fallback.
    pub user_vector: Option<&'static str>,
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
    /// The catalogue's distinct genres, sorted.
    genres: Vec<String>,
    /// Each movie's nearest movies (`None` for artifacts exported before
    /// `neighbours.bin`).
    neighbours: Option<Neighbours>,
}

/// A "more like this" list.
#[derive(Clone, Debug, PartialEq)]
pub struct SimilarList {
    /// `(item index, similarity to the movie, the user's score)`, in the
    /// order served: by similarity, or for a user by their score.
    pub items: Vec<(u32, f32, Option<f32>)>,
    /// Where the user's vector came from, when a user was named and scored.
    pub user_vector: Option<&'static str>,
}

/// With a user, the neighbours reordered for them are the first
/// `max(SIMILAR_POOL_PER_K × k, SIMILAR_POOL_MIN)` that pass: close enough
/// to the movie to stay "like it", wide enough for the user's taste to choose.
pub const SIMILAR_POOL_PER_K: usize = 3;
pub const SIMILAR_POOL_MIN: usize = 30;

impl ServingModel {
    /// Builds the serving state of a verified artifact.
    pub fn load(art: &VerifiedArtifact) -> Result<Self, LoadError> {
        let m = art.manifest.clone();
        let bytes = std::fs::read(art.dir.join(HISTORY_FILE)).map_err(|e| ArtifactError::Io {
            file: HISTORY_FILE.into(),
            source: e,
        })?;
        let history = History::decode(&bytes)?;
        let onnx = OnnxModel::load_artifact(art)?;
        let neighbours = match m.files.contains_key(NEIGHBOURS_FILE) {
            false => None,
            true => {
                let bytes = std::fs::read(art.dir.join(NEIGHBOURS_FILE)).map_err(|e| {
                    ArtifactError::Io {
                        file: NEIGHBOURS_FILE.into(),
                        source: e,
                    }
                })?;
                Some(Neighbours::decode(&bytes, m.items.len())?)
            }
        };
        let popularity: Vec<u32> = m.items.iter().map(|i| i.popularity).collect();
        let mut genres: Vec<String> = m.items.iter().flat_map(|i| i.genres.clone()).collect();
        genres.sort();
        genres.dedup();
        Ok(ServingModel {
            genres,
            neighbours,
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

    /// The controller's net adjustment of every movie of this version, by
    /// item index (built once per adjustments and version, not per request).
    pub fn adjustment_vector(&self, adjustments: &Adjustments) -> Vec<f32> {
        adjustments.vector(self.manifest.items.iter().map(|i| i.movie_id))
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
        self.recommend_filtered(user_id, k, also_seen, policy, &Filter::default())
    }

    /// [`Self::recommend_with`] over the movies `filter` admits: the
    /// filter masks the scores before re-ranking and top-k, so `k` items
    /// come back whenever `k` unseen movies pass.
    pub fn recommend_filtered(
        &self,
        user_id: u64,
        k: usize,
        also_seen: &[u64],
        policy: Policy,
        filter: &Filter,
    ) -> Result<Ranked, ScoringError> {
        self.recommend_adjusted(user_id, k, also_seen, policy, filter, &[])
    }

    /// [`Self::recommend_filtered`] with the exposure controller's net
    /// adjustments per item index ([`Self::adjustment_vector`]), which the
    /// `exposure` policy ranks by; the other policies ignore them.
    pub fn recommend_adjusted(
        &self,
        user_id: u64,
        k: usize,
        also_seen: &[u64],
        policy: Policy,
        filter: &Filter,
        adjustments: &[f32],
    ) -> Result<Ranked, ScoringError> {
        let extra = self.indices(also_seen);
        let known = self.user_index.get(&user_id).copied();
        let mut scores = Vec::with_capacity(self.popularity.len());
        let user_vector = self.user_scores(user_id, known, &extra, &mut scores)?;
        let mut history: Vec<u32> = known
            .map(|u| self.history.items(u).to_vec())
            .unwrap_or_default();
        history.extend(&extra);
        let fallback = if user_vector.is_none() {
            self.popularity_scores(&mut scores);
            Some("popularity")
        } else {
            None
        };
        mask_seen(&mut scores, history.iter().copied());
        mask_seen(&mut scores, self.dropped(filter));
        let exposure: Vec<u64> = if matches!(policy, Policy::Explore { .. }) {
            self.exposure
                .iter()
                .map(|e| e.load(Ordering::Relaxed))
                .collect()
        } else {
            Vec::new()
        };
        let items = rerank_priced(
            policy,
            &scores,
            k,
            &self.features,
            &history,
            &exposure,
            adjustments,
        );
        for (i, _) in &items {
            self.exposure[*i as usize].fetch_add(1, Ordering::Relaxed);
        }
        Ok(Ranked {
            items,
            fallback,
            user_vector: user_vector.map(UserVector::as_str),
        })
    }

    /// Model indices of the catalogue's movies among `movie_ids`.
    fn indices(&self, movie_ids: &[u64]) -> Vec<u32> {
        movie_ids
            .iter()
            .filter_map(|m| self.item_index(*m))
            .collect()
    }

    /// The model's raw scores of every movie for `user_id` into `out`, and
    /// where the user's vector came from; `None` (and `out` untouched) when
    /// the model cannot score this user.
    fn user_scores(
        &self,
        user_id: u64,
        known: Option<u32>,
        extra: &[u32],
        out: &mut Vec<f32>,
    ) -> Result<Option<UserVector>, ScoringError> {
        Ok(match (self.onnx.user_vector(), known) {
            (UserVector::Embedding, Some(u)) => {
                self.cache.scores(u, out, |o| self.onnx.score(u, o))?;
                Some(UserVector::Embedding)
            }
            (UserVector::History, _) => self
                .fold_in(user_id, known, extra, out)?
                .then_some(UserVector::History),
            (UserVector::Embedding, None) => None,
        })
    }

    /// Training popularity / the largest, the unknown users' scores.
    fn popularity_scores(&self, out: &mut Vec<f32>) {
        let max = self.max_popularity as f32;
        out.clear();
        out.extend(self.popularity.iter().map(|&p| p as f32 / max));
    }

    /// The item indices `filter` drops (none for an empty filter).
    pub fn dropped(&self, filter: &Filter) -> Vec<u32> {
        if filter.is_empty() {
            return Vec::new();
        }
        filter.dropped(
            self.manifest
                .items
                .iter()
                .map(|i| (i.movie_id, i.genres.as_slice(), i.year)),
        )
    }

    /// [`Self::dropped`] as a mask over the catalogue (`true`: dropped).
    pub fn dropped_mask(&self, filter: &Filter) -> Vec<bool> {
        let mut mask = vec![false; self.popularity.len()];
        for i in self.dropped(filter) {
            mask[i as usize] = true;
        }
        mask
    }

    /// Each movie's training popularity, by item index.
    pub fn popularity(&self) -> &[u32] {
        &self.popularity
    }

    /// The catalogue's genres, sorted: what `genre` filters may name.
    pub fn genres(&self) -> &[String] {
        &self.genres
    }

    /// The `k` most popular movies in training that `filter` admits, with
    /// popularity / the largest (ties: lower index first).
    pub fn popular(&self, k: usize, filter: &Filter) -> Vec<(u32, f32)> {
        let mut scores = Vec::with_capacity(self.popularity.len());
        self.popularity_scores(&mut scores);
        mask_seen(&mut scores, self.dropped(filter));
        crate::domain::ranking::top_k_scored(&scores, k)
    }

    /// Whether this version carries neighbour lists (`GET /similar`).
    pub fn has_neighbours(&self) -> bool {
        self.neighbours.is_some()
    }

    /// Up to `k` movies most like `movie` (a model index) that `filter`
    /// admits, from its precomputed neighbours. With `user = (user_id,
    /// recorded movie ids)`, "because you watched": the user's seen movies
    /// are left out and the closest [`SIMILAR_POOL_PER_K`]·k are ordered by
    /// the user's score (by similarity when the model cannot score them).
    /// `None` when the version has no neighbour lists.
    pub fn similar(
        &self,
        movie: u32,
        k: usize,
        user: Option<(u64, &[u64])>,
        filter: &Filter,
    ) -> Result<Option<SimilarList>, ScoringError> {
        let Some(nb) = &self.neighbours else {
            return Ok(None);
        };
        let mut dropped = self.dropped_mask(filter);
        let mut scores = Vec::new();
        let mut user_vector = None;
        if let Some((user_id, also_seen)) = user {
            let extra = self.indices(also_seen);
            let known = self.user_index.get(&user_id).copied();
            for &i in known
                .map(|u| self.history.items(u))
                .unwrap_or_default()
                .iter()
                .chain(&extra)
            {
                dropped[i as usize] = true;
            }
            user_vector = self.user_scores(user_id, known, &extra, &mut scores)?;
        }
        let pool = match user_vector {
            Some(_) => (SIMILAR_POOL_PER_K * k).max(SIMILAR_POOL_MIN),
            None => k,
        };
        let mut items: Vec<(u32, f32, Option<f32>)> = nb
            .of(movie)
            .filter(|(j, _)| !dropped[*j as usize])
            .take(pool)
            .map(|(j, sim)| (j, sim, scores.get(j as usize).copied()))
            .collect();
        if user_vector.is_some() {
            items.sort_by(|a, b| {
                let (sa, sb) = (
                    a.2.unwrap_or(f32::NEG_INFINITY),
                    b.2.unwrap_or(f32::NEG_INFINITY),
                );
                sb.total_cmp(&sa).then(a.0.cmp(&b.0))
            });
        }
        items.truncate(k);
        Ok(Some(SimilarList {
            items,
            user_vector: user_vector.map(UserVector::as_str),
        }))
    }

    /// Scores a history-input graph for `user_id` into `out`: their training
    /// inputs (if `known`) plus the movies recorded since (`events`, model
    /// indices, newest first), each new movie weighted 0.5^(j / half-life)
    /// for the j newer ones, and the training weights scaled down by the
    /// new movies' count: the trainer's recency rule extended past training.
    /// Cached per user and events. `false` when there is nothing to read.
    fn fold_in(
        &self,
        user_id: u64,
        known: Option<u32>,
        events: &[u32],
        out: &mut Vec<f32>,
    ) -> Result<bool, ScoringError> {
        let (trained, weights) = known.map(|u| self.onnx.user_inputs(u)).unwrap_or_default();
        // Movies already in the training input keep their trained weight
        // (a lake-trained model has read them already).
        let mut new: Vec<u32> = Vec::new();
        for &i in events {
            if new.len() == MAX_FOLD_IN_EVENTS {
                break;
            }
            if trained.binary_search(&i).is_err() && !new.contains(&i) {
                new.push(i);
            }
        }
        if trained.is_empty() && new.is_empty() {
            return Ok(false);
        }
        let key = known.map_or(CacheKey::Id(user_id), CacheKey::Index);
        if new.is_empty() {
            let u = known.expect("trained inputs belong to a training user");
            self.cache
                .scores_for(key, 0, out, |o| self.onnx.score(u, o))?;
            return Ok(true);
        }
        let fingerprint = fingerprint(&new);
        self.cache.scores_for(key, fingerprint, out, |o| {
            let half = self.manifest.hyperparameters.history_half_life;
            let decay = |k: usize| {
                if half > 0.0 {
                    0.5f64.powf(k as f64 / half) as f32
                } else {
                    1.0
                }
            };
            let scale = decay(new.len());
            let items: Vec<i64> = trained.iter().chain(&new).map(|&i| i as i64).collect();
            let w: Vec<f32> = weights
                .iter()
                .map(|w| w * scale)
                .chain((0..new.len()).map(decay))
                .collect();
            self.onnx.score_history(&items, &w, o)
        })?;
        Ok(true)
    }

    /// The score cache's `(hits, misses)` and how many users it holds at once.
    pub fn score_cache_stats(&self) -> (u64, u64, usize) {
        let (h, m) = self.cache.stats();
        (h, m, self.cache.capacity())
    }

    /// Whether the graph reads a user index or the user's movies.
    pub fn user_vector(&self) -> UserVector {
        self.onnx.user_vector()
    }

    /// The policies' view of the catalogue.
    pub fn features(&self) -> &ItemFeatures {
        &self.features
    }
}

/// A 64-bit FNV-1a hash of the new movies (never 0, the no-events key).
fn fingerprint(items: &[u32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for i in items {
        for b in i.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h.max(1)
}
