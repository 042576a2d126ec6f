//! vhdkit: read, check, convert and preflight VHD disk images.
//!
//! Layers, bottom up; each imports only those below it:
//! - [`format`]: pure bytes ↔ structures (footer, dynamic header, BAT, ...);
//! - [`disk`]: a virtual-disk view over raw, fixed, dynamic and differencing
//!   sources, and the [`disk::device::Device`] trait partition/fs code uses;
//! - [`check`]: findings with stable codes;
//! - [`pipeline`]: plan as data, then a parallel run, and the one digest
//!   engine ([`pipeline::digest`]);
//! - [`writer`]: outputs (temporary file, synced or not, renamed), the
//!   damaged-input gate, `write_disk`, differencing children, packages;
//! - [`partition`] and [`fs`]: reading and growing tables and filesystems;
//! - [`cloud`]: pure policy: Nova, Glance's record and lint, the targets,
//!   the flavors;
//! - [`grow`]: the `auto_disk_config` engine (plan on an overlay, write);
//! - [`report`]: the [`report::Outcome`] every command returns, rendered as
//!   text or JSON by the binary;
//! - [`commands`]: one leaf module per subcommand, re-exported here.
//!
//! [`error`] is the one error type every layer converts into.
#![deny(unsafe_code)]

pub mod catalog;
pub mod check;
pub mod cloud;
pub mod commands;
pub mod disk;
pub mod error;
pub mod format;
pub mod fs;
pub mod grow;
pub mod partition;
pub mod pipeline;
pub mod report;
pub mod writer;

pub use commands::{bench, checksum, compact, convert, expand, info, preflight, repair, sparsify};
pub use error::{Error, Result};
