//! Read, check, convert and preflight VHD (Microsoft Virtual Hard Disk)
//! images: raw disks and fixed, dynamic and differencing VHDs, chains
//! included.
//!
//! ```no_run
//! let disk = vhdkit::open("disk.vhd")?;
//! let mut sector = [0u8; 512];
//! disk.read_at(&mut sector, 0)?;
//! # Ok::<(), vhdkit::Error>(())
//! ```
//!
//! # A short tour
//!
//! - **Read**: [`open`] (or [`open_with`], to say where a differencing
//!   disk's parents may be) gives a [`Disk`]: its [`Kind`], virtual and
//!   file sizes, [`Geometry`], [`Creator`], its chain of parents
//!   ([`Disk::chain`]), its allocation map ([`Disk::blocks`]) and the bytes
//!   at any offset ([`Disk::read_at`]).
//! - **Check**: [`check`] lists every damaged structure and checksum as
//!   [`Finding`]s with stable codes and byte offsets.
//! - **Write**: [`convert`] writes any [`Disk`] as a fixed or dynamic VHD
//!   or a sparse raw file, with the digests asked for ([`ConvertOptions`]).
//! - **Cloud**: [`expand`] does to a copy what OpenStack's
//!   `auto_disk_config` does at boot, [`sparsify`] drops the blocks the
//!   filesystems do not use, [`preflight`] judges an image for Glance,
//!   Rackspace, XenServer or Azure and builds its [`ImageRecord`]. They
//!   return the same reports the `vhdkit` command prints (as JSON with
//!   `--json`): every report derives `serde::Serialize`.
//!
//! What vhdkit never does: write an input. Inputs are opened read-only and
//! memory-mapped; every output is written to a temporary file beside the
//! target, synced (unless asked not to) and renamed, and nothing is left on
//! failure. No byte of any image makes it panic: what it cannot read
//! correctly is an [`Error`] naming the file, the structure, the field, the
//! offset and the values found and expected; [`Error::kind`] says which
//! kind ([`ErrorKind`]) for a caller to match on.
//!
//! # What is public, and why only that
//!
//! The items above, at the crate root, are the library's API and follow
//! semantic versioning; the structs and enums that may grow are
//! `#[non_exhaustive]` (build options from `Default::default()` or their
//! `new` and set fields).
//!
//! The layer modules below them (`format`, `disk`, `check`, `pipeline`,
//! `writer`, `partition`, `fs`, `cloud`, `catalog`, `grow`, `report`,
//! `commands`) stay `pub` because the `vhdkit` binary, the integration
//! tests, the benchmarks and the fuzz targets drive them directly, but they
//! are `#[doc(hidden)]`: internals, free to change in any release. Moving
//! them all under one `internals` path would rename every import in the
//! crate for no gain to a user; hiding them keeps one documented surface.
//!
//! # Features
//!
//! `cli` (default) builds the `vhdkit` binary and the command-line parsing
//! (clap) and progress bar (indicatif) it needs. A library user can turn it
//! off: `vhdkit = { version = "0.1", default-features = false }`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod api;

#[doc(hidden)]
pub mod catalog;
#[doc(hidden)]
pub mod check;
#[doc(hidden)]
pub mod cloud;
#[doc(hidden)]
pub mod commands;
#[doc(hidden)]
pub mod disk;
#[doc(hidden)]
pub mod error;
#[doc(hidden)]
pub mod format;
#[doc(hidden)]
pub mod fs;
#[doc(hidden)]
pub mod grow;
#[doc(hidden)]
pub mod partition;
#[doc(hidden)]
pub mod pipeline;
#[doc(hidden)]
pub mod report;
#[doc(hidden)]
pub mod writer;

pub use api::{
    check, check_with, convert, convert_with_progress, expand, open, open_with, plan_expand,
    preflight, sparsify, CheckOptions, CheckReport, CloudTarget, ConvertOptions, Creator,
    DigestAlgo, Digests, Disk, ExpandOptions, ExpandReport, ExpandVerdict, Finding, Flavor,
    FlavorReport, Folded, FsGrowth, Geometry, GrowRule, ImageRecord, Kind, Line, Link, OpenOptions,
    PartitionInfo, PartitionRole, PartitionTable, PreflightOptions, PreflightReport, Progress,
    RecordSection, Severity, SparsifyOptions, SparsifyReport, Status, Structure, TableKind, Target,
    Verdict, VirtualSizes, WriteReport,
};
pub use error::{Error, ErrorKind, Result};
