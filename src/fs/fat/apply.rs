//! Carrying out a [`FatGrowPlan`]: the volume must still read as planned,
//! every step must fit the device, then moves, zero fills and sector
//! writes run in order and the volume must read back as planned.

use super::bpb::off;
use super::error::FatError;
use super::plan::{FatGrowPlan, Move};
use super::probe;
use crate::disk::device::Device;
use crate::disk::device::DeviceError;

/// Bytes copied per step when moving data.
const COPY_CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// Copies `m.len` bytes from `m.from` to `m.to` (> from) back to front.
fn copy_up(dev: &mut dyn Device, m: &Move) -> Result<(), FatError> {
    let mut remaining = m.len;
    let mut buf = vec![0u8; usize::try_from(COPY_CHUNK_BYTES.min(m.len)).unwrap_or(0)];
    while remaining > 0 {
        let n = COPY_CHUNK_BYTES.min(remaining);
        remaining -= n;
        let chunk = &mut buf[..usize::try_from(n).unwrap_or(0)];
        dev.read_at(m.from + remaining, chunk)
            .map_err(DeviceError::io("moving data (read)", m.from + remaining))?;
        dev.write_at(m.to + remaining, chunk)
            .map_err(DeviceError::io("moving data (write)", m.to + remaining))?;
    }
    Ok(())
}

/// Runs a plan: checks the volume still reads as `plan.before` and every
/// step fits the device, runs the moves, zero fills and writes in order,
/// then checks the volume reads as `plan.after`.
pub fn apply_grow(dev: &mut dyn Device, plan: &FatGrowPlan) -> Result<(), FatError> {
    let now = probe(dev)?;
    if now.as_ref() != Some(&plan.before) {
        return Err(FatError::Device(DeviceError::Mismatch {
            what: "FAT volume",
            when: "before writing",
            expected: format!("{:?}", plan.before),
            found: format!("{now:?}"),
        }));
    }
    let size = dev.size_bytes();
    let fits = |at: u64, len: u64| at.checked_add(len).is_some_and(|e| e <= size);
    let all_fit = plan
        .moves
        .iter()
        .all(|m| m.to >= m.from && fits(m.from, m.len) && fits(m.to, m.len))
        && plan.zero_fills.iter().all(|&(at, len)| fits(at, len))
        && plan.writes.iter().all(|(at, b)| fits(*at, off(b.len())));
    if !all_fit {
        return Err(FatError::Device(DeviceError::Mismatch {
            what: "FAT volume",
            when: "checking the plan",
            expected: format!("steps inside the device's {size} bytes"),
            found: "a step outside it".into(),
        }));
    }
    for m in &plan.moves {
        copy_up(dev, m)?;
    }
    let zeros = vec![0u8; usize::try_from(COPY_CHUNK_BYTES).unwrap_or(0)];
    for &(at, len) in &plan.zero_fills {
        let mut done = 0;
        while done < len {
            let n = COPY_CHUNK_BYTES.min(len - done);
            let chunk = &zeros[..usize::try_from(n).unwrap_or(0)];
            dev.write_at(at + done, chunk)
                .map_err(DeviceError::io("zeroing new FAT sectors", at + done))?;
            done += n;
        }
    }
    for (at, bytes) in &plan.writes {
        dev.write_at(*at, bytes)
            .map_err(DeviceError::io("writing FAT metadata", *at))?;
    }
    let back = probe(dev)?;
    if back.as_ref() != Some(&plan.after) {
        return Err(FatError::Device(DeviceError::Mismatch {
            what: "FAT volume",
            when: "after writing",
            expected: format!("{:?}", plan.after),
            found: format!("{back:?}"),
        }));
    }
    Ok(())
}
