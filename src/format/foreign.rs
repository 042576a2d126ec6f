//! Image formats that are not VHD, recognised from their first bytes.
//!
//! Users hand vhdkit qcow2, VMDK or VHDX files by mistake; read as raw
//! disks they would be converted byte for byte into a VHD whose disk *is*
//! the foreign file. [`detect`] names the format of a file from a bounded
//! prefix of it (at most [`PREFIX_LEN`] bytes are looked at);
//! [`detect_content`] says whether a virtual disk's first sectors hold an
//! image header (the disk was converted without being decoded). Pure: the
//! caller reads the bytes.

use serde::Serialize;

/// Bytes of a file's start that detection needs: ISO 9660's first volume
/// descriptor sits at 32 KiB.
pub const PREFIX_LEN: usize = 64 * 1024;

/// The VHD footer cookie (a dynamic disk's footer copy at offset 0).
const VHD_FOOTER_COOKIE: &[u8] = b"conectix";
/// The VHD dynamic header cookie.
const VHD_HEADER_COOKIE: &[u8] = b"cxsparse";
/// Where ISO 9660's standard identifier `CD001` starts: sector 16 of 2048
/// bytes, after the descriptor type byte.
const ISO_ID_OFFSET: usize = 16 * 2048 + 1;
/// VirtualBox's VDI signature (little-endian 0xBEDA107F) and its offset.
const VDI_SIGNATURE: [u8; 4] = [0x7f, 0x10, 0xda, 0xbe];
const VDI_SIGNATURE_OFFSET: usize = 0x40;
/// VMDK sparse extent header flag: grains are compressed (streamOptimized).
const VMDK_FLAG_COMPRESSED: u32 = 1 << 16;

/// A format that is neither a VHD nor a raw disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// qemu's qcow family (`QFI\xfb`): version 1 is qcow, 2 and 3 are qcow2.
    Qcow { version: u32 },
    /// qemu's QED (`QED\0`).
    Qed,
    /// A VMDK hosted sparse extent (`KDMV`): monolithicSparse, or
    /// streamOptimized when its grains are compressed.
    VmdkSparse { stream_optimized: bool },
    /// An ESX VMDK sparse extent (`COWD`).
    VmdkCowd,
    /// A VMDK text descriptor (`# Disk DescriptorFile`): the data lives in
    /// other files it names.
    VmdkDescriptor,
    /// Microsoft VHDX (`vhdxfile`).
    Vhdx,
    /// VirtualBox VDI (signature 0xBEDA107F at 0x40).
    Vdi,
    /// Parallels (`WithoutFreeSpace` or `WithouFreSpacExt`).
    Parallels,
    /// A LUKS encrypted volume (`LUKS\xba\xbe`).
    Luks { version: u16 },
    /// An ISO 9660 CD/DVD image (`CD001` at 32769).
    Iso9660,
    /// A VHD footer copy at offset 0 (only reported as disk content: a file
    /// like that is a VHD, read by the VHD layer).
    Vhd,
    /// A VHD dynamic header (`cxsparse`) at `offset` with no footer: a
    /// fragment of a VHD, not a disk.
    VhdHeaderFragment { offset: u64 },
}

/// A detected format as `info --json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignInfo {
    /// Short name: qcow2, qcow, qed, vmdk, vhdx, vdi, parallels, luks,
    /// iso9660, vhd.
    pub name: &'static str,
    /// The format's own version, where its header has one (qcow, LUKS).
    pub version: Option<u32>,
    /// What the file is, in words.
    pub description: String,
    /// What to do instead.
    pub fix: String,
}

impl Foreign {
    /// Short name, as `qemu-img` spells its format where it has one.
    pub fn name(self) -> &'static str {
        match self {
            Foreign::Qcow { version: 1 } => "qcow",
            Foreign::Qcow { .. } => "qcow2",
            Foreign::Qed => "qed",
            Foreign::VmdkSparse { .. } | Foreign::VmdkCowd | Foreign::VmdkDescriptor => "vmdk",
            Foreign::Vhdx => "vhdx",
            Foreign::Vdi => "vdi",
            Foreign::Parallels => "parallels",
            Foreign::Luks { .. } => "luks",
            Foreign::Iso9660 => "iso9660",
            Foreign::Vhd | Foreign::VhdHeaderFragment { .. } => "vhd",
        }
    }

    /// What the bytes are, e.g. "a qcow2 image (version 3)".
    pub fn description(self) -> String {
        match self {
            Foreign::Qcow { version } => format!("a {} image (version {version})", self.name()),
            Foreign::Qed => "a QED image".into(),
            Foreign::VmdkSparse {
                stream_optimized: false,
            } => "a VMDK image (monolithicSparse extent)".into(),
            Foreign::VmdkSparse {
                stream_optimized: true,
            } => "a VMDK image (streamOptimized)".into(),
            Foreign::VmdkCowd => "a VMDK image (ESX COWD sparse extent)".into(),
            Foreign::VmdkDescriptor => "a VMDK descriptor file".into(),
            Foreign::Vhdx => "a VHDX image".into(),
            Foreign::Vdi => "a VDI (VirtualBox) image".into(),
            Foreign::Parallels => "a Parallels image".into(),
            Foreign::Luks { version } => format!("a LUKS{version} encrypted volume"),
            Foreign::Iso9660 => "an ISO 9660 (CD/DVD) image".into(),
            Foreign::Vhd => "a VHD image".into(),
            Foreign::VhdHeaderFragment { offset } => {
                format!("a VHD dynamic header (cxsparse at {offset:#x}) without a footer")
            }
        }
    }

    /// What to do with a file `path` of this format.
    pub fn fix(self, path: &std::path::Path) -> String {
        let p = path.display();
        match self {
            Foreign::VmdkDescriptor => format!(
                "convert it first with `qemu-img convert -f vmdk -O raw {p} DISK.raw` (the extent files it names must sit beside it)"
            ),
            Foreign::Luks { .. } => format!(
                "open it with `cryptsetup open {p} NAME` and convert /dev/mapper/NAME, or pass `--input-format raw` to take the encrypted bytes as the disk"
            ),
            Foreign::Iso9660 => {
                "upload it as an ISO (`--disk-format iso`), or pass `--input-format raw` to take it as a disk".into()
            }
            Foreign::Vhd | Foreign::VhdHeaderFragment { .. } => {
                "the file was cut or damaged: find the complete VHD".into()
            }
            other => format!(
                "convert it first with `qemu-img convert -f {} -O raw {p} DISK.raw`",
                other.name()
            ),
        }
    }

    /// The format's own version, where its header has one.
    pub fn version(self) -> Option<u32> {
        match self {
            Foreign::Qcow { version } => Some(version),
            Foreign::Luks { version } => Some(u32::from(version)),
            _ => None,
        }
    }

    /// The JSON form for a file at `path`.
    pub fn info(self, path: &std::path::Path) -> ForeignInfo {
        ForeignInfo {
            name: self.name(),
            version: self.version(),
            description: self.description(),
            fix: self.fix(path),
        }
    }
}

fn at(bytes: &[u8], offset: usize, magic: &[u8]) -> bool {
    offset
        .checked_add(magic.len())
        .and_then(|end| bytes.get(offset..end))
        .is_some_and(|b| b == magic)
}

fn u32_at(bytes: &[u8], offset: usize, big_endian: bool) -> Option<u32> {
    let b: [u8; 4] = bytes.get(offset..offset.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

/// The virtual-disk container formats, from the first bytes of a file or of
/// a disk: the ones a careless conversion copies verbatim.
fn detect_container(bytes: &[u8]) -> Option<Foreign> {
    if at(bytes, 0, b"QFI\xfb") {
        let version = u32_at(bytes, 4, true).unwrap_or(0);
        return Some(Foreign::Qcow { version });
    }
    if at(bytes, 0, b"QED\0") {
        return Some(Foreign::Qed);
    }
    if at(bytes, 0, b"KDMV") {
        let flags = u32_at(bytes, 8, false).unwrap_or(0);
        let stream_optimized = flags & VMDK_FLAG_COMPRESSED != 0;
        return Some(Foreign::VmdkSparse { stream_optimized });
    }
    if at(bytes, 0, b"COWD") {
        return Some(Foreign::VmdkCowd);
    }
    let text = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if at(text, 0, b"# Disk DescriptorFile") {
        return Some(Foreign::VmdkDescriptor);
    }
    if at(bytes, 0, b"vhdxfile") {
        return Some(Foreign::Vhdx);
    }
    if at(bytes, VDI_SIGNATURE_OFFSET, &VDI_SIGNATURE) {
        return Some(Foreign::Vdi);
    }
    if at(bytes, 0, b"WithoutFreeSpace") || at(bytes, 0, b"WithouFreSpacExt") {
        return Some(Foreign::Parallels);
    }
    None
}

/// A VHD dynamic header at 0 or 512 with no footer copy before it.
fn detect_header_fragment(bytes: &[u8]) -> Option<Foreign> {
    if at(bytes, 0, VHD_FOOTER_COOKIE) {
        return None;
    }
    [0u64, 512]
        .into_iter()
        .find(|&o| usize::try_from(o).is_ok_and(|o| at(bytes, o, VHD_HEADER_COOKIE)))
        .map(|offset| Foreign::VhdHeaderFragment { offset })
}

/// The format of a file that is not a VHD, from its first bytes (`prefix`,
/// of which at most [`PREFIX_LEN`] are looked at); `None` for a raw disk.
/// The caller has already ruled out a VHD (a footer at the end, or a footer
/// copy at offset 0).
pub fn detect(prefix: &[u8]) -> Option<Foreign> {
    let bytes = prefix.get(..PREFIX_LEN).unwrap_or(prefix);
    if let Some(f) = detect_container(bytes) {
        return Some(f);
    }
    if at(bytes, 0, b"LUKS\xba\xbe") {
        let version = bytes
            .get(6..8)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        return Some(Foreign::Luks { version });
    }
    if at(bytes, ISO_ID_OFFSET, b"CD001") {
        return Some(Foreign::Iso9660);
    }
    detect_header_fragment(bytes)
}

/// Whether a virtual disk's first bytes (`first`, its first sectors) hold
/// another image format's header: the disk is an image file copied in
/// without being decoded. LUKS and ISO 9660 are not reported: a disk may
/// legitimately hold them.
pub fn detect_content(first: &[u8]) -> Option<Foreign> {
    let bytes = first.get(..PREFIX_LEN).unwrap_or(first);
    if at(bytes, 0, VHD_FOOTER_COOKIE) {
        return Some(Foreign::Vhd);
    }
    detect_container(bytes).or_else(|| detect_header_fragment(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(offset: usize, magic: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 40 * 1024];
        b[offset..offset + magic.len()].copy_from_slice(magic);
        b
    }

    #[test]
    fn each_magic_is_named() {
        let mut q = with(0, b"QFI\xfb\0\0\0\x03");
        assert_eq!(detect(&q), Some(Foreign::Qcow { version: 3 }));
        assert_eq!(
            detect(&q).unwrap().description(),
            "a qcow2 image (version 3)"
        );
        q[7] = 1;
        assert_eq!(detect(&q).unwrap().name(), "qcow");
        assert_eq!(detect(&with(0, b"QED\0")), Some(Foreign::Qed));
        assert_eq!(
            detect(&with(0, b"KDMV\x01\0\0\0\x03\0\x01\0")),
            Some(Foreign::VmdkSparse {
                stream_optimized: true
            })
        );
        assert_eq!(
            detect(&with(0, b"# Disk DescriptorFile\nversion=1\n")),
            Some(Foreign::VmdkDescriptor)
        );
        assert_eq!(detect(&with(0, b"vhdxfile")), Some(Foreign::Vhdx));
        assert_eq!(detect(&with(0x40, &VDI_SIGNATURE)), Some(Foreign::Vdi));
        assert_eq!(
            detect(&with(0, b"WithouFreSpacExt")),
            Some(Foreign::Parallels)
        );
        assert_eq!(
            detect(&with(0, b"LUKS\xba\xbe\0\x02")),
            Some(Foreign::Luks { version: 2 })
        );
        assert_eq!(detect(&with(32769, b"CD001")), Some(Foreign::Iso9660));
        assert_eq!(
            detect(&with(512, b"cxsparse")),
            Some(Foreign::VhdHeaderFragment { offset: 512 })
        );
    }

    #[test]
    fn raw_and_short_inputs_are_not_foreign() {
        assert_eq!(detect(&[]), None);
        assert_eq!(detect(b"QFI"), None);
        assert_eq!(detect(&vec![0u8; 1 << 20]), None);
        // A VHD's footer copy is the VHD layer's business, not a fragment.
        let mut b = with(512, b"cxsparse");
        b[..8].copy_from_slice(b"conectix");
        assert_eq!(detect(&b), None);
        assert_eq!(detect_content(&b), Some(Foreign::Vhd));
        // ISO and LUKS are legitimate disk content.
        assert_eq!(detect_content(&with(32769, b"CD001")), None);
        assert_eq!(detect_content(&with(0, b"LUKS\xba\xbe\0\x01")), None);
        assert_eq!(detect_content(&with(0, b"vhdxfile")), Some(Foreign::Vhdx));
    }
}
