//! Reading: the MBR (with its EBR chain of logical partitions) or the GPT
//! of a whole disk, as a [`Table`] and the parsed structures planning needs.

use std::collections::BTreeSet;

use super::gpt::{self, GptEntry, GptHeader};
use super::mbr::{self, Mbr, MbrEntry};
use super::{
    entry_field_offset, lba_bytes, PartError, PartitionInfo, PartitionRole, Table, TableKind,
    MAX_LOGICAL_PARTITIONS, SECTOR_BYTES, SECTOR_SIZE,
};
use crate::disk::device::{read_vec, Device};
use crate::format::FormatError;

/// The parsed structures behind a [`Table`], kept for planning.
pub(super) enum Parsed {
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

pub(super) fn read_parsed(dev: &dyn Device) -> Result<(Parsed, Table), PartError> {
    let disk_sectors = dev.size_bytes() / SECTOR_SIZE;
    let none = Table {
        kind: TableKind::None,
        sector_size: SECTOR_SIZE as u32,
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
    if s.len() < SECTOR_BYTES || !JUMPS.contains(&s[0]) {
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
            return Err(PartError::corrupt(
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
        sector_size: SECTOR_SIZE as u32,
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
            return Err(PartError::corrupt(
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
                return Err(PartError::corrupt(
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
            return Err(PartError::corrupt(
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
        return Err(PartError::corrupt(
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
        return Err(PartError::corrupt(
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

pub(super) fn gpt_table(
    header: &GptHeader,
    array: &[u8],
    disk_sectors: u64,
) -> Result<Table, PartError> {
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
            return Err(PartError::corrupt(
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
        sector_size: SECTOR_SIZE as u32,
        disk_sectors,
        partitions,
        disk_id: Some(gpt::guid_string(header.disk_guid)),
        first_usable_lba: Some(header.first_usable_lba),
        last_usable_lba: Some(header.last_usable_lba),
        backup_header_lba: Some(header.alternate_lba),
    })
}
