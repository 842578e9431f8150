use super::*;

/// 50 items: genres cycle over 5 (item i has genre i % 5, and genre 5
/// when i < 10); popularity 50 − i (item 0 the most popular); scores
/// descend with the index too, so `none` is 0, 1, 2, …
fn setup() -> (ItemFeatures, Vec<f32>) {
    let names = ["a", "b", "c", "d", "e", "x"];
    let genres: Vec<Vec<String>> = (0..50)
        .map(|i| {
            let mut g = vec![names[i % 5].to_string()];
            if i < 10 {
                g.push("x".into());
            }
            g
        })
        .collect();
    let f = ItemFeatures::new(genres.iter().zip(0..).map(|(g, i)| (g.as_slice(), 50 - i)));
    let scores = (0..50).map(|i| 1.0 - i as f32 / 100.0).collect();
    (f, scores)
}

fn ids(v: &[(u32, f32)]) -> Vec<u32> {
    v.iter().map(|(i, _)| *i).collect()
}

fn all_policies(k: usize) -> Vec<Policy> {
    vec![
        Policy::None,
        Policy::Mmr { lambda: 0.5 },
        Policy::Slots { slots: 3 },
        Policy::Calibrated { lambda: 0.5 },
        Policy::Explore { weight: 0.5 },
        Policy::Slots { slots: k },
        Policy::Mmr { lambda: 1.0 },
        Policy::Explore { weight: 1.0 },
        Policy::Exposure {
            scale: 1.0,
            protect: 2,
            slots: 0,
        },
        Policy::Exposure {
            scale: 2.0,
            protect: 0,
            slots: 3,
        },
    ]
}

#[test]
fn every_policy_gives_k_distinct_unseen_items() {
    let (f, mut scores) = setup();
    for i in [0, 3, 7] {
        scores[i] = f32::NEG_INFINITY;
    }
    for k in [1, 5, 10, 47] {
        for p in all_policies(k) {
            let out = rerank(p, &scores, k, &f, &[0, 1], &[]);
            let got = ids(&out);
            assert_eq!(got.len(), k, "{p:?} k={k}");
            let mut d = got.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), k, "{p:?}: duplicates in {got:?}");
            assert!(
                !got.iter().any(|i| [0, 3, 7].contains(i)),
                "{p:?} served a seen item"
            );
            // Each item keeps its model score.
            assert!(out.iter().all(|(i, s)| *s == scores[*i as usize]));
        }
        // Fewer unseen than k: all of them, none invented.
        for p in all_policies(k) {
            let out = rerank(p, &scores, 60, &f, &[], &[]);
            assert_eq!(out.len(), 47, "{p:?}");
        }
    }
}

#[test]
fn zero_weight_equals_none() {
    let (f, scores) = setup();
    let none = rerank(Policy::None, &scores, 10, &f, &[2], &[]);
    assert_eq!(ids(&none), (0..10).collect::<Vec<u32>>());
    for p in [
        Policy::Mmr { lambda: 0.0 },
        Policy::Calibrated { lambda: 0.0 },
        Policy::Explore { weight: 0.0 },
        Policy::Slots { slots: 0 },
    ] {
        assert_eq!(rerank(p, &scores, 10, &f, &[2], &[]), none, "{p:?}");
    }
}

#[test]
fn slots_are_filled_from_outside_the_head_by_score() {
    let (f, scores) = setup();
    // Head: the 10 most popular (items 0..10).
    assert_eq!(f.head.iter().filter(|h| **h).count(), 10);
    assert!(f.head[..10].iter().all(|h| *h));
    let out = ids(&rerank(
        Policy::Slots { slots: 3 },
        &scores,
        10,
        &f,
        &[],
        &[],
    ));
    // 7 best overall (0..7), then the 3 best tail items (10, 11, 12), in score order.
    assert_eq!(out, vec![0, 1, 2, 3, 4, 5, 6, 10, 11, 12]);
    let out = ids(&rerank(
        Policy::Slots { slots: 10 },
        &scores,
        10,
        &f,
        &[],
        &[],
    ));
    assert!(out.iter().all(|i| !f.head[*i as usize]));
}

#[test]
fn mmr_spreads_genres() {
    let (f, scores) = setup();
    let out = ids(&rerank(
        Policy::Mmr { lambda: 0.7 },
        &scores,
        5,
        &f,
        &[],
        &[],
    ));
    let genres: std::collections::HashSet<u64> =
        out.iter().map(|i| f.genres[*i as usize]).collect();
    assert_eq!(genres.len(), 5, "{out:?}");
    // `none`'s top 5 are 0..5: five genres but all sharing "x".
    let none = ids(&rerank(Policy::None, &scores, 5, &f, &[], &[]));
    let shared = |l: &[u32]| {
        l.iter()
            .filter(|i| f.genres[**i as usize] & (1 << 1) != 0)
            .count()
    };
    assert_eq!(shared(&none), 5);
    assert!(shared(&out) < 5, "{out:?}");
}

#[test]
fn calibration_follows_the_history() {
    let (f, scores) = setup();
    // A history of genre "c" only (items 12, 17, 22: no "x").
    let out = ids(&rerank(
        Policy::Calibrated { lambda: 0.9 },
        &scores,
        5,
        &f,
        &[12, 17, 22],
        &[],
    ));
    let c_bit = f.genres[12];
    let in_c = out
        .iter()
        .filter(|i| f.genres[**i as usize] & c_bit != 0)
        .count();
    assert!(in_c >= 4, "{out:?}");
    let none = ids(&rerank(Policy::None, &scores, 5, &f, &[12, 17, 22], &[]));
    assert_eq!(
        none.iter()
            .filter(|i| f.genres[**i as usize] & c_bit != 0)
            .count(),
        1
    );
}

#[test]
fn exploration_favours_little_exposed_movies() {
    let (f, scores) = setup();
    // Nothing served yet: the model's order.
    let none = ids(&rerank(Policy::None, &scores, 5, &f, &[], &[]));
    let fresh = ids(&rerank(
        Policy::Explore { weight: 1.0 },
        &scores,
        5,
        &f,
        &[],
        &[],
    ));
    assert_eq!(fresh, none);
    // Items 0..5 were shown a lot, 5..10 a little: at full weight the
    // never-shown come first (ties by score), at a small weight the
    // much-shown give way to the near-equally relevant.
    let mut exposure = vec![0u64; 50];
    exposure[..5].fill(100);
    exposure[5..10].fill(3);
    let full = ids(&rerank(
        Policy::Explore { weight: 1.0 },
        &scores,
        5,
        &f,
        &[],
        &exposure,
    ));
    assert_eq!(full, vec![10, 11, 12, 13, 14]);
    let some = ids(&rerank(
        Policy::Explore { weight: 0.2 },
        &scores,
        5,
        &f,
        &[],
        &exposure,
    ));
    assert!(some.iter().all(|i| *i >= 5), "{some:?}");
    assert!(some.contains(&5), "{some:?}");
}

#[test]
fn parsing_names_and_parameters() {
    let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(Policy::parse("none", &q(&[]), 10), Ok(Policy::None));
    assert_eq!(
        Policy::parse("mmr", &q(&[("lambda", "0.25")]), 10),
        Ok(Policy::Mmr { lambda: 0.25 })
    );
    assert_eq!(
        Policy::parse("slots", &q(&[]), 2),
        Ok(Policy::Slots { slots: 2 })
    );
    assert_eq!(
        Policy::from_spec("explore:weight=0.4", 10),
        Ok(Policy::Explore { weight: 0.4 })
    );
    for (name, params, needle) in [
        ("popular", q(&[]), "policy must be one of"),
        ("mmr", q(&[("lambda", "1.5")]), "lambda"),
        ("calibrated", q(&[("lambda", "x")]), "lambda"),
        ("explore", q(&[("weight", "-0.1")]), "weight"),
        ("slots", q(&[("slots", "11")]), "slots"),
        ("exposure", q(&[("scale", "5")]), "scale"),
        ("exposure", q(&[("protect", "11")]), "protect"),
        ("exposure", q(&[("slots", "-1")]), "slots"),
    ] {
        let e = Policy::parse(name, &params, 10).unwrap_err();
        assert!(e.to_string().starts_with(needle), "{name}: {e}");
    }
    assert_eq!(
        Policy::from_spec("mmr:lambda", 10).unwrap_err().name,
        "policy"
    );
    for p in all_policies(10) {
        assert_eq!(Policy::from_spec(&p.spec(), 10), Ok(p));
    }
}

#[test]
fn exposure_without_prices_is_its_base_and_with_prices_moves_priced_movies_down() {
    let (f, scores) = setup();
    let policy = |slots| Policy::Exposure {
        scale: 1.0,
        protect: 2,
        slots,
    };
    for slots in [0, 3] {
        let base = rerank(policy(slots).base(), &scores, 10, &f, &[], &[]);
        assert_eq!(rerank(policy(slots), &scores, 10, &f, &[], &[]), base);
        assert_eq!(
            rerank_priced(policy(slots), &scores, 10, &f, &[], &[], &[0.0; 50]),
            base
        );
    }
    // Price the first five movies fully: the two protected (0, 1) stay,
    // 2, 3, 4 leave the top 10 (the spread is 0.49: they fall below 0.6).
    let mut prices = vec![0.0f32; 50];
    prices[..5].fill(1.0);
    let out = rerank_priced(policy(0), &scores, 10, &f, &[], &[], &prices);
    assert_eq!(ids(&out), vec![0, 1, 5, 6, 7, 8, 9, 10, 11, 12]);
    // The model's scores are kept.
    assert!(out.iter().all(|(i, s)| *s == scores[*i as usize]));
    // Other policies ignore prices.
    assert_eq!(
        rerank_priced(Policy::None, &scores, 10, &f, &[], &[], &prices),
        rerank(Policy::None, &scores, 10, &f, &[], &[])
    );
}
