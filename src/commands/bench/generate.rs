//! Test disks for benchmarks: a sparse raw file of a given size with a given
//! share of its blocks filled at seeded places, the rest left as holes.
//!
//! Generation is itself fast (the point is to benchmark vhdkit, not to wait
//! for the input): the allocated blocks are chosen up front as a bitset
//! (Floyd's sampling, exact count), then written in parallel by rayon, each
//! thread filling its own buffer. A block's content depends only on the seed
//! and its index, so the same options always make the same bytes. This
//! module writes only the file it is given.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::{Error, Result};

/// What allocated blocks hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    /// Pseudo-random bytes (incompressible, never zero).
    Random,
    /// Repeating lorem-ipsum ASCII.
    Text,
    /// Zero bytes written out, so the blocks are allocated but read as zero.
    Zeros,
}

impl DataKind {
    pub fn name(self) -> &'static str {
        match self {
            DataKind::Random => "random",
            DataKind::Text => "text",
            DataKind::Zeros => "zeros",
        }
    }

    pub fn parse(text: &str) -> std::result::Result<DataKind, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "random" => Ok(DataKind::Random),
            "text" => Ok(DataKind::Text),
            "zeros" | "zero" => Ok(DataKind::Zeros),
            other => Err(format!("--data {other:?}: expected random, text or zeros")),
        }
    }
}

/// The seed used unless told otherwise: the same disk every run.
pub const DEFAULT_SEED: u64 = 0x5648_444b_4954_2021;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Virtual size (the raw file's length) in bytes.
    pub size_bytes: u64,
    /// Share of blocks filled, 0.0 to 1.0.
    pub allocated: f64,
    pub data: DataKind,
    /// Granularity of allocation (the last block may be shorter).
    pub block_size_bytes: u64,
    pub seed: u64,
}

/// What was generated, and how fast.
#[derive(Debug, Clone, Serialize)]
pub struct Generated {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub block_size_bytes: u64,
    pub blocks: u64,
    pub allocated_blocks: u64,
    /// Bytes written (the allocated blocks).
    pub written_bytes: u64,
    pub data: DataKind,
    pub seed: u64,
    /// Wall time including the final fsync.
    pub wall_seconds: f64,
    /// CPU time (user + system) of this process during generation.
    pub cpu_seconds: f64,
    /// `written_bytes / wall_seconds`, in GB/s (10^9 bytes).
    pub write_gbps: f64,
    /// What the disk holds besides the data: "MBR partition 1 from sector
    /// 2048 to the end, ext4", or why not.
    pub layout: String,
}

/// Where partition 1 of a generated disk starts (1 MiB, as partitioners do).
pub const PARTITION_START_SECTOR: u32 = 2048;

/// An MBR whose one entry, partition 1 (type 0x83, Linux), runs from
/// [`PARTITION_START_SECTOR`] to the last sector of a disk of
/// `disk_sectors`; `None` when MBR cannot describe it (above 2 TiB).
fn mbr_sector(disk_sectors: u64) -> Option<[u8; 512]> {
    let count = u32::try_from(disk_sectors.checked_sub(u64::from(PARTITION_START_SECTOR))?).ok()?;
    let mut mbr = [0u8; 512];
    let entry = &mut mbr[446..462];
    // CHS fields 0xFE 0xFF 0xFF: "use the LBA fields" for every partitioner.
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[4] = 0x83;
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&PARTITION_START_SECTOR.to_le_bytes());
    entry[12..16].copy_from_slice(&count.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    Some(mbr)
}

/// Gives the generated disk at `path` an MBR with partition 1 and an ext4
/// filesystem filling it (made by `mkfs.ext4`, which writes only metadata:
/// the generated data stays in its free blocks), so `expand` has something
/// to grow. `Err` says why not (the disk then stays raw data only).
pub fn partition_and_format(path: &Path, size_bytes: u64) -> std::result::Result<String, String> {
    let mbr = mbr_sector(size_bytes / 512)
        .ok_or_else(|| format!("{size_bytes} bytes: MBR cannot describe this disk"))?;
    let part_bytes = (size_bytes / 512 - u64::from(PARTITION_START_SECTOR)) * 512;
    let mkfs = std::process::Command::new("mkfs.ext4")
        .arg("-q")
        .arg("-F")
        .arg("-E")
        .arg(format!(
            "offset={},nodiscard,lazy_itable_init=1,lazy_journal_init=1",
            u64::from(PARTITION_START_SECTOR) * 512
        ))
        .arg(path)
        .arg(format!("{}k", part_bytes / 1024))
        .output();
    match mkfs {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("mkfs.ext4 not installed".into())
        }
        Err(e) => return Err(format!("mkfs.ext4: {e}")),
        Ok(o) if !o.status.success() => {
            return Err(format!(
                "mkfs.ext4 failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Ok(_) => {}
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: open: {e}", path.display()))?;
    file.write_all_at(&mbr, 0)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: write the MBR: {e}", path.display()))?;
    Ok(format!(
        "MBR partition 1 from sector {PARTITION_START_SECTOR} to the end, ext4 (mkfs.ext4)"
    ))
}

/// Parses an allocated share: `30%`, `30` (percent) or `0.3`.
pub fn parse_share(text: &str) -> std::result::Result<f64, String> {
    let t = text.trim();
    let (num, percent) = match t.strip_suffix('%') {
        Some(n) => (n, true),
        None => (t, false),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: expected a share such as 30% or 0.3"))?;
    let share = if percent || v > 1.0 { v / 100.0 } else { v };
    if !(0.0..=1.0).contains(&share) {
        return Err(format!("{text:?}: expected a share from 0% to 100%"));
    }
    Ok(share)
}

/// wyrand (Wang Yi): one multiply per 8 bytes, good enough for test data.
#[derive(Debug, Clone)]
pub struct WyRand(u64);

impl WyRand {
    pub fn new(seed: u64) -> WyRand {
        WyRand(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        // Folding the 128-bit product: the truncations are the algorithm.
        #[allow(clippy::cast_possible_truncation)]
        let folded = (t >> 64) as u64 ^ t as u64;
        folded
    }

    /// A value in `0..bound` (bound > 0; modulo bias is irrelevant here).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        tail.copy_from_slice(&last[..tail.len()]);
    }
}

const LOREM: &[u8] = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod \
tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud \
exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.\n";

/// Fills a block's buffer for `block_index`.
pub fn fill_block(data: DataKind, seed: u64, block_index: u64, buf: &mut [u8]) {
    match data {
        DataKind::Random => {
            WyRand::new(seed ^ block_index.wrapping_mul(0x9e37_79b9_7f4a_7c15)).fill(buf)
        }
        DataKind::Text => {
            let shift = usize::try_from(block_index % LOREM.len() as u64).unwrap_or(0);
            for (b, s) in buf.iter_mut().zip(LOREM.iter().cycle().skip(shift)) {
                *b = *s;
            }
        }
        DataKind::Zeros => buf.fill(0),
    }
}

/// Chooses exactly `k` of `n` blocks (Floyd's sampling), as a bitset.
pub fn choose_blocks(n: u64, k: u64, seed: u64) -> Vec<u64> {
    let words = usize::try_from(n.div_ceil(64)).unwrap_or(0);
    let mut bits = vec![0u64; words];
    let mut rng = WyRand::new(seed);
    let index = |i: u64| (usize::try_from(i / 64).unwrap_or(0), 1u64 << (i % 64));
    for j in n - k.min(n)..n {
        let t = rng.below(j + 1);
        let (w, m) = index(t);
        let pick = if bits[w] & m != 0 { j } else { t };
        let (w, m) = index(pick);
        bits[w] |= m;
    }
    bits
}

/// Writes a new sparse raw disk at `path` (created or truncated).
pub fn generate(path: &Path, opts: &GenerateOptions) -> Result<Generated> {
    let bs = opts.block_size_bytes;
    if bs == 0 || bs > 1 << 30 {
        return Err(Error::Usage(format!(
            "--block-size {bs}: expected 1 byte to 1G"
        )));
    }
    let buf_len =
        usize::try_from(bs).map_err(|_| Error::Usage(format!("--block-size {bs}: too large")))?;
    let blocks = opts.size_bytes.div_ceil(bs);
    // The share is a user-given fraction; rounding to a block count is the intent.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let allocated_blocks = ((blocks as f64 * opts.allocated).round() as u64).min(blocks);
    let cpu_start = super::measure::self_cpu_seconds();
    let start = Instant::now();
    let file = File::create(path).map_err(|e| Error::io(path, "create", e))?;
    file.set_len(opts.size_bytes)
        .map_err(|e| Error::io(path, "set length", e))?;
    let bits = choose_blocks(blocks, allocated_blocks, opts.seed);
    let size = opts.size_bytes;
    let written: u64 = bits
        .par_iter()
        .enumerate()
        .map_init(
            || vec![0u8; buf_len],
            |buf, (w, &word)| -> Result<u64> {
                let mut sum = 0;
                let mut rest = word;
                while rest != 0 {
                    let bit = u64::from(rest.trailing_zeros());
                    rest &= rest - 1;
                    let block_index = w as u64 * 64 + bit;
                    let off = block_index * bs;
                    let len = usize::try_from(bs.min(size - off)).unwrap_or(buf_len);
                    let chunk = &mut buf[..len];
                    fill_block(opts.data, opts.seed, block_index, chunk);
                    file.write_all_at(chunk, off).map_err(|e| {
                        Error::io(path, format!("write {len} bytes at {off:#x}"), e)
                    })?;
                    sum += len as u64;
                }
                Ok(sum)
            },
        )
        .try_reduce(|| 0, |a, b| Ok(a + b))?;
    file.sync_all().map_err(|e| Error::io(path, "fsync", e))?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = super::measure::self_cpu_seconds() - cpu_start;
    Ok(Generated {
        path: path.to_path_buf(),
        size_bytes: size,
        block_size_bytes: bs,
        blocks,
        allocated_blocks,
        written_bytes: written,
        data: opts.data,
        seed: opts.seed,
        wall_seconds: wall,
        cpu_seconds: cpu,
        write_gbps: super::gbps(written, wall),
        layout: "raw data only".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_exactly_k_distinct_blocks() {
        for (n, k) in [(0, 0), (1, 1), (100, 30), (1000, 1000), (77, 5)] {
            let bits = choose_blocks(n, k, 7);
            let count: u32 = bits.iter().map(|w| w.count_ones()).sum();
            assert_eq!(u64::from(count), k, "n={n} k={k}");
            // Nothing past n.
            if n % 64 != 0 {
                if let Some(last) = bits.last() {
                    assert_eq!(last >> (n % 64), 0);
                }
            }
        }
    }

    #[test]
    fn shares_parse() {
        assert_eq!(parse_share("30%").unwrap(), 0.3);
        assert_eq!(parse_share("0.5").unwrap(), 0.5);
        assert_eq!(parse_share("100").unwrap(), 1.0);
        assert!(parse_share("120%").is_err());
        assert!(parse_share("x").is_err());
    }

    #[test]
    fn generates_the_asked_share_and_no_zero_random_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.raw");
        let g = generate(
            &path,
            &GenerateOptions {
                size_bytes: (10 << 20) + 4096,
                allocated: 0.5,
                data: DataKind::Random,
                block_size_bytes: 1 << 20,
                seed: 1,
            },
        )
        .unwrap();
        assert_eq!(g.blocks, 11);
        assert_eq!(g.allocated_blocks, 6);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, g.size_bytes);
        let data_blocks = bytes
            .chunks(1 << 20)
            .filter(|c| !crate::pipeline::zero::is_zero(c))
            .count();
        assert_eq!(data_blocks, 6);
    }
}
