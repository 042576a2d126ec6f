//! growpart's rules, as released by cloud-utils.
//!
//! growpart 0.33 (cloud-guest-utils in Debian 12 and Ubuntu, so the one
//! inside most guests today) ends the partition at the first of: the sector
//! before the next partition, the last sector of the disk, MBR's 2^32 cap,
//! and disk sectors − 34 (it keeps 33 sectors for a GPT backup header even
//! on MBR); it does not round, and leaves the partition alone when it would
//! grow by less than its 1 MiB fudge. Upstream since mid-2026 also rounds the
//! length down to whole MiB (that rule is [`super::GrowRule::Growpart`]).

use super::{GrowRule, GROWPART_FUDGE_SECTORS, GROWPART_GPT_SECOND_SIZE, MIB_SECTORS};

/// growpart 0.33's end for a partition `start..=old_end` whose space ends
/// at `max_end` (already capped by the table: the next partition, the last
/// usable LBA, MBR's 2^32), on a disk of `disk_sectors`; the length is kept
/// within `max_len` (the table's size field). `None`: NOCHANGE.
pub(super) fn legacy_end(
    start: u64,
    old_end: u64,
    max_end: u64,
    disk_sectors: u64,
    max_len: u64,
) -> Option<u64> {
    let pad_limit = disk_sectors.checked_sub(GROWPART_GPT_SECOND_SIZE)?;
    let max_end = if max_end > pad_limit {
        pad_limit.checked_sub(1)?
    } else {
        max_end
    };
    // growpart: NOCHANGE when pt_end == max_end or pt_end + FUDGE > max_end.
    if old_end.saturating_add(GROWPART_FUDGE_SECTORS) > max_end {
        return None;
    }
    let len = max_end.checked_add(1)?.checked_sub(start)?.min(max_len);
    start.checked_add(len)?.checked_sub(1)
}

/// The growpart rule for a partition `start..=old_end` whose space ends at
/// `max_end` (already capped by the table's own limits).
pub(super) fn growpart_end(
    rule: GrowRule,
    start: u64,
    old_end: u64,
    mut max_end: u64,
    disk_sectors: u64,
    max_len: u64,
) -> Option<u64> {
    if rule == GrowRule::GrowpartLegacy {
        return legacy_end(start, old_end, max_end, disk_sectors, max_len);
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

#[cfg(test)]
mod tests {
    use super::*;

    const GIB_SECTORS: u64 = 2 * 1024 * 1024;

    #[test]
    fn ends_34_sectors_before_the_end_without_rounding() {
        // The numbers: GPT on 10 GiB and MBR on 2 GiB, start 2048.
        let gpt = 10 * GIB_SECTORS;
        let end = legacy_end(2048, 4095, gpt - 34, gpt, u64::MAX).unwrap();
        assert_eq!(end - 2048 + 1, 20_969_439);
        let mbr = 2 * GIB_SECTORS;
        let end = legacy_end(2048, 4095, mbr - 1, mbr, u64::from(u32::MAX)).unwrap();
        assert_eq!(end - 2048 + 1, 4_192_223);
    }

    #[test]
    fn no_change_within_the_fudge() {
        let disk = 100_000;
        let max_end = disk - 34;
        assert_eq!(
            legacy_end(2048, max_end - 2048, disk - 1, disk, u64::MAX),
            Some(max_end)
        );
        assert_eq!(
            legacy_end(2048, max_end - 2047, disk - 1, disk, u64::MAX),
            None
        );
        assert_eq!(legacy_end(2048, max_end, disk - 1, disk, u64::MAX), None);
        assert_eq!(legacy_end(2048, disk - 1, disk - 1, disk, u64::MAX), None);
        assert_eq!(legacy_end(0, 0, 10, 20, u64::MAX), None);
    }
}
