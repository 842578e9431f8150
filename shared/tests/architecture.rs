//! The layering rules of docs/codebase.md, checked on the source of
//! `shared`: `domain` does no I/O and names no I/O crate, only `adapters`
//! and `wiring` name an adapter, and the top-level modules form no cycle.
//! Test code (`tests.rs` files and `#[cfg(test)]` tails) and comments are
//! left out: tests may build local adapters directly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `(path relative to src, production code without comments)` of every file.
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let src = std::fs::read_to_string(&path).unwrap();
                out.push((rel, production_code(&src)));
            }
        }
    }
    out.sort();
    out
}

/// The code without test modules (an out-of-line `#[cfg(test)] mod x;`
/// wherever it is, an inline one to the end of the file) and without `//`
/// comments.
fn production_code(src: &str) -> String {
    let mut out = Vec::new();
    let mut lines = src.lines().peekable();
    while let Some(l) = lines.next() {
        if l.trim() == "#[cfg(test)]" {
            match lines.peek() {
                Some(next)
                    if next.trim_start().starts_with("mod ") && next.trim_end().ends_with(';') =>
                {
                    lines.next();
                    continue;
                }
                _ => break,
            }
        }
        out.push(match l.find("//") {
            // A comment starts the line, or follows code after a space
            // (`s3://` inside a string does neither).
            Some(i) if l[..i].trim().is_empty() || l[..i].ends_with(' ') => &l[..i],
            _ => l,
        });
    }
    out.join("\n")
}

/// The top-level module a file belongs to (`audit/job.rs` → `audit`).
fn top(rel: &str) -> &str {
    let first = rel.split('/').next().unwrap_or(rel);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// Top-level module → the other top-level modules its code names (`crate::x`).
fn module_graph(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, code) in files {
        let from = top(rel);
        for part in code.split("crate::").skip(1) {
            let to: String = part
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !to.is_empty() && to != from {
                g.entry(from.to_string()).or_default().insert(to);
            }
        }
    }
    g
}

/// Every edge `a → b` of `g` from which `a` can be reached again.
fn cycle_edges(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<(String, String)> {
    let reaches = |from: &str, target: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(x) = stack.pop() {
            if x == target {
                return true;
            }
            if seen.insert(x.clone()) {
                stack.extend(g.get(&x).into_iter().flatten().cloned());
            }
        }
        false
    };
    g.iter()
        .flat_map(|(a, bs)| bs.iter().map(move |b| (a.clone(), b.clone())))
        .filter(|(a, b)| reaches(b, a))
        .collect()
}

#[test]
fn the_top_level_modules_form_no_cycle() {
    let g = module_graph(&sources());
    assert!(g.contains_key("http") && g.contains_key("wiring"), "{g:?}");
    let cycles = cycle_edges(&g);
    assert!(
        cycles.is_empty(),
        "edges on a cycle: {cycles:?}\ngraph: {g:#?}"
    );
}

#[test]
fn the_cycle_check_finds_a_cycle_and_passes_a_chain() {
    let files = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(r, c)| (r.to_string(), production_code(c)))
            .collect()
    };
    let chain = files(&[
        ("a/mod.rs", "use crate::b::X;"),
        ("b.rs", "use crate::c::Y; // crate::a in a comment"),
        ("c.rs", "#[cfg(test)]\nmod t { use crate::a; }"),
    ]);
    assert!(cycle_edges(&module_graph(&chain)).is_empty());
    // Code after an out-of-line test module is still read.
    let after = files(&[
        ("a/mod.rs", "#[cfg(test)]\nmod tests;\nuse crate::b::X;"),
        ("b.rs", "fn f() { crate::a::g() }"),
    ]);
    assert_eq!(cycle_edges(&module_graph(&after)).len(), 2);
    let cycle = files(&[
        ("a/mod.rs", "use crate::b::X;"),
        ("b.rs", "fn f() { crate::a::g() }"),
    ]);
    assert_eq!(
        cycle_edges(&module_graph(&cycle)),
        [("a".into(), "b".into()), ("b".into(), "a".into())]
    );
}

#[test]
fn domain_does_no_io() {
    const IO: [&str; 18] = [
        "std::fs",
        "std::net",
        "std::io",
        "tokio::",
        "aws_config",
        "aws_sdk",
        "aws_lambda_events",
        "lambda_runtime",
        "lambda_http",
        "axum::",
        "hyper::",
        "rusqlite::",
        "parquet::",
        "arrow_array",
        "arrow_schema",
        "apache_avro",
        "crate::adapters",
        "crate::http",
    ];
    let files = sources();
    let domain: Vec<_> = files.iter().filter(|(r, _)| top(r) == "domain").collect();
    assert!(domain.len() > 5, "domain files: {}", domain.len());
    for (rel, code) in domain {
        for name in IO {
            assert!(!code.contains(name), "{rel} names {name}");
        }
    }
}

#[test]
fn only_adapters_and_wiring_name_an_adapter() {
    for (rel, code) in sources() {
        if matches!(top(&rel), "adapters" | "wiring" | "lib") {
            continue;
        }
        assert!(
            !code.contains("crate::adapters") && !code.contains("super::adapters"),
            "{rel} names an adapter: hold the port instead and let wiring choose"
        );
    }
}
