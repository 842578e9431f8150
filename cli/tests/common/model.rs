//! A small history-input (fold-in) model on synthetic data, published to a
//! folder registry: what the in-process router tests serve.

use shared::adapters::local::FolderRegistry;
use shared::artifact::{HyperParams, Loss, UserInput, UserVector};
use shared::data::synthetic::{generate, SyntheticConfig};
use std::sync::Arc;
use trainer::pipeline::{train_and_publish, TrainOptions};

pub struct HistoryModel {
    _dir: tempfile::TempDir,
    pub reg: Arc<FolderRegistry>,
    pub ds: shared::domain::Dataset,
}

/// Trains (300 users × 200 movies, a few seconds) and publishes `version`.
pub fn history_model(version: &str) -> HistoryModel {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(FolderRegistry::new(dir.path().join("registry")));
    let ds = generate(&SyntheticConfig {
        users: 300,
        items: 200,
        cold_start_users: 3,
        ..Default::default()
    })
    .dataset;
    let hp = HyperParams {
        factors: 8,
        layers: vec![16, 8],
        epochs: 4,
        batch_size: 32,
        learning_rate: 0.01,
        loss: Loss::Squared,
        positive_weight: 3.0,
        user_input: UserInput::History,
        history_half_life: 10.0,
        input_dropout: 0.5,
        ..Default::default()
    };
    let out = train_and_publish(
        reg.as_ref(),
        &ds,
        &TrainOptions {
            hp,
            version: Some(version.into()),
            force: true,
            progress: false,
            defaults: None,
        },
    )
    .unwrap();
    assert_eq!(out.manifest.onnx.user_vector, UserVector::History);
    HistoryModel { _dir: dir, reg, ds }
}
