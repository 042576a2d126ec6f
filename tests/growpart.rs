//! `--rule growpart-legacy` against growpart itself (cloud-guest-utils 0.33,
//! the one in Debian 12 and Ubuntu): the same disk grown by vhdkit and by
//! `growpart DISK 1` on a copy must give the same `sfdisk --json`, for MBR
//! and GPT, several sizes and starts, and the NOCHANGE cases.

use std::path::{Path, PathBuf};
use std::process::Output;

use vhdkit::disk::device::{Device, FileDevice};
use vhdkit::partition::{self, GrowRule};

const MIB: u64 = 1024 * 1024;

mod common;

use common::{have_tool, run_tool};

fn run_in(dir: &Path, cmd: &str, args: &[&str], stdin: Option<&str>) -> Output {
    run_tool(Some(dir), cmd, args, stdin)
}

/// `sfdisk --json disk.img` run inside `dir`, so both copies show the same
/// device names.
fn sfdisk_json(dir: &Path) -> serde_json::Value {
    let out = run_in(dir, "sfdisk", &["--json", "disk.img"], None);
    assert!(
        out.status.success(),
        "sfdisk --json: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Case {
    label: &'static str,
    start: u64,
    /// Partition length in sectors; `None`: to the end of the first disk.
    size: Option<u64>,
    first_disk: u64,
    grown_disk: u64,
}

/// Makes `disk.img` in `dir`: a table made by sfdisk on `first_disk` bytes,
/// then the file grown to `grown_disk` bytes.
fn make(dir: &Path, c: &Case) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("disk.img");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(c.first_disk).unwrap();
    let size = c.size.map_or(String::new(), |s| format!(", size={s}"));
    let script = format!(
        "label: {}\n{}label-id: {}\nstart={}{size}, type={}\n",
        c.label,
        if c.label == "gpt" {
            "first-lba: 34\n"
        } else {
            ""
        },
        if c.label == "gpt" {
            "5B1E9C3A-7D44-4E55-9A3B-0C2D6E8F1A20"
        } else {
            "0x2a2a2a2a"
        },
        c.start,
        if c.label == "gpt" {
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=1D2C3B4A-5E6F-4A8B-9C0D-112233445566"
        } else {
            "83"
        }
    );
    let out = run_in(dir, "sfdisk", &["-q", "disk.img"], Some(&script));
    assert!(
        out.status.success(),
        "sfdisk {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.set_len(c.grown_disk).unwrap();
    p
}

/// Grows with vhdkit's legacy rule; whether the partition changed.
fn vhdkit_grow(p: &Path) -> bool {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    let mut dev = FileDevice::new(file).unwrap();
    let size = dev.size_bytes();
    let plan = partition::plan_grow_partition(&dev, size, GrowRule::GrowpartLegacy).unwrap();
    partition::apply(&mut dev, &plan).unwrap();
    plan.partition_changed
}

/// Grows with growpart; whether it changed the partition (exit 0 CHANGED,
/// 1 NOCHANGE).
fn growpart_grow(dir: &Path) -> bool {
    let out = run_in(dir, "growpart", &["disk.img", "1"], None);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0) => {
            assert!(text.starts_with("CHANGED"), "growpart: {text}");
            true
        }
        Some(1) if text.starts_with("NOCHANGE") => false,
        _ => panic!("growpart: {text}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// Grows copies both ways and compares; whether the partition changed.
fn compare(root: &Path, name: &str, c: &Case) -> bool {
    let ours_dir = root.join(name).join("vhdkit");
    let theirs_dir = root.join(name).join("growpart");
    let ours = make(&ours_dir, c);
    make(&theirs_dir, c);
    let changed = vhdkit_grow(&ours);
    let their_change = growpart_grow(&theirs_dir);
    assert_eq!(changed, their_change, "{name}: changed");
    let a = sfdisk_json(&ours_dir);
    let b = sfdisk_json(&theirs_dir);
    if changed || c.label == "dos" {
        assert_eq!(a, b, "{name}");
    } else {
        // NOCHANGE on GPT: growpart leaves the backup header at the old end;
        // vhdkit, growing the disk, always moves it to the new end. The
        // partitions are the same.
        let pa = &a["partitiontable"]["partitions"];
        let pb = &b["partitiontable"]["partitions"];
        assert_eq!(pa, pb, "{name}");
    }
    changed
}

fn tools() -> bool {
    have_tool("sfdisk", "--version") && have_tool("growpart", "--help")
}

/// `(name, start, size, first disk bytes, grown disk bytes)`.
type Sizes = (&'static str, u64, Option<u64>, u64, u64);

/// Compares every case of `label`; the fudge cases must be NOCHANGE
/// exactly when they grow by less than 2048 sectors. Returns the folder of
/// the first case's vhdkit copy.
fn compare_all(root: &Path, label: &'static str, cases: &[Sizes]) -> PathBuf {
    for &(name, start, size, first_disk, grown_disk) in cases {
        let c = Case {
            label,
            start,
            size,
            first_disk,
            grown_disk,
        };
        let changed = compare(root, name, &c);
        assert_eq!(
            changed,
            !matches!(name, "fudge-short" | "no-growth"),
            "{name}"
        );
    }
    root.join(cases[0].0).join("vhdkit")
}

/// The cases for one table kind: the issue's case first, then an odd disk
/// size, a low start (63 for MBR, 34 for GPT), a partition filling its disk,
/// growth of exactly the 1 MiB fudge (2048 sectors: grows), one sector less
/// (NOCHANGE), and no growth at all.
fn cases(issue: Sizes, low_start: u64) -> [Sizes; 7] {
    // Ends at sector 40926 of a 20 MiB disk: its sectors - 34.
    let fills = Some(40_926 - 2048 + 1);
    [
        issue,
        ("odd-size", 2048, Some(8192), 20 * MIB, 100 * MIB + 7 * 512),
        ("low-start", low_start, Some(10_000), 20 * MIB, 300 * MIB),
        ("start-4096", 4096, None, 20 * MIB, 64 * MIB),
        ("fudge-exact", 2048, fills, 20 * MIB, 20 * MIB + 2048 * 512),
        ("fudge-short", 2048, fills, 20 * MIB, 20 * MIB + 2047 * 512),
        ("no-growth", 2048, None, 20 * MIB, 20 * MIB),
    ]
}

#[test]
fn mbr_matches_growpart() {
    if !tools() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    // The issue's case: 2 GiB, start 2048, to 4192223 sectors.
    let issue = ("2g", 2048, Some(8192), 20 * MIB, 2048 * MIB);
    let v = sfdisk_json(&compare_all(root.path(), "dos", &cases(issue, 63)));
    assert_eq!(v["partitiontable"]["partitions"][0]["size"], 4_192_223);
}

#[test]
fn gpt_matches_growpart() {
    if !tools() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    // The issue's case: 10 GiB, start 2048, to 20969439 sectors.
    let issue = ("10g", 2048, Some(8192), 20 * MIB, 10 * 1024 * MIB);
    let v = sfdisk_json(&compare_all(root.path(), "gpt", &cases(issue, 34)));
    assert_eq!(v["partitiontable"]["partitions"][0]["size"], 20_969_439);
}
