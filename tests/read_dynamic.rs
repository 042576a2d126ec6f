//! Reading dynamic disks through `vhdkit::disk::open`: bitmap bits of 0 read
//! as zero, unallocated blocks read as zero, a partial last block, and reads
//! past the virtual size refused.

mod common;

use common::*;

const BS: usize = GOLDEN_BLOCK as usize;

#[test]
fn zero_bits_and_unallocated_blocks_read_as_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut bitmap = vec![0u8; 512];
    bitmap[0] = 0b1010_0000; // sectors 0 and 2
    let path = Spec::dynamic(GOLDEN_SIZE, GOLDEN_BLOCK)
        .block_with_bitmap(2, bitmap, &pattern(5, BS))
        .build()
        .write(dir.path(), "d.vhd");
    let disk = vhdkit::disk::open(&path).unwrap();
    let mut got = vec![0u8; GOLDEN_SIZE as usize];
    disk.read_at(0, &mut got).unwrap();
    let mut expected = vec![0u8; GOLDEN_SIZE as usize];
    let data = pattern(5, BS);
    for s in [0, 2] {
        let r = s * 512..(s + 1) * 512;
        expected[2 * BS + r.start..2 * BS + r.end].copy_from_slice(&data[r]);
    }
    assert!(got == expected);
    assert!(disk.is_unallocated(0, 2 * BS as u64));
    assert!(!disk.is_unallocated(BS as u64, 2 * BS as u64));
    // The sectors hidden by the bitmap are data qemu would show: a warning.
    let (run, json) = check_json(&path);
    assert_eq!(run.code, 0);
    let hidden = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "BITMAP_HIDDEN_DATA")
        .expect("hidden data warning");
    assert!(hidden["message"]
        .as_str()
        .unwrap()
        .starts_with("126 sector(s)"));
}

#[test]
fn a_partial_last_block_reads_to_the_virtual_size() {
    let dir = tempfile::tempdir().unwrap();
    let size = GOLDEN_SIZE + 512;
    let path = Spec::dynamic(size, GOLDEN_BLOCK)
        .block(16, &pattern(6, BS))
        .build()
        .write(dir.path(), "p.vhd");
    let (run, _) = check_json(&path);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let disk = vhdkit::disk::open(&path).unwrap();
    assert_eq!(disk.size_bytes(), size);
    let mut buf = vec![0u8; 1024];
    disk.read_at(size - 1024, &mut buf).unwrap();
    assert!(buf[..512].iter().all(|&b| b == 0));
    assert_eq!(buf[512..], pattern(6, BS)[..512]);
    let err = disk.read_at(size - 512, &mut buf).unwrap_err();
    assert!(err.to_string().contains("past the virtual size"), "{err}");
    let mut empty = [0u8; 0];
    disk.read_at(size, &mut empty).unwrap();
}

#[test]
fn fixed_disks_read_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let img = golden_fixed().build();
    let path = img.write(dir.path(), "f.vhd");
    let disk = vhdkit::disk::open(&path).unwrap();
    assert_eq!(disk.size_bytes(), 2 << 20);
    let mut buf = vec![0u8; 2 << 20];
    disk.read_at(0, &mut buf).unwrap();
    assert!(buf == pattern(9, 2 << 20));
}
