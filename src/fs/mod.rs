//! Filesystems found inside partitions: detection, probing and in-place
//! growth (ext2/3/4 and FAT12/16/32). Each grows through a plan (plain data)
//! and an `apply` over a [`crate::disk::device::Device`]. [`usage`] reads
//! which bytes of a disk its filesystems leave free (for `sparsify`).

pub mod detect;
pub mod ext;
pub mod fat;
pub mod usage;
