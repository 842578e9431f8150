//! The train → gate → export → evaluate → publish pipeline behind
//! `movie-recs train`, and the evaluation behind `movie-recs eval`.

use crate::export::{export_history_onnx, export_onnx, OPSET};
use crate::train::{raw_user_inputs, train, user_inputs, TrainError, Trained};
use shared::artifact::*;
use shared::domain::dataset::{histories, popularity};
use shared::domain::eval::{eval_full, eval_loo, EvalReport, PopularityScorer, Scorer};
use shared::domain::split::leave_one_out;
use shared::domain::{Dataset, Interaction, LooCase, TestSet};
use shared::ports::{ArtifactFile, ModelStore, RegistryError};
use shared::scoring::{OnnxModel, ScoringError};

/// Seed of the test split carved from sources without one, fixed so every
/// training seed and every `eval` sees the same test set.
pub const TEST_SPLIT_SEED: u64 = 2017;
/// Sampled negatives per held-out item (the NCF protocol's 99).
pub const PROTOCOL_NEGATIVES: usize = 99;
/// Cut-offs of the two protocols.
pub const NCF_K: usize = 10;
pub const FULL_K: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error("quality gate: validation HR@10 {model:.4} does not beat popularity {popularity:.4}; not published (use --force to publish anyway)")]
    QualityGate { model: f64, popularity: f64 },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Scoring(#[from] ScoringError),
    #[error("evaluation failed: {0}")]
    Eval(String),
    #[error("the data does not match model {version}: {reason}")]
    DataMismatch { version: String, reason: String },
}

/// The data behind one training run, split without touching the test set.
pub struct Splits {
    /// Interactions the model is fitted on.
    pub fit: Vec<Interaction>,
    /// Validation holdout carved out of the training data.
    pub validation: Vec<LooCase>,
    /// How validation ranks: `ncf` (among 99 sampled negatives) or `full`
    /// (among every movie the user has not seen), following the test protocol.
    pub validation_protocol: &'static str,
    /// The test set (shipped with the data, or carved with [`TEST_SPLIT_SEED`]).
    pub test: TestSet,
    /// Training data before the validation holdout (what test ranking excludes).
    pub train: Vec<Interaction>,
}

/// Splits a dataset into (training data, test set): the test set shipped with the
/// data, or each user's latest interaction carved out with [`TEST_SPLIT_SEED`].
pub fn test_split(ds: &Dataset) -> (Vec<Interaction>, TestSet) {
    match &ds.test {
        Some(t) => (ds.train.clone(), t.clone()),
        None => {
            let (kept, cases) = leave_one_out(
                &ds.train,
                ds.n_users(),
                ds.n_items(),
                PROTOCOL_NEGATIVES,
                1,
                None,
                TEST_SPLIT_SEED,
            );
            (kept, TestSet::LeaveOneOut(cases))
        }
    }
}

/// Splits a dataset into fit / validation / test. Validation holds out each
/// user's latest training interaction and ranks it the way the test protocol
/// ranks: among 99 sampled negatives for leave-one-out tests, among every
/// unseen movie for full-ranking tests (sampled metrics can order models
/// differently from full-ranking ones: Krichene & Rendle, KDD 2020).
pub fn splits(ds: &Dataset, seed: u64) -> Splits {
    let (nu, ni) = (ds.n_users(), ds.n_items());
    let (train, test) = test_split(ds);
    let (validation_protocol, negatives) = match test {
        TestSet::Full(_) => ("full", ni),
        TestSet::LeaveOneOut(_) => ("ncf", PROTOCOL_NEGATIVES),
    };
    let (fit, validation) =
        leave_one_out(&train, nu, ni, negatives, 1, None, seed ^ 0x005e_ed0f_7a11);
    Splits {
        fit,
        validation,
        validation_protocol,
        test,
        train,
    }
}

/// Evaluates a scorer and the popularity baseline on a test set.
pub fn evaluate(
    scorer: &dyn Scorer,
    test: &TestSet,
    train: &[Interaction],
    n_users: usize,
) -> Result<EvalReport, PipelineError> {
    let pop = PopularityScorer::new(&popularity(scorer.n_items(), train));
    let e = |x: shared::domain::eval::ScoreError| PipelineError::Eval(x.to_string());
    Ok(match test {
        TestSet::LeaveOneOut(cases) => EvalReport::Ncf {
            k: NCF_K,
            model: eval_loo(scorer, cases, NCF_K).map_err(e)?,
            popularity: eval_loo(&pop, cases, NCF_K).map_err(e)?,
        },
        TestSet::Full(lists) => {
            let hist = histories(n_users, train);
            EvalReport::Full {
                k: FULL_K,
                model: eval_full(scorer, &hist, lists, FULL_K).map_err(e)?,
                popularity: eval_full(&pop, &hist, lists, FULL_K).map_err(e)?,
            }
        }
    })
}

/// Options of one training run.
pub struct TrainOptions {
    pub hp: HyperParams,
    /// Version name; a UTC timestamp when absent.
    pub version: Option<String>,
    /// Publish even when the quality gate fails (recorded in the manifest).
    pub force: bool,
    pub progress: bool,
    /// Recorded in the manifest: how `hp` was chosen from the data.
    pub defaults: Option<DefaultsChoice>,
}

/// Everything a training run produced.
pub struct TrainOutcome {
    pub manifest: Manifest,
    pub trained: Trained,
    pub test: EvalReport,
}

/// `v<UTC timestamp>`, with a `-N` suffix if that name is taken.
fn default_version(existing: &[String]) -> String {
    let base = format!("v{}", chrono::Utc::now().format("%Y%m%d-%H%M%S"));
    let mut v = base.clone();
    let mut n = 2;
    while existing.contains(&v) {
        v = format!("{base}-{n}");
        n += 1;
    }
    v
}

/// Trains, applies the quality gate, exports, evaluates the exported model on
/// the test set through ONNX Runtime and publishes an immutable version.
pub fn train_and_publish(
    store: &dyn ModelStore,
    ds: &Dataset,
    opts: &TrainOptions,
) -> Result<TrainOutcome, PipelineError> {
    let existing = store.list_versions()?;
    let version = match &opts.version {
        Some(v) => v.clone(),
        None => default_version(&existing),
    };
    if !shared::ports::valid_version(&version) {
        return Err(RegistryError::InvalidVersion(version).into());
    }
    if existing.contains(&version) {
        return Err(RegistryError::AlreadyExists(version).into());
    }
    let (nu, ni) = (ds.n_users(), ds.n_items());
    let sp = splits(ds, opts.hp.seed);
    let mut trained = train(
        nu,
        ni,
        &sp.fit,
        Some(&sp.validation),
        &opts.hp,
        opts.progress,
    )?;
    let pop_val = eval_loo(
        &PopularityScorer::new(&popularity(ni, &sp.fit)),
        &sp.validation,
        NCF_K,
    )
    .map_err(|e| PipelineError::Eval(e.to_string()))?;
    let passed = trained.best.hr > pop_val.hr;
    if !passed && !opts.force {
        return Err(PipelineError::QualityGate {
            model: trained.best.hr,
            popularity: pop_val.hr,
        });
    }

    let epochs_run = trained.epochs.len();
    if opts.hp.refit {
        // The epoch count was chosen on validation; now use every training interaction.
        crate::train::refit(nu, ni, &sp.train, &opts.hp, &mut trained, opts.progress)?;
    }
    let meta = [
        ("version", version.as_str()),
        ("data_snapshot_id", &ds.snapshot_id),
    ];
    // A history-only model is served by fold-in: its graph reads each user's
    // movies, from all of their training movies (the validation holdout
    // included) plus whatever they do after. An id+history model folds the
    // training history into per-user rows, as an id model has.
    let fold_in = opts.hp.user_input == UserInput::History;
    let (onnx, inputs) = if fold_in {
        let inputs = UserInputs::new(&raw_user_inputs(nu, &sp.train, &opts.hp));
        (export_history_onnx(&trained.weights, &meta), Some(inputs))
    } else {
        if trained.weights.user_context.is_some() {
            trained.weights = trained
                .weights
                .fold_in(&user_inputs(nu, &sp.train, &opts.hp));
        }
        (export_onnx(&trained.weights, &meta), None)
    };
    let history = encode_history(&ds.user_histories());
    let neighbours = crate::similar::model_neighbours(&trained.weights).encode();
    let inputs_bytes = inputs.as_ref().map(UserInputs::encode);
    let mut scorer = OnnxModel::from_bytes(&onnx, nu, ni)?;
    if let Some(i) = inputs {
        scorer = scorer.with_user_inputs(i);
    }
    let test = evaluate(&scorer, &sp.test, &sp.train, nu)?;

    let pop_all = ds.item_popularity();
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        name: "neumf".into(),
        version: version.clone(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        model_type: "NeuMF".into(),
        hyperparameters: opts.hp.clone(),
        git_sha: shared::GIT_SHA.into(),
        data: DataInfo {
            source: ds.source.clone(),
            format: serde_json::to_value(ds.format)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            snapshot_id: ds.snapshot_id.clone(),
            users: nu,
            items: ni,
            interactions: ds.train.len(),
            excluded_users: ds.excluded_users.clone(),
        },
        files: [
            (MODEL_FILE.to_string(), file_entry(&onnx)),
            (HISTORY_FILE.to_string(), file_entry(&history)),
            (NEIGHBOURS_FILE.to_string(), file_entry(&neighbours)),
        ]
        .into_iter()
        .chain(
            inputs_bytes
                .as_ref()
                .map(|b| (USER_INPUTS_FILE.to_string(), file_entry(b))),
        )
        .collect(),
        users: ds.user_ids.clone(),
        items: ds
            .items
            .iter()
            .zip(&pop_all)
            .map(|(m, &p)| ItemEntry {
                movie_id: m.movie_id,
                title: m.title.clone(),
                genres: m.genres.clone(),
                year: m.year,
                popularity: p,
            })
            .collect(),
        metrics: Metrics {
            validation: Validation {
                protocol: sp.validation_protocol.into(),
                users: trained.best.users,
                hr10: trained.best.hr,
                ndcg10: trained.best.ndcg,
                popularity: ValidationBaseline {
                    hr10: pop_val.hr,
                    ndcg10: pop_val.ndcg,
                },
                best_epoch: trained.best_epoch,
                epochs_run,
            },
            test: Some(test.to_json()),
            seconds_per_epoch: trained.seconds_per_epoch(),
        },
        quality_gate: QualityGate {
            rule: "validation hr@10 > popularity validation hr@10".into(),
            passed,
            forced: !passed && opts.force,
        },
        onnx: OnnxInfo {
            opset: OPSET,
            input: scorer.input_name().into(),
            output: ONNX_OUTPUT.into(),
            user_vector: scorer.user_vector(),
        },
        defaults: opts.defaults.clone(),
    };
    let mut files = vec![
        ArtifactFile {
            name: MODEL_FILE,
            bytes: &onnx,
        },
        ArtifactFile {
            name: HISTORY_FILE,
            bytes: &history,
        },
        ArtifactFile {
            name: NEIGHBOURS_FILE,
            bytes: &neighbours,
        },
    ];
    if let Some(b) = &inputs_bytes {
        files.push(ArtifactFile {
            name: USER_INPUTS_FILE,
            bytes: b,
        });
    }
    store.publish(&manifest, &files)?;
    Ok(TrainOutcome {
        manifest,
        trained,
        test,
    })
}

/// Evaluates a published (and verified) version on a dataset's test protocol.
pub fn eval_version(
    store: &dyn ModelStore,
    version: &str,
    ds: &Dataset,
) -> Result<EvalReport, PipelineError> {
    let art = store.fetch(version)?;
    let m = &art.manifest;
    let mismatch = |reason: String| PipelineError::DataMismatch {
        version: version.into(),
        reason,
    };
    if m.users != ds.user_ids {
        return Err(mismatch(format!(
            "model has {} users, data has {} (or different ids)",
            m.users.len(),
            ds.n_users()
        )));
    }
    if m.items.len() != ds.n_items()
        || m.items
            .iter()
            .zip(&ds.items)
            .any(|(a, b)| a.movie_id != b.movie_id)
    {
        return Err(mismatch(format!(
            "model has {} items, data has {} (or different ids)",
            m.items.len(),
            ds.n_items()
        )));
    }
    let model = OnnxModel::load_artifact(&art).map_err(|e| match e {
        shared::scoring::LoadError::Scoring(e) => PipelineError::Scoring(e),
        shared::scoring::LoadError::Artifact(e) => {
            PipelineError::Registry(RegistryError::Artifact {
                version: version.into(),
                source: e,
            })
        }
    })?;
    let (train, test) = test_split(ds);
    evaluate(&model, &test, &train, ds.n_users())
}
