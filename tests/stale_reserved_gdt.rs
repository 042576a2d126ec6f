//! `expand` on ext filesystems whose `resize_inode` feature was cleared
//! after mke2fs, leaving `s_reserved_gdt_blocks` = 256 and a stale inode 7
//! (issue 14 item 2). e2fsck -fn accepts those inputs; the grown output
//! must be clean too, with nothing left for e2fsck to offer, on GPT ext4,
//! MBR ext3 and a bare ext4. Disks from `testdata/make-stale-gdt-disks.sh`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::script_disks;

/// The disks, built once per test run.
fn disks() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    script_disks(&DIR, "make-stale-gdt-disks.sh")
}

fn tools_present() -> bool {
    let ok = [
        "sgdisk", "sfdisk", "mke2fs", "debugfs", "e2fsck", "dumpe2fs",
    ]
    .iter()
    .all(|t| Command::new(t).arg("-V").output().is_ok());
    if !ok {
        eprintln!("skipping: sgdisk, sfdisk or e2fsprogs not installed");
    }
    ok
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn vhdkit(args: &[&str]) -> std::process::Output {
    let o = Command::new(env!("CARGO_BIN_EXE_vhdkit"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "vhdkit {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// e2fsck -fn's exit status and everything it printed.
fn e2fsck(img: &Path) -> (bool, String) {
    let o = Command::new("e2fsck")
        .args(["-fn", p(img)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

/// Copies `len` bytes at `offset` of `raw` into a file of its own.
fn extract(raw: &Path, offset: u64, len: u64, to: &Path) {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(raw).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = Vec::new();
    f.take(len).read_to_end(&mut buf).unwrap();
    buf.resize(usize::try_from(len).unwrap(), 0);
    std::fs::write(to, buf).unwrap();
}

/// The filesystem's byte range in `raw`: partition 1, or the whole disk.
fn fs_region(raw: &Path) -> (u64, u64) {
    let o = Command::new("sfdisk")
        .args(["-J", p(raw)])
        .output()
        .unwrap();
    if !o.status.success() {
        return (0, std::fs::metadata(raw).unwrap().len());
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let part = &v["partitiontable"]["partitions"][0];
    (
        part["start"].as_u64().unwrap() * 512,
        part["size"].as_u64().unwrap() * 512,
    )
}

fn case(disk: &str) {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = disks().join(format!("{disk}.raw"));
    let at = |name: &str| -> PathBuf { dir.path().join(name) };
    // The input: reserved GDT blocks without resize_inode, e2fsck rc 0.
    let (start, len) = fs_region(&raw);
    extract(&raw, start, len, &at("before.img"));
    let (ok, text) = e2fsck(&at("before.img"));
    assert!(ok && text.contains("s_reserved_gdt_blocks"), "{text}");

    vhdkit(&[
        "convert",
        p(&raw),
        p(&at("in.vhd")),
        "--to",
        "dynamic",
        "-q",
    ]);
    let o = vhdkit(&[
        "expand",
        p(&at("in.vhd")),
        p(&at("out.vhd")),
        "--size",
        "400M",
        "--json",
        "-q",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["verdict"]["grown"], true, "{report}");
    vhdkit(&[
        "convert",
        p(&at("out.vhd")),
        p(&at("out.raw")),
        "--to",
        "raw",
        "-q",
    ]);
    let (start, len) = fs_region(&at("out.raw"));
    extract(&at("out.raw"), start, len, &at("after.img"));
    let (ok, text) = e2fsck(&at("after.img"));
    assert!(ok, "e2fsck -fn after expand:\n{text}");
    assert!(!text.contains("? no"), "e2fsck still offers a fix:\n{text}");
    assert!(!text.contains("corrupt"), "{text}");
    let o = Command::new("debugfs")
        .args(["-R", "cat /hello.txt", p(&at("after.img"))])
        .output()
        .unwrap();
    assert_eq!(
        o.stdout,
        std::fs::read(disks().join("files/hello.txt")).unwrap()
    );
    let o = Command::new("dumpe2fs")
        .args(["-h", p(&at("after.img"))])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&o.stdout);
    assert!(!head.contains("Reserved GDT blocks"), "{head}");
    assert!(!head.contains("meta_bg"), "{head}");
}

#[test]
fn gpt_ext4_with_stale_reserved_gdt_blocks_grows_clean() {
    case("gpt-ext4");
}

#[test]
fn mbr_ext3_with_stale_reserved_gdt_blocks_grows_clean() {
    case("mbr-ext3");
}

#[test]
fn bare_ext4_with_stale_reserved_gdt_blocks_grows_clean() {
    case("bare-ext4");
}
