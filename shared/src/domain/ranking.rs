//! Ranking: scores → exclude what the user has seen → top-k, and the popularity
//! fallback for users the model does not know. Pure functions, no I/O.

use super::eval::top_k;

/// The `k` best `(item, score)` pairs after masking `seen` items out of `scores`
/// (which is modified in place). Fewer than `k` when the catalogue runs out.
pub fn top_k_unseen(
    scores: &mut [f32],
    seen: impl IntoIterator<Item = u32>,
    k: usize,
) -> Vec<(u32, f32)> {
    for i in seen {
        if let Some(s) = scores.get_mut(i as usize) {
            *s = f32::NEG_INFINITY;
        }
    }
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

/// The `k` most popular items not in `seen`, scored popularity / max popularity.
pub fn popular_unseen(
    order: &[u32],
    popularity: &[u32],
    seen: impl Fn(u32) -> bool,
    k: usize,
) -> Vec<(u32, f32)> {
    let max = order
        .first()
        .map(|&i| popularity[i as usize])
        .unwrap_or(0)
        .max(1) as f32;
    order
        .iter()
        .copied()
        .filter(|&i| !seen(i))
        .take(k)
        .map(|i| (i, popularity[i as usize] as f32 / max))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_items_never_come_back() {
        let mut s = vec![0.9, 0.8, 0.7, 0.6, 0.5];
        assert_eq!(top_k_unseen(&mut s, [0, 2], 2), vec![(1, 0.8), (3, 0.6)]);
        let mut s = vec![0.9, 0.8];
        assert_eq!(
            top_k_unseen(&mut s, [0, 1], 5),
            vec![],
            "everything seen: nothing left"
        );
    }

    #[test]
    fn popularity_fallback_skips_seen() {
        let pop = [5, 50, 20, 50];
        let order = popularity_order(&pop);
        assert_eq!(order, vec![1, 3, 2, 0]);
        assert_eq!(
            popular_unseen(&order, &pop, |i| i == 1, 2),
            vec![(3, 1.0), (2, 0.4)]
        );
    }
}
