//! Every fuzz corpus entry and every crash input the fuzzers found
//! (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through the same
//! target bodies on stable: a decoder that panics again fails `make test`.

use std::path::Path;

#[test]
fn every_corpus_entry_and_crash_input_decodes_without_panicking() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut ran = 0;
    for (target, body) in shared::fuzzing::TARGETS {
        let mut inputs = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.file_name().is_some_and(|n| n == ".keep") {
                    continue;
                }
                let data = std::fs::read(&p).unwrap();
                let done = std::panic::catch_unwind(|| body(&data));
                assert!(done.is_ok(), "{target} panicked on {}", p.display());
                inputs += 1;
            }
        }
        assert!(inputs > 0, "fuzz/corpus/{target} has no seeds");
        ran += inputs;
    }
    eprintln!("{ran} fuzz inputs decoded");
}
