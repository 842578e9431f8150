use super::*;

#[test]
fn weights_round_trip_through_candle() {
    let m = NeuMf::new(5, 7, 4, &[8, 4, 2], 3).unwrap();
    let w = m.weights().unwrap();
    assert_eq!(w.gmf_user.len(), 20);
    assert_eq!(w.dense[0].0.len(), 32);
    assert_eq!(w.out_w.len(), 6);
    let m2 = NeuMf::from_weights(&w).unwrap();
    assert_eq!(m2.weights().unwrap(), w);
    assert_eq!(
        m.predict(1, &[0, 3]).unwrap(),
        m2.predict(1, &[0, 3]).unwrap()
    );
    // Same seed, same init; another seed differs.
    assert_eq!(
        NeuMf::new(5, 7, 4, &[8, 4, 2], 3)
            .unwrap()
            .weights()
            .unwrap(),
        w
    );
    assert_ne!(
        NeuMf::new(5, 7, 4, &[8, 4, 2], 4)
            .unwrap()
            .weights()
            .unwrap(),
        w
    );
}

#[test]
fn whole_catalogue_logits_equal_the_pairwise_network() {
    let m = spread(&NeuMf::new(6, 9, 4, &[10, 6, 3], 11).unwrap());
    let (gu, mu) = m.user_vectors(&[4, 0, 2], &mut |_, _| true).unwrap();
    let all = m.forward_all(&gu, &mu).unwrap();
    let all = all.to_vec2::<f32>().unwrap();
    let items: Vec<u32> = (0..9).collect();
    for (row, u) in all.iter().zip([4u32, 0, 2]) {
        let us = Tensor::new(vec![u; 9], &Device::Cpu).unwrap();
        let is = Tensor::new(items.as_slice(), &Device::Cpu).unwrap();
        let (pair, _) = m.forward(&us, &is).unwrap();
        for (a, b) in row.iter().zip(pair.to_vec1::<f32>().unwrap()) {
            assert!((a - b).abs() < 1e-5, "user {u}: {a} vs {b}");
        }
    }
}

/// Inputs of 4 users over 6 movies: weights 1, 2, … per movie, user 3 has none.
fn toy_inputs() -> Histories {
    let seen = vec![vec![0u32, 2, 5], vec![1, 2], vec![4], vec![]];
    let w: Vec<Vec<f32>> = seen
        .iter()
        .map(|h| (1..=h.len()).map(|k| k as f32).collect())
        .collect();
    history_inputs(&seen, &w)
}

#[test]
fn history_inputs_are_unit_length_per_user() {
    let inputs = toy_inputs();
    for input in &inputs[..3] {
        let norm: f32 = input.iter().map(|(_, w)| w * w).sum();
        assert!((norm - 1.0).abs() < 1e-6, "{input:?}");
    }
    // User 0: weights 1, 2, 3 over movies 0, 2, 5.
    let k = 14f32.sqrt();
    assert_eq!(inputs[0], vec![(0, 1.0 / k), (2, 2.0 / k), (5, 3.0 / k)]);
    assert!(inputs[3].is_empty());
}

#[test]
fn a_history_input_model_folds_into_per_user_tables_served_alike() {
    let inputs = toy_inputs();
    let net = NeuMf::with_history(6, 3, &[4, 4, 2], 9, inputs.clone(), false).unwrap();
    let w = net.weights().unwrap();
    let ctx = w.user_context.clone().expect("history model");
    assert_eq!((ctx.gmf.len(), w.gmf_user.len()), (6 * 3, 4 * 3));
    // User 0's GMF row is the weighted sum of movies 0, 2 and 5's rows.
    for d in 0..3 {
        let want: f32 = inputs[0]
            .iter()
            .map(|&(i, x)| x * ctx.gmf[i as usize * 3 + d])
            .sum();
        assert!((w.gmf_user[d] - want).abs() < 1e-7);
    }
    // A user without history has zero embeddings.
    assert!(w.gmf_user[9..]
        .iter()
        .chain(&w.mlp_user[6..])
        .all(|v| *v == 0.0));
    // The served form (free rows from the tables) scores as the network.
    let served = NeuMf::from_weights(&w).unwrap();
    let items: Vec<u32> = (0..6).collect();
    for u in 0..4 {
        let (a, b) = (
            net.predict(u, &items).unwrap(),
            served.predict(u, &items).unwrap(),
        );
        assert!(
            a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6),
            "{a:?} {b:?}"
        );
    }
    // Folding in other histories serves what the network reading them scores.
    let mut other = inputs.clone();
    other[1] = vec![(3, 0.6), (4, 0.8)];
    let folded = w.fold_in(&other);
    assert_ne!(folded.gmf_user, w.gmf_user);
    let (a, b) = (
        NeuMf::reading(&w, other)
            .unwrap()
            .predict(1, &items)
            .unwrap(),
        NeuMf::from_weights(&folded)
            .unwrap()
            .predict(1, &items)
            .unwrap(),
    );
    assert!(
        a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6),
        "{a:?} {b:?}"
    );
    // A model of free user rows has nothing to fold in.
    let id = NeuMf::new(4, 6, 3, &[4, 2], 1).unwrap().weights().unwrap();
    assert_eq!(id.fold_in(&vec![vec![(0, 1.0)]; 4]), id);
}

#[test]
fn an_id_and_history_model_adds_its_free_rows_to_the_folded_history() {
    let inputs = toy_inputs();
    let net = NeuMf::with_history(6, 3, &[4, 4, 2], 9, inputs.clone(), true).unwrap();
    let mut w = net.weights().unwrap();
    let ctx = w.user_context.as_mut().unwrap();
    let (free_gmf, free_mlp) = ctx.free.as_mut().expect("free rows");
    // The free rows start at zero: the model starts as the history model.
    assert!(free_gmf.iter().chain(free_mlp.iter()).all(|v| *v == 0.0));
    free_gmf
        .iter_mut()
        .enumerate()
        .for_each(|(k, v)| *v = 0.1 * k as f32);
    free_mlp
        .iter_mut()
        .enumerate()
        .for_each(|(k, v)| *v = -0.05 * k as f32);
    let folded = w.fold_in(&inputs);
    let ctx = w.user_context.as_ref().unwrap();
    // User 1's GMF row: its free row plus movies 1 and 2's rows.
    for d in 0..3 {
        let hist: f32 = inputs[1]
            .iter()
            .map(|&(i, x)| x * ctx.gmf[i as usize * 3 + d])
            .sum();
        let want = 0.1 * (3 + d) as f32 + hist;
        assert!((folded.gmf_user[3 + d] - want).abs() < 1e-6);
    }
    // User 3 has no history: their rows are the free rows alone.
    assert_eq!(folded.mlp_user[6..8], [-0.3, -0.35]);
    let network = NeuMf::reading(&w, inputs).unwrap();
    let served = NeuMf::from_weights(&folded).unwrap();
    let items: Vec<u32> = (0..6).collect();
    for u in 0..4 {
        let (a, b) = (
            network.predict(u, &items).unwrap(),
            served.predict(u, &items).unwrap(),
        );
        assert!(
            a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6),
            "{a:?} {b:?}"
        );
    }
    // Training reaches the free rows: the optimiser holds them.
    assert_eq!(network.vars().len(), 4 + 2 + 2 * 2 + 2);
}

#[test]
fn dropped_input_movies_are_left_out_and_the_rest_renormalised() {
    let inputs = toy_inputs();
    let net = NeuMf::with_history(6, 3, &[4, 4, 2], 2, inputs.clone(), true).unwrap();
    // Drop movie 2 of user 0 (row 0) and nothing of user 1 (row 1).
    let (gu, mu) = net
        .user_vectors(&[0, 1], &mut |r, i| !(r == 0 && i == 2))
        .unwrap();
    let mut want = inputs;
    want[0] = vec![(0, 1.0 / 10f32.sqrt()), (5, 3.0 / 10f32.sqrt())];
    let w = net.weights().unwrap();
    let reference = NeuMf::reading(&w, want).unwrap();
    let (gw, mw) = reference.user_vectors(&[0, 1], &mut |_, _| true).unwrap();
    for (a, b) in [(gu, gw), (mu, mw)] {
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-7);
    }
}

#[test]
fn stable_bce_matches_definition() {
    let dev = Device::Cpu;
    let x = Tensor::new(&[-30.0f32, -1.0, 0.0, 2.0, 40.0], &dev).unwrap();
    let y = Tensor::new(&[0.0f32, 1.0, 1.0, 0.0, 1.0], &dev).unwrap();
    let got = bce_with_logits(&x, &y).unwrap().to_scalar::<f32>().unwrap();
    let want: f64 = [
        (-30.0f64, 0.0),
        (-1.0, 1.0),
        (0.0, 1.0),
        (2.0, 0.0),
        (40.0, 1.0),
    ]
    .iter()
    .map(|&(x, y)| {
        let p = 1.0 / (1.0 + (-x).exp());
        -(y * p.max(1e-300).ln() + (1.0 - y) * (1.0 - p).max(1e-300).ln())
    })
    .sum::<f64>()
        / 5.0;
    assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
}
