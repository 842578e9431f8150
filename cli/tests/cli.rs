//! The `movie-recs` binary as scripts use it: `train` prints the version last,
//! `eval --json` prints one JSON object of the documented shape.

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_movie-recs"))
}

fn run(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("binary runs");
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "failed: {cmd:?}\nstdout:\n{so}\nstderr:\n{se}"
    );
    (so, se)
}

const SMALL: [&str; 4] = ["--synthetic-users", "300", "--synthetic-items", "200"];

#[test]
fn train_prints_version_last_and_eval_prints_json() {
    let reg = tempfile::tempdir().unwrap();
    let (stdout, stderr) = run(bin()
        .args(["train", "--data", "synthetic", "--registry"])
        .arg(reg.path())
        .args([
            "--epochs",
            "2",
            "--factors",
            "8",
            "--layers",
            "16,8",
            "--quiet",
            // Two epochs are for the CLI's shape, not for quality.
            "--force",
        ])
        .args(SMALL));
    let version = stdout.lines().last().unwrap().trim().to_string();
    assert!(version.starts_with('v'), "{stdout}");
    assert!(reg.path().join(&version).join("manifest.json").is_file());
    assert!(stderr.contains("published"), "{stderr}");
    // The defaults the data chose, and the flags that won over them, are recorded.
    assert!(
        stderr.contains("defaults: leave-one-out preset"),
        "{stderr}"
    );
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(reg.path().join(&version).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["defaults"]["preset"], "leave-one-out");
    assert!(m["defaults"]["reason"].as_str().unwrap().contains("carved"));
    assert_eq!(
        m["defaults"]["overridden"],
        serde_json::json!(["--epochs", "--factors", "--layers"])
    );
    let hp = &m["hyperparameters"];
    assert_eq!(
        (hp["loss"].as_str(), hp["user_input"].as_str()),
        (Some("squared"), Some("history"))
    );
    assert_eq!(
        (hp["epochs"].as_u64(), hp["factors"].as_u64()),
        (Some(2), Some(8))
    );
    assert_eq!(hp["positive_weight"], 10.0);
    assert_eq!(m["onnx"]["user_vector"], "history");

    let (stdout, _) = run(bin()
        .args(["eval", "--json", "--data", "synthetic", "--model"])
        .arg(reg.path().join(&version))
        .args(SMALL));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(v["protocol"], "ncf");
    assert!(v["users"].as_u64().unwrap() > 250);
    for k in ["hr@10", "ndcg@10"] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}");
        assert!(v["popularity"][k].as_f64().is_some(), "popularity {k}");
    }

    // registry list / verify
    let (stdout, _) = run(bin()
        .args(["registry", "list", "--registry"])
        .arg(reg.path()));
    assert!(stdout.starts_with(&version));
    let (stdout, _) = run(bin()
        .args(["registry", "verify", "--registry"])
        .arg(reg.path())
        .arg(&version));
    // model, training history, the fold-in inputs and the neighbour lists.
    assert!(stdout.contains("4 files verified"), "{stdout}");
}

#[test]
fn full_ranking_protocol_json_for_lcfn_data() {
    // An LCFN-format split written from synthetic data.
    let w = shared::data::synthetic::generate(&shared::data::synthetic::SyntheticConfig {
        users: 200,
        items: 150,
        cold_start_users: 0,
        ..Default::default()
    });
    let data = tempfile::tempdir().unwrap();
    let hist = w.dataset.user_histories();
    let (mut train, mut test) = (String::new(), String::new());
    for (u, items) in hist.iter().enumerate() {
        let cut = items.len() * 4 / 5;
        let list = |s: &[u32]| s.iter().map(|i| format!(" {i}")).collect::<String>();
        train += &format!("{u}{}\n", list(&items[..cut]));
        test += &format!("{u}{}\n", list(&items[cut..]));
    }
    std::fs::write(data.path().join("train.txt"), train).unwrap();
    std::fs::write(data.path().join("test.txt"), test).unwrap();
    let reg = tempfile::tempdir().unwrap();
    let (stdout, _) = run(bin()
        .args([
            "train",
            "--quiet",
            "--epochs",
            "2",
            "--factors",
            "8",
            "--layers",
            "16,8",
            "--version",
            "lc",
            "--force",
            "--data",
        ])
        .arg(data.path())
        .arg("--registry")
        .arg(reg.path()));
    assert_eq!(stdout.lines().last(), Some("lc"));
    // Full-ranking test data: validation ranks among every unseen movie too.
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reg.path().join("lc/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["metrics"]["validation"]["protocol"], "full");
    assert_eq!(m["metrics"]["validation"]["users"], 200);
    let (stdout, _) = run(bin()
        .args(["eval", "--json", "--data"])
        .arg(data.path())
        .arg("--model")
        .arg(reg.path().join("lc")));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["protocol"], "full");
    assert_eq!(v["users"], 200);
    assert!(v["recall@20"].as_f64().unwrap() > 0.0);
    assert!(v["popularity"]["ndcg@20"].as_f64().is_some());
}

#[test]
fn clear_errors_for_bad_input() {
    let reg = tempfile::tempdir().unwrap();
    let missing = PathBuf::from("/nonexistent/data");
    let out = bin()
        .args(["train", "--data"])
        .arg(&missing)
        .arg("--registry")
        .arg(reg.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/data"), "{err}");

    let out = bin()
        .args(["eval", "--data", "synthetic", "--model"])
        .arg(reg.path().join("nope"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `movie-recs serve` on an empty data dir, as scripts use it: it trains a model
/// on synthetic data, publishes it, serves, and answers on the address it prints.
#[test]
fn serve_on_an_empty_dir_trains_then_serves() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut child = bin()
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(SMALL)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let mut guard = Kill(child);
    // Keep draining stderr for the server's whole life (a closed pipe would fail its logging).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said_training = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            said_training |= line.contains("training one on the built-in synthetic data");
            if let Some(a) = line.strip_prefix("listening on http://") {
                let _ = tx.send((a.trim().to_string(), said_training));
            }
        }
    });
    let (addr, said_training) = rx
        .recv_timeout(std::time::Duration::from_secs(600))
        .expect("server printed its address");
    assert!(said_training, "serve says it trains first");
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    let r = get("/recommend/1?k=3");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.to_ascii_lowercase().contains("x-request-id:"), "{r}");
    let body: serde_json::Value =
        serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 3);
    assert!(get("/healthz").starts_with("HTTP/1.1 200"));
    // One version in the registry, and the embedded database exists.
    assert_eq!(
        std::fs::read_dir(dir.path().join("registry"))
            .unwrap()
            .count(),
        1
    );
    assert!(dir.path().join("movie-recs.db").is_file());
    let _ = guard.0.kill();
    let _ = guard.0.wait();
}

/// `movie-recs rollout set|status|analyze|promote|changes` on a local data
/// folder (the environment names the registry, database and lake).
#[test]
fn rollout_commands_run_against_the_local_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry");
    for (v, seed) in [("a", "1"), ("b", "2")] {
        run(bin()
            .args(["train", "--data", "synthetic", "--registry"])
            .arg(&reg)
            .args([
                "--epochs",
                "1",
                "--factors",
                "4",
                "--layers",
                "8,4",
                "--quiet",
            ])
            .args(["--version", v, "--seed", seed, "--force"])
            .args(SMALL));
    }
    let cli = |args: &[&str]| {
        let mut c = bin();
        c.env("MOVIE_RECS_REGISTRY", &reg)
            .env("MOVIE_RECS_DB", dir.path().join("m.db"))
            .env("MOVIE_RECS_LAKE", dir.path().join("lake"))
            .env("MOVIE_RECS_METRICS", dir.path().join("metrics.jsonl"))
            .args(["rollout"])
            .args(args);
        c
    };
    // Nothing rolled out yet: analyze says so and fails.
    let out = cli(&["analyze"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no rollout state"));

    let (stdout, _) = run(&mut cli(&[
        "set",
        "--strategy",
        "canary",
        "--primary",
        "a",
        "--candidate",
        "b",
        "--percentage",
        "5",
    ]));
    let s: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s["strategy"], "canary");
    let (stdout, stderr) = run(&mut cli(&["analyze", "--window-minutes", "30"]));
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["experiment_id"], s["experiment_id"]);
    assert_eq!(r["action"], "wait");
    assert_eq!(r["arms"]["candidate"]["requests"], 0);
    assert!(stderr.contains("action: wait"), "{stderr}");
    let (stdout, stderr) = run(&mut cli(&["promote", "--dry-run"]));
    let p: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (p["dry_run"].as_bool(), p["applied"].as_bool()),
        (Some(true), Some(false))
    );
    assert!(stderr.contains("dry run"), "{stderr}");
    // A run (not dry) that has nothing to change still publishes its metrics.
    run(&mut cli(&["promote", "--by", "ops"]));
    let m = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert!(m.contains("CanaryRollback"), "{m}");
    let (stdout, _) = run(&mut cli(&["changes", "--limit", "5"]));
    let c: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(c.as_array().unwrap().len(), 1);
}

/// `movie-recs tradeoff`: one row per policy, JSON or a Markdown section
/// spliced into --out (replaced, not repeated, on a re-run).
#[test]
fn tradeoff_compares_policies_into_a_markdown_section() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry");
    run(bin()
        .args(["train", "--data", "synthetic", "--registry"])
        .arg(&reg)
        .args([
            "--epochs",
            "1",
            "--factors",
            "4",
            "--layers",
            "8,4",
            "--quiet",
            "--version",
            "t",
            "--force",
        ])
        .args(SMALL));
    let model = format!("{}/t", reg.display());
    let (stdout, _) = run(bin()
        .args([
            "tradeoff",
            "--json",
            "--model",
            &model,
            "--data",
            "synthetic",
        ])
        .args(["--policies", "none;slots:slots=10;explore:weight=0.5"])
        .args(SMALL));
    let t: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(t["protocol"], "ncf");
    let rows = t["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["policy"].as_str().unwrap()).collect();
    assert_eq!(names, ["none", "slots:slots=10", "explore:weight=0.5"]);
    assert_eq!(rows[0]["accuracy"][0][0], "hr@10");
    assert_eq!(rows[0]["fairness"]["lists"], t["users"]);
    // Heavy exploration spreads exposure over the catalogue.
    let cov = |r: &serde_json::Value| r["fairness"]["catalog_coverage"].as_f64().unwrap();
    assert!(cov(&rows[2]) > cov(&rows[0]), "{rows:?}");
    let out = dir.path().join("t.md");
    std::fs::write(&out, "# Trade-offs\n").unwrap();
    for _ in 0..2 {
        run(bin()
            .args([
                "tradeoff",
                "--model",
                &model,
                "--data",
                "synthetic",
                "--policies",
                "none",
                "--title",
                "Small run",
                "--out",
            ])
            .arg(&out)
            .args(SMALL));
    }
    let md = std::fs::read_to_string(&out).unwrap();
    assert!(md.starts_with("# Trade-offs\n"));
    assert_eq!(md.matches("<!-- tradeoff:small-run -->").count(), 1, "{md}");
    assert!(md.contains("| `none` |"), "{md}");
    let bad = bin()
        .args([
            "tradeoff",
            "--model",
            &model,
            "--data",
            "synthetic",
            "--policies",
            "best",
        ])
        .args(SMALL)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("policy must be one of"));
}

#[test]
fn simulate_writes_the_report_files_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let (stdout, stderr) = run(bin()
        .args([
            "simulate",
            "--users",
            "120",
            "--items",
            "100",
            "--rounds",
            "2",
            "--epochs",
            "1",
            "--policies",
            "none;explore:weight=0.5",
            "--no-attack",
            "--json",
            "--out",
        ])
        .arg(&out));
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let t = r["trajectories"].as_array().unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[1]["policy"], "explore:weight=0.5");
    assert_eq!(t[0]["rounds"].as_array().unwrap().len(), 2);
    assert!(r["attack"].is_null());
    assert!(stderr.contains("none: HR@10"), "{stderr}");
    for f in [
        "simulation.json",
        "simulation.md",
        "gini_catalog.svg",
        "starvation_index.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} written");
    }
    assert!(!out.join("attack.svg").exists());
    assert!(!out.join("work").exists(), "the runs' folders are removed");
    let md = std::fs::read_to_string(out.join("simulation.md")).unwrap();
    assert!(
        md.contains("Written by `movie-recs simulate --users 120"),
        "{md}"
    );
    assert!(
        md.contains(r#"--policies "none;explore:weight=0.5""#),
        "quoted for a shell: {md}"
    );

    // A `work` folder that is not the simulator's is refused and left alone.
    let foreign = dir.path().join("mine");
    std::fs::create_dir_all(foreign.join("work")).unwrap();
    std::fs::write(foreign.join("work/notes.txt"), "keep").unwrap();
    let refused = bin()
        .args(["simulate", "--users", "120", "--items", "100", "--out"])
        .arg(&foreign)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a simulation's work folder"));
    assert_eq!(
        std::fs::read_to_string(foreign.join("work/notes.txt")).unwrap(),
        "keep"
    );

    let bad = bin()
        .args(["simulate", "--policies", "fair", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("policy \"fair\""));
}
