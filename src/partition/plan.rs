//! Planning: the exact bytes that grow partition 1, as plain data.

use super::gpt::{self, GptHeader};
use super::growpart::growpart_end;
use super::mbr::{self, Mbr};
use super::read::{gpt_table, read_parsed, Parsed};
use super::{
    entry_field_offset, lba_bytes, GrowRule, PartError, PartGrowPlan, PartitionInfo, PartitionRole,
    Table, GROWPART_MBR_MAX_END, SECTOR_BYTES, SECTOR_SIZE,
};
use crate::disk::device::Device;

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
        return Err(PartError::unsupported(
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
    let grow = Grow {
        before,
        part,
        new_sectors,
        rule,
        notes,
    };
    match parsed {
        Parsed::None => Err(PartError::unsupported(
            "partition table",
            "kind",
            0,
            "none".into(),
            "MBR or GPT".into(),
        )),
        Parsed::Mbr { mbr } => plan_mbr(&mbr, grow),
        Parsed::Gpt {
            pmbr,
            header,
            array,
        } => plan_gpt(&pmbr, &header, array, grow),
    }
}

/// What both planners start from.
struct Grow {
    before: Table,
    part: PartitionInfo,
    new_sectors: u64,
    rule: GrowRule,
    notes: Vec<String>,
}

impl Grow {
    /// growpart's end for partition 1 (at most `max_end`, a length of at
    /// most `max_len` sectors), or its old end, with a note, when it cannot
    /// grow by at least 1 MiB.
    fn growpart_end_or_keep(&mut self, max_end: u64, max_len: u64) -> u64 {
        let part = &self.part;
        growpart_end(
            self.rule,
            part.start_lba,
            part.end_lba,
            max_end,
            self.new_sectors,
            max_len,
        )
        .unwrap_or_else(|| {
            self.notes.push(format!(
                "growpart rule: partition 1 (end {}) cannot grow by at least 1 MiB; unchanged",
                part.end_lba
            ));
            part.end_lba
        })
    }

    /// The plan: `writes` turn the table into `after`, partition 1 ending at
    /// `new_end`.
    fn into_plan(self, after: Table, writes: Vec<(u64, Vec<u8>)>, new_end: u64) -> PartGrowPlan {
        PartGrowPlan {
            rule: self.rule,
            partition_changed: new_end != self.part.end_lba,
            before: self.before,
            after,
            writes,
            notes: self.notes,
        }
    }
}

/// The partition the grower grows: partition 1, the only one.
fn lone_partition_one(table: &Table) -> Result<PartitionInfo, PartError> {
    match table.partitions.as_slice() {
        [p] if p.number == 1 => Ok(p.clone()),
        ps => Err(PartError::unsupported(
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

fn plan_mbr(m: &Mbr, mut grow: Grow) -> Result<PartGrowPlan, PartError> {
    let part = grow.part.clone();
    let new_sectors = grow.new_sectors;
    if part.role != PartitionRole::Primary {
        return Err(PartError::unsupported(
            "MBR",
            "partition_type",
            entry_field_offset(0, 0, mbr::ENTRY_TYPE),
            format!("partition 1 of type 0x{} (extended)", part.type_id),
            "a primary partition".into(),
        ));
    }
    if new_sectors <= part.end_lba {
        return Err(PartError::unsupported(
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
    let new_end = match grow.rule {
        GrowRule::Nova => {
            let end = new_sectors - 1;
            let len = end - start + 1;
            if len > max_len {
                return Err(PartError::unsupported(
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
            if new_sectors > GROWPART_MBR_MAX_END {
                grow.notes
                    .push("MBR disk larger than 2 TiB: the space beyond is left unused".into());
            }
            grow.growpart_end_or_keep((new_sectors - 1).min(GROWPART_MBR_MAX_END), max_len)
        }
    };
    let mut after_mbr = m.clone();
    let mut writes = Vec::new();
    if new_end != part.end_lba {
        let entry = &mut after_mbr.entries[0];
        let len = u32::try_from(new_end - start + 1).map_err(|_| {
            PartError::unsupported(
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
    let mut after = grow.before.clone();
    after.disk_sectors = new_sectors;
    after.partitions[0].end_lba = new_end;
    after.partitions[0].size_sectors = new_end - start + 1;
    Ok(grow.into_plan(after, writes, new_end))
}

fn plan_gpt(
    pmbr: &Mbr,
    header: &GptHeader,
    mut array: Vec<u8>,
    mut grow: Grow,
) -> Result<PartGrowPlan, PartError> {
    let places = GptPlaces::at_end(header, &grow.part, grow.new_sectors)?;
    let new_end = gpt_new_end(header, &mut grow, places.last_usable_lba)?;
    let entry_size = usize::try_from(header.size_of_partition_entry).unwrap_or(usize::MAX);
    // Partition 1 is entry index 0 (numbering is index + 1).
    if !gpt::set_ending_lba(&mut array, entry_size, 0, new_end) {
        return Err(PartError::corrupt(
            "GPT entry array",
            "length",
            0,
            array.len().to_string(),
            "at least one entry".into(),
        ));
    }
    let mut primary = header.clone();
    primary.alternate_lba = places.alternate_lba;
    primary.last_usable_lba = places.last_usable_lba;
    primary.partition_entry_array_crc32 = crc32fast::hash(&array);
    let new_pmbr = grow_protective(
        pmbr,
        header.alternate_lba,
        places.alternate_lba,
        &mut grow.notes,
    );
    let writes = gpt_writes(header, &primary, &places, &array, pmbr, &new_pmbr)?;
    let after = gpt_table(&primary, &array, grow.new_sectors)?;
    Ok(grow.into_plan(after, writes, new_end))
}

/// Where a grown GPT's backup structures go, at the disk's new end.
struct GptPlaces {
    /// The backup header: the disk's last sector.
    alternate_lba: u64,
    /// The backup entry array, just before the backup header.
    backup_array_lba: u64,
    /// The last usable LBA, just before the backup array.
    last_usable_lba: u64,
}

impl GptPlaces {
    /// The places on a disk of `new_sectors`, refused when the disk has no
    /// room for them after the old backup header and partition 1, or when
    /// the backup array would overlap the primary one.
    fn at_end(
        header: &GptHeader,
        part: &PartitionInfo,
        new_sectors: u64,
    ) -> Result<GptPlaces, PartError> {
        let array_sectors = header.entry_array_sectors();
        let too_small = || {
            PartError::unsupported(
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
        let alternate_lba = new_sectors.checked_sub(1).ok_or_else(too_small)?;
        let backup_array_lba = alternate_lba
            .checked_sub(array_sectors)
            .ok_or_else(too_small)?;
        let last_usable_lba = backup_array_lba.checked_sub(1).ok_or_else(too_small)?;
        if alternate_lba < header.alternate_lba
            || last_usable_lba < part.end_lba
            || last_usable_lba < header.first_usable_lba
        {
            return Err(too_small());
        }
        // The backup array may not overlap the primary structures.
        let primary_array_end = header.partition_entry_lba.saturating_add(array_sectors);
        if backup_array_lba < primary_array_end {
            return Err(too_small());
        }
        Ok(GptPlaces {
            alternate_lba,
            backup_array_lba,
            last_usable_lba,
        })
    }
}

/// The protective MBR after the grow: its entry covers the disk from LBA 1
/// (capped at 32 bits); its end moves only if it reached the old end
/// `old_alternate` (a hybrid MBR is otherwise left alone).
fn grow_protective(
    pmbr: &Mbr,
    old_alternate: u64,
    new_alternate: u64,
    notes: &mut Vec<String>,
) -> Mbr {
    let mut new_pmbr = pmbr.clone();
    for e in new_pmbr.entries.iter_mut() {
        let reached_end =
            e.start_lba == 1 && (e.end_lba() >= old_alternate || e.size_sectors == u32::MAX);
        if e.partition_type == mbr::TYPE_GPT_PROTECTIVE && reached_end {
            e.size_sectors = u32::try_from(new_alternate).unwrap_or(u32::MAX);
            e.end_chs = mbr::lba_to_chs(new_alternate);
        }
    }
    if new_pmbr != *pmbr && pmbr.entries.iter().filter(|e| !e.is_empty()).count() > 1 {
        notes.push("hybrid MBR: only the protective entry was resized".into());
    }
    new_pmbr
}

/// The writes of a grown GPT, in a safe order: the stale backup header
/// erased, the backup array and header, then the primary ones, then the
/// protective MBR if it changed.
fn gpt_writes(
    header: &GptHeader,
    primary: &GptHeader,
    places: &GptPlaces,
    array: &[u8],
    pmbr: &Mbr,
    new_pmbr: &Mbr,
) -> Result<Vec<(u64, Vec<u8>)>, PartError> {
    let mut backup = primary.clone();
    backup.my_lba = places.alternate_lba;
    backup.alternate_lba = gpt::PRIMARY_HEADER_LBA;
    backup.partition_entry_lba = places.backup_array_lba;
    let mut writes: Vec<(u64, Vec<u8>)> = Vec::new();
    let old_alt = header.alternate_lba;
    if old_alt != places.alternate_lba
        && old_alt < places.backup_array_lba
        && old_alt > header.last_usable_lba
    {
        // Erase the stale backup header so no tool finds two GPTs.
        writes.push((
            lba_bytes(old_alt, "alternate_lba")?,
            vec![0u8; SECTOR_BYTES],
        ));
    }
    // Backup first, primary last: an interrupted write leaves the primary intact.
    writes.push((
        lba_bytes(places.backup_array_lba, "partition_entry_lba")?,
        array.to_vec(),
    ));
    writes.push((
        lba_bytes(places.alternate_lba, "alternate_lba")?,
        backup.to_bytes().to_vec(),
    ));
    writes.push((
        lba_bytes(header.partition_entry_lba, "partition_entry_lba")?,
        array.to_vec(),
    ));
    writes.push((
        gpt::PRIMARY_HEADER_LBA * SECTOR_SIZE,
        primary.to_bytes().to_vec(),
    ));
    if new_pmbr != pmbr {
        writes.push((0, new_pmbr.to_bytes().to_vec()));
    }
    Ok(writes)
}

/// Where partition 1 ends under `rule` on a GPT whose last usable LBA
/// becomes `new_last_usable`.
fn gpt_new_end(
    header: &GptHeader,
    grow: &mut Grow,
    new_last_usable: u64,
) -> Result<u64, PartError> {
    let new_end = match grow.rule {
        GrowRule::Nova => new_last_usable,
        GrowRule::Growpart | GrowRule::GrowpartLegacy => {
            grow.growpart_end_or_keep(new_last_usable, u64::MAX)
        }
    };
    let part = &grow.part;
    if new_end < part.end_lba {
        return Err(PartError::unsupported(
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
    Ok(new_end)
}
