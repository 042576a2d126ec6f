//! `sparsify` through the real binary, on disks built by
//! `testdata/make-sparsify-disks.sh` (filesystems made over random bytes,
//! files written then deleted), with real tools as oracles: the output is
//! converted back to raw by qemu-img; sfdisk/sgdisk see the same table;
//! e2fsck, fsck.fat and ntfsfix find the filesystems clean; every file
//! reads back (debugfs, mcopy, ntfscat) with its MD5; dumpe2fs's free
//! blocks read as zero and every other block is byte-identical; fsck.fat's
//! and ntfscluster's free counts are the bytes dropped; the output is
//! smaller than `compact`'s.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::script_disks;

use serde_json::Value;

const SECTOR: usize = 512;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn tools_present() -> bool {
    let missing: Vec<&str> = [
        "sfdisk",
        "sgdisk",
        "qemu-img",
        "mkfs.ext4",
        "e2fsck",
        "dumpe2fs",
        "debugfs",
        "mkfs.fat",
        "mcopy",
        "mdel",
        "fsck.fat",
        "mkntfs",
        "ntfscp",
        "ntfscat",
        "ntfsfix",
        "ntfscluster",
        "ntfsls",
        "ntfstruncate",
        "mkswap",
        "mkfs.xfs",
    ]
    .into_iter()
    .filter(|t| !have(t))
    .collect();
    if !missing.is_empty() {
        eprintln!("note: {missing:?} missing: skipping sparsify tests");
    }
    missing.is_empty()
}

/// The disks, built once per test run.
fn disks() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    script_disks(&DIR, "make-sparsify-disks.sh")
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd).args(args).output().unwrap()
}

fn stdout(cmd: &str, args: &[&str]) -> String {
    let o = run(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A partition as sfdisk lists it: (number, start byte, length).
#[derive(Debug, Clone, Copy)]
struct Part {
    number: u32,
    start: usize,
    len: usize,
}

/// sfdisk's view of the table (file names taken out), and the partitions
/// other than extended ones.
fn partitions(disk: &Path) -> (Option<Value>, Vec<Part>) {
    let o = run("sfdisk", &["-J", disk.to_str().unwrap()]);
    if !o.status.success() {
        return (None, Vec::new());
    }
    let mut v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let name = disk.to_str().unwrap();
    let text = v.to_string().replace(name, "DISK");
    v = serde_json::from_str(&text).unwrap();
    let parts = v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !["5", "f", "85"].contains(&p["type"].as_str().unwrap_or("")))
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            let digits: String = node
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect();
            Part {
                number: digits.chars().rev().collect::<String>().parse().unwrap(),
                start: p["start"].as_u64().unwrap() as usize * SECTOR,
                len: p["size"].as_u64().unwrap() as usize * SECTOR,
            }
        })
        .collect();
    (Some(v), parts)
}

struct Case {
    dir: tempfile::TempDir,
    input: PathBuf,
    back: PathBuf,
    json: Value,
    files: Vec<(u32, String, String)>,
}

impl Case {
    /// Sparsifies disk `name` to a dynamic VHD and converts it back to raw.
    fn new(name: &str) -> Case {
        let input = disks().join(format!("{name}.raw"));
        let dir = tempfile::tempdir().unwrap();
        let vhd = dir.path().join("out.vhd");
        let o = Command::new(env!("CARGO_BIN_EXE_vhdkit"))
            .args(["sparsify", "--json", "-q"])
            .arg(&input)
            .arg(&vhd)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "sparsify {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let json: Value = serde_json::from_slice(&o.stdout).unwrap();
        let back = dir.path().join("back.raw");
        stdout(
            "qemu-img",
            &[
                "convert",
                "-f",
                "vpc",
                "-O",
                "raw",
                vhd.to_str().unwrap(),
                back.to_str().unwrap(),
            ],
        );
        let files = std::fs::read_to_string(disks().join(format!("{name}.files")))
            .unwrap()
            .lines()
            .map(|l| {
                let mut w = l.split(' ');
                let part = w.next().unwrap().parse().unwrap();
                (
                    part,
                    w.next().unwrap().to_string(),
                    w.next().unwrap().to_string(),
                )
            })
            .collect();
        Case {
            dir,
            input,
            back,
            json,
            files,
        }
    }

    fn part_file(&self, p: Part) -> PathBuf {
        let path = self.dir.path().join(format!("part{}", p.number));
        let data = std::fs::read(&self.back).unwrap();
        std::fs::write(&path, &data[p.start..p.start + p.len]).unwrap();
        path
    }

    fn region(&self, number: Option<u32>) -> &Value {
        self.json["map"]["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "partition" && r["number"].as_u64().map(|n| n as u32) == number)
            .unwrap_or_else(|| panic!("no region for partition {number:?}: {}", self.json))
    }

    /// The table is the same; sectors outside partitions changed only to
    /// zeros, and only after the first partition (the boot loader gap is
    /// kept); the output is smaller than compact's.
    fn check_disk(&self, parts: &[Part]) {
        let (a, _) = partitions(&self.input);
        let (b, _) = partitions(&self.back);
        assert_eq!(a, b, "partition tables differ");
        let input = std::fs::read(&self.input).unwrap();
        let back = std::fs::read(&self.back).unwrap();
        assert_eq!(input.len(), back.len());
        let inside = |s: usize| parts.iter().any(|p| s >= p.start && s < p.start + p.len);
        // Kept: an MBR disk's boot loader gap before the first partition, a
        // GPT disk's protective MBR, header and entries.
        let first = match &a {
            Some(t) if t["partitiontable"]["label"] == "gpt" => {
                t["partitiontable"]["firstlba"].as_u64().unwrap() as usize * SECTOR
            }
            _ => parts.iter().map(|p| p.start).min().unwrap_or(input.len()),
        };
        for (i, (x, y)) in input.chunks(SECTOR).zip(back.chunks(SECTOR)).enumerate() {
            let at = i * SECTOR;
            if x != y && !inside(at) {
                assert!(
                    at >= first,
                    "sector {i} in the kept head of the disk changed"
                );
                assert!(
                    y.iter().all(|&b| b == 0),
                    "sector {i} outside partitions changed to non-zero"
                );
            }
        }
        self.check_smaller_than_compact();
    }

    fn check_smaller_than_compact(&self) {
        let conv = self.dir.path().join("conv.vhd");
        let compact = self.dir.path().join("compact.vhd");
        let bin = env!("CARGO_BIN_EXE_vhdkit");
        let st = Command::new(bin)
            .args(["convert", "-q", "--to", "dynamic"])
            .args([&self.input, &conv])
            .status()
            .unwrap();
        assert!(st.success());
        let st = Command::new(bin)
            .args(["compact"])
            .args([&conv, &compact])
            .output()
            .unwrap();
        assert!(st.status.success());
        let ours = self.json["output_file_size"].as_u64().unwrap();
        let theirs = std::fs::metadata(&compact).unwrap().len();
        if self.json["dropped_bytes"].as_u64().unwrap() >= 2 << 20 {
            assert!(ours < theirs, "sparsify {ours} bytes, compact {theirs}");
        } else {
            assert!(ours <= theirs, "sparsify {ours} bytes, compact {theirs}");
        }
    }

    /// ext: e2fsck clean, files intact, dumpe2fs's free blocks zero and
    /// every other block identical, free bytes as dumpe2fs counts them.
    fn check_ext(&self, p: Part) {
        let input = format!("{}?offset={}", self.input.display(), p.start);
        let clean = run("e2fsck", &["-fn", &input]);
        assert!(
            clean.status.success(),
            "the input is not clean to begin with"
        );
        let img = format!("{}?offset={}", self.back.display(), p.start);
        let fsck = run("e2fsck", &["-fn", &img]);
        assert!(
            fsck.status.success(),
            "e2fsck: {}",
            String::from_utf8_lossy(&fsck.stdout)
        );
        for (_, path, md5) in self.files.iter().filter(|f| f.0 == p.number) {
            let out = self.dir.path().join("dumped");
            stdout(
                "debugfs",
                &["-R", &format!("dump {path} {}", out.display()), &img],
            );
            assert_eq!(&md5_of(&std::fs::read(&out).unwrap()), md5, "{path}");
        }
        let dump = stdout("dumpe2fs", &[&img]);
        let bs: usize = field(&dump, "Block size:").parse().unwrap();
        let blocks: usize = field(&dump, "Block count:").parse().unwrap();
        let mut free = vec![false; blocks];
        // The per-group lines (the superblock's total is not indented).
        for line in dump
            .lines()
            .filter_map(|l| l.strip_prefix("  Free blocks: "))
        {
            for range in line.split(", ").filter(|r| !r.is_empty()) {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                free[a..=b].iter_mut().for_each(|f| *f = true);
            }
        }
        let input = std::fs::read(&self.input).unwrap();
        let back = std::fs::read(&self.back).unwrap();
        for (b, is_free) in free.iter().enumerate() {
            let at = p.start + b * bs;
            let (x, y) = (&input[at..at + bs], &back[at..at + bs]);
            if *is_free {
                assert!(y.iter().all(|&v| v == 0), "free block {b} not zero");
            } else {
                assert_eq!(x, y, "used block {b} changed");
            }
        }
        let fs_end = p.start + blocks * bs;
        assert_eq!(
            input[fs_end..p.start + p.len],
            back[fs_end..p.start + p.len]
        );
        let count = free.iter().filter(|f| **f).count() as u64;
        assert_eq!(self.region(self.number(p))["free_bytes"], count * bs as u64);
    }

    fn number(&self, p: Part) -> Option<u32> {
        (p.number != 0).then_some(p.number)
    }

    /// Only zeros were written, and the bytes dropped are the free bytes
    /// the tool counts (the free space held random data).
    fn check_dropped(&self, p: Part, tool_free: u64) {
        let input = std::fs::read(&self.input).unwrap();
        let back = std::fs::read(&self.back).unwrap();
        let mut changed = 0u64;
        for at in (p.start..p.start + p.len).step_by(SECTOR) {
            let (x, y) = (&input[at..at + SECTOR], &back[at..at + SECTOR]);
            if x != y {
                assert!(
                    y.iter().all(|&v| v == 0),
                    "sector at {at} changed to non-zero"
                );
                changed += SECTOR as u64;
            }
        }
        let region = self.region(self.number(p));
        assert_eq!(region["free_bytes"], tool_free, "{region}");
        assert_eq!(region["dropped_bytes"], changed, "{region}");
        assert!(
            changed <= tool_free && changed >= tool_free / 100 * 99,
            "changed {changed}, free {tool_free}"
        );
    }

    fn check_fat(&self, p: Part) {
        let img = self.part_file(p);
        let img = img.to_str().unwrap();
        let fsck = stdout("fsck.fat", &["-n", "-v", img]);
        for (_, path, md5) in self.files.iter().filter(|f| f.0 == p.number) {
            let o = run("mcopy", &["-n", "-i", img, &format!("::{path}"), "-"]);
            assert!(o.status.success());
            assert_eq!(&md5_of(&o.stdout), md5, "{path}");
        }
        // "N files, USED/TOTAL clusters", and the cluster size.
        let last = fsck.lines().last().unwrap();
        let (used, total) = last
            .rsplit_once(' ')
            .unwrap()
            .0
            .rsplit_once(' ')
            .unwrap()
            .1
            .split_once('/')
            .unwrap();
        let cluster: u64 = fsck
            .lines()
            .find(|l| l.contains("bytes per cluster"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let free = (total.parse::<u64>().unwrap() - used.parse::<u64>().unwrap()) * cluster;
        self.check_dropped(p, free);
    }

    fn check_ntfs(&self, p: Part) {
        let img = self.part_file(p);
        let img = img.to_str().unwrap();
        stdout("ntfsfix", &["-n", img]);
        for (_, path, md5) in self.files.iter().filter(|f| f.0 == p.number) {
            let o = run("ntfscat", &["-f", img, path]);
            assert!(o.status.success());
            assert_eq!(&md5_of(&o.stdout), md5, "{path}");
        }
        let info = stdout("ntfscluster", &["-i", "-f", img]);
        self.check_dropped(
            p,
            field(&info, "bytes of free space")
                .trim_start_matches(": ")
                .parse()
                .unwrap(),
        );
    }

    /// Swap: the header page kept, every later page zero.
    fn check_swap(&self, p: Part) {
        let input = std::fs::read(&self.input).unwrap();
        let back = std::fs::read(&self.back).unwrap();
        assert_eq!(
            input[p.start..p.start + 4096],
            back[p.start..p.start + 4096]
        );
        // mkswap uses whole pages; a partial last page is kept.
        let end = p.start + p.len / 4096 * 4096;
        assert!(back[p.start + 4096..end].iter().all(|&b| b == 0));
        assert_eq!(input[end..p.start + p.len], back[end..p.start + p.len]);
        assert_eq!(self.region(Some(p.number))["filesystem"], "swap");
    }

    /// Kept: byte-identical, and the reason given.
    fn check_kept(&self, p: Part, reason: &str) {
        let input = std::fs::read(&self.input).unwrap();
        let back = std::fs::read(&self.back).unwrap();
        assert!(
            input[p.start..p.start + p.len] == back[p.start..p.start + p.len],
            "kept partition changed"
        );
        let r = self.region(Some(p.number));
        assert_eq!(r["state"], "kept");
        assert!(r["reason"].as_str().unwrap().contains(reason), "{r}");
    }
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name}"))
        .trim()
}

fn md5_of(data: &[u8]) -> String {
    let mut child = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

/// Runs `check` on disk `name` with its partitions, when the tools are here.
fn with_disk(name: &str, check: impl Fn(&Case, &[Part])) {
    if !tools_present() {
        return;
    }
    let case = Case::new(name);
    let (_, mut parts) = partitions(&case.input);
    if parts.is_empty() {
        // A bare filesystem: the whole disk.
        let len = std::fs::metadata(&case.input).unwrap().len() as usize;
        parts.push(Part {
            number: 0,
            start: 0,
            len,
        });
    }
    check(&case, &parts);
    case.check_disk(&parts);
}

#[test]
fn mbr_ext4_4k_flex_bg_metadata_csum() {
    with_disk("mbr-ext4", |c, p| c.check_ext(p[0]));
}

#[test]
fn mbr_ext4_1k_blocks() {
    with_disk("mbr-ext4-1k", |c, p| c.check_ext(p[0]));
}

#[test]
fn mbr_ext4_without_uninit_bg_or_metadata_csum() {
    with_disk("mbr-ext4-old", |c, p| c.check_ext(p[0]));
}

#[test]
fn mbr_ext4_meta_bg() {
    with_disk("mbr-ext4-metabg", |c, p| c.check_ext(p[0]));
}

#[test]
fn gpt_ext4_and_swap() {
    with_disk("gpt-ext4-swap", |c, p| {
        c.check_ext(p[0]);
        c.check_swap(p[1]);
        let v = stdout("sgdisk", &["-v", c.back.to_str().unwrap()]);
        assert!(v.contains("No problems found"), "{v}");
    });
}

#[test]
fn mbr_logical_ext3_in_an_extended_partition() {
    with_disk("mbr-logical-ext3", |c, p| {
        assert_eq!(p.iter().map(|p| p.number).collect::<Vec<_>>(), vec![1, 5]);
        c.check_ext(p[0]);
        c.check_ext(p[1]);
        assert_eq!(c.region(Some(5))["filesystem"], "ext3");
    });
}

#[test]
fn bare_ext2() {
    with_disk("bare-ext2", |c, p| {
        assert_eq!(p[0].number, 0);
        c.check_ext(p[0]);
        assert_eq!(c.json["map"]["table"], "none");
    });
}

#[test]
fn mbr_fat16() {
    with_disk("mbr-fat16", |c, p| c.check_fat(p[0]));
}

#[test]
fn mbr_fat32() {
    with_disk("mbr-fat32", |c, p| c.check_fat(p[0]));
}

#[test]
fn mbr_ntfs() {
    with_disk("mbr-ntfs", |c, p| c.check_ntfs(p[0]));
}

#[test]
fn xfs_is_left_as_it_is() {
    with_disk("mbr-xfs", |c, p| c.check_kept(p[0], "xfs"));
}

#[test]
fn ext4_needing_recovery_is_left_as_it_is() {
    with_disk("mbr-ext4-dirty", |c, p| {
        c.check_kept(p[0], "needs_recovery")
    });
}

#[test]
fn dry_run_writes_nothing_and_predicts_the_output() {
    if !tools_present() {
        return;
    }
    let input = disks().join("mbr-ext4.raw");
    let o = Command::new(env!("CARGO_BIN_EXE_vhdkit"))
        .args(["sparsify", "--dry-run", "--json"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(o.status.success());
    let dry: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(dry["dry_run"], true);
    assert!(dry["written"].is_null());
    let real = Case::new("mbr-ext4");
    assert_eq!(dry["output_file_size"], real.json["output_file_size"]);
    assert_eq!(dry["dropped_bytes"], real.json["dropped_bytes"]);
    let text = Command::new(env!("CARGO_BIN_EXE_vhdkit"))
        .args(["sparsify", "--dry-run"])
        .arg(&input)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("partition 1") && text.contains("ext4") && text.contains("dry run"),
        "{text}"
    );
}

/// `sparsify --dry-run --json` of a disk image.
fn dry_run(path: &Path) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_vhdkit"))
        .args(["sparsify", "--dry-run", "--json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn only_region(json: &Value) -> &Value {
    let regions = json["map"]["regions"].as_array().unwrap();
    assert_eq!(regions.len(), 1, "{json}");
    &regions[0]
}

/// A bare ext filesystem of `mib` MiB over random bytes, made by `mkfs`.
fn bare_ext(dir: &Path, name: &str, mib: usize, mkfs: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let o = run(
        "openssl",
        &[
            "rand",
            "-out",
            path.to_str().unwrap(),
            &(mib << 20).to_string(),
        ],
    );
    assert!(o.status.success());
    let mut args = mkfs[1..].to_vec();
    args.extend([
        "-q",
        "-F",
        "-E",
        "nodiscard,lazy_itable_init=0",
        path.to_str().unwrap(),
    ]);
    stdout(mkfs[0], &args);
    path
}

/// dumpe2fs's count of free blocks, in bytes.
fn dumpe2fs_free_bytes(img: &str) -> u64 {
    let head = stdout("dumpe2fs", &["-h", img]);
    let bs: u64 = field(&head, "Block size:").parse().unwrap();
    let free: u64 = field(&head, "Free blocks:").parse().unwrap();
    free * bs
}

/// Flips bit `bit` of the byte at `at` in a file.
fn flip(path: &Path, at: u64, bit: u8) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 1 << bit;
    f.write_all_at(&b, at).unwrap();
}

/// Where group 0's block bitmap is, in bytes.
fn block_bitmap_at(img: &str) -> u64 {
    let dump = stdout("dumpe2fs", &[img]);
    let bs: u64 = field(&dump, "Block size:").parse().unwrap();
    let line = dump
        .lines()
        .find(|l| l.trim_start().starts_with("Block bitmap at "))
        .unwrap();
    let n: u64 = line.trim_start()["Block bitmap at ".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    n * bs
}

#[test]
fn ext4_with_64k_blocks_reads_as_dumpe2fs_counts() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = bare_ext(dir.path(), "64k.img", 96, &["mkfs.ext4", "-b", "65536"]);
    let json = dry_run(&img);
    let r = only_region(&json);
    assert_eq!(r["state"], "read", "{r}");
    assert_eq!(r["free_bytes"], dumpe2fs_free_bytes(img.to_str().unwrap()));
}

/// The one region of a dry run is kept, for a reason saying `why`.
fn assert_kept(json: &Value, why: &str) {
    let r = only_region(json);
    assert_eq!(r["state"], "kept", "{r}");
    assert!(r["reason"].as_str().unwrap().contains(why), "{r}");
}

/// A bare filesystem made by `mkfs` with bit `bit` of the byte `at` bytes
/// past group 0's block bitmap flipped.
fn ext_with_bitmap_bit_flipped(mkfs: &str, at: u64, bit: u8) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let img = bare_ext(dir.path(), "fs.img", 32, &[mkfs]);
    flip(&img, block_bitmap_at(img.to_str().unwrap()) + at, bit);
    dry_run(&img)
}

/// A 16 MiB FAT16 volume with bit `bit` of byte `at` of FAT 1 flipped
/// (`None`: as made).
fn fat16_with_fat_bit_flipped(flipped: Option<(u64, u8)>) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fat.img");
    stdout(
        "mkfs.fat",
        &["-F", "16", "-C", img.to_str().unwrap(), "32768"],
    );
    let boot = std::fs::read(&img).unwrap();
    // FAT 1 follows the reserved sectors (BPB offset 14).
    let fat = u64::from(u16::from_le_bytes([boot[14], boot[15]])) * 512;
    if let Some((at, bit)) = flipped {
        flip(&img, fat + at, bit);
    }
    dry_run(&img)
}

#[test]
fn a_block_bitmap_failing_its_checksum_is_kept() {
    if tools_present() {
        // A free block of group 0 marked used: metadata_csum catches it.
        assert_kept(
            &ext_with_bitmap_bit_flipped("mkfs.ext4", 900, 3),
            "bg_block_bitmap_csum",
        );
    }
}

#[test]
fn a_bitmap_disagreeing_with_its_descriptor_is_kept() {
    if tools_present() {
        // ext2 has no checksums: only the free count tells.
        assert_kept(
            &ext_with_bitmap_bit_flipped("mkfs.ext2", 900, 3),
            "e2fsck -f",
        );
    }
}

#[test]
fn a_dirty_fat_volume_is_kept() {
    if tools_present() {
        assert_eq!(
            only_region(&fat16_with_fat_bit_flipped(None))["state"],
            "read"
        );
        // FAT entry 1's clean-shutdown bit: bit 15, in byte 3.
        assert_kept(
            &fat16_with_fat_bit_flipped(Some((3, 7))),
            "not cleanly unmounted",
        );
    }
}

#[test]
fn fat_copies_that_differ_are_kept() {
    if tools_present() {
        // Cluster 100 in use in FAT 1 only.
        assert_kept(
            &fat16_with_fat_bit_flipped(Some((200, 0))),
            "FAT copies 1 and 2 differ",
        );
    }
}

#[test]
fn overlapping_partitions_keep_the_whole_disk() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("overlap.raw");
    let mut disk = vec![0u8; 8 << 20];
    // Two entries: sectors 2048..+8192 and 4096..+8192.
    for (i, (start, len)) in [(2048u32, 8192u32), (4096, 8192)].iter().enumerate() {
        let e = 446 + i * 16;
        disk[e + 4] = 0x83;
        disk[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
        disk[e + 12..e + 16].copy_from_slice(&len.to_le_bytes());
    }
    disk[510] = 0x55;
    disk[511] = 0xAA;
    std::fs::write(&img, &disk).unwrap();
    let json = dry_run(&img);
    assert_kept(&json, "overlap");
    assert_eq!(json["free_bytes"], 0);
}

#[test]
fn a_dynamic_vhd_input_gives_the_same_disk_as_its_raw_form() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_vhdkit");
    let raw = disks().join("mbr-fat32.raw");
    let vhd = dir.path().join("in.vhd");
    let st = Command::new(bin)
        .args(["convert", "-q", "--to", "dynamic"])
        .arg(&raw)
        .arg(&vhd)
        .status()
        .unwrap();
    assert!(st.success());
    let from_raw = dir.path().join("a.raw");
    let from_vhd = dir.path().join("b.raw");
    for (input, out) in [(&raw, &from_raw), (&vhd, &from_vhd)] {
        let st = Command::new(bin)
            .args(["sparsify", "-q", "--to", "raw"])
            .arg(input)
            .arg(out)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    }
    stdout(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "raw",
            from_raw.to_str().unwrap(),
            from_vhd.to_str().unwrap(),
        ],
    );
    // A raw output is sparse: far fewer bytes allocated than its size.
    let alloc = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&from_raw).unwrap().blocks() * 512
    };
    assert!(alloc < 16 << 20, "{alloc} bytes allocated");
}

/// A disk held in memory, for mutation tests.
struct MemDisk(Vec<u8>, PathBuf);

impl vhdkit::disk::VirtualDisk for MemDisk {
    fn path(&self) -> &Path {
        &self.1
    }
    fn kind(&self) -> vhdkit::disk::Kind {
        vhdkit::disk::Kind::Raw
    }
    fn size_bytes(&self) -> u64 {
        self.0.len() as u64
    }
    fn block_size_bytes(&self) -> u64 {
        2 << 20
    }
    fn range(&self, offset: u64, len: usize) -> vhdkit::Result<vhdkit::disk::Block<'_>> {
        let at = usize::try_from(offset).unwrap();
        Ok(vhdkit::disk::Block::Data(&self.0[at..at + len]))
    }
    fn is_unallocated(&self, _offset: u64, _len: u64) -> bool {
        false
    }
}

/// Seeded mutations of real filesystems' metadata: mapping, measuring and
/// reading through the zeroing view give results or reasons, never a
/// panic; and whatever is found free was free (zero-filled) or garbage.
#[test]
fn mutated_filesystems_never_panic() {
    if !tools_present() {
        return;
    }
    use vhdkit::disk::VirtualDisk;
    let dir = tempfile::tempdir().unwrap();
    let mut images = Vec::new();
    let ext = bare_ext(dir.path(), "ext.img", 8, &["mkfs.ext4"]);
    images.push((std::fs::read(&ext).unwrap(), 0usize..65536));
    let fat = dir.path().join("fat.img");
    stdout(
        "mkfs.fat",
        &["-F", "12", "-C", fat.to_str().unwrap(), "8192"],
    );
    images.push((std::fs::read(&fat).unwrap(), 0..65536));
    let ntfs = dir.path().join("ntfs.img");
    std::fs::write(&ntfs, vec![0u8; 8 << 20]).unwrap();
    stdout("mkntfs", &["-F", "-Q", "-q", ntfs.to_str().unwrap()]);
    let bytes = std::fs::read(&ntfs).unwrap();
    let mft = u64::from_le_bytes(bytes[0x30..0x38].try_into().unwrap()) as usize * 4096;
    images.push((bytes, mft..mft + 16 * 1024));
    let mut seed = 0x5eed_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (original, zone) in &images {
        for _ in 0..120 {
            let mut bytes = original.clone();
            for _ in 0..1 + next() % 6 {
                let at = zone.start + (next() as usize) % zone.len();
                bytes[at] = next() as u8;
            }
            let disk = MemDisk(bytes, dir.path().join("mem"));
            let mut map = vhdkit::fs::usage::map_disk(&disk);
            let _ = map.measure_dropped(&disk);
            let view = vhdkit::fs::usage::FreeZeroed::new(&disk, &map);
            for at in (0..disk.size_bytes()).step_by(1 << 20) {
                let _ = view.range(at, 1 << 20);
            }
        }
    }
}

#[test]
fn preflight_warns_about_free_space_holding_data_until_sparsified() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_vhdkit");
    let full = dir.path().join("full.vhd");
    let st = Command::new(bin)
        .args(["convert", "-q", "--to", "dynamic"])
        .arg(disks().join("mbr-ext4.raw"))
        .arg(&full)
        .status()
        .unwrap();
    assert!(st.success());
    let sparse = dir.path().join("sparse.vhd");
    let st = Command::new(bin)
        .args(["sparsify", "-q", "--json"])
        .arg(&full)
        .arg(&sparse)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let free_space_lines = |image: &Path| -> Vec<Value> {
        let o = Command::new(bin)
            .args(["preflight", "--json"])
            .arg(image)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["target_rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["code"] == "FREE_SPACE_DATA")
            .cloned()
            .collect()
    };
    let warned = free_space_lines(&full);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0]["status"], "WARN");
    assert!(warned[0]["fix"]
        .as_str()
        .unwrap()
        .starts_with("vhdkit sparsify "));
    assert!(free_space_lines(&sparse).is_empty());
}
