//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/*`)
//! through the same checks the cargo-fuzz targets run, on stable Rust and
//! without libFuzzer, so `cargo test` covers the corpora and the crashes
//! kept in them (STYLE.md §7.3). Fuzzing itself: `scripts/fuzz-smoke`.

#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

#[test]
fn every_corpus_file_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut total = 0;
    for (name, check) in checks::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (every target has a seed corpus)", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} has no seeds", dir.display());
        for f in files {
            let data = std::fs::read(&f).expect("a corpus file");
            if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
                panic!("{} fails {name}: {e:?}", f.display());
            }
            total += 1;
        }
    }
    assert!(total >= checks::TARGETS.len());
}

#[test]
fn every_fuzz_target_is_listed() {
    // A target in fuzz/Cargo.toml missing from TARGETS would never be
    // replayed; one in TARGETS without a [[bin]] would never be fuzzed.
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/Cargo.toml"))
            .expect("fuzz/Cargo.toml");
    let bins: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "postwerk-fuzz")
        .collect();
    let mut listed: Vec<&str> = checks::TARGETS.iter().map(|(n, _)| *n).collect();
    let mut bins_sorted = bins.clone();
    listed.sort_unstable();
    bins_sorted.sort_unstable();
    assert_eq!(listed, bins_sorted);
}
