//! `convert`, `compact` and `checksum` through the real binary, with
//! qemu-img, md5sum and sha512sum as oracles.

use std::path::{Path, PathBuf};
use std::process::Command;

fn vhdkit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vhdkit"))
        .args(args)
        .output()
        .expect("run vhdkit")
}

fn ok(args: &[&str]) -> String {
    let out = vhdkit(args);
    assert!(
        out.status.success(),
        "vhdkit {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A raw file of `size` bytes with pseudo-random data in the given byte ranges.
fn raw_with(dir: &Path, name: &str, size: u64, ranges: &[(u64, u64)]) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let path = dir.join(name);
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(size).unwrap();
    let mut seed = size ^ 0x9E37_79B9_7F4A_7C15;
    for &(off, len) in ranges {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8 | 1
            })
            .collect();
        f.write_all_at(&data, off).unwrap();
    }
    path
}

fn qemu_identical(a: &Path, a_fmt: &str, b: &Path, b_fmt: &str) {
    if !have("qemu-img") {
        eprintln!("qemu-img missing: skipping qemu-img compare");
        return;
    }
    let out = Command::new("qemu-img")
        .args(["compare", "-f", a_fmt, "-F", b_fmt, p(a), p(b)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qemu-img compare {a:?} {b:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn qemu_virtual_size(path: &Path) -> Option<u64> {
    if !have("qemu-img") {
        return None;
    }
    let out = Command::new("qemu-img")
        .args(["info", "-f", "vpc", "--output=json", p(path)])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["virtual-size"].as_u64()
}

/// raw → fixed → dynamic → raw, byte-identical, qemu agreeing at each step.
fn round_trip(size: u64, ranges: &[(u64, u64)], block_size: &str) {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_with(dir.path(), "in.raw", size, ranges);
    let fixed = dir.path().join("a.vhd");
    let dynamic = dir.path().join("b.vhd");
    let back = dir.path().join("back.raw");
    ok(&["convert", p(&raw), p(&fixed), "--to", "fixed", "-q"]);
    ok(&[
        "convert",
        p(&fixed),
        p(&dynamic),
        "--to",
        "dynamic",
        "--block-size",
        block_size,
        "-q",
    ]);
    ok(&["convert", p(&dynamic), p(&back), "--to", "raw", "-q"]);
    let vsize = size.next_multiple_of(512);
    let mut expect = std::fs::read(&raw).unwrap();
    expect.resize(vsize as usize, 0);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        expect,
        "round trip of {size} bytes"
    );
    for vhd in [&fixed, &dynamic] {
        if let Some(q) = qemu_virtual_size(vhd) {
            assert_eq!(q, vsize, "qemu-img info virtual-size of {vhd:?}");
        }
        qemu_identical(&back, "raw", vhd, "vpc");
        ok(&["check", p(vhd)]);
    }
    // compact of the dynamic disk is identical too.
    let compacted = dir.path().join("c.vhd");
    let back2 = dir.path().join("back2.raw");
    ok(&["compact", p(&dynamic), p(&compacted), "-q"]);
    ok(&["convert", p(&compacted), p(&back2), "--to", "raw", "-q"]);
    assert_eq!(std::fs::read(&back2).unwrap(), expect);
}

#[test]
fn odd_size_round_trips() {
    round_trip(
        10_000_000 + 512 * 3,
        &[(4096, 100_000), (9_000_000, 700)],
        "2M",
    );
}

#[test]
fn size_not_a_sector_multiple_is_rounded_up() {
    round_trip(1_000_001, &[(999_000, 1001)], "2M");
}

#[test]
fn one_sector_disk_round_trips() {
    round_trip(512, &[(0, 512)], "2M");
}

#[test]
fn exactly_one_block_round_trips() {
    round_trip(2 << 20, &[(100, 5000)], "2M");
}

#[test]
fn data_only_in_last_partial_block() {
    let size = (5 << 20) + 512 * 7;
    round_trip(size, &[(size - 1024, 1024)], "2M");
}

#[test]
fn small_blocks_round_trip() {
    round_trip(7 << 20, &[(0, 10), ((3 << 20) + 5, 600_000)], "512K");
}

#[test]
fn empty_disk_stores_no_block() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_with(dir.path(), "z.raw", 64 << 20, &[]);
    let out = dir.path().join("z.vhd");
    let json = ok(&[
        "convert",
        p(&raw),
        p(&out),
        "--to",
        "dynamic",
        "--json",
        "-q",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["data_blocks"], 0);
    assert_eq!(v["zero_blocks"], 32);
    // footer copy + header + BAT (32 entries padded to 512) + footer.
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        512 + 1024 + 512 + 512
    );
}

#[test]
fn align_rounds_for_azure() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_with(dir.path(), "a.raw", 20_000_000, &[(0, 4096)]);
    let out = dir.path().join("a.vhd");
    ok(&[
        "convert",
        p(&raw),
        p(&out),
        "--to",
        "fixed",
        "--align",
        "1M",
        "-q",
    ]);
    let len = std::fs::metadata(&out).unwrap().len();
    assert_eq!(len, (20 << 20) + 512);
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", p(&out), "--json"])).unwrap();
    assert_eq!(info["current_size"], 20 << 20);
    assert_eq!(info["original_size"], 20 << 20);
}

#[test]
fn creators_are_selectable_and_sizes_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_with(dir.path(), "c.raw", 4 << 20, &[(0, 512)]);
    for creator in ["tap", "win", "qem2", "vpc"] {
        let out = dir.path().join(format!("{creator}.vhd"));
        ok(&[
            "convert",
            p(&raw),
            p(&out),
            "--to",
            "dynamic",
            "--creator",
            creator,
            "-q",
        ]);
        let info: serde_json::Value =
            serde_json::from_str(&ok(&["info", p(&out), "--json"])).unwrap();
        assert_eq!(info["current_size"], 4 << 20);
        // The name as --creator spells it; the exact bytes beside it.
        assert_eq!(info["creator_application"], creator);
        let bytes = match creator {
            "tap" => "74617000",
            "win" => "77696e20",
            "qem2" => "71656d32",
            _ => "76706320",
        };
        assert_eq!(info["creator_application_hex"], bytes);
        let text = ok(&["info", p(&out)]);
        let line = text.lines().find(|l| l.starts_with("creator")).unwrap();
        assert!(line.contains(&format!("\"{creator}\"")), "{line}");
        assert!(!line.contains("\\0") && !line.contains('\0'), "{line}");
        assert_eq!(
            line.contains("(bytes 74617000)"),
            creator == "tap",
            "{line}"
        );
        if let Some(q) = qemu_virtual_size(&out) {
            // qemu reads vpc creators by geometry: that is why `vpc` is not the default.
            if creator == "vpc" {
                assert_eq!(info["sizes"]["qemu"].as_u64(), Some(q));
            } else {
                assert_eq!(q, 4 << 20, "{creator}");
            }
        }
    }
    let bad = vhdkit(&[
        "convert",
        p(&raw),
        "x.vhd",
        "--to",
        "dynamic",
        "--creator",
        "nope",
    ]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn checksums_equal_coreutils() {
    if !have("md5sum") || !have("sha512sum") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_with(
        dir.path(),
        "d.raw",
        9 << 20,
        &[(0, 3 << 20), (7 << 20, 1000)],
    );
    let out = dir.path().join("d.vhd");
    let json = ok(&[
        "convert",
        p(&raw),
        p(&out),
        "--to",
        "dynamic",
        "--checksum",
        "md5,sha512,crc32",
        "--json",
        "-q",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let sum = |tool: &str| {
        let o = Command::new(tool).arg(&out).output().unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(v["md5"], sum("md5sum"));
    assert_eq!(v["sha512"], sum("sha512sum"));
    assert_eq!(v["size"], std::fs::metadata(&out).unwrap().len());
    let c: serde_json::Value =
        serde_json::from_str(&ok(&["checksum", p(&out), "--algo", "all", "--json", "-q"])).unwrap();
    assert_eq!(c["md5"], v["md5"]);
    assert_eq!(c["sha512"], v["sha512"]);
    assert_eq!(c["crc32"], v["crc32"]);
    // A raw output's digests include its holes.
    let rawout = dir.path().join("d2.raw");
    let j: serde_json::Value = serde_json::from_str(&ok(&[
        "convert",
        p(&out),
        p(&rawout),
        "--to",
        "raw",
        "--checksum",
        "md5",
        "--json",
        "-q",
    ]))
    .unwrap();
    let o = Command::new("md5sum").arg(&rawout).output().unwrap();
    assert_eq!(
        j["md5"].as_str().unwrap(),
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap()
    );
}

#[test]
fn qemu_made_vhds_convert_like_qemu() {
    if !have("qemu-img") {
        eprintln!("qemu-img missing: skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_with(
        dir.path(),
        "q.raw",
        12 << 20,
        &[(1 << 20, 300_000), (11 << 20, 512)],
    );
    for (name, opts) in [
        ("dyn.vhd", "subformat=dynamic"),
        ("fix.vhd", "subformat=fixed"),
        ("fs.vhd", "subformat=dynamic,force_size=on"),
    ] {
        let vhd = dir.path().join(name);
        let st = Command::new("qemu-img")
            .args([
                "convert",
                "-f",
                "raw",
                "-O",
                "vpc",
                "-o",
                opts,
                p(&raw),
                p(&vhd),
            ])
            .status()
            .unwrap();
        assert!(st.success());
        let ours = dir.path().join(format!("{name}.ours.raw"));
        let theirs = dir.path().join(format!("{name}.qemu.raw"));
        ok(&["convert", p(&vhd), p(&ours), "--to", "raw", "-q"]);
        let st = Command::new("qemu-img")
            .args(["convert", "-f", "vpc", "-O", "raw", p(&vhd), p(&theirs)])
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            std::fs::read(&ours).unwrap(),
            std::fs::read(&theirs).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn corpus_images_with_data_convert() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if !corpus.is_dir() {
        eprintln!("no ../shared/corpus: skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["dfvfs_ext2.vhd", "tsk_image.vhd"] {
        let out = dir.path().join(format!("{name}.raw"));
        ok(&[
            "convert",
            p(&corpus.join(name)),
            p(&out),
            "--to",
            "raw",
            "-q",
        ]);
        qemu_identical(&out, "raw", &corpus.join(name), "vpc");
    }
    // A damaged input is refused before anything is written.
    let out = dir.path().join("bad.raw");
    let r = vhdkit(&[
        "convert",
        p(&corpus.join("dfvfs_image.vhd")),
        p(&out),
        "--to",
        "raw",
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("FOOTER_CHECKSUM"));
    assert!(!out.exists());
    // A missing parent is a clear error naming the paths tried.
    let r = vhdkit(&[
        "convert",
        p(&corpus.join("dfvfs_fat-differential.vhd")),
        p(&out),
        "--to",
        "raw",
    ]);
    assert_ne!(r.status.code(), Some(0));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("fat-parent.vhd") && err.contains("tried"),
        "{err}"
    );
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("vhdkit-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn converting_onto_the_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_with(dir.path(), "self.raw", 1 << 20, &[(0, 512)]);
    let before = std::fs::read(&raw).unwrap();
    let r = vhdkit(&["convert", p(&raw), p(&raw), "--to", "raw"]);
    assert_eq!(r.status.code(), Some(2));
    assert_eq!(std::fs::read(&raw).unwrap(), before);
}

#[test]
fn full_disk_leaves_nothing() {
    // /dev/full makes every write fail with ENOSPC; use a tiny tmpfs-like
    // stand-in: a directory we cannot write to is the portable check here.
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_with(dir.path(), "r.raw", 1 << 20, &[(0, 512)]);
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let out = ro.join("o.vhd");
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o500);
    std::fs::set_permissions(&ro, perms).unwrap();
    let r = vhdkit(&["convert", p(&raw), p(&out), "--to", "dynamic"]);
    // root may still write there; either way nothing partial may remain.
    if !r.status.success() {
        assert_eq!(r.status.code(), Some(2));
        assert!(!out.exists());
    }
}

mod sparse_layouts {
    use proptest::prelude::*;
    use std::os::unix::fs::FileExt;
    use vhdkit::commands::convert::{convert, ConvertOptions, Target};
    use vhdkit::pipeline::NoProgress;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Any sparse layout survives raw → dynamic → compact → raw and
        /// raw → fixed → raw byte for byte, whatever the block size.
        #[test]
        fn random_sparse_layouts_round_trip(
            sectors in 1u64..20_000,
            runs in proptest::collection::vec((0u64..20_000, 1u64..3000, any::<u8>()), 0..8),
            small_blocks in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let size = sectors * 512;
            let raw = dir.path().join("in.raw");
            let f = std::fs::File::create(&raw).unwrap();
            f.set_len(size).unwrap();
            for (start, len, byte) in runs {
                let start = (start * 512) % size;
                let len = len.min(size - start);
                f.write_all_at(&vec![byte | 1; len as usize], start).unwrap();
            }
            drop(f);
            let expect = std::fs::read(&raw).unwrap();
            let block_size = if small_blocks { 512 << 10 } else { 2 << 20 };
            let opts = |to| {
                let mut o = ConvertOptions::default();
                o.to = to;
                o.block_size = block_size;
                o
            };
            let dynamic = dir.path().join("d.vhd");
            convert(&raw, &dynamic, &opts(Target::Dynamic), &NoProgress).unwrap();
            let compacted = dir.path().join("c.vhd");
            vhdkit::commands::compact::compact(&dynamic, &compacted, &[], &NoProgress).unwrap();
            let back = dir.path().join("back.raw");
            convert(&compacted, &back, &opts(Target::Raw), &NoProgress).unwrap();
            prop_assert_eq!(std::fs::read(&back).unwrap(), expect.clone());
            let fixed = dir.path().join("f.vhd");
            convert(&raw, &fixed, &opts(Target::Fixed), &NoProgress).unwrap();
            let back2 = dir.path().join("back2.raw");
            convert(&fixed, &back2, &opts(Target::Raw), &NoProgress).unwrap();
            prop_assert_eq!(std::fs::read(&back2).unwrap(), expect);
        }
    }
}

/// A real full filesystem: a loop-mounted 8 MiB ext4 (root only; skipped
/// elsewhere). The write fails with ENOSPC, the message says so, and nothing
/// is left behind.
#[test]
fn enospc_mid_write_removes_the_temporary_file() {
    struct Mount(PathBuf);
    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("small.img");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let made = Command::new("mkfs.ext4")
        .args(["-q", "-F", p(&img)])
        .output();
    let mounted = made.is_ok_and(|o| o.status.success())
        && Command::new("mount")
            .args(["-o", "loop", p(&img), p(&mnt)])
            .output()
            .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("cannot loop-mount here: skipping the ENOSPC test");
        return;
    }
    let _guard = Mount(mnt.clone());
    let raw = raw_with(dir.path(), "big.raw", 32 << 20, &[(0, 32 << 20)]);
    let out = mnt.join("out.vhd");
    let r = vhdkit(&["convert", p(&raw), p(&out), "--to", "dynamic", "-q"]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("out.vhd") && err.contains("removed"), "{err}");
    let left: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lost+found")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
