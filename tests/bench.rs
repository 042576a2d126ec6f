//! `vhdkit bench` through the real binary, on small disks: the report has
//! its shape and every stage ran (or says why not). Speed is not checked.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn bench(dir: &Path, extra: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_vhdkit"))
        .arg("bench")
        .args(["--json", "--dir"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("run vhdkit bench");
    assert!(
        out.status.success(),
        "vhdkit bench {extra:?} failed ({:?}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("bench --json prints JSON")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

const STAGES: [&str; 12] = [
    "info",
    "checksum md5",
    "checksum sha512",
    "checksum crc32",
    "checksum all",
    "convert dynamic",
    "check",
    "convert fixed",
    "convert raw",
    "convert dynamic->raw",
    "compact",
    "expand 2x",
];

/// Every stage is present once; all ran but expand, which runs or says why not.
fn assert_stages(run: &Value, size: u64) {
    assert_eq!(run["input"]["virtual_size_bytes"], size);
    assert_eq!(run["input"]["kind"], "raw");
    let g = &run["generated"];
    assert_eq!(g["size_bytes"], size);
    assert!(g["write_gbps"].as_f64().unwrap() > 0.0);
    let stages = run["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, STAGES);
    for s in stages {
        let name = s["name"].as_str().unwrap();
        match s["status"].as_str().unwrap() {
            "ok" => {
                assert!(s["wall_seconds"].as_f64().unwrap() > 0.0, "{name}");
                assert!(s["max_rss_bytes"].as_u64().unwrap() > 0, "{name}");
                assert!(s["cpu_seconds"].as_f64().is_some(), "{name}");
                assert!(s["virtual_gbps"].as_f64().unwrap() > 0.0, "{name}");
                assert!(s["allocated_gbps"].as_f64().is_some(), "{name}");
                assert_eq!(s["argv"][1], name.split(' ').next().unwrap(), "{name}");
            }
            "skipped" if name == "expand 2x" => {
                assert!(!s["reason"].as_str().unwrap().is_empty());
            }
            other => panic!("stage {name}: {other}: {}", s["reason"]),
        }
    }
}

#[test]
fn bench_json_runs_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let r = bench(dir.path(), &["--size", "64M", "--allocated", "30%"]);
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_stages(&runs[0], 64 << 20);
    let g = &runs[0]["generated"];
    assert_eq!(g["blocks"], 32);
    assert_eq!(g["allocated_blocks"], 10);
    assert_eq!(g["written_bytes"], 10u64 << 21);
    assert!(runs[0]["comparisons"].as_array().unwrap().is_empty());
    assert!(r.get("growth").is_none());
    // The work folder is removed unless --keep.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bench_sweep_reports_growth() {
    let dir = tempfile::tempdir().unwrap();
    let r = bench(dir.path(), &["--sweep", "16M,32M", "--data", "text"]);
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_stages(&runs[0], 16 << 20);
    assert_stages(&runs[1], 32 << 20);
    let growth = r["growth"].as_array().unwrap();
    assert_eq!(growth.len(), STAGES.len());
    for g in growth {
        assert_eq!(g["wall_seconds"].as_array().unwrap().len(), 2);
        assert_eq!(g["seconds_per_allocated_gb"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn bench_keep_leaves_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let r = bench(
        dir.path(),
        &[
            "--size",
            "8M",
            "--allocated",
            "100%",
            "--data",
            "zeros",
            "--keep",
        ],
    );
    let disk = r["runs"][0]["input"]["path"].as_str().unwrap();
    let meta = std::fs::metadata(disk).expect("the kept disk");
    assert_eq!(meta.len(), 8 << 20);
    // Zeros were written, so they are allocated, not holes.
    assert!(r["runs"][0]["input"]["allocated_bytes"].as_u64().unwrap() >= 8 << 20);
    // ... and every block reads as zero: the dynamic output stores none.
    assert_stages(&r["runs"][0], 8 << 20);
}

#[test]
fn bench_an_image_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("given.raw");
    let f = std::fs::File::create(&raw).unwrap();
    f.set_len(4 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0x5a; 4096], 1 << 20).unwrap();
    drop(f);
    let before = std::fs::read(&raw).unwrap();
    let r = bench(dir.path(), &["--image", raw.to_str().unwrap()]);
    let run = &r["runs"][0];
    assert_eq!(run["input"]["path"], raw.to_str().unwrap());
    assert!(run["generated"].is_null());
    assert_eq!(std::fs::read(&raw).unwrap(), before);
    for s in run["stages"].as_array().unwrap() {
        assert_ne!(s["status"], "failed", "{s}");
    }
}

#[test]
fn bench_compare_measures_each_pair() {
    if !have("qemu-img") || !have("md5sum") || !have("sha512sum") {
        eprintln!("qemu-img, md5sum or sha512sum missing: skipping bench --compare");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = bench(dir.path(), &["--size", "16M", "--compare", "--reps", "2"]);
    let cmp = r["runs"][0]["comparisons"].as_array().unwrap();
    let pairs: Vec<&str> = cmp.iter().map(|c| c["pair"].as_str().unwrap()).collect();
    for want in [
        "convert raw -> dynamic vs qemu-img (peer as is)",
        "convert raw -> dynamic vs qemu-img (peer + sync OUT)",
        "convert dynamic -> raw vs qemu-img (peer as is)",
        "convert -> dynamic --checksum md5,sha512 vs md5sum of the output",
        "checksum md5,sha512 vs md5sum then sha512sum",
    ] {
        assert!(pairs.contains(&want), "{want} missing from {pairs:?}");
    }
    for c in cmp {
        assert!(c["error"].is_null(), "{c}");
        assert_eq!(c["reps"], 2);
        assert_eq!(c["vhdkit_runs_seconds"].as_array().unwrap().len(), 2);
        assert_eq!(c["peer_runs_seconds"].as_array().unwrap().len(), 2);
        let (v, p) = (
            c["vhdkit_seconds"].as_f64().unwrap(),
            c["peer_seconds"].as_f64().unwrap(),
        );
        assert!(v > 0.0 && p > 0.0, "{c}");
        assert!((c["ratio"].as_f64().unwrap() - v / p).abs() < 1e-9);
    }
    // The peers' outputs are cleaned up with the work folder.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
