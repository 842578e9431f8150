//! The NeuMF network: a GMF tower (element-wise product of user and item
//! factors) and an MLP tower (concatenated embeddings through ReLU layers),
//! fused by one linear layer into a logit.

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use shared::domain::eval::{ScoreError, Scorer};

/// Plain NeuMF weights, independent of any tensor library: what export reads
/// and what the best epoch is snapshotted into. Dense weights are `[in, out]`
/// row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct NeuMfWeights {
    pub n_users: usize,
    pub n_items: usize,
    pub factors: usize,
    /// MLP widths: `layers[0]` is the concatenated embedding width.
    pub layers: Vec<usize>,
    pub gmf_user: Vec<f32>,
    pub gmf_item: Vec<f32>,
    pub mlp_user: Vec<f32>,
    pub mlp_item: Vec<f32>,
    /// `(weight [in × out], bias [out])` per MLP layer after the embeddings.
    pub dense: Vec<(Vec<f32>, Vec<f32>)>,
    /// Prediction layer over `[gmf (factors) | mlp (layers.last)]`.
    pub out_w: Vec<f32>,
    pub out_b: f32,
}

impl NeuMfWeights {
    /// Width of each MLP embedding (half of `layers[0]`).
    pub fn mlp_dim(&self) -> usize {
        self.layers[0] / 2
    }
}

/// NeuMF as candle variables, trainable with candle's autodiff.
pub struct NeuMf {
    pub n_users: usize,
    pub n_items: usize,
    pub factors: usize,
    pub layers: Vec<usize>,
    gmf_user: Var,
    gmf_item: Var,
    mlp_user: Var,
    mlp_item: Var,
    dense: Vec<(Var, Var)>,
    out_w: Var,
    out_b: Var,
    device: Device,
}

fn glorot(rng: &mut ChaCha8Rng, fan_in: usize, fan_out: usize) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
    (0..fan_in * fan_out)
        .map(|_| rng.gen_range(-limit..limit))
        .collect()
}

impl NeuMf {
    /// A freshly initialised network: embeddings ~ N(0, 0.01²), dense layers
    /// Glorot-uniform, biases zero; deterministic for a seed.
    pub fn new(
        n_users: usize,
        n_items: usize,
        factors: usize,
        layers: &[usize],
        seed: u64,
    ) -> Result<Self> {
        assert!(
            layers.len() >= 2 && layers[0].is_multiple_of(2),
            "layers: at least two widths, the first even"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, 0.01).expect("valid normal");
        let mut emb = |n: usize, d: usize| -> Vec<f32> {
            (0..n * d).map(|_| normal.sample(&mut rng)).collect()
        };
        let d = layers[0] / 2;
        let (gu, gi, mu, mi) = (
            emb(n_users, factors),
            emb(n_items, factors),
            emb(n_users, d),
            emb(n_items, d),
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        let dense = layers
            .windows(2)
            .map(|w| (glorot(&mut rng, w[0], w[1]), vec![0.0; w[1]]))
            .collect();
        let last = *layers.last().expect("non-empty");
        let out_w = glorot(&mut rng, factors + last, 1);
        let w = NeuMfWeights {
            n_users,
            n_items,
            factors,
            layers: layers.to_vec(),
            gmf_user: gu,
            gmf_item: gi,
            mlp_user: mu,
            mlp_item: mi,
            dense,
            out_w,
            out_b: 0.0,
        };
        Self::from_weights(&w)
    }

    /// Rebuilds the candle network from plain weights.
    pub fn from_weights(w: &NeuMfWeights) -> Result<Self> {
        let dev = Device::Cpu;
        let var = |data: &[f32], shape: (usize, usize)| Var::from_slice(data, shape, &dev);
        let d = w.mlp_dim();
        let dense = w
            .layers
            .windows(2)
            .zip(&w.dense)
            .map(|(s, (wt, b))| Ok((var(wt, (s[0], s[1]))?, var(b, (1, s[1]))?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(NeuMf {
            n_users: w.n_users,
            n_items: w.n_items,
            factors: w.factors,
            layers: w.layers.clone(),
            gmf_user: var(&w.gmf_user, (w.n_users, w.factors))?,
            gmf_item: var(&w.gmf_item, (w.n_items, w.factors))?,
            mlp_user: var(&w.mlp_user, (w.n_users, d))?,
            mlp_item: var(&w.mlp_item, (w.n_items, d))?,
            dense,
            out_w: var(&w.out_w, (w.out_w.len(), 1))?,
            out_b: var(&[w.out_b], (1, 1))?,
            device: dev,
        })
    }

    /// Copies the current weights out of the tensors.
    pub fn weights(&self) -> Result<NeuMfWeights> {
        let flat = |v: &Var| v.as_tensor().flatten_all()?.to_vec1::<f32>();
        Ok(NeuMfWeights {
            n_users: self.n_users,
            n_items: self.n_items,
            factors: self.factors,
            layers: self.layers.clone(),
            gmf_user: flat(&self.gmf_user)?,
            gmf_item: flat(&self.gmf_item)?,
            mlp_user: flat(&self.mlp_user)?,
            mlp_item: flat(&self.mlp_item)?,
            dense: self
                .dense
                .iter()
                .map(|(w, b)| Ok((flat(w)?, flat(b)?)))
                .collect::<Result<_>>()?,
            out_w: flat(&self.out_w)?,
            out_b: flat(&self.out_b)?[0],
        })
    }

    /// Every trainable variable, for the optimiser.
    pub fn vars(&self) -> Vec<Var> {
        let mut v = vec![
            self.gmf_user.clone(),
            self.gmf_item.clone(),
            self.mlp_user.clone(),
            self.mlp_item.clone(),
        ];
        for (w, b) in &self.dense {
            v.push(w.clone());
            v.push(b.clone());
        }
        v.push(self.out_w.clone());
        v.push(self.out_b.clone());
        v
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Logits for aligned `users` and `items` (u32 tensors of length B), plus the
    /// squared norm of the embeddings used (for the L2 penalty).
    pub fn forward(&self, users: &Tensor, items: &Tensor) -> Result<(Tensor, Tensor)> {
        let gu = self.gmf_user.as_tensor().index_select(users, 0)?;
        let gi = self.gmf_item.as_tensor().index_select(items, 0)?;
        let mu = self.mlp_user.as_tensor().index_select(users, 0)?;
        let mi = self.mlp_item.as_tensor().index_select(items, 0)?;
        let g = (&gu * &gi)?;
        let mut h = Tensor::cat(&[&mu, &mi], 1)?;
        for (w, b) in &self.dense {
            h = h
                .matmul(w.as_tensor())?
                .broadcast_add(b.as_tensor())?
                .relu()?;
        }
        let z = Tensor::cat(&[&g, &h], 1)?;
        let logits = z
            .matmul(self.out_w.as_tensor())?
            .broadcast_add(self.out_b.as_tensor())?
            .squeeze(1)?;
        let sq = (gu.sqr()?.sum_all()?
            + gi.sqr()?.sum_all()?
            + mu.sqr()?.sum_all()?
            + mi.sqr()?.sum_all()?)?;
        Ok((logits, sq))
    }

    /// Logits `[b, n_items]` of `users` (u32 tensor of length b) against the
    /// whole catalogue: the same network as [`NeuMf::forward`], computed the
    /// way the export does (the first MLP layer split into a user half and an
    /// item half, so the item half is computed once per batch), plus the
    /// squared norm of the batch's user embeddings and of every item embedding.
    pub fn forward_all(&self, users: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let f = self.factors;
        let d = self.layers[0] / 2;
        let last = *self.layers.last().expect("layers");
        let out_w = self.out_w.as_tensor();
        let gu = self.gmf_user.as_tensor().index_select(users, 0)?;
        let mu = self.mlp_user.as_tensor().index_select(users, 0)?;
        let b = gu.dim(0)?;
        let gi = self.gmf_item.as_tensor();
        let mi = self.mlp_item.as_tensor();
        // GMF: (gu ⊙ h_gmf) · Qᵀ.
        let h_gmf = out_w.narrow(0, 0, f)?.t()?;
        let gmf = gu.broadcast_mul(&h_gmf)?.matmul(&gi.t()?)?;
        // MLP: relu(mu·W1u + (mi·W1i + b1)) over every (user, item) pair.
        let (w1, b1) = &self.dense[0];
        let w1 = w1.as_tensor();
        let l1 = self.layers[1];
        let user_half = mu.matmul(&w1.narrow(0, 0, d)?)?;
        let item_half = mi
            .matmul(&w1.narrow(0, d, d)?)?
            .broadcast_add(b1.as_tensor())?;
        let mut h = user_half
            .unsqueeze(1)?
            .broadcast_add(&item_half.unsqueeze(0)?)?
            .relu()?
            .reshape((b * self.n_items, l1))?;
        for (w, bias) in &self.dense[1..] {
            h = h
                .matmul(w.as_tensor())?
                .broadcast_add(bias.as_tensor())?
                .relu()?;
        }
        let mlp = h
            .matmul(&out_w.narrow(0, f, last)?)?
            .reshape((b, self.n_items))?;
        let logits = (gmf + mlp)?.broadcast_add(self.out_b.as_tensor())?;
        let users_sq = (gu.sqr()?.sum_all()? + mu.sqr()?.sum_all()?)?;
        let items_sq = (gi.sqr()?.sum_all()? + mi.sqr()?.sum_all()?)?;
        Ok((logits, users_sq, items_sq))
    }

    /// Probabilities (sigmoid of the logits) for one user and a list of items.
    pub fn predict(&self, user: u32, items: &[u32]) -> Result<Vec<f32>> {
        let u = Tensor::from_vec(vec![user; items.len()], items.len(), &self.device)?;
        let i = Tensor::from_slice(items, items.len(), &self.device)?;
        let (logits, _) = self.forward(&u, &i)?;
        candle_nn::ops::sigmoid(&logits)?.to_vec1::<f32>()
    }
}

/// Numerically stable binary cross-entropy on logits, averaged:
/// max(x, 0) − x·y + ln(1 + e^(−|x|)).
pub fn bce_with_logits(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let pos = logits.relu()?;
    let xy = (logits * labels)?;
    let soft = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    ((pos - xy)? + soft)?.mean_all()
}

impl Scorer for NeuMf {
    fn n_items(&self) -> usize {
        self.n_items
    }
    fn score_all(&self, user: u32, out: &mut Vec<f32>) -> std::result::Result<(), ScoreError> {
        let items: Vec<u32> = (0..self.n_items as u32).collect();
        *out = self.predict(user, &items)?;
        Ok(())
    }
    fn score_items(
        &self,
        user: u32,
        items: &[u32],
        out: &mut Vec<f32>,
    ) -> std::result::Result<(), ScoreError> {
        *out = self.predict(user, items)?;
        Ok(())
    }
}

/// Labels as an f32 tensor.
pub fn labels(values: &[f32], dev: &Device) -> Result<Tensor> {
    Tensor::from_slice(values, values.len(), dev)?.to_dtype(DType::F32)
}

#[cfg(test)]
mod tests {
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
        let m = NeuMf::new(6, 9, 4, &[10, 6, 3], 11).unwrap();
        // Move the weights off their tiny initial values so every term counts.
        let mut w = m.weights().unwrap();
        let mut x = 0.37f32;
        let mut next = || {
            x = (x * 3.9 * (1.0 - x)).clamp(0.01, 0.99);
            x - 0.5
        };
        for v in [
            &mut w.gmf_user,
            &mut w.gmf_item,
            &mut w.mlp_user,
            &mut w.mlp_item,
        ] {
            v.iter_mut().for_each(|e| *e = next());
        }
        for (wt, b) in &mut w.dense {
            wt.iter_mut().chain(b.iter_mut()).for_each(|e| *e = next());
        }
        w.out_w.iter_mut().for_each(|e| *e = next());
        w.out_b = 0.2;
        let m = NeuMf::from_weights(&w).unwrap();
        let users = Tensor::new(&[4u32, 0, 2], &Device::Cpu).unwrap();
        let (all, _, _) = m.forward_all(&users).unwrap();
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
}
