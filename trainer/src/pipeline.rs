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
    let version = new_version(store, opts.version.as_deref())?;
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
    let popularity_val = eval_loo(
        &PopularityScorer::new(&popularity(ni, &sp.fit)),
        &sp.validation,
        NCF_K,
    )
    .map_err(|e| PipelineError::Eval(e.to_string()))?;
    let passed = trained.best.hr > popularity_val.hr;
    if !passed && !opts.force {
        return Err(PipelineError::QualityGate {
            model: trained.best.hr,
            popularity: popularity_val.hr,
        });
    }
    let epochs_run = trained.epochs.len();
    if opts.hp.refit {
        // The epoch count was chosen on validation; now use every training interaction.
        crate::train::refit(nu, ni, &sp.train, &opts.hp, &mut trained, opts.progress)?;
    }
    let (exported, scorer) = export(&mut trained, ds, &sp, &opts.hp, &version)?;
    let test = evaluate(&scorer, &sp.test, &sp.train, nu)?;
    let validation = Validation {
        protocol: sp.validation_protocol.into(),
        users: trained.best.users,
        hr10: trained.best.hr,
        ndcg10: trained.best.ndcg,
        popularity: ValidationBaseline {
            hr10: popularity_val.hr,
            ndcg10: popularity_val.ndcg,
        },
        best_epoch: trained.best_epoch,
        epochs_run,
    };
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        name: "neumf".into(),
        version,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        model_type: "NeuMF".into(),
        hyperparameters: opts.hp.clone(),
        git_sha: shared::GIT_SHA.into(),
        data: data_info(ds),
        files: exported
            .files()
            .iter()
            .map(|f| (f.name.to_string(), file_entry(f.bytes)))
            .collect(),
        users: ds.user_ids.clone(),
        items: item_entries(ds),
        metrics: Metrics {
            validation,
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
    store.publish(&manifest, &exported.files())?;
    Ok(TrainOutcome {
        manifest,
        trained,
        test,
    })
}

/// The version to publish: the one asked for, or a fresh timestamped
/// name; refused when invalid or taken.
fn new_version(store: &dyn ModelStore, asked: Option<&str>) -> Result<String, PipelineError> {
    let existing = store.list_versions()?;
    let version = match asked {
        Some(v) => v.to_string(),
        None => default_version(&existing),
    };
    if !shared::ports::valid_version(&version) {
        return Err(RegistryError::InvalidVersion(version).into());
    }
    if existing.contains(&version) {
        return Err(RegistryError::AlreadyExists(version).into());
    }
    Ok(version)
}

/// The files of one version, as exported.
struct Exported {
    onnx: Vec<u8>,
    history: Vec<u8>,
    neighbours: Vec<u8>,
    /// History-input models: each training user's movies, for fold-in.
    user_inputs: Option<Vec<u8>>,
}

impl Exported {
    fn files(&self) -> Vec<ArtifactFile<'_>> {
        fn file<'a>(name: &'a str, bytes: &'a [u8]) -> ArtifactFile<'a> {
            ArtifactFile { name, bytes }
        }
        [
            Some(file(MODEL_FILE, &self.onnx)),
            Some(file(HISTORY_FILE, &self.history)),
            Some(file(NEIGHBOURS_FILE, &self.neighbours)),
            self.user_inputs
                .as_deref()
                .map(|b| file(USER_INPUTS_FILE, b)),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Exports the trained weights as ONNX with the files serving needs, and
/// loads the export through ONNX Runtime (what the test set is scored with).
fn export(
    trained: &mut Trained,
    ds: &Dataset,
    sp: &Splits,
    hp: &HyperParams,
    version: &str,
) -> Result<(Exported, OnnxModel), PipelineError> {
    let (nu, ni) = (ds.n_users(), ds.n_items());
    let meta = [("version", version), ("data_snapshot_id", &ds.snapshot_id)];
    // A history-only model is served by fold-in: its graph reads each user's
    // movies, from all of their training movies (the validation holdout
    // included) plus whatever they do after. An id+history model folds the
    // training history into per-user rows, as an id model has.
    let (onnx, inputs) = if hp.user_input == UserInput::History {
        let inputs = UserInputs::new(&raw_user_inputs(nu, &sp.train, hp));
        (export_history_onnx(&trained.weights, &meta), Some(inputs))
    } else {
        if trained.weights.user_context.is_some() {
            trained.weights = trained.weights.fold_in(&user_inputs(nu, &sp.train, hp));
        }
        (export_onnx(&trained.weights, &meta), None)
    };
    let exported = Exported {
        history: encode_history(&ds.user_histories()),
        neighbours: crate::similar::model_neighbours(&trained.weights).encode(),
        user_inputs: inputs.as_ref().map(UserInputs::encode),
        onnx,
    };
    let mut scorer = OnnxModel::from_bytes(&exported.onnx, nu, ni)?;
    if let Some(i) = inputs {
        scorer = scorer.with_user_inputs(i);
    }
    Ok((exported, scorer))
}

/// What the manifest records of the training data.
fn data_info(ds: &Dataset) -> DataInfo {
    DataInfo {
        source: ds.source.clone(),
        format: serde_json::to_value(ds.format)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        snapshot_id: ds.snapshot_id.clone(),
        users: ds.n_users(),
        items: ds.n_items(),
        interactions: ds.train.len(),
        excluded_users: ds.excluded_users.clone(),
    }
}

/// The catalogue as the manifest records it, with training popularity.
fn item_entries(ds: &Dataset) -> Vec<ItemEntry> {
    ds.items
        .iter()
        .zip(ds.item_popularity())
        .map(|(m, p)| ItemEntry {
            movie_id: m.movie_id,
            title: m.title.clone(),
            genres: m.genres.clone(),
            year: m.year,
            popularity: p,
        })
        .collect()
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
