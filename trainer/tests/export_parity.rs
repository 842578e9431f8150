//! The exported ONNX graph, run by ONNX Runtime through `ort`, agrees with the
//! trainer's own forward pass to 1e-5 on every (user, item) pair.

use shared::domain::split::leave_one_out;
use shared::scoring::OnnxModel;
use trainer::export::export_onnx;
use trainer::NeuMf;

/// 120 synthetic users, 90 movies.
fn small_world() -> shared::domain::Dataset {
    shared::data::synthetic::generate(&shared::data::synthetic::SyntheticConfig {
        users: 120,
        items: 90,
        cold_start_users: 2,
        ..Default::default()
    })
    .dataset
}

#[test]
fn onnx_scores_match_trainer_to_1e5() {
    // A briefly trained model (not just an initialisation), so weights are non-trivial.
    let ds = &small_world();
    let (fit, val) = leave_one_out(&ds.train, ds.n_users(), ds.n_items(), 20, 1, None, 1);
    let hp = shared::artifact::HyperParams {
        factors: 8,
        layers: vec![16, 8, 4],
        epochs: 2,
        batch_size: 128,
        ..Default::default()
    };
    let trained = trainer::train(ds.n_users(), ds.n_items(), &fit, Some(&val), &hp, false).unwrap();
    let model = NeuMf::from_weights(&trained.weights).unwrap();

    let onnx = export_onnx(&trained.weights, &[]);
    let served = OnnxModel::from_bytes(&onnx, ds.n_users(), ds.n_items())
        .expect("ONNX Runtime loads the export (run `make setup`)");
    let items: Vec<u32> = (0..ds.n_items() as u32).collect();
    let mut worst = 0f32;
    let mut out = Vec::new();
    for u in 0..ds.n_users() as u32 {
        let expect = model.predict(u, &items).unwrap();
        served.score(u, &mut out).unwrap();
        assert_eq!(out.len(), expect.len());
        for (a, b) in out.iter().zip(&expect) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(worst < 1e-5, "max |ort − trainer| = {worst}");
    // The scores are not degenerate: they differ across items.
    let spread =
        out.iter().cloned().fold(f32::MIN, f32::max) - out.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 1e-3, "scores are all alike: spread {spread}");
}

#[test]
fn a_history_input_model_served_from_its_folded_in_tables_matches_the_network() {
    use shared::artifact::{HyperParams, Loss, UserInput};
    let ds = &small_world();
    let (nu, ni) = (ds.n_users(), ds.n_items());
    let (fit, val) = leave_one_out(&ds.train, nu, ni, 20, 1, None, 1);
    let hp = HyperParams {
        factors: 8,
        layers: vec![16, 8, 4],
        epochs: 3,
        batch_size: 16,
        learning_rate: 0.01,
        loss: Loss::Softmax,
        user_input: UserInput::History,
        history_half_life: 5.0,
        input_dropout: 0.5,
        ..Default::default()
    };
    let trained = trainer::train(nu, ni, &fit, Some(&val), &hp, false).unwrap();
    // Served from every training interaction, the validation holdout included.
    let inputs = trainer::train::user_inputs(nu, &ds.train, &hp);
    let network = NeuMf::reading(&trained.weights, inputs.clone()).unwrap();
    let onnx = export_onnx(&trained.weights.fold_in(&inputs), &[]);
    let served = OnnxModel::from_bytes(&onnx, nu, ni).unwrap();
    let items: Vec<u32> = (0..ni as u32).collect();
    let (mut worst, mut out) = (0f32, Vec::new());
    for u in 0..nu as u32 {
        let expect = network.predict(u, &items).unwrap();
        served.score(u, &mut out).unwrap();
        for (a, b) in out.iter().zip(&expect) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(worst < 1e-5, "max |ort − trainer| = {worst}");
    // Without the validation items folded in, a user's scores differ.
    let stale = OnnxModel::from_bytes(&export_onnx(&trained.weights, &[]), nu, ni).unwrap();
    let u = val[0].user;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    stale.score(u, &mut a).unwrap();
    served.score(u, &mut b).unwrap();
    assert!(a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-4));
}

#[test]
fn unknown_user_index_is_an_error_not_a_crash() {
    let m = NeuMf::new(4, 6, 2, &[4, 2], 0).unwrap();
    let served = OnnxModel::from_bytes(&export_onnx(&m.weights().unwrap(), &[]), 4, 6).unwrap();
    let mut out = Vec::new();
    let e = served.score(4, &mut out).unwrap_err().to_string();
    assert!(e.contains("outside the model"), "{e}");
}

#[test]
fn the_fold_in_graph_matches_the_network_for_training_and_new_inputs() {
    use shared::artifact::{HyperParams, Loss, UserInput, UserInputs, UserVector};
    use trainer::export::export_history_onnx;
    use trainer::model::history_inputs;
    let ds = small_world();
    let (nu, ni) = (ds.n_users(), ds.n_items());
    let (fit, val) = leave_one_out(&ds.train, nu, ni, 20, 1, None, 1);
    let hp = HyperParams {
        factors: 8,
        layers: vec![16, 8, 4],
        epochs: 3,
        batch_size: 16,
        learning_rate: 0.01,
        loss: Loss::Squared,
        positive_weight: 3.0,
        user_input: UserInput::History,
        history_half_life: 5.0,
        input_dropout: 0.5,
        ..Default::default()
    };
    let trained = trainer::train(nu, ni, &fit, Some(&val), &hp, false).unwrap();
    // The sidecar keeps the raw recency weights; the graph normalises them.
    let raw = trainer::train::raw_user_inputs(nu, &ds.train, &hp);
    let normalised = trainer::train::user_inputs(nu, &ds.train, &hp);
    let network = NeuMf::reading(&trained.weights, normalised).unwrap();
    let onnx = export_history_onnx(&trained.weights, &[]);
    let served = OnnxModel::from_bytes(&onnx, nu, ni)
        .unwrap()
        .with_user_inputs(UserInputs::new(&raw));
    assert_eq!(served.user_vector(), UserVector::History);
    let items: Vec<u32> = (0..ni as u32).collect();
    let (mut worst, mut out) = (0f32, Vec::new());
    for u in 0..nu as u32 {
        let expect = network.predict(u, &items).unwrap();
        served.score(u, &mut out).unwrap();
        for (a, b) in out.iter().zip(&expect) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(
        worst < 1e-5,
        "training users: max |ort − trainer| = {worst}"
    );

    // Any other input (a user the model never saw, with weights at any
    // scale) is scored as the network scores that input.
    let others: Vec<(Vec<u32>, Vec<f32>)> = vec![
        (vec![3], vec![1.0]),
        (vec![1, 7, 40], vec![0.25, 0.5, 1.0]),
        (vec![0, 2, 4, 6, 8], vec![8.0; 5]),
    ];
    let seen: Vec<Vec<u32>> = others.iter().map(|o| o.0.clone()).collect();
    let w: Vec<Vec<f32>> = others.iter().map(|o| o.1.clone()).collect();
    let strangers = NeuMf::reading(&trained.weights, history_inputs(&seen, &w)).unwrap();
    let mut worst = 0f32;
    for (u, (h, w)) in others.iter().enumerate() {
        let expect = strangers.predict(u as u32, &items).unwrap();
        let h: Vec<i64> = h.iter().map(|&i| i as i64).collect();
        served.score_history(&h, w, &mut out).unwrap();
        for (a, b) in out.iter().zip(&expect) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(worst < 1e-5, "new inputs: max |ort − trainer| = {worst}");
    // Inputs the graph cannot read are refused, not scored.
    assert!(served.score_history(&[], &[], &mut out).is_err());
    assert!(served
        .score_history(&[ni as i64], &[1.0], &mut out)
        .is_err());
    assert!(served.score_history(&[1, 2], &[1.0], &mut out).is_err());
    // Without its user inputs a training user cannot be scored.
    let bare = OnnxModel::from_bytes(&onnx, nu, ni).unwrap();
    assert!(bare.score(0, &mut out).is_err());
}
