//! Growing FAT volumes made by mkfs.fat, filled with mtools, checked with
//! `fsck.fat -n` and read back with `mcopy`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use vhdkit::disk::device::{Device, FileDevice, SliceDevice};
use vhdkit::fs::fat::{self, FatError};
use vhdkit::partition::{self, GrowRule};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

fn have_all(tools: &[&str]) -> bool {
    for tool in tools {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            eprintln!("skipping: {tool} is not installed");
            return false;
        }
    }
    true
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn set_len(p: &Path, bytes: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(bytes)
        .unwrap();
}

fn open(p: &Path) -> FileDevice {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    FileDevice::new(f).unwrap()
}

/// Files put on every volume: (name on the volume, contents).
fn payload() -> Vec<(&'static str, Vec<u8>)> {
    let pattern = |n: usize, seed: u32| -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                x.to_le_bytes()[2]
            })
            .collect()
    };
    vec![
        ("::/SMALL.TXT", b"hello from vhdkit\n".to_vec()),
        ("::/big.bin", pattern(700 * 1024, 1)),
        ("::/sub/inner.bin", pattern(70 * 1024, 2)),
    ]
}

/// `image` is a file path, or `file@@offset` for mtools.
fn fill(dir: &Path, image: &str) {
    ok("mmd", &["-i", image, "::/sub"]);
    for (i, (name, data)) in payload().iter().enumerate() {
        let src = dir.join(format!("src{i}"));
        std::fs::write(&src, data).unwrap();
        ok("mcopy", &["-i", image, src.to_str().unwrap(), name]);
    }
}

fn check_files(dir: &Path, image: &str) {
    for (i, (name, data)) in payload().iter().enumerate() {
        let dst = dir.join(format!("back{i}"));
        let _ = std::fs::remove_file(&dst);
        ok("mcopy", &["-i", image, name, dst.to_str().unwrap()]);
        assert!(std::fs::read(&dst).unwrap() == *data, "{name} differs");
    }
}

/// `fsck.fat -n -v` must exit 0 and report `total` sectors.
fn fsck(p: &Path, total: u64) {
    let out = ok("fsck.fat", &["-n", "-v", p.to_str().unwrap()]);
    assert!(
        out.contains(&format!("{total} sectors total")),
        "fsck.fat -v does not show {total} sectors:\n{out}"
    );
    for bad in [
        "differences",
        "Auto-correcting",
        "wrong",
        "Free cluster summary",
    ] {
        assert!(!out.contains(bad), "fsck.fat reports {bad:?}:\n{out}");
    }
}

fn mkfs(dir: &Path, name: &str, bits: &str, bytes: u64, extra: &[&str]) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(bytes).unwrap();
    let mut args = vec!["-F", bits];
    args.extend_from_slice(extra);
    args.push(p.to_str().unwrap());
    ok("mkfs.fat", &args);
    p
}

fn grow_bare(p: &Path, new_bytes: u64) -> Result<fat::FatGrowPlan, FatError> {
    set_len(p, new_bytes);
    let mut dev = open(p);
    let plan = fat::plan_grow(&dev, new_bytes)?;
    fat::apply_grow(&mut dev, &plan)?;
    Ok(plan)
}

fn bare_case(
    bits: &str,
    start: u64,
    extra: &[&str],
    grow_to: impl Fn(&fat::FatInfo) -> u64,
    expect_move: bool,
) {
    if !have_all(&["mkfs.fat", "fsck.fat", "mcopy", "mmd"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = mkfs(dir.path(), "fat.img", bits, start, extra);
    let image = p.to_str().unwrap().to_string();
    fill(dir.path(), &image);
    let before = fat::probe(&open(&p)).unwrap().unwrap();
    assert_eq!(before.fat_type, format!("FAT{bits}"));
    let new_bytes = grow_to(&before);
    let plan = grow_bare(&p, new_bytes).unwrap();
    assert_eq!(plan.moves_data, expect_move, "{plan:?}");
    assert!(
        !plan.notes.iter().any(|n| n.contains("cleanly")),
        "{:?}",
        plan.notes
    );
    let total = new_bytes / u64::from(before.bytes_per_sector);
    assert_eq!(plan.after.total_sectors, total);
    fsck(&p, total);
    let minfo = ok("minfo", &["-i", &image, "::"]);
    assert!(
        minfo.contains(&format!("big size: {total} sectors"))
            || minfo.contains(&format!("small size: {total} sectors")),
        "minfo:\n{minfo}"
    );
    check_files(dir.path(), &image);
    // The new space is usable: a file as large as the growth fits.
    let added = u64::from(plan.after.cluster_count - plan.before.cluster_count)
        * u64::from(before.sectors_per_cluster)
        * u64::from(before.bytes_per_sector);
    let fill_file = dir.path().join("fill");
    let free_before = added.min(8 * MIB);
    std::fs::write(
        &fill_file,
        vec![0xA5; usize::try_from(free_before).unwrap()],
    )
    .unwrap();
    ok(
        "mcopy",
        &["-i", &image, fill_file.to_str().unwrap(), "::/FILL.BIN"],
    );
    fsck(&p, total);
}

#[test]
fn fat16_in_place_to_largest_size() {
    bare_case(
        "16",
        32 * MIB,
        &[],
        |i| i.max_in_place_bytes / 512 * 512,
        false,
    );
}

#[test]
fn fat32_in_place_to_largest_size() {
    bare_case(
        "32",
        64 * MIB,
        &[],
        |i| i.max_in_place_bytes / 512 * 512,
        false,
    );
}

#[test]
fn fat12_in_place_small_growth() {
    bare_case(
        "12",
        4 * MIB,
        &[],
        |i| i.total_sectors * 512 + 8 * KIB,
        false,
    );
}

#[test]
fn fat16_grows_moving_the_data_area() {
    bare_case("16", 32 * MIB, &[], |_| 100 * MIB, true);
}

#[test]
fn fat32_grows_moving_the_data_area() {
    bare_case("32", 64 * MIB, &[], |_| 512 * MIB, true);
}

#[test]
fn fat32_with_one_fat_and_4k_clusters_grows() {
    bare_case(
        "32",
        300 * MIB,
        &["-f", "1", "-s", "8"],
        |_| 2048 * MIB,
        true,
    );
}

#[test]
fn fat32_with_4k_sectors_grows() {
    bare_case("32", 300 * MIB, &["-S", "4096"], |_| 1024 * MIB, true);
}

#[test]
fn fat16_with_4k_sectors_grows_in_place() {
    bare_case(
        "16",
        64 * MIB,
        &["-S", "4096"],
        |i| i.max_in_place_bytes,
        false,
    );
}

#[test]
fn fat12_grows_moving_the_data_area() {
    bare_case("12", 4 * MIB, &[], |_| 7 * MIB, true);
}

#[test]
fn refuses_changing_the_fat_type() {
    if !have_all(&["mkfs.fat"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = mkfs(dir.path(), "fat16.img", "16", 32 * MIB, &[]);
    let max = fat::probe(&open(&p)).unwrap().unwrap().max_in_place_bytes;
    let e = grow_bare(&p, 200 * MIB).unwrap_err();
    assert!(
        matches!(
            e,
            FatError::TypeChange {
                from: "FAT16",
                to: "FAT32",
                ..
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("from FAT16 to FAT32") && msg.contains(&max.to_string()),
        "{msg}"
    );
    // Nothing was written.
    fsck_quiet(&p);

    let p = mkfs(dir.path(), "fat12.img", "12", 4 * MIB, &[]);
    let e = grow_bare(&p, 64 * MIB).unwrap_err();
    assert!(
        matches!(
            e,
            FatError::TypeChange {
                from: "FAT12",
                to: "FAT16",
                ..
            }
        ),
        "{e}"
    );
}

fn fsck_quiet(p: &Path) {
    if have_all(&["fsck.fat"]) {
        ok("fsck.fat", &["-n", p.to_str().unwrap()]);
    }
}

#[test]
fn one_cluster_past_the_in_place_limit_moves_the_data_area() {
    bare_case(
        "16",
        32 * MIB,
        &[],
        |i| i.max_in_place_bytes / 512 * 512 + 512,
        true,
    );
}

#[test]
fn not_fat_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("zero.img");
    std::fs::File::create(&p).unwrap().set_len(MIB).unwrap();
    assert_eq!(fat::probe(&open(&p)).unwrap(), None);
    assert!(matches!(
        fat::plan_grow(&open(&p), MIB),
        Err(FatError::NotFat)
    ));
}

/// An MBR disk whose partition 1 holds FAT32: grow the disk, the partition
/// (Nova's rule), then the filesystem through a slice of the disk.
#[test]
fn fat_inside_an_mbr_partition() {
    if !have_all(&["sfdisk", "mkfs.fat", "fsck.fat", "mcopy", "mmd"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(80 * MIB)
        .unwrap();
    let mut child = Command::new("sfdisk")
        .args(["-q", disk.to_str().unwrap()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\nstart=2048, type=c, bootable\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let part_bytes = 80 * MIB - MIB;
    let kib = (part_bytes / KIB).to_string();
    ok(
        "mkfs.fat",
        &["-F", "32", "--offset", "2048", disk.to_str().unwrap(), &kib],
    );
    let image = format!("{}@@{}", disk.to_str().unwrap(), MIB);
    fill(dir.path(), &image);

    set_len(&disk, 300 * MIB);
    let mut dev = open(&disk);
    let size = dev.size_bytes();
    let pplan = partition::plan_grow_partition(&dev, size, GrowRule::Nova).unwrap();
    partition::apply(&mut dev, &pplan).unwrap();
    let p = &pplan.after.partitions[0];
    let (start, len) = (p.start_lba * 512, p.size_sectors * 512);
    let mut slice = SliceDevice::new(&mut dev, start, len).unwrap();
    let plan = fat::plan_grow(&slice, len).unwrap();
    fat::apply_grow(&mut slice, &plan).unwrap();
    drop(dev);

    // fsck.fat has no offset option: check a copy of the partition.
    let bytes = std::fs::read(&disk).unwrap();
    let part = dir.path().join("part.img");
    let (s, e) = (
        usize::try_from(start).unwrap(),
        usize::try_from(start + len).unwrap(),
    );
    std::fs::write(&part, &bytes[s..e]).unwrap();
    fsck(&part, len / 512);
    check_files(dir.path(), &image);
}

#[test]
fn in_place_only_mode_refuses_and_writes_nothing() {
    if !have_all(&["mkfs.fat", "fsck.fat"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = mkfs(dir.path(), "fat32.img", "32", 64 * MIB, &[]);
    let original = std::fs::read(&p).unwrap();
    set_len(&p, 128 * MIB);
    let dev = open(&p);
    let e = fat::plan_grow_with(&dev, 128 * MIB, fat::GrowMode::InPlaceOnly).unwrap_err();
    assert!(
        matches!(
            e,
            FatError::NeedsMove {
                fat_sectors: 1009,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("FAT would need to grow from 1009 to "),
        "{e}"
    );
    let now = std::fs::read(&p).unwrap();
    assert!(now[..original.len()] == original[..]);
    fsck_quiet(&p);
}
