//! Partition tables (MBR with extended/logical partitions, and GPT): read
//! them from a whole-disk [`Device`], and grow partition 1 to a grown disk the
//! way Nova's XenAPI driver does for `auto_disk_config` (or the way
//! cloud-utils' `growpart` does).
//!
//! Planning is separate from writing: [`plan_grow_partition`] reads the disk
//! and returns the exact bytes to write as plain data; [`apply`] checks the
//! disk still holds what was planned against, writes, and reads the result
//! back. Only 512-byte sectors are supported.
//!
//! MBR and GPT are parsed by hand ([`mbr`], [`gpt`]) rather than through the
//! `mbrman` and `gpt` crates: `mbrman` leaves CHS fields stale, `gpt` 4.1
//! renumbers entries with gaps and moves the backup header only as a side
//! effect, and neither touches the protective MBR. A hand parser keeps every
//! byte we do not mean to change, and lets the plan be pure data.

pub mod gpt;
pub mod growpart;
pub mod mbr;

use std::collections::BTreeSet;

use crate::disk::device::{check_range, Device};
use crate::format::FormatError;
use gpt::{GptEntry, GptHeader};
use mbr::{Mbr, MbrEntry};

/// Bytes in a sector (the only sector size supported).
pub const SECTOR_SIZE: u64 = 512;
/// One MiB in sectors: growpart makes partition lengths whole MiB.
pub const MIB_SECTORS: u64 = 2048;
/// Sectors growpart keeps free at the end of any disk for a GPT backup
/// (header + 128-entry array), so an MBR disk can later become GPT.
pub const GROWPART_GPT_SECOND_SIZE: u64 = 33;
/// growpart caps an MBR partition's end at this sector.
pub const GROWPART_MBR_MAX_END: u64 = 1 << 32;
/// growpart leaves a partition alone unless it grows by more than this
/// many sectors (its FUDGE of 1 MiB).
pub const GROWPART_FUDGE_SECTORS: u64 = 2048;
/// Most logical partitions followed in an EBR chain (bounds the walk).
pub const MAX_LOGICAL_PARTITIONS: usize = 256;

/// Which kind of partition table the disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    Mbr,
    Gpt,
    /// No partition table (a bare filesystem, or nothing).
    None,
}

/// What a partition is in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionRole {
    /// An MBR primary partition.
    Primary,
    /// An MBR extended partition (a container for logical ones).
    Extended,
    /// An MBR logical partition (numbered from 5).
    Logical,
    /// A GPT partition.
    Gpt,
}

/// One partition as a tool like `sfdisk --json` would show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionInfo {
    /// 1-based, as Linux numbers it (MBR logical partitions from 5; GPT:
    /// entry index + 1, gaps kept).
    pub number: u32,
    pub start_lba: u64,
    /// Inclusive.
    pub end_lba: u64,
    pub size_sectors: u64,
    /// MBR: the type byte in hex as sfdisk prints it ("83"); GPT: the type
    /// GUID, upper case.
    pub type_id: String,
    /// MBR: active flag (0x80); GPT: attribute bit 2 (legacy BIOS bootable).
    pub bootable: bool,
    /// GPT partition name.
    pub name: Option<String>,
    /// GPT unique partition GUID.
    pub unique_guid: Option<String>,
    /// GPT attribute bits.
    pub attributes: Option<u64>,
    pub role: PartitionRole,
}

/// A partition table as read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Table {
    pub kind: TableKind,
    /// Always 512.
    pub sector_size: u32,
    /// Sectors in the disk (its size in bytes / 512).
    pub disk_sectors: u64,
    pub partitions: Vec<PartitionInfo>,
    /// MBR disk signature ("0x1234abcd") or GPT disk GUID.
    pub disk_id: Option<String>,
    /// GPT only.
    pub first_usable_lba: Option<u64>,
    /// GPT only.
    pub last_usable_lba: Option<u64>,
    /// GPT only: where the primary header says the backup header is.
    pub backup_header_lba: Option<u64>,
}

/// Errors from reading, planning or applying.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error("I/O error {operation} at {offset:#x}: {source}")]
    Io {
        operation: &'static str,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    /// The bytes on disk are damaged.
    #[error("corrupt {0}")]
    Corrupt(FormatError),
    /// The bytes make sense but this is not something we do.
    #[error("unsupported: {0}")]
    Unsupported(FormatError),
    /// `apply` found the disk no longer matches the plan, or the result
    /// read back differs from what was planned.
    #[error("{when}: partition table expected {expected}, found {found}")]
    Mismatch {
        when: &'static str,
        expected: String,
        found: String,
    },
}

fn io_err(operation: &'static str, offset: u64) -> impl FnOnce(std::io::Error) -> PartError {
    move |source| PartError::Io {
        operation,
        offset,
        source,
    }
}

fn read_vec(
    dev: &dyn Device,
    offset: u64,
    len: u64,
    what: &'static str,
) -> Result<Vec<u8>, PartError> {
    // Every caller bounds `len` (a sector, or a validated entry array).
    let n = usize::try_from(len).map_err(|_| {
        PartError::Unsupported(FormatError {
            structure: what,
            field: "length",
            offset,
            found: len.to_string(),
            expected: "an addressable length".into(),
        })
    })?;
    check_range(offset, n, dev.size_bytes()).map_err(io_err(what, offset))?;
    let mut buf = vec![0u8; n];
    dev.read_at(offset, &mut buf)
        .map_err(io_err(what, offset))?;
    Ok(buf)
}

fn lba_bytes(lba: u64, field: &'static str) -> Result<u64, PartError> {
    lba.checked_mul(SECTOR_SIZE).ok_or_else(|| {
        PartError::Corrupt(FormatError {
            structure: "partition table",
            field,
            offset: 0,
            found: lba.to_string(),
            expected: "an LBA whose byte offset fits 64 bits".into(),
        })
    })
}

/// The parsed structures behind a [`Table`], kept for planning.
enum Parsed {
    None,
    Mbr {
        mbr: Box<Mbr>,
    },
    Gpt {
        pmbr: Box<Mbr>,
        header: Box<GptHeader>,
        array: Vec<u8>,
    },
}

/// Reads the partition table of a whole disk.
pub fn read_table(dev: &dyn Device) -> Result<Table, PartError> {
    read_parsed(dev).map(|(_, t)| t)
}

fn read_parsed(dev: &dyn Device) -> Result<(Parsed, Table), PartError> {
    let disk_sectors = dev.size_bytes() / SECTOR_SIZE;
    let none = Table {
        kind: TableKind::None,
        sector_size: 512,
        disk_sectors,
        partitions: Vec::new(),
        disk_id: None,
        first_usable_lba: None,
        last_usable_lba: None,
        backup_header_lba: None,
    };
    if disk_sectors < 1 {
        return Ok((Parsed::None, none));
    }
    let sector0 = read_vec(dev, 0, SECTOR_SIZE, "MBR")?;
    let Ok(mbr) = Mbr::parse(&sector0, 0, "MBR") else {
        // No 0x55AA, or boot indicators that no partition table has.
        return Ok((Parsed::None, none));
    };
    if looks_like_boot_sector(&sector0) {
        // A FAT/NTFS boot sector also ends in 0x55AA (libblkid's rule too).
        return Ok((Parsed::None, none));
    }
    if mbr
        .entries
        .iter()
        .any(|e| e.partition_type == mbr::TYPE_GPT_PROTECTIVE)
    {
        let (header, array) = read_gpt(dev, disk_sectors)?;
        let table = gpt_table(&header, &array, disk_sectors)?;
        return Ok((
            Parsed::Gpt {
                pmbr: Box::new(mbr),
                header: Box::new(header),
                array,
            },
            table,
        ));
    }
    let table = mbr_table(dev, &mbr, disk_sectors)?;
    Ok((Parsed::Mbr { mbr: Box::new(mbr) }, table))
}

/// A FAT or NTFS boot sector rather than an MBR: x86 jump, and either the
/// NTFS OEM id or a plausible BPB (power-of-two sector and cluster sizes, a
/// FAT count) together with the "FAT" file-system type string at 0x36
/// (FAT12/16) or 0x52 (FAT32). libblkid decides the same way.
fn looks_like_boot_sector(s: &[u8]) -> bool {
    const JUMPS: [u8; 2] = [0xEB, 0xE9];
    const OEM_ID: std::ops::Range<usize> = 3..11;
    const NTFS_OEM_ID: &[u8; 8] = b"NTFS    ";
    const BPB_BYTES_PER_SECTOR: usize = 11;
    const BPB_SECTORS_PER_CLUSTER: usize = 13;
    const BPB_NUM_FATS: usize = 16;
    const BS_FIL_SYS_TYPE_16: usize = 0x36;
    const BS_FIL_SYS_TYPE_32: usize = 0x52;
    const FAT_TYPE_PREFIX: &[u8; 3] = b"FAT";
    if s.len() < 512 || !JUMPS.contains(&s[0]) {
        return false;
    }
    if &s[OEM_ID] == NTFS_OEM_ID {
        return true;
    }
    let bps = u16::from_le_bytes([s[BPB_BYTES_PER_SECTOR], s[BPB_BYTES_PER_SECTOR + 1]]);
    let spc = s[BPB_SECTORS_PER_CLUSTER];
    let type_string = [BS_FIL_SYS_TYPE_16, BS_FIL_SYS_TYPE_32]
        .iter()
        .any(|&at| &s[at..at + 3] == FAT_TYPE_PREFIX);
    (512..=4096).contains(&bps)
        && bps.is_power_of_two()
        && spc != 0
        && spc.is_power_of_two()
        && s[BPB_NUM_FATS] != 0
        && type_string
}

fn corrupt(
    structure: &'static str,
    field: &'static str,
    offset: u64,
    found: String,
    expected: String,
) -> PartError {
    PartError::Corrupt(FormatError {
        structure,
        field,
        offset,
        found,
        expected,
    })
}

fn entry_field_offset(base: u64, index: usize, field: usize) -> u64 {
    let at = mbr::ENTRIES_OFFSET + index * mbr::ENTRY_SIZE + field;
    base.saturating_add(u64::try_from(at).unwrap_or(0))
}

fn mbr_table(dev: &dyn Device, m: &Mbr, disk_sectors: u64) -> Result<Table, PartError> {
    let mut partitions = Vec::new();
    let mut extended: Option<(u64, u64)> = None;
    for (i, e) in m.entries.iter().enumerate() {
        if e.is_empty() {
            continue;
        }
        let start = u64::from(e.start_lba);
        let end = e.end_lba();
        if start == 0 || end >= disk_sectors {
            return Err(corrupt(
                "MBR",
                "start_lba/size",
                entry_field_offset(0, i, mbr::ENTRY_START_LBA),
                format!("partition {} at sectors {start}..={end}", i + 1),
                format!("inside sectors 1..={}", disk_sectors.saturating_sub(1)),
            ));
        }
        let role = if e.is_extended() {
            if extended.is_none() {
                extended = Some((start, end));
            }
            PartitionRole::Extended
        } else {
            PartitionRole::Primary
        };
        partitions.push(mbr_info(e, u32::try_from(i + 1).unwrap_or(0), start, role));
    }
    if let Some((ext_start, ext_end)) = extended {
        read_logicals(dev, ext_start, ext_end, &mut partitions)?;
    }
    Ok(Table {
        kind: TableKind::Mbr,
        sector_size: 512,
        disk_sectors,
        partitions,
        disk_id: Some(format!("{:#010x}", m.disk_signature)),
        first_usable_lba: None,
        last_usable_lba: None,
        backup_header_lba: None,
    })
}

fn mbr_info(e: &MbrEntry, number: u32, start: u64, role: PartitionRole) -> PartitionInfo {
    let size = u64::from(e.size_sectors);
    PartitionInfo {
        number,
        start_lba: start,
        end_lba: start + size - 1,
        size_sectors: size,
        type_id: format!("{:x}", e.partition_type),
        bootable: e.boot_indicator == mbr::BOOT_ACTIVE,
        name: None,
        unique_guid: None,
        attributes: None,
        role,
    }
}

/// Walks the EBR chain of the extended partition `ext_start..=ext_end`.
fn read_logicals(
    dev: &dyn Device,
    ext_start: u64,
    ext_end: u64,
    out: &mut Vec<PartitionInfo>,
) -> Result<(), PartError> {
    let mut seen = BTreeSet::new();
    let mut ebr_lba = ext_start;
    let mut number: u32 = 5;
    loop {
        if !seen.insert(ebr_lba) || seen.len() > MAX_LOGICAL_PARTITIONS {
            return Err(corrupt(
                "EBR",
                "next_ebr",
                ebr_lba.saturating_mul(SECTOR_SIZE),
                format!("a chain revisiting LBA {ebr_lba} or longer than {MAX_LOGICAL_PARTITIONS}"),
                "a finite chain of EBRs".into(),
            ));
        }
        let offset = lba_bytes(ebr_lba, "next_ebr")?;
        let sector = read_vec(dev, offset, SECTOR_SIZE, "EBR")?;
        let ebr = Mbr::parse(&sector, offset, "EBR").map_err(PartError::Corrupt)?;
        let logical = &ebr.entries[0];
        if !logical.is_empty() {
            let start = ebr_lba.saturating_add(u64::from(logical.start_lba));
            let end = start
                .saturating_add(u64::from(logical.size_sectors))
                .saturating_sub(1);
            if logical.start_lba == 0 || end > ext_end {
                return Err(corrupt(
                    "EBR",
                    "start_lba/size",
                    entry_field_offset(offset, 0, mbr::ENTRY_START_LBA),
                    format!("logical partition {number} at sectors {start}..={end}"),
                    format!("inside the extended partition {ext_start}..={ext_end}"),
                ));
            }
            out.push(mbr_info(logical, number, start, PartitionRole::Logical));
            number = number.saturating_add(1);
        }
        let next = &ebr.entries[1];
        if next.is_empty() {
            return Ok(());
        }
        let next_lba = ext_start.saturating_add(u64::from(next.start_lba));
        if next_lba > ext_end {
            return Err(corrupt(
                "EBR",
                "next_ebr",
                entry_field_offset(offset, 1, mbr::ENTRY_START_LBA),
                next_lba.to_string(),
                format!("inside the extended partition {ext_start}..={ext_end}"),
            ));
        }
        ebr_lba = next_lba;
    }
}

fn read_gpt(dev: &dyn Device, disk_sectors: u64) -> Result<(GptHeader, Vec<u8>), PartError> {
    let offset = gpt::PRIMARY_HEADER_LBA * SECTOR_SIZE;
    if disk_sectors < 2 {
        return Err(corrupt(
            "GPT header",
            "signature",
            offset,
            format!("a disk of {disk_sectors} sectors"),
            "a header at LBA 1".into(),
        ));
    }
    let sector = read_vec(dev, offset, SECTOR_SIZE, "GPT header")?;
    let header = GptHeader::parse(&sector, offset, disk_sectors, "GPT header")
        .map_err(classify_gpt_error)?;
    if header.my_lba != gpt::PRIMARY_HEADER_LBA {
        return Err(corrupt(
            "GPT header",
            "my_lba",
            offset + u64::try_from(gpt::H_MY_LBA).unwrap_or(0),
            header.my_lba.to_string(),
            "1".into(),
        ));
    }
    let array_offset = lba_bytes(header.partition_entry_lba, "partition_entry_lba")?;
    let array = read_vec(
        dev,
        array_offset,
        header.entry_array_bytes(),
        "GPT entry array",
    )?;
    gpt::check_entries(&header, &array, offset, "GPT header").map_err(PartError::Corrupt)?;
    Ok((header, array))
}

/// A revision we do not know is unsupported rather than corrupt.
fn classify_gpt_error(e: FormatError) -> PartError {
    if e.field == "revision" {
        PartError::Unsupported(e)
    } else {
        PartError::Corrupt(e)
    }
}

fn gpt_entries(header: &GptHeader, array: &[u8]) -> Vec<(usize, GptEntry)> {
    let size = usize::try_from(header.size_of_partition_entry).unwrap_or(usize::MAX);
    array
        .chunks_exact(size)
        .enumerate()
        .filter_map(|(i, c)| GptEntry::parse(c).map(|e| (i, e)))
        .filter(|(_, e)| !e.is_unused())
        .collect()
}

fn gpt_table(header: &GptHeader, array: &[u8], disk_sectors: u64) -> Result<Table, PartError> {
    let array_offset = header.partition_entry_lba.saturating_mul(SECTOR_SIZE);
    let entry_size = u64::from(header.size_of_partition_entry);
    let mut partitions = Vec::new();
    for (i, e) in gpt_entries(header, array) {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if e.starting_lba > e.ending_lba
            || e.starting_lba < header.first_usable_lba
            || e.ending_lba > header.last_usable_lba
        {
            let at = array_offset
                .saturating_add(entry_size.saturating_mul(u64::try_from(i).unwrap_or(0)))
                .saturating_add(u64::try_from(gpt::STARTING_LBA_FIELD_OFFSET).unwrap_or(0));
            return Err(corrupt(
                "GPT entry",
                "starting_lba/ending_lba",
                at,
                format!(
                    "partition {number} at {}..={}",
                    e.starting_lba, e.ending_lba
                ),
                format!(
                    "inside usable LBAs {}..={}",
                    header.first_usable_lba, header.last_usable_lba
                ),
            ));
        }
        partitions.push(PartitionInfo {
            number,
            start_lba: e.starting_lba,
            end_lba: e.ending_lba,
            size_sectors: e.ending_lba - e.starting_lba + 1,
            type_id: gpt::guid_string(e.partition_type_guid),
            bootable: e.attributes & gpt::ATTR_LEGACY_BIOS_BOOTABLE != 0,
            name: Some(e.partition_name.clone()),
            unique_guid: Some(gpt::guid_string(e.unique_partition_guid)),
            attributes: Some(e.attributes),
            role: PartitionRole::Gpt,
        });
    }
    Ok(Table {
        kind: TableKind::Gpt,
        sector_size: 512,
        disk_sectors,
        partitions,
        disk_id: Some(gpt::guid_string(header.disk_guid)),
        first_usable_lba: Some(header.first_usable_lba),
        last_usable_lba: Some(header.last_usable_lba),
        backup_header_lba: Some(header.alternate_lba),
    })
}

/// Where the grown partition ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GrowRule {
    /// Nova XenAPI: same start, end at the last sector of the disk (GPT: the
    /// last usable LBA).
    Nova,
    /// cloud-utils growpart as upstream has it since mid-2026: end before
    /// the next partition, at most disk sectors − 34 (GPT: the last usable
    /// LBA), length rounded down to whole MiB; no change unless it grows by
    /// at least 1 MiB.
    Growpart,
    /// growpart 0.33 (Debian 12, Ubuntu): the same without the MiB rounding
    /// (see [`growpart`]).
    #[serde(rename = "growpart-legacy")]
    GrowpartLegacy,
}

/// The exact bytes that grow partition 1, with the tables before and after.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartGrowPlan {
    pub rule: GrowRule,
    pub before: Table,
    pub after: Table,
    /// `(byte offset, bytes)`, to be written in order. Serialized as
    /// `{offset, len}` extents.
    #[serde(serialize_with = "serialize_write_extents")]
    pub writes: Vec<(u64, Vec<u8>)>,
    /// Whether partition 1's end moves (for GPT, the backup header may move
    /// even when it does not).
    pub partition_changed: bool,
    /// Things the caller may want to tell the user.
    pub notes: Vec<String>,
}

/// Serializes `(offset, bytes)` writes as `{offset, len}` extents (plans
/// shown as JSON need where and how much, not the bytes).
pub fn serialize_write_extents<S: serde::Serializer>(
    writes: &[(u64, Vec<u8>)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    #[derive(serde::Serialize)]
    struct Extent {
        offset: u64,
        len: usize,
    }
    let mut seq = serializer.serialize_seq(Some(writes.len()))?;
    for (offset, bytes) in writes {
        seq.serialize_element(&Extent {
            offset: *offset,
            len: bytes.len(),
        })?;
    }
    seq.end()
}

fn unsupported(
    structure: &'static str,
    field: &'static str,
    offset: u64,
    found: String,
    expected: String,
) -> PartError {
    PartError::Unsupported(FormatError {
        structure,
        field,
        offset,
        found,
        expected,
    })
}

/// The growpart rule for a partition `start..=old_end` whose space ends at
/// `max_end` (already capped by the table's own limits).
fn growpart_end(
    rule: GrowRule,
    start: u64,
    old_end: u64,
    mut max_end: u64,
    disk_sectors: u64,
    max_len: u64,
) -> Option<u64> {
    if rule == GrowRule::GrowpartLegacy {
        return growpart::legacy_end(start, old_end, max_end, disk_sectors, max_len);
    }
    let pad_limit = disk_sectors.checked_sub(GROWPART_GPT_SECOND_SIZE)?;
    if max_end > pad_limit {
        max_end = pad_limit.checked_sub(1)?;
    }
    let room = max_end.checked_add(1)?.checked_sub(start)?;
    let len = (room / MIB_SECTORS * MIB_SECTORS).min(max_len / MIB_SECTORS * MIB_SECTORS);
    let new_end = start.checked_add(len)?.checked_sub(1)?;
    // growpart: NOCHANGE when pt_end + FUDGE > max_end.
    if old_end.saturating_add(GROWPART_FUDGE_SECTORS) > new_end {
        return None;
    }
    Some(new_end)
}

/// Plans growing partition 1 to fill a disk of `new_disk_bytes` (normally
/// `dev.size_bytes()`: the disk has already grown; a GPT's backup header is
/// still at the old end). Only a lone partition 1 is grown: a cloud's own
/// preconditions and their wording (Nova's: [`crate::cloud::nova::preconditions`])
/// are the caller's to check first. Reads the disk; writes nothing.
pub fn plan_grow_partition(
    dev: &dyn Device,
    new_disk_bytes: u64,
    rule: GrowRule,
) -> Result<PartGrowPlan, PartError> {
    let (parsed, before) = read_parsed(dev)?;
    let part = lone_partition_one(&before)?;
    if new_disk_bytes > dev.size_bytes() {
        return Err(unsupported(
            "disk",
            "size",
            0,
            format!("a plan for {new_disk_bytes} bytes"),
            format!("at most the device's {} bytes", dev.size_bytes()),
        ));
    }
    let new_sectors = new_disk_bytes / SECTOR_SIZE;
    let mut notes = Vec::new();
    if new_disk_bytes % SECTOR_SIZE != 0 {
        notes.push(format!(
            "disk size {new_disk_bytes} is not a whole number of sectors; the last {} bytes are unused",
            new_disk_bytes % SECTOR_SIZE
        ));
    }
    match parsed {
        Parsed::None => Err(unsupported(
            "partition table",
            "kind",
            0,
            "none".into(),
            "MBR or GPT".into(),
        )),
        Parsed::Mbr { mbr } => plan_mbr(&mbr, before, &part, new_sectors, rule, notes),
        Parsed::Gpt {
            pmbr,
            header,
            array,
        } => plan_gpt(
            &pmbr,
            &header,
            array,
            before,
            &part,
            new_sectors,
            rule,
            notes,
        ),
    }
}

/// The partition the grower grows: partition 1, the only one.
fn lone_partition_one(table: &Table) -> Result<PartitionInfo, PartError> {
    match table.partitions.as_slice() {
        [p] if p.number == 1 => Ok(p.clone()),
        ps => Err(unsupported(
            "partition table",
            "partitions",
            0,
            format!(
                "partitions {:?}",
                ps.iter().map(|p| p.number).collect::<Vec<_>>()
            ),
            "partition 1 as the only partition".into(),
        )),
    }
}

fn plan_mbr(
    m: &Mbr,
    before: Table,
    part: &PartitionInfo,
    new_sectors: u64,
    rule: GrowRule,
    mut notes: Vec<String>,
) -> Result<PartGrowPlan, PartError> {
    if part.role != PartitionRole::Primary {
        return Err(unsupported(
            "MBR",
            "partition_type",
            entry_field_offset(0, 0, mbr::ENTRY_TYPE),
            format!("partition 1 of type 0x{} (extended)", part.type_id),
            "a primary partition".into(),
        ));
    }
    if new_sectors <= part.end_lba {
        return Err(unsupported(
            "disk",
            "size",
            0,
            format!("{new_sectors} sectors"),
            format!("more than partition 1's last sector {}", part.end_lba),
        ));
    }
    let start = part.start_lba;
    // The MBR's size field is 32 bits.
    let max_len = u64::from(u32::MAX);
    let new_end = match rule {
        GrowRule::Nova => {
            let end = new_sectors - 1;
            let len = end - start + 1;
            if len > max_len {
                return Err(unsupported(
                    "MBR",
                    "size_sectors",
                    entry_field_offset(0, 0, mbr::ENTRY_SIZE_SECTORS),
                    format!("{len} sectors (start {start}, end {end})"),
                    format!(
                        "at most {max_len}: an MBR cannot describe it (Nova's parted would fail)"
                    ),
                ));
            }
            end
        }
        GrowRule::Growpart | GrowRule::GrowpartLegacy => {
            let max_end = (new_sectors - 1).min(GROWPART_MBR_MAX_END);
            if new_sectors > GROWPART_MBR_MAX_END {
                notes.push("MBR disk larger than 2 TiB: the space beyond is left unused".into());
            }
            match growpart_end(rule, start, part.end_lba, max_end, new_sectors, max_len) {
                Some(e) => e,
                None => {
                    notes.push(format!(
                        "growpart rule: partition 1 (end {}) cannot grow by at least 1 MiB; unchanged",
                        part.end_lba
                    ));
                    part.end_lba
                }
            }
        }
    };
    let partition_changed = new_end != part.end_lba;
    let mut after_mbr = m.clone();
    let mut writes = Vec::new();
    if partition_changed {
        let entry = &mut after_mbr.entries[0];
        let len = u32::try_from(new_end - start + 1).map_err(|_| {
            unsupported(
                "MBR",
                "size_sectors",
                entry_field_offset(0, 0, mbr::ENTRY_SIZE_SECTORS),
                (new_end - start + 1).to_string(),
                format!("at most {}", u32::MAX),
            )
        })?;
        entry.size_sectors = len;
        entry.start_chs = mbr::lba_to_chs(start);
        entry.end_chs = mbr::lba_to_chs(new_end);
        writes.push((0, after_mbr.to_bytes().to_vec()));
    }
    let mut after = before.clone();
    after.disk_sectors = new_sectors;
    after.partitions[0].end_lba = new_end;
    after.partitions[0].size_sectors = new_end - start + 1;
    Ok(PartGrowPlan {
        rule,
        before,
        after,
        writes,
        partition_changed,
        notes,
    })
}

#[allow(clippy::too_many_arguments)]
fn plan_gpt(
    pmbr: &Mbr,
    header: &GptHeader,
    mut array: Vec<u8>,
    before: Table,
    part: &PartitionInfo,
    new_sectors: u64,
    rule: GrowRule,
    mut notes: Vec<String>,
) -> Result<PartGrowPlan, PartError> {
    let array_sectors = header.entry_array_sectors();
    let too_small = || {
        unsupported(
            "disk",
            "size",
            0,
            format!("{new_sectors} sectors"),
            format!(
                "room after the backup header's old LBA {} and after partition 1 (end {}) for a {array_sectors}-sector entry array and header",
                header.alternate_lba, part.end_lba
            ),
        )
    };
    let new_alternate = new_sectors.checked_sub(1).ok_or_else(too_small)?;
    let backup_array_lba = new_alternate
        .checked_sub(array_sectors)
        .ok_or_else(too_small)?;
    let new_last_usable = backup_array_lba.checked_sub(1).ok_or_else(too_small)?;
    if new_alternate < header.alternate_lba
        || new_last_usable < part.end_lba
        || new_last_usable < header.first_usable_lba
    {
        return Err(too_small());
    }
    // The backup array may not overlap the primary structures.
    let primary_array_end = header.partition_entry_lba.saturating_add(array_sectors);
    if backup_array_lba < primary_array_end {
        return Err(too_small());
    }
    let start = part.start_lba;
    let new_end = match rule {
        GrowRule::Nova => new_last_usable,
        GrowRule::Growpart | GrowRule::GrowpartLegacy => {
            match growpart_end(
                rule,
                start,
                part.end_lba,
                new_last_usable,
                new_sectors,
                u64::MAX,
            ) {
                Some(e) => e,
                None => {
                    notes.push(format!(
                        "growpart rule: partition 1 (end {}) cannot grow by at least 1 MiB; unchanged",
                        part.end_lba
                    ));
                    part.end_lba
                }
            }
        }
    };
    if new_end < part.end_lba {
        return Err(unsupported(
            "GPT entry",
            "ending_lba",
            header
                .partition_entry_lba
                .saturating_mul(SECTOR_SIZE)
                .saturating_add(u64::try_from(gpt::ENDING_LBA_FIELD_OFFSET).unwrap_or(0)),
            part.end_lba.to_string(),
            format!(
                "at most the new last usable LBA {new_last_usable} (shrinking is not supported)"
            ),
        ));
    }
    let partition_changed = new_end != part.end_lba;
    let entry_size = usize::try_from(header.size_of_partition_entry).unwrap_or(usize::MAX);
    // Partition 1 is entry index 0 (numbering is index + 1).
    if !gpt::set_ending_lba(&mut array, entry_size, 0, new_end) {
        return Err(corrupt(
            "GPT entry array",
            "length",
            0,
            array.len().to_string(),
            "at least one entry".into(),
        ));
    }
    let array_crc = crc32fast::hash(&array);

    let mut primary = header.clone();
    primary.alternate_lba = new_alternate;
    primary.last_usable_lba = new_last_usable;
    primary.partition_entry_array_crc32 = array_crc;
    let mut backup = primary.clone();
    backup.my_lba = new_alternate;
    backup.alternate_lba = gpt::PRIMARY_HEADER_LBA;
    backup.partition_entry_lba = backup_array_lba;

    // The protective entry covers the disk from LBA 1 (capped at 32 bits);
    // move its end only if it reached the old end (a hybrid MBR is left alone).
    let mut new_pmbr = pmbr.clone();
    for e in new_pmbr.entries.iter_mut() {
        let reached_end =
            e.start_lba == 1 && (e.end_lba() >= header.alternate_lba || e.size_sectors == u32::MAX);
        if e.partition_type == mbr::TYPE_GPT_PROTECTIVE && reached_end {
            e.size_sectors = u32::try_from(new_alternate).unwrap_or(u32::MAX);
            e.end_chs = mbr::lba_to_chs(new_alternate);
        }
    }
    if new_pmbr != *pmbr && pmbr.entries.iter().filter(|e| !e.is_empty()).count() > 1 {
        notes.push("hybrid MBR: only the protective entry was resized".into());
    }

    let mut writes: Vec<(u64, Vec<u8>)> = Vec::new();
    let old_alt = header.alternate_lba;
    if old_alt != new_alternate && old_alt < backup_array_lba && old_alt > header.last_usable_lba {
        // Erase the stale backup header so no tool finds two GPTs.
        writes.push((lba_bytes(old_alt, "alternate_lba")?, vec![0u8; 512]));
    }
    // Backup first, primary last: an interrupted write leaves the primary intact.
    writes.push((
        lba_bytes(backup_array_lba, "partition_entry_lba")?,
        array.clone(),
    ));
    writes.push((
        lba_bytes(new_alternate, "alternate_lba")?,
        backup.to_bytes().to_vec(),
    ));
    writes.push((
        lba_bytes(header.partition_entry_lba, "partition_entry_lba")?,
        array.clone(),
    ));
    writes.push((
        gpt::PRIMARY_HEADER_LBA * SECTOR_SIZE,
        primary.to_bytes().to_vec(),
    ));
    if new_pmbr != *pmbr {
        writes.push((0, new_pmbr.to_bytes().to_vec()));
    }
    let after = gpt_table(&primary, &array, new_sectors)?;
    Ok(PartGrowPlan {
        rule,
        before,
        after,
        writes,
        partition_changed,
        notes,
    })
}

/// Writes a plan: checks the disk still holds `plan.before` and that every
/// write fits, writes in order, then reads the table back and checks it is
/// `plan.after`.
pub fn apply(dev: &mut dyn Device, plan: &PartGrowPlan) -> Result<(), PartError> {
    let now = read_table(dev)?;
    if now != plan.before {
        return Err(PartError::Mismatch {
            when: "before writing",
            expected: format!("{:?}", plan.before),
            found: format!("{now:?}"),
        });
    }
    for (offset, bytes) in &plan.writes {
        check_range(*offset, bytes.len(), dev.size_bytes())
            .map_err(io_err("checking a write", *offset))?;
    }
    for (offset, bytes) in &plan.writes {
        dev.write_at(*offset, bytes)
            .map_err(io_err("writing the partition table", *offset))?;
    }
    let mut back = read_table(dev)?;
    back.disk_sectors = plan.after.disk_sectors;
    if back != plan.after {
        return Err(PartError::Mismatch {
            when: "after writing",
            expected: format!("{:?}", plan.after),
            found: format!("{back:?}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
