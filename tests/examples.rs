//! The programs in `examples/` build and do what they say, on images made
//! here: `info` reports the library's sizes, `partitions` the MBR written,
//! `to_dynamic` a dynamic VHD whose MD5 an independent MD5 confirms, and
//! `check` a damaged footer's checksum (exit 1).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use md5::{Digest, Md5};

/// The folder of this test's build profile (`target/release`, ...).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/examples-HASH
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// The example's executable, built first when `cargo test` was asked for
/// this test alone (a whole `cargo test` builds the examples itself).
fn example(name: &str) -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    let dir = profile_dir();
    let exe = dir.join("examples").join(name);
    BUILD.call_once(|| {
        if exe.exists() {
            return;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--examples", "--quiet"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build --examples");
        assert!(status.success(), "cargo build --examples failed");
    });
    assert!(exe.exists(), "{} was not built", exe.display());
    exe
}

fn run(name: &str, args: &[&Path]) -> Output {
    let out = Command::new(example(name))
        .args(args)
        .output()
        .expect("run example");
    eprintln!(
        "{name}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An 8 MiB raw disk: one MBR partition of type 0x83 from sector 2048 to
/// the end, and a little data in it.
fn raw_disk(dir: &Path) -> PathBuf {
    let mut bytes = vec![0u8; 8 << 20];
    let entry = 446;
    bytes[entry] = 0x80;
    bytes[entry + 4] = 0x83;
    bytes[entry + 8..entry + 12].copy_from_slice(&2048u32.to_le_bytes());
    bytes[entry + 12..entry + 16].copy_from_slice(&(16384u32 - 2048).to_le_bytes());
    bytes[510] = 0x55;
    bytes[511] = 0xaa;
    for (i, b) in bytes[(5 << 20)..(5 << 20) + 4096].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let path = dir.join("disk.raw");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// [`raw_disk`] converted by the library to a dynamic VHD.
fn dynamic_disk(dir: &Path) -> PathBuf {
    let raw = raw_disk(dir);
    let vhd = dir.join("disk.vhd");
    let disk = vhdkit::open(&raw).unwrap();
    vhdkit::convert(&disk, &vhd, &vhdkit::ConvertOptions::default()).unwrap();
    vhd
}

#[test]
fn to_dynamic_writes_a_dynamic_vhd_with_its_md5() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_disk(dir.path());
    let vhd = dir.path().join("disk.vhd");
    let out = run("to_dynamic", &[&raw, &vhd]);
    assert!(out.status.success());
    let digest = Md5::digest(std::fs::read(&vhd).unwrap());
    let expected: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("md5 {expected}")), "{stdout}");
    let disk = vhdkit::open(&vhd).unwrap();
    assert_eq!(disk.kind(), vhdkit::Kind::Dynamic);
    let mut original = vec![0u8; 8 << 20];
    disk.read_at(&mut original, 0).unwrap();
    assert_eq!(original, std::fs::read(&raw).unwrap());
}

#[test]
fn info_reports_kind_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let vhd = dynamic_disk(dir.path());
    let out = run("info", &[&vhd]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("kind:         dynamic"), "{stdout}");
    assert!(
        stdout.contains(&format!("virtual size: {} bytes", 8 << 20)),
        "{stdout}"
    );
    let file_size = std::fs::metadata(&vhd).unwrap().len();
    assert!(
        stdout.contains(&format!("file size:    {file_size} bytes")),
        "{stdout}"
    );
    // The MBR's 2 MiB block and the data's: two of four blocks.
    assert!(
        stdout.contains(&format!("data:         {} bytes", 4 << 20)),
        "{stdout}"
    );
}

#[test]
fn partitions_lists_the_mbr_partition() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_disk(dir.path());
    let out = run("partitions", &[&raw]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("table: Mbr"), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_else(|| panic!("no partition 1 in {stdout}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words,
        ["1", "start", "2048", "end", "16383", "sectors", "14336", "type", "83", "boot"]
    );
}

#[test]
fn check_reports_a_damaged_footer_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let vhd = dynamic_disk(dir.path());
    let clean = run("check", &[&vhd]);
    assert!(clean.status.success());
    let mut bytes = std::fs::read(&vhd).unwrap();
    let checksum_at = bytes.len() - 512 + 64;
    bytes[checksum_at] ^= 0xff;
    std::fs::write(&vhd, bytes).unwrap();
    let damaged = run("check", &[&vhd]);
    assert_eq!(damaged.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&damaged.stdout).contains("FOOTER_CHECKSUM"));
}
