//! `preflight` through the real binary: one image per target rule, PASS and
//! FAIL; records checked against md5sum and sha512sum; Swift segments
//! against MD5s of the split file; XenServer chains as folders and tarballs.

use std::path::{Path, PathBuf};
use std::process::Command;

use md5::{Digest as _, Md5};
use serde_json::Value;
use vhdkit::format::footer::Creator;
use vhdkit::format::header::{encode_utf16le, DEFAULT_BLOCK_SIZE};
use vhdkit::format::{DiskType, DynamicHeader, Footer, ParentLocator, PlatformCode};
use vhdkit::pipeline::{self, plan::plan_dynamic, DataSource, NoProgress};

const MIB: u64 = 1 << 20;

fn vhdkit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vhdkit"))
        .args(args)
        .output()
        .expect("run vhdkit")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs `vhdkit preflight IMAGE ARGS --json`: (exit status, report).
fn preflight(image: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["preflight", p(image), "--json"];
    all.extend_from_slice(args);
    let out = vhdkit(&all);
    let code = out.status.code().unwrap_or(-1);
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "preflight {args:?}: exit {code}, not JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

/// Every line of the report with `code`, as (status, message).
fn lines<'a>(report: &'a Value, code: &str) -> Vec<(&'a str, &'a str)> {
    let mut all: Vec<&Value> = Vec::new();
    for section in [
        &report["structure"]["lines"],
        &report["record"]["lines"],
        &report["lint"],
        &report["target_rules"],
    ] {
        all.extend(section.as_array().into_iter().flatten());
    }
    for f in report["flavors"].as_array().into_iter().flatten() {
        all.extend(f["lines"].as_array().into_iter().flatten());
    }
    all.into_iter()
        .filter(|l| l["code"] == code)
        .map(|l| {
            (
                l["status"].as_str().unwrap(),
                l["message"].as_str().unwrap(),
            )
        })
        .collect()
}

fn status<'a>(report: &'a Value, code: &str) -> Vec<&'a str> {
    lines(report, code).into_iter().map(|l| l.0).collect()
}

fn fix<'a>(report: &'a Value, code: &str) -> Option<&'a str> {
    report["target_rules"]
        .as_array()?
        .iter()
        .find(|l| l["code"] == code)?["fix"]
        .as_str()
}

/// A raw file of `size` bytes with pseudo-random data in its first `data` bytes.
fn raw(dir: &Path, name: &str, size: u64, data: u64) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let path = dir.join(name);
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(size).unwrap();
    let mut seed = size ^ 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..data)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8 | 1
        })
        .collect();
    f.write_all_at(&bytes, 0).unwrap();
    path
}

fn convert(input: &Path, output: &Path, args: &[&str]) {
    let mut all = vec!["convert", p(input), p(output), "-q"];
    all.extend_from_slice(args);
    let out = vhdkit(&all);
    assert!(
        out.status.success(),
        "convert {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tool_hash(tool: &str, path: &Path) -> String {
    let out = Command::new(tool).arg(path).output().expect(tool);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A dynamic VHD of `size` bytes, creator `creator`, from a raw file.
fn dynamic(dir: &Path, name: &str, size: u64, creator: &str) -> PathBuf {
    let r = raw(dir, &format!("{name}.raw"), size, 3 * MIB);
    let out = dir.join(name);
    convert(&r, &out, &["--to", "dynamic", "--creator", creator]);
    out
}

/// Writes a differencing disk over `parent` (no data blocks of its own),
/// its locator naming `locator`; `parent_id` overrides the id it expects;
/// `hidden` sets XenServer's hidden byte.
fn child(parent: &Path, out: &Path, locator: &str, parent_id: Option<[u8; 16]>, hidden: bool) {
    let bytes = std::fs::read(parent).unwrap();
    let pf = Footer::parse(&bytes[bytes.len() - 512..], 0).unwrap();
    let mut footer = Footer::new(
        DiskType::Differencing,
        pf.current_size,
        Creator::by_name("tap").unwrap(),
        pf.time_stamp,
        *uuid::Uuid::new_v4().as_bytes(),
    );
    if hidden {
        footer.reserved[0] = 1;
        footer.seal();
    }
    let mut header = DynamicHeader::new(0, 0, DEFAULT_BLOCK_SIZE);
    header.parent_unique_id = parent_id.unwrap_or(pf.unique_id);
    header.parent_time_stamp = pf.time_stamp;
    header.set_parent_name(locator);
    let loc = ParentLocator {
        platform_code: PlatformCode::W2ru.code(),
        platform_data_space: 0,
        platform_data_length: 0,
        reserved: 0,
        platform_data_offset: 0,
    };
    let plan = plan_dynamic(&footer, &header, &[(loc, encode_utf16le(locator))], &[]).unwrap();
    let src = vhdkit::disk::Source::open(parent).unwrap();
    let f = std::fs::File::create(out).unwrap();
    pipeline::run(&plan, &DataSource::File(&src), &f, out, &[], &NoProgress).unwrap();
}

/// A folder `chain/` with `0.vhd` (child) over `1.vhd` (dynamic base).
fn chain(dir: &Path, parent_id: Option<[u8; 16]>, hidden: bool) -> PathBuf {
    let c = dir.join("chain");
    std::fs::create_dir(&c).unwrap();
    let base = dynamic(dir, "base.vhd", 8 * MIB, "tap");
    std::fs::rename(&base, c.join("1.vhd")).unwrap();
    child(
        &c.join("1.vhd"),
        &c.join("0.vhd"),
        "1.vhd",
        parent_id,
        hidden,
    );
    c
}

#[test]
fn glance_dynamic_passes_with_the_record_md5sum_and_sha512sum_give() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "disk.vhd", 8 * MIB, "win");
    let (code, r) = preflight(&img, &["--property", "com.example__1__release_id=7"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["verdict"]["ready"], true);
    let rec = &r["record"]["record"];
    assert_eq!(rec["checksum"], tool_hash("md5sum", &img));
    assert_eq!(rec["os_hash_value"], tool_hash("sha512sum", &img));
    assert_eq!(rec["os_hash_algo"], "sha512");
    assert_eq!(rec["size"], std::fs::metadata(&img).unwrap().len());
    assert_eq!(rec["virtual_size"], 8 * MIB);
    assert_eq!(rec["disk_format"], "vhd");
    assert_eq!(rec["container_format"], "bare");
    assert_eq!(rec["min_disk"], 1);
    assert_eq!(rec["com.example__1__release_id"], "7");
    assert_eq!(r["record"]["create_request"]["name"], "disk");
    assert!(r["record"]["create_request"].get("checksum").is_none());
    assert_eq!(status(&r, "GLANCE_FORMAT"), ["PASS"]);
}

#[test]
fn glance_refuses_a_fixed_vhd_with_a_convert_fix() {
    let t = tempfile::tempdir().unwrap();
    let r0 = raw(t.path(), "d.raw", 8 * MIB, MIB);
    let img = t.path().join("fixed.vhd");
    convert(&r0, &img, &["--to", "fixed"]);
    let (code, r) = preflight(&img, &[]);
    assert_eq!(code, 1);
    assert_eq!(status(&r, "GLANCE_FIXED"), ["FAIL"]);
    let f = fix(&r, "GLANCE_FIXED").unwrap();
    assert!(
        f.starts_with("vhdkit convert ") && f.ends_with("--to dynamic"),
        "{f}"
    );
    // The fix works.
    let out = t.path().join("fixed-dynamic.vhd");
    convert(&img, &out, &["--to", "dynamic"]);
    assert_eq!(preflight(&out, &[]).0, 0);
}

#[test]
fn glance_warns_on_a_qemu_chs_rounded_size() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "q.vhd", 8 * MIB + 512, "qemu");
    let (code, r) = preflight(&img, &[]);
    assert_eq!(code, 0);
    assert_eq!(status(&r, "CHS_SIZE"), ["WARN"]);
}

#[test]
fn a_raw_file_fails_every_target() {
    let t = tempfile::tempdir().unwrap();
    let img = raw(t.path(), "disk.img", 4 * MIB, MIB);
    for target in ["glance", "rackspace", "xenserver", "azure"] {
        let (code, r) = preflight(&img, &["--target", target]);
        assert_eq!(code, 1, "{target}");
        assert_eq!(r["verdict"]["ready"], false);
        assert!(status(&r, "NOT_VHD").contains(&"FAIL"), "{target}: {r:#}");
    }
}

#[test]
fn rackspace_passes_a_dynamic_tap_vhd() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "tap.vhd", 8 * MIB, "tap");
    let (code, r) = preflight(&img, &["--target", "rackspace"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(status(&r, "RACKSPACE_CREATOR"), ["PASS"]);
    assert!(r.get("segments").is_none());
}

#[test]
fn rackspace_refuses_a_qemu_creator() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "q.vhd", 8 * MIB, "qemu");
    let (code, r) = preflight(&img, &["--target", "rackspace"]);
    assert_eq!(code, 1);
    let l = lines(&r, "RACKSPACE_CREATOR");
    assert_eq!(l[0].0, "FAIL");
    assert!(l[0].1.contains("do not resize"));
    assert!(fix(&r, "RACKSPACE_CREATOR")
        .unwrap()
        .ends_with("--to dynamic --creator tap"));
}

#[test]
fn rackspace_refuses_a_fixed_vhd() {
    let t = tempfile::tempdir().unwrap();
    let r0 = raw(t.path(), "d.raw", 8 * MIB, MIB);
    let img = t.path().join("f.vhd");
    convert(&r0, &img, &["--to", "fixed", "--creator", "tap"]);
    let (code, r) = preflight(&img, &["--target", "rackspace"]);
    assert_eq!(code, 1);
    assert_eq!(status(&r, "RACKSPACE_DYNAMIC"), ["FAIL"]);
}

#[test]
fn rackspace_segments_carry_the_md5_of_each_piece() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "seg.vhd", 8 * MIB, "tap");
    let (code, r) = preflight(&img, &["--target", "rackspace", "--segment-size", "1M"]);
    assert_eq!(code, 0, "{r:#}");
    let bytes = std::fs::read(&img).unwrap();
    let want: Vec<(String, u64)> = bytes
        .chunks(MIB as usize)
        .map(|c| (hex(&Md5::digest(c)), c.len() as u64))
        .collect();
    let segs = r["segments"]["segments"].as_array().unwrap();
    assert_eq!(segs.len(), want.len());
    let manifest = r["segments"]["manifest"].as_array().unwrap();
    for (i, (etag, len)) in want.iter().enumerate() {
        assert_eq!(segs[i]["etag"], *etag);
        assert_eq!(segs[i]["size_bytes"], *len);
        assert_eq!(manifest[i]["etag"], *etag);
        assert_eq!(manifest[i]["size_bytes"], *len);
        assert_eq!(manifest[i]["path"], segs[i]["path"]);
    }
    // The whole-file digests come from the same pass.
    assert_eq!(r["record"]["record"]["checksum"], tool_hash("md5sum", &img));
}

#[test]
fn azure_passes_a_fixed_vhd_aligned_to_a_mib() {
    let t = tempfile::tempdir().unwrap();
    let r0 = raw(t.path(), "d.raw", 20 * MIB + 512, MIB);
    let img = t.path().join("azure.vhd");
    convert(&r0, &img, &["--to", "fixed", "--align", "1M"]);
    let (code, r) = preflight(&img, &["--target", "azure"]);
    assert_eq!(code, 0, "{r:#}");
    for c in [
        "AZURE_FIXED",
        "AZURE_MIB",
        "AZURE_FILE_SIZE",
        "AZURE_MIN_SIZE",
    ] {
        assert_eq!(status(&r, c), ["PASS"], "{c}");
    }
    // What Azure needs, not a Glance record.
    let file_size = std::fs::metadata(&img).unwrap().len();
    assert_eq!(r["record"], Value::Null, "{r:#}");
    let a = &r["azure"];
    assert_eq!(a["disk_type"], "fixed");
    assert_eq!(a["virtual_size"], 21 * MIB);
    assert_eq!(a["whole_mib"], true);
    assert_eq!(a["file_size"], file_size);
    assert_eq!(a["upload_size_bytes"], file_size);
    assert_eq!(file_size, 21 * MIB + 512);
    let commands: Vec<&str> = a["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(commands[0].starts_with("az disk create "), "{commands:?}");
    assert!(
        commands[0].contains(&format!(
            "--upload-type Upload --upload-size-bytes {file_size}"
        )),
        "{commands:?}"
    );
    assert!(commands
        .iter()
        .any(|c| c.starts_with("az disk grant-access ")));
    let copy = format!("azcopy copy {} \"<SAS>\" --blob-type PageBlob", p(&img));
    assert!(commands.contains(&copy.as_str()), "{commands:?}");
    let out = vhdkit(&["preflight", p(&img), "--target", "azure"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("openstack image create"), "{text}");
    assert!(!text.contains("Glance v2"), "{text}");
    assert!(text.contains("Azure upload"), "{text}");
    assert!(
        text.contains(&format!("--upload-size-bytes {file_size}")),
        "{text}"
    );
    assert!(text.contains("21 MiB"), "{text}");
    assert!(text.contains(&copy), "{text}");
}

#[test]
fn azure_min_size_fix_makes_the_disk_ready() {
    let t = tempfile::tempdir().unwrap();
    for (name, to) in [("small-fixed", "fixed"), ("small-dynamic", "dynamic")] {
        let r0 = raw(t.path(), &format!("{name}.raw"), 8 * MIB + 1536, MIB);
        let img = t.path().join(format!("{name}.vhd"));
        convert(&r0, &img, &["--to", to]);
        let (code, r) = preflight(&img, &["--target", "azure"]);
        assert_eq!(code, 1);
        assert_eq!(status(&r, "AZURE_MIN_SIZE"), ["FAIL"]);
        let min_fix = fix(&r, "AZURE_MIN_SIZE").unwrap().to_string();
        assert!(min_fix.starts_with("vhdkit expand "), "{min_fix}");
        assert!(
            min_fix.ends_with("--size 20M --to fixed --disk-only"),
            "{min_fix}"
        );
        // The other FAILs carry the same one command.
        assert_eq!(status(&r, "AZURE_MIB"), ["FAIL"]);
        assert_eq!(fix(&r, "AZURE_MIB"), Some(min_fix.as_str()));
        if to == "dynamic" {
            assert_eq!(fix(&r, "AZURE_FIXED"), Some(min_fix.as_str()));
        }
        let words: Vec<&str> = min_fix.split_whitespace().skip(1).collect();
        let out = vhdkit(&words);
        assert!(
            out.status.success(),
            "{min_fix}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let grown = Path::new(words[2]);
        let (code, r) = preflight(grown, &["--target", "azure"]);
        assert_eq!(code, 0, "{min_fix}: {r:#}");
        assert_eq!(r["azure"]["virtual_size"], 20 * MIB);
        assert_eq!(r["azure"]["upload_size_bytes"], 20 * MIB + 512);
    }
}

#[test]
fn azure_refuses_a_dynamic_or_unaligned_or_small_vhd() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "dyn.vhd", 20 * MIB, "win");
    let (code, r) = preflight(&img, &["--target", "azure"]);
    assert_eq!(code, 1);
    assert_eq!(status(&r, "AZURE_FIXED"), ["FAIL"]);
    assert!(fix(&r, "AZURE_FIXED")
        .unwrap()
        .ends_with("--to fixed --align 1M"));

    let r0 = raw(t.path(), "u.raw", 20 * MIB + 512, MIB);
    let img = t.path().join("unaligned.vhd");
    convert(&r0, &img, &["--to", "fixed"]);
    let (code, r) = preflight(&img, &["--target", "azure"]);
    assert_eq!(code, 1);
    assert_eq!(status(&r, "AZURE_MIB"), ["FAIL"]);

    let r0 = raw(t.path(), "s.raw", 8 * MIB, MIB);
    let img = t.path().join("small.vhd");
    convert(&r0, &img, &["--to", "fixed", "--align", "1M"]);
    let (code, r) = preflight(&img, &["--target", "azure"]);
    assert_eq!(code, 1);
    assert_eq!(status(&r, "AZURE_MIN_SIZE"), ["FAIL"]);
}

#[test]
fn xenserver_chain_folder_passes_and_packages() {
    let t = tempfile::tempdir().unwrap();
    let c = chain(t.path(), None, false);
    let tgz = t.path().join("image.tgz");
    let (code, r) = preflight(&c, &["--target", "xenserver", "--package", p(&tgz)]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(status(&r, "XEN_CHAIN_NAMES"), ["PASS"]);
    assert_eq!(status(&r, "XEN_CHAIN_PARENT_ID"), ["PASS"]);
    assert_eq!(status(&r, "XEN_LEAF_HIDDEN"), ["PASS"]);
    assert_eq!(r["chain"].as_array().unwrap().len(), 2);
    let md5 = tool_hash("md5sum", &tgz);
    assert_eq!(r["package"]["md5"], md5);
    assert_eq!(r["package"]["sha512"], tool_hash("sha512sum", &tgz));
    let rec = &r["record"]["record"];
    assert_eq!(rec["checksum"], md5);
    assert_eq!(rec["container_format"], "ovf");
    assert_eq!(rec["size"], std::fs::metadata(&tgz).unwrap().len());
    // tar lists exactly the links.
    let out = Command::new("tar").args(["tzf", p(&tgz)]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0.vhd\n1.vhd\n");

    // The tarball itself, digested as it is unpacked.
    let (code, r) = preflight(&tgz, &["--target", "xenserver"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["input"], "tarball");
    assert_eq!(r["record"]["record"]["checksum"], md5);
    assert_eq!(
        r["record"]["record"]["os_hash_value"],
        tool_hash("sha512sum", &tgz)
    );
}

#[test]
fn xenserver_chain_with_a_gap_fails() {
    let t = tempfile::tempdir().unwrap();
    let c = chain(t.path(), None, false);
    std::fs::rename(c.join("1.vhd"), c.join("2.vhd")).unwrap();
    let tgz = t.path().join("gap.tgz");
    let (code, r) = preflight(&c, &["--target", "xenserver", "--package", p(&tgz)]);
    assert_eq!(code, 1);
    assert_eq!(status(&r, "XEN_CHAIN_NAMES"), ["FAIL"]);
    // A failing chain is not packaged.
    assert_eq!(status(&r, "XEN_PACKAGE"), ["WARN"]);
    assert!(!tgz.exists());
    assert!(r["record"]["record"]["checksum"].is_null());
}

#[test]
fn xenserver_chain_with_a_wrong_parent_id_fails() {
    let t = tempfile::tempdir().unwrap();
    let c = chain(t.path(), Some([7; 16]), false);
    let (code, r) = preflight(&c, &["--target", "xenserver"]);
    assert_eq!(code, 1);
    assert_eq!(status(&r, "XEN_CHAIN_PARENT_ID"), ["FAIL"]);
}

#[test]
fn xenserver_hidden_leaf_fails() {
    let t = tempfile::tempdir().unwrap();
    let c = chain(t.path(), None, true);
    let (code, r) = preflight(&c, &["--target", "xenserver"]);
    assert_eq!(code, 1);
    assert_eq!(status(&r, "XEN_LEAF_HIDDEN"), ["FAIL"]);
}

#[test]
fn a_folder_needs_the_xenserver_target() {
    let t = tempfile::tempdir().unwrap();
    let c = chain(t.path(), None, false);
    let out = vhdkit(&["preflight", p(&c)]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn property_lint_fails_reserved_keys_and_bad_grammar() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "disk.vhd", 8 * MIB, "win");
    let (code, r) = preflight(
        &img,
        &[
            "--property",
            "checksum=abc",
            "--property",
            "owner=me",
            "--property",
            "hypervisor_version_requires=6.2",
            "--property",
            "auto_disk_config=maybe",
            "--property",
            "visibility=everyone",
            "--min-ram",
            "-5",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(status(&r, "PROPERTY_RESERVED"), ["FAIL"]);
    assert_eq!(status(&r, "PROPERTY_OWNER"), ["WARN"]);
    assert_eq!(status(&r, "HYPERVISOR_VERSION_REQUIRES"), ["FAIL"]);
    assert_eq!(status(&r, "AUTO_DISK_CONFIG"), ["FAIL"]);
    assert_eq!(status(&r, "VISIBILITY"), ["FAIL"]);
    assert_eq!(status(&r, "MIN_FIELD"), ["FAIL"]);
}

#[test]
fn the_command_line_is_shell_quoted() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "disk.vhd", 8 * MIB, "win");
    let (_, r) = preflight(
        &img,
        &[
            "--name",
            "it's mine",
            "--property",
            "hypervisor_version_requires=>=6.2",
            "--property",
            "visibility=private",
        ],
    );
    let cmd = r["record"]["command"].as_str().unwrap();
    assert!(cmd.starts_with("openstack image create --disk-format vhd --container-format bare --min-disk 1 --min-ram 0 --private "), "{cmd}");
    assert!(
        cmd.contains("--property 'hypervisor_version_requires=>=6.2'"),
        "{cmd}"
    );
    assert!(cmd.ends_with(r"'it'\''s mine'"), "{cmd}");
    // The shell reads the quoted words back as they were.
    let echoed = Command::new("sh")
        .args([
            "-c",
            &format!(
                "printf '%s\\n' {}",
                cmd.trim_start_matches("openstack image create ")
            ),
        ])
        .output()
        .unwrap();
    let words = String::from_utf8_lossy(&echoed.stdout);
    assert!(words
        .lines()
        .any(|w| w == "hypervisor_version_requires=>=6.2"));
    assert_eq!(words.lines().last(), Some("it's mine"));
}

#[test]
fn flavor_checks_carry_novas_exceptions() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "disk.vhd", 8 * MIB, "win");
    let (code, r) = preflight(
        &img,
        &[
            "--min-ram",
            "1024",
            "--min-disk",
            "5",
            "--flavor",
            "small:512:1",
            "--flavor",
            "big:4096:10",
            "--flavor",
            "volume:4096:0",
        ],
    );
    assert_eq!(code, 1);
    let small = &r["flavors"][0]["lines"];
    let text = small.to_string();
    assert!(
        text.contains("FlavorMemoryTooSmall: Flavor's memory is too small for requested image.")
    );
    assert!(text.contains("FlavorDiskSmallerThanMinDisk: Flavor's disk is smaller than the minimum size specified in image metadata. Flavor disk is 1073741824 bytes, minimum size is 5368709120 bytes."));
    let big = r["flavors"][1]["lines"].as_array().unwrap();
    assert!(big.iter().all(|l| l["status"] == "PASS"), "{big:?}");
    assert!(r["flavors"][2]["lines"]
        .to_string()
        .contains("BootFromVolumeRequiredForZeroDiskFlavor"));
}

#[test]
fn hypervisor_version_requires_is_checked_against_the_host() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "disk.vhd", 8 * MIB, "win");
    let args = |host: &'static str| {
        [
            "--property",
            "hypervisor_version_requires=>=6.2",
            "--hypervisor-version",
            host,
            "--flavor",
            "f:1024:1",
        ]
    };
    assert_eq!(preflight(&img, &args("6.2.0")).0, 0);
    let (code, r) = preflight(&img, &args("6.1.9"));
    assert_eq!(code, 1);
    assert_eq!(status(&r, "HYPERVISOR_VERSION"), ["FAIL"]);
}

#[test]
fn auto_disk_config_true_reports_the_expand_verdict_or_its_absence() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "disk.vhd", 8 * MIB, "win");
    let (_, r) = preflight(
        &img,
        &[
            "--property",
            "auto_disk_config=True",
            "--flavor",
            "f:1024:1",
        ],
    );
    let l = lines(&r, "AUTO_DISK_CONFIG_EXPAND");
    assert_eq!(l.len(), 1, "{r:#}");
    let unavailable = l[0]
        .1
        .starts_with("auto_disk_config simulation unavailable: ");
    assert!(unavailable || !r["flavors"][0]["expand"].is_null(), "{r:#}");
}

#[test]
fn auto_disk_config_disabled_refuses_a_request() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "disk.vhd", 8 * MIB, "win");
    let args = [
        "--property",
        "auto_disk_config=disabled",
        "--flavor",
        "f:1024:1",
    ];
    assert_eq!(preflight(&img, &args).0, 0);
    let mut with_request = args.to_vec();
    with_request.push("--request-auto-disk-config");
    let (code, r) = preflight(&img, &with_request);
    assert_eq!(code, 1);
    assert_eq!(
        lines(&r, "AutoDiskConfigDisabledByImage")[0].1,
        "AutoDiskConfigDisabledByImage: Requested image disk has automatic disk resize disabled."
    );
}

#[test]
fn could_not_run_is_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let out = vhdkit(&["preflight", p(&t.path().join("missing.vhd"))]);
    assert_eq!(out.status.code(), Some(2));
    let img = dynamic(t.path(), "disk.vhd", 8 * MIB, "win");
    let out = vhdkit(&["preflight", p(&img), "--flavor", "nocolons"]);
    assert_eq!(out.status.code(), Some(2));
    let out = vhdkit(&["preflight", p(&img), "--property", "novalue"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_human_table_ends_with_the_verdict() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "disk.vhd", 8 * MIB, "win");
    let out = vhdkit(&["preflight", p(&img)]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Image record (Glance v2)"), "{text}");
    assert!(text.contains("openstack image create"), "{text}");
    assert!(text
        .trim_end()
        .lines()
        .last()
        .unwrap()
        .starts_with("Verdict: READY for glance"));
    let out = vhdkit(&["preflight", p(&img), "--quiet"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn package_needs_the_xenserver_target() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "disk.vhd", 8 * MIB, "tap");
    let out = vhdkit(&[
        "preflight",
        p(&img),
        "--package",
        p(&t.path().join("o.tgz")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!t.path().join("o.tgz").exists());
}

#[test]
fn a_single_vhd_packages_as_a_one_link_chain() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "disk.vhd", 8 * MIB, "tap");
    let tgz = t.path().join("one.tgz");
    let (code, r) = preflight(&img, &["--target", "xenserver", "--package", p(&tgz)]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["record"]["record"]["checksum"], tool_hash("md5sum", &tgz));
    let out = Command::new("tar").args(["tzf", p(&tgz)]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0.vhd\n");
}

#[test]
fn tarball_links_are_named_by_the_tarball() {
    let t = tempfile::tempdir().unwrap();
    let c = chain(t.path(), Some([7; 16]), false);
    let tgz = t.path().join("bad.tgz");
    let made = Command::new("tar")
        .args(["czf", p(&tgz), "-C", p(&c), "0.vhd", "1.vhd"])
        .status()
        .unwrap();
    assert!(made.success());
    let (code, r) = preflight(&tgz, &["--target", "xenserver"]);
    assert_eq!(code, 1);
    assert_eq!(status(&r, "XEN_CHAIN_PARENT_ID"), ["FAIL"]);
    assert_eq!(r["chain"][0]["path"], format!("{}:0.vhd", p(&tgz)));
    assert_eq!(r["record"]["record"]["checksum"], tool_hash("md5sum", &tgz));
    // Nothing is left of the unpacked links.
    let left: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".vhdkit"))
        .collect();
    assert!(left.is_empty());
}

#[test]
fn hypervisor_version_is_checked_without_a_flavor() {
    let t = tempfile::tempdir().unwrap();
    let img = dynamic(t.path(), "disk.vhd", 8 * MIB, "win");
    let (code, r) = preflight(
        &img,
        &[
            "--property",
            "hypervisor_version_requires=>=6.2,<7.0",
            "--hypervisor-version",
            "7.0.0",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(status(&r, "HYPERVISOR_VERSION"), ["FAIL"]);
}

#[test]
fn a_fixed_vhd_gets_no_glance_virtual_size() {
    let t = tempfile::tempdir().unwrap();
    let r0 = raw(t.path(), "d.raw", 8 * MIB, MIB);
    let img = t.path().join("fixed.vhd");
    convert(&r0, &img, &["--to", "fixed"]);
    let (_, r) = preflight(&img, &[]);
    assert!(r["record"]["record"]["virtual_size"].is_null());
    assert_eq!(r["record"]["virtual_sizes"]["hyperv"], 8 * MIB);
}

/// A disk from `testdata/make-expand-disks.sh`, as a dynamic VHD.
fn expand_disk(dir: &Path, name: &str) -> Option<PathBuf> {
    let have = |t: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !["sfdisk", "mke2fs", "mkfs.fat", "mcopy"]
        .iter()
        .all(|t| have(t))
    {
        eprintln!("partition/filesystem tools missing: skipping");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/make-expand-disks.sh");
    let st = Command::new("bash")
        .arg(script)
        .arg(dir)
        .arg(name)
        .status()
        .unwrap();
    assert!(st.success());
    let vhd = dir.join(format!("{name}.vhd"));
    convert(
        &dir.join(format!("{name}.raw")),
        &vhd,
        &["--to", "dynamic", "--creator", "tap"],
    );
    Some(vhd)
}

#[test]
fn auto_disk_config_true_on_a_growable_disk_passes_with_the_sizes() {
    let t = tempfile::tempdir().unwrap();
    let Some(img) = expand_disk(t.path(), "mbr-ext3") else {
        return;
    };
    let (code, r) = preflight(
        &img,
        &[
            "--property",
            "auto_disk_config=True",
            "--flavor",
            "m1.small:2048:2",
        ],
    );
    let l = lines(&r, "AUTO_DISK_CONFIG_EXPAND");
    assert_eq!(l.len(), 1, "{r:#}");
    assert_eq!(l[0].0, "PASS", "{r:#}");
    let e = &r["flavors"][0]["expand"];
    assert_eq!(e["verdict"]["nova_resizes"], true);
    assert_eq!(e["partitions_after"][0]["end_lba"], 2 * 1024 * 2048 - 1);
    assert_eq!(e["filesystem"]["kind"], "ext3");
    assert_eq!(code, 0, "{r:#}");
}

#[test]
fn auto_disk_config_true_on_a_disk_nova_refuses_fails_in_novas_words() {
    let t = tempfile::tempdir().unwrap();
    let Some(img) = expand_disk(t.path(), "two-partitions") else {
        return;
    };
    let (code, r) = preflight(
        &img,
        &[
            "--property",
            "auto_disk_config=True",
            "--flavor",
            "m1.small:2048:2",
        ],
    );
    let l = lines(&r, "AUTO_DISK_CONFIG_EXPAND");
    assert_eq!(l.len(), 1, "{r:#}");
    assert_eq!(l[0].0, "FAIL", "{r:#}");
    assert!(
        l[0].1.contains("Disk must have only one partition."),
        "{}",
        l[0].1
    );
    assert_eq!(code, 1);
}
