//! Applying a plan: check, write, read back.

use super::read::read_table;
use super::{PartError, PartGrowPlan};
use crate::disk::device::{check_range, Device};

/// Writes a plan: checks the disk still holds `plan.before` and that every
/// write fits, writes in order, then reads the table back and checks it is
/// `plan.after`.
pub fn apply(dev: &mut dyn Device, plan: &PartGrowPlan) -> Result<(), PartError> {
    let now = read_table(dev)?;
    if now != plan.before {
        return Err(PartError::Mismatch {
            what: "partition table",
            when: "before writing",
            expected: format!("{:?}", plan.before),
            found: format!("{now:?}"),
        });
    }
    for (offset, bytes) in &plan.writes {
        check_range(*offset, bytes.len(), dev.size_bytes())
            .map_err(PartError::io("checking a write", *offset))?;
    }
    for (offset, bytes) in &plan.writes {
        dev.write_at(*offset, bytes)
            .map_err(PartError::io("writing the partition table", *offset))?;
    }
    let mut back = read_table(dev)?;
    back.disk_sectors = plan.after.disk_sectors;
    if back != plan.after {
        return Err(PartError::Mismatch {
            what: "partition table",
            when: "after writing",
            expected: format!("{:?}", plan.after),
            found: format!("{back:?}"),
        });
    }
    Ok(())
}
