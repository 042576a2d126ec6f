//! Differencing chains built with the test builder, read through
//! `vhdkit::disk::open`: parent data where the child's bitmap bits are 0 or
//! its blocks unallocated, child data where bits are 1, sector by sector; and
//! parents found through W2ru and W2ku locators.

mod common;

use std::path::Path;

use common::*;
use vhdkit::disk::Kind;

const BS: usize = GOLDEN_BLOCK as usize;
const SECTORS: usize = BS / 512;

fn parent_spec() -> Spec {
    Spec::dynamic(GOLDEN_SIZE, GOLDEN_BLOCK)
        .unique_id([0x50; 16])
        .block(0, &pattern(100, BS))
        .block(1, &pattern(101, BS))
        .block(2, &pattern(102, BS))
}

fn link(name: &str, locators: Vec<Locator>) -> ParentLink {
    ParentLink {
        name: name.into(),
        unique_id: [0x50; 16],
        locators,
    }
}

/// A bitmap with the given sectors set.
fn bits(sectors: &[usize]) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    for &s in sectors {
        b[s / 8] |= 0x80 >> (s % 8);
    }
    b
}

/// The whole virtual disk.
fn read_all(path: &Path) -> Vec<u8> {
    let disk = vhdkit::disk::open(path).expect("open");
    let mut buf = vec![0u8; disk.size_bytes() as usize];
    disk.read_at(0, &mut buf).expect("read");
    buf
}

#[test]
fn child_sectors_over_parent_sectors() {
    let dir = tempfile::tempdir().unwrap();
    let parent = parent_spec().build();
    parent.write(dir.path(), "parent.vhd");
    let mixed = [0, 2, 3, 64, SECTORS - 1];
    let child = Spec::differencing(
        GOLDEN_SIZE,
        GOLDEN_BLOCK,
        link("parent.vhd", vec![Locator::w2ru(".\\parent.vhd")]),
    )
    .unique_id([0x60; 16])
    // Block 0: not allocated in the child: the parent's.
    // Block 1: allocated, no bit set: the parent's (its data bytes are zero).
    .block_with_bitmap(1, bits(&[]), &[])
    // Block 2: some sectors the child's, the others the parent's.
    .block_with_bitmap(2, bits(&mixed), &pattern(202, BS))
    // Block 3: unallocated in the parent, whole in the child.
    .block(3, &pattern(203, BS))
    .build();
    let path = child.write(dir.path(), "child.vhd");

    let mut expected = vec![0u8; GOLDEN_SIZE as usize];
    expected[..BS].copy_from_slice(&pattern(100, BS));
    expected[BS..2 * BS].copy_from_slice(&pattern(101, BS));
    let p2 = pattern(102, BS);
    let c2 = pattern(202, BS);
    for s in 0..SECTORS {
        let src = if mixed.contains(&s) { &c2 } else { &p2 };
        let r = s * 512..(s + 1) * 512;
        expected[2 * BS + r.start..2 * BS + r.end].copy_from_slice(&src[r]);
    }
    expected[3 * BS..4 * BS].copy_from_slice(&pattern(203, BS));

    let disk = vhdkit::disk::open(&path).expect("open");
    assert_eq!(disk.kind(), Kind::Differencing);
    assert!(disk.parent().is_some());
    let got = read_all(&path);
    assert!(got == expected, "whole-disk read differs");

    // Unaligned reads inside a sector, across sectors and across blocks.
    for (offset, len) in [
        (2 * BS + 100, 300),
        (2 * BS + 700, 2000),
        (2 * BS + 511, 2),
        (3 * BS - 10, 20),
        (BS - 1, 2 * BS + 2),
        (4 * BS - 600, 1200),
    ] {
        let mut buf = vec![0u8; len];
        disk.read_at(offset as u64, &mut buf).unwrap();
        assert!(
            buf == expected[offset..offset + len],
            "read at {offset:#x} + {len}"
        );
    }

    let (run, json) = check_json(&path);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(json["ok"], true);
}

#[test]
fn three_links_merge_top_down() {
    let dir = tempfile::tempdir().unwrap();
    parent_spec().build().write(dir.path(), "base.vhd");
    Spec::differencing(
        GOLDEN_SIZE,
        GOLDEN_BLOCK,
        link("base.vhd", vec![Locator::w2ru(".\\base.vhd")]),
    )
    .unique_id([0x61; 16])
    .block_with_bitmap(0, bits(&[1]), &pattern(150, BS))
    .build()
    .write(dir.path(), "mid.vhd");
    let leaf = Spec::differencing(
        GOLDEN_SIZE,
        GOLDEN_BLOCK,
        ParentLink {
            name: "mid.vhd".into(),
            unique_id: [0x61; 16],
            locators: vec![Locator::w2ru(".\\mid.vhd")],
        },
    )
    .unique_id([0x62; 16])
    .block_with_bitmap(0, bits(&[2]), &pattern(160, BS))
    .build()
    .write(dir.path(), "leaf.vhd");

    let got = read_all(&leaf);
    let base = pattern(100, BS);
    assert_eq!(got[..512], base[..512]);
    assert_eq!(got[512..1024], pattern(150, BS)[512..1024]);
    assert_eq!(got[1024..1536], pattern(160, BS)[1024..1536]);
    assert_eq!(got[1536..BS], base[1536..]);
    let (run, _) = check_json(&leaf);
    assert_eq!(run.code, 0, "{}", run.stdout);
}

#[test]
fn relative_w2ru_path_with_backslashes_resolves() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    parent_spec()
        .build()
        .write(&dir.path().join("sub"), "base.vhd");
    let child = Spec::differencing(
        GOLDEN_SIZE,
        GOLDEN_BLOCK,
        link("base.vhd", vec![Locator::w2ru(".\\sub\\base.vhd")]),
    )
    .build()
    .write(dir.path(), "child.vhd");
    let got = read_all(&child);
    assert_eq!(got[..BS], pattern(100, BS)[..]);
    let (run, _) = check_json(&child);
    assert_eq!(run.code, 0, "{}", run.stdout);
}

#[test]
fn absolute_w2ku_path_resolves_beside_the_child() {
    let dir = tempfile::tempdir().unwrap();
    parent_spec().build().write(dir.path(), "base.vhd");
    let stored = "C:\\vms\\images\\base.vhd";
    let child = Spec::differencing(
        GOLDEN_SIZE,
        GOLDEN_BLOCK,
        link(stored, vec![Locator::w2ku(stored).space(Space::Sectors(1))]),
    )
    .build()
    .write(dir.path(), "child.vhd");
    let got = read_all(&child);
    assert_eq!(got[BS..2 * BS], pattern(101, BS)[..]);
    let info = vhdkit::commands::info::info(&child).unwrap();
    let parent = info.parent.expect("parent info");
    assert_eq!(parent.found, Some(dir.path().join("base.vhd")));
    assert_eq!(parent.id_match, Some(true));
    assert!(parent.tried.iter().any(|a| a.source == "W2ku"));
}

#[test]
fn a_smaller_parent_reads_as_zero_beyond_its_end() {
    let dir = tempfile::tempdir().unwrap();
    Spec::dynamic(GOLDEN_SIZE / 2, GOLDEN_BLOCK)
        .unique_id([0x50; 16])
        .block(7, &pattern(107, BS))
        .build()
        .write(dir.path(), "small.vhd");
    let child = Spec::differencing(
        GOLDEN_SIZE,
        GOLDEN_BLOCK,
        link("small.vhd", vec![Locator::w2ru("small.vhd")]),
    )
    .build()
    .write(dir.path(), "child.vhd");
    let got = read_all(&child);
    assert_eq!(got[7 * BS..8 * BS], pattern(107, BS)[..]);
    assert!(got[8 * BS..].iter().all(|&b| b == 0));
    // A read straddling the parent's end.
    let disk = vhdkit::disk::open(&child).unwrap();
    let mut buf = vec![0u8; 1024];
    disk.read_at(8 * BS as u64 - 512, &mut buf).unwrap();
    assert_eq!(buf[..512], pattern(107, BS)[BS - 512..]);
    assert!(buf[512..].iter().all(|&b| b == 0));
}

#[test]
fn opening_refuses_a_broken_chain() {
    let cases = damage_cases();
    for name in [
        "missing_parent",
        "parent_id_mismatch",
        "parent_loop",
        "chain_too_deep",
    ] {
        let case = cases.iter().find(|c| c.name == name).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = case.write(dir.path());
        let Err(e) = vhdkit::disk::open(&path) else {
            panic!("{name}: opened");
        };
        assert_eq!(e.kind(), "parent", "{name}: {e}");
    }
}

#[test]
fn a_chain_of_sixteen_links_opens() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in chain(16) {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let leaf = dir.path().join("link15.vhd");
    vhdkit::disk::open(&leaf).expect("16 links are allowed");
    let (run, json) = check_json(&leaf);
    assert_eq!(run.code, 0, "{json}");
}

#[test]
fn info_follows_sixteen_links_and_stops_at_seventeen() {
    let depth = |info: &vhdkit::commands::info::Info| {
        let mut n = 1;
        let mut at = info;
        while let Some(p) = at.parent.as_ref().and_then(|p| p.info.as_deref()) {
            n += 1;
            at = p;
        }
        (n, at.parent.as_ref().and_then(|p| p.error.clone()))
    };
    for (links, expect_error) in [(16, false), (17, true)] {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in chain(links) {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let leaf = dir.path().join(format!("link{}.vhd", links - 1));
        let info = vhdkit::commands::info::info(&leaf).unwrap();
        let (n, error) = depth(&info);
        assert_eq!(n, 16, "{links} links");
        assert_eq!(error.is_some(), expect_error, "{links} links: {error:?}");
    }
}

#[test]
fn parent_with_another_block_size() {
    let dir = tempfile::tempdir().unwrap();
    let pbs = 256 << 10;
    Spec::dynamic(GOLDEN_SIZE, pbs)
        .unique_id([0x50; 16])
        .block(1, &pattern(111, pbs as usize))
        .build()
        .write(dir.path(), "parent.vhd");
    let child = Spec::differencing(
        GOLDEN_SIZE,
        GOLDEN_BLOCK,
        link("parent.vhd", vec![Locator::w2ru("parent.vhd")]),
    )
    .block_with_bitmap(5, bits(&[0]), &pattern(205, BS))
    .build()
    .write(dir.path(), "child.vhd");
    let got = read_all(&child);
    let p = pattern(111, pbs as usize);
    let mut expected = vec![0u8; GOLDEN_SIZE as usize];
    expected[pbs as usize..2 * pbs as usize].copy_from_slice(&p);
    expected[5 * BS..5 * BS + 512].copy_from_slice(&pattern(205, BS)[..512]);
    assert!(got == expected);
}
