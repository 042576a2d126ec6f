use super::gpt::GptHeader;
use super::mbr::{Mbr, MbrEntry};
use super::*;
use crate::disk::device::{Device, MemDevice};

const MIB: usize = 1024 * 1024;

fn mbr_disk(size: usize, entries: &[(u8, u8, u32, u32)]) -> MemDevice {
    let mut bytes = vec![0u8; size];
    bytes[mbr::DISK_SIGNATURE_OFFSET..mbr::DISK_SIGNATURE_OFFSET + 4]
        .copy_from_slice(&0xdead_beefu32.to_le_bytes());
    for (i, &(boot, ty, start, len)) in entries.iter().enumerate() {
        if len == 0 {
            continue;
        }
        let e = MbrEntry {
            boot_indicator: boot,
            start_chs: mbr::lba_to_chs(u64::from(start)),
            partition_type: ty,
            end_chs: mbr::lba_to_chs(u64::from(start) + u64::from(len) - 1),
            start_lba: start,
            size_sectors: len,
        };
        let at = mbr::ENTRIES_OFFSET + i * mbr::ENTRY_SIZE;
        bytes[at..at + 16].copy_from_slice(&e.to_bytes());
    }
    bytes[510] = 0x55;
    bytes[511] = 0xAA;
    MemDevice { bytes }
}

/// A GPT made for `old_sectors`, in a device of `size` bytes (grown).
fn gpt_disk(old_sectors: u64, size: usize) -> MemDevice {
    let mut bytes = vec![0u8; size];
    let (header, array) = gpt::tests::golden(old_sectors);
    let pmbr = mbr_disk(
        512,
        &[(0, 0xEE, 1, u32::try_from(old_sectors - 1).unwrap())],
    );
    bytes[..512].copy_from_slice(&pmbr.bytes);
    bytes[512..1024].copy_from_slice(&header);
    bytes[1024..1024 + array.len()].copy_from_slice(&array);
    let alt = usize::try_from(old_sectors - 1).unwrap() * 512;
    // Backup: same fields, my/alternate swapped, array before it.
    let mut h = GptHeader::parse(&header, 512, old_sectors, "t").unwrap();
    h.my_lba = old_sectors - 1;
    h.alternate_lba = 1;
    h.partition_entry_lba = old_sectors - 33;
    bytes[alt..alt + 512].copy_from_slice(&h.to_bytes());
    bytes[alt - 32 * 512..alt].copy_from_slice(&array);
    MemDevice { bytes }
}

#[test]
fn reads_mbr_with_boot_flag() {
    let d = mbr_disk(4 * MIB, &[(0x80, 0x83, 2048, 4096)]);
    let t = read_table(&d).unwrap();
    assert_eq!(t.kind, TableKind::Mbr);
    assert_eq!(t.disk_sectors, 8192);
    assert_eq!(t.disk_id.as_deref(), Some("0xdeadbeef"));
    let p = &t.partitions[0];
    assert_eq!(
        (
            p.number,
            p.start_lba,
            p.end_lba,
            p.type_id.as_str(),
            p.bootable
        ),
        (1, 2048, 6143, "83", true)
    );
}

#[test]
fn nova_rule_grows_mbr_to_last_sector() {
    let mut d = mbr_disk(8 * MIB, &[(0x80, 0x83, 2048, 4096)]);
    let plan = plan_grow_partition(&d, 8 * 1024 * 1024, GrowRule::Nova).unwrap();
    assert!(plan.partition_changed);
    assert_eq!(plan.after.partitions[0].end_lba, 16383);
    apply(&mut d, &plan).unwrap();
    let t = read_table(&d).unwrap();
    assert_eq!(t.partitions[0].end_lba, 16383);
    assert!(t.partitions[0].bootable);
    // Boot code and disk signature kept, CHS recomputed.
    assert_eq!(&d.bytes[440..444], &0xdead_beefu32.to_le_bytes());
    let e = MbrEntry::parse(d.bytes[446..462].try_into().unwrap());
    assert_eq!(e.end_chs, mbr::lba_to_chs(16383));
}

#[test]
fn growpart_rule_rounds_length_to_mib_and_leaves_gpt_room() {
    // 8 MiB + 10 sectors: end would be sectors-34; the length is floored to MiB.
    let size = 8 * MIB + 10 * 512;
    let d = mbr_disk(size, &[(0, 0x83, 2048, 2048)]);
    let plan = plan_grow_partition(&d, u64::try_from(size).unwrap(), GrowRule::Growpart).unwrap();
    let p = &plan.after.partitions[0];
    assert_eq!(p.size_sectors % MIB_SECTORS, 0);
    assert_eq!(p.end_lba, 2048 + 6 * 2048 - 1);
    // Start not MiB-aligned: length still whole MiB.
    let d = mbr_disk(8 * MIB, &[(0, 0x83, 63, 2048)]);
    let plan = plan_grow_partition(&d, 8 * 1024 * 1024, GrowRule::Growpart).unwrap();
    let p = &plan.after.partitions[0];
    assert_eq!(p.size_sectors, 7 * 2048);
    assert!(p.end_lba <= 16384 - 34);
}

#[test]
fn growpart_rule_leaves_small_growth_alone() {
    let d = mbr_disk(4 * MIB, &[(0, 0x83, 2048, 4096)]);
    let plan = plan_grow_partition(&d, 4 * 1024 * 1024, GrowRule::Growpart).unwrap();
    assert!(!plan.partition_changed);
    assert!(plan.writes.is_empty());
    assert_eq!(plan.notes.len(), 1);
}

#[test]
fn only_a_lone_partition_one_is_grown() {
    let d = mbr_disk(4 * MIB, &[(0, 0x83, 2048, 1024), (0, 0x83, 4096, 1024)]);
    let e = plan_grow_partition(&d, 4 * 1024 * 1024, GrowRule::Nova).unwrap_err();
    assert!(
        matches!(e, PartError::Unsupported(ref f) if f.field == "partitions" && f.found == "partitions [1, 2]"),
        "{e}"
    );
    let d = mbr_disk(4 * MIB, &[(0, 0, 0, 0), (0, 0x83, 4096, 1024)]);
    let e = plan_grow_partition(&d, 4 * 1024 * 1024, GrowRule::Growpart).unwrap_err();
    assert!(
        matches!(e, PartError::Unsupported(ref f) if f.found == "partitions [2]"),
        "{e}"
    );
}

#[test]
fn extended_and_logical_partitions_count() {
    // Extended partition 1 at 2048 with one logical at EBR+2048.
    let mut d = mbr_disk(8 * MIB, &[(0, 0x05, 2048, 8192)]);
    let ebr = mbr_disk(512, &[(0, 0x83, 2048, 2048)]);
    d.bytes[2048 * 512..2049 * 512].copy_from_slice(&ebr.bytes);
    let t = read_table(&d).unwrap();
    assert_eq!(t.partitions.len(), 2);
    assert_eq!(
        (t.partitions[1].number, t.partitions[1].start_lba),
        (5, 4096)
    );
    assert!(matches!(
        plan_grow_partition(&d, 8 * 1024 * 1024, GrowRule::Nova),
        Err(PartError::Unsupported(ref f)) if f.found == "partitions [1, 5]"
    ));
    // An EBR chain that loops is corrupt, not an endless walk.
    let looping = mbr_disk(512, &[(0, 0x83, 2048, 2048), (0, 0x05, 0, 1)]);
    d.bytes[2048 * 512..2049 * 512].copy_from_slice(&looping.bytes);
    let e = read_table(&d).unwrap_err();
    assert!(
        matches!(e, PartError::Corrupt(ref f) if f.field == "next_ebr"),
        "{e}"
    );
}

#[test]
fn partition_past_disk_end_is_corrupt() {
    let d = mbr_disk(MIB, &[(0, 0x83, 2048, 4096)]);
    let e = read_table(&d).unwrap_err();
    assert!(e.to_string().contains("start_lba/size"), "{e}");
    assert!(e.to_string().contains("0x1c6"), "{e}");
}

#[test]
fn fat_boot_sector_is_no_table() {
    let mut d = mbr_disk(MIB, &[]);
    d.bytes[0] = 0xEB;
    d.bytes[11..13].copy_from_slice(&512u16.to_le_bytes());
    d.bytes[13] = 4;
    d.bytes[16] = 2;
    // Without the file-system type string it is still read as an MBR.
    assert_eq!(read_table(&d).unwrap().kind, TableKind::Mbr);
    d.bytes[0x36..0x3E].copy_from_slice(b"FAT16   ");
    assert_eq!(read_table(&d).unwrap().kind, TableKind::None);
    let zero = MemDevice {
        bytes: vec![0; MIB],
    };
    let t = read_table(&zero).unwrap();
    assert_eq!(t.kind, TableKind::None);
    assert!(matches!(
        plan_grow_partition(&zero, 1024 * 1024, GrowRule::Nova),
        Err(PartError::Unsupported(ref f)) if f.found == "partitions []"
    ));
}

#[test]
fn gpt_grow_moves_backup_and_keeps_entry() {
    let old = 2048u64;
    let mut d = gpt_disk(old, 4 * MIB);
    let before = read_table(&d).unwrap();
    assert_eq!(before.kind, TableKind::Gpt);
    assert_eq!(before.backup_header_lba, Some(old - 1));
    let p = &before.partitions[0];
    assert_eq!(
        (p.start_lba, p.end_lba, p.name.as_deref(), p.bootable),
        (34, 100, Some("root"), true)
    );
    let plan = plan_grow_partition(&d, 4 * 1024 * 1024, GrowRule::Nova).unwrap();
    apply(&mut d, &plan).unwrap();
    let t = read_table(&d).unwrap();
    assert_eq!(t.backup_header_lba, Some(8191));
    assert_eq!(t.last_usable_lba, Some(8191 - 33));
    assert_eq!(t.partitions[0].end_lba, 8191 - 33);
    assert_eq!(
        t.partitions[0].unique_guid,
        before.partitions[0].unique_guid
    );
    // The backup header is valid and points at its own array.
    let b = GptHeader::parse(&d.bytes[8191 * 512..8192 * 512], 8191 * 512, 8192, "backup").unwrap();
    assert_eq!(
        (b.my_lba, b.alternate_lba, b.partition_entry_lba),
        (8191, 1, 8191 - 32)
    );
    let arr = &d.bytes[(8191 - 32) * 512..(8191 - 32) * 512 + 128 * 128];
    gpt::check_entries(&b, arr, 0, "backup").unwrap();
    // The old backup header is erased; the protective MBR covers the disk.
    assert!(d.bytes[(2047 * 512)..(2048 * 512)].iter().all(|&b| b == 0));
    let pm = Mbr::parse(&d.bytes[..512], 0, "MBR").unwrap();
    assert_eq!(pm.entries[0].size_sectors, 8191);
}

#[test]
fn gpt_growpart_rule_is_whole_mib() {
    let d = gpt_disk(2048, 4 * MIB);
    let plan = plan_grow_partition(&d, 4 * 1024 * 1024, GrowRule::Growpart).unwrap();
    let p = &plan.after.partitions[0];
    assert_eq!(p.size_sectors % MIB_SECTORS, 0);
    assert!(p.end_lba <= 8192 - 34);
    assert_eq!(p.size_sectors, 3 * 2048);
}

#[test]
fn corrupt_gpt_is_refused() {
    let mut d = gpt_disk(2048, 4 * MIB);
    d.bytes[1024 + 40] ^= 1; // entry array byte: array CRC breaks
    let e = read_table(&d).unwrap_err();
    assert!(e.to_string().contains("partition_entry_array_crc32"), "{e}");
    let mut d = gpt_disk(2048, 4 * MIB);
    d.bytes[512 + 60] ^= 1; // header byte: header CRC breaks
    let e = read_table(&d).unwrap_err();
    assert!(
        e.to_string().contains("GPT header at 0x210: header_crc32"),
        "{e}"
    );
}

#[test]
fn apply_refuses_a_stale_plan() {
    let mut d = mbr_disk(8 * MIB, &[(0x80, 0x83, 2048, 4096)]);
    let plan = plan_grow_partition(&d, 8 * 1024 * 1024, GrowRule::Nova).unwrap();
    d.bytes[446] = 0; // boot flag cleared since planning
    assert!(matches!(
        apply(&mut d, &plan),
        Err(PartError::Mismatch { .. })
    ));
}

proptest::proptest! {
    #[test]
    fn reading_never_panics(s0 in proptest::collection::vec(proptest::num::u8::ANY, 512),
                            s1 in proptest::collection::vec(proptest::num::u8::ANY, 512),
                            gpt in proptest::bool::ANY) {
        let mut d = gpt_disk(2048, 2 * MIB);
        d.bytes[..512].copy_from_slice(&s0);
        if gpt {
            d.bytes[446 + 4] = 0xEE;
            d.bytes[510] = 0x55;
            d.bytes[511] = 0xAA;
            d.bytes[512..1024].copy_from_slice(&s1);
        }
        let _ = read_table(&d);
        let _ = plan_grow_partition(&d, 2 * 1024 * 1024, GrowRule::Nova);
        let _ = plan_grow_partition(&d, 2 * 1024 * 1024, GrowRule::Growpart);
    }
}

/// Rewrites entry 0 of the primary GPT with `start..=end` and fixes both CRCs.
fn set_gpt_entry(d: &mut MemDevice, start: u64, end: u64, last_usable: u64) {
    let arr = 1024..1024 + 128 * 128;
    d.bytes[1024 + 32..1024 + 40].copy_from_slice(&start.to_le_bytes());
    d.bytes[1024 + 40..1024 + 48].copy_from_slice(&end.to_le_bytes());
    let mut h = GptHeader::parse(&d.bytes[512..1024], 512, 4096, "t").unwrap();
    h.last_usable_lba = last_usable;
    h.partition_entry_array_crc32 = crc32fast::hash(&d.bytes[arr]);
    d.bytes[512..1024].copy_from_slice(&h.to_bytes());
}

proptest::proptest! {
    #[test]
    fn gpt_plans_never_panic(start in 0u64..5000, len in 0u64..5000, last in 0u64..5000,
                             grow in 0usize..3) {
        let mut d = gpt_disk(2048, 2 * MIB);
        set_gpt_entry(&mut d, start, start.saturating_add(len), last);
        d.bytes.resize(2 * MIB + grow * 1024 * 512, 0);
        let n = d.size_bytes();
        for rule in [GrowRule::Nova, GrowRule::Growpart] {
            if let Ok(plan) = plan_grow_partition(&d, n, rule) {
                let mut copy = d.clone();
                apply(&mut copy, &plan).unwrap();
                let t = read_table(&copy).unwrap();
                proptest::prop_assert!(t.partitions[0].end_lba >= plan.before.partitions[0].end_lba);
                proptest::prop_assert_eq!(t.backup_header_lba, Some(n / 512 - 1));
            }
        }
    }

    #[test]
    fn mbr_plans_never_panic(start in 0u32..20000, len in 0u32..20000, sectors in 1usize..20000) {
        let d = mbr_disk(sectors * 512, &[(0x80, 0x83, start, len)]);
        for rule in [GrowRule::Nova, GrowRule::Growpart] {
            if let Ok(plan) = plan_grow_partition(&d, d.size_bytes(), rule) {
                let mut copy = d.clone();
                apply(&mut copy, &plan).unwrap();
                let p = &read_table(&copy).unwrap().partitions[0];
                proptest::prop_assert!(p.end_lba < u64::try_from(sectors).unwrap());
                proptest::prop_assert_eq!(p.start_lba, u64::from(start));
            }
        }
    }
}
