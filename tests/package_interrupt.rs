//! `preflight --target xenserver --package` stops on SIGTERM in every long
//! phase (checking, packing): exit 130, no package at OUT, no temporary
//! file or unpack folder left, the input unchanged.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vhdkit")
}

/// What vhdkit may have left in `dir` (temporary outputs, unpack folders).
fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.ends_with(".vhdkit-tmp"))
        .collect()
}

/// Runs `args`, sends SIGTERM once `ready` says so (polled every
/// millisecond, for at most 20 s), and returns the exit code.
fn terminate(args: &[&str], ready: &dyn Fn() -> bool) -> Option<i32> {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !ready() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(1));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "SIGTERM ignored");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A 384 MiB fixed VHD of patterned data named `name` in `dir` (made by
/// `vhdkit convert`; large enough that each phase takes a while).
fn fixed_vhd(dir: &Path, name: &str, seed: u8) -> std::path::PathBuf {
    let raw = dir.join("in.raw");
    fs::write(&raw, pattern(seed, 384 << 20)).unwrap();
    let vhd = dir.join(name);
    let r = vhdkit(&[
        "convert".as_ref(),
        raw.as_os_str(),
        vhd.as_os_str(),
        "--to".as_ref(),
        "fixed".as_ref(),
        "-q".as_ref(),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    fs::remove_file(&raw).unwrap();
    vhd
}

#[test]
fn sigterm_stops_packing_and_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let vhd = fixed_vhd(t.path(), "disk.vhd", 3);
    let before = fs::read(&vhd).unwrap();
    let tgz = t.path().join("out.tgz");
    let packing = || {
        fs::read_dir(t.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".vhdkit-tmp"))
    };
    // A moment after the start (the signal handlers are installed first
    // thing), while the link is being read and digested.
    let t0 = Instant::now();
    let checking = move || t0.elapsed() > Duration::from_millis(200);
    let phases: [(&str, &dyn Fn() -> bool); 2] = [("checking", &checking), ("packing", &packing)];
    for (phase, ready) in phases {
        let code = terminate(
            &[
                "preflight",
                vhd.to_str().unwrap(),
                "--target",
                "xenserver",
                "--package",
                tgz.to_str().unwrap(),
                "-q",
            ],
            ready,
        );
        assert_eq!(code, Some(130), "SIGTERM while {phase}");
        assert!(!tgz.exists(), "a package was written after SIGTERM");
        assert_eq!(leftovers(t.path()), Vec::<String>::new());
    }
    assert!(fs::read(&vhd).unwrap() == before, "the input changed");
}

#[test]
fn sigterm_stops_unpacking_a_tarball() {
    let t = tempfile::tempdir().unwrap();
    let vhd = fixed_vhd(t.path(), "0.vhd", 5);
    let tgz = t.path().join("chain.tgz");
    let made = Command::new("tar")
        .args([
            "czf",
            tgz.to_str().unwrap(),
            "-C",
            t.path().to_str().unwrap(),
            "0.vhd",
        ])
        .status()
        .unwrap();
    assert!(made.success());
    fs::remove_file(&vhd).unwrap();
    let code = terminate(
        &[
            "preflight",
            tgz.to_str().unwrap(),
            "--target",
            "xenserver",
            "-q",
        ],
        // The unpack folder exists: the links are being unpacked.
        &|| !leftovers(t.path()).is_empty(),
    );
    assert_eq!(code, Some(130));
    assert_eq!(leftovers(t.path()), Vec::<String>::new());
}
