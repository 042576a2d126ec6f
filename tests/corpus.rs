//! Real-world VHDs written by other tools (`../shared/corpus/`, see its
//! README): each gets the verdict a correct reader gives.

mod common;

use std::path::PathBuf;

use common::*;
use vhdkit::format::{DynamicHeader, Footer, PlatformCode};

fn corpus(name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if !dir.is_dir() {
        eprintln!("note: {} is absent; corpus test skipped", dir.display());
        return None;
    }
    Some(dir.join(name))
}

fn info_json(path: &std::path::Path) -> serde_json::Value {
    let run = vhdkit(&["info".as_ref(), "--json".as_ref(), path.as_os_str()]);
    assert_eq!(run.code, 0, "info {}: {}", path.display(), run.stderr);
    serde_json::from_str(&run.stdout).expect("info --json")
}

fn assert_valid(name: &str, virtual_size: u64) {
    let Some(path) = corpus(name) else { return };
    let (run, json) = check_json(&path);
    assert_eq!(run.code, 0, "{name}: {}", run.stdout);
    assert_eq!(json["ok"], true);
    let info = info_json(&path);
    assert_eq!(info["virtual_size"], virtual_size, "{name}");
    assert_eq!(info["disk_type"], "dynamic", "{name}");
    let disk = vhdkit::disk::open(&path).expect("open for reading");
    assert_eq!(disk.size_bytes(), virtual_size);
    let mut buf = vec![0u8; 4096];
    disk.read_at(0, &mut buf).expect("read");
}

#[test]
fn dfvfs_ext2_is_valid() {
    assert_valid("dfvfs_ext2.vhd", 4_212_736);
    // The ext2 superblock magic (0xEF53 at byte 1024 + 56) reads through the BAT.
    let Some(path) = corpus("dfvfs_ext2.vhd") else {
        return;
    };
    let disk = vhdkit::disk::open(&path).unwrap();
    let mut magic = [0u8; 2];
    disk.read_at(1024 + 56, &mut magic).unwrap();
    assert_eq!(magic, [0x53, 0xef]);
}

#[test]
fn tsk_image_is_valid() {
    assert_valid("tsk_image.vhd", 104_448);
}

#[test]
fn dfvfs_image_has_a_bad_footer_checksum() {
    let Some(path) = corpus("dfvfs_image.vhd") else {
        return;
    };
    let (run, json) = check_json(&path);
    assert_eq!(run.code, 1);
    assert_eq!(error_codes(&json), ["FOOTER_CHECKSUM"]);
    let msg = json["findings"][0]["message"].as_str().unwrap();
    assert!(msg.contains("0xfffff683"), "{msg}");
    assert!(msg.contains("0xffffef25"), "{msg}");
}

#[test]
fn dfvfs_image_differential_has_no_parent_locator() {
    let Some(path) = corpus("dfvfs_image-differential.vhd") else {
        return;
    };
    let (run, json) = check_json(&path);
    assert_eq!(run.code, 1);
    let codes = error_codes(&json);
    for code in ["FOOTER_CHECKSUM", "HEADER_CHECKSUM", "NO_PARENT_LOCATOR"] {
        assert!(codes.iter().any(|c| c == code), "{code} not in {codes:?}");
    }
    let info = info_json(&path);
    assert_eq!(info["disk_type"], "differencing");
}

#[test]
fn dfvfs_fat_differential_names_the_paths_it_tried() {
    let Some(path) = corpus("dfvfs_fat-differential.vhd") else {
        return;
    };
    let info = info_json(&path);
    assert_eq!(info["disk_type"], "differencing");
    assert_eq!(info["creator_application"], "win");
    assert_eq!(info["creator_application_hex"], "77696e20");
    assert_eq!(info["creator_version"], "10.0");
    assert_eq!(info["creator_host_os"], "Wi2k");
    assert_eq!(info["virtual_size"], 4 << 20);
    let locators = info["parent"]["locators"].as_array().unwrap();
    let by_code = |code: &str| {
        locators
            .iter()
            .find(|l| l["platform_code"] == code)
            .unwrap_or_else(|| panic!("no {code} locator: {locators:?}"))
    };
    assert_eq!(
        by_code("W2ku")["path"],
        "C:\\Projects\\dfvfs\\test_data\\fat-parent.vhd"
    );
    assert_eq!(by_code("W2ru")["path"], ".\\fat-parent.vhd");
    // Data space in bytes (4096 and 65536), as Windows writes it.
    assert_eq!(by_code("W2ku")["data_space"], 4096);
    assert_eq!(by_code("W2ru")["data_space"], 65536);

    // The structure is valid; only the parent is missing.
    let (run, json) = check_json(&path);
    assert_eq!(run.code, 1);
    assert_eq!(error_codes(&json), ["PARENT_NOT_FOUND"]);

    let Err(err) = vhdkit::disk::open(&path) else {
        panic!("opened without its parent");
    };
    assert_eq!(err.kind(), "parent");
    let msg = err.to_string();
    let beside = path.parent().unwrap().join("fat-parent.vhd");
    for part in [
        "fat-parent.vhd",
        "not found",
        "tried",
        "not followed",
        &beside.display().to_string(),
    ] {
        assert!(msg.contains(part), "{part:?} not in {msg}");
    }
}

#[test]
fn libvhdi_footer_parses_with_a_valid_checksum() {
    let Some(path) = corpus("libvhdi_file_footer.1") else {
        return;
    };
    let bytes = std::fs::read(path).unwrap();
    let f = Footer::parse(&bytes, 0).expect("footer");
    assert_eq!(f.checksum, f.computed_checksum());
    assert_eq!(&f.creator_application, b"vpc ");
    assert_eq!(f.creator_version, 0x0001_0000);
    assert_eq!(f.geometry.size_bytes(), 536_739_840);
    assert_eq!(f.current_size, 536_870_912);
    assert_eq!(f.to_bytes().as_slice(), bytes.as_slice());
}

#[test]
fn libvhdi_header_parses_with_a_valid_checksum() {
    let Some(path) = corpus("libvhdi_dynamic_disk_header.1") else {
        return;
    };
    let bytes = std::fs::read(path).unwrap();
    let h = DynamicHeader::parse(&bytes, 512).expect("header");
    assert_eq!(h.checksum, h.computed_checksum());
    let codes: Vec<PlatformCode> = h
        .parent_locators
        .iter()
        .map(|l| l.code())
        .filter(|c| *c != PlatformCode::None)
        .collect();
    assert_eq!(
        codes,
        [
            PlatformCode::W2ku,
            PlatformCode::W2ru,
            PlatformCode::Wi2k,
            PlatformCode::Wi2r
        ]
    );
    for l in h.parent_locators.iter().filter(|l| l.platform_code != 0) {
        assert_eq!(l.platform_data_space, 512);
        assert_eq!(l.data_space_bytes(), 512);
    }
    assert_eq!(h.to_bytes().as_slice(), bytes.as_slice());
}
