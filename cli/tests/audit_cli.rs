//! `movie-recs audit` as users run it: on small files worked out by hand, on
//! the previous system's logs (../shared/data/seed-evidence, skipped when
//! absent) with expected values computed independently of this code, and on
//! a data folder filled by `movie-recs ingest`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn movie_recs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_movie-recs"))
        .args(args)
        .output()
        .unwrap()
}

fn json_of(out: &Output, args: &[&str]) -> Value {
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{args:?}\n{so}\n{se}");
    serde_json::from_str(so.trim()).unwrap_or_else(|e| panic!("{e}: {so}"))
}

fn audit_json(args: &[&str]) -> Value {
    let mut a = vec!["audit", "--json"];
    a.extend_from_slice(args);
    json_of(&movie_recs(&a), &a)
}

fn data(rel: &str) -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel);
    if d.exists() {
        Some(d)
    } else {
        eprintln!("SKIP: {} is absent", d.display());
        None
    }
}

fn close(v: &Value, want: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
}

/// Four lists over a catalogue of 10, worked by hand: exposures 1×4, 2×2,
/// 3×1, 4×1 (8 in all, 4 distinct).
#[test]
fn hand_worked_files() {
    let d = tempfile::tempdir().unwrap();
    let recs = d.path().join("recos.jsonl");
    let lines = [
        r#"{"user_id": 1, "movie_ids": [1, 2], "model_version": "v1", "variant": null, "ts": 1763855708444}"#,
        r#"{"user_id": 2, "movie_ids": [1, 2], "model_version": "v1", "variant": null, "ts": 1763855708444}"#,
        r#"{"user_id": 3, "movie_ids": [1, 3], "model_version": "v1", "variant": null, "ts": 1763855708444}"#,
        r#"{"user_id": 4, "movie_ids": [1, 4], "model_version": "v1", "variant": null, "ts": 1763855708444}"#,
        r#"{"user_id": 5, "movie_ids": "oops", "model_version": "v1", "ts": 1763855708444}"#,
    ];
    std::fs::write(&recs, lines.join("\n")).unwrap();
    let ratings = d.path().join("ratings.jsonl");
    std::fs::write(
        &ratings,
        "{\"user_id\": 1, \"movie_id\": 1, \"rating\": 4, \"ts\": 1763650561609}\n{\"user_id\": \"x\", \"movie_id\": 1, \"rating\": 4, \"ts\": 1763650561609}\n",
    )
    .unwrap();
    let r = audit_json(&[
        "--recommendations",
        recs.to_str().unwrap(),
        "--ratings",
        ratings.to_str().unwrap(),
        "--catalog-size",
        "10",
    ]);
    assert_eq!(
        (r["requests"].as_u64(), r["exposures"].as_u64()),
        (Some(4), Some(8))
    );
    close(&r["catalog_coverage"], 0.4);
    close(&r["starvation_index"], 0.6);
    // Ascending 1,1,2,4 (sum 8, n 4): 2(1+2+6+16)/(4·8) − 5/4 = 50/32 − 40/32.
    close(&r["gini_exposed"], 10.0 / 32.0);
    // 6 zeros first: positions 7..10: 2(7+8+18+40)/(10·8) − 11/10 = 146/80 − 88/80.
    close(&r["gini_catalog"], 58.0 / 80.0);
    // Top max(1, floor(0.4)) = 1 movie: 4/8.
    close(&r["top_10_pct_share"], 0.5);
    close(&r["tail_share"], 0.5);
    // Legacy tiers over n = 4: positions 0 high, 1 medium (0.25), 2-3 low (0.5, 0.75).
    assert_eq!(r["tiers"]["high"]["movies"], 1);
    close(&r["tiers"]["high"]["amplification"], 0.5 / 0.1);
    assert_eq!(r["tiers"]["low"]["exposures"], 2);
    assert_eq!(r["tiers"]["zero"]["movies"], 6);
    assert_eq!(r["spam"]["schema_errors"], 1);
    assert_eq!(r["spam"]["flagged_users"], serde_json::json!([]));
    assert!(r["spam"]["threshold"].is_number());
    assert!(r["segments"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["dimension"] == "activity"));
    // coverage 0.4 holds, top-10% share 0.5 breaches: --check exits 3.
    let out = movie_recs(&[
        "audit",
        "--recommendations",
        recs.to_str().unwrap(),
        "--catalog-size",
        "10",
        "--check",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BREACHED: top_10_pct_share"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 invalid recommendation records skipped; first: line 5: movie_ids"),
        "{err}"
    );

    // Clear errors for what cannot be audited.
    let out = movie_recs(&["audit", "--recommendations", recs.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--catalog movies.dat or --catalog-size N")
    );
    let out = movie_recs(&["audit", "--ratings", "/nonexistent/r.jsonl"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/r.jsonl"));
    let out = movie_recs(&[
        "audit",
        "--ratings",
        ratings.to_str().unwrap(),
        "--max-gini",
        "2",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-gini must be from 0 to 1"));
}

/// The previous system's logs. Expected values were computed with a short
/// Python script reading the files directly (Counter over movie_ids, the
/// Gini formula, statistics.pstdev), not with this code.
#[test]
fn seed_evidence_matches_an_independent_computation() {
    let (Some(seed), Some(meta)) = (data("seed-evidence"), data("ml-1m-meta")) else {
        return;
    };
    let recs = seed.join("reco_responses.jsonl");
    let ratings = seed.join("rate_events.jsonl");
    let r = audit_json(&[
        "--recommendations",
        recs.to_str().unwrap(),
        "--ratings",
        ratings.to_str().unwrap(),
        "--catalog-size",
        "3883",
    ]);
    assert_eq!(
        (r["requests"].as_u64(), r["exposures"].as_u64()),
        (Some(200), Some(2000))
    );
    assert_eq!(r["distinct_exposed"], 1446);
    close(&r["catalog_coverage"], 0.372_392_480_041_205_23);
    close(&r["gini_exposed"], 0.212_947_441_217_150_8);
    close(&r["gini_catalog"], 0.706_907_545_712_078_1);
    close(&r["top_10_pct_share"], 0.212);
    close(&r["tail_share"], 0.788);
    close(&r["starvation_index"], 0.627_607_519_958_794_7);
    let t = &r["tiers"];
    assert_eq!(
        (
            t["high"]["movies"].as_u64(),
            t["high"]["exposures"].as_u64()
        ),
        (Some(145), Some(426))
    );
    close(&t["high"]["amplification"], 5.703_993_103_448_275);
    close(&t["medium"]["amplification"], 2.858_506_055_363_321_7);
    close(&t["low"]["amplification"], 1.9415);
    close(&t["tail"]["amplification"], 1.9415);
    let s = &r["spam"];
    assert_eq!(
        (s["users"].as_u64(), s["events"].as_u64()),
        (Some(192), Some(1089))
    );
    assert_eq!(s["schema_errors"], 5);
    close(&s["mean"], 5.671875);
    close(&s["std"], 7.690_743_937_858_569);
    close(&s["threshold"], 28.744_106_813_575_705);
    assert_eq!(s["legacy_flagged_users"], serde_json::json!([8888, 9999]));
    assert_eq!(
        (s["median"].as_f64(), s["mad"].as_f64()),
        (Some(5.0), Some(1.0))
    );
    // 8888: 50 one-star ratings over 24 h; 9999: 100 five-star, 99 in one hour.
    assert_eq!(s["flagged_users"], serde_json::json!([8888, 9999]));
    let rules = |u: u64| {
        s["flags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["user_id"] == u)
            .unwrap()["rules"]
            .clone()
    };
    assert_eq!(
        rules(8888),
        serde_json::json!(["legacy", "robust", "identical_extreme"])
    );
    assert_eq!(
        rules(9999),
        serde_json::json!(["legacy", "robust", "identical_extreme", "velocity"])
    );

    // With movies.dat: 43 exposed ids are not in it and join the catalogue
    // (3,926 movies); users.dat adds gender and age segments; --report writes files.
    let rep = tempfile::tempdir().unwrap();
    let r = audit_json(&[
        "--recommendations",
        recs.to_str().unwrap(),
        "--ratings",
        ratings.to_str().unwrap(),
        "--catalog",
        meta.join("movies.dat").to_str().unwrap(),
        "--users",
        meta.join("users.dat").to_str().unwrap(),
        "--report",
        rep.path().to_str().unwrap(),
    ]);
    assert_eq!(
        (r["unknown_movies"].as_u64(), r["catalog_size"].as_u64()),
        (Some(43), Some(3926))
    );
    close(&r["catalog_coverage"], 0.368_313_805_399_898_1);
    let seg = |d: &str, s: &str| {
        r["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["dimension"] == d && x["segment"] == s)
            .cloned()
            .unwrap_or_else(|| panic!("no segment {d}/{s}"))
    };
    assert_eq!(seg("gender", "M")["requests"], 136);
    assert_eq!(seg("gender", "F")["requests"], 64);
    assert!(seg("age", "25-34")["users"].as_u64().unwrap() > 0);
    for f in [
        "report.json",
        "report.md",
        "lorenz.svg",
        "tiers.svg",
        "spam.svg",
    ] {
        let p = rep.path().join(f);
        assert!(p.metadata().map(|m| m.len() > 200).unwrap_or(false), "{f}");
    }
    let md = std::fs::read_to_string(rep.path().join("report.md")).unwrap();
    assert!(
        md.contains("| catalog_coverage | 0.368 | >= 0.4 | **breached** |"),
        "{md}"
    );
}

/// `movie-recs ingest` fills a data folder (ratings over the velocity limit
/// quarantined, reco_responses as exposures); `movie-recs audit` without
/// files audits its window, quarantines the flagged users and writes the
/// report and the metrics there.
#[test]
fn the_data_folder_after_ingest() {
    let Some(seed) = data("seed-evidence") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    for f in ["rate_events.jsonl", "reco_responses.jsonl"] {
        let file = seed.join(f);
        let a = [
            "ingest",
            "--file",
            file.to_str().unwrap(),
            "--data-dir",
            dir,
            "--json",
        ];
        json_of(&movie_recs(&a), &a);
    }
    // The logs span 2025-11-19T23:56Z to 2025-11-22T23:56Z.
    let r = audit_json(&[
        "--data-dir",
        dir,
        "--until",
        "2025-11-23T00:00:00Z",
        "--window-minutes",
        "5000",
        "--catalog-size",
        "3883",
    ]);
    assert_eq!(r["requests"], 200);
    close(&r["catalog_coverage"], 0.372_392_480_041_205_23);
    // Accepted and velocity-quarantined ratings both: 1,089 valid ratings.
    assert_eq!(r["spam"]["events"], 1089);
    assert_eq!(r["spam"]["flagged_users"], serde_json::json!([8888, 9999]));
    let q = std::fs::read_to_string(
        d.path()
            .join("lake/quarantine/users/dt=2025-11-23/audit-20251123T000000Z.jsonl"),
    )
    .unwrap();
    let users: Vec<u64> = q
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["user_id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(users, vec![8888, 9999]);
    let rep = d.path().join("reports/audit/dt=2025-11-23/000000Z");
    for f in [
        "report.json",
        "report.md",
        "lorenz.svg",
        "tiers.svg",
        "spam.svg",
    ] {
        assert!(rep.join(f).is_file(), "{f}");
    }
    let metrics = std::fs::read_to_string(d.path().join("metrics.jsonl")).unwrap();
    let cov: Vec<Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|m| m["name"] == "CatalogCoverage")
        .collect();
    assert_eq!(cov.len(), 2, "overall and the one (model, variant) group");
    assert_eq!(cov[0]["dimensions"]["model_version"], "all");
    assert_eq!(cov[1]["dimensions"]["model_version"], "v_ncf");
    assert_eq!(cov[1]["dimensions"]["variant"], "none");
    assert_eq!(cov[0]["namespace"], "MovieRecs");
    // An hour with nothing in it: counts only, nothing flagged, nothing written to quarantine.
    let r = audit_json(&[
        "--data-dir",
        dir,
        "--until",
        "2020-01-01T00:00:00Z",
        "--catalog-size",
        "3883",
    ]);
    assert_eq!(
        (r["requests"].as_u64(), r["passed"].as_bool()),
        (Some(0), Some(true))
    );
    assert!(r["catalog_coverage"].is_null());
}
