//! The NeuMF training loop: implicit feedback with negatives redrawn every
//! epoch, Adam, model selection on a validation holdout (never the test set),
//! early stopping, and a progress bar per epoch.

use crate::model::{bce_with_logits, history_inputs, labels, Histories, NeuMf, NeuMfWeights};
use candle_core::Tensor;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shared::artifact::{HyperParams, Loss, UserInput};
use shared::domain::dataset::histories;
use shared::domain::eval::{eval_loo, LooMetrics, ScoreError, Scorer};
use shared::domain::{Interaction, LooCase};
use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("tensor library: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("evaluation: {0}")]
    Eval(String),
    #[error("invalid hyper-parameters: {0}")]
    Config(String),
    #[error("no training interactions")]
    NoData,
}

/// Metrics recorded for epochs run without a validation set (refit).
const NOT_VALIDATED: LooMetrics = LooMetrics {
    users: 0,
    hr: 0.0,
    ndcg: 0.0,
};

/// Per-epoch record, for logs and the manifest.
#[derive(Clone, Debug)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub validation: LooMetrics,
    pub seconds: f64,
}

/// The outcome of training: the best epoch's weights and how it was chosen.
#[derive(Clone, Debug)]
pub struct Trained {
    pub weights: NeuMfWeights,
    pub best_epoch: usize,
    pub best: LooMetrics,
    pub epochs: Vec<EpochLog>,
}

impl Trained {
    pub fn seconds_per_epoch(&self) -> f64 {
        self.epochs.iter().map(|e| e.seconds).sum::<f64>() / self.epochs.len().max(1) as f64
    }
}

/// Checks hyper-parameters before any work starts, naming the bad one.
pub fn validate(hp: &HyperParams) -> Result<(), TrainError> {
    let bad = |m: &str| Err(TrainError::Config(m.into()));
    if hp.factors == 0 {
        return bad("--factors must be at least 1");
    }
    if hp.layers.len() < 2 || !hp.layers[0].is_multiple_of(2) || hp.layers.contains(&0) {
        return bad("--layers needs at least two positive widths, the first even (e.g. 64,32,16)");
    }
    if !(hp.learning_rate > 0.0 && hp.learning_rate.is_finite()) {
        return bad("--lr must be positive");
    }
    if hp.epochs == 0 || hp.batch_size == 0 {
        return bad("--epochs and --batch-size must be at least 1");
    }
    if hp.l2 < 0.0 {
        return bad("--l2 must be non-negative");
    }
    if !(0.0..=2.0).contains(&hp.popularity_negatives) {
        return bad("--popularity-negatives must be from 0 (uniform) to 2");
    }
    if hp.loss.whole_catalogue() && hp.popularity_negatives > 0.0 {
        return bad(
            "--popularity-negatives applies to --loss bce (softmax and squared score every item)",
        );
    }
    if !(hp.recency_half_life >= 0.0 && hp.recency_half_life.is_finite()) {
        return bad("--recency-half-life must be non-negative");
    }
    if hp.loss == Loss::Bce && hp.recency_half_life > 0.0 {
        return bad("--recency-half-life applies to --loss softmax or squared");
    }
    if hp.user_input != UserInput::Id && !hp.loss.whole_catalogue() {
        return bad("--user-input history and id+history need --loss softmax or squared");
    }
    if !(hp.positive_weight >= 0.0 && hp.positive_weight.is_finite()) {
        return bad("--positive-weight must be non-negative");
    }
    if hp.loss != Loss::Squared && hp.positive_weight > 0.0 {
        return bad("--positive-weight applies to --loss squared");
    }
    if !(hp.history_half_life >= 0.0 && hp.history_half_life.is_finite()) {
        return bad("--history-half-life must be non-negative");
    }
    if !(0.0..1.0).contains(&hp.input_dropout) {
        return bad("--input-dropout must be from 0 to below 1");
    }
    if hp.user_input == UserInput::Id && (hp.history_half_life > 0.0 || hp.input_dropout > 0.0) {
        return bad(
            "--history-half-life and --input-dropout apply to --user-input history or id+history",
        );
    }
    if !(0.0..=1.0).contains(&hp.young_account_weight) {
        return bad("--young-account-weight must be from 0 to 1");
    }
    Ok(())
}

/// Builds each epoch's samples: every positive (young accounts' kept with
/// probability `young_account_weight`) followed by `negatives` items the
/// user never interacted with, drawn uniformly or ∝ (popularity + 1)^β.
pub struct Sampler {
    n_items: usize,
    negatives: usize,
    /// Cumulative negative-sampling weights (empty: uniform).
    cdf: Vec<f64>,
    /// Users counted at `young_weight`.
    young: Vec<bool>,
    young_weight: f64,
}

impl Sampler {
    pub fn new(n_users: usize, n_items: usize, train: &[Interaction], hp: &HyperParams) -> Self {
        let cdf = if hp.popularity_negatives > 0.0 {
            let pop = shared::domain::dataset::popularity(n_items, train);
            let mut acc = 0.0;
            pop.iter()
                .map(|&c| {
                    acc += (c as f64 + 1.0).powf(hp.popularity_negatives);
                    acc
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut young = vec![false; n_users];
        if hp.young_account_days > 0 {
            let mut first = vec![i64::MAX; n_users];
            let mut last = i64::MIN;
            for x in train {
                first[x.user as usize] = first[x.user as usize].min(x.ts);
                last = last.max(x.ts);
            }
            let span = hp.young_account_days as i64 * 86_400;
            for (y, f) in young.iter_mut().zip(&first) {
                *y = *f != i64::MAX && last - *f < span;
            }
        }
        Sampler {
            n_items,
            negatives: hp.negatives,
            cdf,
            young,
            young_weight: hp.young_account_weight.clamp(0.0, 1.0),
        }
    }

    /// Users whose interactions are down-weighted.
    pub fn young_users(&self) -> usize {
        self.young.iter().filter(|y| **y).count()
    }

    /// Whether this epoch counts a positive of `user` (young accounts' with
    /// probability `young_account_weight`).
    fn keep(&self, user: u32, rng: &mut ChaCha8Rng) -> bool {
        !self.young[user as usize] || rng.gen::<f64>() < self.young_weight
    }

    fn negative(&self, rng: &mut ChaCha8Rng) -> u32 {
        if self.cdf.is_empty() {
            return rng.gen_range(0..self.n_items as u32);
        }
        let total = *self.cdf.last().expect("items");
        let r = rng.gen_range(0.0..total);
        (self.cdf.partition_point(|&c| c <= r) as u32).min(self.n_items as u32 - 1)
    }

    /// Shuffles `positives` and fills one epoch's (users, items, labels).
    pub fn epoch(
        &self,
        positives: &mut [(u32, u32)],
        seen: &[Vec<u32>],
        rng: &mut ChaCha8Rng,
        (us, is, ys): (&mut Vec<u32>, &mut Vec<u32>, &mut Vec<f32>),
    ) {
        us.clear();
        is.clear();
        ys.clear();
        positives.shuffle(rng);
        for &(u, i) in positives.iter() {
            if !self.keep(u, rng) {
                continue;
            }
            us.push(u);
            is.push(i);
            ys.push(1.0f32);
            let h = &seen[u as usize];
            for _ in 0..self.negatives {
                if h.len() >= self.n_items {
                    break;
                }
                let j = loop {
                    let j = self.negative(rng);
                    if h.binary_search(&j).is_err() {
                        break j;
                    }
                };
                us.push(u);
                is.push(j);
                ys.push(0.0);
            }
        }
    }
}

/// Per user, a weight for each movie of `seen[u]` (same order): 0.5^(k / half_life),
/// k = how many of the user's other movies have a strictly later timestamp
/// (a movie seen twice counts at its latest); all 1 when `half_life` is 0.
pub fn recency_weights(seen: &[Vec<u32>], train: &[Interaction], half_life: f64) -> Vec<Vec<f32>> {
    if half_life <= 0.0 {
        return seen.iter().map(|h| vec![1.0; h.len()]).collect();
    }
    let mut latest: Vec<Vec<i64>> = seen.iter().map(|h| vec![i64::MIN; h.len()]).collect();
    for x in train {
        let h = &seen[x.user as usize];
        if let Ok(k) = h.binary_search(&x.item) {
            let t = &mut latest[x.user as usize][k];
            *t = (*t).max(x.ts);
        }
    }
    latest
        .iter()
        .map(|ts| {
            let mut sorted = ts.clone();
            sorted.sort_unstable();
            ts.iter()
                .map(|t| {
                    let later = sorted.len() - sorted.partition_point(|s| s <= t);
                    0.5f64.powf(later as f64 / half_life) as f32
                })
                .collect()
        })
        .collect()
}

/// What a history-input model reads for each user of `train`: their movies
/// weighted by recency (`hp.history_half_life`), L2-normalised.
pub fn user_inputs(n_users: usize, train: &[Interaction], hp: &HyperParams) -> Histories {
    let seen = histories(n_users, train);
    history_inputs(&seen, &recency_weights(&seen, train, hp.history_half_life))
}

/// [`user_inputs`] before the L2 normalisation, movies ascending: what a
/// fold-in graph's sidecar keeps, so new events can be weighted against them.
pub fn raw_user_inputs(n_users: usize, train: &[Interaction], hp: &HyperParams) -> Histories {
    let seen = histories(n_users, train);
    let weights = recency_weights(&seen, train, hp.history_half_life);
    seen.iter()
        .zip(&weights)
        .map(|(items, w)| items.iter().copied().zip(w.iter().copied()).collect())
        .collect()
}

fn epoch_bar(progress: bool, batches: usize, epoch: usize) -> ProgressBar {
    let bar = if progress {
        ProgressBar::new(batches as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {prefix:>3} [{bar:30}] {pos}/{len} batches  loss {msg}  {elapsed}<{eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(epoch.to_string());
    bar
}

/// log softmax along the last dimension; the shift by the row maximum is a
/// constant for the gradient.
fn log_softmax_rows(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(1)?.detach();
    let diff = x.broadcast_sub(&max)?;
    diff.broadcast_sub(&diff.exp()?.sum_keepdim(1)?.log()?)
}

/// A batch's summed loss of a whole-catalogue objective, from `[b × n_items]`
/// tensors: the logits, each target's weight (0 elsewhere), 1 where a movie
/// is a target, and 1 where a cell is scored at all. Softmax:
/// −Σ weight · log softmax(logits); squared:
/// Σ scored · (1 + α·weight) (logit − target)².
fn catalogue_loss(
    hp: &HyperParams,
    logits: &Tensor,
    weights: &Tensor,
    observed: &Tensor,
    counted: &Tensor,
) -> candle_core::Result<Tensor> {
    match hp.loss {
        Loss::Squared => {
            let confidence = (((weights * hp.positive_weight)? + 1.0)? * counted)?;
            ((logits - observed)?.sqr()? * confidence)?.sum_all()
        }
        Loss::Softmax | Loss::Bce => (log_softmax_rows(logits)? * weights)?.sum_all()?.neg(),
    }
}

/// Fills a batch's `[b × n_items]` target buffers for [`catalogue_loss`]
/// (weights, target indicator, scored indicator) and returns the summed
/// target weight. Each user's movies are targets at their `weights`; with
/// `only_dropped`, only the movies `dropped` from the input are. A movie left
/// out of the targets (still in the input, or a young account's positive
/// skipped this epoch) is not scored at all, rather than taken as unwatched.
#[allow(clippy::too_many_arguments)]
fn batch_targets(
    users: &[u32],
    seen: &[Vec<u32>],
    weights: &[Vec<f32>],
    dropped: &[(usize, u32)],
    sampler: &Sampler,
    only_dropped: bool,
    rng: &mut ChaCha8Rng,
    (y, observed, counted): (&mut Vec<f32>, &mut Vec<f32>, &mut Vec<f32>),
) -> f64 {
    let n_items = sampler.n_items;
    let cells = users.len() * n_items;
    for (buf, v) in [(&mut *y, 0.0), (&mut *observed, 0.0), (&mut *counted, 1.0)] {
        buf.clear();
        buf.resize(cells, v);
    }
    let mut count = 0.0f64;
    for (r, &u) in users.iter().enumerate() {
        for (&i, &w) in seen[u as usize].iter().zip(&weights[u as usize]) {
            let k = r * n_items + i as usize;
            y[k] = w;
            if !only_dropped && sampler.keep(u, rng) {
                observed[k] = 1.0;
                count += w as f64;
            } else {
                counted[k] = 0.0;
            }
        }
    }
    if only_dropped {
        for &(r, i) in dropped {
            let k = r * n_items + i as usize;
            if sampler.keep(users[r], rng) {
                (observed[k], counted[k]) = (1.0, 1.0);
                count += y[k] as f64;
            }
        }
    }
    y.iter_mut().zip(observed.iter()).for_each(|(w, o)| *w *= o);
    count
}

/// The log loss's samples of one epoch (users, items, labels) and the
/// order they are visited in, reused from epoch to epoch.
struct BceSamples {
    us: Vec<u32>,
    is: Vec<u32>,
    ys: Vec<f32>,
    order: Vec<usize>,
}

impl BceSamples {
    fn with_capacity(n: usize) -> Self {
        BceSamples {
            us: Vec::with_capacity(n),
            is: Vec::with_capacity(n),
            ys: Vec::with_capacity(n),
            order: Vec::with_capacity(n),
        }
    }
}

/// One epoch of the log loss: negatives redrawn (items the user has no
/// training interaction with), samples shuffled, one Adam step a batch.
/// Answers the mean loss per sample.
#[allow(clippy::too_many_arguments)]
fn bce_epoch(
    model: &NeuMf,
    opt: &mut AdamW,
    sampler: &Sampler,
    positives: &mut [(u32, u32)],
    seen: &[Vec<u32>],
    rng: &mut ChaCha8Rng,
    samples: &mut BceSamples,
    hp: &HyperParams,
    bar: &ProgressBar,
) -> Result<f64, TrainError> {
    let dev = model.device().clone();
    let BceSamples { us, is, ys, order } = samples;
    sampler.epoch(positives, seen, rng, (us, is, ys));
    order.clear();
    order.extend(0..us.len());
    order.shuffle(rng);
    let mut loss_sum = 0.0f64;
    let (mut bu, mut bi, mut by) = (Vec::new(), Vec::new(), Vec::new());
    for (b, chunk) in order.chunks(hp.batch_size).enumerate() {
        bu.clear();
        bi.clear();
        by.clear();
        for &k in chunk {
            bu.push(us[k]);
            bi.push(is[k]);
            by.push(ys[k]);
        }
        let u = Tensor::from_slice(&bu, bu.len(), &dev)?;
        let i = Tensor::from_slice(&bi, bi.len(), &dev)?;
        let y = labels(&by, &dev)?;
        let (logits, sq) = model.forward(&u, &i)?;
        let mut loss = bce_with_logits(&logits, &y)?;
        let data_loss = loss.to_scalar::<f32>()? as f64;
        if hp.l2 > 0.0 {
            loss = (loss + (sq * (hp.l2 / chunk.len() as f64))?)?;
        }
        opt.backward_step(&loss)?;
        loss_sum += data_loss * chunk.len() as f64;
        if b % 50 == 0 {
            bar.set_message(format!(
                "{:.4}",
                loss_sum / ((b * hp.batch_size + chunk.len()) as f64)
            ));
        }
        bar.inc(1);
    }
    Ok(loss_sum / us.len() as f64)
}

/// One epoch of a whole-catalogue objective (softmax or squared): batches
/// of `hp.batch_size` users, each user's positives scored against the whole
/// catalogue; returns the mean loss per (weighted) positive.
#[allow(clippy::too_many_arguments)]
fn catalogue_epoch(
    model: &NeuMf,
    opt: &mut AdamW,
    seen: &[Vec<u32>],
    weights: &[Vec<f32>],
    users: &mut [u32],
    sampler: &Sampler,
    hp: &HyperParams,
    rng: &mut ChaCha8Rng,
    bar: &ProgressBar,
) -> Result<f64, TrainError> {
    let dev = model.device().clone();
    let (n_users, n_items) = (model.n_users, model.n_items);
    users.shuffle(rng);
    let (mut y, mut observed, mut counted) = (Vec::new(), Vec::new(), Vec::new());
    let (mut loss_sum, mut n_pos) = (0.0f64, 0.0f64);
    let mut dropped = Vec::new();
    for (b, chunk) in users.chunks(hp.batch_size).enumerate() {
        // Denoising: each input movie left out with probability input_dropout.
        dropped.clear();
        let (gu, mu) = model.user_vectors(chunk, &mut |r, i| {
            let keep = hp.input_dropout == 0.0 || rng.gen::<f64>() >= hp.input_dropout;
            if !keep {
                dropped.push((r, i));
            }
            keep
        })?;
        let count = batch_targets(
            chunk,
            seen,
            weights,
            &dropped,
            sampler,
            hp.dropped_targets,
            rng,
            (&mut y, &mut observed, &mut counted),
        );
        bar.inc(1);
        if count == 0.0 {
            continue;
        }
        let shape = (chunk.len(), n_items);
        let logits = model.forward_all(&gu, &mu)?;
        let total = catalogue_loss(
            hp,
            &logits,
            &Tensor::from_slice(&y, shape, &dev)?,
            &Tensor::from_slice(&observed, shape, &dev)?,
            &Tensor::from_slice(&counted, shape, &dev)?,
        )?;
        loss_sum += total.to_scalar::<f32>()? as f64;
        n_pos += count;
        let mut loss = (total / count)?;
        if hp.l2 > 0.0 {
            let reg = model.penalty(chunk, chunk.len() as f64 / n_users as f64)?;
            loss = (loss + (reg * (hp.l2 / chunk.len() as f64))?)?;
        }
        opt.backward_step(&loss)?;
        if b % 10 == 0 {
            bar.set_message(format!("{:.4}", loss_sum / n_pos));
        }
    }
    Ok(loss_sum / n_pos.max(f64::MIN_POSITIVE))
}

/// Rows of precomputed scores, one per user, served as a [`Scorer`].
struct ScoreRows<'a> {
    n_items: usize,
    rows: &'a [f32],
    row_of: HashMap<u32, usize>,
}

impl Scorer for ScoreRows<'_> {
    fn n_items(&self) -> usize {
        self.n_items
    }
    fn score_all(&self, user: u32, out: &mut Vec<f32>) -> Result<(), ScoreError> {
        let r = *self
            .row_of
            .get(&user)
            .ok_or_else(|| format!("user {user} was not scored"))?;
        out.clear();
        out.extend_from_slice(&self.rows[r * self.n_items..(r + 1) * self.n_items]);
        Ok(())
    }
}

/// Validation HR@10 and NDCG@10 of `model` on `cases`, by the shared
/// evaluator ([`eval_loo`]), the users scored a few hundred at a time
/// against the whole catalogue ([`NeuMf::score_users`]) rather than one
/// call per user: on ML-1M this took validation from about 17 s an epoch
/// to under 2 s.
fn validate_model(model: &NeuMf, cases: &[LooCase]) -> Result<LooMetrics, TrainError> {
    const CASES: usize = 1024;
    let (mut hr, mut ndcg) = (0.0, 0.0);
    for chunk in cases.chunks(CASES) {
        let mut users: Vec<u32> = chunk.iter().map(|c| c.user).collect();
        users.sort_unstable();
        users.dedup();
        let rows = model.score_users(&users)?;
        let table = ScoreRows {
            n_items: model.n_items,
            rows: &rows,
            row_of: users.iter().enumerate().map(|(r, &u)| (u, r)).collect(),
        };
        let m = eval_loo(&table, chunk, 10).map_err(|e| TrainError::Eval(e.to_string()))?;
        hr += m.hr * chunk.len() as f64;
        ndcg += m.ndcg * chunk.len() as f64;
    }
    let n = cases.len().max(1) as f64;
    Ok(LooMetrics {
        users: cases.len(),
        hr: hr / n,
        ndcg: ndcg / n,
    })
}

/// Trains NeuMF on `train` and keeps the epoch with the best validation HR@10.
/// Without a validation set it runs `hp.epochs` epochs and keeps the last.
pub fn train(
    n_users: usize,
    n_items: usize,
    train: &[Interaction],
    validation: Option<&[LooCase]>,
    hp: &HyperParams,
    progress: bool,
) -> Result<Trained, TrainError> {
    train_from(n_users, n_items, train, validation, hp, progress, None)
}

/// After the epoch count was chosen on validation (`selected`), the weights
/// to publish, trained on `all` (the training data with the validation
/// holdout): `hp.refit_epochs` more epochs from the chosen weights, or with
/// 0 as many epochs as were chosen from a fresh start. The refit's epochs
/// are appended to `selected.epochs`.
pub fn refit(
    n_users: usize,
    n_items: usize,
    all: &[Interaction],
    hp: &HyperParams,
    selected: &mut Trained,
    progress: bool,
) -> Result<(), TrainError> {
    let (epochs, init) = match hp.refit_epochs {
        0 => (selected.best_epoch, None),
        n => (n, Some(&selected.weights)),
    };
    let hp = HyperParams {
        epochs,
        ..hp.clone()
    };
    let done = train_from(n_users, n_items, all, None, &hp, progress, init)?;
    selected.weights = done.weights;
    selected.epochs.extend(done.epochs);
    Ok(())
}

/// A fresh model of `hp`'s shape, or `init`'s weights; a history-input
/// model reads `train`'s histories.
fn build_model(
    n_users: usize,
    n_items: usize,
    train: &[Interaction],
    hp: &HyperParams,
    init: Option<&NeuMfWeights>,
) -> Result<NeuMf, TrainError> {
    Ok(match (hp.user_input, init) {
        (UserInput::Id, None) => NeuMf::new(n_users, n_items, hp.factors, &hp.layers, hp.seed)?,
        (UserInput::Id, Some(w)) => NeuMf::from_weights(w)?,
        (UserInput::History | UserInput::IdHistory, None) => NeuMf::with_history(
            n_items,
            hp.factors,
            &hp.layers,
            hp.seed,
            user_inputs(n_users, train, hp),
            hp.user_input == UserInput::IdHistory,
        )?,
        (UserInput::History | UserInput::IdHistory, Some(w)) => {
            NeuMf::reading(w, user_inputs(n_users, train, hp))?
        }
    })
}

/// AdamW at `hp`'s learning rate, without weight decay.
fn optimizer(model: &NeuMf, hp: &HyperParams) -> Result<AdamW, TrainError> {
    Ok(AdamW::new(
        model.vars(),
        ParamsAdamW {
            lr: hp.learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
    )?)
}

/// [`train`], starting from `init`'s weights (of the same shape) instead of
/// a fresh initialisation when given; a history-input model then reads
/// `train`'s histories.
pub fn train_from(
    n_users: usize,
    n_items: usize,
    train: &[Interaction],
    validation: Option<&[LooCase]>,
    hp: &HyperParams,
    progress: bool,
    init: Option<&NeuMfWeights>,
) -> Result<Trained, TrainError> {
    validate(hp)?;
    if train.is_empty() {
        return Err(TrainError::NoData);
    }
    let model = build_model(n_users, n_items, train, hp, init)?;
    let mut opt = optimizer(&model, hp)?;
    let seen = histories(n_users, train);
    let mut positives: Vec<(u32, u32)> = seen
        .iter()
        .enumerate()
        .flat_map(|(u, items)| items.iter().map(move |&i| (u as u32, i)))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(hp.seed.wrapping_add(1));
    let sampler = Sampler::new(n_users, n_items, train, hp);
    let per_pos = 1 + hp.negatives;
    // Buffers of the log loss's samples (the softmax objective needs none).
    let n_samples = match hp.loss {
        Loss::Bce => positives.len() * per_pos,
        Loss::Softmax | Loss::Squared => 0,
    };
    let mut samples = BceSamples::with_capacity(n_samples);
    let weights = match hp.loss {
        Loss::Softmax | Loss::Squared => recency_weights(&seen, train, hp.recency_half_life),
        Loss::Bce => Vec::new(),
    };
    let mut users: Vec<u32> = (0..n_users as u32)
        .filter(|&u| !seen[u as usize].is_empty())
        .collect();

    let mut best: Option<(usize, LooMetrics, NeuMfWeights)> = None;
    let mut epochs = Vec::new();
    let mut since_best = 0usize;
    for epoch in 1..=hp.epochs {
        let start = Instant::now();
        let loss = match hp.loss {
            Loss::Bce => {
                let bar = epoch_bar(progress, n_samples.div_ceil(hp.batch_size), epoch);
                let loss = bce_epoch(
                    &model,
                    &mut opt,
                    &sampler,
                    &mut positives,
                    &seen,
                    &mut rng,
                    &mut samples,
                    hp,
                    &bar,
                )?;
                bar.finish_and_clear();
                loss
            }
            Loss::Softmax | Loss::Squared => {
                let bar = epoch_bar(progress, users.len().div_ceil(hp.batch_size), epoch);
                let loss = catalogue_epoch(
                    &model, &mut opt, &seen, &weights, &mut users, &sampler, hp, &mut rng, &bar,
                )?;
                bar.finish_and_clear();
                loss
            }
        };
        let Some(cases) = validation else {
            // Refit: nothing to select, the last epoch is the answer.
            let seconds = start.elapsed().as_secs_f64();
            if progress {
                eprintln!(
                    "refit epoch {epoch:>3}/{}  loss {loss:.4}  {seconds:.1}s",
                    hp.epochs
                );
            }
            epochs.push(EpochLog {
                epoch,
                loss,
                validation: NOT_VALIDATED,
                seconds,
            });
            continue;
        };
        let val = validate_model(&model, cases)?;
        let seconds = start.elapsed().as_secs_f64();
        let improved = best.as_ref().is_none_or(|(_, m, _)| val.hr > m.hr);
        if progress {
            eprintln!(
                "epoch {epoch:>3}  loss {loss:.4}  val HR@10 {:.4}  NDCG@10 {:.4}  {seconds:.1}s{}",
                val.hr,
                val.ndcg,
                if improved { "  *best" } else { "" }
            );
        }
        epochs.push(EpochLog {
            epoch,
            loss,
            validation: val,
            seconds,
        });
        if improved {
            best = Some((epoch, val, model.weights()?));
            since_best = 0;
        } else {
            since_best += 1;
            if hp.patience > 0 && since_best >= hp.patience {
                if progress {
                    eprintln!(
                        "early stop: no better validation HR@10 for {} epochs",
                        hp.patience
                    );
                }
                break;
            }
        }
    }
    // Without validation (a refit) nothing was selected: keep the last epoch.
    let (best_epoch, best, weights) = match best {
        Some(b) => b,
        None => (epochs.len(), NOT_VALIDATED, model.weights()?),
    };
    Ok(Trained {
        weights,
        best_epoch,
        best,
        epochs,
    })
}

#[cfg(test)]
mod tests;
