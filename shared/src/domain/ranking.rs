//! Ranking: scores → exclude what the user has seen → top-k. Pure functions,
//! no I/O; the re-ranking policies ([`super::rerank`]) build on them.

use super::eval::top_k;

/// Sets the scores of `seen` items to −∞, so no ranking returns them.
pub fn mask_seen(scores: &mut [f32], seen: impl IntoIterator<Item = u32>) {
    for i in seen {
        if let Some(s) = scores.get_mut(i as usize) {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// The `k` best `(item, score)` pairs with a finite score: fewer than `k`
/// when the unmasked catalogue runs out.
pub fn top_k_scored(scores: &[f32], k: usize) -> Vec<(u32, f32)> {
    top_k(scores, k)
        .into_iter()
        .map(|i| (i, scores[i as usize]))
        .filter(|(_, s)| s.is_finite())
        .collect()
}

/// Items by descending popularity (ties: lower index first), computed once per model.
pub fn popularity_order(popularity: &[u32]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..popularity.len() as u32).collect();
    order.sort_by(|a, b| {
        popularity[*b as usize]
            .cmp(&popularity[*a as usize])
            .then(a.cmp(b))
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_items_never_come_back() {
        let mut s = vec![0.9, 0.8, 0.7, 0.6, 0.5];
        mask_seen(&mut s, [0, 2]);
        assert_eq!(top_k_scored(&s, 2), vec![(1, 0.8), (3, 0.6)]);
        let mut s = vec![0.9, 0.8];
        mask_seen(&mut s, [0, 1]);
        assert_eq!(top_k_scored(&s, 5), vec![], "everything seen: nothing left");
    }

    #[test]
    fn popularity_fallback_skips_seen() {
        let pop = [5, 50, 20, 50];
        let order = popularity_order(&pop);
        assert_eq!(order, vec![1, 3, 2, 0]);
        // Unknown users are ranked by popularity / max popularity.
        let mut s: Vec<f32> = pop.iter().map(|&p| p as f32 / 50.0).collect();
        mask_seen(&mut s, [1]);
        assert_eq!(top_k_scored(&s, 2), vec![(3, 1.0), (2, 0.4)]);
    }
}
