//! The score cache of one model version: a user's raw scores over the whole
//! catalogue, as the ONNX graph returned them, kept so that the next request
//! of that user copies them instead of running the graph again. They are a
//! pure function of the version's weights and the graph's input: the user
//! index, or (a history-input graph) the user and a fingerprint of the
//! events recorded since training, so a new event is a new key and a cached
//! row is exactly what scoring would return; masking (including movies
//! recorded a moment ago), re-ranking and top-k still run per request.
//!
//! Direct-mapped: slot `user % slots`, each holding one user's row, so a
//! lookup is one uncontended read lock and an `Arc` clone, and memory is
//! bounded by the budget (a new user evicts the slot's previous one). A
//! catalogue of 3,706 movies costs 14.5 KiB a user: the default budget
//! keeps every one of 6,040 users (ML-1M's size) and 9,000 of a larger set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Bytes of score rows one version may keep.
pub const DEFAULT_BUDGET_BYTES: usize = 128 << 20;

/// Whose row: a training user's index, or the external id of a user the
/// model does not know (scored from their events alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKey {
    Index(u32),
    Id(u64),
}

impl CacheKey {
    fn slot(self, slots: usize) -> usize {
        match self {
            CacheKey::Index(u) => u as usize % slots,
            // splitmix64's finaliser spreads consecutive ids over the slots.
            CacheKey::Id(id) => {
                let mut z = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                ((z ^ (z >> 31)) % slots as u64) as usize
            }
        }
    }
}

type Row = Option<(CacheKey, u64, Arc<[f32]>)>;

pub struct ScoreCache {
    slots: Vec<RwLock<Row>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ScoreCache {
    /// A cache of at most `budget_bytes` of rows of `n_items` scores for
    /// `n_users` users (no slots when a row does not fit: every call scores).
    pub fn new(n_users: usize, n_items: usize, budget_bytes: usize) -> Self {
        let row = n_items.max(1) * std::mem::size_of::<f32>();
        let slots = n_users.min(budget_bytes / row);
        ScoreCache {
            slots: (0..slots).map(|_| RwLock::new(None)).collect(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Fills `out` with the scores of training user index `user`: from the
    /// cache, or by `score` (then kept). A failed `score` keeps nothing.
    pub fn scores<E>(
        &self,
        user: u32,
        out: &mut Vec<f32>,
        score: impl FnOnce(&mut Vec<f32>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.scores_for(CacheKey::Index(user), 0, out, score)
    }

    /// [`Self::scores`] for any key and input fingerprint: a row is reused
    /// only for the same key and the same fingerprint.
    pub fn scores_for<E>(
        &self,
        key: CacheKey,
        fingerprint: u64,
        out: &mut Vec<f32>,
        score: impl FnOnce(&mut Vec<f32>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.slots.is_empty() {
            return score(out);
        }
        let slot = &self.slots[key.slot(self.slots.len())];
        if let Some((k, fp, row)) = &*slot.read().unwrap_or_else(|p| p.into_inner()) {
            if *k == key && *fp == fingerprint {
                self.hits.fetch_add(1, Ordering::Relaxed);
                out.clear();
                out.extend_from_slice(row);
                return Ok(());
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        score(out)?;
        *slot.write().unwrap_or_else(|p| p.into_inner()) =
            Some((key, fingerprint, out.as_slice().into()));
        Ok(())
    }

    /// Users it can hold at once.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// `(hits, misses)` since the version loaded.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: u32) -> Vec<f32> {
        (0..5).map(|i| (user * 10 + i) as f32).collect()
    }

    #[test]
    fn a_cached_row_equals_scoring_and_is_scored_once() {
        let c = ScoreCache::new(100, 5, 1 << 20);
        assert_eq!(c.capacity(), 100);
        let mut runs = 0;
        let mut out = Vec::new();
        for _ in 0..3 {
            c.scores::<()>(7, &mut out, |o| {
                runs += 1;
                *o = row(7);
                Ok(())
            })
            .unwrap();
            assert_eq!(out, row(7));
        }
        assert_eq!(runs, 1);
        assert_eq!(c.stats(), (2, 1));
    }

    #[test]
    fn bounded_by_the_budget_and_evicting_by_slot() {
        // Two rows of 5 floats fit in 40 bytes.
        let c = ScoreCache::new(100, 5, 40);
        assert_eq!(c.capacity(), 2);
        let mut out = Vec::new();
        let fill = |c: &ScoreCache, u: u32, out: &mut Vec<f32>| {
            let mut ran = false;
            c.scores::<()>(u, out, |o| {
                ran = true;
                *o = row(u);
                Ok(())
            })
            .unwrap();
            assert_eq!(*out, row(u), "user {u} gets their own row");
            ran
        };
        assert!(fill(&c, 1, &mut out));
        assert!(fill(&c, 3, &mut out), "same slot as 1: evicts it");
        assert!(fill(&c, 1, &mut out), "1 was evicted");
        assert!(fill(&c, 2, &mut out));
        assert!(!fill(&c, 1, &mut out), "the other slot kept 1");
    }

    #[test]
    fn a_row_is_reused_only_for_the_same_key_and_fingerprint() {
        let c = ScoreCache::new(10, 5, 1 << 20);
        let mut out = Vec::new();
        let mut runs = 0;
        let mut get = |key, fp, v: f32| {
            c.scores_for::<()>(key, fp, &mut out, |o| {
                runs += 1;
                *o = vec![v; 5];
                Ok(())
            })
            .unwrap();
            out[0]
        };
        assert_eq!(get(CacheKey::Id(42), 7, 1.0), 1.0);
        assert_eq!(get(CacheKey::Id(42), 7, 2.0), 1.0, "same events: cached");
        assert_eq!(get(CacheKey::Id(42), 8, 3.0), 3.0, "a new event: rescored");
        assert_eq!(
            get(CacheKey::Index(42 % 10), 8, 4.0),
            4.0,
            "an index is not an id"
        );
        assert_eq!(runs, 3);
    }

    #[test]
    fn a_failed_scoring_keeps_nothing_and_no_budget_means_no_cache() {
        let c = ScoreCache::new(10, 5, 1 << 20);
        let mut out = Vec::new();
        assert!(c.scores(4, &mut out, |_| Err("down")).is_err());
        let mut ran = false;
        c.scores::<()>(4, &mut out, |o| {
            ran = true;
            *o = row(4);
            Ok(())
        })
        .unwrap();
        assert!(ran, "the failure was not cached");
        let off = ScoreCache::new(10, 5, 0);
        assert_eq!(off.capacity(), 0);
    }
}
