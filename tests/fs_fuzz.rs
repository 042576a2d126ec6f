//! Filesystem fuzzing against the real checkers (issue 14 item 2): small
//! ext2/3/4 and FAT12/16/32 images made with mke2fs / mkfs.fat, one
//! superblock, group-descriptor or BPB field changed per case (seeded, so
//! every run tries the same few hundred inputs). For each input:
//! - if `e2fsck -fn` / `fsck.fat -n` accepts it and vhdkit grows it, the
//!   grown image must be accepted too;
//! - if vhdkit refuses, the refusal must say why (a corrupt or unsupported
//!   field is named).
//!
//! Cases that once broke are kept in `REGRESSIONS`, named after what broke.

use std::path::{Path, PathBuf};
use std::process::Command;

use vhdkit::disk::device::FileDevice;

/// Cases per base image.
const CASES_PER_IMAGE: u64 = 45;
const SEED: u64 = 0x5eed_f00d_1234_abcd;

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool).arg(arg).output().is_ok()
}

/// xorshift64*: small, seeded, good enough to pick fields and values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Ext,
    Fat,
}

/// A field: name, byte offset in the image, width in bytes.
type Field = (&'static str, u64, usize);

const SB: u64 = 1024;
const EXT_FIELDS: &[Field] = &[
    ("s_inodes_count", SB, 4),
    ("s_blocks_count_lo", SB + 0x04, 4),
    ("s_r_blocks_count_lo", SB + 0x08, 4),
    ("s_free_blocks_count_lo", SB + 0x0C, 4),
    ("s_free_inodes_count", SB + 0x10, 4),
    ("s_first_data_block", SB + 0x14, 4),
    ("s_log_block_size", SB + 0x18, 4),
    ("s_log_cluster_size", SB + 0x1C, 4),
    ("s_blocks_per_group", SB + 0x20, 4),
    ("s_clusters_per_group", SB + 0x24, 4),
    ("s_inodes_per_group", SB + 0x28, 4),
    ("s_state", SB + 0x3A, 2),
    ("s_rev_level", SB + 0x4C, 4),
    ("s_first_ino", SB + 0x54, 4),
    ("s_inode_size", SB + 0x58, 2),
    ("s_feature_compat", SB + 0x5C, 4),
    ("s_feature_incompat", SB + 0x60, 4),
    ("s_feature_ro_compat", SB + 0x64, 4),
    ("s_reserved_gdt_blocks", SB + 0xCE, 2),
    ("s_desc_size", SB + 0xFE, 2),
    ("s_first_meta_bg", SB + 0x104, 4),
    ("s_log_groups_per_flex", SB + 0x174, 1),
    // Group descriptors of groups 0 and 1 (the table is block 2 with
    // 1 KiB blocks; 32-byte descriptors without 64bit).
    ("bg_block_bitmap[0]", 2048, 4),
    ("bg_inode_bitmap[0]", 2048 + 4, 4),
    ("bg_inode_table[0]", 2048 + 8, 4),
    ("bg_free_blocks_count[0]", 2048 + 0x0C, 2),
    ("bg_free_inodes_count[0]", 2048 + 0x0E, 2),
    ("bg_used_dirs_count[0]", 2048 + 0x10, 2),
    ("bg_flags[1]", 2048 + 32 + 0x12, 2),
    ("bg_block_bitmap[1]", 2048 + 32, 4),
    ("bg_free_blocks_count[1]", 2048 + 32 + 0x0C, 2),
    ("bg_itable_unused[1]", 2048 + 32 + 0x1C, 2),
];

const FAT_FIELDS: &[Field] = &[
    ("BPB_BytsPerSec", 11, 2),
    ("BPB_SecPerClus", 13, 1),
    ("BPB_RsvdSecCnt", 14, 2),
    ("BPB_NumFATs", 16, 1),
    ("BPB_RootEntCnt", 17, 2),
    ("BPB_TotSec16", 19, 2),
    ("BPB_Media", 21, 1),
    ("BPB_FATSz16", 22, 2),
    ("BPB_TotSec32", 32, 4),
    ("BPB_FATSz32", 36, 4),
    ("BPB_RootClus", 44, 4),
    ("BPB_FSInfo", 48, 2),
    ("BPB_BkBootSec", 50, 2),
    ("FSI_Free_Count", 512 + 488, 4),
    ("FSI_Nxt_Free", 512 + 492, 4),
];

fn read_le(b: &[u8], at: usize, width: usize) -> u64 {
    (0..width).fold(0, |v, i| v | (u64::from(b[at + i]) << (8 * i)))
}

fn write_le(b: &mut [u8], at: usize, width: usize, v: u64) {
    for i in 0..width {
        b[at + i] = (v >> (8 * i)) as u8;
    }
}

/// A new value for a field that held `old`.
fn mutate(rng: &mut Rng, old: u64, width: usize) -> u64 {
    let max = if width == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    };
    let v = match rng.below(8) {
        0 => 0,
        1 => 1,
        2 => max,
        3 => old.wrapping_add(1),
        4 => old.wrapping_sub(1),
        5 => old.wrapping_mul(2),
        6 => old / 2,
        _ => rng.next(),
    };
    v & max
}

struct Base {
    name: &'static str,
    kind: Kind,
    bytes: Vec<u8>,
    grow_to: u64,
}

fn make_ext(dir: &Path, name: &'static str, args: &[&str]) -> Base {
    let img = dir.join(format!("{name}.img"));
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let o = Command::new("mke2fs")
        .args(["-F", "-q", "-b", "1024", "-g", "1024", "-N", "512"])
        .args(args)
        .arg(&img)
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .output()
        .unwrap();
    assert!(o.status.success(), "mke2fs {args:?}: {o:?}");
    Base {
        name,
        kind: Kind::Ext,
        bytes: std::fs::read(&img).unwrap(),
        grow_to: 20 << 20,
    }
}

fn make_fat(dir: &Path, name: &'static str, fat: &str, mib: u64, grow_mib: u64) -> Base {
    let img = dir.join(format!("{name}.img"));
    let _ = std::fs::remove_file(&img);
    let o = Command::new("mkfs.fat")
        .args(["-F", fat, "-C"])
        .arg(&img)
        .arg((mib * 1024).to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "mkfs.fat -F {fat}: {o:?}");
    Base {
        name,
        kind: Kind::Fat,
        bytes: std::fs::read(&img).unwrap(),
        grow_to: grow_mib << 20,
    }
}

/// Whether the checker accepts the image.
fn accepted(kind: Kind, img: &Path) -> bool {
    let o = match kind {
        Kind::Ext => Command::new("e2fsck").arg("-fn").arg(img).output(),
        Kind::Fat => Command::new("fsck.fat").arg("-n").arg(img).output(),
    }
    .unwrap();
    o.status.success()
}

/// Grows `img` in place; `Err` is the refusal's message.
fn grow(kind: Kind, img: &Path, size: u64) -> Result<(), String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let mut dev = FileDevice::new(file).unwrap();
    match kind {
        Kind::Ext => {
            use vhdkit::fs::ext;
            let plan = ext::plan_grow(&dev, size).map_err(|e| e.to_string())?;
            ext::apply_grow(&mut dev, &plan).map_err(|e| e.to_string())
        }
        Kind::Fat => {
            use vhdkit::fs::fat;
            let plan = fat::plan_grow(&dev, size).map_err(|e| e.to_string())?;
            fat::apply_grow(&mut dev, &plan).map_err(|e| e.to_string())
        }
    }
}

/// Words a refusal uses to say why: a field, a feature, or a FAT-type or
/// FAT-size limit.
const REASON_WORDS: &[&str] = &[
    "s_",
    "bg_",
    "i_block",
    "i_checksum",
    "BPB_",
    "FSInfo",
    "feature",
    "FAT would need",
    "change the filesystem from",
    "no FAT filesystem",
    "no ext filesystem",
    "shrinking",
    "bitmap",
    "clusters larger",
    "descriptor",
    "inodes",
    "a size below",
    "no room",
];

#[derive(Default, Debug)]
struct Tally {
    checker_rejects: u32,
    grown_clean: u32,
    refused: u32,
    broke: Vec<String>,
}

/// Runs one case: `base` with `field` set to `value`.
fn run_case(dir: &Path, base: &Base, field: Field, value: u64, t: &mut Tally) {
    let (name, at, width) = field;
    let mut bytes = base.bytes.clone();
    let at = usize::try_from(at).unwrap();
    write_le(&mut bytes, at, width, value);
    let img: PathBuf = dir.join("case.img");
    std::fs::write(&img, &bytes).unwrap();
    let ok_before = accepted(base.kind, &img);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(base.grow_to)
        .unwrap();
    let what = format!("{}: {name} = {value:#x}", base.name);
    match grow(base.kind, &img, base.grow_to) {
        Ok(()) if !ok_before => t.checker_rejects += 1,
        Ok(()) => {
            if accepted(base.kind, &img) {
                t.grown_clean += 1;
            } else {
                t.broke
                    .push(format!("{what}: accepted before, rejected after growing"));
            }
        }
        Err(reason) => {
            if !ok_before {
                t.checker_rejects += 1;
            } else {
                t.refused += 1;
            }
            if !REASON_WORDS.iter().any(|w| reason.contains(w)) {
                t.broke
                    .push(format!("{what}: refusal names no field: {reason}"));
            }
        }
    }
}

/// Inputs that once broke, named after what broke: (what broke, image,
/// field, value). e2fsck -n falls back to the backup descriptors when the
/// primary ones point into metadata and exits 0; the grow used the primary
/// table and wrote a bitmap over a reserved GDT block.
const REGRESSIONS: &[(&str, &str, &str, u64)] = &[
    (
        "block_bitmap_inside_reserved_gdt_was_grown",
        "ext2",
        "bg_block_bitmap[0]",
        0x101,
    ),
    (
        "inode_bitmap_inside_reserved_gdt_was_grown",
        "ext2",
        "bg_inode_bitmap[0]",
        0x102,
    ),
    (
        "block_bitmap_on_another_groups_table_was_grown",
        "ext4",
        "bg_block_bitmap[1]",
        0x81,
    ),
];

fn bases(dir: &Path) -> Vec<Base> {
    let mut out = Vec::new();
    if have("mke2fs", "-V") && have("e2fsck", "-V") {
        out.push(make_ext(dir, "ext2", &["-t", "ext2"]));
        out.push(make_ext(dir, "ext3", &["-t", "ext3", "-J", "size=1"]));
        out.push(make_ext(
            dir,
            "ext4",
            &["-t", "ext4", "-O", "^metadata_csum,^64bit", "-J", "size=1"],
        ));
    } else {
        eprintln!("note: e2fsprogs missing, ext cases skipped");
    }
    if have("mkfs.fat", "--help") && have("fsck.fat", "--help") {
        out.push(make_fat(dir, "fat12", "12", 2, 3));
        out.push(make_fat(dir, "fat16", "16", 20, 30));
        out.push(make_fat(dir, "fat32", "32", 40, 60));
    } else {
        eprintln!("note: dosfstools missing, FAT cases skipped");
    }
    out
}

#[test]
fn mutated_filesystems_grow_clean_or_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bases = bases(dir.path());
    let mut rng = Rng(SEED);
    let mut t = Tally::default();
    for base in &bases {
        // The unmutated image grows clean.
        run_case(
            dir.path(),
            base,
            ("none", 0, 1),
            u64::from(base.bytes[0]),
            &mut t,
        );
        let fields = match base.kind {
            Kind::Ext => EXT_FIELDS,
            Kind::Fat => FAT_FIELDS,
        };
        for _ in 0..CASES_PER_IMAGE {
            let field = fields[usize::try_from(rng.below(fields.len() as u64)).unwrap()];
            let at = usize::try_from(field.1).unwrap();
            let old = read_le(&base.bytes, at, field.2);
            let value = mutate(&mut rng, old, field.2);
            run_case(dir.path(), base, field, value, &mut t);
        }
        for &(what, _, name, value) in REGRESSIONS.iter().filter(|r| r.1 == base.name) {
            let field = *fields.iter().find(|f| f.0 == name).expect(what);
            run_case(dir.path(), base, field, value, &mut t);
        }
    }
    eprintln!(
        "fs fuzz: {} images; checker rejects {}, grown clean {}, refused (checker accepted) {}",
        bases.len(),
        t.checker_rejects,
        t.grown_clean,
        t.refused
    );
    assert!(
        t.broke.is_empty(),
        "{} broken cases:\n{}",
        t.broke.len(),
        t.broke.join("\n")
    );
}
