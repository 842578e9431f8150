//! Offline evaluation: the NCF leave-one-out protocol (HR@k, NDCG@k over sampled
//! negatives) and the full-ranking protocol of LightGCN/UltraGCN (Recall@k, NDCG@k
//! over every item the user did not interact with in train). The trainer's
//! validation, `movie-recs eval` and the popularity baseline all run through here.

use super::dataset::LooCase;
use serde_json::{json, Value};

/// Error raised by a scorer (ONNX Runtime, tensor library, …).
pub type ScoreError = Box<dyn std::error::Error + Send + Sync>;

/// Anything that can score items for a user; higher is better.
pub trait Scorer {
    /// Number of items the scorer knows.
    fn n_items(&self) -> usize;

    /// Scores every item for `user` into `out` (resized to `n_items`).
    fn score_all(&self, user: u32, out: &mut Vec<f32>) -> Result<(), ScoreError>;

    /// Scores the given items for `user` into `out` (same order as `items`).
    fn score_items(&self, user: u32, items: &[u32], out: &mut Vec<f32>) -> Result<(), ScoreError> {
        let mut all = Vec::new();
        self.score_all(user, &mut all)?;
        out.clear();
        out.extend(items.iter().map(|&i| all[i as usize]));
        Ok(())
    }
}

/// Ranks items by their training popularity: the baseline every report includes.
pub struct PopularityScorer {
    counts: Vec<f32>,
}

impl PopularityScorer {
    pub fn new(popularity: &[u32]) -> Self {
        PopularityScorer {
            counts: popularity.iter().map(|&c| c as f32).collect(),
        }
    }
}

impl Scorer for PopularityScorer {
    fn n_items(&self) -> usize {
        self.counts.len()
    }
    fn score_all(&self, _user: u32, out: &mut Vec<f32>) -> Result<(), ScoreError> {
        out.clear();
        out.extend_from_slice(&self.counts);
        Ok(())
    }
    fn score_items(&self, _user: u32, items: &[u32], out: &mut Vec<f32>) -> Result<(), ScoreError> {
        out.clear();
        out.extend(items.iter().map(|&i| self.counts[i as usize]));
        Ok(())
    }
}

/// Hit rate and NDCG of the leave-one-out protocol.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LooMetrics {
    pub users: usize,
    pub hr: f64,
    pub ndcg: f64,
}

/// Recall and NDCG of the full-ranking protocol.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FullMetrics {
    pub users: usize,
    pub recall: f64,
    pub ndcg: f64,
}

/// 0-based rank of the held-out item among its candidates. Ties count against the
/// held-out item, as in the reference evaluator (a stable sort with the held-out
/// item appended last). A negative equal to the held-out item is counted once.
pub fn loo_rank(pos_score: f32, pos_item: u32, negatives: &[u32], neg_scores: &[f32]) -> usize {
    negatives
        .iter()
        .zip(neg_scores)
        .filter(|(&n, &s)| n != pos_item && s >= pos_score)
        .count()
}

/// NCF protocol: HR@k and NDCG@k averaged over the cases.
pub fn eval_loo(
    scorer: &dyn Scorer,
    cases: &[LooCase],
    k: usize,
) -> Result<LooMetrics, ScoreError> {
    let (mut hr, mut ndcg) = (0.0, 0.0);
    let mut items = Vec::new();
    let mut scores = Vec::new();
    for c in cases {
        items.clear();
        items.push(c.item);
        items.extend_from_slice(&c.negatives);
        scorer.score_items(c.user, &items, &mut scores)?;
        let rank = loo_rank(scores[0], c.item, &c.negatives, &scores[1..]);
        if rank < k {
            hr += 1.0;
            ndcg += 1.0 / ((rank + 2) as f64).log2();
        }
    }
    let n = cases.len().max(1) as f64;
    Ok(LooMetrics {
        users: cases.len(),
        hr: hr / n,
        ndcg: ndcg / n,
    })
}

/// Indices of the `k` highest scores, best first; ties go to the lower index
/// (a NaN ranks as the lowest score).
///
/// One pass keeps the `k` best seen so far in a sorted buffer: almost every
/// score costs one comparison with the current k-th best, so a top-20 of a
/// few thousand movies takes microseconds. (It replaced a selection over
/// all the indices, which the serving profile showed at ~40% of the
/// server's CPU.) When `k` is a large share of the catalogue, a selection
/// and a sort of the rest are cheaper, and are used.
pub fn top_k(scores: &[f32], k: usize) -> Vec<u32> {
    let key = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    let k = k.min(scores.len());
    if k == 0 {
        return Vec::new();
    }
    if k * 4 > scores.len() {
        let better = |a: &u32, b: &u32| {
            let (sa, sb) = (key(scores[*a as usize]), key(scores[*b as usize]));
            sb.partial_cmp(&sa)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.cmp(b))
        };
        let mut idx: Vec<u32> = (0..scores.len() as u32).collect();
        if k < idx.len() {
            idx.select_nth_unstable_by(k - 1, better);
            idx.truncate(k);
        }
        idx.sort_by(better);
        return idx;
    }
    // Best first; among equal scores, in index order (the scan's order).
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (i, &s) in scores.iter().enumerate() {
        let s = key(s);
        if best.len() == k {
            // Not better than the k-th best: an equal score has a higher index.
            if s <= best[k - 1].0 {
                continue;
            }
            best.pop();
        }
        // After every score at least as good (those have lower indices).
        let at = best.partition_point(|&(b, _)| b >= s);
        best.insert(at, (s, i as u32));
    }
    best.into_iter().map(|(_, i)| i).collect()
}

/// Recall@k and NDCG@k of one ranked list against a set of relevant items, with
/// IDCG over min(|relevant|, k) as in LightGCN/UltraGCN.
pub fn recall_ndcg(ranked: &[u32], relevant: &[u32], k: usize) -> (f64, f64) {
    if relevant.is_empty() {
        return (0.0, 0.0);
    }
    let mut hits = 0usize;
    let mut dcg = 0.0;
    for (pos, item) in ranked.iter().take(k).enumerate() {
        if relevant.contains(item) {
            hits += 1;
            dcg += 1.0 / ((pos + 2) as f64).log2();
        }
    }
    let idcg: f64 = (0..relevant.len().min(k))
        .map(|i| 1.0 / ((i + 2) as f64).log2())
        .sum();
    (hits as f64 / relevant.len() as f64, dcg / idcg)
}

/// Full-ranking protocol: every item except the user's training items is ranked.
pub fn eval_full(
    scorer: &dyn Scorer,
    train_histories: &[Vec<u32>],
    test: &[(u32, Vec<u32>)],
    k: usize,
) -> Result<FullMetrics, ScoreError> {
    let (mut recall, mut ndcg, mut users) = (0.0, 0.0, 0usize);
    let mut scores = Vec::new();
    for (u, relevant) in test {
        if relevant.is_empty() {
            continue;
        }
        scorer.score_all(*u, &mut scores)?;
        if let Some(seen) = train_histories.get(*u as usize) {
            for &i in seen {
                scores[i as usize] = f32::NEG_INFINITY;
            }
        }
        let ranked = top_k(&scores, k);
        let (r, n) = recall_ndcg(&ranked, relevant, k);
        recall += r;
        ndcg += n;
        users += 1;
    }
    let n = users.max(1) as f64;
    Ok(FullMetrics {
        users,
        recall: recall / n,
        ndcg: ndcg / n,
    })
}

/// A model's and the popularity baseline's metrics under one protocol, in the
/// JSON shape `movie-recs eval --json` prints and manifests store.
#[derive(Clone, Debug, PartialEq)]
pub enum EvalReport {
    Ncf {
        k: usize,
        model: LooMetrics,
        popularity: LooMetrics,
    },
    Full {
        k: usize,
        model: FullMetrics,
        popularity: FullMetrics,
    },
}

impl EvalReport {
    /// `{"protocol":"ncf","users":N,"hr@10":x,"ndcg@10":y,"popularity":{…}}` or the
    /// full-ranking equivalent with `recall@20` / `ndcg@20`.
    pub fn to_json(&self) -> Value {
        match self {
            EvalReport::Ncf {
                k,
                model,
                popularity,
            } => json!({
                "protocol": "ncf",
                "users": model.users,
                format!("hr@{k}"): model.hr,
                format!("ndcg@{k}"): model.ndcg,
                "popularity": { format!("hr@{k}"): popularity.hr, format!("ndcg@{k}"): popularity.ndcg },
            }),
            EvalReport::Full {
                k,
                model,
                popularity,
            } => json!({
                "protocol": "full",
                "users": model.users,
                format!("recall@{k}"): model.recall,
                format!("ndcg@{k}"): model.ndcg,
                "popularity": { format!("recall@{k}"): popularity.recall, format!("ndcg@{k}"): popularity.ndcg },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores = a fixed table per item, the same for every user.
    struct Table(Vec<f32>);
    impl Scorer for Table {
        fn n_items(&self) -> usize {
            self.0.len()
        }
        fn score_all(&self, _u: u32, out: &mut Vec<f32>) -> Result<(), ScoreError> {
            out.clear();
            out.extend_from_slice(&self.0);
            Ok(())
        }
    }

    #[test]
    fn loo_hand_worked() {
        // Item scores: item i scores i. Case A: held-out 9 beats all → rank 0.
        // Case B: held-out 2 among negatives 0,1,3,4,5 → items 3,4,5 beat it → rank 3.
        // Case C: held-out 0 among 1..=5 → rank 5.
        let s = Table((0..10).map(|i| i as f32).collect());
        let cases = vec![
            LooCase {
                user: 0,
                item: 9,
                negatives: vec![0, 1, 2],
            },
            LooCase {
                user: 1,
                item: 2,
                negatives: vec![0, 1, 3, 4, 5],
            },
            LooCase {
                user: 2,
                item: 0,
                negatives: vec![1, 2, 3, 4, 5],
            },
        ];
        let m = eval_loo(&s, &cases, 4).unwrap();
        // HR@4: A and B hit, C misses → 2/3. NDCG: (1/log2(2) + 1/log2(5)) / 3.
        assert!((m.hr - 2.0 / 3.0).abs() < 1e-12);
        let expect = (1.0 + 1.0 / 5f64.log2()) / 3.0;
        assert!((m.ndcg - expect).abs() < 1e-12, "{} vs {expect}", m.ndcg);
        assert_eq!(m.users, 3);
    }

    #[test]
    fn loo_positive_among_its_negatives_counts_once_and_ties_count_against() {
        // Held-out 1 appears among its negatives: it must not rank against itself.
        assert_eq!(loo_rank(5.0, 1, &[1, 2], &[5.0, 1.0]), 0);
        // A tie with another item counts against the held-out item.
        assert_eq!(loo_rank(5.0, 1, &[2, 3], &[5.0, 1.0]), 1);
    }

    #[test]
    fn full_ranking_hand_worked() {
        // Items scored 0..6 (item 5 best). User 0 trained on 5, test {4, 0}.
        // Ranking without train items: 4,3,2,1,0. Top-2 = [4,3] → one hit of two.
        // Recall = 1/2; DCG = 1/log2(2) = 1; IDCG over min(2,2) = 1 + 1/log2(3).
        let s = Table((0..6).map(|i| i as f32).collect());
        let m = eval_full(&s, &[vec![5]], &[(0, vec![4, 0])], 2).unwrap();
        assert_eq!(m.users, 1);
        assert!((m.recall - 0.5).abs() < 1e-12);
        assert!((m.ndcg - 1.0 / (1.0 + 1.0 / 3f64.log2())).abs() < 1e-12);
    }

    #[test]
    fn idcg_uses_min_of_relevant_and_k() {
        // One relevant item at position 0 → NDCG = 1 even though k = 20.
        let (r, n) = recall_ndcg(&[7, 1, 2], &[7], 20);
        assert_eq!((r, n), (1.0, 1.0));
    }

    #[test]
    fn top_k_breaks_ties_by_index() {
        assert_eq!(top_k(&[1.0, 3.0, 3.0, 2.0], 3), vec![1, 2, 3]);
        assert_eq!(top_k(&[1.0], 5), vec![0]);
        assert_eq!(top_k(&[1.0, 2.0], 0), Vec::<u32>::new());
    }

    #[test]
    fn top_k_equals_a_full_sort_on_both_paths() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for round in 0..400 {
            let n = rng.gen_range(1..400usize);
            // Few distinct values (many ties), masked -inf, the odd NaN.
            let scores: Vec<f32> = (0..n)
                .map(|_| match rng.gen_range(0..20) {
                    0 => f32::NEG_INFINITY,
                    1 if round % 3 == 0 => f32::NAN,
                    _ => rng.gen_range(0..12) as f32 / 4.0 - 1.0,
                })
                .collect();
            let mut reference: Vec<u32> = (0..n as u32).collect();
            let key = |i: u32| {
                let s = scores[i as usize];
                if s.is_nan() {
                    f32::NEG_INFINITY
                } else {
                    s
                }
            };
            reference.sort_by(|&a, &b| key(b).partial_cmp(&key(a)).unwrap().then(a.cmp(&b)));
            for k in [1, 2, 5, 10, 20, n / 4, n / 3, n, n + 3] {
                let want: Vec<u32> = reference.iter().copied().take(k).collect();
                assert_eq!(top_k(&scores, k), want, "n {n}, k {k}");
            }
        }
    }

    #[test]
    fn report_json_shape() {
        let m = LooMetrics {
            users: 3,
            hr: 0.5,
            ndcg: 0.25,
        };
        let v = EvalReport::Ncf {
            k: 10,
            model: m,
            popularity: m,
        }
        .to_json();
        assert_eq!(v["protocol"], "ncf");
        assert_eq!(v["users"], 3);
        assert_eq!(v["hr@10"], 0.5);
        assert_eq!(v["popularity"]["ndcg@10"], 0.25);
    }
}
