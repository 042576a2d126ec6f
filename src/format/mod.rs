//! Pure VHD structures: bytes in, typed structures out, and back.
//!
//! Owns the on-disk layouts of the Microsoft VHD 1.0 specification (footer,
//! dynamic header, parent locators, BAT, sector bitmaps, XenServer's batmap)
//! and the CHS geometry algorithm. Nothing here touches a file: callers read a
//! region once and hand the slice over. Parsing checks only what is needed to
//! make sense of the bytes (cookies, lengths); the rules a checker applies live
//! in `check/`, so that a damaged structure can still be shown. `foreign`
//! recognises the other image formats (qcow2, VMDK, VHDX, ...) by their magic.

pub mod bat;
pub mod batmap;
pub mod footer;
pub mod foreign;
pub mod geometry;
pub mod header;
pub mod image;
pub mod path_json;
pub mod time;

pub use bat::{Bat, BAT_UNUSED};
pub use batmap::{Batmap, BATMAP_COOKIE};
pub use footer::{DiskType, Footer, FOOTER_COOKIE, FOOTER_SIZE};
pub use geometry::Geometry;
pub use header::{DynamicHeader, ParentLocator, PlatformCode, HEADER_COOKIE, HEADER_SIZE};
pub use image::{Layout, TailFooter};
pub use time::rfc3339;

/// Bytes in a VHD sector.
pub const SECTOR_SIZE: u64 = 512;

/// Seconds between the Unix epoch and the VHD epoch (2000-01-01 00:00:00 UTC).
pub const VHD_EPOCH_UNIX: i64 = 946_684_800;

/// Largest virtual size qemu (and 32-bit sector BAT entries) allow: 0xFF000000 sectors.
pub const MAX_VIRTUAL_SIZE: u64 = 0xFF00_0000 * SECTOR_SIZE;

/// A structure that could not be parsed: which one, which field, where, and the values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{structure} at {offset:#x}: {field}: found {found}, expected {expected}")]
pub struct FormatError {
    /// The structure being parsed, e.g. "footer".
    pub structure: &'static str,
    /// The field at fault, named as in the specification.
    pub field: &'static str,
    /// Absolute byte offset of the field in the file.
    pub offset: u64,
    /// What the bytes say.
    pub found: String,
    /// What the field should hold.
    pub expected: String,
}

/// The VHD checksum: one's complement of the byte sum, with the checksum
/// field itself (`skip`, a byte range) counted as zero.
pub fn checksum(bytes: &[u8], skip: std::ops::Range<usize>) -> u32 {
    let sum = bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| !skip.contains(i))
        .fold(0u32, |acc, (_, &b)| acc.wrapping_add(u32::from(b)));
    !sum
}

/// Rounds `value` up to a multiple of `to` (a non-zero value), or `None` on overflow.
pub fn round_up(value: u64, to: u64) -> Option<u64> {
    value.checked_next_multiple_of(to)
}

/// Renders four bytes as text when they are printable ASCII, else as hex.
pub fn fourcc(bytes: [u8; 4]) -> String {
    if bytes
        .iter()
        .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == 0)
    {
        bytes
            .iter()
            .map(|&b| {
                if b == 0 {
                    "\\0".to_string()
                } else {
                    char::from(b).to_string()
                }
            })
            .collect()
    } else {
        format!("0x{:08x}", u32::from_be_bytes(bytes))
    }
}

/// A creator application (or other four-character code) as people name it:
/// trailing NULs and spaces are padding and are trimmed (`tap\0` -> `tap`,
/// `vpc ` -> `vpc`, as `--creator` spells them); a code that is not text is
/// shown as [`fourcc`] shows it (hex). [`fourcc_hex`] keeps the exact bytes.
pub fn trimmed_fourcc(bytes: [u8; 4]) -> String {
    let len = bytes
        .iter()
        .rposition(|&b| b != 0 && b != b' ')
        .map_or(0, |i| i + 1);
    let head = bytes.get(..len).unwrap_or(&[]);
    if head.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        head.iter().map(|&b| char::from(b)).collect()
    } else {
        fourcc(bytes)
    }
}

/// The four bytes as eight lowercase hex digits (`tap\0` -> `74617000`).
pub fn fourcc_hex(bytes: [u8; 4]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `text` with control characters and U+FFFD (bytes that were not valid
/// UTF-8 or UTF-16) shown as escapes, quoted: safe to print in a message.
pub fn escape_text(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        if c == char::REPLACEMENT_CHARACTER {
            out.push_str("\\u{fffd}");
        } else {
            out.extend(c.escape_debug());
        }
    }
    out.push('"');
    out
}

/// Raw bytes as a quoted string: printable ASCII as is, anything else
/// escaped as `\xNN` (never a U+FFFD replacement character).
pub fn escape_bytes(bytes: &[u8]) -> String {
    let inner: String = bytes
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    format!("\"{inner}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_skips_its_own_field() {
        let mut bytes = [1u8; 8];
        let a = checksum(&bytes, 4..6);
        bytes[4] = 0xff;
        bytes[5] = 0x12;
        assert_eq!(a, checksum(&bytes, 4..6));
        assert_eq!(a, !6u32);
    }

    #[test]
    fn escapes_never_print_replacement_characters() {
        assert_eq!(escape_bytes(b"\xffDG\0ab"), "\"\\xffDG\\x00ab\"");
        assert_eq!(escape_text("a\u{fffd}\n"), "\"a\\u{fffd}\\n\"");
    }

    #[test]
    fn trimmed_fourcc_drops_padding_and_hex_keeps_it() {
        assert_eq!(trimmed_fourcc(*b"tap\0"), "tap");
        assert_eq!(trimmed_fourcc(*b"vpc "), "vpc");
        assert_eq!(trimmed_fourcc(*b"wa\0\0"), "wa");
        assert_eq!(trimmed_fourcc(*b"CTXS"), "CTXS");
        assert_eq!(trimmed_fourcc([0; 4]), "");
        // A NUL inside the name is not padding: shown escaped, as fourcc does.
        assert_eq!(trimmed_fourcc(*b"a\0b "), "a\\0b ");
        assert_eq!(fourcc_hex(*b"tap\0"), "74617000");
    }

    #[test]
    fn fourcc_shows_text_or_hex() {
        assert_eq!(fourcc(*b"vpc "), "vpc ");
        assert_eq!(fourcc(*b"tap\0"), "tap\\0");
        assert_eq!(fourcc([0xff, 1, 2, 3]), "0xff010203");
    }
}
