//! Other image formats handed to vhdkit by mistake: made by `qemu-img
//! convert` (qcow2 v2 and v3, QED, VMDK monolithicSparse, streamOptimized
//! and a monolithicFlat descriptor, VHDX, VDI, Parallels, LUKS) and
//! `xorriso` (ISO 9660); each is named by `info`, refused with exit 2 by
//! every command that reads a disk (nothing written), readable with
//! `--input-format raw`, and recognised as the content of a raw disk or a
//! VHD that holds its bytes.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{have_tool as have, vhdkit};
use vhdkit::format::foreign::{self, Foreign};

const MIB: u64 = 1024 * 1024;

fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A 4 MiB raw disk with recognisable data in its first and last MiB.
fn source_raw(dir: &Path) -> PathBuf {
    let p = dir.join("src.raw");
    let mut data = vec![0u8; usize::try_from(4 * MIB).unwrap()];
    data[..MIB as usize].copy_from_slice(&common::pattern(7, MIB as usize));
    data[3 * MIB as usize..].copy_from_slice(&common::pattern(9, MIB as usize));
    std::fs::write(&p, data).unwrap();
    p
}

/// One image: its file, the format name `info` gives, and a word the
/// description holds.
struct Made {
    path: PathBuf,
    name: &'static str,
    says: &'static str,
}

fn qemu_made(dir: &Path, raw: &Path) -> Vec<Made> {
    let cases: [(&str, &[&str], &str, &str); 9] = [
        (
            "v2.qcow2",
            &["-O", "qcow2", "-o", "compat=0.10"],
            "qcow2",
            "version 2",
        ),
        ("v3.qcow2", &["-O", "qcow2"], "qcow2", "version 3"),
        ("a.qed", &["-O", "qed"], "qed", "QED"),
        ("sparse.vmdk", &["-O", "vmdk"], "vmdk", "monolithicSparse"),
        (
            "stream.vmdk",
            &["-O", "vmdk", "-o", "subformat=streamOptimized"],
            "vmdk",
            "streamOptimized",
        ),
        (
            "flat.vmdk",
            &["-O", "vmdk", "-o", "subformat=monolithicFlat"],
            "vmdk",
            "descriptor",
        ),
        ("a.vhdx", &["-O", "vhdx"], "vhdx", "VHDX"),
        ("a.vdi", &["-O", "vdi"], "vdi", "VDI"),
        (
            "a.parallels",
            &["-O", "parallels"],
            "parallels",
            "Parallels",
        ),
    ];
    let mut made = Vec::new();
    for (file, opts, name, says) in cases {
        let out = dir.join(file);
        let mut args: Vec<&str> = vec!["convert", "-f", "raw"];
        args.extend_from_slice(opts);
        args.push(raw.to_str().unwrap());
        args.push(out.to_str().unwrap());
        sh("qemu-img", &args);
        made.push(Made {
            path: out,
            name,
            says,
        });
    }
    let luks = dir.join("a.luks");
    sh(
        "qemu-img",
        &[
            "create",
            "-f",
            "luks",
            "--object",
            "secret,id=s0,data=pw",
            "-o",
            "key-secret=s0",
            luks.to_str().unwrap(),
            "4M",
        ],
    );
    made.push(Made {
        path: luks,
        name: "luks",
        says: "LUKS1",
    });
    made
}

fn iso_made(dir: &Path) -> Option<Made> {
    if !have("xorriso", "-version") {
        return None;
    }
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("hello.txt"), b"hello\n").unwrap();
    let iso = dir.join("a.iso");
    sh(
        "xorriso",
        &[
            "-as",
            "mkisofs",
            "-quiet",
            "-o",
            iso.to_str().unwrap(),
            tree.to_str().unwrap(),
        ],
    );
    Some(Made {
        path: iso,
        name: "iso9660",
        says: "ISO 9660",
    })
}

fn fragment_made(dir: &Path) -> Made {
    let p = dir.join("fragment.bin");
    let mut b = vec![0u8; MIB as usize];
    b[512..520].copy_from_slice(b"cxsparse");
    std::fs::write(&p, b).unwrap();
    Made {
        path: p,
        name: "vhd",
        says: "without a footer",
    }
}

fn prefix(p: &Path) -> Vec<u8> {
    let mut b = std::fs::read(p).unwrap();
    b.truncate(foreign::PREFIX_LEN);
    b
}

fn all_made(dir: &Path) -> Option<Vec<Made>> {
    if !have("qemu-img", "--version") {
        return None;
    }
    let raw = source_raw(dir);
    let mut made = qemu_made(dir, &raw);
    made.extend(iso_made(dir));
    made.push(fragment_made(dir));
    Some(made)
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn every_format_is_detected_and_named_by_info() {
    let dir = tempfile::tempdir().unwrap();
    let Some(made) = all_made(dir.path()) else {
        return;
    };
    for m in &made {
        let f = foreign::detect(&prefix(&m.path))
            .unwrap_or_else(|| panic!("{}: not detected", m.path.display()));
        assert_eq!(f.name(), m.name, "{}", m.path.display());
        assert!(
            f.description().contains(m.says),
            "{}: {}",
            m.path.display(),
            f.description()
        );
        let run = vhdkit(&[os("info"), os("--json"), m.path.as_os_str()]);
        assert_eq!(run.code, 0, "{}: {}", m.path.display(), run.stderr);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(v["foreign_format"]["name"], m.name, "{}", m.path.display());
        let text = vhdkit(&[os("info"), m.path.as_os_str()]);
        assert!(
            text.stdout.contains("not a VHD or a raw disk") && text.stdout.contains(m.says),
            "{}: {}",
            m.path.display(),
            text.stdout
        );
    }
    let versions: Vec<_> = made
        .iter()
        .filter_map(|m| match foreign::detect(&prefix(&m.path)) {
            Some(Foreign::Qcow { version }) => Some(version),
            _ => None,
        })
        .collect();
    assert_eq!(versions, [2, 3]);
}

#[test]
fn every_command_refuses_with_exit_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(made) = all_made(dir.path()) else {
        return;
    };
    let out = dir.path().join("out.vhd");
    for m in &made {
        let input = m.path.as_os_str();
        let runs: [Vec<&OsStr>; 6] = [
            vec![os("check"), input],
            vec![
                os("convert"),
                input,
                out.as_os_str(),
                os("--to"),
                os("dynamic"),
            ],
            vec![os("convert"), input, out.as_os_str(), os("--to"), os("raw")],
            vec![os("compact"), input, out.as_os_str()],
            vec![
                os("expand"),
                input,
                out.as_os_str(),
                os("--size"),
                os("64M"),
            ],
            vec![os("preflight"), input],
        ];
        for args in runs {
            let run = vhdkit(&args);
            assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
            assert!(
                run.stderr.contains("not a VHD or a raw disk") && run.stderr.contains(m.says),
                "{args:?}: {}",
                run.stderr
            );
            assert!(!out.exists(), "{args:?} wrote {}", out.display());
        }
    }
    // The message names the file and qemu-img's fix for qcow2.
    let qcow = made.iter().find(|m| m.name == "qcow2").unwrap();
    let run = vhdkit(&[os("check"), qcow.path.as_os_str()]);
    assert!(
        run.stderr.contains(&format!(
            "{} is a qcow2 image (version 2), not a VHD or a raw disk: convert it first with `qemu-img convert -f qcow2 -O raw",
            qcow.path.display()
        )),
        "{}",
        run.stderr
    );
}

/// `convert --input-format raw IMAGE OUT --to TO`: a VHD whose disk holds
/// the image's bytes.
fn nest(image: &Path, out: &Path, to: &str) -> PathBuf {
    let run = vhdkit(&[
        os("convert"),
        os("--input-format"),
        os("raw"),
        image.as_os_str(),
        out.as_os_str(),
        os("--to"),
        os(to),
    ]);
    assert_eq!(run.code, 0, "{}: {}", image.display(), run.stderr);
    out.to_path_buf()
}

#[test]
fn input_format_raw_reads_the_bytes_and_the_content_is_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let Some(made) = all_made(dir.path()) else {
        return;
    };
    for m in made
        .iter()
        .filter(|m| !matches!(m.name, "luks" | "iso9660"))
    {
        let expected = foreign::detect(&prefix(&m.path)).unwrap();
        // A raw disk whose first bytes are the image's.
        assert_eq!(foreign::detect_content(&prefix(&m.path)), Some(expected));
        for to in ["fixed", "dynamic"] {
            let vhd = nest(&m.path, &dir.path().join(format!("nested-{to}.vhd")), to);
            // The VHD itself is a VHD; its disk holds the foreign image.
            assert_eq!(
                vhdkit::disk::detect_foreign(&std::fs::read(&vhd).unwrap()),
                None
            );
            let disk = vhdkit::disk::open(&vhd).unwrap();
            let n = usize::try_from(disk.size_bytes())
                .unwrap()
                .min(foreign::PREFIX_LEN);
            let mut first = vec![0u8; n];
            disk.read_at(0, &mut first).unwrap();
            assert_eq!(
                foreign::detect_content(&first),
                Some(expected),
                "{} inside a {to} VHD",
                m.path.display()
            );
            std::fs::remove_file(&vhd).unwrap();
        }
    }
}

#[test]
fn raw_disks_and_vhds_are_not_foreign() {
    let dir = tempfile::tempdir().unwrap();
    let raw = source_raw(dir.path());
    assert_eq!(foreign::detect(&prefix(&raw)), None);
    let vhd = dir.path().join("d.vhd");
    let run = vhdkit(&[
        os("convert"),
        raw.as_os_str(),
        vhd.as_os_str(),
        os("--to"),
        os("dynamic"),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let info = vhdkit(&[os("info"), os("--json"), vhd.as_os_str()]);
    let v: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
    assert_eq!(v["foreign_format"], serde_json::Value::Null);
    assert_eq!(vhdkit(&[os("check"), vhd.as_os_str()]).code, 0);
    // Its disk content is a plain disk, not an image.
    let disk = vhdkit::disk::open(&vhd).unwrap();
    let mut first = vec![0u8; foreign::PREFIX_LEN];
    disk.read_at(0, &mut first).unwrap();
    assert_eq!(foreign::detect_content(&first), None);
    // A dynamic VHD copied in verbatim as a disk's content is flagged.
    let bytes = std::fs::read(&vhd).unwrap();
    assert_eq!(foreign::detect_content(&bytes), Some(Foreign::Vhd));
}

/// `preflight` of IMAGE (text and JSON): exit 1, and the CONTENT_FOREIGN
/// FAIL names `name` in both.
fn preflight_names_the_content(image: &Path, raw: bool, name: &str) {
    let mut args = vec![os("preflight"), image.as_os_str()];
    if raw {
        args.extend([os("--input-format"), os("raw")]);
    }
    let text = vhdkit(&args);
    assert_eq!(text.code, 1, "{}: {}", image.display(), text.stderr);
    let line = text
        .stdout
        .lines()
        .find(|l| l.contains("CONTENT_FOREIGN"))
        .unwrap_or_else(|| panic!("{}: {}", image.display(), text.stdout));
    assert!(line.contains("FAIL"), "{line}");
    assert!(line.contains("the disk's content is a"), "{line}");
    assert!(line.to_lowercase().contains(name), "{line}");
    assert!(line.contains("converted without being decoded"), "{line}");
    args.push(os("--json"));
    let json = vhdkit(&args);
    assert_eq!(json.code, 1, "{}: {}", image.display(), json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["verdict"]["ready"], false);
    let found: Vec<_> = v["structure"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["code"] == "CONTENT_FOREIGN")
        .collect();
    assert_eq!(found.len(), 1, "{}", json.stdout);
    assert_eq!(found[0]["status"], "FAIL");
    let message = found[0]["message"].as_str().unwrap().to_lowercase();
    assert!(message.contains(name), "{message}");
    assert!(
        found[0]["fix"].as_str().unwrap().contains("decode"),
        "{}",
        found[0]
    );
}

#[test]
fn preflight_fails_a_disk_whose_content_is_another_image() {
    let dir = tempfile::tempdir().unwrap();
    if !have("qemu-img", "--version") {
        return;
    }
    let raw = source_raw(dir.path());
    for m in qemu_made(dir.path(), &raw)
        .iter()
        .filter(|m| matches!(m.name, "qcow2" | "qed" | "vmdk" | "vhdx" | "vdi"))
    {
        // Taken as raw, the file itself is a disk holding the image.
        preflight_names_the_content(&m.path, true, m.name);
        for to in ["fixed", "dynamic"] {
            let vhd = nest(&m.path, &dir.path().join(format!("holds-{to}.vhd")), to);
            preflight_names_the_content(&vhd, false, m.name);
            std::fs::remove_file(&vhd).unwrap();
        }
    }
    // A plain disk's content is not flagged.
    let vhd = nest(&raw, &dir.path().join("plain.vhd"), "dynamic");
    let json = vhdkit(&[os("preflight"), vhd.as_os_str(), os("--json")]);
    assert!(!json.stdout.contains("CONTENT_FOREIGN"), "{}", json.stdout);
}
