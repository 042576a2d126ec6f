//! The 512-byte hard disk footer (specification §"Hard Disk Footer Format").

use zerocopy::byteorder::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{checksum, FormatError, Geometry};

/// `conectix`: the footer cookie.
pub const FOOTER_COOKIE: [u8; 8] = *b"conectix";
/// Bytes in a footer.
pub const FOOTER_SIZE: usize = 512;
/// The footer size as a file offset.
pub const FOOTER_SIZE_U64: u64 = 512;
/// Bytes in the footer of files made before Virtual PC 2004.
pub const OLD_FOOTER_SIZE: usize = 511;
/// The only file format version defined.
pub const FORMAT_VERSION: u32 = 0x0001_0000;
/// Features bit: the disk is a candidate for deletion on shutdown.
pub const FEATURE_TEMPORARY: u32 = 0x1;
/// Features bit: reserved, always set.
pub const FEATURE_RESERVED: u32 = 0x2;
/// Data offset of a fixed disk: no dynamic header.
pub const FIXED_DATA_OFFSET: u64 = u64::MAX;
/// Byte range of the checksum field inside the footer.
pub const CHECKSUM_RANGE: std::ops::Range<usize> = 64..68;
/// Offset of XenServer's "hidden" flag (the first reserved byte).
pub const HIDDEN_OFFSET: usize = 85;
/// Host OS codes.
pub const HOST_WINDOWS: u32 = 0x5769_326B;
pub const HOST_MAC: u32 = 0x4D61_6320;

/// The footer exactly as laid out on disk.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct RawFooter {
    pub cookie: [u8; 8],
    pub features: U32,
    pub file_format_version: U32,
    pub data_offset: U64,
    pub time_stamp: U32,
    pub creator_application: [u8; 4],
    pub creator_version: U32,
    pub creator_host_os: U32,
    pub original_size: U64,
    pub current_size: U64,
    pub cylinders: U16,
    pub heads: u8,
    pub sectors_per_track: u8,
    pub disk_type: U32,
    pub checksum: U32,
    pub unique_id: [u8; 16],
    pub saved_state: u8,
    pub reserved: [u8; 427],
}

const _: () = assert!(std::mem::size_of::<RawFooter>() == FOOTER_SIZE);

/// The disk type field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskType {
    Fixed,
    Dynamic,
    Differencing,
}

impl DiskType {
    /// The on-disk code.
    pub fn code(self) -> u32 {
        match self {
            DiskType::Fixed => 2,
            DiskType::Dynamic => 3,
            DiskType::Differencing => 4,
        }
    }

    /// Decodes the on-disk code; reserved and deprecated codes are `None`.
    pub fn from_code(code: u32) -> Option<DiskType> {
        match code {
            2 => Some(DiskType::Fixed),
            3 => Some(DiskType::Dynamic),
            4 => Some(DiskType::Differencing),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DiskType::Fixed => "fixed",
            DiskType::Dynamic => "dynamic",
            DiskType::Differencing => "differencing",
        }
    }
}

/// A footer, field by field. `disk_type` keeps the raw code so that a footer
/// with an unknown type can still be shown and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    pub features: u32,
    pub file_format_version: u32,
    pub data_offset: u64,
    pub time_stamp: u32,
    pub creator_application: [u8; 4],
    pub creator_version: u32,
    pub creator_host_os: u32,
    pub original_size: u64,
    pub current_size: u64,
    pub geometry: Geometry,
    pub disk_type_code: u32,
    pub checksum: u32,
    pub unique_id: [u8; 16],
    pub saved_state: u8,
    pub reserved: [u8; 427],
}

impl Footer {
    /// Parses a footer found at absolute `offset`. Accepts 511 bytes (pre-2004
    /// files; the missing last reserved byte reads as zero). Only the cookie is
    /// required; everything else is for the checker to judge.
    pub fn parse(bytes: &[u8], offset: u64) -> Result<Footer, FormatError> {
        let mut buf = [0u8; FOOTER_SIZE];
        match bytes.len() {
            FOOTER_SIZE | OLD_FOOTER_SIZE => buf[..bytes.len()].copy_from_slice(bytes),
            n => {
                return Err(FormatError {
                    structure: "footer",
                    field: "length",
                    offset,
                    found: format!("{n} bytes"),
                    expected: "512 bytes (or 511 for pre-2004 files)".into(),
                })
            }
        }
        let raw = RawFooter::ref_from_bytes(&buf[..]).map_err(|_| FormatError {
            structure: "footer",
            field: "length",
            offset,
            found: format!("{} bytes", bytes.len()),
            expected: "512 bytes".into(),
        })?;
        if raw.cookie != FOOTER_COOKIE {
            return Err(FormatError {
                structure: "footer",
                field: "cookie",
                offset,
                found: super::escape_bytes(&raw.cookie),
                expected: "\"conectix\"".into(),
            });
        }
        Ok(Footer {
            features: raw.features.get(),
            file_format_version: raw.file_format_version.get(),
            data_offset: raw.data_offset.get(),
            time_stamp: raw.time_stamp.get(),
            creator_application: raw.creator_application,
            creator_version: raw.creator_version.get(),
            creator_host_os: raw.creator_host_os.get(),
            original_size: raw.original_size.get(),
            current_size: raw.current_size.get(),
            geometry: Geometry {
                cylinders: raw.cylinders.get(),
                heads: raw.heads,
                sectors_per_track: raw.sectors_per_track,
            },
            disk_type_code: raw.disk_type.get(),
            checksum: raw.checksum.get(),
            unique_id: raw.unique_id,
            saved_state: raw.saved_state,
            reserved: raw.reserved,
        })
    }

    /// Serializes field by field, the stored checksum as it is.
    pub fn to_bytes(&self) -> [u8; FOOTER_SIZE] {
        let raw = RawFooter {
            cookie: FOOTER_COOKIE,
            features: self.features.into(),
            file_format_version: self.file_format_version.into(),
            data_offset: self.data_offset.into(),
            time_stamp: self.time_stamp.into(),
            creator_application: self.creator_application,
            creator_version: self.creator_version.into(),
            creator_host_os: self.creator_host_os.into(),
            original_size: self.original_size.into(),
            current_size: self.current_size.into(),
            cylinders: self.geometry.cylinders.into(),
            heads: self.geometry.heads,
            sectors_per_track: self.geometry.sectors_per_track,
            disk_type: self.disk_type_code.into(),
            checksum: self.checksum.into(),
            unique_id: self.unique_id,
            saved_state: self.saved_state,
            reserved: self.reserved,
        };
        let mut out = [0u8; FOOTER_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// The checksum these fields should carry.
    pub fn computed_checksum(&self) -> u32 {
        checksum(&self.to_bytes(), CHECKSUM_RANGE)
    }

    /// The checksum computed with XenServer's hidden byte taken as zero (old
    /// blktap images were written that way).
    pub fn computed_checksum_without_hidden(&self) -> u32 {
        let mut bytes = self.to_bytes();
        bytes[HIDDEN_OFFSET] = 0;
        checksum(&bytes, CHECKSUM_RANGE)
    }

    /// Sets the stored checksum to the computed one.
    pub fn seal(&mut self) {
        self.checksum = self.computed_checksum();
    }

    pub fn disk_type(&self) -> Option<DiskType> {
        DiskType::from_code(self.disk_type_code)
    }

    /// XenServer's hidden flag (first reserved byte).
    pub fn hidden(&self) -> u8 {
        self.reserved[0]
    }

    /// A new footer for a disk of exactly `size_bytes`, original = current
    /// size, geometry by the specification's algorithm, checksum sealed.
    pub fn new(
        disk_type: DiskType,
        size_bytes: u64,
        creator: Creator,
        time_stamp: u32,
        unique_id: [u8; 16],
    ) -> Footer {
        let mut f = Footer {
            features: FEATURE_RESERVED,
            file_format_version: FORMAT_VERSION,
            data_offset: match disk_type {
                DiskType::Fixed => FIXED_DATA_OFFSET,
                _ => FOOTER_SIZE_U64,
            },
            time_stamp,
            creator_application: creator.application,
            creator_version: creator.version,
            creator_host_os: creator.host_os,
            original_size: size_bytes,
            current_size: size_bytes,
            geometry: Geometry::from_size(size_bytes),
            disk_type_code: disk_type.code(),
            checksum: 0,
            unique_id,
            saved_state: 0,
            reserved: [0; 427],
        };
        f.seal();
        f
    }
}

/// Byte offsets of the footer's fields, from [`RawFooter`]'s layout: what
/// messages and findings add to the footer's own offset.
pub mod field {
    use super::RawFooter;
    use std::mem::offset_of;
    pub const FEATURES: u64 = offset_of!(RawFooter, features) as u64;
    pub const FILE_FORMAT_VERSION: u64 = offset_of!(RawFooter, file_format_version) as u64;
    pub const DATA_OFFSET: u64 = offset_of!(RawFooter, data_offset) as u64;
    pub const TIME_STAMP: u64 = offset_of!(RawFooter, time_stamp) as u64;
    pub const CREATOR_APPLICATION: u64 = offset_of!(RawFooter, creator_application) as u64;
    pub const ORIGINAL_SIZE: u64 = offset_of!(RawFooter, original_size) as u64;
    pub const CURRENT_SIZE: u64 = offset_of!(RawFooter, current_size) as u64;
    pub const DISK_GEOMETRY: u64 = offset_of!(RawFooter, cylinders) as u64;
    pub const DISK_TYPE: u64 = offset_of!(RawFooter, disk_type) as u64;
    pub const CHECKSUM: u64 = offset_of!(RawFooter, checksum) as u64;
    pub const UNIQUE_ID: u64 = offset_of!(RawFooter, unique_id) as u64;
    pub const SAVED_STATE: u64 = offset_of!(RawFooter, saved_state) as u64;
    pub const RESERVED: u64 = offset_of!(RawFooter, reserved) as u64;
    /// XenServer's hidden flag: the first reserved byte.
    pub const HIDDEN: u64 = RESERVED;
    const _: () = assert!(CHECKSUM == 64 && HIDDEN == 85 && DISK_GEOMETRY == 56);
}

/// The footer's fields by byte range, named as in the specification.
pub const FIELDS: &[(std::ops::Range<usize>, &str)] = &[
    (0..8, "cookie"),
    (8..12, "features"),
    (12..16, "file format version"),
    (16..24, "data offset"),
    (24..28, "timestamp"),
    (28..32, "creator application"),
    (32..36, "creator version"),
    (36..40, "creator host OS"),
    (40..48, "original size"),
    (48..56, "current size"),
    (56..60, "disk geometry"),
    (60..64, "disk type"),
    (64..68, "checksum"),
    (68..84, "unique id"),
    (84..85, "saved state"),
    (85..FOOTER_SIZE, "reserved"),
];

/// The field holding byte `offset` of a footer, with its byte range.
pub fn field_at(offset: usize) -> Option<(std::ops::Range<usize>, &'static str)> {
    FIELDS
        .iter()
        .find(|(r, _)| r.contains(&offset))
        .map(|(r, name)| (r.clone(), *name))
}

/// A creator application as written into new footers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creator {
    pub application: [u8; 4],
    pub version: u32,
    pub host_os: u32,
}

impl Creator {
    /// Looks up a creator by the name users type (`win`, `tap`, `qemu`, ...).
    pub fn by_name(name: &str) -> Option<Creator> {
        let (application, version, host_os) = match name.trim() {
            "win" => (*b"win ", 0x000a_0000, HOST_WINDOWS),
            "tap" => (*b"tap\0", 0x0001_0003, 0),
            "qemu" => (*b"qemu", 0x0005_0003, HOST_WINDOWS),
            "qem2" => (*b"qem2", 0x0005_0003, HOST_WINDOWS),
            "vpc" => (*b"vpc ", 0x0005_0000, HOST_WINDOWS),
            "vs" => (*b"vs  ", 0x0001_0000, HOST_WINDOWS),
            "d2v" => (*b"d2v ", 0x0002_0000, HOST_WINDOWS),
            "CTXS" | "ctxs" => (*b"CTXS", 0x0001_0000, HOST_WINDOWS),
            "vbox" => (*b"vbox", 0x0001_0000, HOST_WINDOWS),
            "wa" => (*b"wa\0\0", 0x0007_0000, HOST_WINDOWS),
            _ => return None,
        };
        Some(Creator {
            application,
            version,
            host_os,
        })
    }

    /// Names accepted by [`Creator::by_name`].
    pub const NAMES: &'static [&'static str] = &[
        "win", "tap", "qemu", "qem2", "vpc", "vs", "d2v", "CTXS", "vbox", "wa",
    ];
}

/// Which size field qemu 10 reads for a footer: C×H×S for `vpc ` and `qemu`
/// unless the geometry is the maximum one (force_size), else current size.
pub fn qemu_uses_chs(footer: &Footer) -> bool {
    let chs_creator = matches!(&footer.creator_application, b"vpc " | b"qemu");
    chs_creator && footer.geometry != super::geometry::MAX_GEOMETRY
}

/// The virtual size qemu 10 reports for this footer.
pub fn qemu_size(footer: &Footer) -> u64 {
    if qemu_uses_chs(footer) {
        footer.geometry.size_bytes()
    } else {
        footer.current_size
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn golden() -> [u8; FOOTER_SIZE] {
        Footer::new(
            DiskType::Dynamic,
            1 << 30,
            Creator::by_name("win").unwrap(),
            0x2a00_0000,
            [7; 16],
        )
        .to_bytes()
    }

    #[test]
    fn golden_parses_and_round_trips() {
        let bytes = golden();
        let f = Footer::parse(&bytes, 0).unwrap();
        assert_eq!(f.to_bytes(), bytes);
        assert_eq!(f.checksum, f.computed_checksum());
        assert_eq!(f.disk_type(), Some(DiskType::Dynamic));
        assert_eq!(f.geometry.to_string(), "2080/16/63");
        assert_eq!(&bytes[0..8], b"conectix");
        assert_eq!(&bytes[16..24], &512u64.to_be_bytes());
    }

    #[test]
    fn wrong_cookie_is_named() {
        let mut bytes = golden();
        bytes[0] = b'C';
        let e = Footer::parse(&bytes, 0x200).unwrap_err();
        assert_eq!(e.field, "cookie");
        assert_eq!(e.offset, 0x200);
        assert!(e.to_string().contains("Conectix"), "{e}");
    }

    #[test]
    fn a_511_byte_footer_parses() {
        let bytes = golden();
        let f = Footer::parse(&bytes[..511], 0).unwrap();
        assert_eq!(f.current_size, 1 << 30);
    }

    #[test]
    fn short_footer_is_an_error() {
        let bytes = golden();
        assert_eq!(Footer::parse(&bytes[..100], 0).unwrap_err().field, "length");
    }

    #[test]
    fn checksum_mutation_is_seen() {
        let mut bytes = golden();
        bytes[48] ^= 1;
        let f = Footer::parse(&bytes, 0).unwrap();
        assert_ne!(f.checksum, f.computed_checksum());
    }

    #[test]
    fn fields_by_offset() {
        assert_eq!(field_at(27), Some((24..28, "timestamp")));
        assert_eq!(field_at(84), Some((84..85, "saved state")));
        assert_eq!(field_at(300).map(|f| f.1), Some("reserved"));
        assert_eq!(field_at(512), None);
        let covered: usize = FIELDS.iter().map(|(r, _)| r.len()).sum();
        assert_eq!(covered, FOOTER_SIZE);
    }

    #[test]
    fn qemu_rule() {
        let mut f = Footer::parse(&golden(), 0).unwrap();
        assert!(!qemu_uses_chs(&f));
        f.creator_application = *b"qemu";
        assert!(qemu_uses_chs(&f));
        assert_eq!(qemu_size(&f), f.geometry.size_bytes());
        f.geometry = crate::format::geometry::MAX_GEOMETRY;
        assert_eq!(qemu_size(&f), f.current_size);
    }
}
