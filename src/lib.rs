//! vhdkit: read, check, convert and preflight VHD disk images.
//!
//! Layers: [`format`] (pure bytes ↔ structures), [`disk`] (a virtual-disk view
//! over raw, fixed, dynamic and differencing sources), [`check`] (findings),
//! and the commands built on them.
#![deny(unsafe_code)]

pub mod disk;
pub mod format;
pub mod fs;
