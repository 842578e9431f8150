//! MovieLens-1M (`ratings.dat`, `movies.dat`) and MovieLens-100K (`u.data`, `u.item`).

use super::{decode_text, dense_ids, items_for, read_file, DataError, Snapshot};
use crate::domain::dataset::GENRES;
use crate::domain::{DataFormat, Dataset, Interaction, ItemMeta};
use std::collections::HashMap;
use std::path::Path;

/// Number of genre flags in `u.item`: `unknown`, then [`GENRES`] in order.
const ML100K_FLAGS: usize = 1 + GENRES.len();

struct RawRating {
    user: u64,
    item: u64,
    rating: f32,
    ts: i64,
}

fn parse_u64(file: &Path, line: usize, field: &str, s: &str) -> Result<u64, DataError> {
    s.trim().parse().map_err(|_| {
        DataError::malformed(
            file,
            line,
            format!("{field} is not a non-negative integer: {s:?}"),
        )
    })
}

fn parse_rating(file: &Path, line: usize, s: &str) -> Result<f32, DataError> {
    let r: f32 = s
        .trim()
        .parse()
        .map_err(|_| DataError::malformed(file, line, format!("rating is not a number: {s:?}")))?;
    if !(0.5..=5.0).contains(&r) {
        return Err(DataError::malformed(
            file,
            line,
            format!("rating {r} is outside 0.5..=5"),
        ));
    }
    Ok(r)
}

fn parse_ts(file: &Path, line: usize, s: &str) -> Result<i64, DataError> {
    s.trim().parse().map_err(|_| {
        DataError::malformed(file, line, format!("timestamp is not an integer: {s:?}"))
    })
}

fn parse_ratings(file: &Path, text: &str, sep: &str) -> Result<Vec<RawRating>, DataError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(sep).collect();
        if f.len() != 4 {
            return Err(DataError::malformed(
                file,
                n,
                format!("expected 4 fields separated by {sep:?}, found {}", f.len()),
            ));
        }
        out.push(RawRating {
            user: parse_u64(file, n, "user id", f[0])?,
            item: parse_u64(file, n, "movie id", f[1])?,
            rating: parse_rating(file, n, f[2])?,
            ts: parse_ts(file, n, f[3])?,
        });
    }
    Ok(out)
}

fn build(
    source: &Path,
    format: DataFormat,
    raw: Vec<RawRating>,
    meta: HashMap<u64, ItemMeta>,
    snap: Snapshot,
) -> Dataset {
    let (user_ids, umap) = dense_ids(raw.iter().map(|r| r.user));
    // Every catalogued movie is an item, rated or not, so serving knows the whole catalogue.
    let (item_ids, imap) = dense_ids(raw.iter().map(|r| r.item).chain(meta.keys().copied()));
    let train = raw
        .iter()
        .map(|r| Interaction {
            user: umap[&r.user],
            item: imap[&r.item],
            rating: r.rating,
            ts: r.ts,
        })
        .collect();
    Dataset {
        source: source.display().to_string(),
        format,
        user_ids,
        items: items_for(&item_ids, &meta),
        train,
        test: None,
        snapshot_id: snap.finish(),
        excluded_users: Vec::new(),
    }
}

/// `movies.dat` (`MovieID::Title::Genre|Genre`, Latin-1 or UTF-8) by movie id.
pub fn parse_movies_dat(path: &Path, bytes: &[u8]) -> Result<HashMap<u64, ItemMeta>, DataError> {
    let mut meta = HashMap::new();
    for (i, line) in decode_text(bytes).lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.splitn(3, "::").collect();
        if f.len() != 3 {
            return Err(DataError::malformed(
                path,
                i + 1,
                "expected MovieID::Title::Genres",
            ));
        }
        let id = parse_u64(path, i + 1, "movie id", f[0])?;
        let genres = f[2]
            .split('|')
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect();
        meta.insert(id, ItemMeta::from_title(id, f[1].to_string(), genres));
    }
    Ok(meta)
}

/// `u.item` (pipe-separated, 19 genre flags) by movie id.
pub fn parse_u_item(path: &Path, bytes: &[u8]) -> Result<HashMap<u64, ItemMeta>, DataError> {
    let mut meta = HashMap::new();
    for (i, line) in decode_text(bytes).lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('|').collect();
        if f.len() != 5 + ML100K_FLAGS {
            return Err(DataError::malformed(
                path,
                i + 1,
                format!("expected 24 '|'-separated fields, found {}", f.len()),
            ));
        }
        let id = parse_u64(path, i + 1, "movie id", f[0])?;
        let genres = std::iter::once("unknown")
            .chain(GENRES)
            .zip(&f[5..])
            .filter(|(_, flag)| flag.trim() == "1")
            .map(|(g, _)| g.to_string())
            .collect();
        meta.insert(id, ItemMeta::from_title(id, f[1].to_string(), genres));
    }
    Ok(meta)
}

/// Movie metadata from a `movies.dat` or `u.item` file (by its name).
pub fn read_item_meta(path: &Path) -> Result<HashMap<u64, ItemMeta>, DataError> {
    let bytes = read_file(path)?;
    if path.file_name().is_some_and(|n| n == "u.item") {
        parse_u_item(path, &bytes)
    } else {
        parse_movies_dat(path, &bytes)
    }
}

/// MovieLens-1M: `UserID::MovieID::Rating::Timestamp`, titles and genres from `movies.dat`.
pub fn load_ml1m(dir: &Path) -> Result<Dataset, DataError> {
    let mut snap = Snapshot::default();
    let rpath = dir.join("ratings.dat");
    let bytes = read_file(&rpath)?;
    snap.add("ratings.dat", &bytes);
    let raw = parse_ratings(&rpath, &decode_text(&bytes), "::")?;
    let mpath = dir.join("movies.dat");
    let mut meta = HashMap::new();
    if mpath.exists() {
        let bytes = read_file(&mpath)?;
        snap.add("movies.dat", &bytes);
        meta = parse_movies_dat(&mpath, &bytes)?;
    }
    Ok(build(dir, DataFormat::Movielens1m, raw, meta, snap))
}

/// MovieLens-100K: tab-separated `u.data`, pipe-separated `u.item` with 19 genre flags.
pub fn load_ml100k(dir: &Path) -> Result<Dataset, DataError> {
    let mut snap = Snapshot::default();
    let rpath = dir.join("u.data");
    let bytes = read_file(&rpath)?;
    snap.add("u.data", &bytes);
    let raw = parse_ratings(&rpath, &decode_text(&bytes), "\t")?;
    let ipath = dir.join("u.item");
    let mut meta = HashMap::new();
    if ipath.exists() {
        let bytes = read_file(&ipath)?;
        snap.add("u.item", &bytes);
        meta = parse_u_item(&ipath, &bytes)?;
    }
    Ok(build(dir, DataFormat::Movielens100k, raw, meta, snap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ml1m_fixture_with_metadata() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("ratings.dat"),
            "1::10::5::100\n1::20::3::90\n2::10::4::50\n",
        )
        .unwrap();
        // Latin-1 byte 0xE9 in a title.
        let mut movies = b"10::Caf\xe9 Society (1995)::Comedy|Drama\n20::Heat (1995)::Action\n30::Unrated (2000)::Horror\n".to_vec();
        movies.extend_from_slice(b"");
        std::fs::write(d.path().join("movies.dat"), movies).unwrap();
        let ds = super::super::load_dir(d.path()).unwrap();
        assert_eq!(ds.format, DataFormat::Movielens1m);
        assert_eq!(ds.user_ids, vec![1, 2]);
        assert_eq!(ds.n_items(), 3, "unrated catalogue movies are items too");
        assert_eq!(ds.items[0].title, "Café Society (1995)");
        assert_eq!(ds.items[0].genres, vec!["Comedy", "Drama"]);
        assert_eq!(ds.items[0].year, Some(1995));
        assert_eq!(ds.train.len(), 3);
        assert_eq!(
            ds.train[1],
            Interaction {
                user: 0,
                item: 1,
                rating: 3.0,
                ts: 90
            }
        );
        assert_eq!(ds.snapshot_id.len(), 64);
    }

    #[test]
    fn ml1m_malformed_line_is_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("ratings.dat"), "1::10::5::100\n1::x::3::90\n").unwrap();
        let e = load_ml1m(d.path()).unwrap_err().to_string();
        assert!(e.contains("ratings.dat:2") && e.contains("movie id"), "{e}");
        std::fs::write(d.path().join("ratings.dat"), "1::10::9::100\n").unwrap();
        let e = load_ml1m(d.path()).unwrap_err().to_string();
        assert!(e.contains("ratings.dat:1") && e.contains("rating 9"), "{e}");
    }

    #[test]
    fn ml100k_fixture_and_errors() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("u.data"),
            "196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
        )
        .unwrap();
        let flags = |on: usize| {
            (0..19)
                .map(|i| if i == on { "1" } else { "0" })
                .collect::<Vec<_>>()
                .join("|")
        };
        std::fs::write(
            d.path().join("u.item"),
            format!("242|Kolya (1996)|24-Jan-1997||http://x|{}\n302|L.A. Confidential (1997)|01-Jan-1997||http://y|{}\n", flags(5), flags(16)),
        )
        .unwrap();
        let ds = super::super::load_dir(d.path()).unwrap();
        assert_eq!(ds.format, DataFormat::Movielens100k);
        assert_eq!(ds.items[0].genres, vec!["Comedy"]);
        assert_eq!(ds.items[1].genres, vec!["Thriller"]);
        std::fs::write(d.path().join("u.data"), "196\t242\t3\n").unwrap();
        let e = load_ml100k(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("u.data:1") && e.contains("expected 4 fields"),
            "{e}"
        );
    }
}
