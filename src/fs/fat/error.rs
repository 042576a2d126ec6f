//! The one error type of the FAT code. Corrupt and unsupported fields are
//! [`crate::format::FormatError`]s naming the structure, the field, its offset and both
//! values; the rest say why a grow cannot be done.

use super::bpb::off;
pub(super) use crate::disk::device::read_vec;
use crate::disk::device::DeviceError;

/// Errors from probing, planning and growing.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    /// I/O, a corrupt or unsupported field, a device that no longer matches
    /// the plan: the same as the partition code's.
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("no FAT filesystem found (boot sector has no FAT BPB)")]
    NotFat,
    #[error(
        "growing to {clusters} clusters would change the filesystem from {from} to {to}; \
         changing the FAT type is not supported (largest size keeping {from}: {max_in_place_bytes} bytes)"
    )]
    TypeChange {
        from: &'static str,
        to: &'static str,
        clusters: u64,
        max_in_place_bytes: u64,
    },
    #[error(
        "FAT would need to grow from {fat_sectors} to {needed_sectors} sectors, but moving the data \
         area gains no clusters at {new_size_bytes} bytes (largest in-place size: {max_in_place_bytes} bytes)"
    )]
    NoRoom {
        fat_sectors: u64,
        needed_sectors: u64,
        new_size_bytes: u64,
        max_in_place_bytes: u64,
    },
    #[error(
        "FAT would need to grow from {fat_sectors} to {needed_sectors} sectors; moving the data \
         area is not allowed in this mode (largest in-place size: {max_in_place_bytes} bytes)"
    )]
    NeedsMove {
        fat_sectors: u64,
        needed_sectors: u64,
        max_in_place_bytes: u64,
    },
}

pub(super) fn corrupt(field: &'static str, at: usize, found: String, expected: String) -> FatError {
    DeviceError::corrupt("FAT boot sector", field, off(at), found, expected).into()
}

pub(super) fn unsupported(
    structure: &'static str,
    field: &'static str,
    offset: u64,
    found: String,
    expected: String,
) -> FatError {
    DeviceError::unsupported(structure, field, offset, found, expected).into()
}
