//! The "new users" protocol: how well fold-in serves users the model never
//! trained on. A seeded share of the users with test data is left out of
//! training entirely; after training, they are scored by fold-in from their
//! training movies (exactly as serving scores a user from the events the
//! user-history store recorded), and their test metrics are compared with
//! the same users' metrics from a model that did train on them. Both models
//! are trained the same way (validation-selected epochs, refit if the
//! hyper-parameters say so) and both are measured on the exported ONNX
//! graph; the test set is read only for the final metrics.

use crate::export::export_history_onnx;
use crate::pipeline::{evaluate, splits, PipelineError};
use crate::train::{raw_user_inputs, train};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use shared::artifact::{HyperParams, UserInput, UserInputs};
use shared::domain::eval::EvalReport;
use shared::domain::{Dataset, Interaction, TestSet};
use shared::scoring::OnnxModel;
use std::collections::HashSet;

/// The protocol's result.
#[derive(Clone, Debug, Serialize)]
pub struct FoldInReport {
    /// Share of the users with test data left out of training.
    pub fraction: f64,
    pub seed: u64,
    /// How many users were left out.
    pub users: usize,
    /// The left-out users' test metrics from the model that trained on them.
    pub in_training: serde_json::Value,
    /// The same users' metrics from the model that never saw them, served by fold-in.
    pub folded_in: serde_json::Value,
    /// folded_in / in_training for each metric of the model (1 = no loss).
    pub relative: serde_json::Value,
}

/// Runs the protocol on `ds` with `hp` (a history-input model), leaving out
/// `fraction` of the users with test data, chosen with `seed`.
pub fn new_users(
    ds: &Dataset,
    hp: &HyperParams,
    fraction: f64,
    seed: u64,
    progress: bool,
) -> Result<FoldInReport, PipelineError> {
    if hp.user_input != UserInput::History {
        return Err(PipelineError::Eval(
            "--fold-in-users needs a history-input model (--user-input history)".into(),
        ));
    }
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(PipelineError::Eval(format!(
            "--fold-in-users {fraction}: use a share above 0 and below 1"
        )));
    }
    let (nu, ni) = (ds.n_users(), ds.n_items());
    let sp = splits(ds, hp.seed);
    let mut tested: Vec<u32> = match &sp.test {
        TestSet::LeaveOneOut(cases) => cases.iter().map(|c| c.user).collect(),
        TestSet::Full(lists) => lists.iter().map(|(u, _)| *u).collect(),
    };
    tested.sort_unstable();
    tested.dedup();
    tested.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_out = ((tested.len() as f64 * fraction).round() as usize).clamp(1, tested.len());
    let out: HashSet<u32> = tested[..n_out].iter().copied().collect();
    let test_out = restrict(&sp.test, &out);

    let keep = |xs: &[Interaction]| -> Vec<Interaction> {
        xs.iter()
            .filter(|x| !out.contains(&x.user))
            .copied()
            .collect()
    };
    let validation_kept: Vec<_> = sp
        .validation
        .iter()
        .filter(|c| !out.contains(&c.user))
        .cloned()
        .collect();
    // Every user's training movies: the inputs of both graphs, so the
    // left-out users are read exactly as serving reads a user's events.
    let inputs = UserInputs::new(&raw_user_inputs(nu, &sp.train, hp));
    let score = |fit: &[Interaction],
                 val: &[shared::domain::LooCase],
                 all: &[Interaction]|
     -> Result<EvalReport, PipelineError> {
        let mut trained = train(nu, ni, fit, Some(val), hp, progress)?;
        if hp.refit {
            crate::train::refit(nu, ni, all, hp, &mut trained, progress)?;
        }
        let onnx = export_history_onnx(&trained.weights, &[]);
        let scorer = OnnxModel::from_bytes(&onnx, nu, ni)?.with_user_inputs(inputs.clone());
        // Test ranking excludes each user's training movies, theirs included.
        evaluate(&scorer, &test_out, &sp.train, nu)
    };
    let with = score(&sp.fit, &sp.validation, &sp.train)?;
    let without = score(&keep(&sp.fit), &validation_kept, &keep(&sp.train))?;
    let (a, b) = (model_metrics(&with), model_metrics(&without));
    let relative = a
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let (x, y) = (v.as_f64()?, b.get(k)?.as_f64()?);
                    (x > 0.0).then(|| (k.clone(), serde_json::json!(y / x)))
                })
                .collect::<serde_json::Map<_, _>>()
        })
        .unwrap_or_default();
    Ok(FoldInReport {
        fraction,
        seed,
        users: n_out,
        in_training: with.to_json(),
        folded_in: without.to_json(),
        relative: relative.into(),
    })
}

/// The model's metrics of a report (not the popularity baseline's).
fn model_metrics(r: &EvalReport) -> serde_json::Value {
    let mut v = r.to_json();
    if let Some(m) = v.as_object_mut() {
        for k in ["protocol", "users", "popularity"] {
            m.remove(k);
        }
    }
    v
}

/// The test cases of `users` only.
fn restrict(test: &TestSet, users: &HashSet<u32>) -> TestSet {
    match test {
        TestSet::LeaveOneOut(cases) => TestSet::LeaveOneOut(
            cases
                .iter()
                .filter(|c| users.contains(&c.user))
                .cloned()
                .collect(),
        ),
        TestSet::Full(lists) => TestSet::Full(
            lists
                .iter()
                .filter(|(u, _)| users.contains(u))
                .cloned()
                .collect(),
        ),
    }
}
