//! Replays the fuzz regression corpus on stable Rust: every file under
//! `fuzz/regressions/<target>/` goes through the same body the fuzz target
//! `<target>` runs (`fuzz/src/lib.rs`, included here), with the same
//! invariants: no panic, no allocation larger than the input allows, `check`
//! never ok on what `info` cannot open, convert round trips read back equal.

#[path = "../fuzz/src/lib.rs"]
mod fuzz_bodies;

use std::path::Path;

#[test]
fn every_regression_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = 0;
    for target in fuzz_bodies::TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        let mut files: Vec<_> = entries.map(|e| e.expect("dir entry").path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).expect("read a regression input");
            eprintln!("{target}: {}", file.display());
            fuzz_bodies::run(target, &data);
            replayed += 1;
        }
    }
    fuzz_bodies::remove_scratch();
    assert!(
        replayed > 0,
        "no regression inputs under {}",
        root.display()
    );
}
