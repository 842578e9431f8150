//! `movie-recs ingest` as users run it: the previous system's logs in
//! ../shared/data/seed-evidence (skipped when absent), an Avro container
//! file, re-runs that store nothing twice.

use serde_json::Value;
use shared::events::parquet::decode;
use shared::events::{avro, EventType};
use std::path::{Path, PathBuf};
use std::process::Command;

fn ingest(data_dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_movie-recs"))
        .arg("ingest")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--json")
        .output()
        .unwrap();
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{args:?}\n{so}\n{se}");
    serde_json::from_str(so.trim()).unwrap_or_else(|e| panic!("{e}: {so}"))
}

fn seed_evidence() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/seed-evidence");
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!("SKIP: {} is absent", d.display());
        None
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_previous_systems_logs_are_accepted_rejected_or_quarantined_with_reasons() {
    let Some(seed) = seed_evidence() else { return };
    let d = tempfile::tempdir().unwrap();
    let rate_file = seed.join("rate_events.jsonl");
    let text = std::fs::read_to_string(&rate_file).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let non_integer = lines.iter().filter(|v| !v["user_id"].is_u64()).count();
    assert!(non_integer > 0);

    let r = ingest(d.path(), &["--file", rate_file.to_str().unwrap()]);
    assert_eq!(r["rejected"], non_integer);
    assert_eq!(r["duplicates"], 0);
    let (acc, quar) = (
        r["accepted"].as_u64().unwrap(),
        r["quarantined"].as_u64().unwrap(),
    );
    assert_eq!((acc + quar) as usize, lines.len() - non_integer);
    // The quarantined ratings are the flood of one account: more than 20 in an hour.
    assert!(quar > 0);
    let lake = d.path().join("lake");
    let mut held = Vec::new();
    for f in files_under(&lake.join("quarantine")) {
        held.extend(decode(EventType::Rate, std::fs::read(f).unwrap()).unwrap());
    }
    assert_eq!(held.len() as u64, quar);
    let users: std::collections::BTreeSet<u64> = held.iter().map(|h| h.event.user_id()).collect();
    for u in &users {
        let mut ts: Vec<i64> = lines
            .iter()
            .filter(|v| v["user_id"].as_u64() == Some(*u))
            .map(|v| v["ts"].as_i64().unwrap())
            .collect();
        ts.sort();
        assert!(ts.windows(21).any(|w| w[20] - w[0] < 3_600_000), "user {u}");
    }
    // Every rejection is in the dead letters with its reason and raw line.
    let dead: Vec<Value> = files_under(&lake.join("rejected"))
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(dead.len(), non_integer);
    assert!(dead.iter().all(|x| x["reason"]["field"] == "user_id"
        && x["raw_text"].as_str().unwrap().contains("INVALID")));
    // Running it again stores nothing twice.
    let again = ingest(d.path(), &["--file", rate_file.to_str().unwrap()]);
    assert_eq!(again["duplicates"].as_u64().unwrap() as usize, lines.len());

    // The other logs (ISO timestamps, half stars, legacy reco responses) are all accepted.
    for f in [
        "rate_snapshot.jsonl",
        "watch_snapshot.jsonl",
        "reco_responses.jsonl",
    ] {
        let p = seed.join(f);
        let n = std::fs::read_to_string(&p).unwrap().lines().count();
        let r = ingest(d.path(), &["--file", p.to_str().unwrap()]);
        assert_eq!(r["accepted"].as_u64().unwrap() as usize, n, "{f}: {r}");
    }
}

#[test]
fn avro_container_files_and_explicit_types() {
    let d = tempfile::tempdir().unwrap();
    let schema = apache_avro::Schema::parse_str(avro::RATE_SCHEMA).unwrap();
    let mut w = apache_avro::Writer::new(&schema, Vec::new()).unwrap();
    let now = 1_790_000_000_000i64;
    for (i, rating) in [4.0, 3.3, 5.0].into_iter().enumerate() {
        let mut r = apache_avro::types::Record::new(&schema).unwrap();
        r.put(
            "event_id",
            apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
        );
        r.put("user_id", 1i64 + i as i64);
        r.put("movie_id", 10i64);
        r.put("rating", rating);
        r.put("ts", apache_avro::types::Value::TimestampMillis(now));
        w.append_value(r).unwrap();
    }
    let file = d.path().join("batch.avro");
    std::fs::write(&file, w.into_inner().unwrap()).unwrap();
    // The type comes from the schema name.
    let r = ingest(
        d.path(),
        &["--file", file.to_str().unwrap(), "--format", "avro"],
    );
    assert_eq!(
        (&r["accepted"], &r["rejected"]),
        (&2.into(), &1.into()),
        "{r}"
    );

    // A record naming another type than --type is refused, naming `type`.
    let j = d.path().join("mixed.jsonl");
    std::fs::write(
        &j,
        format!("{{\"type\": \"watch\", \"user_id\": 1, \"movie_id\": 2, \"ts\": {now}}}\n{{\"user_id\": 1, \"movie_id\": 3, \"rating\": 2, \"ts\": {now}}}\n"),
    )
    .unwrap();
    let r = ingest(d.path(), &["--file", j.to_str().unwrap(), "--type", "rate"]);
    assert_eq!(
        (&r["accepted"], &r["rejected"]),
        (&1.into(), &1.into()),
        "{r}"
    );
}
