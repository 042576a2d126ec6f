//! What `check` (and preflight's CHS_SIZE) say must be true: a size warning
//! only when the sizes differ, with a fix that makes qemu agree; a repair
//! hint only where `repair` does it; raw bytes escaped.

mod common;

use std::path::Path;

use common::*;

const MIB: u64 = 1 << 20;

fn run(args: &[&str]) -> Run {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    vhdkit(&args)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn codes(json: &serde_json::Value, code: &str) -> Vec<serde_json::Value> {
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == code)
        .cloned()
        .collect()
}

fn qemu_size(path: &Path) -> Option<u64> {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "-f", "vpc", "--output=json"])
        .arg(path)
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["virtual-size"].as_u64()
}

#[test]
fn chs_warnings_only_when_sizes_differ_and_the_fix_makes_qemu_agree() {
    let dir = tempfile::tempdir().unwrap();
    // 4,212,736 bytes is a whole CHS size: qemu and the footer agree.
    let exact = Spec::dynamic(4_212_736, 2 << 20)
        .creator("vpc")
        .build()
        .write(dir.path(), "exact.vhd");
    let (_, json) = check_json(&exact);
    assert!(codes(&json, "SIZE_DISAGREE").is_empty(), "{json}");
    let r = run(&["preflight", p(&exact), "--json"]);
    assert!(!r.stdout.contains("CHS_SIZE"), "{}", r.stdout);

    // 4 MiB is not: qemu reads 4,177,920 bytes.
    let raw = dir.path().join("b.raw");
    std::fs::write(&raw, vec![0u8; (4 * MIB) as usize]).unwrap();
    let vpc = dir.path().join("vpc.vhd");
    let r = run(&[
        "convert",
        p(&raw),
        p(&vpc),
        "--to",
        "dynamic",
        "--creator",
        "vpc",
        "-q",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (_, json) = check_json(&vpc);
    let w = codes(&json, "SIZE_DISAGREE");
    assert_eq!(w.len(), 1, "{json}");
    let msg = w[0]["message"].as_str().unwrap();
    assert!(msg.contains("4177920") && msg.contains("4194304"), "{msg}");
    assert!(msg.contains("--creator win"), "{msg}");
    let r = run(&["preflight", p(&vpc), "--json"]);
    assert!(r.stdout.contains("CHS_SIZE"), "{}", r.stdout);

    // The fix, done: qemu reads the footer's current size.
    let fixed = dir.path().join("win.vhd");
    let r = run(&[
        "convert",
        p(&vpc),
        p(&fixed),
        "--to",
        "dynamic",
        "--creator",
        "win",
        "-q",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (_, json) = check_json(&fixed);
    assert!(codes(&json, "SIZE_DISAGREE").is_empty(), "{json}");
    match qemu_size(&fixed) {
        Some(size) => assert_eq!(size, 4 * MIB),
        None => eprintln!("note: qemu-img missing; qemu's size not compared"),
    }
}

/// A dynamic image with two data blocks, its footer then cut off `cut` bytes
/// before the end.
fn cut_image(dir: &Path, name: &str, cut: usize) -> std::path::PathBuf {
    let img = Spec::dynamic(GOLDEN_SIZE, GOLDEN_BLOCK)
        .block(0, &pattern(1, 4096))
        .block(3, &pattern(2, 4096))
        .build();
    let bytes = &img.bytes[..img.bytes.len() - cut];
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn repair_hint_only_where_repair_restores_the_footer() {
    let dir = tempfile::tempdir().unwrap();
    // Cut right after the last block: repair appends the head copy.
    let whole = cut_image(dir.path(), "footerless.vhd", 512);
    let (_, json) = check_json(&whole);
    let m = codes(&json, "FOOTER_MISSING");
    assert!(
        m[0]["message"].as_str().unwrap().contains("vhdkit repair"),
        "{json}"
    );
    let out = dir.path().join("repaired.vhd");
    let r = run(&["repair", p(&whole), p(&out)]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // Cut inside the last block: data is gone; no repair hint, and repair refuses.
    let cut = cut_image(dir.path(), "cut.vhd", 512 + 8192);
    let (run_check, json) = check_json(&cut);
    assert_eq!(run_check.code, 1);
    let m = codes(&json, "FOOTER_MISSING");
    let msg = m[0]["message"].as_str().unwrap();
    assert!(!msg.contains("repair"), "{msg}");
    assert!(
        msg.contains("cut off") && msg.contains("8192 bytes are missing"),
        "{msg}"
    );
    let out = dir.path().join("cut-repaired.vhd");
    let r = run(&["repair", p(&cut), p(&out)]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(!out.exists());
}

#[test]
fn raw_bytes_in_messages_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vec![0u8; 4096];
    let n = bytes.len();
    bytes[n - 512..n - 504].copy_from_slice(b"\xffDG\x00\x01abc");
    let path = dir.path().join("junk.img");
    std::fs::write(&path, &bytes).unwrap();
    // A raw disk to `check`: not a VHD, with the cookie's bytes escaped.
    let r = run(&["check", p(&path)]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("\\xffDG\\x00\\x01abc"), "{}", r.stderr);
    assert!(!r.stderr.contains('\u{fffd}'), "{}", r.stderr);

    // A damaged footer copy: the finding escapes its cookie.
    let mut img = golden_dynamic().build();
    img.put(0, b"\xfe\xffconec");
    let path = img.write(dir.path(), "head.vhd");
    let r = run(&["check", p(&path)]);
    assert!(r.stdout.contains("\\xfe\\xffconec"), "{}", r.stdout);
    assert!(!r.stdout.contains('\u{fffd}'), "{}", r.stdout);
}

fn qemu_opens(path: &Path) -> Option<(bool, String)> {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "-f", "vpc"])
        .arg(path)
        .output()
        .ok()?;
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A geometry larger than the table covers, for a creator qemu reads by
/// geometry: qemu says "Page table too small".
fn geometry_past_the_table(dir: &Path) -> std::path::PathBuf {
    let mut img = Spec::dynamic(4 * MIB, 2 << 20).creator("vpc").build();
    img.set_footer(|f| f.geometry = vhdkit::format::Geometry::from_size(8 * MIB));
    img.write(dir, "chs-big.vhd")
}

#[test]
fn what_qemu_will_not_open_fails_and_block_sizes_are_judged() {
    let dir = tempfile::tempdir().unwrap();
    let path = geometry_past_the_table(dir.path());
    let (r, json) = check_json(&path);
    assert_eq!(r.code, 1, "{json}");
    assert_eq!(error_codes(&json), ["QEMU_PAGE_TABLE_TOO_SMALL"]);
    match qemu_opens(&path) {
        Some((ok, err)) => assert!(!ok && err.contains("Page table too small"), "{err}"),
        None => eprintln!("note: qemu-img missing"),
    }

    // A bad footer checksum: qemu refuses too.
    let mut img = golden_dynamic().build();
    let at = img.footer_offset + 64;
    let sum = img.get_u32(at);
    img.put_u32(at, sum ^ 1);
    img.put_u32(64, sum ^ 1);
    let path = img.write(dir.path(), "sum.vhd");
    let (_, json) = check_json(&path);
    assert!(
        error_codes(&json).contains(&"FOOTER_CHECKSUM".to_string()),
        "{json}"
    );
    if let Some((ok, err)) = qemu_opens(&path) {
        assert!(!ok, "qemu opened a bad checksum: {err}");
    }

    // Block sizes: 2 KiB is an error (qemu reads different data), 64 KiB a
    // Hyper-V warning, 2 MiB clean.
    for (bs, code, severity) in [
        (2048u32, "BLOCK_SIZE_QEMU", "error"),
        (64 << 10, "BLOCK_SIZE_HYPERV", "warning"),
    ] {
        let path = Spec::dynamic(GOLDEN_SIZE, bs)
            .build()
            .write(dir.path(), &format!("bs{bs}.vhd"));
        let (_, json) = check_json(&path);
        let found = codes(&json, code);
        assert_eq!(found.len(), 1, "{bs}: {json}");
        assert_eq!(found[0]["severity"], severity);
    }
    let path = Spec::dynamic(GOLDEN_SIZE, 2 << 20)
        .build()
        .write(dir.path(), "bs2m.vhd");
    let (r, json) = check_json(&path);
    assert_eq!(r.code, 0);
    assert!(json["findings"].as_array().unwrap().is_empty(), "{json}");
    // The writer's gate.
    use vhdkit::format::header::writable_block_size;
    assert!(writable_block_size(2048, 256 << 20).is_err());
    assert!(writable_block_size(3 << 12, 256 << 20).is_err());
    assert_eq!(writable_block_size(4096, 256 << 20), Ok(4096));
}

/// The structure lines of `preflight --json` with status FAIL, by code.
fn preflight_fail_codes(path: &Path) -> Vec<String> {
    let r = run(&["preflight", p(path), "--json"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["structure"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["status"] == "FAIL")
        .map(|l| l["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn preflight_fails_what_qemu_will_not_open_or_reads_differently() {
    let dir = tempfile::tempdir().unwrap();
    let path = geometry_past_the_table(dir.path());
    assert!(preflight_fail_codes(&path).contains(&"QEMU_PAGE_TABLE_TOO_SMALL".to_string()));
    let path = Spec::dynamic(GOLDEN_SIZE, 2048)
        .build()
        .write(dir.path(), "bs2k.vhd");
    assert!(preflight_fail_codes(&path).contains(&"BLOCK_SIZE_QEMU".to_string()));
    let mut img = golden_dynamic().build();
    let at = img.footer_offset + 64;
    let sum = img.get_u32(at);
    img.put_u32(at, sum ^ 1);
    let path = img.write(dir.path(), "sum.vhd");
    assert!(preflight_fail_codes(&path)
        .iter()
        .any(|c| c.starts_with("FOOTER_CHECKSUM")));
}

#[test]
fn writers_refuse_block_sizes_qemu_reads_differently() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("in.raw");
    std::fs::write(&raw, pattern(3, (4 * MIB) as usize)).unwrap();
    let out = dir.path().join("out.vhd");
    for bs in ["512", "1K", "2K", "3K"] {
        for args in [
            vec![
                "convert",
                p(&raw),
                p(&out),
                "--to",
                "dynamic",
                "--block-size",
                bs,
            ],
            vec![
                "expand",
                p(&raw),
                p(&out),
                "--size",
                "8M",
                "--disk-only",
                "--block-size",
                bs,
            ],
            vec!["sparsify", p(&raw), p(&out), "--block-size", bs],
        ] {
            let r = run(&args);
            assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
            let minimum = if bs == "3K" {
                "power of two"
            } else {
                "at least 4096"
            };
            assert!(r.stderr.contains(minimum), "{args:?}: {}", r.stderr);
            if bs != "3K" {
                assert!(r.stderr.contains("qemu"), "{}", r.stderr);
            }
            assert!(!out.exists(), "{args:?} wrote {}", out.display());
        }
    }
    let r = run(&[
        "convert",
        p(&raw),
        p(&out),
        "--to",
        "dynamic",
        "--block-size",
        "4K",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}
