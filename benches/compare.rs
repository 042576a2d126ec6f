//! Whole commands, vhdkit against its peers, side by side in one run:
//! `cargo bench --bench compare`.
//!
//! Builds two raw disks in a temporary folder (in `$VHDKIT_BENCH_DIR`, else
//! the current directory, which is the package root under `cargo bench`):
//! a sparse one (4 GiB, 30 % of its 2 MiB blocks random data at seeded
//! places, the rest holes) and a dense one (2 GiB, every block data). On
//! each, runs the pairs of [`vhdkit::commands::bench::peers::standard_pairs`]
//! (convert both ways against `qemu-img`, digests against `md5sum` and
//! `sha512sum`, a sparse copy against `cp`), alternating vhdkit and peer
//! runs, with an untimed `sync` before each, and compares medians. Prints a
//! Markdown table, a peak-memory table and one JSON line.
//!
//! Environment:
//! - `VHDKIT_BENCH_SPARSE`, `VHDKIT_BENCH_DENSE`: disk sizes (`4G`, `64M`;
//!   `0` leaves that disk out);
//! - `VHDKIT_BENCH_REPS`: runs per side (default 3, median taken);
//! - `VHDKIT_BENCH_DIR`: where the temporary folder goes;
//! - `VHDKIT_BENCH_BIN`: the binary under test (default: the `vhdkit` Cargo
//!   built for this bench, `CARGO_BIN_EXE_vhdkit`, which `cargo bench`
//!   builds with the bench profile, i.e. optimized like release).
//!
//! Peak memory of every run comes from `wait4` on that child (see
//! `vhdkit::commands::bench::measure`), so `/usr/bin/time` is not needed.

use std::path::{Path, PathBuf};

use vhdkit::commands::bench::generate::{
    generate, DataKind, GenerateOptions, Generated, DEFAULT_SEED,
};
use vhdkit::commands::bench::peers::{self, Comparison, MAX_RSS_BYTES};
use vhdkit::commands::bench::{comparison_table, Quiet};

fn env_size(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => vhdkit::writer::parse_size(&v).unwrap_or_else(|e| panic!("{name}: {e}")),
        Err(_) => default,
    }
}

fn binary() -> PathBuf {
    std::env::var_os("VHDKIT_BENCH_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_vhdkit")),
        PathBuf::from,
    )
}

#[derive(serde::Serialize)]
struct Input {
    label: &'static str,
    generated: Generated,
}

#[derive(serde::Serialize)]
struct Memory {
    pair: String,
    run: String,
    vhdkit_max_rss_bytes: u64,
    max_rss_bytes: u64,
    met: bool,
}

#[derive(serde::Serialize)]
struct Summary<'a> {
    bench: &'static str,
    vhdkit: &'a Path,
    reps: usize,
    inputs: &'a [Input],
    comparisons: &'a [Comparison],
    memory: &'a [Memory],
}

fn main() {
    // `cargo bench` passes `--bench` (and any filter); this runner takes none.
    let vhdkit = binary();
    assert!(
        vhdkit.is_file(),
        "{}: no such binary (set VHDKIT_BENCH_BIN)",
        vhdkit.display()
    );
    let reps = std::env::var("VHDKIT_BENCH_REPS")
        .ok()
        .map_or(3, |v| v.parse().expect("VHDKIT_BENCH_REPS: a number"));
    let base = std::env::var_os("VHDKIT_BENCH_DIR").map_or_else(
        || std::env::current_dir().expect("current directory"),
        PathBuf::from,
    );
    let work = tempfile::Builder::new()
        .prefix(".vhdkit-bench-")
        .tempdir_in(&base)
        .expect("temporary folder");
    let disks = [
        ("sparse", env_size("VHDKIT_BENCH_SPARSE", 4 << 30), 0.3),
        ("dense", env_size("VHDKIT_BENCH_DENSE", 2 << 30), 1.0),
    ];
    eprintln!(
        "vhdkit: {}; {reps} run(s) per side; work folder {}",
        vhdkit.display(),
        work.path().display()
    );
    let mut inputs = Vec::new();
    let mut comparisons = Vec::new();
    for (label, size, share) in disks {
        if size == 0 {
            continue;
        }
        let raw = work.path().join(format!("{label}.raw"));
        let g = generate(
            &raw,
            &GenerateOptions {
                size_bytes: size,
                allocated: share,
                data: DataKind::Random,
                block_size_bytes: 2 << 20,
                seed: DEFAULT_SEED,
            },
        )
        .expect("generate");
        eprintln!(
            "{label}: {size} bytes, {} of {} blocks data, generated at {:.2} GB/s",
            g.allocated_blocks, g.blocks, g.write_gbps
        );
        // The dynamic VHD the dynamic -> raw pair reads (made untimed).
        let dynamic = work.path().join(format!("{label}.vhd"));
        vhdkit::commands::convert::convert(
            &raw,
            &dynamic,
            &Default::default(),
            &vhdkit::pipeline::NoProgress,
        )
        .expect("convert to dynamic");
        let pairs = peers::standard_pairs(&peers::Inputs {
            vhdkit: &vhdkit,
            input: &raw,
            input_is_raw: true,
            dynamic: Some(&dynamic),
            dir: work.path(),
            label,
        });
        for pair in &pairs {
            eprintln!("  {}", pair.name);
            comparisons.extend(peers::compare(pair, reps, &Quiet));
        }
        let _ = std::fs::remove_file(&raw);
        let _ = std::fs::remove_file(&dynamic);
        inputs.push(Input {
            label,
            generated: g,
        });
    }

    let mut memory: Vec<Memory> = Vec::new();
    for c in &comparisons {
        if c.error.is_some() || memory.iter().any(|m| m.run == c.vhdkit_command) {
            continue;
        }
        memory.push(Memory {
            pair: c.pair.split(" (peer").next().unwrap_or(&c.pair).to_string(),
            run: c.vhdkit_command.clone(),
            vhdkit_max_rss_bytes: c.vhdkit_max_rss_bytes,
            max_rss_bytes: MAX_RSS_BYTES,
            met: c.vhdkit_max_rss_bytes <= MAX_RSS_BYTES,
        });
    }

    println!("{}", comparison_table(&comparisons));
    println!("| vhdkit run (of pair) | peak RSS MiB | target | met? |\n|---|---:|---|---|");
    for m in &memory {
        // Display only.
        #[allow(clippy::cast_precision_loss)]
        let mib = m.vhdkit_max_rss_bytes as f64 / f64::from(1u32 << 20);
        println!(
            "| {} | {mib:.1} | ≤ 64 MiB | {} |",
            m.pair,
            if m.met { "yes" } else { "no" }
        );
    }
    println!();
    let summary = Summary {
        bench: "compare",
        vhdkit: &vhdkit,
        reps,
        inputs: &inputs,
        comparisons: &comparisons,
        memory: &memory,
    };
    println!(
        "{}",
        serde_json::to_string(&summary).expect("serialize summary")
    );
}
