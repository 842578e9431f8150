//! The NeuMF training loop: implicit feedback with negatives redrawn every
//! epoch, Adam, model selection on a validation holdout (never the test set),
//! early stopping, and a progress bar per epoch.

use crate::model::{bce_with_logits, labels, NeuMf, NeuMfWeights};
use candle_core::Tensor;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shared::artifact::HyperParams;
use shared::domain::dataset::histories;
use shared::domain::eval::{eval_loo, LooMetrics};
use shared::domain::{Interaction, LooCase};
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
    Ok(())
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
    validate(hp)?;
    if train.is_empty() {
        return Err(TrainError::NoData);
    }
    let model = NeuMf::new(n_users, n_items, hp.factors, &hp.layers, hp.seed)?;
    let mut opt = AdamW::new(
        model.vars(),
        ParamsAdamW {
            lr: hp.learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
    )?;
    let seen = histories(n_users, train);
    let mut positives: Vec<(u32, u32)> = seen
        .iter()
        .enumerate()
        .flat_map(|(u, items)| items.iter().map(move |&i| (u as u32, i)))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(hp.seed.wrapping_add(1));
    let per_pos = 1 + hp.negatives;
    let n_samples = positives.len() * per_pos;
    let (mut us, mut is, mut ys) = (
        Vec::with_capacity(n_samples),
        Vec::with_capacity(n_samples),
        Vec::with_capacity(n_samples),
    );
    let mut order: Vec<usize> = (0..n_samples).collect();
    let dev = model.device().clone();

    let mut best: Option<(usize, LooMetrics, NeuMfWeights)> = None;
    let mut epochs = Vec::new();
    let mut since_best = 0usize;
    for epoch in 1..=hp.epochs {
        let start = Instant::now();
        // Redraw negatives: items the user has no training interaction with.
        us.clear();
        is.clear();
        ys.clear();
        positives.shuffle(&mut rng);
        for &(u, i) in &positives {
            us.push(u);
            is.push(i);
            ys.push(1.0f32);
            let h = &seen[u as usize];
            for _ in 0..hp.negatives {
                if h.len() >= n_items {
                    break;
                }
                let j = loop {
                    let j = rng.gen_range(0..n_items as u32);
                    if h.binary_search(&j).is_err() {
                        break j;
                    }
                };
                us.push(u);
                is.push(j);
                ys.push(0.0);
            }
        }
        order.clear();
        order.extend(0..us.len());
        order.shuffle(&mut rng);
        let n_batches = us.len().div_ceil(hp.batch_size);
        let bar = if progress {
            ProgressBar::new(n_batches as u64)
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
        bar.finish_and_clear();
        let loss = loss_sum / us.len() as f64;
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
        let val = eval_loo(&model, cases, 10).map_err(|e| TrainError::Eval(e.to_string()))?;
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
