//! Embeds the git commit into the binary so manifests and provenance can name it.
use std::process::Command;

fn main() {
    let sha = std::env::var("MOVIE_RECS_GIT_SHA").ok().or_else(|| {
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    });
    println!(
        "cargo:rustc-env=MOVIE_RECS_GIT_SHA={}",
        sha.unwrap_or_else(|| "unknown".into())
    );
    println!("cargo:rerun-if-env-changed=MOVIE_RECS_GIT_SHA");
    for p in ["../.git/HEAD", "../.git/refs/heads", "../.git/packed-refs"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
