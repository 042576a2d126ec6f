//! Property tests: structures round-trip field by field, and no byte of any
//! file makes `Layout::parse`, `check`, `info` or reading panic.

mod common;

use proptest::prelude::*;

use common::*;
use vhdkit::format::{Bat, DynamicHeader, Footer, Geometry, Layout, ParentLocator};

fn bytes_n<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    prop::collection::vec(any::<u8>(), N).prop_map(|v| v.try_into().unwrap())
}

prop_compose! {
    fn footer()(
        features in any::<u32>(),
        file_format_version in any::<u32>(),
        data_offset in any::<u64>(),
        time_stamp in any::<u32>(),
        creator_application in any::<[u8; 4]>(),
        creator_version in any::<u32>(),
        creator_host_os in any::<u32>(),
        original_size in any::<u64>(),
        current_size in any::<u64>(),
        geometry in (any::<u16>(), any::<u8>(), any::<u8>()),
        disk_type_code in any::<u32>(),
        checksum in any::<u32>(),
        unique_id in any::<[u8; 16]>(),
        saved_state in any::<u8>(),
        reserved in bytes_n::<427>(),
    ) -> Footer {
        Footer {
            features, file_format_version, data_offset, time_stamp,
            creator_application, creator_version, creator_host_os,
            original_size, current_size,
            geometry: Geometry { cylinders: geometry.0, heads: geometry.1, sectors_per_track: geometry.2 },
            disk_type_code, checksum, unique_id, saved_state, reserved,
        }
    }
}

prop_compose! {
    fn locator()(f in any::<(u32, u32, u32, u32, u64)>()) -> ParentLocator {
        ParentLocator {
            platform_code: f.0,
            platform_data_space: f.1,
            platform_data_length: f.2,
            reserved: f.3,
            platform_data_offset: f.4,
        }
    }
}

prop_compose! {
    fn header()(
        data_offset in any::<u64>(),
        table_offset in any::<u64>(),
        header_version in any::<u32>(),
        max_table_entries in any::<u32>(),
        block_size in any::<u32>(),
        checksum in any::<u32>(),
        parent_unique_id in any::<[u8; 16]>(),
        parent_time_stamp in any::<u32>(),
        reserved1 in any::<u32>(),
        parent_unicode_name in bytes_n::<512>(),
        locators in prop::collection::vec(locator(), 8),
        reserved2 in bytes_n::<256>(),
    ) -> DynamicHeader {
        DynamicHeader {
            data_offset, table_offset, header_version, max_table_entries,
            block_size, checksum, parent_unique_id, parent_time_stamp,
            reserved1, parent_unicode_name,
            parent_locators: locators.try_into().unwrap(),
            reserved2,
        }
    }
}

/// Runs everything that reads a file on `bytes`; any panic fails the case.
fn read_everything(bytes: &[u8]) {
    read_everything_beside(bytes, &[]);
}

/// The same, with other files (a parent) beside it.
fn read_everything_beside(bytes: &[u8], others: &[(&str, &[u8])]) {
    let _ = Layout::parse(bytes);
    let dir = tempfile::tempdir().unwrap();
    for (name, b) in others {
        std::fs::write(dir.path().join(name), b).unwrap();
    }
    let path = dir.path().join("x.vhd");
    std::fs::write(&path, bytes).unwrap();
    let _ = vhdkit::check::check_path(&path, &Default::default());
    if let Ok(info) = vhdkit::commands::info::info(&path) {
        let _ = info.to_text();
    }
    if let Ok(disk) = vhdkit::disk::open(&path) {
        // Read the start, the end and a stretch across a block boundary.
        let size = disk.size_bytes();
        let mut buf = vec![0u8; 4096];
        for at in [0, size / 2 - size / 2 % 512, size.saturating_sub(4096)] {
            let n = 4096.min(size - at.min(size)) as usize;
            let _ = disk.read_at(at, &mut buf[..n]);
        }
        let _ = disk.is_unallocated(0, size);
    }
    // Repair writes a copy that checks clean, or nothing; never the input.
    let out = dir.path().join("out.vhd");
    match vhdkit::commands::repair::repair(&path, &out) {
        Ok(_) => {
            let report = vhdkit::check::check_path(&out, &Default::default()).unwrap();
            assert!(report.ok, "repaired copy fails: {:?}", report.findings);
        }
        Err(_) => assert!(!out.exists(), "repair failed but wrote {}", out.display()),
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the input changed");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn footer_round_trips(f in footer()) {
        let bytes = f.to_bytes();
        prop_assert_eq!(Footer::parse(&bytes, 0).unwrap(), f);
    }

    #[test]
    fn header_round_trips(h in header()) {
        let bytes = h.to_bytes();
        prop_assert_eq!(DynamicHeader::parse(&bytes, 512).unwrap(), h);
    }

    #[test]
    fn bat_round_trips(entries in prop::collection::vec(any::<u32>(), 0..600)) {
        let bat = Bat { entries };
        let bytes = bat.to_bytes();
        prop_assert_eq!(bytes.len() % 512, 0);
        let n = u32::try_from(bat.entries.len()).unwrap();
        prop_assert_eq!(Bat::parse(&bytes, n, 0).unwrap(), bat);
    }

    #[test]
    fn sealed_checksums_verify(mut f in footer(), mut h in header()) {
        f.seal();
        h.seal();
        let f2 = Footer::parse(&f.to_bytes(), 0).unwrap();
        let h2 = DynamicHeader::parse(&h.to_bytes(), 0).unwrap();
        prop_assert_eq!(f2.checksum, f2.computed_checksum());
        prop_assert_eq!(h2.checksum, h2.computed_checksum());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
        read_everything(&bytes);
    }

    /// Random bytes that end in a footer with random fields (so that the
    /// parsers get past the cookie).
    #[test]
    fn random_footers_never_panic(
        mut f in footer(),
        head in any::<bool>(),
        body in prop::collection::vec(any::<u8>(), 0..4096),
        small_offset in any::<bool>(),
    ) {
        if small_offset {
            f.data_offset %= 4096;
        }
        f.seal();
        let mut bytes = Vec::new();
        if head {
            bytes.extend_from_slice(&f.to_bytes());
        }
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&f.to_bytes());
        read_everything(&bytes);
    }
}

/// Positions a flip may hit: mostly the metadata (footer copy, header, BAT,
/// bitmaps, tail footer), sometimes anywhere.
fn flips(len: usize, meta: Vec<usize>) -> impl Strategy<Value = Vec<(usize, u8)>> {
    let pos = prop_oneof![
        3 => prop::sample::select(meta),
        1 => 0..len,
    ];
    prop::collection::vec((pos, 1..=255u8), 1..8)
}

fn metadata_positions(img: &Image) -> Vec<usize> {
    let mut v: Vec<usize> = (0..2048).collect();
    v.extend(img.footer_offset as usize..img.footer_offset as usize + 512);
    for &(_, at) in &img.block_offsets {
        v.extend(at as usize..at as usize + 64);
    }
    for &at in &img.locator_offsets {
        v.extend(at as usize..at as usize + 64);
    }
    if let Some(at) = img.batmap_header_offset {
        v.extend(at as usize..at as usize + 1024);
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn flipped_dynamic_never_panics(fl in flips(
        golden_dynamic().with_batmap().build().bytes.len(),
        metadata_positions(&golden_dynamic().with_batmap().build()),
    )) {
        let mut img = golden_dynamic().with_batmap().build();
        for (at, x) in fl {
            img.bytes[at] ^= x;
        }
        read_everything(&img.bytes);
    }

    #[test]
    fn flipped_child_never_panics(fl in flips(
        golden_child([0x50; 16]).build().bytes.len(),
        metadata_positions(&golden_child([0x50; 16]).build()),
    )) {
        let mut img = golden_child([0x50; 16]).build();
        for (at, x) in fl {
            img.bytes[at] ^= x;
        }
        let parent = golden_dynamic().unique_id([0x50; 16]).build();
        read_everything_beside(&img.bytes, &[("parent.vhd", &parent.bytes)]);
    }

    #[test]
    fn flipped_parent_never_panics(fl in flips(
        golden_dynamic().build().bytes.len(),
        metadata_positions(&golden_dynamic().build()),
    )) {
        let mut parent = golden_dynamic().unique_id([0x50; 16]).build();
        for (at, x) in fl {
            parent.bytes[at] ^= x;
        }
        let child = golden_child([0x50; 16]).build();
        read_everything_beside(&child.bytes, &[("parent.vhd", &parent.bytes)]);
    }

    #[test]
    fn flipped_fixed_never_panics(fl in prop::collection::vec((0..512usize, 1..=255u8), 1..8)) {
        let mut img = Spec::fixed(64 << 10).data(pattern(3, 64 << 10)).build();
        let tail = img.footer_offset as usize;
        for (at, x) in fl {
            img.bytes[tail + at] ^= x;
        }
        read_everything(&img.bytes);
    }
}
