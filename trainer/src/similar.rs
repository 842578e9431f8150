//! "More like this": each movie's neighbours from the trained model's item
//! vectors (exported as `neighbours.bin`), a co-occurrence baseline, and
//! their quality on a dataset (`movie-recs eval-similar`).
//!
//! The similarity is the cosine of the GMF item factors scaled by the
//! prediction layer's GMF weights: `h ⊙ q_i` is exactly the vector a user's
//! GMF factors are dotted with to score movie `i`, so two movies close in
//! that space are scored alike by every user (liked by the same people),
//! and the cosine leaves out the vector length, which tracks popularity.

use crate::model::NeuMfWeights;
use serde::Serialize;
use shared::artifact::{Neighbours, NEIGHBOURS_PER_ITEM};
use shared::domain::{Interaction, ItemMeta, TestSet};

/// `h_gmf ⊙ q_i` per movie, `[n_items × factors]` row-major.
pub fn item_vectors(w: &NeuMfWeights) -> Vec<f32> {
    let f = w.factors;
    let h = &w.out_w[..f];
    w.gmf_item
        .chunks(f)
        .flat_map(|q| q.iter().zip(h).map(|(a, b)| a * b))
        .collect()
}

/// The exported neighbour lists of a trained model.
pub fn model_neighbours(w: &NeuMfWeights) -> Neighbours {
    Neighbours::from_vectors(&item_vectors(w), w.factors, NEIGHBOURS_PER_ITEM)
}

/// The co-occurrence baseline: cosine of the movies' user sets,
/// `|U_i ∩ U_j| / sqrt(|U_i| |U_j|)` (item-based collaborative filtering).
pub fn cooccurrence_neighbours(n_items: usize, train: &[Interaction], width: usize) -> Neighbours {
    let n_users = train.iter().map(|x| x.user as usize + 1).max().unwrap_or(0);
    let hist = shared::domain::dataset::histories(n_users, train);
    let mut count = vec![0u32; n_items];
    let mut lists = Vec::with_capacity(n_items);
    let mut by_item: Vec<Vec<u32>> = vec![Vec::new(); n_items];
    for (u, h) in hist.iter().enumerate() {
        for &i in h {
            by_item[i as usize].push(u as u32);
            count[i as usize] += 1;
        }
    }
    let mut co = vec![0u32; n_items];
    for i in 0..n_items {
        co.iter_mut().for_each(|c| *c = 0);
        for &u in &by_item[i] {
            for &j in &hist[u as usize] {
                co[j as usize] += 1;
            }
        }
        co[i] = 0;
        let sims: Vec<f32> = co
            .iter()
            .zip(&count)
            .map(|(&c, &n)| match c {
                0 => f32::NEG_INFINITY,
                _ => c as f32 / ((count[i] as f32) * n as f32).sqrt(),
            })
            .collect();
        lists.push(shared::domain::ranking::top_k_scored(&sims, width));
    }
    Neighbours::from_lists(&lists, width)
}

/// How good a set of neighbour lists is on a dataset.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimilarQuality {
    /// Share of the top-10 neighbours sharing at least one genre with the
    /// movie (movies with genres only).
    pub genre_share_at_10: f64,
    /// Share of test users whose held-out (next) movie is among the top-10
    /// neighbours of their latest training movie.
    pub next_hit_at_10: f64,
    /// Movies with at least 10 neighbours.
    pub coverage: f64,
    pub users: usize,
}

/// [`SimilarQuality`] of `nb` on `items`, `train` and a leave-one-out `test`
/// (for a full-ranking test, a hit is any of the user's held-out movies).
pub fn quality(
    nb: &Neighbours,
    items: &[ItemMeta],
    train: &[Interaction],
    test: &TestSet,
) -> SimilarQuality {
    let (mut shared_genre, mut pairs) = (0usize, 0usize);
    let mut full = 0usize;
    for (i, it) in items.iter().enumerate() {
        let top: Vec<u32> = nb.of(i as u32).take(10).map(|x| x.0).collect();
        full += usize::from(top.len() == 10);
        if it.genres.is_empty() {
            continue;
        }
        for j in top {
            pairs += 1;
            shared_genre += usize::from(
                items[j as usize]
                    .genres
                    .iter()
                    .any(|g| it.genres.contains(g)),
            );
        }
    }
    // Each user's latest training movie (ties: the later row).
    let mut last: std::collections::HashMap<u32, (i64, u32)> = Default::default();
    for x in train {
        let e = last.entry(x.user).or_insert((i64::MIN, x.item));
        if x.ts >= e.0 {
            *e = (x.ts, x.item);
        }
    }
    let held: Vec<(u32, Vec<u32>)> = match test {
        TestSet::LeaveOneOut(cases) => cases.iter().map(|c| (c.user, vec![c.item])).collect(),
        TestSet::Full(sets) => sets.clone(),
    };
    let (mut hits, mut users) = (0usize, 0usize);
    for (u, next) in &held {
        let Some(&(_, seed)) = last.get(u) else {
            continue;
        };
        users += 1;
        hits += usize::from(nb.of(seed).take(10).any(|(j, _)| next.contains(&j)));
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    SimilarQuality {
        genre_share_at_10: ratio(shared_genre, pairs),
        next_hit_at_10: ratio(hits, users),
        coverage: ratio(full, items.len()),
        users,
    }
}

/// A published version's neighbour lists next to the co-occurrence
/// baseline on `ds` (the data it was trained on): `movie-recs eval --similar`.
pub fn report(
    store: &dyn shared::ports::ModelStore,
    version: &str,
    ds: &shared::domain::Dataset,
) -> Result<serde_json::Value, crate::pipeline::PipelineError> {
    use crate::pipeline::PipelineError;
    let art = store.fetch(version)?;
    let m = &art.manifest;
    let mismatch = |reason: String| PipelineError::DataMismatch {
        version: version.into(),
        reason,
    };
    if m.items.len() != ds.n_items()
        || m.items
            .iter()
            .zip(&ds.items)
            .any(|(a, b)| a.movie_id != b.movie_id)
    {
        return Err(mismatch("the model's catalogue is not the data's".into()));
    }
    let file = shared::artifact::NEIGHBOURS_FILE;
    let bytes = std::fs::read(art.dir.join(file))
        .map_err(|_| mismatch(format!("the version has no {file} (exported before it)")))?;
    let nb = Neighbours::decode(&bytes, m.items.len()).map_err(|e| mismatch(e.to_string()))?;
    let (train, test) = crate::pipeline::test_split(ds);
    let start = std::time::Instant::now();
    let co = cooccurrence_neighbours(ds.n_items(), &train, NEIGHBOURS_PER_ITEM);
    let co_secs = start.elapsed().as_secs_f64();
    // Context: any two movies share a genre this often, and the 10 most
    // popular movies (the seed left out) hold the next one this often.
    let with_genres: Vec<&ItemMeta> = ds.items.iter().filter(|m| !m.genres.is_empty()).collect();
    let (mut same, mut pairs) = (0u64, 0u64);
    for (a, x) in with_genres.iter().enumerate() {
        for y in &with_genres[a + 1..] {
            pairs += 1;
            same += u64::from(x.genres.iter().any(|g| y.genres.contains(g)));
        }
    }
    let pop = shared::domain::dataset::popularity(ds.n_items(), &train);
    let order = shared::domain::ranking::popularity_order(&pop);
    let popular = Neighbours::from_lists(
        &(0..ds.n_items() as u32)
            .map(|i| {
                order
                    .iter()
                    .filter(|&&j| j != i)
                    .take(10)
                    .map(|&j| (j, 0.0))
                    .collect()
            })
            .collect::<Vec<_>>(),
        10,
    );
    Ok(serde_json::json!({
        "version": version,
        "data": ds.source,
        "similarity": "cosine of the GMF item factors scaled by the prediction weights",
        "model": quality(&nb, &ds.items, &train, &test),
        "cooccurrence": quality(&co, &ds.items, &train, &test),
        "cooccurrence_seconds": co_secs,
        "any_two_movies_share_a_genre": if pairs == 0 { 0.0 } else { same as f64 / pairs as f64 },
        "popular_next_hit_at_10": quality(&popular, &ds.items, &train, &test).next_hit_at_10,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::domain::LooCase;

    fn ix(user: u32, item: u32, ts: i64) -> Interaction {
        Interaction::implicit(user, item, ts)
    }

    #[test]
    fn cooccurrence_ranks_movies_watched_by_the_same_users_first() {
        // Movies 0 and 1 share users 0-2; movie 2 shares one user with 0.
        let train = [
            ix(0, 0, 1),
            ix(0, 1, 2),
            ix(1, 0, 1),
            ix(1, 1, 2),
            ix(2, 0, 1),
            ix(2, 1, 2),
            ix(3, 0, 1),
            ix(3, 2, 2),
        ];
        let nb = cooccurrence_neighbours(4, &train, 3);
        let of0: Vec<u32> = nb.of(0).map(|x| x.0).collect();
        assert_eq!(of0, vec![1, 2], "movie 3 has no users: never a neighbour");
        assert!((nb.of(0).next().unwrap().1 - 3.0 / (4.0f32 * 3.0).sqrt()).abs() < 1e-6);
        assert_eq!(nb.of(3).count(), 0);
    }

    #[test]
    fn quality_counts_genre_sharing_and_the_next_movie_among_the_last_ones_neighbours() {
        let g = |s: &str| ItemMeta {
            movie_id: 0,
            title: String::new(),
            genres: vec![s.to_string()],
            year: None,
        };
        let items = vec![g("A"), g("A"), g("B")];
        let nb = Neighbours::from_lists(
            &[vec![(1, 0.9), (2, 0.1)], vec![(0, 0.9)], vec![(0, 0.5)]],
            10,
        );
        // User 0's latest movie is 0 and the next is 1 (a hit); user 1's
        // latest is 2 and the next is 1 (a miss).
        let train = [ix(0, 2, 1), ix(0, 0, 5), ix(1, 2, 9)];
        let test = TestSet::LeaveOneOut(vec![
            LooCase {
                user: 0,
                item: 1,
                negatives: vec![],
            },
            LooCase {
                user: 1,
                item: 1,
                negatives: vec![],
            },
        ]);
        let q = quality(&nb, &items, &train, &test);
        assert_eq!(q.users, 2);
        assert!((q.next_hit_at_10 - 0.5).abs() < 1e-12);
        // Pairs: 0→1 shares, 0→2 not, 1→0 shares, 2→0 not.
        assert!((q.genre_share_at_10 - 0.5).abs() < 1e-12);
        assert_eq!(q.coverage, 0.0);
    }
}
