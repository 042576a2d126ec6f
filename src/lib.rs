//! vhdkit: read, check, convert and preflight VHD disk images.
//!
//! Layers, bottom up:
//! - [`format`]: pure bytes ↔ structures (footer, dynamic header, BAT, ...);
//! - [`disk`]: a virtual-disk view over raw, fixed, dynamic and differencing
//!   sources, and the [`disk::device::Device`] trait partition/fs code uses;
//! - [`check`]: findings with stable codes;
//! - [`pipeline`]: plan as data, then a parallel run with one-pass digests;
//! - [`partition`] and [`fs`]: growing tables and filesystems;
//! - the commands: [`info`], [`repair`], [`convert`] (convert, compact, checksum).
#![deny(unsafe_code)]

pub mod bench;
pub mod check;
pub mod convert;
pub mod disk;
pub mod error;
pub mod expand;
pub mod format;
pub mod fs;
pub mod info;
pub mod output;
pub mod partition;
pub mod pipeline;
pub mod preflight;
pub mod repair;

pub use error::{Error, Result};
