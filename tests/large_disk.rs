//! A dynamic disk at the VHD size limit: a BAT of about a million entries,
//! a few blocks allocated, a file of a few MiB. `check`, `info` and reading
//! must handle it (the work is linear in the BAT).

mod common;

use common::*;
use vhdkit::format::MAX_VIRTUAL_SIZE;

const MIB: usize = 1 << 20;

fn huge(size: u64) -> Spec {
    let bs = 2 * MIB;
    let entries = u32::try_from(size.div_ceil(bs as u64)).unwrap();
    Spec::dynamic(size, 2 << 20)
        .block(0, &pattern(1, bs))
        .block(entries / 2, &pattern(2, bs))
        .block(entries - 1, &pattern(3, bs))
}

#[test]
fn the_largest_vhd_checks_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let spec = huge(MAX_VIRTUAL_SIZE);
    let img = spec.build();
    assert!(img.bytes.len() < 12 * MIB);
    let path = img.write(dir.path(), "2040g.vhd");

    let (run, json) = check_json(&path);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(json["ok"], true);

    let info = vhdkit::commands::info::info(&path).unwrap();
    assert_eq!(info.virtual_size, MAX_VIRTUAL_SIZE);
    assert_eq!(info.max_table_entries, Some(1_044_480));
    assert_eq!(info.allocated_blocks, Some(3));

    let disk = vhdkit::disk::open(&path).unwrap();
    let last = MAX_VIRTUAL_SIZE - 512;
    let mut buf = vec![0u8; 512];
    disk.read_at(last, &mut buf).unwrap();
    assert_eq!(buf, pattern(3, 2 * MIB)[2 * MIB - 512..]);
    let mid = u64::from(1_044_480u32 / 2) * (2 << 20);
    disk.read_at(mid, &mut buf).unwrap();
    assert_eq!(buf, pattern(2, 2 * MIB)[..512]);
    disk.read_at(mid - 512, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    assert!(disk.is_unallocated(4 << 20, 1 << 30));
}

#[test]
fn two_tib_is_past_the_vhd_limit() {
    let dir = tempfile::tempdir().unwrap();
    let size = 2u64 << 40;
    let img = huge(size).build();
    let path = img.write(dir.path(), "2t.vhd");
    let (run, json) = check_json(&path);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(error_codes(&json), ["FOOTER_CURRENT_SIZE"]);
    let finding = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "FOOTER_CURRENT_SIZE")
        .unwrap();
    assert_eq!(finding["offset"], img.footer_offset + 48);
    let msg = finding["message"].as_str().unwrap();
    assert!(msg.contains(&size.to_string()), "{msg}");
    assert!(msg.contains(&MAX_VIRTUAL_SIZE.to_string()), "{msg}");
    // Still readable: the limit is qemu's and the BAT's, not the reader's.
    let info = vhdkit::commands::info::info(&path).unwrap();
    assert_eq!(info.max_table_entries, Some(1 << 20));
}
