//! The hyper-parameters `movie-recs train` uses when a flag is not given,
//! chosen from the data: the configurations that measured best (docs/training.md,
//! Results), each for the kind of data it was selected on.
//!
//! Both use the squared loss over the whole catalogue with the history
//! input (a denoising autoencoder's input dropout), which measured best on
//! both MovieLens sets; what differs follows the test protocol, because
//! validation ranks the way the test does and the settings were chosen on
//! validation:
//!
//! - **leave-one-out** (the NCF protocol, or no test split, so one is carved
//!   the same way: MovieLens 100K, the synthetic data, a lake): confidence
//!   α 10, L2 0.003, 32 factors, recency half-lives of 10 (input) and 100
//!   (targets) movies, 64 users a step for up to 150 epochs with patience 20,
//!   and no refit (the selected weights are kept: refitting leaves the
//!   epoch count chosen for less data);
//! - **full ranking** (a test set of every held-out movie, ranked over the
//!   whole catalogue: MovieLens 1M): α 2, 256 factors (about 1,000 or more
//!   interactions per movie carry them), only the dropped movies as targets,
//!   128 users a step, up to 60 epochs with patience 8, then a warm refit:
//!   the chosen weights continue for [`WARM_REFIT_EPOCHS`] epochs on all
//!   training data (the validation holdout included). On ML-1M that gave
//!   Recall@20 0.2804 in a 7.1-minute run, where refitting from scratch for
//!   the chosen epoch count gave 0.2806 in 15.9 minutes.
//!
//! Data with fewer than [`LARGE_FACTORS_MIN_INTERACTIONS`] interactions
//! gets 64 factors under the full-ranking preset instead of 256 (fewer
//! interactions per movie than the larger model was measured with).
//! Every flag given on the command line overrides its default; the manifest
//! records the preset and why it was chosen.

use shared::artifact::{HyperParams, Loss, UserInput};
use shared::domain::Dataset;

/// Epochs the full-ranking preset's refit continues the chosen weights for.
pub const WARM_REFIT_EPOCHS: usize = 4;

/// Interactions from which the full-ranking preset uses 256 factors.
pub const LARGE_FACTORS_MIN_INTERACTIONS: usize = 500_000;

/// The defaults chosen for one dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Chosen {
    /// `leave-one-out` or `full-ranking`.
    pub preset: &'static str,
    /// Why, in a sentence (for the log and the manifest).
    pub reason: String,
    pub hp: HyperParams,
}

/// The defaults for `ds`, from its test protocol and size.
pub fn for_data(ds: &Dataset) -> Chosen {
    let interactions = ds.train.len();
    let base = HyperParams {
        loss: Loss::Squared,
        user_input: UserInput::History,
        input_dropout: 0.5,
        learning_rate: 0.002,
        ..HyperParams::default()
    };
    let full = matches!(ds.test, Some(shared::domain::TestSet::Full(_)));
    if full {
        let large = interactions >= LARGE_FACTORS_MIN_INTERACTIONS;
        Chosen {
            preset: "full-ranking",
            reason: format!(
                "the test set is ranked over the whole catalogue; {interactions} interactions ({} {LARGE_FACTORS_MIN_INTERACTIONS}: {} factors)",
                if large { ">=" } else { "<" },
                if large { 256 } else { 64 }
            ),
            hp: HyperParams {
                positive_weight: 2.0,
                factors: if large { 256 } else { 64 },
                dropped_targets: true,
                batch_size: 128,
                epochs: 60,
                patience: 8,
                refit: true,
                refit_epochs: WARM_REFIT_EPOCHS,
                ..base
            },
        }
    } else {
        Chosen {
            preset: "leave-one-out",
            reason: format!(
                "the test protocol is leave-one-out ({}); {interactions} interactions",
                if ds.test.is_some() {
                    "given with the data"
                } else {
                    "carved from the data"
                }
            ),
            hp: HyperParams {
                positive_weight: 10.0,
                l2: 0.003,
                history_half_life: 10.0,
                recency_half_life: 100.0,
                batch_size: 64,
                epochs: 150,
                patience: 20,
                refit: false,
                ..base
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::domain::{Interaction, TestSet};

    fn data(test: Option<TestSet>, interactions: usize) -> Dataset {
        let mut ds = shared::data::synthetic::generate(&shared::data::synthetic::SyntheticConfig {
            users: 30,
            items: 20,
            mean_interactions: 5.0,
            cold_start_users: 0,
            ..Default::default()
        })
        .dataset;
        ds.train = (0..interactions)
            .map(|i| Interaction::implicit((i % 30) as u32, (i % 20) as u32, i as i64))
            .collect();
        ds.test = test;
        ds
    }

    #[test]
    fn the_protocol_and_size_choose_the_preset() {
        let loo = for_data(&data(None, 100));
        assert_eq!(loo.preset, "leave-one-out");
        assert!(loo.reason.contains("carved"), "{}", loo.reason);
        assert_eq!(
            (loo.hp.loss, loo.hp.user_input, loo.hp.refit),
            (Loss::Squared, UserInput::History, false)
        );
        let small = for_data(&data(Some(TestSet::Full(vec![(0, vec![1])])), 100));
        assert_eq!((small.preset, small.hp.factors), ("full-ranking", 64));
        let big = for_data(&data(
            Some(TestSet::Full(vec![(0, vec![1])])),
            LARGE_FACTORS_MIN_INTERACTIONS,
        ));
        assert_eq!(
            (big.hp.factors, big.hp.refit, big.hp.dropped_targets),
            (256, true, true)
        );
        assert_eq!(big.hp.refit_epochs, WARM_REFIT_EPOCHS);
    }

    #[test]
    fn the_choice_never_depends_on_what_the_test_set_holds() {
        // Poisoned test data (other users, other movies, many more of them)
        // leaves the choice as it was: only the kind of test set counts.
        let clean = for_data(&data(Some(TestSet::Full(vec![(0, vec![1])])), 100));
        let poisoned = for_data(&data(
            Some(TestSet::Full(
                (0..30).map(|u| (u, (0..20).collect())).collect(),
            )),
            100,
        ));
        assert_eq!(clean, poisoned);
    }
}
