//! Loaders on the real benchmark files in ../shared/data (MovieLens: never
//! copied into the repo). Each test skips with a message when the folder is absent.

use shared::domain::{DataFormat, TestSet};
use std::path::PathBuf;

fn data(dir: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(dir);
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "SKIP: {} is absent (MovieLens data lives in ../shared/data)",
            p.display()
        );
        None
    }
}

#[test]
fn ml100k_ncf_split() {
    let Some(p) = data("ml-100k-ncf") else { return };
    let ds = shared::data::load_dir(&p).unwrap();
    assert_eq!(ds.format, DataFormat::Ncf);
    assert_eq!(
        (ds.n_users(), ds.n_items(), ds.train.len()),
        (943, 1682, 99_057)
    );
    let Some(TestSet::LeaveOneOut(cases)) = &ds.test else {
        panic!()
    };
    assert_eq!(cases.len(), 943);
    assert!(cases.iter().all(|c| c.negatives.len() == 99));
}

#[test]
fn ml1m_implicit_split() {
    let Some(p) = data("ml-1m-implicit") else {
        return;
    };
    let ds = shared::data::load_dir(&p).unwrap();
    assert_eq!(ds.format, DataFormat::Lcfn);
    assert_eq!(
        (ds.n_users(), ds.n_items(), ds.train.len()),
        (6022, 3043, 796_244)
    );
    let Some(TestSet::Full(lists)) = &ds.test else {
        panic!()
    };
    assert_eq!(lists.iter().map(|(_, v)| v.len()).sum::<usize>(), 99_455);
}

#[test]
fn ml100k_raw_with_metadata() {
    let Some(p) = data("ml-100k") else { return };
    let ds = shared::data::load_dir(&p).unwrap();
    assert_eq!(ds.format, DataFormat::Movielens100k);
    assert_eq!(
        (ds.n_users(), ds.n_items(), ds.train.len()),
        (943, 1682, 100_000)
    );
    assert_eq!(ds.items[0].title, "Toy Story (1995)");
    assert_eq!(
        ds.items[0].genres,
        vec!["Animation", "Children's", "Comedy"]
    );
}

#[test]
fn ml1m_metadata_decodes_latin1_titles() {
    let Some(p) = data("ml-1m-meta") else { return };
    // movies.dat alone is not a dataset; pair it with a one-line ratings.dat.
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(p.join("movies.dat"), d.path().join("movies.dat")).unwrap();
    std::fs::write(d.path().join("ratings.dat"), "1::1::5::978300760\n").unwrap();
    let ds = shared::data::load_dir(d.path()).unwrap();
    assert_eq!(ds.n_items(), 3883);
    assert!(
        ds.items.iter().any(|m| m.title.contains('é')),
        "latin-1 titles decode"
    );
}
