//! The train → gate → export → evaluate → publish pipeline on small synthetic
//! data, and the registry's integrity guarantees.

use shared::adapters::local::FolderRegistry;
use shared::artifact::{History, HyperParams, HISTORY_FILE, MODEL_FILE};
use shared::data::synthetic::{generate, SyntheticConfig};
use shared::domain::eval::EvalReport;
use shared::ports::{ModelStore, RegistryError};
use trainer::pipeline::{eval_version, train_and_publish, PipelineError, TrainOptions};

fn small_world() -> shared::domain::Dataset {
    generate(&SyntheticConfig {
        users: 400,
        items: 300,
        cold_start_users: 5,
        ..Default::default()
    })
    .dataset
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

#[test]
fn short_training_beats_popularity_and_publishes_a_verifiable_version() {
    let reg_dir = tempfile::tempdir().unwrap();
    let reg = FolderRegistry::new(reg_dir.path());
    let ds = small_world();
    let out = train_and_publish(
        &reg,
        &ds,
        &TrainOptions {
            hp: quick(1),
            version: Some("t1".into()),
            force: false,
            progress: false,
        },
    )
    .unwrap();

    // Held-out test data (carved before training): the model beats popularity.
    let EvalReport::Ncf {
        model, popularity, ..
    } = out.test
    else {
        panic!("synthetic data uses the NCF protocol")
    };
    assert!(
        model.hr > popularity.hr,
        "test HR@10 {} vs popularity {}",
        model.hr,
        popularity.hr
    );
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
    assert!(m.metrics.test.as_ref().unwrap()["hr@10"].as_f64().unwrap() > 0.0);
    assert_eq!(m.files.len(), 2);
    // The history sidecar holds every user's training items.
    let h = History::decode(&std::fs::read(reg_dir.path().join("t1").join(HISTORY_FILE)).unwrap())
        .unwrap();
    assert_eq!(h.users(), 400);
    assert_eq!(h.items(0), ds.user_histories()[0].as_slice());

    // `eval` on the published version reproduces the training run's test report.
    let again = eval_version(&reg, "t1", &ds).unwrap();
    assert_eq!(again.to_json(), out.test.to_json());

    // Versions are immutable.
    let e = train_and_publish(
        &reg,
        &ds,
        &TrainOptions {
            hp: quick(1),
            version: Some("t1".into()),
            force: false,
            progress: false,
        },
    )
    .map(|o| o.manifest);
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
    let reg_dir = tempfile::tempdir().unwrap();
    let reg = FolderRegistry::new(reg_dir.path());
    let ds = small_world();
    // A learning rate this small leaves the model at its random initialisation.
    let bad = HyperParams {
        learning_rate: 1e-12,
        epochs: 1,
        patience: 0,
        ..quick(2)
    };
    let e = train_and_publish(
        &reg,
        &ds,
        &TrainOptions {
            hp: bad.clone(),
            version: Some("bad".into()),
            force: false,
            progress: false,
        },
    );
    match e {
        Err(PipelineError::QualityGate { model, popularity }) => assert!(model <= popularity),
        other => panic!(
            "expected the gate to refuse, got {:?}",
            other.map(|o| o.manifest.version)
        ),
    }
    assert!(reg.list_versions().unwrap().is_empty(), "nothing published");

    // --force publishes and records it.
    let out = train_and_publish(
        &reg,
        &ds,
        &TrainOptions {
            hp: bad,
            version: Some("forced".into()),
            force: true,
            progress: false,
        },
    )
    .unwrap();
    assert!(!out.manifest.quality_gate.passed && out.manifest.quality_gate.forced);
    assert_eq!(reg.list_versions().unwrap(), vec!["forced".to_string()]);
}

#[test]
fn bad_hyper_parameters_are_named() {
    let reg_dir = tempfile::tempdir().unwrap();
    let reg = FolderRegistry::new(reg_dir.path());
    let ds = small_world();
    let hp = HyperParams {
        layers: vec![33, 8],
        ..quick(1)
    };
    let e = train_and_publish(
        &reg,
        &ds,
        &TrainOptions {
            hp,
            version: None,
            force: false,
            progress: false,
        },
    )
    .map(|o| o.manifest)
    .unwrap_err()
    .to_string();
    assert!(e.contains("--layers"), "{e}");
}
