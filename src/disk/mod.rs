//! A virtual-disk view over raw, fixed, dynamic and differencing sources.
//!
//! Every command reads disks through [`VirtualDisk`]: a size, a native block
//! size, and for any byte range either "zero", a slice of the mapped file, or
//! bytes merged through a differencing chain. Detecting the kind of a file
//! ([`detect`]) is separate from opening it ([`open`]). This layer trusts
//! nothing: every offset taken from the file is checked against its size.

pub mod chain;
pub mod device;
pub mod dynamic;
pub mod flat;
pub mod overlay;
pub mod parent;
pub mod source;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

pub use chain::{Chain, LinkError, MAX_CHAIN_DEPTH};
pub use parent::ParentOptions;
pub use source::Source;

use crate::format::foreign::{self, Foreign};
use crate::format::{image::has_head_footer, image::tail_footer_kind, DiskType, TailFooter};
use crate::{Error, Result};

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A raw disk image: the file is the disk.
    Raw,
    /// A fixed VHD: the disk's bytes, then a 512-byte footer.
    Fixed,
    /// A dynamic VHD: blocks allocated as written, through a block allocation table.
    Dynamic,
    /// A differencing VHD: a dynamic disk holding the sectors changed over a parent.
    Differencing,
}

impl Kind {
    /// `raw`, `fixed`, `dynamic` or `differencing`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Fixed => "fixed",
            Kind::Dynamic => "dynamic",
            Kind::Differencing => "differencing",
        }
    }

    /// The kind of a VHD footer's disk type.
    pub fn from_disk_type(t: DiskType) -> Kind {
        match t {
            DiskType::Fixed => Kind::Fixed,
            DiskType::Dynamic => Kind::Dynamic,
            DiskType::Differencing => Kind::Differencing,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Detects a file's kind from its bytes, never its name. A VHD is a file
/// whose last 512 (or 511) bytes carry the footer cookie, or whose first
/// sector is a dynamic disk's footer copy (a damaged tail); anything else is
/// raw, including a raw disk whose last sector is zero.
pub fn detect(bytes: &[u8]) -> Option<DiskType> {
    use crate::format::Footer;
    let tail = tail_footer_kind(bytes);
    let n = bytes.len();
    let footer = match tail {
        TailFooter::Standard => Footer::parse(&bytes[n - 512..], 0).ok(),
        TailFooter::Short => Footer::parse(&bytes[n - 511..], 0).ok(),
        TailFooter::Missing if has_head_footer(bytes) => Footer::parse(&bytes[..512], 0).ok(),
        TailFooter::Missing => None,
    }?;
    match footer.disk_type() {
        Some(t) => Some(t),
        // An unknown type: judge by the data offset, so check can report it.
        None if footer.data_offset == u64::MAX => Some(DiskType::Fixed),
        None => Some(DiskType::Dynamic),
    }
}

/// A run of bytes of a virtual disk.
#[derive(Debug)]
pub enum Block<'a> {
    /// Every byte reads as zero.
    Zero,
    /// The bytes, straight from the mapped file.
    Data(&'a [u8]),
    /// The bytes, assembled (through a chain, or across blocks).
    Owned(Vec<u8>),
}

impl Block<'_> {
    /// The bytes, or `None` for a zero block.
    pub fn data(&self) -> Option<&[u8]> {
        match self {
            Block::Zero => None,
            Block::Data(d) => Some(d),
            Block::Owned(v) => Some(v),
        }
    }

    /// Copies the bytes into `buf` (zeros for a zero block).
    pub fn copy_to(&self, buf: &mut [u8]) {
        match self.data() {
            None => buf.fill(0),
            Some(d) => buf.copy_from_slice(d),
        }
    }
}

/// A virtual disk: what any reader of an image sees.
pub trait VirtualDisk: Send + Sync {
    /// The file this view was opened from (the leaf, for a chain).
    fn path(&self) -> &Path;
    /// Raw, fixed, dynamic or differencing.
    fn kind(&self) -> Kind;
    /// The virtual size in bytes.
    fn size_bytes(&self) -> u64;
    /// The native allocation unit (a VHD's block size; 2 MiB for raw files).
    fn block_size_bytes(&self) -> u64;
    /// The bytes `offset..offset+len`, which must lie inside the disk.
    fn range(&self, offset: u64, len: usize) -> Result<Block<'_>>;
    /// Whether `offset..offset+len` is known to read as zero without reading
    /// it (holes, unallocated blocks). `false` means "maybe data".
    fn is_unallocated(&self, offset: u64, len: u64) -> bool;
    /// Drops the mapped pages behind `offset..offset+len` (resident memory).
    fn release(&self, _offset: u64, _len: u64) {}
    /// The parent of a differencing disk.
    fn parent(&self) -> Option<&dyn VirtualDisk> {
        None
    }
    /// The footer of this link when it is a VHD (`None`: raw, or a view
    /// built over another disk).
    fn vhd_footer(&self) -> Option<&crate::format::Footer> {
        None
    }
    /// The length of the file this link was opened from (`None`: a view
    /// built over another disk).
    fn file_size_bytes(&self) -> Option<u64> {
        None
    }

    /// Fills `buf` from `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.range(offset, buf.len())?.copy_to(buf);
        Ok(())
    }
}

/// Checks that `offset..offset+len` lies inside a disk of `size` bytes.
pub(crate) fn check_range(path: &Path, offset: u64, len: usize, size: u64) -> Result<u64> {
    let end = u64::try_from(len).ok().and_then(|l| offset.checked_add(l));
    match end {
        Some(end) if end <= size => Ok(end),
        _ => Err(Error::Usage(format!(
            "{}: read of {len} bytes at {offset:#x} is past the virtual size {size}",
            path.display()
        ))),
    }
}

/// How a file without a VHD footer is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputFormat {
    /// A raw disk, unless its first bytes are another image format's
    /// (qcow2, VMDK, VHDX, ...): then it is refused ([`Error::Foreign`]).
    #[default]
    Auto,
    /// A raw disk, whatever its first bytes look like (`--input-format raw`).
    Raw,
}

/// The binary's `--input-format raw`, for every open of this process.
static FORCE_RAW: AtomicBool = AtomicBool::new(false);

/// Sets how [`open`] and [`refuse_foreign`] take files without a VHD footer
/// in this process (the command line's `--input-format`).
pub fn set_input_format(format: InputFormat) {
    FORCE_RAW.store(format == InputFormat::Raw, Ordering::Relaxed);
}

fn input_format() -> InputFormat {
    if FORCE_RAW.load(Ordering::Relaxed) {
        InputFormat::Raw
    } else {
        InputFormat::Auto
    }
}

/// The foreign format of a file that is not a VHD, from a bounded prefix of
/// its bytes (`None`: a VHD, or a raw disk).
pub fn detect_foreign(bytes: &[u8]) -> Option<Foreign> {
    if detect(bytes).is_some() {
        return None;
    }
    foreign::detect(bytes.get(..foreign::PREFIX_LEN).unwrap_or(bytes))
}

fn refuse_source(source: &Source) -> Result<()> {
    if input_format() == InputFormat::Raw {
        return Ok(());
    }
    match detect_foreign(source.bytes()) {
        None => Ok(()),
        Some(f) => Err(Error::Foreign {
            path: source.path().to_path_buf(),
            format: f.description(),
            fix: f.fix(source.path()),
        }),
    }
}

/// Refuses a regular file that holds another image format (qcow2, VMDK,
/// VHDX, VDI, QED, Parallels, LUKS, ISO 9660, a VHD header without footer),
/// unless `--input-format raw` was given. Other paths (folders) pass.
pub fn refuse_foreign(path: &Path) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    refuse_source(&Source::open(path)?)
}

/// Opens an image of any kind, following a differencing chain inside the
/// child's folder, and refuses what it cannot read correctly (damaged
/// structures, a missing parent, another image format).
pub fn open(path: &Path) -> Result<Box<dyn VirtualDisk>> {
    open_with(path, &ParentOptions::default())
}

/// [`open`], with parents also looked for where `options` allow.
pub fn open_with(path: &Path, options: &ParentOptions) -> Result<Box<dyn VirtualDisk>> {
    open_link(path, &mut Chain::new(options))
}

/// Opens one link of a chain (the leaf when `chain` is empty; parents only
/// as regular files).
pub(crate) fn open_link(path: &Path, chain: &mut Chain) -> Result<Box<dyn VirtualDisk>> {
    let source = chain.open_source(path)?;
    refuse_source(&source)?;
    match detect(source.bytes()) {
        None => Ok(Box::new(flat::FlatDisk::raw(source))),
        Some(DiskType::Fixed) => Ok(Box::new(flat::FlatDisk::fixed(source)?)),
        Some(_) => Ok(Box::new(dynamic::DynamicDisk::open(source, chain)?)),
    }
}
