//! `neighbours.bin`: each movie's nearest movies by cosine similarity of the
//! model's item vectors, computed once at export so `GET /similar/{movie_id}`
//! is a lookup. Checksummed in the manifest like every artifact file.

use super::ArtifactError;

/// The sidecar's name in an artifact.
pub const NEIGHBOURS_FILE: &str = "neighbours.bin";
/// Neighbours kept per movie: `K_MAX` of the API, so any `k` is served
/// unfiltered, and filters choose among these.
pub const NEIGHBOURS_PER_ITEM: usize = 100;

const MAGIC: &[u8; 8] = b"MRNBRS1\0";
const NONE: u32 = u32::MAX;

/// Up to `width` neighbours per movie (model indices), most similar first,
/// with their similarity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Neighbours {
    width: usize,
    items: Vec<u32>,
    sims: Vec<f32>,
}

impl Neighbours {
    /// The `width` most cosine-similar movies of each of the `n = vectors.len() / dim`
    /// movies (itself excluded; ties by lower index). A zero vector has no
    /// neighbours, and is no one's.
    pub fn from_vectors(vectors: &[f32], dim: usize, width: usize) -> Self {
        assert!(
            dim > 0 && vectors.len().is_multiple_of(dim),
            "vectors are n × dim"
        );
        let n = vectors.len() / dim;
        let unit: Vec<f32> = vectors
            .chunks(dim)
            .flat_map(|v| {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter()
                    .map(move |x| if norm > 0.0 { x / norm } else { 0.0 })
                    .collect::<Vec<_>>()
            })
            .collect();
        let live: Vec<bool> = unit
            .chunks(dim)
            .map(|v| v.iter().any(|&x| x != 0.0))
            .collect();
        let mut out = Neighbours {
            width,
            items: Vec::with_capacity(n * width),
            sims: Vec::with_capacity(n * width),
        };
        let mut sims = vec![f32::NEG_INFINITY; n];
        for i in 0..n {
            let a = &unit[i * dim..(i + 1) * dim];
            for (j, s) in sims.iter_mut().enumerate() {
                *s = if j == i || !live[i] || !live[j] {
                    f32::NEG_INFINITY
                } else {
                    a.iter()
                        .zip(&unit[j * dim..(j + 1) * dim])
                        .map(|(x, y)| x * y)
                        .sum()
                };
            }
            let best = crate::domain::ranking::top_k_scored(&sims, width);
            out.push_row(&best);
        }
        out
    }

    /// From ready lists (`(index, similarity)` per movie, best first).
    pub fn from_lists(lists: &[Vec<(u32, f32)>], width: usize) -> Self {
        let mut out = Neighbours {
            width,
            ..Default::default()
        };
        for l in lists {
            out.push_row(&l[..l.len().min(width)]);
        }
        out
    }

    fn push_row(&mut self, row: &[(u32, f32)]) {
        for k in 0..self.width {
            let (i, s) = row.get(k).copied().unwrap_or((NONE, 0.0));
            self.items.push(i);
            self.sims.push(s);
        }
    }

    /// Movies covered.
    pub fn len(&self) -> usize {
        self.items.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Movie `item`'s neighbours, most similar first (empty for an unknown index).
    pub fn of(&self, item: u32) -> impl Iterator<Item = (u32, f32)> + '_ {
        let i = item as usize;
        let r = if i < self.len() {
            i * self.width..(i + 1) * self.width
        } else {
            0..0
        };
        self.items[r.clone()]
            .iter()
            .zip(&self.sims[r])
            .take_while(|(&j, _)| j != NONE)
            .map(|(&j, &s)| (j, s))
    }

    /// The sidecar bytes: magic, movies, width, indices, similarities (LE).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 8 * self.items.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.width as u32).to_le_bytes());
        for i in &self.items {
            out.extend_from_slice(&i.to_le_bytes());
        }
        for s in &self.sims {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// Decodes [`Self::encode`]'s bytes for a catalogue of `n_items`: every
    /// list names movies inside it, never the movie itself, once each, with
    /// finite similarities in descending order.
    pub fn decode(bytes: &[u8], n_items: usize) -> Result<Self, ArtifactError> {
        let bad = |reason: &str| ArtifactError::Invalid {
            file: NEIGHBOURS_FILE.into(),
            reason: reason.into(),
        };
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad("not a movie-recs neighbours file"));
        }
        let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let (n, width) = (word(8) as usize, word(12) as usize);
        if n != n_items {
            return Err(bad(&format!("{n} movies, the manifest has {n_items}")));
        }
        // A header may claim any sizes: checked, so a lie is an error, not an overflow.
        let expected = (n as u64)
            .checked_mul(width as u64)
            .and_then(|c| c.checked_mul(8))
            .and_then(|b| b.checked_add(16));
        if expected != Some(bytes.len() as u64) {
            return Err(bad("length does not match its header"));
        }
        let cells = n * width;
        let items: Vec<u32> = (0..cells).map(|c| word(16 + 4 * c)).collect();
        let sims: Vec<f32> = (0..cells)
            .map(|c| f32::from_bits(word(16 + 4 * (cells + c))))
            .collect();
        let out = Neighbours { width, items, sims };
        for i in 0..n {
            let row: Vec<(u32, f32)> = out.of(i as u32).collect();
            let padded = out.items[i * width..(i + 1) * width]
                .iter()
                .skip(row.len())
                .all(|&j| j == NONE);
            let mut ids: Vec<u32> = row.iter().map(|r| r.0).collect();
            ids.sort_unstable();
            ids.dedup();
            if !padded
                || ids.len() != row.len()
                || row
                    .iter()
                    .any(|&(j, s)| j as usize >= n || j as usize == i || !s.is_finite())
                || row.windows(2).any(|w| w[0].1 < w[1].1)
            {
                return Err(bad(&format!("the list of movie index {i} is malformed")));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_by_cosine_excluding_itself_and_zero_vectors() {
        // 0 and 1 point the same way at different lengths; 2 is orthogonal;
        // 3 is opposite to 0; 4 is zero.
        let v = [1.0, 0.0, 3.0, 0.0, 0.0, 2.0, -1.0, 0.0, 0.0, 0.0];
        let n = Neighbours::from_vectors(&v, 2, 3);
        assert_eq!(n.len(), 5);
        assert_eq!(
            n.of(0).collect::<Vec<_>>(),
            vec![(1, 1.0), (2, 0.0), (3, -1.0)]
        );
        assert_eq!(
            n.of(2).map(|x| x.0).collect::<Vec<_>>(),
            vec![0, 1, 3],
            "ties by index"
        );
        assert_eq!(n.of(4).count(), 0, "a zero vector has no neighbours");
        assert!(n.of(1).all(|(j, _)| j != 4 && j != 1));
        assert_eq!(n.of(99).count(), 0);
    }

    #[test]
    fn round_trip_and_corruption() {
        let v: Vec<f32> = (0..40).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
        let n = Neighbours::from_vectors(&v, 4, 5);
        let bytes = n.encode();
        assert_eq!(Neighbours::decode(&bytes, 10).unwrap(), n);
        assert!(Neighbours::decode(&bytes, 11).is_err(), "another catalogue");
        assert!(Neighbours::decode(&bytes[..bytes.len() - 1], 10).is_err());
        let mut itself = bytes.clone();
        itself[16..20].copy_from_slice(&0u32.to_le_bytes());
        let e = Neighbours::decode(&itself, 10).unwrap_err().to_string();
        assert!(e.contains("movie index 0"), "{e}");
        let mut outside = bytes.clone();
        outside[20..24].copy_from_slice(&10u32.to_le_bytes());
        assert!(Neighbours::decode(&outside, 10).is_err());
        let mut magic = bytes;
        magic[0] = b'X';
        assert!(Neighbours::decode(&magic, 10).is_err());
        // Sizes whose product overflows are refused, not multiplied.
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Neighbours::decode(&huge, u32::MAX as usize).is_err());
        let short = Neighbours::from_lists(&[vec![(1, 0.5)], vec![]], 3);
        assert_eq!(
            Neighbours::decode(&short.encode(), 2)
                .unwrap()
                .of(0)
                .count(),
            1
        );
    }
}
