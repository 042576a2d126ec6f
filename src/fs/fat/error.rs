//! The one error type of the FAT code. Corrupt and unsupported fields are
//! [`FormatError`]s naming the structure, the field, its offset and both
//! values; the rest say why a grow cannot be done.

use super::bpb::off;
use crate::disk::device::{check_range, Device};
use crate::format::FormatError;

/// Errors from probing, planning and growing.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error("I/O error {operation} at {offset:#x}: {source}")]
    Io {
        operation: &'static str,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt {0}")]
    Corrupt(FormatError),
    #[error("unsupported: {0}")]
    Unsupported(FormatError),
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
    #[error("{when}: FAT volume expected {expected}, found {found}")]
    Mismatch {
        when: &'static str,
        expected: String,
        found: String,
    },
}

pub(super) fn io_err(
    operation: &'static str,
    offset: u64,
) -> impl FnOnce(std::io::Error) -> FatError {
    move |source| FatError::Io {
        operation,
        offset,
        source,
    }
}

pub(super) fn corrupt(field: &'static str, at: usize, found: String, expected: String) -> FatError {
    FatError::Corrupt(FormatError {
        structure: "FAT boot sector",
        field,
        offset: off(at),
        found,
        expected,
    })
}

pub(super) fn unsupported(
    structure: &'static str,
    field: &'static str,
    offset: u64,
    found: String,
    expected: String,
) -> FatError {
    FatError::Unsupported(FormatError {
        structure,
        field,
        offset,
        found,
        expected,
    })
}

pub(super) fn read_vec(
    dev: &dyn Device,
    offset: u64,
    len: u64,
    what: &'static str,
) -> Result<Vec<u8>, FatError> {
    let n = usize::try_from(len).map_err(|_| {
        unsupported(
            what,
            "length",
            offset,
            len.to_string(),
            "an addressable length".into(),
        )
    })?;
    check_range(offset, n, dev.size_bytes()).map_err(io_err(what, offset))?;
    let mut buf = vec![0u8; n];
    dev.read_at(offset, &mut buf)
        .map_err(io_err(what, offset))?;
    Ok(buf)
}
