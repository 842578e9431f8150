use super::*;
use candle_core::{Device, Var};

/// Deterministic values in (−0.5, 0.5), about a third of them negative
/// enough to switch ReLUs off.
fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn var(len: usize, shape: &[usize], seed: u32) -> Var {
    let t = Tensor::from_vec(values(len, seed), shape, &Device::Cpu).unwrap();
    Var::from_tensor(&t).unwrap()
}

fn close(a: &Tensor, b: &Tensor, what: &str) {
    let (a, b) = (to_vec(a).unwrap(), to_vec(b).unwrap());
    assert_eq!(a.len(), b.len(), "{what}");
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * scale.max(1.0),
            "{what}[{k}]: {x} vs {y}"
        );
    }
}

/// Values and every gradient of the fused op against candle's own ops,
/// for towers of one, two and three widths and batches that are not
/// whole blocks (a partial movie block, a partial user task).
#[test]
fn fused_tower_matches_candle_values_and_gradients() {
    for (widths, b, n) in [
        (vec![6], 3, 5),
        (vec![8, 4], 11, 150),
        (vec![10, 6, 3], 9, 70),
    ] {
        let w0 = widths[0];
        let u = var(b * w0, &[b, w0], 1);
        let i = var(n * w0, &[n, w0], 2);
        let dense: Vec<(Var, Var)> = widths
            .windows(2)
            .enumerate()
            .map(|(k, w)| {
                (
                    var(w[0] * w[1], &[w[0], w[1]], 10 + k as u32),
                    // Biases lean positive, so deep units are not all off.
                    Var::from_tensor(
                        &(var(w[1], &[w[1]], 20 + k as u32).as_tensor() + 0.4).unwrap(),
                    )
                    .unwrap(),
                )
            })
            .collect();
        let out = var(*widths.last().unwrap(), &[*widths.last().unwrap(), 1], 3);
        // A weighting of the outputs, so each pair's gradient differs.
        let r = Tensor::from_vec(values(b * n, 4), (b, n), &Device::Cpu).unwrap();
        let refs: Vec<(&Tensor, &Tensor)> = dense
            .iter()
            .map(|(w, b)| (w.as_tensor(), b.as_tensor()))
            .collect();

        let tower = PairTower::new(&widths);
        let packed = tower.pack(&refs, out.as_tensor()).unwrap();
        let fused = tower
            .forward(u.as_tensor(), i.as_tensor(), &packed)
            .unwrap();
        let plain = reference(u.as_tensor(), i.as_tensor(), &refs, out.as_tensor()).unwrap();
        close(&fused, &plain, &format!("{widths:?} outputs"));
        // Not all ReLUs are off: the outputs carry signal.
        assert!(to_vec(&plain).unwrap().iter().any(|v| v.abs() > 1e-3));

        let gf = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = (plain * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let mut vars = vec![(&u, "user half"), (&i, "item half"), (&out, "out")];
        for (w, bias) in &dense {
            vars.push((w, "weights"));
            vars.push((bias, "bias"));
        }
        for (v, what) in vars {
            let (a, e) = (gf.get(v).unwrap(), gp.get(v).unwrap());
            close(a, e, &format!("{widths:?} d {what}"));
            assert!(
                to_vec(e).unwrap().iter().any(|x| *x != 0.0),
                "{what} has a gradient"
            );
        }
    }
}

#[test]
fn the_gradient_sums_are_reproducible() {
    let widths = [8, 4];
    let (b, n) = (37, 100);
    let tower = PairTower::new(&widths);
    let u = var(b * 8, &[b, 8], 5);
    let i = var(n * 8, &[n, 8], 6);
    let p = var(tower.param_len(), &[tower.param_len()], 7);
    let grads = || {
        let y = tower
            .forward(u.as_tensor(), i.as_tensor(), p.as_tensor())
            .unwrap();
        let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        to_vec(g.get(&i).unwrap()).unwrap()
    };
    let first = grads();
    for _ in 0..3 {
        assert_eq!(grads(), first);
    }
}

#[test]
fn wrong_shapes_are_refused() {
    let tower = PairTower::new(&[4, 2]);
    let dev = Device::Cpu;
    let u = Tensor::zeros((2, 4), candle_core::DType::F32, &dev).unwrap();
    let bad = Tensor::zeros((3, 5), candle_core::DType::F32, &dev).unwrap();
    let p = Tensor::zeros(tower.param_len(), candle_core::DType::F32, &dev).unwrap();
    assert!(tower.forward(&u, &bad, &p).is_err());
    let short = Tensor::zeros(3, candle_core::DType::F32, &dev).unwrap();
    assert!(tower.forward(&u, &u, &short).is_err());
}
