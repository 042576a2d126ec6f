//! The rules, one small function per structure. Offsets in messages are
//! absolute file offsets of the field at fault.

use super::{Findings, Options};
use crate::disk::dynamic::MAX_BLOCK_SIZE;
use crate::format::bat::{bitmap_bit, table_size_bytes};
use crate::format::footer::{
    field, field_at, FEATURE_RESERVED, FEATURE_TEMPORARY, FIXED_DATA_OFFSET, FOOTER_SIZE_U64,
    FORMAT_VERSION,
};
use crate::format::header::{
    field as hfield, HEADER_DATA_OFFSET, HEADER_SIZE_U64, HEADER_VERSION, HYPERV_BLOCK_SIZES,
    LOCATORS_OFFSET, MIN_INTEROP_BLOCK_SIZE, QEMU_MAX_TABLE_ENTRIES,
};
use crate::format::image::{DynamicParts, TailFooter};
use crate::format::{escape_bytes, rfc3339, DynamicHeader, BAT_UNUSED};
use crate::format::{
    geometry::MAX_GEOMETRY, Batmap, DiskType, Footer, Geometry, Layout, PlatformCode,
    MAX_VIRTUAL_SIZE, SECTOR_SIZE, VHD_EPOCH_UNIX,
};

use crate::format::bat::ENTRY_SIZE;
use crate::format::batmap::field as bfield;
use crate::format::batmap::BATMAP_HEADER_SIZE_U64;

/// All rules for one file.
pub(crate) fn check_layout(f: &mut Findings<'_>, layout: &Layout, bytes: &[u8], options: &Options) {
    check_tail(f, layout);
    if let Ok(footer) = &layout.tail_footer {
        check_footer(f, footer, layout.footer_offset, options);
        check_sizes(f, footer, layout);
    } else if let Some(Ok(head)) = &layout.head_footer {
        check_footer(f, head, 0, options);
    }
    check_copies(f, layout);
    if let Some(dynamic) = &layout.dynamic {
        match dynamic {
            Ok(parts) => check_dynamic(f, layout, parts, bytes),
            Err(e) => f.error(
                if e.field == "cookie" {
                    "HEADER_COOKIE"
                } else {
                    "HEADER_MISSING"
                },
                e.offset,
                format!(
                    "dynamic header: {}: found {}, expected {}",
                    e.field, e.found, e.expected
                ),
            ),
        }
    }
}

fn check_tail(f: &mut Findings<'_>, layout: &Layout) {
    match layout.tail_kind {
        TailFooter::Standard => {}
        TailFooter::Short => f.warn(
            "FOOTER_511",
            layout.footer_offset,
            "the footer is 511 bytes (a file made before Virtual PC 2004); tolerated",
        ),
        TailFooter::Missing => f.error(
            "FOOTER_MISSING",
            layout.footer_offset,
            match &layout.tail_footer {
                Err(e) => format!(
                    "footer at the end of the file: cookie: found {}, expected {}{}",
                    e.found,
                    e.expected,
                    missing_footer_hint(layout)
                ),
                Ok(_) => "footer missing at the end of the file".to_string(),
            },
        ),
    }
    if layout.tail_kind == TailFooter::Standard && layout.file_size % SECTOR_SIZE != 0 {
        f.warn(
            "FILE_SIZE",
            layout.file_size,
            format!("file size {} is not a multiple of 512", layout.file_size),
        );
    }
}

/// The footer's own rules, one function per field (vhd-util's set).
/// What can be done about a missing footer, as `repair` decides it: the
/// head copy is appended (or written over the last sector) only when the
/// file still holds every structure its header points to.
fn missing_footer_hint(layout: &Layout) -> String {
    let head_valid =
        matches!(&layout.head_footer, Some(Ok(h)) if h.checksum == h.computed_checksum());
    let Some(end) = layout.structures_end() else {
        return String::new();
    };
    let size = layout.file_size;
    if size < end {
        return format!(
            "; the file is cut off: its blocks and tables end at {end:#x}, the file at {size:#x}, so {} bytes are missing and nothing can restore them",
            end - size
        );
    }
    if head_valid && (size == end || size >= end.saturating_add(FOOTER_SIZE_U64)) {
        return " (the copy at offset 0 is valid and the file holds every block: `vhdkit repair` writes that copy as the footer, if nothing else is damaged)".to_string();
    }
    String::new()
}

fn check_footer(f: &mut Findings<'_>, footer: &Footer, at: u64, options: &Options) {
    footer_checksum(f, footer, at);
    footer_features(f, footer, at);
    footer_version(f, footer, at);
    footer_timestamp(f, footer, at, options);
    footer_disk_type(f, footer, at);
    footer_unique_id(f, footer, at);
    footer_saved_state(f, footer, at);
    footer_reserved(f, footer, at);
    footer_current_size(f, footer, at);
}

fn footer_checksum(f: &mut Findings<'_>, footer: &Footer, at: u64) {
    let computed = footer.computed_checksum();
    if footer.checksum == computed {
        return;
    }
    if footer.hidden() != 0 && footer.checksum == footer.computed_checksum_without_hidden() {
        f.warn(
            "FOOTER_CHECKSUM_HIDDEN",
            at + field::CHECKSUM,
            format!(
                "footer checksum {:#010x} was computed with XenServer's hidden byte (offset {}) as zero; tolerated",
                footer.checksum,
                field::HIDDEN
            ),
        );
    } else {
        f.error(
            "FOOTER_CHECKSUM",
            at + field::CHECKSUM,
            format!(
                "footer checksum: stored {:#010x}, computed {computed:#010x} (qemu refuses to open the image)",
                footer.checksum
            ),
        );
    }
}

fn footer_features(f: &mut Findings<'_>, footer: &Footer, at: u64) {
    if footer.features & FEATURE_RESERVED == 0 {
        f.error(
            "FOOTER_FEATURES",
            at + field::FEATURES,
            format!(
                "footer features: found {:#010x}, expected the reserved bit 0x2 set",
                footer.features
            ),
        );
    }
    if footer.features & !(FEATURE_RESERVED | FEATURE_TEMPORARY) != 0 {
        f.warn(
            "FOOTER_FEATURES",
            at + field::FEATURES,
            format!(
                "footer features: found {:#010x}, expected only bits 0x1 and 0x2",
                footer.features
            ),
        );
    }
}

fn footer_version(f: &mut Findings<'_>, footer: &Footer, at: u64) {
    if footer.file_format_version != FORMAT_VERSION {
        f.error(
            "FOOTER_VERSION",
            at + field::FILE_FORMAT_VERSION,
            format!(
                "footer file format version: found {:#010x}, expected {FORMAT_VERSION:#010x}",
                footer.file_format_version
            ),
        );
    }
}

fn footer_timestamp(f: &mut Findings<'_>, footer: &Footer, at: u64, options: &Options) {
    let now = options.now_unix.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    });
    if VHD_EPOCH_UNIX + i64::from(footer.time_stamp) > now {
        f.warn(
            "FOOTER_TIMESTAMP",
            at + field::TIME_STAMP,
            format!(
                "footer timestamp {} ({}) is in the future",
                footer.time_stamp,
                rfc3339(footer.time_stamp)
            ),
        );
    }
}

/// The disk type, and the data offset it implies.
fn footer_disk_type(f: &mut Findings<'_>, footer: &Footer, at: u64) {
    let data_offset = footer.data_offset;
    let message = match footer.disk_type() {
        None => {
            f.error(
                "FOOTER_DISK_TYPE",
                at + field::DISK_TYPE,
                format!(
                    "footer disk type: found {}, expected 2 (fixed), 3 (dynamic) or 4 (differencing)",
                    footer.disk_type_code
                ),
            );
            return;
        }
        Some(DiskType::Fixed) if data_offset != FIXED_DATA_OFFSET => format!(
            "footer data offset of a fixed disk: found {data_offset:#x}, expected 0xffffffffffffffff"
        ),
        Some(DiskType::Fixed) => return,
        Some(_) if data_offset == FIXED_DATA_OFFSET => "footer data offset of a dynamic disk: found 0xffffffffffffffff, expected the dynamic header's offset (512)".to_string(),
        Some(_) if data_offset % SECTOR_SIZE != 0 || data_offset < FOOTER_SIZE_U64 => format!(
            "footer data offset: found {data_offset:#x}, expected a sector-aligned offset after the footer copy (512)"
        ),
        Some(_) => return,
    };
    f.error("FOOTER_DATA_OFFSET", at + field::DATA_OFFSET, message);
}

fn footer_unique_id(f: &mut Findings<'_>, footer: &Footer, at: u64) {
    if footer.unique_id == [0; 16] {
        f.error(
            "FOOTER_UNIQUE_ID",
            at + field::UNIQUE_ID,
            "footer unique id is all zero",
        );
    }
}

fn footer_saved_state(f: &mut Findings<'_>, footer: &Footer, at: u64) {
    if footer.saved_state > 1 {
        f.error(
            "FOOTER_SAVED_STATE",
            at + field::SAVED_STATE,
            format!(
                "footer saved state: found {}, expected 0 or 1",
                footer.saved_state
            ),
        );
    } else if footer.saved_state == 1 {
        f.warn(
            "FOOTER_SAVED_STATE",
            at + field::SAVED_STATE,
            "footer saved state is set: the disk belongs to a saved virtual machine",
        );
    }
}

/// Reserved bytes: zero, but for XenServer's hidden flag (0 or 1) in the first.
fn footer_reserved(f: &mut Findings<'_>, footer: &Footer, at: u64) {
    if let Some(i) = footer.reserved.iter().skip(1).position(|&b| b != 0) {
        let offset = field::HIDDEN + 1 + i as u64;
        f.warn(
            "FOOTER_RESERVED",
            at + offset,
            format!(
                "footer reserved bytes: found {:#04x} at footer offset {offset}, expected zero",
                footer.reserved[i + 1]
            ),
        );
    }
    if footer.hidden() > 1 {
        f.warn(
            "FOOTER_HIDDEN",
            at + field::HIDDEN,
            format!(
                "XenServer hidden flag: found {}, expected 0 or 1",
                footer.hidden()
            ),
        );
    }
}

fn footer_current_size(f: &mut Findings<'_>, footer: &Footer, at: u64) {
    if footer.current_size % SECTOR_SIZE != 0 {
        f.error(
            "FOOTER_CURRENT_SIZE",
            at + field::CURRENT_SIZE,
            format!(
                "footer current size {}: expected a multiple of 512",
                footer.current_size
            ),
        );
    }
    if footer.current_size > MAX_VIRTUAL_SIZE {
        f.error(
            "FOOTER_CURRENT_SIZE",
            at + field::CURRENT_SIZE,
            format!(
                "footer current size {}: expected at most {MAX_VIRTUAL_SIZE} (2040 GiB, the VHD limit)",
                footer.current_size
            ),
        );
    }
}

/// The three sizes and the geometry.
fn check_sizes(f: &mut Findings<'_>, footer: &Footer, layout: &Layout) {
    let at = layout.footer_offset;
    let expected = Geometry::from_size(footer.current_size);
    let chs = footer.geometry.size_bytes();
    if footer.geometry != expected && footer.geometry != MAX_GEOMETRY {
        f.warn(
            "GEOMETRY",
            at + field::DISK_GEOMETRY,
            format!(
                "footer disk geometry: found {} ({chs} bytes), expected {expected} for current size {}",
                footer.geometry, footer.current_size
            ),
        );
    }
    if chs > footer.current_size && footer.geometry != MAX_GEOMETRY {
        f.warn(
            "GEOMETRY_TOO_LARGE",
            at + field::DISK_GEOMETRY,
            format!(
                "footer disk geometry {} covers {chs} bytes, more than current size {}",
                footer.geometry, footer.current_size
            ),
        );
    }
    if footer.original_size != footer.current_size {
        f.warn(
            "SIZE_DISAGREE",
            at + field::ORIGINAL_SIZE,
            format!(
                "original size {} differs from current size {}: Glance records the original, Hyper-V and qemu the current",
                footer.original_size, footer.current_size
            ),
        );
    }
    let qemu = crate::format::footer::qemu_size(footer);
    if qemu != footer.current_size {
        f.warn(
            "SIZE_DISAGREE",
            at + field::DISK_GEOMETRY,
            format!(
                "qemu reads this creator ({}) by geometry: {qemu} bytes, not current size {}; `vhdkit convert IN OUT --creator win` keeps the current size, which qemu reads for that creator, so both agree",
                escape_bytes(&footer.creator_application),
                footer.current_size
            ),
        );
    }
    if footer.disk_type() == Some(DiskType::Fixed) && footer.current_size != layout.footer_offset {
        f.error(
            "FIXED_SIZE",
            at + field::CURRENT_SIZE,
            format!(
                "fixed disk: current size {}, but {} bytes of data precede the footer",
                footer.current_size, layout.footer_offset
            ),
        );
    }
}

/// The footer copy at offset 0 against the one at the end.
fn check_copies(f: &mut Findings<'_>, layout: &Layout) {
    let Some(head) = &layout.head_footer else {
        return;
    };
    match (head, &layout.tail_footer) {
        (Err(e), Ok(_)) => f.error(
            "FOOTER_COPY",
            0,
            format!(
                "footer copy at offset 0: {}: found {}, expected {} (`vhdkit repair` can restore it from the end)",
                e.field, e.found, e.expected
            ),
        ),
        (Ok(h), Ok(t)) if h != t => {
            let hb = h.to_bytes();
            let tb = t.to_bytes();
            let first = hb.iter().zip(tb.iter()).position(|(a, b)| a != b).unwrap_or(0);
            if h.checksum != h.computed_checksum() && t.checksum == t.computed_checksum() {
                f.error(
                    "FOOTER_COPY",
                    field::CHECKSUM,
                    format!(
                        "footer copy at offset 0: checksum stored {:#010x}, computed {:#010x} (`vhdkit repair` can restore it from the end)",
                        h.checksum,
                        h.computed_checksum()
                    ),
                );
            }
            // Name the field, with both values (whole, when it is short).
            let (field, range) = match field_at(first) {
                Some((r, name)) if r.len() <= 16 => (name, r),
                Some((_, name)) => (name, first..first + 1),
                None => ("byte", first..first + 1),
            };
            let hex = |b: &[u8]| -> String {
                b.get(range.clone())
                    .unwrap_or_default()
                    .iter()
                    .fold("0x".to_string(), |s, x| s + &format!("{x:02x}"))
            };
            f.error(
                "FOOTER_COPIES_DIFFER",
                first as u64,
                format!(
                    "the footer copy at offset 0 differs from the footer at {:#x}, first at byte {first} ({field}): {} at offset 0 vs {} at the end",
                    layout.footer_offset,
                    hex(&hb),
                    hex(&tb)
                ),
            );
        }
        (Ok(h), Err(_)) if h.checksum != h.computed_checksum() => f.error(
            "FOOTER_COPY",
            field::CHECKSUM,
            format!(
                "footer copy at offset 0: checksum stored {:#010x}, computed {:#010x}",
                h.checksum,
                h.computed_checksum()
            ),
        ),
        _ => {}
    }
}

/// Where the structures of a dynamic disk must end: at the footer, or, when
/// the footer is gone (a file cut right after its last block, which `repair`
/// mends by appending the footer), at the end of the file.
struct End {
    offset: u64,
    what: &'static str,
}

impl End {
    fn of(layout: &Layout) -> End {
        match layout.tail_kind {
            TailFooter::Missing => End {
                offset: layout.file_size,
                what: "the end of the file",
            },
            _ => End {
                offset: layout.footer_offset,
                what: "the footer",
            },
        }
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {:#x}", self.what, self.offset)
    }
}

/// A region of the file that holds metadata, for overlap tests.
struct Region {
    start: u64,
    end: u64,
    what: String,
}

fn check_dynamic(f: &mut Findings<'_>, layout: &Layout, parts: &DynamicParts, bytes: &[u8]) {
    let h = &parts.header;
    let at = parts.header_offset;
    let end = End::of(layout);
    header_checksum(f, h, at);
    header_version(f, h, at);
    header_data_offset(f, h, at);
    let block_size_ok = header_block_size(f, h, at);
    header_table_offset(f, h, at, &end);
    if block_size_ok {
        header_table_entries(f, &layout.footer, h, at);
        qemu_open_rules(f, layout, parts);
    }
    header_reserved(f, h, at);
    let differencing = layout.footer.disk_type() == Some(DiskType::Differencing);
    if differencing && h.parent_unique_id == [0; 16] {
        f.error(
            "HEADER_PARENT_ID",
            at + hfield::PARENT_UNIQUE_ID,
            "differencing disk: parent unique id is all zero",
        );
    }
    let bat_len = table_size_bytes(u64::from(h.max_table_entries));

    // Metadata regions: footer copy, header, BAT, locators, batmap.
    let mut regions = vec![
        Region {
            start: 0,
            end: FOOTER_SIZE_U64,
            what: "footer copy".into(),
        },
        Region {
            start: at,
            end: at + HEADER_SIZE_U64,
            what: "dynamic header".into(),
        },
        Region {
            start: h.table_offset,
            end: h.table_offset.saturating_add(bat_len),
            what: "BAT".into(),
        },
    ];
    check_locators(f, parts, differencing, &end, &mut regions);
    if differencing {
        check_locator_paths(f, parts, bytes);
    }
    if let Some(bm) = &parts.batmap {
        check_batmap(f, parts, bm, &end, &mut regions);
    }
    if let Ok(bat) = &parts.bat {
        if block_size_ok {
            let blocks = Blocks {
                layout,
                parts,
                bat,
                bytes,
                differencing,
            };
            check_blocks(f, &blocks, &regions);
        }
    }
}

fn header_checksum(f: &mut Findings<'_>, h: &DynamicHeader, at: u64) {
    let computed = h.computed_checksum();
    if h.checksum != computed {
        f.error(
            "HEADER_CHECKSUM",
            at + hfield::CHECKSUM,
            format!(
                "dynamic header checksum: stored {:#010x}, computed {computed:#010x}",
                h.checksum
            ),
        );
    }
}

fn header_version(f: &mut Findings<'_>, h: &DynamicHeader, at: u64) {
    if h.header_version != HEADER_VERSION {
        f.error(
            "HEADER_VERSION",
            at + hfield::HEADER_VERSION,
            format!(
                "dynamic header version: found {:#010x}, expected {HEADER_VERSION:#010x}",
                h.header_version
            ),
        );
    }
}

fn header_data_offset(f: &mut Findings<'_>, h: &DynamicHeader, at: u64) {
    if h.data_offset != HEADER_DATA_OFFSET {
        f.error(
            "HEADER_DATA_OFFSET",
            at + hfield::DATA_OFFSET,
            format!(
                "dynamic header data offset: found {:#x}, expected 0xffffffffffffffff",
                h.data_offset
            ),
        );
    }
}

/// The block size: readable at all (an error otherwise, and the rules that
/// need blocks are skipped), read alike by qemu (error) and by Hyper-V
/// (warning). Returns whether blocks can be read.
fn header_block_size(f: &mut Findings<'_>, h: &DynamicHeader, at: u64) -> bool {
    let bs = h.block_size;
    let offset = at + hfield::BLOCK_SIZE;
    if !bs.is_power_of_two() || !(SECTOR_SIZE..=u64::from(MAX_BLOCK_SIZE)).contains(&u64::from(bs))
    {
        f.error(
            "HEADER_BLOCK_SIZE",
            offset,
            format!("dynamic header block size: found {bs}, expected a power of two from 512 to {MAX_BLOCK_SIZE} (qemu refuses to open the image)"),
        );
        return false;
    }
    if bs < MIN_INTEROP_BLOCK_SIZE {
        f.error(
            "BLOCK_SIZE_QEMU",
            offset,
            format!("dynamic header block size: found {bs}, expected at least {MIN_INTEROP_BLOCK_SIZE}: below 4 KiB qemu computes a zero-byte sector bitmap and reads every block from the wrong offset (different data than the specification says)"),
        );
    } else if !HYPERV_BLOCK_SIZES.contains(&bs) {
        f.warn(
            "BLOCK_SIZE_HYPERV",
            offset,
            format!("dynamic header block size: found {bs}; Hyper-V reads VHDs with 512 KiB or 2 MiB blocks only"),
        );
    }
    true
}

fn header_table_offset(f: &mut Findings<'_>, h: &DynamicHeader, at: u64, end: &End) {
    if h.table_offset == 0 || h.table_offset % SECTOR_SIZE != 0 {
        f.error(
            "HEADER_TABLE_OFFSET",
            at + hfield::TABLE_OFFSET,
            format!(
                "dynamic header table offset: found {:#x}, expected a non-zero multiple of 512",
                h.table_offset
            ),
        );
    }
    let bat_end = h
        .table_offset
        .saturating_add(table_size_bytes(u64::from(h.max_table_entries)));
    if bat_end > end.offset {
        f.error(
            "BAT_OUTSIDE",
            at + hfield::TABLE_OFFSET,
            format!(
                "BAT at {:#x} with {} entries ends at {bat_end:#x}, past {end}",
                h.table_offset, h.max_table_entries,
            ),
        );
    }
}

fn header_table_entries(f: &mut Findings<'_>, footer: &Footer, h: &DynamicHeader, at: u64) {
    let bs = u64::from(h.block_size);
    let needed = footer.current_size.div_ceil(bs);
    if u64::from(h.max_table_entries) < needed {
        f.error(
            "HEADER_TABLE_ENTRIES",
            at + hfield::MAX_TABLE_ENTRIES,
            format!(
                "dynamic header max table entries: found {}, expected at least {needed} for current size {} and block size {bs}",
                h.max_table_entries, footer.current_size
            ),
        );
    }
}

fn header_reserved(f: &mut Findings<'_>, h: &DynamicHeader, at: u64) {
    if h.reserved1 != 0 || h.reserved2.iter().any(|&b| b != 0) {
        f.warn(
            "HEADER_RESERVED",
            at + hfield::RESERVED1,
            "dynamic header reserved bytes are not zero",
        );
    }
}

/// What qemu's vpc driver refuses when it opens a dynamic image, beyond the
/// rules above (footer checksum, block size) and below (a block past the end
/// of the file, `BAT_ENTRY_OUTSIDE`): the size qemu reads (C×H×S for
/// `vpc `/`qemu` creators) against the table, and the table's length.
fn qemu_open_rules(f: &mut Findings<'_>, layout: &Layout, parts: &DynamicParts) {
    let h = &parts.header;
    let at = parts.header_offset;
    let bs = u64::from(h.block_size);
    let qemu = crate::format::footer::qemu_size(&layout.footer);
    if qemu / bs > u64::from(u32::MAX) {
        f.error(
            "QEMU_TOO_MANY_BLOCKS",
            at + hfield::BLOCK_SIZE,
            format!("qemu reads a size of {qemu} bytes: more than 2^32 blocks of {bs} bytes; qemu refuses to open the image"),
        );
    }
    let covered = u64::from(h.max_table_entries) * bs;
    let current_ok = covered >= layout.footer.current_size;
    if covered < qemu && current_ok {
        f.error(
            "QEMU_PAGE_TABLE_TOO_SMALL",
            at + hfield::MAX_TABLE_ENTRIES,
            format!(
                "max table entries {} × block size {bs} covers {covered} bytes, but qemu reads this creator ({}) by its geometry {}: {qemu} bytes; qemu refuses to open it (\"Page table too small\")",
                h.max_table_entries,
                escape_bytes(&layout.footer.creator_application),
                layout.footer.geometry
            ),
        );
    }
    if h.max_table_entries > QEMU_MAX_TABLE_ENTRIES {
        f.error(
            "QEMU_TABLE_ENTRIES",
            at + hfield::MAX_TABLE_ENTRIES,
            format!(
                "max table entries {}: qemu refuses more than {QEMU_MAX_TABLE_ENTRIES}",
                h.max_table_entries
            ),
        );
    }
}

fn check_locators(
    f: &mut Findings<'_>,
    parts: &DynamicParts,
    differencing: bool,
    end: &End,
    regions: &mut Vec<Region>,
) {
    let h = &parts.header;
    let mut codes_seen = Vec::new();
    let mut usable = 0;
    for (i, loc) in h.parent_locators.iter().enumerate() {
        let at = parts.header_offset + hfield::locator(i);
        let code = loc.code();
        if code == PlatformCode::None {
            continue;
        }
        if !differencing {
            f.warn(
                "LOCATOR_ON_DYNAMIC",
                at,
                format!(
                    "locator {i} ({}) on a disk that is not differencing",
                    code.name()
                ),
            );
        }
        if let PlatformCode::Unknown(c) = code {
            f.warn(
                "LOCATOR_CODE",
                at,
                format!(
                    "locator {i} platform code: found {} ({c:#010x}), expected one of W2ru, W2ku, Wi2r, Wi2k, Mac , MacX",
                    code.name()
                ),
            );
            continue;
        }
        if codes_seen.contains(&loc.platform_code) {
            f.error(
                "LOCATOR_DUPLICATE",
                at,
                format!("locator {i}: platform code {} appears twice", code.name()),
            );
        }
        codes_seen.push(loc.platform_code);
        let space = loc.data_space_bytes();
        let length = u64::from(loc.platform_data_length);
        let start = loc.platform_data_offset;
        if length > space {
            f.error(
                "LOCATOR_LENGTH",
                at + hfield::LOCATOR_DATA_LENGTH,
                format!(
                    "locator {i} ({}): data length {length} exceeds its data space {space}",
                    code.name()
                ),
            );
        }
        if start % SECTOR_SIZE != 0 || start < FOOTER_SIZE_U64 {
            f.error(
                "LOCATOR_OFFSET",
                at + hfield::LOCATOR_DATA_OFFSET,
                format!("locator {i} ({}) data offset: found {start:#x}, expected a sector-aligned offset after the footer copy", code.name()),
            );
        }
        if start.saturating_add(length) > end.offset {
            f.error(
                "LOCATOR_OUTSIDE",
                at + hfield::LOCATOR_DATA_OFFSET,
                format!(
                    "locator {i} ({}) data at {start:#x} + {length} bytes lies past {end}",
                    code.name()
                ),
            );
            continue;
        }
        if matches!(
            code,
            PlatformCode::W2ru
                | PlatformCode::W2ku
                | PlatformCode::MacX
                | PlatformCode::Wi2r
                | PlatformCode::Wi2k
        ) && length > 0
        {
            usable += 1;
        }
        // The whole reserved space belongs to the locator, not just its data.
        regions.push(Region {
            start,
            end: start.saturating_add(length.max(space)),
            what: format!("locator {i} data space"),
        });
    }
    if differencing && usable == 0 {
        f.error(
            "NO_PARENT_LOCATOR",
            parts.header_offset + LOCATORS_OFFSET as u64,
            format!(
                "differencing disk without any usable parent locator (parent name {:?})",
                h.parent_name()
            ),
        );
    }
}

/// Locators naming a parent outside the child's folder: followed only with
/// the user's word (`--parent`, `--parent-dir`); Glance refuses such images.
fn check_locator_paths(f: &mut Findings<'_>, parts: &DynamicParts, bytes: &[u8]) {
    for (i, loc) in parts.header.parent_locators.iter().enumerate() {
        let Some(stored) = crate::disk::parent::locator_text(bytes, loc) else {
            continue;
        };
        if stored.is_empty() || !crate::disk::parent::is_outside(&stored) {
            continue;
        }
        f.warn(
            "PARENT_OUTSIDE",
            parts.header_offset + hfield::locator(i),
            format!(
                "locator {i} ({}) names a parent outside the child's folder: {}; it is not followed (only its file name is looked up beside the child) unless --parent or --parent-dir allows it",
                loc.code().name(),
                crate::format::escape_text(&stored)
            ),
        );
    }
}

fn check_batmap(
    f: &mut Findings<'_>,
    parts: &DynamicParts,
    bm: &crate::format::image::BatmapParts,
    end: &End,
    regions: &mut Vec<Region>,
) {
    let at = bm.header_offset;
    regions.push(Region {
        start: at,
        end: at + BATMAP_HEADER_SIZE_U64,
        what: "batmap header".into(),
    });
    let entries = u64::from(parts.header.max_table_entries);
    let needed_sectors = entries.div_ceil(8).div_ceil(SECTOR_SIZE);
    if u64::from(bm.header.batmap_size_sectors) < needed_sectors {
        f.error(
            "BATMAP_SIZE",
            at + bfield::BATMAP_SIZE,
            format!(
                "batmap size: found {} sectors, expected at least {needed_sectors} for {entries} blocks",
                bm.header.batmap_size_sectors
            ),
        );
    }
    let map = match &bm.map {
        Err(e) => {
            f.error(
                "BATMAP_OUTSIDE",
                e.offset,
                format!(
                    "batmap: {}: found {}, expected {}",
                    e.field, e.found, e.expected
                ),
            );
            return;
        }
        Ok(m) => m,
    };
    let start = bm.header.batmap_offset;
    let map_end = start + map.len() as u64;
    if map_end > end.offset {
        f.error(
            "BATMAP_OUTSIDE",
            at + bfield::BATMAP_OFFSET,
            format!("batmap at {start:#x} ends at {map_end:#x}, past {end}"),
        );
    }
    regions.push(Region {
        start,
        end: map_end,
        what: "batmap".into(),
    });
    let computed = Batmap::bitmap_checksum(map);
    if computed != bm.header.checksum {
        f.error(
            "BATMAP_CHECKSUM",
            at + bfield::CHECKSUM,
            format!(
                "batmap checksum: stored {:#010x}, computed {computed:#010x}",
                bm.header.checksum
            ),
        );
    }
    if let Ok(bat) = &parts.bat {
        for (i, &e) in bat.entries.iter().enumerate() {
            if bitmap_bit(map, i) && e == BAT_UNUSED {
                f.error(
                    "BATMAP_INCONSISTENT",
                    start + (i / 8) as u64,
                    format!("batmap marks block {i} fully written, but the BAT says it is not allocated"),
                );
                break;
            }
        }
    }
}

/// What the block rules read.
struct Blocks<'a> {
    layout: &'a Layout,
    parts: &'a DynamicParts,
    bat: &'a crate::format::Bat,
    bytes: &'a [u8],
    differencing: bool,
}

/// The rules over the BAT's blocks: each inside the file and clear of the
/// metadata, no two overlapping, and no data hidden by a bitmap.
fn check_blocks(f: &mut Findings<'_>, b: &Blocks<'_>, regions: &[Region]) {
    let span = b.span();
    let placed = placed_blocks(f, b, regions);
    let separate = separate_blocks(f, b.parts.header.table_offset, span, placed);
    hidden_data(f, b, &separate);
}

impl Blocks<'_> {
    /// Bytes one block takes in the file: its bitmap and its data.
    fn span(&self) -> u64 {
        self.parts.header.bitmap_size_bytes() + u64::from(self.parts.header.block_size)
    }
}

/// Checks each allocated BAT entry on its own (beyond the disk's size,
/// past the end of the file, over the metadata) and returns the blocks that
/// pass, as (byte offset, block index).
fn placed_blocks(f: &mut Findings<'_>, b: &Blocks<'_>, regions: &[Region]) -> Vec<(u64, usize)> {
    let h = &b.parts.header;
    let span = b.span();
    let end = End::of(b.layout);
    let needed = b
        .layout
        .footer
        .current_size
        .div_ceil(u64::from(h.block_size));
    let mut blocks: Vec<(u64, usize)> = Vec::with_capacity(b.bat.allocated_count());
    let mut reported_outside = 0;
    for (i, &sector) in b.bat.entries.iter().enumerate() {
        if sector == BAT_UNUSED {
            continue;
        }
        let entry_at = h.table_offset + ENTRY_SIZE * i as u64;
        let start = u64::from(sector) * SECTOR_SIZE;
        if i as u64 >= needed {
            f.warn(
                "BAT_BEYOND_SIZE",
                entry_at,
                format!("BAT entry {i} is allocated, but the disk has only {needed} blocks"),
            );
        }
        if start.saturating_add(span) > end.offset {
            if reported_outside < 8 {
                f.error(
                    "BAT_ENTRY_OUTSIDE",
                    entry_at,
                    format!(
                        "BAT entry {i}: block at sector {sector:#x} (byte {start:#x}) ends at {:#x}, past {end} (truncated file?){}",
                        start.saturating_add(span),
                        if start.saturating_add(span) > b.layout.file_size {
                            "; qemu refuses to open an image whose last block ends past the end of the file"
                        } else {
                            ""
                        }
                    ),
                );
            }
            reported_outside += 1;
            continue;
        }
        if let Some(r) = regions
            .iter()
            .find(|r| start < r.end && r.start < start + span)
        {
            f.error(
                "BAT_OVERLAP_METADATA",
                entry_at,
                format!(
                    "BAT entry {i}: block at {start:#x}..{:#x} overlaps the {} at {:#x}..{:#x}",
                    start + span,
                    r.what,
                    r.start,
                    r.end
                ),
            );
            continue;
        }
        blocks.push((start, i));
    }
    if reported_outside > 8 {
        f.error(
            "BAT_ENTRY_OUTSIDE",
            h.table_offset,
            format!("{} more BAT entries point past {end}", reported_outside - 8),
        );
    }
    blocks
}

/// Overlaps between blocks: sorted by position, each compared with its
/// neighbour (blocks are all `span` bytes, so a block that overlaps any
/// earlier one overlaps its predecessor). Returns the blocks clear of the
/// ones before them, so that no byte of the file is scanned twice however
/// many BAT entries point at it.
fn separate_blocks(
    f: &mut Findings<'_>,
    table_offset: u64,
    span: u64,
    mut blocks: Vec<(u64, usize)>,
) -> Vec<(u64, usize)> {
    blocks.sort_unstable();
    let mut overlaps = 0;
    let mut separate: Vec<(u64, usize)> = Vec::with_capacity(blocks.len());
    for (k, &(b, bi)) in blocks.iter().enumerate() {
        let Some(&(a, ai)) = k.checked_sub(1).and_then(|p| blocks.get(p)) else {
            separate.push((b, bi));
            continue;
        };
        if b < a + span {
            if overlaps < 8 {
                f.error(
                    "BAT_OVERLAP",
                    table_offset + ENTRY_SIZE * bi as u64,
                    format!(
                        "BAT entries {ai} and {bi} overlap: blocks at {a:#x} and {b:#x}, each {span} bytes"
                    ),
                );
            }
            overlaps += 1;
        } else {
            separate.push((b, bi));
        }
    }
    if overlaps > 8 {
        f.error(
            "BAT_OVERLAP",
            table_offset,
            format!("{} more pairs of BAT entries overlap", overlaps - 8),
        );
    }
    separate
}

/// Data hidden by the bitmap: sectors marked absent whose bytes are not
/// zero. For a differencing disk the parent's data shows there; qemu (which
/// ignores bitmaps) would show these bytes instead.
fn hidden_data(f: &mut Findings<'_>, b: &Blocks<'_>, separate: &[(u64, usize)]) {
    let bytes = b.bytes;
    let bs = u64::from(b.parts.header.block_size);
    let bitmap_len = b.parts.header.bitmap_size_bytes();
    let span = b.span();
    let mut hidden = 0u64;
    let mut first_hidden = None;
    for &(start, i) in separate {
        let Some(bitmap) = bytes.get(start as usize..(start + bitmap_len) as usize) else {
            continue;
        };
        if bitmap.iter().all(|&b| b == 0xff) {
            (f.release)(start, span);
            continue;
        }
        let sectors = usize::try_from(bs / SECTOR_SIZE).unwrap_or(0);
        for s in 0..sectors {
            if bitmap_bit(bitmap, s) {
                continue;
            }
            let off = start + bitmap_len + s as u64 * SECTOR_SIZE;
            if let Some(data) = bytes.get(off as usize..(off + SECTOR_SIZE) as usize) {
                if data.iter().any(|&b| b != 0) {
                    hidden += 1;
                    first_hidden.get_or_insert((off, i, s));
                }
            }
        }
        (f.release)(start, span);
    }
    if let Some((off, i, s)) = first_hidden {
        f.warn(
            "BITMAP_HIDDEN_DATA",
            off,
            format!(
                "{hidden} sector(s) hold data while their bitmap bit says {} (first: block {i}, sector {s}); qemu, which ignores bitmaps, reads these bytes instead",
                if b.differencing { "\"read from the parent\"" } else { "\"zero\"" }
            ),
        );
    }
}
