//! Index-space formats shipped with published splits: the NCF repository format
//! (`<name>.train.rating`, `.test.rating`, `.test.negative`) and the LCFN/LightGCN
//! adjacency lists (`train.txt`, `test.txt`). Ids in these files are already dense
//! 0-based indices; they are kept as the external ids.

use super::{decode_text, read_file, DataError, Snapshot};
use crate::domain::{DataFormat, Dataset, Interaction, ItemMeta, LooCase, TestSet};
use std::path::Path;

fn idx(file: &Path, line: usize, field: &str, s: &str) -> Result<u32, DataError> {
    s.trim().parse().map_err(|_| {
        DataError::malformed(
            file,
            line,
            format!("{field} is not a non-negative integer: {s:?}"),
        )
    })
}

fn rating_lines(file: &Path, text: &str) -> Result<Vec<Interaction>, DataError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 2 {
            return Err(DataError::malformed(
                file,
                n,
                "expected user\\titem\\trating\\ttimestamp",
            ));
        }
        let rating = match f.get(2) {
            Some(s) => s.trim().parse().map_err(|_| {
                DataError::malformed(file, n, format!("rating is not a number: {s:?}"))
            })?,
            None => 1.0,
        };
        let ts = match f.get(3) {
            Some(s) => s.trim().parse().map_err(|_| {
                DataError::malformed(file, n, format!("timestamp is not an integer: {s:?}"))
            })?,
            None => 0,
        };
        out.push(Interaction {
            user: idx(file, n, "user", f[0])?,
            item: idx(file, n, "item", f[1])?,
            rating,
            ts,
        });
    }
    Ok(out)
}

fn finish(
    dir: &Path,
    format: DataFormat,
    n_users: usize,
    n_items: usize,
    train: Vec<Interaction>,
    test: TestSet,
    snap: Snapshot,
) -> Dataset {
    Dataset {
        source: dir.display().to_string(),
        format,
        user_ids: (0..n_users as u64).collect(),
        items: (0..n_items as u64).map(ItemMeta::bare).collect(),
        train,
        test: Some(test),
        snapshot_id: snap.finish(),
        excluded_users: Vec::new(),
    }
}

/// The NCF repository format for the dataset `<stem>` in `dir`.
pub fn load_ncf(dir: &Path, stem: &str) -> Result<Dataset, DataError> {
    let mut snap = Snapshot::default();
    let mut read = |suffix: &str| -> Result<(std::path::PathBuf, String), DataError> {
        let name = format!("{stem}.{suffix}");
        let p = dir.join(&name);
        let b = read_file(&p)?;
        snap.add(&name, &b);
        Ok((p, decode_text(&b)))
    };
    let (tp, ttext) = read("train.rating")?;
    let (sp, stext) = read("test.rating")?;
    let (np, ntext) = read("test.negative")?;
    let train = rating_lines(&tp, &ttext)?;
    let test_ratings = rating_lines(&sp, &stext)?;
    let mut cases = Vec::new();
    for (i, line) in ntext.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut f = line.split('\t');
        let head = f.next().unwrap_or("");
        let pair = head
            .trim()
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|s| s.split_once(','))
            .ok_or_else(|| {
                DataError::malformed(
                    &np,
                    n,
                    format!("expected (user,item) first, found {head:?}"),
                )
            })?;
        let user = idx(&np, n, "user", pair.0)?;
        let item = idx(&np, n, "item", pair.1)?;
        let negatives = f
            .filter(|s| !s.trim().is_empty())
            .map(|s| idx(&np, n, "negative item", s))
            .collect::<Result<Vec<_>, _>>()?;
        cases.push(LooCase {
            user,
            item,
            negatives,
        });
    }
    if cases.len() != test_ratings.len() {
        return Err(DataError::Invalid {
            file: np,
            reason: format!(
                "{} cases but {} lines in {}",
                cases.len(),
                test_ratings.len(),
                sp.display()
            ),
        });
    }
    let max_user = train
        .iter()
        .map(|x| x.user)
        .chain(cases.iter().map(|c| c.user))
        .max()
        .unwrap_or(0);
    let max_item = train
        .iter()
        .map(|x| x.item)
        .chain(
            cases
                .iter()
                .flat_map(|c| std::iter::once(c.item).chain(c.negatives.iter().copied())),
        )
        .max()
        .unwrap_or(0);
    Ok(finish(
        dir,
        DataFormat::Ncf,
        max_user as usize + 1,
        max_item as usize + 1,
        train,
        TestSet::LeaveOneOut(cases),
        snap,
    ))
}

fn adjacency(file: &Path, text: &str) -> Result<Vec<(u32, Vec<u32>)>, DataError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let mut f = line.split_whitespace();
        let Some(u) = f.next() else { continue };
        let user = idx(file, n, "user", u)?;
        let items = f
            .map(|s| idx(file, n, "item", s))
            .collect::<Result<Vec<_>, _>>()?;
        out.push((user, items));
    }
    Ok(out)
}

/// The LCFN/LightGCN split: one line per user, `user item item …`.
pub fn load_lcfn(dir: &Path) -> Result<Dataset, DataError> {
    let mut snap = Snapshot::default();
    let tp = dir.join("train.txt");
    let sp = dir.join("test.txt");
    let tb = read_file(&tp)?;
    let sb = read_file(&sp)?;
    snap.add("train.txt", &tb);
    snap.add("test.txt", &sb);
    let train_lists = adjacency(&tp, &decode_text(&tb))?;
    let test = adjacency(&sp, &decode_text(&sb))?;
    let max_user = train_lists
        .iter()
        .chain(&test)
        .map(|(u, _)| *u)
        .max()
        .unwrap_or(0);
    let max_item = train_lists
        .iter()
        .chain(&test)
        .flat_map(|(_, v)| v.iter().copied())
        .max()
        .unwrap_or(0);
    let train = train_lists
        .iter()
        .flat_map(|(u, items)| items.iter().map(move |&i| Interaction::implicit(*u, i, 0)))
        .collect();
    Ok(finish(
        dir,
        DataFormat::Lcfn,
        max_user as usize + 1,
        max_item as usize + 1,
        train,
        TestSet::Full(test),
        snap,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ncf_fixture() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("toy.train.rating"),
            "0\t1\t5\t10\n0\t2\t4\t11\n1\t0\t3\t12\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("toy.test.rating"),
            "0\t3\t5\t20\n1\t2\t4\t21\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("toy.test.negative"),
            "(0,3)\t0\t4\n(1,2)\t5\t3\n",
        )
        .unwrap();
        let ds = super::super::load_dir(d.path()).unwrap();
        assert_eq!(ds.format, DataFormat::Ncf);
        assert_eq!((ds.n_users(), ds.n_items()), (2, 6));
        let Some(TestSet::LeaveOneOut(cases)) = &ds.test else {
            panic!("expected LOO")
        };
        assert_eq!(
            cases[1],
            LooCase {
                user: 1,
                item: 2,
                negatives: vec![5, 3]
            }
        );
    }

    #[test]
    fn ncf_malformed_negative_line() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("toy.train.rating"), "0\t1\t5\t10\n").unwrap();
        std::fs::write(
            d.path().join("toy.test.rating"),
            "0\t3\t5\t20\n0\t2\t5\t20\n",
        )
        .unwrap();
        std::fs::write(d.path().join("toy.test.negative"), "(0,3)\t0\t4\n0,2\t1\n").unwrap();
        let e = super::super::load_dir(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("toy.test.negative:2") && e.contains("(user,item)"),
            "{e}"
        );
    }

    #[test]
    fn lcfn_fixture_and_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("train.txt"), "0 1 2\n1 0\n2\n").unwrap();
        std::fs::write(d.path().join("test.txt"), "0 3\n1 2 4\n").unwrap();
        let ds = super::super::load_dir(d.path()).unwrap();
        assert_eq!(ds.format, DataFormat::Lcfn);
        assert_eq!((ds.n_users(), ds.n_items(), ds.train.len()), (3, 5, 3));
        assert_eq!(
            ds.test,
            Some(TestSet::Full(vec![(0, vec![3]), (1, vec![2, 4])]))
        );
        std::fs::write(d.path().join("test.txt"), "0 3\n1 two\n").unwrap();
        let e = super::super::load_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("test.txt:2") && e.contains("\"two\""), "{e}");
    }
}
