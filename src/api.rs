//! The documented surface: what a program using vhdkit as a library calls.
//!
//! A thin layer over the internal modules, above the commands (as the
//! binary is): [`open`] wraps `disk::open_with`, [`check`] wraps
//! `check::check_path`, [`convert`] wraps `writer::write_disk`, and
//! [`expand`], [`sparsify`] and [`preflight`] call the same library
//! functions the subcommands call, so they return the very reports the CLI
//! prints. No second reader, no second writer.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::disk::{self, VirtualDisk};
use crate::pipeline::NoProgress;
pub use crate::pipeline::Progress;
use crate::{Error, Result};

pub use crate::check::{Finding, Folded, Report as CheckReport, Severity};
pub use crate::cloud::flavor::Flavor;
pub use crate::cloud::flavor::FlavorReport;
pub use crate::cloud::nova::{ExpandReport, FsGrowth, Verdict as ExpandVerdict};
pub use crate::cloud::record::{ImageRecord, VirtualSizes};
pub use crate::cloud::{Line, Status};
pub use crate::commands::preflight::{
    Options as PreflightOptions, RecordSection, Report as PreflightReport, Structure, Verdict,
};
pub use crate::commands::sparsify::SparsifyReport;
pub use crate::disk::{Kind, ParentOptions as OpenOptions};
pub use crate::format::geometry::Geometry;
pub use crate::grow::ExpandOptions;
pub use crate::partition::{
    GrowRule, PartitionInfo, PartitionRole, Table as PartitionTable, TableKind,
};
pub use crate::pipeline::digest::{Algo as DigestAlgo, Digests};
pub use crate::writer::{Report as WriteReport, Target, WriteOptions as ConvertOptions};

/// Options of [`check_with`]: where parents may be looked for, and the
/// clock the future-timestamp rule compares with.
pub use crate::check::Options as CheckOptions;
/// The cloud a [`preflight`] judges the image for (Glance, Rackspace,
/// XenServer, Azure).
pub use crate::cloud::targets::Target as CloudTarget;
/// Options of [`sparsify`]: how the output is written (the same fields as
/// [`ConvertOptions`]; `align` and `creator` apply too).
pub use crate::commands::sparsify::SparsifyOptions;

/// Who made a VHD, from its footer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Creator {
    /// The creator application, four characters (`win `, `qemu`, `vpc `,
    /// `tap\0` shows as `tap`, ...); unprintable bytes are shown in hex.
    pub application: String,
    /// The creator version, major and minor.
    pub version: (u16, u16),
    /// The creator host OS: `Wi2k`, `Mac`, `none` (0, as XenServer
    /// writes), or the four characters found.
    pub host_os: String,
}

/// One file of a differencing chain, as [`Disk::chain`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Link {
    /// The file this link was opened from.
    pub path: PathBuf,
    /// What the file is.
    pub kind: Kind,
    /// The link's own virtual size in bytes (a child may be larger than
    /// its parent; bytes past the parent's end read as zero).
    pub virtual_size: u64,
}

/// An opened image: a raw disk, or a fixed, dynamic or differencing VHD
/// with its parents. It reads the virtual disk the image holds.
///
/// A `Disk` never writes: every file of the chain is opened read-only and
/// memory-mapped. Opening refuses what cannot be read correctly (damaged
/// structures, a missing or mismatched parent, another image format such as
/// qcow2 or VHDX); [`check`] is the tool that lists what is wrong.
pub struct Disk {
    view: Box<dyn VirtualDisk>,
    options: OpenOptions,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk")
            .field("path", &self.path())
            .field("kind", &self.kind())
            .field("virtual_size", &self.virtual_size())
            .finish()
    }
}

/// Opens an image of any kind for reading. A differencing disk's parents
/// are looked for only in the child's own folder (by its locators and its
/// parent name); [`open_with`] allows more.
///
/// ```
/// # fn main() -> vhdkit::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("disk.raw");
/// # std::fs::write(&path, vec![0x55u8; 1 << 20]).unwrap();
/// let disk = vhdkit::open(&path)?;
/// let mut sector = [0u8; 512];
/// disk.read_at(&mut sector, 0)?;
/// println!("{} {} bytes, first byte {:#x}", disk.kind(), disk.virtual_size(), sector[0]);
/// # assert_eq!(sector[0], 0x55);
/// # Ok(())
/// # }
/// ```
pub fn open(path: impl AsRef<Path>) -> Result<Disk> {
    open_with(path, &OpenOptions::default())
}

/// [`open`], with parents also looked for where `options` allow: an
/// explicit parent (`parent`, whose unique id must still match) and more
/// folders (`search_dirs`). Locators pointing elsewhere are never followed.
pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Disk> {
    Ok(Disk {
        view: disk::open_with(path.as_ref(), options)?,
        options: options.clone(),
    })
}

impl Disk {
    /// The file this disk was opened from (the leaf of a chain).
    pub fn path(&self) -> &Path {
        self.view.path()
    }

    /// Raw, fixed, dynamic or differencing.
    pub fn kind(&self) -> Kind {
        self.view.kind()
    }

    /// The virtual size in bytes: what a guest sees (the footer's current
    /// size; a raw file's length).
    pub fn virtual_size(&self) -> u64 {
        self.view.size_bytes()
    }

    /// The length of the file itself (of the leaf, for a chain).
    pub fn file_size(&self) -> u64 {
        self.view.file_size_bytes().unwrap_or(0)
    }

    /// The allocation unit: a dynamic VHD's block size; 2 MiB for raw and
    /// fixed files (holes are found at that step).
    pub fn block_size(&self) -> u64 {
        self.view.block_size_bytes()
    }

    /// The footer's cylinders, heads and sectors per track (`None` for a
    /// raw file).
    pub fn geometry(&self) -> Option<Geometry> {
        self.view.vhd_footer().map(|f| f.geometry)
    }

    /// The footer's original size (`None` for a raw file). Glance records
    /// this one; it differs from [`Disk::virtual_size`] after a resize.
    pub fn original_size(&self) -> Option<u64> {
        self.view.vhd_footer().map(|f| f.original_size)
    }

    /// Who made the VHD (`None` for a raw file).
    pub fn creator(&self) -> Option<Creator> {
        let f = self.view.vhd_footer()?;
        let major = u16::try_from(f.creator_version >> 16).unwrap_or(u16::MAX);
        let minor = u16::try_from(f.creator_version & 0xffff).unwrap_or(u16::MAX);
        Some(Creator {
            application: crate::format::fourcc(f.creator_application),
            version: (major, minor),
            host_os: match f.creator_host_os {
                0x5769_326B => "Wi2k".into(),
                0x4D61_6320 => "Mac".into(),
                0 => "none".into(),
                other => crate::format::fourcc(other.to_be_bytes()),
            },
        })
    }

    /// Fills `buf` with the virtual disk's bytes from `offset`, through the
    /// chain (sectors a child does not hold come from its parent; bytes
    /// nobody holds read as zero). The whole range must lie inside the
    /// disk: a read past [`Disk::virtual_size`] is an error
    /// ([`ErrorKind::Usage`](crate::ErrorKind::Usage)), never a short read.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.view.read_at(offset, buf)
    }

    /// The allocation map: the byte ranges of the virtual disk that may
    /// hold data, in order, adjacent ranges merged, at
    /// [`Disk::block_size`] granularity. Everything outside them reads as
    /// zero without being stored (unallocated blocks of every link,
    /// holes of a sparse raw or fixed file). Reads no data.
    ///
    /// ```
    /// # fn main() -> vhdkit::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let raw = dir.path().join("disk.raw");
    /// # let mut bytes = vec![0u8; 8 << 20];
    /// # bytes[3 << 20] = 1; // one byte of data in the second 2 MiB block
    /// # std::fs::write(&raw, &bytes).unwrap();
    /// # let vhd = dir.path().join("disk.vhd");
    /// # vhdkit::convert(&vhdkit::open(&raw)?, &vhd, &vhdkit::ConvertOptions::default())?;
    /// let disk = vhdkit::open(&vhd)?;
    /// for range in disk.blocks() {
    ///     println!("data at {:#x}..{:#x}", range.start, range.end);
    /// }
    /// # assert_eq!(disk.blocks().collect::<Vec<_>>(), vec![(2 << 20)..(4 << 20)]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn blocks(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        let size = self.virtual_size();
        let step = self.block_size().max(512);
        let mut at = 0u64;
        std::iter::from_fn(move || {
            let mut start = None;
            while at < size {
                let len = step.min(size - at);
                let here = at;
                at += len;
                match (self.view.is_unallocated(here, len), start) {
                    (false, None) => start = Some(here),
                    (true, Some(s)) => return Some(s..here),
                    _ => {}
                }
            }
            start.map(|s| s..size)
        })
    }

    /// The files of the chain, this disk first, then each parent: one link
    /// for a raw, fixed or dynamic disk.
    pub fn chain(&self) -> Vec<Link> {
        let mut links = Vec::new();
        let mut link: Option<&dyn VirtualDisk> = Some(self.view.as_ref());
        while let Some(d) = link {
            links.push(Link {
                path: d.path().to_path_buf(),
                kind: d.kind(),
                virtual_size: d.size_bytes(),
            });
            link = d.parent();
        }
        links
    }

    /// The partition table (MBR with its logical partitions, or GPT), as
    /// `sfdisk --json` would show it; [`TableKind::None`] when there is
    /// none. Reads only the sectors of the tables.
    ///
    /// ```
    /// # fn main() -> vhdkit::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let raw = dir.path().join("disk.raw");
    /// # let mut bytes = vec![0u8; 4 << 20];
    /// # // One MBR partition of type 0x83 from sector 2048 to the end.
    /// # bytes[446 + 4] = 0x83;
    /// # bytes[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    /// # bytes[446 + 12..446 + 16].copy_from_slice(&(8192u32 - 2048).to_le_bytes());
    /// # bytes[510] = 0x55;
    /// # bytes[511] = 0xaa;
    /// # std::fs::write(&raw, &bytes).unwrap();
    /// let disk = vhdkit::open(&raw)?;
    /// let table = disk.partitions()?;
    /// for p in &table.partitions {
    ///     println!("{} type {} sectors {}..={}", p.number, p.type_id, p.start_lba, p.end_lba);
    /// }
    /// # assert_eq!(table.kind, vhdkit::TableKind::Mbr);
    /// # assert_eq!(table.partitions[0].start_lba, 2048);
    /// # Ok(())
    /// # }
    /// ```
    pub fn partitions(&self) -> Result<PartitionTable> {
        let device = crate::disk::overlay::Overlay::new(self.view.as_ref(), self.virtual_size());
        crate::partition::read_table(&device).map_err(|e| Error::from_part(self.path(), e))
    }

    /// The options this disk was opened with (where parents were looked for).
    pub fn options(&self) -> &OpenOptions {
        &self.options
    }
}

/// Checks every structure and checksum of the VHD at `path` and, link by
/// link, of its parents (looked for in the child's folder). Returns the
/// findings, each with a stable code, a severity, the file, the byte offset
/// of the field at fault and a message naming the value found and expected.
/// Never writes, never repairs.
///
/// An `Err` means the file could not be checked at all: not a VHD
/// ([`ErrorKind::NotVhd`](crate::ErrorKind::NotVhd), a raw disk included),
/// another image format, or an I/O error. A damaged VHD is an `Ok` report
/// whose [`CheckReport::ok`] is false.
///
/// ```
/// # fn main() -> vhdkit::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let raw = dir.path().join("disk.raw");
/// # std::fs::write(&raw, vec![7u8; 1 << 20]).unwrap();
/// # let path = dir.path().join("disk.vhd");
/// # vhdkit::convert(&vhdkit::open(&raw)?, &path, &vhdkit::ConvertOptions::default())?;
/// # // Damage the footer's checksum field (offset 64 of the last 512 bytes).
/// # let mut bytes = std::fs::read(&path).unwrap();
/// # let at = bytes.len() - 512 + 64;
/// # bytes[at] ^= 0xff;
/// # std::fs::write(&path, &bytes).unwrap();
/// let report = vhdkit::check(&path)?;
/// for f in &report.findings {
///     println!("{:?} {} at {:#x}: {}", f.severity, f.code, f.offset, f.message);
/// }
/// # assert!(report.findings.iter().any(|f| f.code == "FOOTER_CHECKSUM"));
/// # Ok(())
/// # }
/// ```
pub fn check(path: impl AsRef<Path>) -> Result<CheckReport> {
    check_with(path, &CheckOptions::default())
}

/// [`check`], with parents also looked for where `options.parents` allow.
pub fn check_with(path: impl AsRef<Path>, options: &CheckOptions) -> Result<CheckReport> {
    crate::check::check_path(path.as_ref(), options)
}

/// Writes the virtual disk `disk` to `output` as a fixed or dynamic VHD or
/// a sparse raw file ([`ConvertOptions::to`]); a chain is flattened. Zero
/// blocks are left out (unallocated, or holes). The output is written to a
/// temporary file beside `output`, synced (unless `no_sync`) and renamed:
/// on any error nothing is left. The input is never written.
///
/// Refuses ([`ErrorKind::Check`](crate::ErrorKind::Check)) a VHD input
/// that [`check`] finds errors in. Returns what was written: sizes, block
/// counts, and the digests asked for in [`ConvertOptions::digests`],
/// computed from the bytes as they were written.
///
/// ```
/// # fn main() -> vhdkit::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let raw = dir.path().join("disk.raw");
/// # std::fs::write(&raw, vec![1u8; 1 << 20]).unwrap();
/// # let vhd = dir.path().join("disk.vhd");
/// let mut options = vhdkit::ConvertOptions::default(); // dynamic, 2 MiB blocks
/// options.digests = vec![vhdkit::DigestAlgo::Md5];
/// let written = vhdkit::convert(&vhdkit::open(&raw)?, &vhd, &options)?;
/// println!("{} bytes, md5 {}", written.file_size, written.digests.md5.unwrap());
/// # assert_eq!(vhdkit::open(&vhd)?.kind(), vhdkit::Kind::Dynamic);
/// # Ok(())
/// # }
/// ```
pub fn convert(
    disk: &Disk,
    output: impl AsRef<Path>,
    options: &ConvertOptions,
) -> Result<WriteReport> {
    convert_with_progress(disk, output, options, &NoProgress)
}

/// [`convert`], telling `progress` how many bytes of output are done as it
/// goes (from several threads: the callback must be `Sync`).
pub fn convert_with_progress(
    disk: &Disk,
    output: impl AsRef<Path>,
    options: &ConvertOptions,
    progress: &dyn Progress,
) -> Result<WriteReport> {
    crate::writer::require_clean(disk.path(), &disk.options)?;
    crate::writer::write_disk(
        disk.view.as_ref(),
        disk.path(),
        output.as_ref(),
        options,
        progress,
    )
}

/// Does to a copy of `input` what OpenStack's hypervisor does at boot with
/// `auto_disk_config=True`: grows the disk to `options.size`, partition 1
/// to the end (by [`ExpandOptions::rule`]) and its ext2/3/4 or FAT
/// filesystem to fill it, and writes the result to `output` (temporary
/// file, synced, renamed). When Nova would refuse, nothing is written and
/// the report's verdict says why. `input` is never written.
pub fn expand(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    options: &ExpandOptions,
) -> Result<ExpandReport> {
    crate::grow::expand(input.as_ref(), output.as_ref(), options, &NoProgress)
}

/// [`expand`]'s plan and verdict, writing nothing (`--dry-run`).
pub fn plan_expand(input: impl AsRef<Path>, options: &ExpandOptions) -> Result<ExpandReport> {
    crate::grow::plan_expand(input.as_ref(), options)
}

/// Writes a copy of `input` in which the bytes its filesystems (ext2/3/4,
/// FAT, NTFS, swap) do not use read as zero, so they are left out of the
/// output; used bytes are carried over byte for byte and no filesystem
/// metadata changes. With `output` `None` it only reports (the planned
/// output size included). `input` is never written.
pub fn sparsify(
    input: impl AsRef<Path>,
    output: Option<&Path>,
    options: &SparsifyOptions,
) -> Result<SparsifyReport> {
    crate::commands::sparsify::sparsify(input.as_ref(), output, options, &NoProgress)
}

/// Judges whether `image` is ready to upload to a cloud
/// ([`PreflightOptions::target`]) and boot: its structure, the image record
/// Glance would hold (with the MD5 and SHA-512 of the bytes uploaded; for
/// Azure, the upload's sizes and commands instead), the
/// property lint, the target's rules and each flavor's checks, as PASS,
/// WARN and FAIL lines and a verdict. Reads the image once; writes nothing
/// but the XenServer package when [`PreflightOptions::package`] asks.
///
/// ```
/// # fn main() -> vhdkit::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let raw = dir.path().join("web.raw");
/// # std::fs::write(&raw, vec![0u8; 1 << 20]).unwrap();
/// # let vhd = dir.path().join("web.vhd");
/// # vhdkit::convert(&vhdkit::open(&raw)?, &vhd, &vhdkit::ConvertOptions::default())?;
/// let report = vhdkit::preflight(&vhd, &vhdkit::PreflightOptions::default())?;
/// // Every target but Azure gets a Glance record (Azure: `report.azure`).
/// let record: &vhdkit::ImageRecord = &report.record.as_ref().expect("glance").record;
/// println!("{} {} md5={:?}", record.name, record.disk_format, record.checksum);
/// # assert_eq!(record.name, "web");
/// # assert_eq!(record.checksum.as_ref().map(String::len), Some(32));
/// # Ok(())
/// # }
/// ```
pub fn preflight(image: impl AsRef<Path>, options: &PreflightOptions) -> Result<PreflightReport> {
    crate::commands::preflight::preflight(image.as_ref(), options, &NoProgress)
}
