//! The in-memory training dataset: dense model indices, external ids and item metadata.

use serde::{Deserialize, Serialize};

/// MovieLens genre names: the vocabulary of every loader and the generator.
pub const GENRES: [&str; 18] = [
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// One observed user–item interaction, in model index space.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interaction {
    /// Dense user index (0..n_users).
    pub user: u32,
    /// Dense item index (0..n_items).
    pub item: u32,
    /// Explicit rating when the source has one (implicit sources use 1.0).
    pub rating: f32,
    /// Event time in epoch seconds (0 when the source has no time).
    pub ts: i64,
}

impl Interaction {
    /// An implicit interaction (rating 1.0) at `ts`.
    pub fn implicit(user: u32, item: u32, ts: i64) -> Self {
        Interaction {
            user,
            item,
            rating: 1.0,
            ts,
        }
    }
}

/// What the product knows about a movie: its external id, title and genres.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemMeta {
    /// External movie id (MovieLens MovieID, or the index for formats without ids).
    pub movie_id: u64,
    /// Display title.
    pub title: String,
    /// Genre names.
    pub genres: Vec<String>,
    /// Release year when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<u16>,
}

/// Year in a MovieLens title such as `Toy Story (1995)`.
pub(crate) fn year_from_title(title: &str) -> Option<u16> {
    let t = title.trim_end();
    let inner = t.strip_suffix(')')?.rsplit_once('(')?.1;
    if inner.len() == 4 {
        inner.parse().ok()
    } else {
        None
    }
}

impl ItemMeta {
    /// Metadata from a MovieLens-style title such as `Toy Story (1995)`, whose
    /// trailing year becomes `year`.
    pub fn from_title(movie_id: u64, title: String, genres: Vec<String>) -> Self {
        let year = year_from_title(&title);
        ItemMeta {
            movie_id,
            title,
            genres,
            year,
        }
    }

    /// Metadata for an item the source names only by id.
    pub fn bare(movie_id: u64) -> Self {
        ItemMeta {
            movie_id,
            title: format!("Movie {movie_id}"),
            genres: Vec::new(),
            year: None,
        }
    }
}

/// One case of the NCF leave-one-out protocol: rank `item` among `negatives`.
#[derive(Clone, Debug, PartialEq)]
pub struct LooCase {
    pub user: u32,
    pub item: u32,
    pub negatives: Vec<u32>,
}

/// The held-out data that comes with a dataset, which decides the test protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum TestSet {
    /// NCF protocol: one held-out item per user with sampled negatives.
    LeaveOneOut(Vec<LooCase>),
    /// Full-ranking protocol: held-out items per user, ranked against every item not in train.
    Full(Vec<(u32, Vec<u32>)>),
}

impl TestSet {
    /// Protocol name as it appears in evaluation reports (`ncf` or `full`).
    pub fn protocol(&self) -> &'static str {
        match self {
            TestSet::LeaveOneOut(_) => "ncf",
            TestSet::Full(_) => "full",
        }
    }
}

/// Which on-disk format a dataset came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    Movielens1m,
    Movielens100k,
    Ncf,
    Lcfn,
    Jsonl,
    /// The ingest event lake (Parquet, `events/type=…/dt=…/hour=…`).
    Lake,
    Synthetic,
}

impl DataFormat {
    /// Whether the source carries its own test split (otherwise one is carved out).
    pub fn has_test_split(self) -> bool {
        matches!(self, DataFormat::Ncf | DataFormat::Lcfn)
    }
}

/// A dataset in model index space, ready for training and evaluation.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Human-readable source name (folder or `synthetic`).
    pub source: String,
    pub format: DataFormat,
    /// Model user index → external user id.
    pub user_ids: Vec<u64>,
    /// Model item index → metadata (with external movie id).
    pub items: Vec<ItemMeta>,
    /// Training interactions.
    pub train: Vec<Interaction>,
    /// Held-out test data shipped with the source, if any.
    pub test: Option<TestSet>,
    /// sha256 over the source files (or the generator parameters): the data snapshot id.
    pub snapshot_id: String,
    /// Users whose events were left out (flagged by the audit or ingest).
    pub excluded_users: Vec<u64>,
}

impl Dataset {
    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }

    pub fn n_items(&self) -> usize {
        self.items.len()
    }

    /// Each user's distinct training items, sorted ascending.
    pub fn user_histories(&self) -> Vec<Vec<u32>> {
        histories(self.n_users(), &self.train)
    }

    /// Number of training interactions per item.
    pub fn item_popularity(&self) -> Vec<u32> {
        popularity(self.n_items(), &self.train)
    }
}

/// Each user's distinct items, sorted ascending.
pub fn histories(n_users: usize, interactions: &[Interaction]) -> Vec<Vec<u32>> {
    let mut h = vec![Vec::new(); n_users];
    for x in interactions {
        h[x.user as usize].push(x.item);
    }
    for v in &mut h {
        v.sort_unstable();
        v.dedup();
    }
    h
}

/// Number of interactions per item.
pub fn popularity(n_items: usize, interactions: &[Interaction]) -> Vec<u32> {
    let mut c = vec![0u32; n_items];
    for x in interactions {
        c[x.item as usize] += 1;
    }
    c
}
