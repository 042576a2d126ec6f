//! vhdkit: read, check, convert and preflight VHD disk images.
//!
//! Layers, bottom up:
//! - [`format`]: pure bytes ↔ structures (footer, dynamic header, BAT, ...);
//! - [`disk`]: a virtual-disk view over raw, fixed, dynamic and differencing
//!   sources, and the [`disk::device::Device`] trait partition/fs code uses;
//! - [`check`]: findings with stable codes;
//! - [`pipeline`]: plan as data, then a parallel run with one-pass digests;
//! - [`partition`] and [`fs`]: growing tables and filesystems;
//! - [`commands`]: `info`, `repair`, `convert` (convert, compact, checksum),
//!   `expand`, `preflight`, `bench`, re-exported here.
#![deny(unsafe_code)]

pub mod check;
pub mod commands;
pub mod disk;
pub mod error;
pub mod format;
pub mod fs;
pub mod output;
pub mod partition;
pub mod pipeline;

pub use commands::{bench, convert, expand, info, preflight, repair};
pub use error::{Error, Result};
