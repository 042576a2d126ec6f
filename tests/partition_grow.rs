//! Growing partition tables made by sfdisk and sgdisk, checked with
//! `sfdisk --json`, `sgdisk -v` and (when installed) `growpart`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{have_tool, run_tool};
use vhdkit::cloud::nova::{self, NovaRefusal};
use vhdkit::disk::device::FileDevice;
use vhdkit::partition::{self, GrowRule, PartError};

const MIB: u64 = 1024 * 1024;

fn have(tool: &str) -> bool {
    have_tool(tool, "--version")
}

fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> Output {
    run_tool(None, cmd, args, stdin)
}

fn image(dir: &Path, name: &str, bytes: u64) -> PathBuf {
    let p = dir.join(name);
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(bytes).unwrap();
    p
}

fn grow_file(p: &Path, bytes: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(bytes)
        .unwrap();
}

fn sfdisk_script(p: &Path, script: &str) {
    let out = run("sfdisk", &["-q", p.to_str().unwrap()], Some(script));
    assert!(
        out.status.success(),
        "sfdisk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `sfdisk --json`, with stderr (warnings such as a PMBR size mismatch).
fn sfdisk_json(p: &Path) -> (serde_json::Value, String) {
    let out = run("sfdisk", &["--json", p.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "sfdisk --json: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Why a grow failed: Nova's preconditions (checked first, as `grow/`
/// does), or the partition grower.
#[derive(Debug)]
enum GrowError {
    Refused(NovaRefusal),
    Part(PartError),
}

impl std::fmt::Display for GrowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrowError::Refused(r) => f.write_str(&r.server_message()),
            GrowError::Part(e) => e.fmt(f),
        }
    }
}

/// Nova's preconditions on the table, then the grower's plan.
fn plan(dev: &FileDevice, size: u64, rule: GrowRule) -> Result<partition::PartGrowPlan, GrowError> {
    let table = partition::read_table(dev).map_err(GrowError::Part)?;
    nova::preconditions(&table).map_err(GrowError::Refused)?;
    partition::plan_grow_partition(dev, size, rule).map_err(GrowError::Part)
}

fn grow(p: &Path, rule: GrowRule) -> Result<partition::PartGrowPlan, GrowError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    let mut dev = FileDevice::new(file).unwrap();
    let size = vhdkit::disk::device::Device::size_bytes(&dev);
    let plan = plan(&dev, size, rule)?;
    partition::apply(&mut dev, &plan).map_err(GrowError::Part)?;
    Ok(plan)
}

fn part0(v: &serde_json::Value) -> &serde_json::Value {
    &v["partitiontable"]["partitions"][0]
}

/// growpart from cloud-guest-utils (before 0.34: no MiB rounding) on a copy;
/// returns its new size in sectors.
fn growpart_size(p: &Path) -> Option<u64> {
    if !have("growpart") {
        return None;
    }
    let copy = p.with_extension("growpart");
    std::fs::copy(p, &copy).unwrap();
    let out = run("growpart", &[copy.to_str().unwrap(), "1"], None);
    assert!(
        out.status.success(),
        "growpart: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (v, _) = sfdisk_json(&copy);
    part0(&v)["size"].as_u64()
}

#[test]
fn mbr_boot_flag_nova_rule() {
    if !have("sfdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = image(dir.path(), "mbr.img", 20 * MIB);
    sfdisk_script(
        &p,
        "label: dos\nlabel-id: 0x12345678\nstart=2048, size=8192, type=83, bootable\n",
    );
    grow_file(&p, 64 * MIB);
    let plan = grow(&p, GrowRule::Nova).unwrap();
    assert!(plan.partition_changed);
    let (v, _) = sfdisk_json(&p);
    assert_eq!(v["partitiontable"]["id"], "0x12345678");
    let q = part0(&v);
    assert_eq!(q["start"], 2048);
    assert_eq!(q["size"], 64 * 2048 - 2048);
    assert_eq!(q["type"], "83");
    assert_eq!(q["bootable"], true);

    // The entry, CHS included, is byte for byte what sfdisk writes itself.
    let r = image(dir.path(), "ref.img", 64 * MIB);
    sfdisk_script(
        &r,
        "label: dos\nlabel-id: 0x12345678\nstart=2048, size=129024, type=83, bootable\n",
    );
    let ours = std::fs::read(&p).unwrap();
    let theirs = std::fs::read(&r).unwrap();
    assert_eq!(ours[446..462], theirs[446..462]);
}

#[test]
fn mbr_growpart_rule() {
    if !have("sfdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = image(dir.path(), "mbr.img", 20 * MIB);
    sfdisk_script(&p, "label: dos\nstart=2048, size=8192, type=c\n");
    grow_file(&p, 64 * MIB);
    let unrounded = growpart_size(&p);
    grow(&p, GrowRule::Growpart).unwrap();
    let (v, _) = sfdisk_json(&p);
    let q = part0(&v);
    assert_eq!(q["start"], 2048);
    // end at most sectors - 34, length floored to whole MiB.
    assert_eq!(q["size"], (64 * 2048 - 34 - 2048 + 1) / 2048 * 2048);
    assert_eq!(q["type"], "c");
    assert!(q.get("bootable").is_none());
    if let Some(n) = unrounded {
        assert_eq!(q["size"], n / 2048 * 2048, "growpart < 0.34 gave {n}");
    }
}

#[test]
fn mbr_refusals_use_novas_messages() {
    if !have("sfdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let two = image(dir.path(), "two.img", 20 * MIB);
    sfdisk_script(
        &two,
        "label: dos\nstart=2048, size=4096, type=83\nstart=8192, size=4096, type=83\n",
    );
    let only2 = image(dir.path(), "only2.img", 20 * MIB);
    sfdisk_script(&only2, "label: dos\n2: start=2048, size=4096, type=83\n");
    for rule in [GrowRule::Nova, GrowRule::Growpart] {
        let e = grow(&two, rule).unwrap_err();
        assert!(matches!(
            e,
            GrowError::Refused(NovaRefusal::NotOnePartition { count: 2 })
        ));
        assert_eq!(
            e.to_string(),
            "Server disk was unable to be resized because: Disk must have only one partition."
        );
        let e = grow(&only2, rule).unwrap_err();
        assert!(matches!(
            e,
            GrowError::Refused(NovaRefusal::NotPartitionOne { number: 2 })
        ));
        assert_eq!(
            e.to_string(),
            "Server disk was unable to be resized because: The only partition should be partition 1."
        );
    }
}

fn make_gpt(dir: &Path, name: &str) -> Option<PathBuf> {
    if !have("sgdisk") || !have("sfdisk") {
        return None;
    }
    let p = image(dir, name, 20 * MIB);
    let out = run(
        "sgdisk",
        &[
            "-n",
            "1:2048:+4M",
            "-t",
            "1:8300",
            "-c",
            "1:rootfs",
            "-A",
            "1:set:2",
            "-A",
            "1:set:60",
            p.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "sgdisk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(p)
}

fn sgdisk_verify(p: &Path) {
    let out = run("sgdisk", &["-v", p.to_str().unwrap()], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("No problems found"),
        "sgdisk -v: {text}"
    );
}

fn check_gpt(p: &Path, before: &serde_json::Value, sectors: u64, size: u64) {
    sgdisk_verify(p);
    let (v, stderr) = sfdisk_json(p);
    assert!(stderr.trim().is_empty(), "sfdisk warns: {stderr}");
    assert_eq!(v["partitiontable"]["lastlba"], sectors - 34);
    assert_eq!(v["partitiontable"]["id"], before["partitiontable"]["id"]);
    let (q, b) = (part0(&v), part0(before));
    assert_eq!(q["start"], 2048);
    assert_eq!(q["size"], size);
    for key in ["type", "uuid", "name", "attrs"] {
        assert_eq!(q[key], b[key], "{key}");
    }
    assert_eq!(q["attrs"], "LegacyBIOSBootable GUID:60");
}

#[test]
fn gpt_nova_rule() {
    let dir = tempfile::tempdir().unwrap();
    let Some(p) = make_gpt(dir.path(), "gpt.img") else {
        return;
    };
    let (before, _) = sfdisk_json(&p);
    grow_file(&p, 64 * MIB);
    grow(&p, GrowRule::Nova).unwrap();
    let sectors = 64 * 2048;
    check_gpt(&p, &before, sectors, sectors - 34 - 2048 + 1);
}

#[test]
fn gpt_growpart_rule() {
    let dir = tempfile::tempdir().unwrap();
    let Some(p) = make_gpt(dir.path(), "gpt.img") else {
        return;
    };
    let (before, _) = sfdisk_json(&p);
    grow_file(&p, 64 * MIB);
    let unrounded = growpart_size(&p);
    grow(&p, GrowRule::Growpart).unwrap();
    let sectors = 64 * 2048;
    let size = (sectors - 34 - 2048 + 1) / 2048 * 2048;
    check_gpt(&p, &before, sectors, size);
    if let Some(n) = unrounded {
        assert_eq!(size, n / 2048 * 2048, "growpart < 0.34 gave {n}");
    }
}

#[test]
fn gpt_not_grown_disk_still_verifies() {
    // Same size: nothing moves but the plan still rewrites consistent tables.
    let dir = tempfile::tempdir().unwrap();
    let Some(p) = make_gpt(dir.path(), "gpt.img") else {
        return;
    };
    let (before, _) = sfdisk_json(&p);
    grow(&p, GrowRule::Nova).unwrap();
    check_gpt(&p, &before, 20 * 2048, 20 * 2048 - 34 - 2048 + 1);
}

#[test]
fn gpt_refusals() {
    if !have("sgdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = image(dir.path(), "gpt2.img", 20 * MIB);
    let out = run("sgdisk", &["-n", "2:2048:+4M", p.to_str().unwrap()], None);
    assert!(out.status.success());
    grow_file(&p, 40 * MIB);
    let e = grow(&p, GrowRule::Nova).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Server disk was unable to be resized because: The only partition should be partition 1."
    );
    let out = run(
        "sgdisk",
        &["-e", "-n", "1:12288:+4M", p.to_str().unwrap()],
        None,
    );
    assert!(out.status.success());
    let e = grow(&p, GrowRule::Growpart).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Server disk was unable to be resized because: Disk must have only one partition."
    );
    // A corrupt header is refused, naming the field.
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[512 + 40] ^= 0xff;
    std::fs::write(&p, &bytes).unwrap();
    let e = grow(&p, GrowRule::Nova).unwrap_err();
    assert!(
        e.to_string().contains("GPT header at 0x210: header_crc32"),
        "{e}"
    );
}

#[test]
fn gpt_with_a_256_entry_array() {
    if !have("sgdisk") || !have("sfdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = image(dir.path(), "gpt256.img", 20 * MIB);
    let out = run(
        "sgdisk",
        &[
            "--resize-table=256",
            "-n",
            "1:2048:+4M",
            "-c",
            "1:data",
            p.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "sgdisk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    grow_file(&p, 48 * MIB);
    grow(&p, GrowRule::Nova).unwrap();
    sgdisk_verify(&p);
    let (v, stderr) = sfdisk_json(&p);
    assert!(stderr.trim().is_empty(), "sfdisk warns: {stderr}");
    // 256 entries of 128 bytes: 64 sectors of array, then the header.
    let sectors = 48 * 2048;
    assert_eq!(v["partitiontable"]["lastlba"], sectors - 66);
    assert_eq!(part0(&v)["size"], sectors - 66 - 2048 + 1);
    assert_eq!(part0(&v)["name"], "data");
}

/// An MBR cannot describe more than 2^32 sectors: Nova's rule is refused
/// (parted would fail), growpart's caps the end (a sparse 3 TiB file).
#[test]
fn mbr_beyond_2_tib() {
    if !have("sfdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = image(dir.path(), "big.img", 20 * MIB);
    sfdisk_script(&p, "label: dos\nstart=2048, size=8192, type=83\n");
    if std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(3 << 40)
        .is_err()
    {
        eprintln!("skipping: no sparse 3 TiB file here");
        return;
    }
    let e = grow(&p, GrowRule::Nova).unwrap_err();
    assert!(
        matches!(e, GrowError::Part(PartError::Unsupported(ref f)) if f.field == "size_sectors"),
        "{e}"
    );
    let plan = grow(&p, GrowRule::Growpart).unwrap();
    assert!(!plan.notes.is_empty());
    let (v, _) = sfdisk_json(&p);
    assert_eq!(part0(&v)["start"], 2048);
    assert_eq!(part0(&v)["size"], (1u64 << 32) - 2048);
}

#[test]
fn bare_fat_filesystem_is_no_table() {
    if !have("mkfs.fat") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for bits in ["12", "16", "32"] {
        let p = image(dir.path(), "bare.img", 40 * MIB);
        let out = run("mkfs.fat", &["-F", bits, p.to_str().unwrap()], None);
        assert!(out.status.success());
        let dev = FileDevice::new(std::fs::File::open(&p).unwrap()).unwrap();
        let t = partition::read_table(&dev).unwrap();
        assert_eq!(t.kind, partition::TableKind::None, "FAT{bits}");
        let e = plan(&dev, 40 * MIB, GrowRule::Nova).unwrap_err();
        assert!(matches!(
            e,
            GrowError::Refused(NovaRefusal::NotOnePartition { count: 0 })
        ));
    }
}
