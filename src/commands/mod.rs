//! The commands, each built on the layers below it: `info`, `repair`,
//! `convert` (with `compact` and `checksum`), `expand`, `preflight` and
//! `bench`. The binary parses arguments, calls one of these and prints.
//! They are re-exported at the crate root (`vhdkit::convert`, ...).

pub mod bench;
pub mod convert;
pub mod expand;
pub mod info;
pub mod preflight;
pub mod repair;
