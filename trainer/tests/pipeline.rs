//! The train → gate → export → evaluate → publish pipeline on small synthetic
//! data, and the registry's integrity guarantees.

use shared::adapters::local::FolderRegistry;
use shared::artifact::{History, HyperParams, Loss, UserInput, HISTORY_FILE, MODEL_FILE};
use shared::artifact::{Neighbours, NEIGHBOURS_FILE, NEIGHBOURS_PER_ITEM};
use shared::data::synthetic::{generate, SyntheticConfig};
use shared::domain::eval::EvalReport;
use shared::domain::eval::LooMetrics;
use shared::ports::{ModelStore, RegistryError};
use trainer::pipeline::{
    eval_version, train_and_publish, PipelineError, TrainOptions, TrainOutcome,
};

fn small_world() -> shared::domain::Dataset {
    generate(&SyntheticConfig {
        users: 400,
        items: 300,
        cold_start_users: 5,
        ..Default::default()
    })
    .dataset
}

/// An empty folder registry (kept while the folder lives) and [`small_world`].
fn fixture() -> (tempfile::TempDir, FolderRegistry, shared::domain::Dataset) {
    let dir = tempfile::tempdir().unwrap();
    let reg = FolderRegistry::new(dir.path());
    (dir, reg, small_world())
}

fn quick(seed: u64) -> HyperParams {
    HyperParams {
        factors: 16,
        layers: vec![32, 16, 8],
        epochs: 4,
        batch_size: 256,
        seed,
        ..Default::default()
    }
}

/// Trains and publishes `hp` on `ds` into `reg`, without a progress bar.
fn publish(
    reg: &FolderRegistry,
    ds: &shared::domain::Dataset,
    hp: HyperParams,
    version: Option<String>,
    force: bool,
) -> Result<TrainOutcome, PipelineError> {
    train_and_publish(
        reg,
        ds,
        &TrainOptions {
            hp,
            version,
            force,
            progress: false,
            defaults: None,
        },
    )
}

/// The model's and the popularity baseline's test metrics of a leave-one-out report.
fn ncf(report: &EvalReport) -> (LooMetrics, LooMetrics) {
    match report {
        EvalReport::Ncf {
            model, popularity, ..
        } => (*model, *popularity),
        _ => panic!("synthetic data uses the NCF protocol"),
    }
}

/// Asserts the test HR@10 beats popularity's; the model's test metrics.
fn beats_popularity(report: &EvalReport) -> LooMetrics {
    let (model, popularity) = ncf(report);
    assert!(
        model.hr > popularity.hr,
        "test HR@10 {} vs popularity {}",
        model.hr,
        popularity.hr
    );
    model
}

#[test]
fn short_training_beats_popularity_and_publishes_a_verifiable_version() {
    let (reg_dir, reg, ds) = fixture();
    let out = publish(&reg, &ds, quick(1), Some("t1".into()), false).unwrap();

    // Held-out test data (carved before training): the model beats popularity.
    let model = beats_popularity(&out.test);
    assert!(model.users > 300);

    // The manifest is complete and checksums verify.
    let m = reg.fetch("t1").unwrap().manifest;
    assert_eq!(m, out.manifest);
    assert_eq!(m.data.snapshot_id, ds.snapshot_id);
    assert_eq!(m.users.len(), 400);
    assert_eq!(m.items.len(), 300);
    assert_eq!(
        m.items.iter().map(|i| i.popularity as usize).sum::<usize>(),
        ds.train.len()
    );
    assert!(m.quality_gate.passed && !m.quality_gate.forced);
    assert!(m.metrics.validation.hr10 > m.metrics.validation.popularity.hr10);
    assert_eq!(m.metrics.validation.protocol, "ncf");
    assert!(m.metrics.test.as_ref().unwrap()["hr@10"].as_f64().unwrap() > 0.0);
    assert_eq!(m.files.len(), 3, "{:?}", m.files.keys());
    // The neighbour lists cover the catalogue, never naming a movie itself.
    let nb = Neighbours::decode(
        &std::fs::read(reg_dir.path().join("t1").join(NEIGHBOURS_FILE)).unwrap(),
        300,
    )
    .unwrap();
    assert_eq!(nb.len(), 300);
    assert!(
        (0..300u32)
            .all(|i| nb.of(i).count() == NEIGHBOURS_PER_ITEM.min(299)
                && nb.of(i).all(|(j, _)| j != i))
    );
    // The history sidecar holds every user's training items.
    let h = History::decode(&std::fs::read(reg_dir.path().join("t1").join(HISTORY_FILE)).unwrap())
        .unwrap();
    assert_eq!(h.users(), 400);
    assert_eq!(h.items(0), ds.user_histories()[0].as_slice());

    // `eval` on the published version reproduces the training run's test report.
    let again = eval_version(&reg, "t1", &ds).unwrap();
    assert_eq!(again.to_json(), out.test.to_json());

    // Versions are immutable.
    let e = publish(&reg, &ds, quick(1), Some("t1".into()), false).map(|o| o.manifest);
    assert!(matches!(
        e,
        Err(PipelineError::Registry(RegistryError::AlreadyExists(_)))
    ));

    // Tampering with any file is refused, naming the file.
    let model_path = reg_dir.path().join("t1").join(MODEL_FILE);
    let mut bytes = std::fs::read(&model_path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&model_path, &bytes).unwrap();
    let e = reg.fetch("t1").unwrap_err().to_string();
    assert!(
        e.contains("model.onnx") && e.contains("checksum mismatch"),
        "{e}"
    );
    let e = eval_version(&reg, "t1", &ds).unwrap_err().to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
}

#[test]
fn quality_gate_refuses_a_model_that_does_not_beat_popularity() {
    let (_dir, reg, ds) = fixture();
    // A learning rate this small leaves the model at its random initialisation.
    let bad = HyperParams {
        learning_rate: 1e-12,
        epochs: 1,
        patience: 0,
        ..quick(2)
    };
    let e = publish(&reg, &ds, bad.clone(), Some("bad".into()), false);
    match e {
        Err(PipelineError::QualityGate { model, popularity }) => assert!(model <= popularity),
        other => panic!(
            "expected the gate to refuse, got {:?}",
            other.map(|o| o.manifest.version)
        ),
    }
    assert!(reg.list_versions().unwrap().is_empty(), "nothing published");

    // --force publishes and records it.
    let out = publish(&reg, &ds, bad, Some("forced".into()), true).unwrap();
    assert!(!out.manifest.quality_gate.passed && out.manifest.quality_gate.forced);
    assert_eq!(reg.list_versions().unwrap(), vec!["forced".to_string()]);
}

#[test]
fn bad_hyper_parameters_are_named() {
    let (_dir, reg, ds) = fixture();
    let softmax = HyperParams {
        loss: Loss::Softmax,
        ..quick(1)
    };
    for (hp, flag) in [
        (
            HyperParams {
                layers: vec![33, 8],
                ..quick(1)
            },
            "--layers",
        ),
        // Popularity-shaped negatives mean nothing without sampled negatives.
        (
            HyperParams {
                popularity_negatives: 0.75,
                ..softmax.clone()
            },
            "--popularity-negatives",
        ),
        (
            HyperParams {
                recency_half_life: 10.0,
                ..quick(1)
            },
            "--recency-half-life",
        ),
        (
            HyperParams {
                recency_half_life: -1.0,
                ..softmax.clone()
            },
            "--recency-half-life",
        ),
        // The history input is trained with the softmax objective only.
        (
            HyperParams {
                user_input: UserInput::History,
                ..quick(1)
            },
            "--user-input",
        ),
        (
            HyperParams {
                user_input: UserInput::History,
                input_dropout: 1.0,
                ..softmax.clone()
            },
            "--input-dropout",
        ),
        (
            HyperParams {
                history_half_life: 5.0,
                ..softmax.clone()
            },
            "--history-half-life",
        ),
        (
            HyperParams {
                user_input: UserInput::History,
                history_half_life: f64::NAN,
                ..softmax.clone()
            },
            "--history-half-life",
        ),
        // WMF's confidence weight belongs to the squared loss.
        (
            HyperParams {
                positive_weight: 5.0,
                ..softmax
            },
            "--positive-weight",
        ),
    ] {
        let e = publish(&reg, &ds, hp, None, false)
            .map(|o| o.manifest)
            .unwrap_err()
            .to_string();
        assert!(e.contains(flag), "{e}");
    }
    assert!(reg.list_versions().unwrap().is_empty());
}

#[test]
fn softmax_training_beats_popularity_through_the_exported_model() {
    let (_dir, reg, ds) = fixture();
    let hp = HyperParams {
        loss: Loss::Softmax,
        batch_size: 32,
        learning_rate: 0.01,
        epochs: 40,
        patience: 5,
        ..quick(2)
    };
    let out = publish(&reg, &ds, hp, Some("s1".into()), false).unwrap();
    // Scored through ONNX Runtime on the held-out test set.
    beats_popularity(&out.test);
    let m = reg.fetch("s1").unwrap().manifest;
    assert_eq!(m.hyperparameters.loss, Loss::Softmax);
    // The loss falls over the epochs.
    let losses: Vec<f64> = out.trained.epochs.iter().map(|e| e.loss).collect();
    assert!(losses.last() < losses.first(), "{losses:?}");
}

#[test]
fn history_input_training_beats_popularity_served_from_all_training_movies() {
    let (_dir, reg, ds) = fixture();
    let hp = HyperParams {
        loss: Loss::Softmax,
        user_input: UserInput::History,
        history_half_life: 20.0,
        input_dropout: 0.5,
        batch_size: 32,
        learning_rate: 0.01,
        epochs: 30,
        patience: 5,
        refit: false,
        ..quick(3)
    };
    let out = publish(&reg, &ds, hp.clone(), Some("h1".into()), false).unwrap();
    beats_popularity(&out.test);
    let art = reg.fetch("h1").unwrap();
    let m = &art.manifest;
    assert_eq!(m.hyperparameters.user_input, UserInput::History);
    assert_eq!(m.hyperparameters.input_dropout, 0.5);
    // Without a refit the selection run never read the validation movies;
    // the published tables fold them in: what the network scores reading
    // every training movie (test held out) is what ONNX Runtime serves.
    let (train, _) = trainer::pipeline::test_split(&ds);
    let inputs = trainer::train::user_inputs(ds.n_users(), &train, &hp);
    let network = trainer::NeuMf::reading(&out.trained.weights, inputs).unwrap();
    // History-only models ship the fold-in graph plus the training inputs
    // as a sidecar; the loaded pair scores a known user as before.
    let served = shared::scoring::OnnxModel::load_artifact(&art).unwrap();
    assert_eq!(served.user_vector().as_str(), "history");
    let items: Vec<u32> = (0..ds.n_items() as u32).collect();
    let mut scores = Vec::new();
    for u in [0u32, 17, 199] {
        served.score(u, &mut scores).unwrap();
        let want = network.predict(u, &items).unwrap();
        let worst = scores
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "user {u}: {worst}");
    }
}

#[test]
fn squared_loss_training_beats_popularity_through_the_exported_model() {
    let (_dir, reg, ds) = fixture();
    let hp = HyperParams {
        loss: Loss::Squared,
        positive_weight: 5.0,
        batch_size: 32,
        learning_rate: 0.01,
        epochs: 30,
        patience: 5,
        ..quick(4)
    };
    let out = publish(&reg, &ds, hp, Some("q1".into()), false).unwrap();
    beats_popularity(&out.test);
    let m = reg.fetch("q1").unwrap().manifest;
    assert_eq!(
        (m.hyperparameters.loss, m.hyperparameters.positive_weight),
        (Loss::Squared, 5.0)
    );
    let losses: Vec<f64> = out.trained.epochs.iter().map(|e| e.loss).collect();
    assert!(losses.last() < losses.first(), "{losses:?}");
}
