use super::*;
use std::collections::HashMap;

fn settings(pairs: &[(&str, &str)]) -> Settings {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_lookup(|k| m.get(k).cloned()).unwrap()
}

#[tokio::test]
async fn local_stores_build_in_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let s = settings(&[
        ("MOVIE_RECS_REGISTRY", &p("reg")),
        ("MOVIE_RECS_DB", &p("db/m.db")),
        ("MOVIE_RECS_LAKE", &p("lake")),
    ]);
    let st = Stores::build(Role::Serve, &s).await.unwrap();
    assert!(st.sdk.is_none());
    assert!(st.registry().unwrap().list_versions().unwrap().is_empty());
    let h = st.history().unwrap();
    h.append(1, &[2], 3).await.unwrap();
    assert_eq!(h.seen(1).await.unwrap(), vec![2]);
    assert!(dir.path().join("db/m.db").is_file());
}

#[tokio::test]
async fn a_role_builds_only_its_stores_and_opens_no_database_it_does_not_need() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let s = settings(&[
        ("MOVIE_RECS_DB", db.to_str().unwrap()),
        (
            "MOVIE_RECS_REGISTRY",
            dir.path().join("reg").to_str().unwrap(),
        ),
    ]);
    let st = Stores::build(Role::Trace, &s).await.unwrap();
    assert!(st.traces().is_ok());
    let e = st.registry().err().unwrap();
    assert_eq!(e.var, "MOVIE_RECS_REGISTRY");
    assert!(e.reason.contains("trace role does not build"), "{e}");
    assert!(st.history().is_err() && st.lake().is_err());
    // Ingest with every table in DynamoDB opens no SQLite file.
    let s = settings(&[
        ("MOVIE_RECS_DB", db.to_str().unwrap()),
        ("MOVIE_RECS_LAKE", dir.path().join("lake").to_str().unwrap()),
        ("MOVIE_RECS_INGEST_TABLE", "ingest"),
        ("MOVIE_RECS_HISTORY_TABLE", "history"),
        ("MOVIE_RECS_TRENDING_TABLE", "trending"),
    ]);
    std::fs::remove_file(&db).unwrap();
    let st = Stores::build(Role::Ingest, &s).await.unwrap();
    assert!(st.ingest_state().is_ok() && st.sdk.is_some());
    assert!(!db.exists(), "no store of ingest is local");
}

#[test]
fn in_lambda_a_missing_or_local_store_names_its_variable_and_the_function() {
    let lambda = [("AWS_LAMBDA_FUNCTION_NAME", "movie-recs-dev-recommend")];
    let full = [
        ("MOVIE_RECS_REGISTRY", "s3://bkt/models"),
        ("MOVIE_RECS_TRACES_TABLE", "t"),
        ("MOVIE_RECS_HISTORY_TABLE", "h"),
        ("MOVIE_RECS_ROLLOUT_TABLE", "r"),
        ("MOVIE_RECS_TRENDING_TABLE", "tr"),
        ("MOVIE_RECS_EXPOSURE", "s3://bkt/exposure"),
    ];
    let with = |extra: &[(&str, &str)]| {
        let mut v: Vec<(&str, &str)> = lambda.to_vec();
        v.extend_from_slice(extra);
        settings(&v)
    };
    check_lambda(Role::Recommend, &with(&full)).unwrap();
    for skip in 0..full.len() {
        let partial: Vec<(&str, &str)> = full
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, p)| *p)
            .collect();
        let e = check_lambda(Role::Recommend, &with(&partial)).unwrap_err();
        assert_eq!(e.var, full[skip].0);
        assert!(e.reason.contains("the recommend function"), "{e}");
        assert!(e.reason.contains("got nothing"), "{e}");
    }
    // A folder registry is refused too, naming what it got.
    let mut local = full.to_vec();
    local[0] = ("MOVIE_RECS_REGISTRY", "models");
    let e = check_lambda(Role::Recommend, &with(&local)).unwrap_err();
    assert_eq!(e.var, "MOVIE_RECS_REGISTRY");
    assert!(
        e.reason.contains("s3://") && e.reason.contains("\"models\""),
        "{e}"
    );
    // The trace function needs only its table.
    check_lambda(Role::Trace, &with(&[("MOVIE_RECS_TRACES_TABLE", "t")])).unwrap();
    let mut ingest = full.to_vec();
    ingest.push(("MOVIE_RECS_LAKE", "s3://bkt/lake"));
    let e = check_lambda(Role::Ingest, &with(&ingest)).unwrap_err();
    assert_eq!(e.var, "MOVIE_RECS_INGEST_TABLE");
    // Metrics must go to CloudWatch; the cache must be under /tmp.
    let mut audit = full.to_vec();
    audit.extend([
        ("MOVIE_RECS_LAKE", "s3://bkt/lake"),
        ("MOVIE_RECS_REPORTS", "s3://bkt/reports"),
    ]);
    let e = check_lambda(Role::Audit, &with(&audit)).unwrap_err();
    assert_eq!(e.var, "MOVIE_RECS_METRICS");
    audit.push(("MOVIE_RECS_METRICS", "cloudwatch"));
    check_lambda(Role::Audit, &with(&audit)).unwrap();
    audit.push(("MOVIE_RECS_MODEL_CACHE", "cache"));
    let e = check_lambda(Role::Audit, &with(&audit)).unwrap_err();
    assert_eq!(e.var, "MOVIE_RECS_MODEL_CACHE");
}
