//! `expand` through the real binary, on disks built by
//! `testdata/make-expand-disks.sh`, with sfdisk, sgdisk, fsck.fat, e2fsck,
//! dumpe2fs and resize2fs as oracles.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::script_disks;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn tools_present() -> bool {
    let ok = [
        "sfdisk",
        "sgdisk",
        "mkfs.fat",
        "mcopy",
        "fsck.fat",
        "mke2fs",
        "e2fsck",
        "dumpe2fs",
        "resize2fs",
        "debugfs",
    ]
    .iter()
    .all(|t| have(t));
    if !ok {
        eprintln!("partition/filesystem tools missing: skipping expand tests");
    }
    ok
}

/// The disks, built once per test run.
fn disks() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    script_disks(&DIR, "make-expand-disks.sh")
}

fn vhdkit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vhdkit"))
        .args(args)
        .output()
        .unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// A dynamic VHD of the named disk.
    fn vhd(&self, disk: &str) -> PathBuf {
        let out = self.path(&format!("{disk}.vhd"));
        let r = vhdkit(&[
            "convert",
            p(&disks().join(format!("{disk}.raw"))),
            p(&out),
            "--to",
            "dynamic",
            "-q",
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        out
    }
    /// Expands and converts the result back to raw.
    fn expand_raw(&self, disk: &str, size: &str, extra: &[&str]) -> (PathBuf, serde_json::Value) {
        let vhd = self.vhd(disk);
        let out = self.path(&format!("{disk}.{size}.vhd"));
        let mut args = vec!["expand", p(&vhd), p(&out), "--size", size, "--json", "-q"];
        args.extend_from_slice(extra);
        let r = vhdkit(&args);
        assert!(
            r.status.success(),
            "expand {disk}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        let raw = self.path(&format!("{disk}.{size}.raw"));
        let r = vhdkit(&["convert", p(&out), p(&raw), "--to", "raw", "-q"]);
        assert!(r.status.success());
        (raw, report)
    }
}

/// `sgdisk -v` finds no problem in the table.
fn sgdisk_verifies(raw: &Path) {
    let v = Command::new("sgdisk")
        .args(["-v", p(raw)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(text.contains("No problems found"), "{text}");
}

fn sfdisk_json(raw: &Path) -> serde_json::Value {
    let o = Command::new("sfdisk")
        .args(["--json", p(raw)])
        .output()
        .unwrap();
    assert!(o.status.success());
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Copies `len` bytes at `offset` of `raw` into a file of its own, reading
/// only the data extents (SEEK_DATA/SEEK_HOLE), so 1 TiB sparse disks cost
/// nothing.
fn extract(raw: &Path, offset: u64, len: u64, to: &Path) {
    use rustix::fs::{seek, SeekFrom};
    use std::os::unix::fs::FileExt;
    let src = std::fs::File::open(raw).unwrap();
    let dst = std::fs::File::create(to).unwrap();
    dst.set_len(len).unwrap();
    let end = offset + len;
    let mut at = offset;
    let mut buf = vec![0u8; 1 << 20];
    while at < end {
        let data = match seek(&src, SeekFrom::Data(at)) {
            Ok(d) => d,
            Err(_) => break,
        };
        if data >= end {
            break;
        }
        let hole = seek(&src, SeekFrom::Hole(data)).map_or(end, |h| h.min(end));
        let mut pos = data;
        while pos < hole {
            let n = ((hole - pos) as usize).min(buf.len());
            src.read_exact_at(&mut buf[..n], pos).unwrap();
            if buf[..n].iter().any(|&b| b != 0) {
                dst.write_all_at(&buf[..n], pos - offset).unwrap();
            }
            pos += n as u64;
        }
        at = hole;
    }
}

fn md5(path: &Path) -> String {
    let o = Command::new("md5sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The files of the test tree, read back from a FAT image with mcopy.
fn fat_files_match(img: &Path) {
    let files = disks().join("files");
    let tmp = tempfile::tempdir().unwrap();
    for (inside, local) in [
        ("::/hello.txt", "hello.txt"),
        ("::/sub/random.bin", "sub/random.bin"),
        ("::/sub/numbers.txt", "sub/numbers.txt"),
    ] {
        let out = tmp.path().join(local.replace('/', "_"));
        let st = Command::new("mcopy")
            .args(["-n", "-i", p(img), inside, p(&out)])
            .status()
            .unwrap();
        assert!(st.success(), "mcopy {inside}");
        assert_eq!(md5(&out), md5(&files.join(local)), "{inside}");
    }
}

fn fsck_fat(img: &Path) {
    let o = Command::new("fsck.fat")
        .args(["-n", p(img)])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "fsck.fat: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn mbr_fat16_grows_within_its_type() {
    if !tools_present() {
        return;
    }
    let c = Case::new();
    let (raw, report) = c.expand_raw("mbr-fat16", "100M", &[]);
    let t = sfdisk_json(&raw);
    let part = &t["partitiontable"]["partitions"][0];
    assert_eq!(part["start"], 2048);
    assert_eq!(part["size"], 100 * 2048 - 2048);
    assert_eq!(part["bootable"], true);
    assert_eq!(part["type"], "6");
    assert_eq!(report["verdict"]["grown"], true);
    assert!(report["verdict"]["nova_refusal"]
        .as_str()
        .unwrap()
        .contains("unable to resize: fat16"));
    let img = c.path("p.img");
    extract(&raw, 1 << 20, (100 << 20) - (1 << 20), &img);
    fsck_fat(&img);
    fat_files_match(&img);
}

#[test]
fn fat16_to_fat32_is_refused_and_writes_nothing() {
    if !tools_present() {
        return;
    }
    let c = Case::new();
    let vhd = c.vhd("mbr-fat16");
    let out = c.path("o.vhd");
    let r = vhdkit(&["expand", p(&vhd), p(&out), "--size", "1G"]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("FAT16 to FAT32"), "{err}");
    assert!(!out.exists());
}

#[test]
fn gpt_fat32_grows_with_backup_moved() {
    if !tools_present() {
        return;
    }
    let c = Case::new();
    let (raw, _) = c.expand_raw("gpt-fat32", "300M", &[]);
    sgdisk_verifies(&raw);
    let t = sfdisk_json(&raw);
    let part = &t["partitiontable"]["partitions"][0];
    let lastlba = t["partitiontable"]["lastlba"].as_u64().unwrap();
    assert_eq!(part["start"], 2048);
    assert_eq!(part["size"].as_u64().unwrap(), lastlba - 2048 + 1);
    assert_eq!(part["name"], "esp");
    let img = c.path("p.img");
    extract(&raw, 1 << 20, part["size"].as_u64().unwrap() * 512, &img);
    fsck_fat(&img);
    fat_files_match(&img);
}

#[test]
fn growpart_rule_rounds_to_whole_mib() {
    if !tools_present() {
        return;
    }
    let c = Case::new();
    let (raw, _) = c.expand_raw("mbr-fat32", "300M", &["--rule", "growpart"]);
    let t = sfdisk_json(&raw);
    let part = &t["partitiontable"]["partitions"][0];
    let size = part["size"].as_u64().unwrap();
    assert_eq!(size % 2048, 0, "whole MiB");
    assert!(2048 + size <= 300 * 2048 - 34);
    let img = c.path("p.img");
    extract(&raw, 1 << 20, size * 512, &img);
    fsck_fat(&img);
    fat_files_match(&img);
}

#[test]
fn bare_fat_grows_directly() {
    if !tools_present() {
        return;
    }
    let c = Case::new();
    let (raw, report) = c.expand_raw("bare-fat16", "96M", &[]);
    assert_eq!(report["table_kind"], "none");
    fsck_fat(&raw);
    fat_files_match(&raw);
}

#[test]
fn novas_refusals_in_novas_words() {
    if !tools_present() {
        return;
    }
    let c = Case::new();
    for (disk, message) in [
        ("two-partitions", "Disk must have only one partition."),
        (
            "partition-2-only",
            "The only partition should be partition 1.",
        ),
        (
            "unknown-fs",
            "Disk contains a filesystem we are unable to resize: ",
        ),
    ] {
        let vhd = c.vhd(disk);
        let out = c.path(&format!("{disk}.out.vhd"));
        let r = vhdkit(&["expand", p(&vhd), p(&out), "--size", "1G"]);
        assert_eq!(r.status.code(), Some(1), "{disk}");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(
            err.contains(&format!(
                "Server disk was unable to be resized because: {message}"
            )),
            "{disk}: {err}"
        );
        assert!(!out.exists(), "{disk}");
        // --dry-run says the same and writes nothing.
        let r = vhdkit(&["expand", p(&vhd), "--size", "1G", "--dry-run", "--json"]);
        assert_eq!(r.status.code(), Some(1));
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(v["verdict"]["grown"], false);
        // --disk-only grows the disk and nothing else.
        let r = vhdkit(&[
            "expand",
            p(&vhd),
            p(&out),
            "--size",
            "1G",
            "--disk-only",
            "-q",
        ]);
        assert!(r.status.success(), "{disk}");
        let info: serde_json::Value =
            serde_json::from_slice(&vhdkit(&["info", p(&out), "--json"]).stdout).unwrap();
        assert_eq!(info["virtual_size"], 1u64 << 30);
        let raw = c.path(&format!("{disk}.out.raw"));
        assert!(vhdkit(&["convert", p(&out), p(&raw), "--to", "raw", "-q"])
            .status
            .success());
        let orig = std::fs::read(disks().join(format!("{disk}.raw"))).unwrap();
        let grown = std::fs::read(&raw).unwrap();
        assert_eq!(&grown[..orig.len()], &orig[..], "{disk}: data unchanged");
        assert!(grown[orig.len()..].iter().all(|&b| b == 0));
    }
}

#[test]
fn shrinking_is_refused_naming_both_sizes() {
    if !tools_present() {
        return;
    }
    let c = Case::new();
    let vhd = c.vhd("mbr-fat16");
    let r = vhdkit(&["expand", p(&vhd), p(&c.path("o.vhd")), "--size", "32M"]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("33554432") && err.contains("67108864"),
        "{err}"
    );
}

#[test]
fn as_child_holds_only_the_changes() {
    if !tools_present() {
        return;
    }
    let c = Case::new();
    let vhd = c.vhd("mbr-fat32");
    let full = c.path("full.vhd");
    let child = c.path("child.vhd");
    assert!(
        vhdkit(&["expand", p(&vhd), p(&full), "--size", "200M", "-q"])
            .status
            .success()
    );
    assert!(vhdkit(&[
        "expand",
        p(&vhd),
        p(&child),
        "--size",
        "200M",
        "--as-child",
        "-q"
    ])
    .status
    .success());
    let r = vhdkit(&["check", p(&child), "--json"]);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
    let a = c.path("a.raw");
    let b = c.path("b.raw");
    assert!(vhdkit(&["convert", p(&full), p(&a), "--to", "raw", "-q"])
        .status
        .success());
    assert!(vhdkit(&["convert", p(&child), p(&b), "--to", "raw", "-q"])
        .status
        .success());
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    if !tools_present() {
        return;
    }
    let c = Case::new();
    let vhd = c.vhd("mbr-fat32");
    let before = std::fs::read(&vhd).unwrap();
    let r = vhdkit(&["expand", p(&vhd), "--size", "200M", "--dry-run"]);
    assert!(r.status.success());
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(
        text.contains("partitions after") && text.contains("verdict"),
        "{text}"
    );
    assert_eq!(std::fs::read(&vhd).unwrap(), before);
    let entries: Vec<_> = std::fs::read_dir(c.dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "only the input exists");
    // Worded as what vhdkit would do; a table, not debug names or JSON.
    assert!(text.contains("partition table: MBR\n"), "{text}");
    assert!(
        text.contains("vhdkit would grow the partition and filesystem (dry run: nothing written)"),
        "{text}"
    );
    assert!(
        !text.contains("vhdkit grew") && !text.contains('{'),
        "{text}"
    );
    for row in ["kind", "cluster size", "clusters", "free clusters"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(row)),
            "{row}: {text}"
        );
    }
}

/// One row of the dry run's filesystem table: (before, after).
fn fs_row(text: &str, row: &str) -> (String, String) {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{row}  ")))
        .unwrap_or_else(|| panic!("{row}: {text}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    let n = cells.len();
    (cells[n - 2].to_string(), cells[n - 1].to_string())
}

#[test]
fn dry_run_table_matches_what_expand_writes() {
    if !tools_present() {
        return;
    }
    let c = Case::new();
    let vhd = c.vhd("mbr-ext3");
    let r = vhdkit(&["expand", p(&vhd), "--size", "300M", "--dry-run"]);
    assert!(r.status.success());
    let text = String::from_utf8_lossy(&r.stdout).into_owned();
    let json = vhdkit(&["expand", p(&vhd), "--size", "300M", "--dry-run", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    assert!(v["verdict"]["vhdkit"]
        .as_str()
        .unwrap()
        .starts_with("vhdkit would grow"));
    assert!(text.contains("partition table: MBR\n"), "{text}");
    let fs = &v["filesystem"];
    for (row, key) in [
        ("blocks", "blocks"),
        ("groups", "groups"),
        ("inodes", "inodes"),
        ("free blocks", "free_blocks"),
        ("block size", "block_size"),
    ] {
        let (b, a) = fs_row(&text, row);
        assert_eq!(b, fs["before"][key].to_string(), "{row}");
        assert_eq!(a, fs["after"][key].to_string(), "{row}");
    }
    assert_eq!(fs_row(&text, "kind"), ("ext3".into(), "ext3".into()));
    // What the written output's filesystem holds is what the table said.
    let (raw, written) = c.expand_raw("mbr-ext3", "300M", &[]);
    assert_eq!(written["dry_run"], false);
    assert_eq!(
        written["verdict"]["vhdkit"],
        "vhdkit grew the partition and filesystem"
    );
    let part = c.path("part.img");
    let off = fs["offset_bytes"].as_u64().unwrap();
    let len = fs["size_after_bytes"].as_u64().unwrap();
    extract(&raw, off, len, &part);
    let d = dumpe2fs(&part);
    assert_eq!(d["Block count"], fs["after"]["blocks"].to_string());
    assert_eq!(d["Inode count"], fs["after"]["inodes"].to_string());
    assert_eq!(d["Free blocks"], fs["after"]["free_blocks"].to_string());
}

/// `dumpe2fs -h` fields as a map.
fn dumpe2fs(img: &Path) -> std::collections::BTreeMap<String, String> {
    let o = Command::new("dumpe2fs")
        .args(["-h", p(img)])
        .output()
        .unwrap();
    assert!(o.status.success(), "dumpe2fs {img:?}");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn e2fsck_clean(img: &Path) {
    let o = Command::new("e2fsck")
        .args(["-fn", p(img)])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "e2fsck -fn {img:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn ext_files_match(img: &Path) {
    let files = disks().join("files");
    let tmp = tempfile::tempdir().unwrap();
    for name in ["hello.txt", "sub/random.bin", "sub/numbers.txt"] {
        let out = tmp.path().join(name.replace('/', "_"));
        let st = Command::new("debugfs")
            .args(["-R", &format!("dump /{name} {}", p(&out)), p(img)])
            .output()
            .unwrap();
        assert!(st.status.success(), "debugfs dump {name}");
        assert_eq!(md5(&out), md5(&files.join(name)), "{name}");
    }
}

/// Where the filesystem lies, in bytes, per the report's partition 1 (or
/// the whole disk when there is no table).
fn fs_region(report: &serde_json::Value, partitions: &str, disk_size: &str) -> (u64, u64) {
    match report[partitions].as_array().and_then(|a| a.first()) {
        Some(part) => (
            part["start_lba"].as_u64().unwrap() * 512,
            part["size_sectors"].as_u64().unwrap() * 512,
        ),
        None => (0, report[disk_size].as_u64().unwrap()),
    }
}

/// Expands `disk` to `size`, then checks the grown filesystem against
/// resize2fs run on a copy of the original grown to the same size.
fn ext_case(disk: &str, size: &str, same_free_blocks: bool) {
    if !tools_present() {
        return;
    }
    let c = Case::new();
    let (raw, report) = c.expand_raw(disk, size, &[]);
    assert_eq!(report["verdict"]["grown"], true, "{report}");
    let (start, len) = fs_region(&report, "partitions_after", "new_size");
    // Ours.
    let ours = c.path("ours.img");
    extract(&raw, start, len, &ours);
    let f = std::fs::OpenOptions::new().write(true).open(&ours).unwrap();
    f.set_len(len).unwrap();
    e2fsck_clean(&ours);
    ext_files_match(&ours);
    // resize2fs on a copy of the original filesystem, grown to the same size.
    let orig = disks().join(format!("{disk}.raw"));
    let (ostart, olen) = fs_region(&report, "partitions_before", "old_size");
    let theirs = c.path("theirs.img");
    extract(&orig, ostart, olen, &theirs);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&theirs)
        .unwrap();
    f.set_len(len).unwrap();
    let o = Command::new("resize2fs")
        .args([p(&theirs)])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "resize2fs: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (a, b) = (dumpe2fs(&ours), dumpe2fs(&theirs));
    let mut fields = vec![
        "Block count",
        "Inode count",
        "Free inodes",
        "Reserved block count",
        "Blocks per group",
        "Inodes per group",
    ];
    if same_free_blocks {
        fields.push("Free blocks");
    }
    for k in fields {
        assert_eq!(a.get(k), b.get(k), "{disk} -> {size}: {k}");
    }
}

#[test]
fn ext4_mbr_boot_a_few_blocks_more() {
    ext_case("mbr-ext4-boot", "514M", true);
}

#[test]
fn ext4_mbr_boot_one_more_group() {
    ext_case("mbr-ext4-boot", "642M", true);
}

#[test]
fn ext4_mbr_boot_times_ten() {
    ext_case("mbr-ext4-boot", "5G", true);
}

#[test]
fn ext4_mbr_boot_to_one_tib() {
    // Beyond the reserved GDT blocks (64 for a 512 MiB filesystem): meta_bg.
    ext_case("mbr-ext4-boot", "1T", false);
}

#[test]
fn ext3_mbr_grows() {
    ext_case("mbr-ext3", "1280M", true);
}

#[test]
fn ext2_mbr_grows_though_nova_refuses() {
    ext_case("mbr-ext2", "640M", true);
}

#[test]
fn ext4_gpt_grows() {
    ext_case("gpt-ext4", "1G", true);
}

#[test]
fn ext4_1k_blocks_grow() {
    ext_case("ext4-1k", "1280M", true);
}

#[test]
fn ext4_old_features_grow() {
    ext_case("ext4-old", "1280M", true);
}

#[test]
fn ext4_without_resize_inode_grows() {
    ext_case("ext4-noresize", "1280M", false);
}

#[test]
fn ext4_256m_1k_to_40g_beyond_reserved_gdt() {
    // Converted to meta_bg (the kernel's way): counts equal resize2fs', free
    // blocks differ by the descriptor copies meta_bg does not keep.
    ext_case("ext4-256m-1k", "40G", false);
}

#[test]
fn bare_ext4_grows_directly() {
    ext_case("bare-ext4", "1G", true);
}

#[test]
fn gpt_ext4_table_is_valid_after_growth() {
    if !tools_present() {
        return;
    }
    let c = Case::new();
    let (raw, _) = c.expand_raw("gpt-ext4", "1G", &[]);
    sgdisk_verifies(&raw);
    let t = sfdisk_json(&raw);
    let part = &t["partitiontable"]["partitions"][0];
    assert_eq!(part["name"], "root");
    assert_eq!(part["type"], "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
}
