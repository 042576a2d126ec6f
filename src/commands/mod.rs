//! The commands: one leaf module per subcommand (`info`, `check`, `repair`,
//! `convert`, `compact`, `checksum`, `expand`, `preflight`, `sparsify`,
//! `bench`, `catalog`). No
//! command imports another; what two share lives in a layer below
//! (`writer`, `grow`, `cloud`, `report`).
//!
//! Each module has the same shape: an `Args` struct (`clap::Args` with the
//! `cli` feature, its flags documented once, for `--help` and README; plain
//! structs without it), a library function
//! doing the work and returning a report that derives `Serialize`, a text
//! renderer of that same report, and `run(args) -> Result<Outcome>` which
//! ties them and picks the exit status. The binary parses and dispatches.

// The bench command draws its steps with indicatif: it is the command
// line's only (`vhdkit bench`), so it is built with the `cli` feature.
#[cfg(feature = "cli")]
pub mod bench;
pub mod catalog;
pub mod check;
pub mod checksum;
pub mod compact;
pub mod convert;
pub mod expand;
pub mod info;
pub mod preflight;
pub mod repair;
pub mod sparsify;
