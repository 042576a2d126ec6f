//! Free clusters of NTFS, from `$Bitmap`.
//!
//! The boot sector gives the cluster size and where `$MFT` starts; MFT
//! record 0 (`$MFT` itself) maps every other record, record 6 is `$Bitmap`,
//! whose unnamed non-resident `$DATA` holds one bit per cluster (set = in
//! use). Every MFT record is read with its update-sequence fixups applied
//! and checked. A cluster is free when its bit is clear; the boot sectors,
//! the MFT, the log and everything else are marked in `$Bitmap` and so kept.
//!
//! Kept as they are: a volume flagged dirty in `$Volume`, or whose
//! `$LogFile` says the volume is not clean (Windows stopped without a clean
//! shutdown, or hibernated with Fast Startup: `$Bitmap` may be stale), and
//! layouts this reader does not follow (`$Bitmap` described through an
//! attribute list, sparse or compressed).

use super::{read, runs_from_bitmap, FreeSpace, Run, UsageError};
use crate::disk::device::Device;

const OEM_ID: &[u8; 8] = b"NTFS    ";
const BPB_BYTES_PER_SECTOR: usize = 0x0B;
const BPB_SECTORS_PER_CLUSTER: usize = 0x0D;
const BPB_TOTAL_SECTORS: usize = 0x28;
const BPB_MFT_LCN: usize = 0x30;
const BPB_CLUSTERS_PER_MFT_RECORD: usize = 0x40;
const BOOT_SIGNATURE_AT: usize = 0x1FE;

const FILE_MAGIC: &[u8; 4] = b"FILE";
const MFT_USA_OFFSET: usize = 0x04;
const MFT_USA_COUNT: usize = 0x06;
const MFT_ATTRS_OFFSET: usize = 0x14;
const MFT_FLAGS: usize = 0x16;
const MFT_IN_USE: u16 = 0x0001;
/// The update sequence protects the last two bytes of every 512 bytes.
const USA_STRIDE: usize = 512;

const ATTR_TYPE: usize = 0x00;
const ATTR_LENGTH: usize = 0x04;
const ATTR_NON_RESIDENT: usize = 0x08;
const ATTR_NAME_LENGTH: usize = 0x09;
const ATTR_FLAGS: usize = 0x0C;
const ATTR_VALUE_LENGTH: usize = 0x10;
const ATTR_VALUE_OFFSET: usize = 0x14;
const ATTR_LOWEST_VCN: usize = 0x10;
const ATTR_MAPPING_PAIRS: usize = 0x20;
const ATTR_DATA_SIZE: usize = 0x30;
const ATTR_END: u32 = 0xFFFF_FFFF;
const TYPE_ATTRIBUTE_LIST: u32 = 0x20;
const TYPE_VOLUME_INFORMATION: u32 = 0x70;
const TYPE_DATA: u32 = 0x80;
/// Compressed, encrypted or sparse attributes.
const ATTR_FLAGS_UNHANDLED: u16 = 0x00FF | 0x4000 | 0x8000;

const RECORD_MFT: u64 = 0;
const RECORD_LOGFILE: u64 = 2;
const RECORD_VOLUME: u64 = 3;
const RECORD_BITMAP: u64 = 6;

/// `$VOLUME_INFORMATION` flags at byte 0x0A of its value.
const VOLUME_FLAGS: usize = 0x0A;
const VOLUME_IS_DIRTY: u16 = 0x0001;

/// `$LogFile` restart page and area.
const RESTART_MAGIC: &[u8; 4] = b"RSTR";
const CHKDSK_MAGIC: &[u8; 4] = b"CHKD";
const RESTART_AREA_OFFSET: usize = 0x18;
const RA_CLIENT_IN_USE_LIST: usize = 0x0C;
const RA_FLAGS: usize = 0x0E;
const RESTART_VOLUME_IS_CLEAN: u16 = 0x0002;
const LOGFILE_NO_CLIENT: u16 = 0xFFFF;
const RESTART_PAGE_BYTES: usize = 4096;

/// Largest MFT record and cluster handled (NTFS allows 4 KiB records and
/// 2 MiB clusters).
const MAX_RECORD_BYTES: u64 = 4096;
const MAX_CLUSTER_BYTES: u64 = 2 << 20;
/// Most mapping pairs followed in one attribute (bounds a damaged list).
const MAX_RUNS: usize = 65536;
/// Bytes of `$Bitmap` read per step when validating.
const BITMAP_CHUNK: u64 = 1 << 20;

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// One extent of a non-resident attribute: `len` clusters from virtual
/// cluster `vcn` stored at logical cluster `lcn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub vcn: u64,
    pub lcn: u64,
    pub len: u64,
}

/// Decodes mapping pairs (data runs) starting at virtual cluster
/// `first_vcn`. A sparse run is refused: nothing this reader follows may
/// have holes.
pub fn decode_runs(bytes: &[u8], first_vcn: u64, at: u64) -> Result<Vec<Extent>, UsageError> {
    let bad =
        |found: String| UsageError::corrupt("NTFS mapping pairs", "run", at, found, "a valid run");
    let mut out = Vec::new();
    let mut i = 0usize;
    let mut vcn = first_vcn;
    let mut lcn: i64 = 0;
    loop {
        let header = *bytes
            .get(i)
            .ok_or_else(|| bad("no terminating zero".into()))?;
        if header == 0 {
            return Ok(out);
        }
        if out.len() >= MAX_RUNS {
            return Err(UsageError::unsupported(format!(
                "more than {MAX_RUNS} runs"
            )));
        }
        let len_size = usize::from(header & 0x0F);
        let off_size = usize::from(header >> 4);
        if len_size == 0 || len_size > 8 || off_size > 8 {
            return Err(bad(format!("header byte {header:#04x}")));
        }
        let field = bytes
            .get(i + 1..i + 1 + len_size + off_size)
            .ok_or_else(|| bad("a run past the attribute".into()))?;
        let mut len = 0u64;
        for (k, b) in field[..len_size].iter().enumerate() {
            len |= u64::from(*b) << (8 * k);
        }
        if off_size == 0 {
            return Err(UsageError::unsupported("a sparse run in a system file"));
        }
        let mut delta: i64 = 0;
        for (k, b) in field[len_size..].iter().enumerate() {
            delta |= i64::from(*b) << (8 * k);
        }
        // Sign-extend the offset from its stored width.
        let shift = 64 - 8 * off_size as u32;
        delta = (delta << shift) >> shift;
        lcn = lcn
            .checked_add(delta)
            .ok_or_else(|| bad(format!("offset {delta}")))?;
        let start = u64::try_from(lcn).map_err(|_| bad(format!("cluster {lcn}")))?;
        if len == 0 || (len >> 62) != 0 {
            return Err(bad(format!("length {len}")));
        }
        out.push(Extent {
            vcn,
            lcn: start,
            len,
        });
        vcn = vcn
            .checked_add(len)
            .ok_or_else(|| bad("VCN overflow".into()))?;
        i += 1 + len_size + off_size;
    }
}

/// Applies the update-sequence fixups of a multi-sector record in place.
pub fn apply_fixups(rec: &mut [u8], at: u64, what: &'static str) -> Result<(), UsageError> {
    let usa_ofs = usize::from(le16(rec, MFT_USA_OFFSET).unwrap_or(0));
    let usa_count = usize::from(le16(rec, MFT_USA_COUNT).unwrap_or(0));
    let sectors = rec.len() / USA_STRIDE;
    if usa_count != sectors + 1 || usa_ofs + 2 * usa_count > rec.len() || usa_ofs % 2 != 0 {
        return Err(UsageError::corrupt(
            what,
            "update sequence",
            at + MFT_USA_OFFSET as u64,
            format!("offset {usa_ofs}, count {usa_count}"),
            format!("an array of {} entries inside the record", sectors + 1),
        ));
    }
    let usn = [rec[usa_ofs], rec[usa_ofs + 1]];
    for s in 0..sectors {
        let end = (s + 1) * USA_STRIDE - 2;
        if rec[end..end + 2] != usn {
            return Err(UsageError::corrupt(
                what,
                "update sequence number",
                at + end as u64,
                format!("{:02x}{:02x}", rec[end + 1], rec[end]),
                format!("{:02x}{:02x} (a torn write)", usn[1], usn[0]),
            ));
        }
        let fix = usa_ofs + 2 * (s + 1);
        let saved = [rec[fix], rec[fix + 1]];
        rec[end..end + 2].copy_from_slice(&saved);
    }
    Ok(())
}

/// One attribute of a record, as found.
struct Attr<'a> {
    bytes: &'a [u8],
    at: u64,
}

/// The unnamed attribute of type `wanted` of a fixed-up record. One that
/// an attribute list may have put in another record is not followed.
fn find_attr(rec: &[u8], at: u64, wanted: u32) -> Result<Option<Attr<'_>>, UsageError> {
    let mut pos = usize::from(le16(rec, MFT_ATTRS_OFFSET).unwrap_or(0));
    let mut listed = false;
    loop {
        let bad = |found: String| {
            UsageError::corrupt(
                "MFT record",
                "attribute",
                at + pos as u64,
                found,
                "attributes inside the record",
            )
        };
        let kind = le32(rec, pos + ATTR_TYPE).ok_or_else(|| bad("the end of the record".into()))?;
        if kind == ATTR_END {
            if listed {
                return Err(UsageError::unsupported(
                    "a system file described by an attribute list",
                ));
            }
            return Ok(None);
        }
        let len = le32(rec, pos + ATTR_LENGTH).unwrap_or(0) as usize;
        if len < 0x18 || len % 8 != 0 || pos + len > rec.len() {
            return Err(bad(format!("length {len}")));
        }
        let attr = &rec[pos..pos + len];
        listed |= kind == TYPE_ATTRIBUTE_LIST;
        if kind == wanted && attr[ATTR_NAME_LENGTH] == 0 {
            return Ok(Some(Attr {
                bytes: attr,
                at: at + pos as u64,
            }));
        }
        pos += len;
    }
}

impl Attr<'_> {
    fn resident_value(&self) -> Result<&[u8], UsageError> {
        let len = le32(self.bytes, ATTR_VALUE_LENGTH).unwrap_or(0) as usize;
        let off = usize::from(le16(self.bytes, ATTR_VALUE_OFFSET).unwrap_or(0));
        if self.bytes[ATTR_NON_RESIDENT] != 0 {
            return Err(UsageError::corrupt(
                "NTFS attribute",
                "non_resident",
                self.at + 8,
                1,
                0,
            ));
        }
        self.bytes.get(off..off + len).ok_or_else(|| {
            UsageError::corrupt(
                "NTFS attribute",
                "value",
                self.at,
                format!("{len} bytes at {off}"),
                "inside the attribute",
            )
        })
    }

    /// `(extents, data size)` of a non-resident attribute.
    fn extents(&self) -> Result<(Vec<Extent>, u64), UsageError> {
        if self.bytes[ATTR_NON_RESIDENT] == 0 {
            return Err(UsageError::unsupported("a resident system file"));
        }
        let flags = le16(self.bytes, ATTR_FLAGS).unwrap_or(0);
        if flags & ATTR_FLAGS_UNHANDLED != 0 {
            return Err(UsageError::unsupported(format!(
                "a compressed, encrypted or sparse system file (flags {flags:#06x})"
            )));
        }
        let first = le64(self.bytes, ATTR_LOWEST_VCN).unwrap_or(u64::MAX);
        if first != 0 {
            return Err(UsageError::unsupported(
                "a system file split over several records",
            ));
        }
        let runs_at = usize::from(le16(self.bytes, ATTR_MAPPING_PAIRS).unwrap_or(0));
        let runs = self.bytes.get(runs_at..).unwrap_or(&[]);
        let extents = decode_runs(runs, 0, self.at + runs_at as u64)?;
        let size = le64(self.bytes, ATTR_DATA_SIZE).unwrap_or(0);
        Ok((extents, size))
    }
}

/// A non-resident stream: its extents and the cluster size.
struct Stream {
    extents: Vec<Extent>,
    size: u64,
    cluster: u64,
}

impl Stream {
    /// Reads `len` bytes at `offset` of the stream.
    fn read(
        &self,
        dev: &dyn Device,
        offset: u64,
        len: usize,
        what: &'static str,
    ) -> Result<Vec<u8>, UsageError> {
        let mut out = Vec::with_capacity(len);
        let mut pos = offset;
        let end = offset.saturating_add(len as u64);
        let unmapped = |pos: u64, why: &str| {
            UsageError::corrupt(
                what,
                "runs",
                pos,
                why.to_string(),
                "a mapped cluster inside the volume",
            )
        };
        while pos < end {
            let vcn = pos / self.cluster;
            let e = self
                .extents
                .iter()
                .find(|e| e.vcn <= vcn && vcn - e.vcn < e.len)
                .ok_or_else(|| unmapped(pos, &format!("no run for VCN {vcn}")))?;
            let extent_end = (e.vcn + e.len)
                .checked_mul(self.cluster)
                .ok_or_else(|| unmapped(pos, "a run past 2^64 bytes"))?;
            let n = end.min(extent_end) - pos;
            let disk_at = e
                .lcn
                .checked_mul(self.cluster)
                .and_then(|a| a.checked_add(pos - e.vcn * self.cluster))
                .ok_or_else(|| unmapped(pos, &format!("cluster {}", e.lcn)))?;
            let n = usize::try_from(n).map_err(|_| unmapped(pos, "a run too long"))?;
            out.extend(read(dev, disk_at, n, what)?);
            pos += n as u64;
        }
        Ok(out)
    }
}

/// An NTFS volume whose `$Bitmap` has been located.
pub struct NtfsFree {
    cluster: u64,
    clusters: u64,
    total_bytes: u64,
    bitmap: Stream,
}

struct Boot {
    cluster: u64,
    total_sectors: u64,
    bytes_per_sector: u64,
    mft_lcn: u64,
    record: u64,
}

fn parse_boot(b: &[u8]) -> Result<Boot, UsageError> {
    let field = |name, at: usize, found: u64, expected: &str| {
        Err(UsageError::corrupt(
            "NTFS boot sector",
            name,
            at as u64,
            found,
            expected,
        ))
    };
    let bps = u64::from(le16(b, BPB_BYTES_PER_SECTOR).unwrap_or(0));
    if !(256..=4096).contains(&bps) || !bps.is_power_of_two() {
        return field(
            "bytes_per_sector",
            BPB_BYTES_PER_SECTOR,
            bps,
            "a power of two in 256..=4096",
        );
    }
    let spc_raw = b[BPB_SECTORS_PER_CLUSTER];
    // Above 128 the byte is a negative power of two (64 KiB+ clusters).
    let spc = if spc_raw <= 128 {
        u64::from(spc_raw)
    } else {
        1u64 << (256 - u32::from(spc_raw)).min(31)
    };
    let cluster = bps * spc;
    if spc == 0 || !spc.is_power_of_two() || cluster > MAX_CLUSTER_BYTES {
        return field(
            "sectors_per_cluster",
            BPB_SECTORS_PER_CLUSTER,
            u64::from(spc_raw),
            "a power of two, clusters up to 2 MiB",
        );
    }
    let cpr = b[BPB_CLUSTERS_PER_MFT_RECORD] as i8;
    let record = if cpr > 0 {
        cluster * cpr as u64
    } else {
        1u64 << u32::from(cpr.unsigned_abs()).min(31)
    };
    if !(512..=MAX_RECORD_BYTES).contains(&record) || !record.is_power_of_two() {
        return field(
            "clusters_per_mft_record",
            BPB_CLUSTERS_PER_MFT_RECORD,
            record,
            "a record of 512..=4096 bytes",
        );
    }
    Ok(Boot {
        cluster,
        total_sectors: le64(b, BPB_TOTAL_SECTORS).unwrap_or(0),
        bytes_per_sector: bps,
        mft_lcn: le64(b, BPB_MFT_LCN).unwrap_or(0),
        record,
    })
}

/// Reads MFT record `n` through `$MFT`'s own extents, fixed up.
fn read_record(
    dev: &dyn Device,
    boot: &Boot,
    mft: &Stream,
    n: u64,
    what: &'static str,
) -> Result<Vec<u8>, UsageError> {
    let len = usize::try_from(boot.record).unwrap_or(4096);
    let mut rec = mft.read(dev, n * boot.record, len, what)?;
    check_record(&mut rec, 0, what)?;
    Ok(rec)
}

fn check_record(rec: &mut [u8], at: u64, what: &'static str) -> Result<(), UsageError> {
    if rec.get(..4) != Some(&FILE_MAGIC[..]) {
        return Err(UsageError::corrupt(
            what,
            "magic",
            at,
            format!("{:?}", String::from_utf8_lossy(rec.get(..4).unwrap_or(&[]))),
            "\"FILE\"",
        ));
    }
    apply_fixups(rec, at, what)?;
    if le16(rec, MFT_FLAGS).unwrap_or(0) & MFT_IN_USE == 0 {
        return Err(UsageError::corrupt(
            what,
            "flags",
            at + MFT_FLAGS as u64,
            "not in use",
            "in use",
        ));
    }
    Ok(())
}

/// The unnamed non-resident `$DATA` of a fixed-up record, as a stream.
fn data_stream(rec: &[u8], what: &'static str, cluster: u64) -> Result<Stream, UsageError> {
    let (extents, size) = find_attr(rec, 0, TYPE_DATA)?
        .ok_or_else(|| UsageError::corrupt(what, "$DATA", 0, "none", "an unnamed $DATA attribute"))?
        .extents()?;
    Ok(Stream {
        extents,
        size,
        cluster,
    })
}

/// `$MFT` itself, from its record 0 at byte `at`.
fn read_mft(dev: &dyn Device, boot: &Boot, at: u64) -> Result<Stream, UsageError> {
    let len = usize::try_from(boot.record).unwrap_or(4096);
    let mut rec0 = read(dev, at, len, "$MFT")?;
    check_record(&mut rec0, at, "$MFT record 0")?;
    data_stream(&rec0, "$MFT record 0", boot.cluster)
}

/// Reads an NTFS volume at the start of `dev`: `None` without the NTFS
/// OEM id; an error when `$Bitmap` cannot be found or trusted.
pub fn open(dev: &dyn Device) -> Result<Option<NtfsFree>, UsageError> {
    if dev.size_bytes() < 512 {
        return Ok(None);
    }
    let b = read(dev, 0, 512, "the NTFS boot sector")?;
    if b[3..11] != OEM_ID[..] {
        return Ok(None);
    }
    if b[BOOT_SIGNATURE_AT..] != [0x55, 0xAA] {
        return Err(UsageError::corrupt(
            "NTFS boot sector",
            "signature",
            0x1FE,
            format!("{:02x}{:02x}", b[0x1FE], b[0x1FF]),
            "55aa",
        ));
    }
    let boot = parse_boot(&b)?;
    let total_bytes = boot.total_sectors.saturating_mul(boot.bytes_per_sector);
    if total_bytes > dev.size_bytes() {
        return Err(UsageError::corrupt(
            "NTFS boot sector",
            "total_sectors",
            BPB_TOTAL_SECTORS as u64,
            boot.total_sectors,
            format!(
                "at most the partition's {} sectors",
                dev.size_bytes() / boot.bytes_per_sector
            ),
        ));
    }
    let clusters = total_bytes / boot.cluster;
    let mft_at = boot
        .mft_lcn
        .checked_mul(boot.cluster)
        .and_then(|a| a.checked_add(RECORD_MFT * boot.record))
        .filter(|&a| a < total_bytes)
        .ok_or_else(|| {
            UsageError::corrupt(
                "NTFS boot sector",
                "mft_lcn",
                BPB_MFT_LCN as u64,
                boot.mft_lcn,
                "a cluster inside the volume",
            )
        })?;
    let mft = read_mft(dev, &boot, mft_at)?;
    check_volume_clean(dev, &boot, &mft)?;
    let rec6 = read_record(dev, &boot, &mft, RECORD_BITMAP, "$Bitmap record")?;
    let bitmap = data_stream(&rec6, "$Bitmap record", boot.cluster)?;
    let size = bitmap.size;
    if size < clusters.div_ceil(8) {
        return Err(UsageError::corrupt(
            "$Bitmap",
            "data size",
            0,
            size,
            format!(
                "at least {} bytes for {clusters} clusters",
                clusters.div_ceil(8)
            ),
        ));
    }
    Ok(Some(NtfsFree {
        cluster: boot.cluster,
        clusters,
        total_bytes,
        bitmap,
    }))
}

/// Refuses a volume that is dirty or whose log is not clean.
fn check_volume_clean(dev: &dyn Device, boot: &Boot, mft: &Stream) -> Result<(), UsageError> {
    let vol = read_record(dev, boot, mft, RECORD_VOLUME, "$Volume record")?;
    if let Some(info) = find_attr(&vol, 0, TYPE_VOLUME_INFORMATION)? {
        let flags = le16(info.resident_value()?, VOLUME_FLAGS).unwrap_or(0);
        if flags & VOLUME_IS_DIRTY != 0 {
            return Err(UsageError::unclean(
                "the volume is marked dirty ($Volume): run chkdsk in Windows (or ntfsfix)",
            ));
        }
    }
    let log = read_record(dev, boot, mft, RECORD_LOGFILE, "$LogFile record")?;
    let stream = data_stream(&log, "$LogFile record", boot.cluster)?;
    let page = stream.read(
        dev,
        0,
        RESTART_PAGE_BYTES.min(usize::try_from(stream.size).unwrap_or(0)),
        "$LogFile",
    )?;
    if page.iter().all(|&b| b == 0xFF) {
        // Emptied (as mkntfs and ntfs-3g leave it): nothing to replay.
        return Ok(());
    }
    if page.get(..4) != Some(&RESTART_MAGIC[..]) && page.get(..4) != Some(&CHKDSK_MAGIC[..]) {
        return Err(UsageError::unclean(
            "$LogFile has no restart page: the volume may need chkdsk",
        ));
    }
    let mut page = page;
    apply_fixups(&mut page, 0, "$LogFile restart page")?;
    let ra = usize::from(le16(&page, RESTART_AREA_OFFSET).unwrap_or(0));
    let in_use = le16(&page, ra + RA_CLIENT_IN_USE_LIST);
    let flags = le16(&page, ra + RA_FLAGS);
    match (in_use, flags) {
        (Some(LOGFILE_NO_CLIENT), Some(_)) => Ok(()),
        (Some(_), Some(f)) if f & RESTART_VOLUME_IS_CLEAN != 0 => Ok(()),
        (Some(_), Some(_)) => Err(UsageError::unclean(
            "$LogFile says the volume was not shut down cleanly (or Windows hibernated it with Fast Startup): boot Windows and shut it down fully, or run chkdsk",
        )),
        _ => Err(UsageError::corrupt("$LogFile restart page", "restart_area_offset", RESTART_AREA_OFFSET as u64, ra, "an area inside the page")),
    }
}

impl NtfsFree {
    /// `$Bitmap` bytes covering clusters `first..end` (first a multiple of 8).
    fn bits(&self, dev: &dyn Device, first: u64, end: u64) -> Result<Vec<u8>, UsageError> {
        let from = first / 8;
        let to = end.div_ceil(8).min(self.bitmap.size);
        let len = usize::try_from(to.saturating_sub(from))
            .map_err(|_| UsageError::unsupported("a $Bitmap chunk"))?;
        self.bitmap.read(dev, from, len, "$Bitmap")
    }
}

impl FreeSpace for NtfsFree {
    fn name(&self) -> &'static str {
        "ntfs"
    }

    fn size_bytes(&self) -> u64 {
        self.total_bytes
    }

    fn free_runs(
        &self,
        dev: &dyn Device,
        start: u64,
        len: u64,
        out: &mut Vec<Run>,
    ) -> Result<(), UsageError> {
        let end = start.saturating_add(len).min(self.clusters * self.cluster);
        if end <= start {
            return Ok(());
        }
        let first = start / self.cluster / 8 * 8;
        let last = end.div_ceil(self.cluster);
        let bits = self.bits(dev, first, last)?;
        runs_from_bitmap(
            &bits,
            (start / self.cluster - first, last - first),
            self.cluster,
            first * self.cluster,
            (start, end - start),
            out,
        );
        Ok(())
    }

    fn validate(&self, dev: &dyn Device) -> Result<u64, UsageError> {
        let mut free = 0u64;
        let step = BITMAP_CHUNK * 8 * self.cluster;
        let mut at = 0u64;
        let end = self.clusters * self.cluster;
        while at < end {
            let n = step.min(end - at);
            free += self.free_bytes_in(dev, at, n)?;
            at += n;
        }
        Ok(free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_decode_with_signed_offsets() {
        // 0x18 clusters at 0x5634, then 0x10 at 0x5634 - 0x100 (negative delta).
        let bytes = [0x21, 0x18, 0x34, 0x56, 0x21, 0x10, 0x00, 0xFF, 0x00];
        let runs = decode_runs(&bytes, 0, 0).unwrap();
        assert_eq!(
            runs,
            vec![
                Extent {
                    vcn: 0,
                    lcn: 0x5634,
                    len: 0x18
                },
                Extent {
                    vcn: 0x18,
                    lcn: 0x5534,
                    len: 0x10
                }
            ]
        );
        assert!(decode_runs(&[0x01, 0x05, 0x00], 0, 0).is_err(), "sparse");
        assert!(decode_runs(&[0x21, 0x18], 0, 0).is_err(), "cut short");
        assert!(
            decode_runs(&[0x21, 0x18, 0x34, 0x56], 0, 0).is_err(),
            "no terminator"
        );
    }

    #[test]
    fn fixups_restore_sector_tails_and_catch_torn_writes() {
        let mut rec = vec![0u8; 1024];
        rec[..4].copy_from_slice(FILE_MAGIC);
        rec[MFT_USA_OFFSET] = 0x30;
        rec[MFT_USA_COUNT] = 3;
        rec[0x30..0x36].copy_from_slice(&[0x07, 0x00, 0xAA, 0xBB, 0xCC, 0xDD]);
        rec[510..512].copy_from_slice(&[0x07, 0x00]);
        rec[1022..1024].copy_from_slice(&[0x07, 0x00]);
        let mut good = rec.clone();
        apply_fixups(&mut good, 0, "test").unwrap();
        assert_eq!(&good[510..512], &[0xAA, 0xBB]);
        assert_eq!(&good[1022..1024], &[0xCC, 0xDD]);
        rec[1022] = 0x08;
        let e = apply_fixups(&mut rec, 0x1000, "test")
            .unwrap_err()
            .to_string();
        assert!(e.contains("torn write") && e.contains("0x13fe"), "{e}");
    }
}
