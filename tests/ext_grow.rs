//! Growing ext2/3/4 images with `vhdkit::fs::ext` against `resize2fs` as the
//! oracle: the same image is grown both ways, then `e2fsck -fn` must pass
//! on ours and `dumpe2fs -h` must report the same counts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use vhdkit::disk::device::FileDevice;
use vhdkit::fs::ext::{apply_grow, plan_grow, probe, FsError, Strategy};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn tools_present() -> bool {
    let ok = ["mke2fs", "resize2fs", "e2fsck", "dumpe2fs", "debugfs"]
        .iter()
        .all(|t| Command::new(t).arg("-V").output().is_ok());
    if !ok {
        eprintln!(
            "skipping: e2fsprogs (mke2fs, resize2fs, e2fsck, dumpe2fs, debugfs) not installed"
        );
    }
    ok
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn truncate(path: &Path, size: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(size).unwrap();
}

/// Makes an image with `mke2fs args`, writes a few files into it.
fn make_image(dir: &Path, size: u64, args: &[&str]) -> PathBuf {
    let img = dir.join("orig.img");
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    let mut cmd = Command::new("mke2fs");
    cmd.args(["-F", "-q", "-U", "6b1a5e2e-2f7c-4d41-9a43-0d8f3c1e9b01"])
        .args(args)
        .arg(&img)
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .env("MKE2FS_CONFIG", "/etc/mke2fs.conf");
    run(&mut cmd);
    for (name, len) in [
        ("small", 3000usize),
        ("medium", 200_000),
        ("large", 1_500_000),
    ] {
        let src = dir.join(name);
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        std::fs::write(&src, data).unwrap();
        run(Command::new("debugfs")
            .args(["-w", "-R"])
            .arg(format!("write {} {name}", src.display()))
            .arg(&img));
    }
    img
}

fn copy(src: &Path, dst: &Path) {
    run(Command::new("cp").arg("--sparse=always").arg(src).arg(dst));
}

fn dumpe2fs(img: &Path) -> BTreeMap<String, String> {
    let out = run(Command::new("dumpe2fs").arg("-h").arg(img));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn fsck_clean(img: &Path) {
    let out = Command::new("e2fsck")
        .args(["-fn"])
        .arg(img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "e2fsck -fn {} found problems:\n{}\n{}",
        img.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// MD5 (hex) of a file as `debugfs -R dump` reads it back.
fn file_md5(img: &Path, dir: &Path, name: &str) -> String {
    use md5::Digest;
    let digest = md5::Md5::digest(file_bytes(img, dir, name));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_bytes(img: &Path, dir: &Path, name: &str) -> Vec<u8> {
    let out = dir.join(format!("dump-{name}"));
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump {name} {}", out.display()))
        .arg(img));
    std::fs::read(out).unwrap()
}

fn grow_ours(img: &Path, size: u64) -> vhdkit::fs::ext::GrowPlan {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let mut dev = FileDevice::new(file).unwrap();
    let plan = plan_grow(&dev, size).unwrap();
    apply_grow(&mut dev, &plan).unwrap();
    plan
}

const COUNTS: [&str; 4] = [
    "Block count",
    "Inode count",
    "Blocks per group",
    "First block",
];
const FREE_COUNTS: [&str; 4] = [
    "Free blocks",
    "Free inodes",
    "Reserved block count",
    "Reserved GDT blocks",
];

/// Grows one copy with resize2fs and one with us; compares. `same_free`
/// is false where our layout differs by design (meta_bg conversion).
fn compare(args: &[&str], size: u64, new_size: u64, same_free: bool) -> vhdkit::fs::ext::GrowPlan {
    let dir = tempfile::TempDir::new().unwrap();
    let orig = make_image(dir.path(), size, args);
    let a = dir.path().join("a.img");
    let b = dir.path().join("b.img");
    copy(&orig, &a);
    copy(&orig, &b);
    truncate(&a, new_size);
    truncate(&b, new_size);
    run(Command::new("resize2fs")
        .arg(&a)
        .env("RESIZE2FS_FORCE_LAZY_ITABLE_INIT", "1"));
    let plan = grow_ours(&b, new_size);
    fsck_clean(&b);
    let (da, db) = (dumpe2fs(&a), dumpe2fs(&b));
    let mut fields: Vec<&str> = COUNTS.to_vec();
    if same_free {
        fields.extend(FREE_COUNTS);
    } else {
        fields.push("Reserved block count");
    }
    for f in fields {
        assert_eq!(
            da.get(f),
            db.get(f),
            "dumpe2fs field {f:?} differs (resize2fs vs ours)"
        );
    }
    assert_eq!(plan.after.blocks_count.to_string(), db["Block count"]);
    assert_eq!(plan.after.free_blocks.to_string(), db["Free blocks"]);
    let groups_a = run(Command::new("dumpe2fs").arg(&a)).stdout;
    let groups_b = run(Command::new("dumpe2fs").arg(&b)).stdout;
    let count_groups = |out: &[u8]| {
        String::from_utf8_lossy(out)
            .lines()
            .filter_map(|l| l.strip_prefix("Group ")?.split_once(':'))
            .filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
            .count()
    };
    assert_eq!(
        count_groups(&groups_a),
        count_groups(&groups_b),
        "group count differs"
    );
    assert_eq!(count_groups(&groups_b) as u64, plan.after.groups);
    // The plan is plain data that serializes.
    let json = serde_json::to_string(&plan).unwrap();
    assert!(json.contains("\"changed_blocks\""), "{json}");
    for name in ["small", "medium", "large"] {
        use md5::Digest;
        let written = md5::Md5::digest(std::fs::read(dir.path().join(name)).unwrap());
        let written: String = written.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            file_md5(&a, dir.path(), name),
            written,
            "{name} after resize2fs"
        );
        assert_eq!(
            file_md5(&b, dir.path(), name),
            written,
            "{name} after our grow"
        );
    }
    // Growing again to the same size changes nothing.
    let file = std::fs::File::open(&b).unwrap();
    let again = plan_grow(&FileDevice::new(file).unwrap(), new_size).unwrap();
    assert_eq!(again.strategy, Strategy::NoChange);
    assert!(again.changed_blocks.is_empty());
    plan
}

#[test]
fn ext4_1k_a_few_blocks_more() {
    if !tools_present() {
        return;
    }
    let plan = compare(
        &["-t", "ext4", "-b", "1024"],
        64 * MIB,
        64 * MIB + 200 * 1024,
        true,
    );
    assert_eq!(plan.new_groups, 0);
}

#[test]
fn ext4_4k_exactly_one_more_group() {
    if !tools_present() {
        return;
    }
    let plan = compare(&["-t", "ext4", "-b", "4096"], 256 * MIB, 384 * MIB, true);
    assert_eq!(plan.new_groups, 1);
}

#[test]
fn ext4_1k_ten_times_within_reserved_gdt() {
    if !tools_present() {
        return;
    }
    let plan = compare(&["-t", "ext4", "-b", "1024"], 64 * MIB, 640 * MIB, true);
    assert_eq!(plan.strategy, Strategy::ReservedGdt);
}

#[test]
fn ext4_4k_uninit_bg_without_metadata_csum_ten_times() {
    if !tools_present() {
        return;
    }
    let plan = compare(
        &["-t", "ext4", "-b", "4096", "-O", "^metadata_csum,uninit_bg"],
        128 * MIB,
        1280 * MIB,
        true,
    );
    assert!(plan.new_groups > 0);
}

#[test]
fn ext4_32bit_descriptors_with_orphan_file() {
    if !tools_present() {
        return;
    }
    compare(
        &["-t", "ext4", "-b", "4096", "-O", "^64bit,orphan_file"],
        100 * MIB,
        900 * MIB,
        true,
    );
}

#[test]
fn ext3_1k_ten_times_writes_bitmaps_and_inode_tables() {
    if !tools_present() {
        return;
    }
    let plan = compare(&["-t", "ext3", "-b", "1024"], 32 * MIB, 320 * MIB, true);
    assert!(plan.after.features.contains(&"has_journal".to_string()));
    assert_eq!(plan.after.kind, "ext3");
}

#[test]
fn ext2_4k_without_flex_bg() {
    if !tools_present() {
        return;
    }
    compare(
        &["-t", "ext2", "-b", "4096"],
        64 * MIB,
        200 * MIB + 12 * 4096,
        true,
    );
}

#[test]
fn ext4_large_sparse_target_within_reserved_gdt() {
    if !tools_present() {
        return;
    }
    let plan = compare(&["-t", "ext4", "-b", "4096"], 512 * MIB, 64 * GIB, true);
    assert_eq!(plan.strategy, Strategy::ReservedGdt);
}

#[test]
fn ext2_without_resize_inode_converts_to_meta_bg() {
    if !tools_present() {
        return;
    }
    // 1 KiB blocks, 32-byte descriptors: 32 groups per descriptor block.
    let plan = compare(
        &["-t", "ext2", "-b", "1024", "-O", "^resize_inode"],
        16 * MIB,
        300 * MIB,
        false,
    );
    assert_eq!(plan.strategy, Strategy::ConvertToMetaBg);
    assert_eq!(plan.after.first_meta_bg, Some(1));
}

#[test]
fn ext4_1k_256m_to_40g_goes_beyond_the_reserved_gdt_blocks() {
    if !tools_present() {
        return;
    }
    let plan = compare(&["-t", "ext4", "-b", "1024"], 256 * MIB, 40 * GIB, false);
    assert_eq!(plan.strategy, Strategy::ConvertToMetaBg);
    assert_eq!(
        plan.before.desc_blocks + u64::from(plan.before.reserved_gdt_blocks),
        258
    );
    assert_eq!(plan.after.desc_blocks, 320);
    assert!(plan.after.features.contains(&"meta_bg".to_string()));
    assert!(!plan.after.features.contains(&"resize_inode".to_string()));
}

#[test]
fn planning_a_1_tib_grow_is_fast() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::TempDir::new().unwrap();
    let img = make_image(dir.path(), 256 * MIB, &["-t", "ext4", "-b", "4096"]);
    truncate(&img, 1 << 40);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let mut dev = FileDevice::new(file).unwrap();
    let started = std::time::Instant::now();
    let plan = plan_grow(&dev, 1 << 40).unwrap();
    assert!(
        started.elapsed().as_secs_f64() < 3.0,
        "planning took {:?}",
        started.elapsed()
    );
    assert_eq!(plan.after.groups, 8192);
    apply_grow(&mut dev, &plan).unwrap();
    drop(dev);
    fsck_clean(&img);
}

fn open(img: &Path) -> FileDevice {
    FileDevice::new(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(img)
            .unwrap(),
    )
    .unwrap()
}

fn digest(img: &Path) -> Vec<u8> {
    std::fs::read(img).unwrap()
}

#[test]
fn refusals_write_nothing() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::TempDir::new().unwrap();
    // Not cleanly unmounted.
    let img = make_image(dir.path(), 16 * MIB, &["-t", "ext4", "-b", "1024"]);
    run(Command::new("debugfs")
        .args(["-w", "-R", "ssv state 0"])
        .arg(&img));
    truncate(&img, 32 * MIB);
    let before = digest(&img);
    let err = plan_grow(&open(&img), 32 * MIB).unwrap_err();
    assert!(matches!(err, FsError::NeedsFsck { .. }), "{err}");
    assert!(err.to_string().contains("e2fsck -f"), "{err}");
    assert_eq!(digest(&img), before);

    // Orphans listed.
    let img = make_image(dir.path(), 16 * MIB, &["-t", "ext4", "-b", "1024"]);
    run(Command::new("debugfs")
        .args(["-w", "-R", "ssv last_orphan 12"])
        .arg(&img));
    truncate(&img, 32 * MIB);
    let err = plan_grow(&open(&img), 32 * MIB).unwrap_err();
    assert!(err.to_string().contains("orphan"), "{err}");

    // Shrinking.
    let img = make_image(dir.path(), 16 * MIB, &["-t", "ext4", "-b", "1024"]);
    let err = plan_grow(&open(&img), 8 * MIB).unwrap_err();
    assert!(matches!(err, FsError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("shrinking"), "{err}");

    // A feature we do not grow.
    let img = dir.path().join("bigalloc.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    run(Command::new("mke2fs")
        .args(["-F", "-q", "-t", "ext4", "-O", "bigalloc", "-C", "16384"])
        .arg(&img));
    truncate(&img, 128 * MIB);
    let before = digest(&img);
    let err = plan_grow(&open(&img), 128 * MIB).unwrap_err();
    assert!(err.to_string().contains("bigalloc"), "{err}");
    assert_eq!(digest(&img), before);

    // A stale plan.
    let img = make_image(dir.path(), 16 * MIB, &["-t", "ext4", "-b", "1024"]);
    truncate(&img, 64 * MIB);
    let mut plan = plan_grow(&open(&img), 64 * MIB).unwrap();
    plan.after.blocks_count += 1;
    let before = digest(&img);
    let err = apply_grow(&mut open(&img), &plan).unwrap_err();
    assert!(matches!(err, FsError::StalePlan { .. }), "{err}");
    assert_eq!(digest(&img), before);
}

#[test]
fn probe_tells_ext_from_not_ext() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::TempDir::new().unwrap();
    let img = make_image(dir.path(), 16 * MIB, &["-t", "ext3", "-b", "1024"]);
    let info = probe(&open(&img)).unwrap().unwrap();
    assert_eq!(info.kind, "ext3");
    assert_eq!(info.block_size, 1024);
    assert_eq!(info.blocks_count, 16384);
    let zero = dir.path().join("zero.img");
    std::fs::File::create(&zero).unwrap().set_len(MIB).unwrap();
    assert!(probe(&open(&zero)).unwrap().is_none());
}

#[test]
fn ext2_without_sparse_super_converts_without_clobbering_bitmaps() {
    // Regression: classic descriptor copies were written into every group
    // with a superblock, including meta_bg groups whose block bitmap sits
    // right after their superblock.
    if !tools_present() {
        return;
    }
    let plan = compare(
        &[
            "-t",
            "ext2",
            "-b",
            "1024",
            "-O",
            "^sparse_super,^resize_inode",
        ],
        20 * MIB,
        700 * MIB,
        false,
    );
    assert_eq!(plan.strategy, Strategy::ConvertToMetaBg);
}

#[test]
fn ext4_1k_without_flex_bg_keeps_tables_in_their_groups() {
    if !tools_present() {
        return;
    }
    compare(
        &["-t", "ext4", "-b", "1024", "-O", "^flex_bg"],
        20 * MIB,
        700 * MIB,
        true,
    );
}

#[test]
fn ext4_4k_short_groups_pad_their_bitmaps() {
    if !tools_present() {
        return;
    }
    // 4096 blocks per group in 4 KiB blocks: bitmap bits past the group.
    compare(
        &["-t", "ext4", "-b", "4096", "-g", "4096"],
        20 * MIB,
        700 * MIB,
        true,
    );
}

#[test]
fn ext4_already_meta_bg_grows_like_resize2fs() {
    if !tools_present() {
        return;
    }
    let plan = compare(
        &["-t", "ext4", "-b", "1024", "-O", "meta_bg,^resize_inode"],
        20 * MIB,
        700 * MIB,
        true,
    );
    assert_eq!(plan.strategy, Strategy::MetaBg);
}

#[test]
fn ext4_128_byte_inodes_rebuild_the_resize_inode() {
    if !tools_present() {
        return;
    }
    compare(
        &["-t", "ext4", "-b", "1024", "-I", "128"],
        20 * MIB,
        700 * MIB,
        true,
    );
}

#[test]
fn rounding_never_shrinks() {
    if !tools_present() {
        return;
    }
    // 16385 blocks of 1 KiB: resize2fs' page rounding would give 16384.
    let dir = tempfile::TempDir::new().unwrap();
    let img = make_image(dir.path(), 16385 * 1024, &["-t", "ext4", "-b", "1024"]);
    truncate(&img, 16387 * 1024);
    let before = digest(&img);
    let plan = plan_grow(&open(&img), 16387 * 1024).unwrap();
    assert_eq!(plan.strategy, Strategy::NoChange);
    assert_eq!(plan.after, plan.before);
    apply_grow(&mut open(&img), &plan).unwrap();
    assert_eq!(digest(&img), before);
}

#[test]
fn a_corrupt_descriptor_is_named_and_nothing_written() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::TempDir::new().unwrap();
    let img = make_image(dir.path(), 16 * MIB, &["-t", "ext4", "-b", "1024"]);
    // Group 1's descriptor: table at block 2, 64 bytes each; its free
    // block count (offset 0x0C) changes, its checksum does not.
    let at = 2 * 1024 + 64 + 0x0C;
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(&img, &bytes).unwrap();
    truncate(&img, 64 * MIB);
    let before = digest(&img);
    match plan_grow(&open(&img), 64 * MIB).unwrap_err() {
        FsError::Corrupt {
            structure,
            field,
            offset,
            ..
        } => {
            assert_eq!(structure, "group descriptor");
            assert_eq!(field, "bg_checksum");
            assert_eq!(offset, 2 * 1024 + 64 + 0x1E);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(digest(&img), before);
}

/// Unmounts on drop, so a failing assertion leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn the_kernel_fills_a_filesystem_converted_to_meta_bg() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::TempDir::new().unwrap();
    let img = make_image(
        dir.path(),
        32 * MIB,
        &["-t", "ext4", "-b", "1024", "-O", "^resize_inode"],
    );
    truncate(&img, GIB);
    let plan = grow_ours(&img, GIB);
    assert_eq!(plan.strategy, Strategy::ConvertToMetaBg);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .arg("-o")
        .arg("loop")
        .arg(&img)
        .arg(&mnt)
        .output();
    if !mounted.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("skipping the kernel check: cannot loop-mount here ({mounted:?})");
        return;
    }
    let guard = Mounted(mnt.clone());
    // 600 MiB lands in groups that only exist since the grow.
    let chunk: Vec<u8> = (0..MIB as usize).map(|i| (i % 251) as u8).collect();
    let mut f = std::fs::File::create(mnt.join("big")).unwrap();
    for _ in 0..600 {
        std::io::Write::write_all(&mut f, &chunk).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    drop(guard);
    fsck_clean(&img);
    assert_eq!(file_bytes(&img, dir.path(), "large").len(), 1_500_000);
}

/// mke2fs, then `resize_inode` cleared with debugfs: `s_reserved_gdt_blocks`
/// stays (256 for 1 KiB blocks) and inode 7 keeps its blocks. e2fsck -fn
/// calls that rc 0 (it only offers to zero the field). Grown, it must be
/// clean with nothing to offer; resize2fs leaves inode 7 pointing at
/// overwritten blocks (e2fsck rc 4), so only counts are compared with it.
fn grow_stale_reserved_gdt(args: &[&str], size: u64, new_size: u64) -> vhdkit::fs::ext::GrowPlan {
    let dir = tempfile::TempDir::new().unwrap();
    let img = make_image(dir.path(), size, args);
    run(Command::new("debugfs")
        .args(["-w", "-R", "feature -resize_inode"])
        .arg(&img));
    assert_ne!(dumpe2fs(&img)["Reserved GDT blocks"], "0");
    fsck_clean(&img);
    let theirs = dir.path().join("theirs.img");
    copy(&img, &theirs);
    truncate(&theirs, new_size);
    run(Command::new("resize2fs").arg(&theirs));
    truncate(&img, new_size);
    let plan = grow_ours(&img, new_size);
    fsck_clean(&img);
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(&img)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !text.contains("? no"),
        "e2fsck still offers a fix after our grow:\n{text}"
    );
    let (da, db) = (dumpe2fs(&theirs), dumpe2fs(&img));
    for f in COUNTS {
        assert_eq!(da.get(f), db.get(f), "dumpe2fs field {f:?} differs");
    }
    // dumpe2fs leaves the line out when the count is 0.
    assert_eq!(
        db.get("Reserved GDT blocks").map_or("0", |v| v.as_str()),
        "0"
    );
    assert!(!db["Filesystem features"].contains("resize_inode"));
    for name in ["small", "medium", "large"] {
        let written = std::fs::read(dir.path().join(name)).unwrap();
        assert_eq!(file_bytes(&img, dir.path(), name), written, "{name}");
    }
    plan
}

#[test]
fn ext4_stale_reserved_gdt_blocks_without_resize_inode() {
    if !tools_present() {
        return;
    }
    let plan = grow_stale_reserved_gdt(&["-t", "ext4"], 64 * MIB, 400 * MIB);
    assert_eq!(plan.before.reserved_gdt_blocks, 256);
    assert_eq!(plan.after.first_meta_bg, None);
}

#[test]
fn ext3_stale_reserved_gdt_blocks_without_resize_inode() {
    if !tools_present() {
        return;
    }
    grow_stale_reserved_gdt(&["-t", "ext3"], 64 * MIB, 400 * MIB);
}

#[test]
fn ext4_stale_reserved_gdt_blocks_run_out_and_convert_to_meta_bg() {
    if !tools_present() {
        return;
    }
    // 1 KiB blocks, 64-byte descriptors: 16 groups (128 MiB) per
    // descriptor block; 1 + 63 reserved cover 8 GiB, so 9 GiB converts.
    let plan = grow_stale_reserved_gdt(&["-t", "ext4", "-b", "1024"], 8 * MIB, 9 * GIB);
    assert_eq!(plan.strategy, Strategy::ConvertToMetaBg);
    let first = plan.after.first_meta_bg.unwrap();
    assert!(u64::from(first) <= plan.after.desc_blocks, "{plan:?}");
}
