//! Filesystems found inside partitions: probing and in-place growth.

pub mod ext;
