//! `--parent` and `--parent-dir` on the commands that read a chain, the
//! single-file targets' refusal of outside parents, and `compact` into
//! another folder keeping the same parent.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::*;

const BS: usize = GOLDEN_BLOCK as usize;
const PARENT_ID: [u8; 16] = [0x3c; 16];

/// A parent (block 0 = pattern 9) in `root/elsewhere`, and a child in
/// `root/child` whose locators climb out to it.
fn outside_chain() -> (tempfile::TempDir, PathBuf, PathBuf) {
    chain_in_two_folders(PARENT_ID, &pattern(9, BS), |_| {
        vec![Locator::w2ru("..\\elsewhere\\base.vhd")]
    })
}

fn run(args: &[&OsStr]) -> Run {
    vhdkit(args)
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn block0(path: &Path) -> Vec<u8> {
    let disk = vhdkit::disk::open(path).unwrap();
    let mut buf = vec![0u8; BS];
    disk.read_at(0, &mut buf).unwrap();
    buf
}

#[test]
fn every_chain_command_takes_the_users_word_for_a_parent() {
    let (root, child, parent) = outside_chain();
    let dir = parent.parent().unwrap().as_os_str();
    let c = child.as_os_str();
    // Without the flags the parent is not looked for outside the folder.
    let found = |args: &[&OsStr]| {
        let r = run(args);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        json["parent"]["found"].clone()
    };
    assert!(found(&[os("info"), os("--json"), c]).is_null());
    let with = found(&[
        os("info"),
        os("--json"),
        os("--parent"),
        parent.as_os_str(),
        c,
    ]);
    assert_eq!(with.as_str().map(PathBuf::from), Some(parent.clone()));
    let check = run(&[os("check"), os("--parent-dir"), dir, c]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains("PARENT_OUTSIDE"), "{}", check.stdout);
    assert_eq!(run(&[os("check"), c]).code, 1);

    let out = root.path().join("flat.vhd");
    let conv = run(&[os("convert"), c, out.as_os_str(), os("--to"), os("fixed")]);
    assert_ne!(conv.code, 0, "converted without the parent");
    assert!(!out.exists());
    let conv = run(&[
        os("convert"),
        c,
        out.as_os_str(),
        os("--to"),
        os("fixed"),
        os("--parent-dir"),
        dir,
    ]);
    assert_eq!(conv.code, 0, "{}", conv.stderr);
    assert_eq!(block0(&out), pattern(9, BS));

    let exp = run(&[
        os("expand"),
        c,
        os("--dry-run"),
        os("--disk-only"),
        os("--size"),
        os("8M"),
        os("--parent"),
        parent.as_os_str(),
    ]);
    assert_eq!(exp.code, 0, "{}{}", exp.stdout, exp.stderr);
}

#[test]
fn single_file_targets_fail_a_parent_outside() {
    let (_root, child, parent) = outside_chain();
    let dir = parent.parent().unwrap().as_os_str();
    for target in ["glance", "azure", "rackspace"] {
        let r = run(&[
            os("preflight"),
            child.as_os_str(),
            os("--target"),
            os(target),
            os("--parent-dir"),
            dir,
        ]);
        assert_eq!(r.code, 1, "{target}: {}", r.stdout);
        let line = r
            .stdout
            .lines()
            .find(|l| l.contains("PARENT_OUTSIDE"))
            .unwrap_or_else(|| panic!("{target}: {}", r.stdout));
        assert!(line.contains("FAIL"), "{target}: {line}");
        assert!(line.contains("must not reference files outside"), "{line}");
    }
}

/// A parent in `root/in` with a child beside it (`.\base.vhd`), and a
/// decoy `root/base.vhd`: same unique id, other data.
#[test]
fn compact_into_another_folder_keeps_the_same_parent() {
    let root = tempfile::tempdir().unwrap();
    let input_dir = root.path().join("in");
    std::fs::create_dir_all(&input_dir).unwrap();
    let base = Spec::dynamic(GOLDEN_SIZE, GOLDEN_BLOCK)
        .unique_id(PARENT_ID)
        .block(0, &pattern(4, BS))
        .block(1, &pattern(5, BS))
        .build();
    base.write(&input_dir, "base.vhd");
    Spec::dynamic(GOLDEN_SIZE, GOLDEN_BLOCK)
        .unique_id(PARENT_ID)
        .block(0, &pattern(6, BS))
        .block(1, &pattern(6, BS))
        .build()
        .write(root.path(), "base.vhd");
    let child = Spec::differencing(
        GOLDEN_SIZE,
        GOLDEN_BLOCK,
        ParentLink {
            name: "base.vhd".into(),
            unique_id: PARENT_ID,
            locators: vec![Locator::w2ru(".\\base.vhd")],
        },
    )
    .unique_id([0x62; 16])
    .block(1, &pattern(8, BS))
    .build()
    .write(&input_dir, "child.vhd");
    let out = root.path().join("compacted.vhd");
    let r = run(&[os("compact"), child.as_os_str(), out.as_os_str()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // Read from the output's folder: the same parent, not the decoy.
    let disk = vhdkit::disk::open(&out).unwrap();
    let mut buf = vec![0u8; 2 * BS];
    disk.read_at(0, &mut buf).unwrap();
    assert_eq!(
        buf[..BS],
        pattern(4, BS)[..],
        "block 0 from the real parent"
    );
    assert_eq!(buf[BS..], pattern(8, BS)[..], "block 1 from the child");
    let info = vhdkit::commands::info::info(&out).unwrap();
    let found = info.parent.and_then(|p| p.found).unwrap();
    assert_eq!(
        std::fs::canonicalize(found).unwrap(),
        std::fs::canonicalize(input_dir.join("base.vhd")).unwrap()
    );
}
