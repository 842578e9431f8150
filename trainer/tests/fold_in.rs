//! The new-users protocol on a small fixture: users left out of training
//! are scored by fold-in from their training movies and compared with the
//! same users trained in.

use shared::artifact::{HyperParams, Loss, UserInput};

fn hp() -> HyperParams {
    HyperParams {
        factors: 8,
        layers: vec![16, 8],
        epochs: 6,
        batch_size: 32,
        learning_rate: 0.01,
        loss: Loss::Squared,
        positive_weight: 3.0,
        user_input: UserInput::History,
        input_dropout: 0.5,
        patience: 0,
        refit: false,
        ..Default::default()
    }
}

#[test]
fn left_out_users_are_served_by_fold_in_and_compared_with_themselves_trained_in() {
    let ds = shared::data::synthetic::generate(&shared::data::synthetic::SyntheticConfig {
        users: 250,
        items: 120,
        cold_start_users: 0,
        ..Default::default()
    })
    .dataset;
    let r = trainer::fold_in::new_users(&ds, &hp(), 0.2, 7, false).unwrap();
    assert_eq!(r.users, 50, "20% of 250 tested users");
    for v in [&r.in_training, &r.folded_in] {
        assert_eq!(v["protocol"], "ncf");
        assert_eq!(v["users"], 50, "only the left-out users are measured");
    }
    let (a, b) = (
        r.in_training["hr@10"].as_f64().unwrap(),
        r.folded_in["hr@10"].as_f64().unwrap(),
    );
    // Both beat chance (10 of 100 candidates) clearly: fold-in scores
    // users it never trained on from their movies alone.
    assert!(a > 0.2 && b > 0.2, "in training {a}, folded in {b}");
    assert!((r.relative["hr@10"].as_f64().unwrap() - b / a).abs() < 1e-12);
    // The same seed leaves out the same users: the run is reproducible.
    let again = trainer::fold_in::new_users(&ds, &hp(), 0.2, 7, false).unwrap();
    assert_eq!(again.folded_in, r.folded_in);
}

#[test]
fn the_protocol_needs_a_history_input_model_and_a_share_below_one() {
    let ds = shared::data::synthetic::generate(&shared::data::synthetic::SyntheticConfig {
        users: 40,
        items: 30,
        ..Default::default()
    })
    .dataset;
    let id = HyperParams {
        user_input: UserInput::Id,
        ..hp()
    };
    let e = trainer::fold_in::new_users(&ds, &id, 0.1, 1, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("history-input"), "{e}");
    for bad in [0.0, 1.0, -0.5, f64::NAN] {
        assert!(trainer::fold_in::new_users(&ds, &hp(), bad, 1, false).is_err());
    }
}
