//! The NeuMF network: a GMF tower (element-wise product of user and item
//! factors) and an MLP tower (concatenated embeddings through ReLU layers),
//! fused by one linear layer into a logit.

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use shared::domain::eval::{ScoreError, Scorer};

use crate::tower::PairTower;

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
    /// A history-input model's embedding rows per movie, from which
    /// `gmf_user` and `mlp_user` are folded in ([`NeuMfWeights::fold_in`]);
    /// `None` for a model of one free row per user.
    pub user_context: Option<UserContext>,
}

/// The user embedding layer of a history-input NeuMF: one row per movie
/// (`[n_items × factors]` and `[n_items × mlp_dim]`, row-major), and for a
/// model reading both the id and the history, the free per-user rows
/// (`[n_users × …]`) the history part is added to.
#[derive(Clone, Debug, PartialEq)]
pub struct UserContext {
    pub gmf: Vec<f32>,
    pub mlp: Vec<f32>,
    pub free: Option<(Vec<f32>, Vec<f32>)>,
}

impl UserContext {
    /// The per-user GMF and MLP tables of users reading `inputs`.
    fn tables(&self, inputs: &Histories, factors: usize, mlp_dim: usize) -> (Vec<f32>, Vec<f32>) {
        let (mut gmf, mut mlp) = match &self.free {
            Some((g, m)) => (g.clone(), m.clone()),
            None => (
                vec![0.0; inputs.len() * factors],
                vec![0.0; inputs.len() * mlp_dim],
            ),
        };
        fold_into(&mut gmf, inputs, &self.gmf, factors);
        fold_into(&mut mlp, inputs, &self.mlp, mlp_dim);
        (gmf, mlp)
    }
}

/// Each user's input feature vector as `(movie, weight)` pairs, the weights
/// L2-normalised per user ([`history_inputs`]).
pub type Histories = Vec<Vec<(u32, f32)>>;

/// Per user, the weighted history `seen[u]` × `weights[u]`, L2-normalised:
/// the input a history-input NeuMF reads.
pub fn history_inputs(seen: &[Vec<u32>], weights: &[Vec<f32>]) -> Histories {
    seen.iter()
        .zip(weights)
        .map(|(items, w)| {
            let norm = w.iter().map(|x| x * x).sum::<f32>().sqrt();
            let norm = if norm > 0.0 { norm } else { 1.0 };
            items.iter().zip(w).map(|(&i, &x)| (i, x / norm)).collect()
        })
        .collect()
}

/// Adds `Σ weight · table[movie]` over each user's input to their row of
/// `out` (rows of width `dim`).
fn fold_into(out: &mut [f32], inputs: &Histories, table: &[f32], dim: usize) {
    for (row, input) in out.chunks_mut(dim).zip(inputs) {
        for &(i, w) in input {
            let src = &table[i as usize * dim..(i as usize + 1) * dim];
            row.iter_mut().zip(src).for_each(|(o, s)| *o += w * s);
        }
    }
}

impl NeuMfWeights {
    /// Width of each MLP embedding (half of `layers[0]`).
    pub fn mlp_dim(&self) -> usize {
        self.layers[0] / 2
    }

    /// A history-input model with its per-user tables computed from
    /// `inputs` (for instance every training interaction, the validation
    /// holdout included, before export). A model of free user rows is
    /// returned unchanged.
    pub fn fold_in(&self, inputs: &Histories) -> NeuMfWeights {
        let Some(ctx) = &self.user_context else {
            return self.clone();
        };
        assert_eq!(inputs.len(), self.n_users, "one input per user");
        let (gmf_user, mlp_user) = ctx.tables(inputs, self.factors, self.mlp_dim());
        NeuMfWeights {
            gmf_user,
            mlp_user,
            ..self.clone()
        }
    }
}

/// NeuMF's user embedding layer: a user's GMF and MLP embeddings are the
/// sum of the parts present (at least one).
struct UserTower {
    /// One free row per user (`[n_users × dim]`).
    free: Option<(Var, Var)>,
    /// One row per movie (`[n_items × dim]`), read through each user's
    /// weighted history.
    history: Option<(Var, Var, Histories)>,
}

/// NeuMF as candle variables, trainable with candle's autodiff.
pub struct NeuMf {
    pub n_users: usize,
    pub n_items: usize,
    pub factors: usize,
    pub layers: Vec<usize>,
    user: UserTower,
    gmf_item: Var,
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
    /// A freshly initialised network of one free embedding row per user:
    /// embeddings ~ N(0, 0.01²), dense layers Glorot-uniform, biases zero;
    /// deterministic for a seed.
    pub fn new(
        n_users: usize,
        n_items: usize,
        factors: usize,
        layers: &[usize],
        seed: u64,
    ) -> Result<Self> {
        let w = Self::init(n_users, n_users, n_items, factors, layers, seed);
        Self::from_weights(&w)
    }

    /// A freshly initialised network whose user embedding layer reads each
    /// user's weighted history (`inputs`, one per user): one embedding row
    /// per movie, initialised as [`NeuMf::new`] initialises user rows; with
    /// `free_rows`, plus one free row per user, starting at zero.
    pub fn with_history(
        n_items: usize,
        factors: usize,
        layers: &[usize],
        seed: u64,
        inputs: Histories,
        free_rows: bool,
    ) -> Result<Self> {
        let n_users = inputs.len();
        let mut w = Self::init(n_users, n_items, n_items, factors, layers, seed);
        w.user_context = Some(UserContext {
            gmf: std::mem::take(&mut w.gmf_user),
            mlp: std::mem::take(&mut w.mlp_user),
            free: free_rows.then(|| {
                (
                    vec![0.0; n_users * factors],
                    vec![0.0; n_users * w.mlp_dim()],
                )
            }),
        });
        Self::reading(&w, inputs)
    }

    /// The history-input network of `w` (which must have a user context)
    /// reading `inputs`, one per user: what a folded-in export of
    /// `w.fold_in(&inputs)` serves.
    pub fn reading(w: &NeuMfWeights, inputs: Histories) -> Result<Self> {
        let ctx = w
            .user_context
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg("not a history-input model".into()))?;
        let dev = Device::Cpu;
        let (f, d) = (w.factors, w.mlp_dim());
        let var = |data: &[f32], rows: usize, dim: usize| Var::from_slice(data, (rows, dim), &dev);
        let free = match &ctx.free {
            Some((g, m)) => Some((var(g, inputs.len(), f)?, var(m, inputs.len(), d)?)),
            None => None,
        };
        let history = Some((
            var(&ctx.gmf, w.n_items, f)?,
            var(&ctx.mlp, w.n_items, d)?,
            inputs,
        ));
        let net = Self::from_weights(&NeuMfWeights {
            gmf_user: Vec::new(),
            mlp_user: Vec::new(),
            user_context: None,
            ..w.clone()
        })?;
        Ok(NeuMf {
            n_users: w.n_users,
            user: UserTower { free, history },
            ..net
        })
    }

    /// Initial weights with `user_rows` rows in the user embedding layer.
    fn init(
        n_users: usize,
        user_rows: usize,
        n_items: usize,
        factors: usize,
        layers: &[usize],
        seed: u64,
    ) -> NeuMfWeights {
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
            emb(user_rows, factors),
            emb(n_items, factors),
            emb(user_rows, d),
            emb(n_items, d),
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        let dense = layers
            .windows(2)
            .map(|w| (glorot(&mut rng, w[0], w[1]), vec![0.0; w[1]]))
            .collect();
        let last = *layers.last().expect("non-empty");
        let out_w = glorot(&mut rng, factors + last, 1);
        NeuMfWeights {
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
            user_context: None,
        }
    }

    /// Rebuilds the network as it is served, from plain weights: the
    /// per-user tables (a history-input model's folded-in ones) become free
    /// user rows.
    pub fn from_weights(w: &NeuMfWeights) -> Result<Self> {
        let dev = Device::Cpu;
        let var = |data: &[f32], shape: (usize, usize)| Var::from_slice(data, shape, &dev);
        let d = w.mlp_dim();
        let rows = w.gmf_user.len() / w.factors;
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
            user: UserTower {
                free: Some((
                    var(&w.gmf_user, (rows, w.factors))?,
                    var(&w.mlp_user, (rows, d))?,
                )),
                history: None,
            },
            gmf_item: var(&w.gmf_item, (w.n_items, w.factors))?,
            mlp_item: var(&w.mlp_item, (w.n_items, d))?,
            dense,
            out_w: var(&w.out_w, (w.out_w.len(), 1))?,
            out_b: var(&[w.out_b], (1, 1))?,
            device: dev,
        })
    }

    /// Copies the current weights out of the tensors; a history-input
    /// model's per-user tables are folded in from its training inputs.
    pub fn weights(&self) -> Result<NeuMfWeights> {
        let flat = |v: &Var| v.as_tensor().flatten_all()?.to_vec1::<f32>();
        let free = match &self.user.free {
            Some((g, m)) => Some((flat(g)?, flat(m)?)),
            None => None,
        };
        let (gmf_user, mlp_user, user_context) = match (&self.user.history, free) {
            (None, Some((g, m))) => (g, m, None),
            (Some((gmf, mlp, inputs)), free) => {
                let ctx = UserContext {
                    gmf: flat(gmf)?,
                    mlp: flat(mlp)?,
                    free,
                };
                let (g, m) = ctx.tables(inputs, self.factors, self.layers[0] / 2);
                (g, m, Some(ctx))
            }
            (None, None) => unreachable!("a user tower has a part"),
        };
        Ok(NeuMfWeights {
            n_users: self.n_users,
            n_items: self.n_items,
            factors: self.factors,
            layers: self.layers.clone(),
            gmf_user,
            gmf_item: flat(&self.gmf_item)?,
            mlp_user,
            mlp_item: flat(&self.mlp_item)?,
            dense: self
                .dense
                .iter()
                .map(|(w, b)| Ok((flat(w)?, flat(b)?)))
                .collect::<Result<_>>()?,
            out_w: flat(&self.out_w)?,
            out_b: flat(&self.out_b)?[0],
            user_context,
        })
    }

    /// Every trainable variable, for the optimiser.
    pub fn vars(&self) -> Vec<Var> {
        let mut v = vec![self.gmf_item.clone(), self.mlp_item.clone()];
        let history = self.user.history.as_ref().map(|(g, m, _)| (g, m));
        for (g, m) in self
            .user
            .free
            .as_ref()
            .map(|(g, m)| (g, m))
            .into_iter()
            .chain(history)
        {
            v.push(g.clone());
            v.push(m.clone());
        }
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

    /// The GMF and MLP embeddings (`[b × factors]`, `[b × mlp_dim]`) of
    /// `users`. A history-input model reads each user's weighted movies,
    /// those for which `keep(row, movie)` holds, renormalised when any is
    /// left out (a training step's denoising); free user rows ignore `keep`.
    pub fn user_vectors(
        &self,
        users: &[u32],
        keep: &mut dyn FnMut(usize, u32) -> bool,
    ) -> Result<(Tensor, Tensor)> {
        let free = match &self.user.free {
            Some((gmf, mlp)) => {
                let u = Tensor::from_slice(users, users.len(), &self.device)?;
                Some((
                    gmf.as_tensor().index_select(&u, 0)?,
                    mlp.as_tensor().index_select(&u, 0)?,
                ))
            }
            None => None,
        };
        let Some((gmf, mlp, inputs)) = &self.user.history else {
            return Ok(free.expect("a user tower has a part"));
        };
        let n = self.n_items;
        let mut x = vec![0.0f32; users.len() * n];
        for (r, (row, &u)) in x.chunks_mut(n).zip(users).enumerate() {
            let (mut norm, mut dropped) = (0.0f32, false);
            for &(i, w) in &inputs[u as usize] {
                if keep(r, i) {
                    row[i as usize] = w;
                    norm += w * w;
                } else {
                    dropped = true;
                }
            }
            if dropped && norm > 0.0 {
                let k = norm.sqrt().recip();
                row.iter_mut().for_each(|v| *v *= k);
            }
        }
        let x = Tensor::from_vec(x, (users.len(), n), &self.device)?;
        let (g, m) = (x.matmul(gmf.as_tensor())?, x.matmul(mlp.as_tensor())?);
        match free {
            Some((fg, fm)) => Ok(((fg + g)?, (fm + m)?)),
            None => Ok((g, m)),
        }
    }

    /// The squared norm the L2 penalty of one batch counts: the free rows
    /// of the batch's `users`, and a `share` of the movie rows (a
    /// history-input model's and the item embeddings: every movie is in every
    /// batch of the softmax objective, so their penalty is spread over an
    /// epoch).
    pub fn penalty(&self, users: &[u32], share: f64) -> Result<Tensor> {
        let sq = |v: &Var| v.as_tensor().sqr()?.sum_all();
        let mut movies = (sq(&self.gmf_item)? + sq(&self.mlp_item)?)?;
        if let Some((g, m, _)) = &self.user.history {
            movies = ((movies + sq(g)?)? + sq(m)?)?;
        }
        let mut total = (movies * share)?;
        if let Some((g, m)) = &self.user.free {
            let u = Tensor::from_slice(users, users.len(), &self.device)?;
            let rows = |v: &Var| v.as_tensor().index_select(&u, 0)?.sqr()?.sum_all();
            total = ((total + rows(g)?)? + rows(m)?)?;
        }
        Ok(total)
    }

    /// Logits for aligned per-sample user embeddings and `items`.
    fn pairwise(&self, gu: &Tensor, mu: &Tensor, gi: &Tensor, mi: &Tensor) -> Result<Tensor> {
        let g = (gu * gi)?;
        let mut h = Tensor::cat(&[mu, mi], 1)?;
        for (w, b) in &self.dense {
            h = h
                .matmul(w.as_tensor())?
                .broadcast_add(b.as_tensor())?
                .relu()?;
        }
        let z = Tensor::cat(&[&g, &h], 1)?;
        z.matmul(self.out_w.as_tensor())?
            .broadcast_add(self.out_b.as_tensor())?
            .squeeze(1)
    }

    /// Logits for aligned `users` and `items` (u32 tensors of length B), plus the
    /// squared norm of the embeddings used (for the L2 penalty).
    pub fn forward(&self, users: &Tensor, items: &Tensor) -> Result<(Tensor, Tensor)> {
        let (gu, mu) = self.user_vectors(&users.to_vec1::<u32>()?, &mut |_, _| true)?;
        let gi = self.gmf_item.as_tensor().index_select(items, 0)?;
        let mi = self.mlp_item.as_tensor().index_select(items, 0)?;
        let logits = self.pairwise(&gu, &mu, &gi, &mi)?;
        let sq = (gu.sqr()?.sum_all()?
            + gi.sqr()?.sum_all()?
            + mu.sqr()?.sum_all()?
            + mi.sqr()?.sum_all()?)?;
        Ok((logits, sq))
    }

    /// Logits `[b, n_items]` of `b` users, given their embeddings
    /// ([`NeuMf::user_vectors`]), against the whole catalogue: the same
    /// network as [`NeuMf::forward`], computed the way the export does (the
    /// first MLP layer split into a user half and an item half, so the item
    /// half is computed once per batch).
    pub fn forward_all(&self, gu: &Tensor, mu: &Tensor) -> Result<Tensor> {
        let f = self.factors;
        let d = self.layers[0] / 2;
        let last = *self.layers.last().expect("layers");
        let out_w = self.out_w.as_tensor();
        let gi = self.gmf_item.as_tensor();
        let mi = self.mlp_item.as_tensor();
        // GMF: (gu ⊙ h_gmf) · Qᵀ.
        let h_gmf = out_w.narrow(0, 0, f)?.t()?;
        let gmf = gu.broadcast_mul(&h_gmf)?.matmul(&gi.t()?)?;
        // MLP: relu(mu·W1u + (mi·W1i + b1)) over every (user, item) pair,
        // then the rest of the tower, fused (see [`crate::tower`]).
        let (w1, b1) = &self.dense[0];
        let w1 = w1.as_tensor();
        let user_half = mu.matmul(&w1.narrow(0, 0, d)?)?;
        let item_half = mi
            .matmul(&w1.narrow(0, d, d)?)?
            .broadcast_add(b1.as_tensor())?;
        let tower = PairTower::new(&self.layers[1..]);
        let dense: Vec<(&Tensor, &Tensor)> = self.dense[1..]
            .iter()
            .map(|(w, b)| (w.as_tensor(), b.as_tensor()))
            .collect();
        let params = tower.pack(&dense, &out_w.narrow(0, f, last)?)?;
        let mlp = tower.forward(&user_half, &item_half, &params)?;
        (gmf + mlp)?.broadcast_add(self.out_b.as_tensor())
    }

    /// Logits of `users` against the whole catalogue, row-major
    /// `[users × n_items]`, computed a batch of users at a time through
    /// [`NeuMf::forward_all`] (what validation ranks by).
    pub fn score_users(&self, users: &[u32]) -> Result<Vec<f32>> {
        const BATCH: usize = 256;
        let mut out = Vec::with_capacity(users.len() * self.n_items);
        for chunk in users.chunks(BATCH) {
            let (gu, mu) = self.user_vectors(chunk, &mut |_, _| true)?;
            let logits = self.forward_all(&gu.detach(), &mu.detach())?;
            out.extend(logits.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Probabilities (sigmoid of the logits) for one user and a list of items.
    pub fn predict(&self, user: u32, items: &[u32]) -> Result<Vec<f32>> {
        let n = items.len();
        let (gu, mu) = self.user_vectors(&[user], &mut |_, _| true)?;
        let gu = gu.broadcast_as((n, self.factors))?.contiguous()?;
        let mu = mu.broadcast_as((n, self.layers[0] / 2))?.contiguous()?;
        let i = Tensor::from_slice(items, n, &self.device)?;
        let gi = self.gmf_item.as_tensor().index_select(&i, 0)?;
        let mi = self.mlp_item.as_tensor().index_select(&i, 0)?;
        candle_nn::ops::sigmoid(&self.pairwise(&gu, &mu, &gi, &mi)?)?.to_vec1::<f32>()
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

/// `m` with every weight moved off its tiny initial value (a chaotic but
/// deterministic sequence in (−0.5, 0.5)), so that every term of the
/// network counts in a test.
#[cfg(test)]
pub(crate) fn spread(m: &NeuMf) -> NeuMf {
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
    NeuMf::from_weights(&w).unwrap()
}

#[cfg(test)]
mod tests;
