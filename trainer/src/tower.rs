//! NeuMF's MLP tower over every (user, movie) pair of a batch, fused into
//! one candle op with its own backward pass.
//!
//! The whole-catalogue objectives score each user of a batch against every
//! movie. Written with candle's tensor ops, the tower after its split first
//! layer materialises `[users × movies × width]` activations for every
//! layer, their broadcasts, masks and the reductions of the backward pass:
//! a 128-user batch over ML-1M's 3,043 movies moves hundreds of megabytes
//! through single-purpose kernels, and profiling showed most of an epoch in
//! candle's reductions, broadcasts, copies and page faults rather than in
//! arithmetic. This op walks the pairs a block of movies at a time, keeps a
//! block's activations in cache, recomputes them in the backward pass
//! instead of storing them, and accumulates the gradients in place. The
//! benchmark `cargo bench -p movie-recs-trainer --bench tower` measures both
//! paths on the same batch; [`reference`] is the composite of candle ops it
//! replaces, which the tests check it against, values and gradients.
//!
//! The parameters travel as one packed vector ([`PairTower::pack`]), so
//! candle's autodiff hands each layer its slice of the gradient.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Movies per block: a block's activations stay in L1/L2 cache.
const BLOCK: usize = 64;
/// Users per backward work unit. Fixed, so the gradient sums in the same
/// order whatever the thread count: training stays reproducible.
const USERS_PER_TASK: usize = 8;

/// The tower after its first layer's split, for `widths` = the MLP layer
/// widths from the first hidden layer on (`layers[1..]`).
///
/// `forward(user_half, item_half, params)` maps `[b × w₀]` user halves and
/// `[n × w₀]` item halves (first-layer bias included) to the `[b × n]`
/// tower outputs `hᵀ·out` where `h = relu(…relu(relu(u + i)·W₁ + b₁)…)`.
#[derive(Clone, Debug)]
pub struct PairTower {
    widths: Vec<usize>,
}

impl PairTower {
    pub fn new(widths: &[usize]) -> Self {
        assert!(!widths.is_empty(), "a tower has at least one width");
        PairTower {
            widths: widths.to_vec(),
        }
    }

    /// Length of the packed parameter vector.
    pub fn param_len(&self) -> usize {
        self.widths
            .windows(2)
            .map(|w| w[0] * w[1] + w[1])
            .sum::<usize>()
            + self.widths.last().expect("non-empty")
    }

    /// Packs the dense layers after the first (`[in × out]` weights, then
    /// `[out]` bias, layer by layer) and the tower's `[last]` (or
    /// `[last × 1]`) output weights into one vector, differentiably.
    pub fn pack(&self, dense: &[(&Tensor, &Tensor)], out: &Tensor) -> Result<Tensor> {
        let mut parts = Vec::with_capacity(2 * dense.len() + 1);
        for (w, b) in dense {
            parts.push(w.flatten_all()?);
            parts.push(b.flatten_all()?);
        }
        parts.push(out.flatten_all()?);
        let packed = Tensor::cat(&parts, 0)?;
        if packed.elem_count() != self.param_len() {
            candle_core::bail!(
                "tower {:?}: {} packed parameters, expected {}",
                self.widths,
                packed.elem_count(),
                self.param_len()
            );
        }
        Ok(packed)
    }

    /// `[b × n]` tower outputs of every (user, movie) pair.
    pub fn forward(
        &self,
        user_half: &Tensor,
        item_half: &Tensor,
        params: &Tensor,
    ) -> Result<Tensor> {
        user_half.contiguous()?.apply_op3(
            &item_half.contiguous()?,
            &params.contiguous()?,
            self.clone(),
        )
    }

    fn net<'a>(&'a self, params: &'a [f32]) -> Net<'a> {
        let mut layers = Vec::with_capacity(self.widths.len() - 1);
        let mut at = 0;
        for w in self.widths.windows(2) {
            let (fi, fo) = (w[0], w[1]);
            layers.push((
                &params[at..at + fi * fo],
                &params[at + fi * fo..at + fi * fo + fo],
            ));
            at += fi * fo + fo;
        }
        Net {
            widths: &self.widths,
            layers,
            out: &params[at..],
        }
    }

    fn check(&self, u: &Layout, i: &Layout, p: &Layout) -> Result<(usize, usize)> {
        let w0 = self.widths[0];
        let (ud, id) = (u.shape().dims(), i.shape().dims());
        if ud.len() != 2 || id.len() != 2 || ud[1] != w0 || id[1] != w0 {
            candle_core::bail!(
                "tower: user half {:?} and item half {:?} must both be [_ × {w0}]",
                ud,
                id
            );
        }
        if p.shape().elem_count() != self.param_len() {
            candle_core::bail!(
                "tower: {} parameters, expected {}",
                p.shape().elem_count(),
                self.param_len()
            );
        }
        Ok((ud[0], id[0]))
    }
}

/// A contiguous f32 view of a storage.
fn view<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("tower: inputs must be contiguous"),
    }
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// The tower's parameters as slices of the packed vector.
struct Net<'a> {
    widths: &'a [usize],
    /// `(W [in × out], b [out])` of each layer after the first.
    layers: Vec<(&'a [f32], &'a [f32])>,
    out: &'a [f32],
}

/// Per-block activation buffers, one per width.
fn buffers(widths: &[usize]) -> Vec<Vec<f32>> {
    widths.iter().map(|w| vec![0.0; BLOCK * w]).collect()
}

impl Net<'_> {
    /// Post-ReLU activations of `t` pairs (one user, `t` movies) into `acts`.
    fn activations(&self, user: &[f32], items: &[f32], t: usize, acts: &mut [Vec<f32>]) {
        let w0 = self.widths[0];
        for (a, it) in acts[0][..t * w0]
            .chunks_exact_mut(w0)
            .zip(items.chunks_exact(w0))
        {
            for ((a, &x), &y) in a.iter_mut().zip(user).zip(it) {
                *a = (x + y).max(0.0);
            }
        }
        for (j, &(w, b)) in self.layers.iter().enumerate() {
            let (fi, fo) = (self.widths[j], self.widths[j + 1]);
            let (prev, next) = acts.split_at_mut(j + 1);
            let (prev, next) = (&prev[j][..t * fi], &mut next[0][..t * fo]);
            for (h, o) in prev.chunks_exact(fi).zip(next.chunks_exact_mut(fo)) {
                o.copy_from_slice(b);
                for (&a, row) in h.iter().zip(w.chunks_exact(fo)) {
                    if a != 0.0 {
                        o.iter_mut().zip(row).for_each(|(o, &w)| *o += a * w);
                    }
                }
                o.iter_mut().for_each(|o| *o = o.max(0.0));
            }
        }
    }

    fn forward_user(&self, user: &[f32], items: &[f32], out: &mut [f32], acts: &mut [Vec<f32>]) {
        let (w0, last) = (self.widths[0], *self.widths.last().expect("non-empty"));
        for (o, it) in out.chunks_mut(BLOCK).zip(items.chunks(BLOCK * w0)) {
            let t = o.len();
            self.activations(user, it, t, acts);
            let h = &acts[acts.len() - 1][..t * last];
            for (o, h) in o.iter_mut().zip(h.chunks_exact(last)) {
                *o = h.iter().zip(self.out).map(|(a, b)| a * b).sum();
            }
        }
    }

    /// Adds one user's gradients: to its user half `du`, the item halves
    /// `di` and the packed parameters `dp`, from the output gradients `g`.
    #[allow(clippy::too_many_arguments)]
    fn backward_user(
        &self,
        user: &[f32],
        items: &[f32],
        g: &[f32],
        du: &mut [f32],
        di: &mut [f32],
        dp: &mut [f32],
        acts: &mut [Vec<f32>],
        dz: &mut [Vec<f32>],
    ) {
        let w0 = self.widths[0];
        let depth = self.widths.len();
        let last = self.widths[depth - 1];
        let out_at = dp.len() - last;
        for (blk, (g, it)) in g.chunks(BLOCK).zip(items.chunks(BLOCK * w0)).enumerate() {
            let t = g.len();
            self.activations(user, it, t, acts);
            // Output layer: d out += g·h, dz = g·out ⊙ [h > 0].
            {
                let h = &acts[depth - 1][..t * last];
                let d = &mut dz[depth - 1][..t * last];
                for ((&g, h), d) in g
                    .iter()
                    .zip(h.chunks_exact(last))
                    .zip(d.chunks_exact_mut(last))
                {
                    for (((d, &h), &w), dw) in
                        d.iter_mut().zip(h).zip(self.out).zip(&mut dp[out_at..])
                    {
                        *dw += g * h;
                        *d = if h > 0.0 { g * w } else { 0.0 };
                    }
                }
            }
            // Hidden layers, last to first: dW += hᵀ·dz, db += Σ dz,
            // dz_prev = (dz·Wᵀ) ⊙ [h_prev > 0].
            let mut at = out_at;
            for j in (0..self.layers.len()).rev() {
                let (w, _) = self.layers[j];
                let (fi, fo) = (self.widths[j], self.widths[j + 1]);
                at -= fi * fo + fo;
                let (dw, db) = dp[at..at + fi * fo + fo].split_at_mut(fi * fo);
                let (lo, hi) = dz.split_at_mut(j + 1);
                let (dprev, dcur) = (&mut lo[j][..t * fi], &hi[0][..t * fo]);
                let h = &acts[j][..t * fi];
                for ((h, d), dpr) in h
                    .chunks_exact(fi)
                    .zip(dcur.chunks_exact(fo))
                    .zip(dprev.chunks_exact_mut(fi))
                {
                    db.iter_mut().zip(d).for_each(|(b, &d)| *b += d);
                    for (((&a, dwr), wr), dpr) in h
                        .iter()
                        .zip(dw.chunks_exact_mut(fo))
                        .zip(w.chunks_exact(fo))
                        .zip(dpr.iter_mut())
                    {
                        if a > 0.0 {
                            let mut s = 0.0;
                            for ((dw, &w), &d) in dwr.iter_mut().zip(wr).zip(d) {
                                *dw += a * d;
                                s += d * w;
                            }
                            *dpr = s;
                        } else {
                            *dpr = 0.0;
                        }
                    }
                }
            }
            // First layer: the pre-activation is u + i, so both halves get dz.
            let d = &dz[0][..t * w0];
            let di = &mut di[blk * BLOCK * w0..blk * BLOCK * w0 + t * w0];
            for (d, di) in d.chunks_exact(w0).zip(di.chunks_exact_mut(w0)) {
                for ((&d, u), i) in d.iter().zip(du.iter_mut()).zip(di.iter_mut()) {
                    *u += d;
                    *i += d;
                }
            }
        }
    }
}

impl CustomOp3 for PairTower {
    fn name(&self) -> &'static str {
        "neumf-pair-tower"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, n) = self.check(l1, l2, l3)?;
        let (users, items, params) = (view(s1, l1)?, view(s2, l2)?, view(s3, l3)?);
        let net = self.net(params);
        let w0 = self.widths[0];
        let mut out = vec![0.0f32; b * n];
        if n > 0 {
            out.par_chunks_mut(n)
                .zip(users.par_chunks(w0))
                .for_each_init(
                    || buffers(&self.widths),
                    |acts, (o, u)| net.forward_user(u, items, o, acts),
                );
        }
        Ok((CpuStorage::F32(out), Shape::from((b, n))))
    }

    fn bwd(
        &self,
        user_half: &Tensor,
        item_half: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (users, items, p, g) = (
            to_vec(user_half)?,
            to_vec(item_half)?,
            to_vec(params)?,
            to_vec(grad)?,
        );
        let w0 = self.widths[0];
        let n = items.len() / w0;
        let net = self.net(&p);
        let mut du = vec![0.0f32; users.len()];
        // Each task: a fixed run of users, its own item and parameter sums.
        let sums: Vec<(Vec<f32>, Vec<f32>)> = if n == 0 {
            Vec::new()
        } else {
            du.par_chunks_mut(USERS_PER_TASK * w0)
                .zip(users.par_chunks(USERS_PER_TASK * w0))
                .zip(g.par_chunks(USERS_PER_TASK * n))
                .map(|((du, us), gs)| {
                    let (mut di, mut dp) = (vec![0.0f32; items.len()], vec![0.0f32; p.len()]);
                    let (mut acts, mut dz) = (buffers(&self.widths), buffers(&self.widths));
                    for ((du, u), g) in du.chunks_mut(w0).zip(us.chunks(w0)).zip(gs.chunks(n)) {
                        net.backward_user(u, &items, g, du, &mut di, &mut dp, &mut acts, &mut dz);
                    }
                    (di, dp)
                })
                .collect()
        };
        let (mut di, mut dp) = (vec![0.0f32; items.len()], vec![0.0f32; p.len()]);
        for (ti, tp) in &sums {
            di.iter_mut().zip(ti).for_each(|(a, b)| *a += b);
            dp.iter_mut().zip(tp).for_each(|(a, b)| *a += b);
        }
        let dev = user_half.device();
        Ok((
            Some(Tensor::from_vec(du, user_half.shape(), dev)?),
            Some(Tensor::from_vec(di, item_half.shape(), dev)?),
            Some(Tensor::from_vec(dp, params.shape(), dev)?),
        ))
    }
}

/// The same tower written with candle's tensor ops: the path
/// [`PairTower`] replaces, kept as its reference (tests, benchmark).
pub fn reference(
    user_half: &Tensor,
    item_half: &Tensor,
    dense: &[(&Tensor, &Tensor)],
    out: &Tensor,
) -> Result<Tensor> {
    let (b, w0) = user_half.dims2()?;
    let n = item_half.dim(0)?;
    let mut h = user_half
        .unsqueeze(1)?
        .broadcast_add(&item_half.unsqueeze(0)?)?
        .relu()?
        .reshape((b * n, w0))?;
    for (w, bias) in dense {
        h = h.matmul(w)?.broadcast_add(bias)?.relu()?;
    }
    let last = h.dim(1)?;
    h.matmul(&out.reshape((last, 1))?)?.reshape((b, n))
}

#[cfg(test)]
mod tests;
