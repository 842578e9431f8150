//! Hold-out splits: leave-one-out (latest interaction per user) with sampled negatives.

use super::dataset::{histories, Interaction, LooCase};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Splits `interactions` into (kept, held-out cases): for every user with at least
/// `min_keep + 1` interactions the latest one (by time; ties broken by a seeded
/// shuffle) is held out and paired with `n_neg` negatives drawn uniformly from the
/// items the user never interacted with in `interactions` or `also_exclude`.
pub fn leave_one_out(
    interactions: &[Interaction],
    n_users: usize,
    n_items: usize,
    n_neg: usize,
    min_keep: usize,
    also_exclude: Option<&[Vec<u32>]>,
    seed: u64,
) -> (Vec<Interaction>, Vec<LooCase>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let seen = histories(n_users, interactions);
    // Per user: index of the latest interaction, with a random tie-break key.
    let mut latest: Vec<Option<(i64, u64, usize)>> = vec![None; n_users];
    let mut count = vec![0usize; n_users];
    for (i, x) in interactions.iter().enumerate() {
        let u = x.user as usize;
        count[u] += 1;
        let key = (x.ts, rng.gen::<u64>(), i);
        if latest[u].is_none_or(|cur| (key.0, key.1) > (cur.0, cur.1)) {
            latest[u] = Some(key);
        }
    }
    let mut held = vec![false; interactions.len()];
    let mut cases = Vec::new();
    for u in 0..n_users {
        let Some((_, _, i)) = latest[u] else { continue };
        if count[u] <= min_keep {
            continue;
        }
        held[i] = true;
        let item = interactions[i].item;
        let extra = also_exclude.map(|e| e[u].as_slice()).unwrap_or(&[]);
        let negatives = sample_negatives(&mut rng, n_items, n_neg, |j| {
            seen[u].binary_search(&j).is_ok() || extra.binary_search(&j).is_ok()
        });
        cases.push(LooCase {
            user: u as u32,
            item,
            negatives,
        });
    }
    // A user whose every interaction was the held-out item still appears in `kept`
    // only if min_keep allowed it; duplicates of the held-out item stay (they are history).
    let kept = interactions
        .iter()
        .zip(&held)
        .filter(|(_, &h)| !h)
        .map(|(x, _)| *x)
        .collect();
    (kept, cases)
}

/// Draws `n` distinct items for which `excluded` is false (fewer if not enough exist).
pub fn sample_negatives(
    rng: &mut impl Rng,
    n_items: usize,
    n: usize,
    excluded: impl Fn(u32) -> bool,
) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::with_capacity(n);
    let available = (0..n_items as u32).filter(|&j| !excluded(j)).count();
    let want = n.min(available);
    if want * 2 > available {
        // Dense case: shuffle the candidates.
        let mut cand: Vec<u32> = (0..n_items as u32).filter(|&j| !excluded(j)).collect();
        for i in 0..want {
            let k = rng.gen_range(i..cand.len());
            cand.swap(i, k);
        }
        cand.truncate(want);
        return cand;
    }
    while out.len() < want {
        let j = rng.gen_range(0..n_items as u32);
        if !excluded(j) && !out.contains(&j) {
            out.push(j);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ix(user: u32, item: u32, ts: i64) -> Interaction {
        Interaction::implicit(user, item, ts)
    }

    #[test]
    fn holds_out_latest_and_samples_unseen_negatives() {
        let data = vec![ix(0, 0, 1), ix(0, 1, 5), ix(0, 2, 3), ix(1, 3, 1)];
        let (kept, cases) = leave_one_out(&data, 2, 10, 4, 1, None, 7);
        assert_eq!(
            cases.len(),
            1,
            "user 1 has a single interaction and is kept whole"
        );
        assert_eq!(cases[0].user, 0);
        assert_eq!(cases[0].item, 1);
        assert_eq!(cases[0].negatives.len(), 4);
        for n in &cases[0].negatives {
            assert!(![0, 1, 2].contains(n), "negative {n} was seen");
        }
        assert_eq!(kept.len(), 3);
        assert!(!kept.contains(&ix(0, 1, 5)));
    }

    #[test]
    fn negatives_are_distinct_and_capped_by_availability() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = sample_negatives(&mut rng, 6, 10, |j| j < 2);
        let mut s = n.clone();
        s.sort();
        assert_eq!(s, vec![2, 3, 4, 5]);
    }
}
