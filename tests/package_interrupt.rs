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

/// Runs `args`, sends SIGTERM after `after`, and returns the exit code.
fn terminate(args: &[&str], after: Duration) -> Option<i32> {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
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

#[test]
fn sigterm_stops_packing_and_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let raw = t.path().join("in.raw");
    fs::write(&raw, pattern(3, 384 << 20)).unwrap();
    let vhd = t.path().join("disk.vhd");
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
    let before = fs::read(&vhd).unwrap();
    let tgz = t.path().join("out.tgz");
    for after_ms in [300, 1500] {
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
            Duration::from_millis(after_ms),
        );
        assert_eq!(code, Some(130), "after {after_ms} ms");
        assert!(!tgz.exists(), "a package was written after SIGTERM");
        assert_eq!(leftovers(t.path()), Vec::<String>::new());
    }
    assert!(fs::read(&vhd).unwrap() == before, "the input changed");
}

#[test]
fn sigterm_stops_unpacking_a_tarball() {
    let t = tempfile::tempdir().unwrap();
    let raw = t.path().join("in.raw");
    fs::write(&raw, pattern(5, 384 << 20)).unwrap();
    let vhd = t.path().join("0.vhd");
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
        Duration::from_millis(400),
    );
    assert_eq!(code, Some(130));
    assert_eq!(leftovers(t.path()), Vec::<String>::new());
}
