//! qemu-img as the oracle: VHDs it creates and converts (made by
//! `testdata/make-qemu-fixtures.sh`) check clean, report the size qemu
//! reports, and read, through the library, byte for byte what
//! `qemu-img convert -O raw` reads. Skipped with a note without qemu-img.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn have_qemu_img() -> bool {
    Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the fixture script into `dir`; returns the VHDs it made.
fn make_fixtures(dir: &Path) -> Vec<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/make-qemu-fixtures.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .output()
        .expect("run make-qemu-fixtures.sh");
    assert!(
        out.status.success(),
        "make-qemu-fixtures.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|name| dir.join(name))
        .collect()
}

/// `qemu-img info -f vpc --output=json`'s virtual size (always `-f vpc`:
/// qemu probes a fixed VHD as raw).
fn qemu_virtual_size(path: &Path) -> u64 {
    let out = Command::new("qemu-img")
        .args(["info", "-f", "vpc", "--output=json"])
        .arg(path)
        .output()
        .expect("qemu-img info");
    assert!(out.status.success(), "qemu-img info {}", path.display());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("qemu-img json");
    v["virtual-size"].as_u64().expect("virtual-size")
}

fn qemu_to_raw(path: &Path) -> PathBuf {
    let raw = path.with_extension("qemu.raw");
    let status = Command::new("qemu-img")
        .args(["convert", "-f", "vpc", "-O", "raw"])
        .arg(path)
        .arg(&raw)
        .status()
        .expect("qemu-img convert");
    assert!(status.success(), "qemu-img convert {}", path.display());
    raw
}

/// Reads `path` through `vhdkit::disk::open` and compares it with `raw`.
fn assert_same_data(path: &Path, raw: &Path) {
    let disk = vhdkit::disk::open(path).expect("open");
    let mut file = std::fs::File::open(raw).unwrap();
    let raw_len = file.metadata().unwrap().len();
    assert_eq!(disk.size_bytes(), raw_len, "{}: size", path.display());
    const CHUNK: u64 = 4 << 20;
    let mut ours = vec![0u8; CHUNK as usize];
    let mut theirs = vec![0u8; CHUNK as usize];
    let mut at = 0;
    while at < raw_len {
        let n = CHUNK.min(raw_len - at) as usize;
        disk.read_at(at, &mut ours[..n]).expect("read_at");
        file.read_exact(&mut theirs[..n]).unwrap();
        if ours[..n] != theirs[..n] {
            let i = ours[..n]
                .iter()
                .zip(&theirs[..n])
                .position(|(a, b)| a != b)
                .unwrap();
            panic!(
                "{}: data differs from qemu's at byte {:#x}",
                path.display(),
                at + i as u64
            );
        }
        at += n as u64;
    }
}

/// One test for both uses of the fixtures, so that they are made once.
#[test]
fn qemu_made_images() {
    if !have_qemu_img() {
        eprintln!("note: qemu-img not found; qemu interop test skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let images = make_fixtures(dir.path());
    assert!(images.len() >= 15, "{images:?}");
    check_size_and_read_alike(&images);
    converted_images_hold_the_raw_data(dir.path(), &images);
}

/// Each checks clean, reports qemu's size, and reads what qemu reads.
fn check_size_and_read_alike(images: &[PathBuf]) {
    for path in images {
        let name = path.file_name().unwrap().to_string_lossy();
        let (run, json) = check_json(path);
        assert_eq!(run.code, 0, "{name}: {}", run.stdout);
        assert_eq!(json["ok"], true, "{name}");

        let run = vhdkit(&["info".as_ref(), "--json".as_ref(), path.as_os_str()]);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        let info: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let qemu = qemu_virtual_size(path);
        assert_eq!(info["sizes"]["qemu"], qemu, "{name}: sizes.qemu");
        if info["sizes"]["qemu_rule"] == "current_size" {
            assert_eq!(info["virtual_size"], qemu, "{name}: virtual_size");
        } else {
            assert_eq!(info["chs_size"], qemu, "{name}: chs_size");
        }
        if name.contains("force") {
            assert_eq!(info["sizes"]["qemu_rule"], "current_size", "{name}");
        }

        let raw = qemu_to_raw(path);
        assert_same_data(path, &raw);
        std::fs::remove_file(raw).unwrap();
    }
}

/// The `convert-*` images read as `data.raw`, then zeros.
fn converted_images_hold_the_raw_data(dir: &Path, images: &[PathBuf]) {
    let source = std::fs::read(dir.join("data.raw")).unwrap();
    assert!(source.iter().any(|&b| b != 0));
    for path in images.iter().filter(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("convert-"))
    }) {
        let disk = vhdkit::disk::open(path).expect("open");
        assert!(
            disk.size_bytes() >= source.len() as u64,
            "{}",
            path.display()
        );
        let mut buf = vec![0u8; source.len()];
        disk.read_at(0, &mut buf).unwrap();
        assert!(
            buf == source,
            "{}: data differs from data.raw",
            path.display()
        );
        // Past the raw data (qemu's rounding up to a CHS size) reads as zero.
        let rest = disk.size_bytes() - source.len() as u64;
        let mut tail = vec![0xffu8; rest as usize];
        disk.read_at(source.len() as u64, &mut tail).unwrap();
        assert!(tail.iter().all(|&b| b == 0), "{}", path.display());
    }
}

/// Images made by the test builder, read by qemu: the size qemu reports is
/// the one `info` predicts for every creator, and qemu reads the same data
/// (as far as its size goes: it reads by C×H×S for `vpc `/`qemu`).
#[test]
fn builder_images_read_alike_in_qemu() {
    if !have_qemu_img() {
        eprintln!("note: qemu-img not found; qemu interop test skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut images = Vec::new();
    for creator in ["win", "qemu", "qem2", "vpc", "tap", "vbox"] {
        let img = golden_dynamic().creator(creator).build();
        images.push(img.write(dir.path(), &format!("dyn-{creator}.vhd")));
        let img = golden_fixed().creator(creator).build();
        images.push(img.write(dir.path(), &format!("fixed-{creator}.vhd")));
    }
    let img = golden_dynamic().with_batmap().build();
    images.push(img.write(dir.path(), "batmap.vhd"));
    for path in &images {
        let name = path.file_name().unwrap().to_string_lossy();
        let info = vhdkit::commands::info::info(path).unwrap();
        let sizes = info.sizes.as_ref().unwrap();
        let qemu = qemu_virtual_size(path);
        assert_eq!(sizes.qemu, qemu, "{name}: rule {}", sizes.qemu_rule);
        let raw = qemu_to_raw(path);
        let theirs = std::fs::read(&raw).unwrap();
        let disk = vhdkit::disk::open(path).unwrap();
        let n = theirs.len().min(disk.size_bytes() as usize);
        let mut ours = vec![0u8; n];
        disk.read_at(0, &mut ours).unwrap();
        assert!(ours == theirs[..n], "{name}: data differs from qemu's");
    }
}
