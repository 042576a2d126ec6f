//! Test support shared by the integration tests: a builder that makes VHDs in
//! memory with the library's own `vhdkit::format` types, a damage generator
//! (one golden image, one mutation per case), and a runner for the binary.
//!
//! Each integration test file includes this module, and each uses a part of
//! it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use vhdkit::format::bat::table_size_bytes;
use vhdkit::format::footer::Creator;
use vhdkit::format::header::{bitmap_size_bytes, encode_utf16le, HEADER_SIZE_U64};
use vhdkit::format::{
    Bat, Batmap, DiskType, DynamicHeader, Footer, ParentLocator, PlatformCode, BAT_UNUSED,
    FOOTER_SIZE, SECTOR_SIZE,
};

/// A timestamp safely in the past (2022).
pub const TIME_STAMP: u32 = 0x2a00_0000;

/// How a locator's data space is written: the specification says sectors,
/// Virtual PC and Windows write bytes.
#[derive(Debug, Clone, Copy)]
pub enum Space {
    Bytes(u32),
    Sectors(u32),
}

impl Space {
    fn field(self) -> u32 {
        match self {
            Space::Bytes(b) | Space::Sectors(b) => b,
        }
    }
    fn region_bytes(self) -> u64 {
        match self {
            Space::Bytes(b) => u64::from(b).next_multiple_of(SECTOR_SIZE),
            Space::Sectors(s) => u64::from(s) * SECTOR_SIZE,
        }
    }
}

/// A parent locator to write: its data is the path, UTF-16LE for W2ru/W2ku,
/// bytes for the others.
#[derive(Debug, Clone)]
pub struct Locator {
    pub code: PlatformCode,
    pub path: String,
    pub space: Space,
}

impl Locator {
    pub fn w2ru(path: &str) -> Locator {
        Locator {
            code: PlatformCode::W2ru,
            path: path.into(),
            space: Space::Bytes(512),
        }
    }
    pub fn w2ku(path: &str) -> Locator {
        Locator {
            code: PlatformCode::W2ku,
            path: path.into(),
            space: Space::Bytes(512),
        }
    }
    pub fn space(mut self, space: Space) -> Locator {
        self.space = space;
        self
    }
    fn data(&self) -> Vec<u8> {
        match self.code {
            PlatformCode::W2ru | PlatformCode::W2ku => encode_utf16le(&self.path),
            _ => self.path.as_bytes().to_vec(),
        }
    }
}

/// The parent a differencing disk names.
#[derive(Debug, Clone)]
pub struct ParentLink {
    pub name: String,
    pub unique_id: [u8; 16],
    pub locators: Vec<Locator>,
}

/// One allocated block: its sector bitmap and its data.
#[derive(Debug, Clone)]
pub struct BlockSpec {
    pub index: u32,
    pub bitmap: Vec<u8>,
    pub data: Vec<u8>,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Spec {
    pub disk_type: DiskType,
    pub size: u64,
    pub block_size: u32,
    /// Defaults to the size divided by the block size, rounded up.
    pub max_table_entries: Option<u32>,
    pub blocks: Vec<BlockSpec>,
    pub parent: Option<ParentLink>,
    pub batmap: bool,
    pub creator: Creator,
    pub unique_id: [u8; 16],
    pub time_stamp: u32,
    /// The data of a fixed disk (zero-padded to the size).
    pub fixed_data: Vec<u8>,
}

impl Spec {
    fn base(disk_type: DiskType, size: u64, block_size: u32) -> Spec {
        Spec {
            disk_type,
            size,
            block_size,
            max_table_entries: None,
            blocks: Vec::new(),
            parent: None,
            batmap: false,
            creator: Creator::by_name("win").expect("win creator"),
            unique_id: [0x11; 16],
            time_stamp: TIME_STAMP,
            fixed_data: Vec::new(),
        }
    }

    pub fn fixed(size: u64) -> Spec {
        Spec::base(DiskType::Fixed, size, 0)
    }

    pub fn dynamic(size: u64, block_size: u32) -> Spec {
        Spec::base(DiskType::Dynamic, size, block_size)
    }

    pub fn differencing(size: u64, block_size: u32, parent: ParentLink) -> Spec {
        let mut s = Spec::base(DiskType::Differencing, size, block_size);
        s.parent = Some(parent);
        s
    }

    pub fn unique_id(mut self, id: [u8; 16]) -> Spec {
        self.unique_id = id;
        self
    }

    pub fn creator(mut self, name: &str) -> Spec {
        self.creator = Creator::by_name(name).expect("known creator");
        self
    }

    pub fn with_batmap(mut self) -> Spec {
        self.batmap = true;
        self
    }

    pub fn data(mut self, data: Vec<u8>) -> Spec {
        self.fixed_data = data;
        self
    }

    pub fn max_table_entries(mut self, n: u32) -> Spec {
        self.max_table_entries = Some(n);
        self
    }

    /// A fully written block (every bitmap bit set); `data` is zero-padded.
    pub fn block(self, index: u32, data: &[u8]) -> Spec {
        let bits = bitmap_size_bytes(self.block_size) as usize;
        self.block_with_bitmap(index, vec![0xff; bits], data)
    }

    /// A block with a chosen sector bitmap (MSB of byte 0 = sector 0).
    pub fn block_with_bitmap(mut self, index: u32, bitmap: Vec<u8>, data: &[u8]) -> Spec {
        let mut data = data.to_vec();
        data.resize(self.block_size as usize, 0);
        let mut bitmap = bitmap;
        bitmap.resize(bitmap_size_bytes(self.block_size) as usize, 0);
        self.blocks.push(BlockSpec {
            index,
            bitmap,
            data,
        });
        self
    }

    pub fn build(&self) -> Image {
        match self.disk_type {
            DiskType::Fixed => self.build_fixed(),
            _ => self.build_dynamic(),
        }
    }

    fn footer(&self) -> Footer {
        Footer::new(
            self.disk_type,
            self.size,
            self.creator,
            self.time_stamp,
            self.unique_id,
        )
    }

    fn build_fixed(&self) -> Image {
        let mut bytes = self.fixed_data.clone();
        bytes.resize(self.size as usize, 0);
        let footer = self.footer();
        let footer_offset = bytes.len() as u64;
        bytes.extend_from_slice(&footer.to_bytes());
        Image {
            bytes,
            footer_offset,
            header_offset: None,
            table_offset: None,
            batmap_header_offset: None,
            locator_offsets: Vec::new(),
            block_offsets: Vec::new(),
        }
    }

    fn build_dynamic(&self) -> Image {
        let footer = self.footer();
        let bs = u64::from(self.block_size);
        let entries = self
            .max_table_entries
            .unwrap_or_else(|| u32::try_from(self.size.div_ceil(bs)).expect("entries"));
        let header_offset = 512u64;
        let table_offset = header_offset + HEADER_SIZE_U64;
        let mut end = table_offset + table_size_bytes(u64::from(entries));
        let batmap_header_offset = self.batmap.then_some(end);
        let batmap_sectors = u64::from(entries).div_ceil(8).div_ceil(512).max(1);
        if self.batmap {
            end += 512 + batmap_sectors * 512;
        }
        let mut header = DynamicHeader::new(table_offset, entries, self.block_size);
        let mut locator_offsets = Vec::new();
        let mut locator_data = Vec::new();
        if let Some(p) = &self.parent {
            header.parent_unique_id = p.unique_id;
            header.parent_time_stamp = TIME_STAMP;
            header.set_parent_name(&p.name);
            for (i, l) in p.locators.iter().enumerate() {
                let data = l.data();
                header.parent_locators[i] = ParentLocator {
                    platform_code: l.code.code(),
                    platform_data_space: l.space.field(),
                    platform_data_length: u32::try_from(data.len()).expect("path length"),
                    reserved: 0,
                    platform_data_offset: end,
                };
                locator_offsets.push(end);
                locator_data.push((end, data));
                end += l.space.region_bytes();
            }
        }
        header.seal();
        let mut bat = Bat {
            entries: vec![BAT_UNUSED; entries as usize],
        };
        let bitmap_len = bitmap_size_bytes(self.block_size);
        let mut block_offsets = Vec::new();
        for b in &self.blocks {
            bat.entries[b.index as usize] = u32::try_from(end / SECTOR_SIZE).expect("sector");
            block_offsets.push((b.index, end));
            end += bitmap_len + bs;
        }
        let footer_offset = end;
        let mut bytes = vec![0u8; (end + FOOTER_SIZE as u64) as usize];
        put(&mut bytes, 0, &footer.to_bytes());
        put(&mut bytes, header_offset, &header.to_bytes());
        put(&mut bytes, table_offset, &bat.to_bytes());
        if let Some(at) = batmap_header_offset {
            let mut map = vec![0u8; (batmap_sectors * 512) as usize];
            for b in &self.blocks {
                if b.bitmap.iter().all(|&x| x == 0xff) {
                    map[(b.index / 8) as usize] |= 0x80 >> (b.index % 8);
                }
            }
            let hdr = Batmap {
                batmap_offset: at + 512,
                batmap_size_sectors: batmap_sectors as u32,
                batmap_version: 0x0001_0002,
                checksum: Batmap::bitmap_checksum(&map),
                marker: 0,
            };
            put(&mut bytes, at, &hdr.to_bytes());
            put(&mut bytes, at + 512, &map);
        }
        for (at, data) in &locator_data {
            put(&mut bytes, *at, data);
        }
        for (b, (_, at)) in self.blocks.iter().zip(&block_offsets) {
            put(&mut bytes, *at, &b.bitmap);
            put(&mut bytes, at + bitmap_len, &b.data);
        }
        put(&mut bytes, footer_offset, &footer.to_bytes());
        Image {
            bytes,
            footer_offset,
            header_offset: Some(header_offset),
            table_offset: Some(table_offset),
            batmap_header_offset,
            locator_offsets,
            block_offsets,
        }
    }
}

fn put(bytes: &mut [u8], at: u64, data: &[u8]) {
    let at = at as usize;
    bytes[at..at + data.len()].copy_from_slice(data);
}

/// A built image and where its structures are.
#[derive(Debug, Clone)]
pub struct Image {
    pub bytes: Vec<u8>,
    pub footer_offset: u64,
    pub header_offset: Option<u64>,
    pub table_offset: Option<u64>,
    pub batmap_header_offset: Option<u64>,
    pub locator_offsets: Vec<u64>,
    /// (block index, byte offset of its bitmap).
    pub block_offsets: Vec<(u32, u64)>,
}

impl Image {
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.bytes).expect("write image");
        path
    }

    pub fn footer(&self) -> Footer {
        let at = self.footer_offset as usize;
        Footer::parse(&self.bytes[at..at + FOOTER_SIZE], self.footer_offset).expect("footer")
    }

    pub fn header(&self) -> DynamicHeader {
        let at = self.header_offset.expect("dynamic") as usize;
        DynamicHeader::parse(&self.bytes[at..at + 1024], at as u64).expect("header")
    }

    /// Changes the footer (both copies for a dynamic disk) and reseals its
    /// checksum, so that only the field changed is wrong.
    pub fn set_footer(&mut self, change: impl Fn(&mut Footer)) {
        let mut f = self.footer();
        change(&mut f);
        f.seal();
        let bytes = f.to_bytes();
        let at = self.footer_offset;
        put(&mut self.bytes, at, &bytes);
        if self.header_offset.is_some() {
            put(&mut self.bytes, 0, &bytes);
        }
    }

    /// Changes the dynamic header and reseals its checksum.
    pub fn set_header(&mut self, change: impl Fn(&mut DynamicHeader)) {
        let mut h = self.header();
        change(&mut h);
        h.seal();
        put(
            &mut self.bytes,
            self.header_offset.expect("dynamic"),
            &h.to_bytes(),
        );
    }

    pub fn put(&mut self, at: u64, data: &[u8]) {
        put(&mut self.bytes, at, data);
    }

    pub fn put_u32(&mut self, at: u64, v: u32) {
        self.put(at, &v.to_be_bytes());
    }

    pub fn get_u32(&self, at: u64) -> u32 {
        let at = at as usize;
        u32::from_be_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes"))
    }

    /// Byte offset of BAT entry `i`.
    pub fn bat_entry(&self, i: u32) -> u64 {
        self.table_offset.expect("dynamic") + 4 * u64::from(i)
    }
}

/// Deterministic bytes for block data, never zero (every byte is odd), so
/// that data read back can be told from zeros.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let i = i as u64;
            (i.wrapping_mul(2_654_435_761) >> 7) as u8 ^ seed.wrapping_mul(31) | 1
        })
        .collect()
}

/// The golden dynamic disk the damage cases mutate: 1 MiB virtual, 64 KiB
/// blocks (16 BAT entries), blocks 0, 3 and 15 allocated with data.
pub const GOLDEN_SIZE: u64 = 1 << 20;
pub const GOLDEN_BLOCK: u32 = 64 << 10;

pub fn golden_dynamic() -> Spec {
    let bs = GOLDEN_BLOCK as usize;
    Spec::dynamic(GOLDEN_SIZE, GOLDEN_BLOCK)
        .unique_id([0x42; 16])
        .block(0, &pattern(1, bs))
        .block(3, &pattern(3, bs))
        .block(15, &pattern(15, bs))
}

/// A 2 MiB fixed disk with data.
pub fn golden_fixed() -> Spec {
    Spec::fixed(2 << 20).data(pattern(9, 2 << 20))
}

/// A differencing disk naming `parent.vhd`: a W2ku absolute path whose data
/// space is in bytes (as Windows writes it) and a W2ru relative path whose
/// data space is in sectors (as the specification says).
pub fn golden_child(parent_id: [u8; 16]) -> Spec {
    let bs = GOLDEN_BLOCK as usize;
    Spec::differencing(
        GOLDEN_SIZE,
        GOLDEN_BLOCK,
        ParentLink {
            name: "parent.vhd".into(),
            unique_id: parent_id,
            locators: vec![
                Locator::w2ku("C:\\vms\\parent.vhd").space(Space::Bytes(4096)),
                Locator::w2ru(".\\parent.vhd").space(Space::Sectors(1)),
            ],
        },
    )
    .unique_id([0x43; 16])
    .block(1, &pattern(21, bs))
}

/// One damaged image (or set of files): what `check` must say about it.
pub struct Case {
    pub name: &'static str,
    /// Files to write into the case's folder; the first is the one checked.
    pub files: Vec<(String, Vec<u8>)>,
    /// Exit status of `check`.
    pub exit: i32,
    /// The error codes `check --json` must report, exactly (as a set).
    pub errors: Vec<&'static str>,
    /// The code whose finding is asserted in detail.
    pub code: Option<&'static str>,
    /// Its absolute offset.
    pub offset: Option<u64>,
    /// Texts its message must contain (the field and both values).
    pub message: Vec<String>,
}

impl Case {
    fn one(name: &'static str, bytes: Vec<u8>) -> Case {
        Case {
            name,
            files: vec![(format!("{name}.vhd"), bytes)],
            exit: 1,
            errors: Vec::new(),
            code: None,
            offset: None,
            message: Vec::new(),
        }
    }

    fn expect(mut self, code: &'static str, offset: u64, message: &[&str]) -> Case {
        self.errors.push(code);
        self.code = Some(code);
        self.offset = Some(offset);
        self.message = message.iter().map(|s| s.to_string()).collect();
        self
    }

    fn also(mut self, code: &'static str) -> Case {
        self.errors.push(code);
        self
    }

    fn not_vhd(mut self) -> Case {
        self.exit = 2;
        self
    }

    /// Writes the files into `dir`; returns the path to check.
    pub fn write(&self, dir: &Path) -> PathBuf {
        for (name, bytes) in &self.files {
            std::fs::write(dir.join(name), bytes).expect("write case");
        }
        dir.join(&self.files[0].0)
    }
}

fn hex(v: u32) -> String {
    format!("{v:#010x}")
}

/// A chain of `links` differencing disks over a dynamic base, each child
/// naming its parent by W2ru; returns (file name, bytes), leaf first.
pub fn chain(links: usize) -> Vec<(String, Vec<u8>)> {
    let id = |i: usize| [u8::try_from(i + 1).expect("small chain"); 16];
    let mut files = Vec::new();
    for i in (1..links).rev() {
        let parent = format!("link{}.vhd", i - 1);
        let spec = Spec::differencing(
            GOLDEN_SIZE,
            GOLDEN_BLOCK,
            ParentLink {
                name: parent.clone(),
                unique_id: id(i - 1),
                locators: vec![Locator::w2ru(&format!(".\\{parent}"))],
            },
        )
        .unique_id(id(i));
        files.push((format!("link{i}.vhd"), spec.build().bytes));
    }
    let base = Spec::dynamic(GOLDEN_SIZE, GOLDEN_BLOCK).unique_id(id(0));
    files.push(("link0.vhd".into(), base.build().bytes));
    files
}

/// Every damage the checker must name: one golden image, one mutation each.
pub fn damage_cases() -> Vec<Case> {
    let golden = golden_dynamic().build();
    let h_at = golden.header_offset.expect("dynamic");
    let t_at = golden.footer_offset;
    let mut cases = Vec::new();
    let mutate = |change: &dyn Fn(&mut Image)| {
        let mut img = golden.clone();
        change(&mut img);
        img.bytes
    };

    // Not a VHD at all.
    cases.push(Case::one("empty", Vec::new()).not_vhd());
    cases.push(Case::one("garbage_511", pattern(7, 511)).not_vhd());
    cases.push(Case::one("garbage", pattern(8, 64 * 1024)).not_vhd());
    let mut both = golden.clone();
    both.put(0, b"XXXXXXXX");
    both.put(t_at, b"XXXXXXXX");
    cases.push(Case::one("footer_cookie_both_copies", both.bytes).not_vhd());

    // Footer.
    cases.push(
        Case::one("footer_cookie", mutate(&|i| i.put(t_at, b"Xonectix"))).expect(
            "FOOTER_MISSING",
            t_at,
            &["cookie", "Xonectix", "conectix"],
        ),
    );
    cases.push(
        Case::one(
            "footer_version",
            mutate(&|i| i.set_footer(|f| f.file_format_version = 0x0002_0000)),
        )
        .expect(
            "FOOTER_VERSION",
            t_at + 12,
            &["version", "0x00020000", "0x00010000"],
        ),
    );
    let f = golden.footer();
    let bad = f.checksum ^ 0x0101;
    cases.push(
        Case::one(
            "footer_checksum",
            mutate(&|i| {
                i.put_u32(t_at + 64, bad);
                i.put_u32(64, bad);
            }),
        )
        .expect(
            "FOOTER_CHECKSUM",
            t_at + 64,
            &["checksum", &hex(bad), &hex(f.checksum)],
        ),
    );
    cases.push(
        Case::one(
            "footer_disk_type_5",
            mutate(&|i| i.set_footer(|f| f.disk_type_code = 5)),
        )
        .expect(
            "FOOTER_DISK_TYPE",
            t_at + 60,
            &["disk type", "found 5", "2 (fixed)"],
        ),
    );
    cases.push(
        Case::one(
            "footer_data_offset_past_eof",
            mutate(&|i| i.set_footer(|f| f.data_offset = 0x1000_0000)),
        )
        .expect(
            "HEADER_MISSING",
            t_at + 16,
            &["data offset", "0x10000000", "inside the file"],
        ),
    );
    {
        let mut img = golden.clone();
        let mut head = Footer::parse(&img.bytes[..512], 0).expect("head");
        head.time_stamp += 1;
        head.seal();
        img.put(0, &head.to_bytes());
        cases.push(Case::one("footer_copies_disagree", img.bytes).expect(
            "FOOTER_COPIES_DIFFER",
            27, // the low byte of the timestamp (offset 24, big-endian)
            &[
                "differs",
                &format!("{t_at:#x}"),
                "timestamp",
                &format!("{:#010x}", TIME_STAMP + 1),
                &format!("{TIME_STAMP:#010x}"),
            ],
        ));
    }

    // Dynamic header.
    cases.push(
        Case::one("header_cookie", mutate(&|i| i.put(h_at, b"Xxsparse"))).expect(
            "HEADER_COOKIE",
            h_at,
            &["cookie", "Xxsparse", "cxsparse"],
        ),
    );
    cases.push(
        Case::one(
            "header_version",
            mutate(&|i| i.set_header(|h| h.header_version = 0x0003_0000)),
        )
        .expect(
            "HEADER_VERSION",
            h_at + 24,
            &["version", "0x00030000", "0x00010000"],
        ),
    );
    let h = golden.header();
    let bad = h.checksum ^ 0x0202;
    cases.push(
        Case::one("header_checksum", mutate(&|i| i.put_u32(h_at + 36, bad))).expect(
            "HEADER_CHECKSUM",
            h_at + 36,
            &["checksum", &hex(bad), &hex(h.checksum)],
        ),
    );
    cases.push(
        Case::one(
            "block_size_0",
            mutate(&|i| i.set_header(|h| h.block_size = 0)),
        )
        .expect(
            "HEADER_BLOCK_SIZE",
            h_at + 32,
            &["block size", "found 0", "power of two"],
        ),
    );
    cases.push(
        Case::one(
            "block_size_not_power_of_two",
            mutate(&|i| i.set_header(|h| h.block_size = 3 << 15)),
        )
        .expect(
            "HEADER_BLOCK_SIZE",
            h_at + 32,
            &["block size", "found 98304", "power of two"],
        ),
    );
    cases.push(
        Case::one(
            "max_table_entries_beyond_file",
            mutate(&|i| i.set_header(|h| h.max_table_entries = 0x1000_0000)),
        )
        .expect(
            "BAT_OUTSIDE",
            h_at + 16,
            &[
                "268435456 entries",
                "past the footer",
                &format!("{t_at:#x}"),
            ],
        ),
    );
    cases.push(
        Case::one(
            "table_offset_past_eof",
            mutate(&|i| i.set_header(|h| h.table_offset = 0x4000_0000)),
        )
        .expect(
            "BAT_OUTSIDE",
            h_at + 16,
            &["0x40000000", "past the footer", &format!("{t_at:#x}")],
        ),
    );
    cases.push(
        Case::one(
            "table_entries_too_few",
            mutate(&|i| i.set_header(|h| h.max_table_entries = 4)),
        )
        .expect(
            "HEADER_TABLE_ENTRIES",
            h_at + 28,
            &["max table entries", "found 4", "at least 16"],
        ),
    );

    // BAT and blocks.
    let (_, b0) = golden.block_offsets[0];
    let e3 = golden.bat_entry(3);
    let s0 = u32::try_from(b0 / 512).expect("sector");
    cases.push(
        Case::one("blocks_overlap", mutate(&|i| i.put_u32(e3, s0 + 1))).expect(
            "BAT_OVERLAP",
            e3,
            &["overlap", &format!("{b0:#x}"), &format!("{:#x}", b0 + 512)],
        ),
    );
    let bat_sector = u32::try_from(golden.table_offset.expect("dynamic") / 512).expect("sector");
    cases.push(
        Case::one("block_overlaps_bat", mutate(&|i| i.put_u32(e3, bat_sector))).expect(
            "BAT_OVERLAP_METADATA",
            e3,
            &["BAT entry 3", "overlaps the BAT"],
        ),
    );
    cases.push(
        Case::one("block_overlaps_header", mutate(&|i| i.put_u32(e3, 1))).expect(
            "BAT_OVERLAP_METADATA",
            e3,
            &["BAT entry 3", "dynamic header"],
        ),
    );
    let e15 = golden.bat_entry(15);
    cases.push(
        Case::one(
            "bat_entry_past_eof",
            mutate(&|i| i.put_u32(e15, 0x0010_0000)),
        )
        .expect(
            "BAT_ENTRY_OUTSIDE",
            e15,
            &["BAT entry 15", "0x100000", "past the footer"],
        ),
    );
    {
        // The file cut in the middle of its last block: the footer is gone too.
        let (_, b15) = golden.block_offsets[2];
        let cut = b15 + 512 + 4096;
        let bytes = golden.bytes[..cut as usize].to_vec();
        cases.push(
            Case::one("truncated_last_block", bytes)
                .expect(
                    "BAT_ENTRY_OUTSIDE",
                    e15,
                    &["BAT entry 15", "past the end of the file", "truncated"],
                )
                .also("FOOTER_MISSING"),
        );
    }
    {
        // Cut by exactly the footer: every block is whole; only the footer is missing.
        let bytes = golden.bytes[..t_at as usize].to_vec();
        cases.push(Case::one("footer_cut_off", bytes).also("FOOTER_MISSING"));
    }

    // More footer and header fields.
    cases.push(
        Case::one(
            "footer_features_reserved_bit",
            mutate(&|i| i.set_footer(|f| f.features = 0)),
        )
        .expect(
            "FOOTER_FEATURES",
            t_at + 8,
            &["features", "0x00000000", "0x2"],
        ),
    );
    cases.push(
        Case::one(
            "footer_unique_id_zero",
            mutate(&|i| i.set_footer(|f| f.unique_id = [0; 16])),
        )
        .expect("FOOTER_UNIQUE_ID", t_at + 68, &["unique id", "zero"]),
    );
    cases.push(
        Case::one(
            "footer_saved_state_2",
            mutate(&|i| i.set_footer(|f| f.saved_state = 2)),
        )
        .expect(
            "FOOTER_SAVED_STATE",
            t_at + 84,
            &["saved state", "found 2", "0 or 1"],
        ),
    );
    cases.push(
        Case::one(
            "footer_current_size_unaligned",
            mutate(&|i| i.set_footer(|f| f.current_size -= 1)),
        )
        .expect(
            "FOOTER_CURRENT_SIZE",
            t_at + 48,
            &["current size", "1048575", "multiple of 512"],
        ),
    );
    cases.push(
        Case::one(
            "header_data_offset",
            mutate(&|i| i.set_header(|h| h.data_offset = 0x1234)),
        )
        .expect(
            "HEADER_DATA_OFFSET",
            h_at + 8,
            &["data offset", "0x1234", "0xffffffffffffffff"],
        ),
    );
    {
        let fixed = golden_fixed().build();
        let ft = fixed.footer_offset;
        let mut img = fixed.clone();
        img.set_footer(|f| f.current_size -= 512);
        cases.push(Case::one("fixed_current_size", img.bytes).expect(
            "FIXED_SIZE",
            ft + 48,
            &["current size 2096640", "2097152 bytes"],
        ));
        let mut img = fixed.clone();
        let stored = img.get_u32(ft + 64);
        img.put_u32(ft + 64, !stored);
        cases.push(Case::one("fixed_footer_checksum", img.bytes).expect(
            "FOOTER_CHECKSUM",
            ft + 64,
            &["checksum", &hex(!stored), &hex(stored)],
        ));
    }

    // Parent locators (on the golden differencing disk).
    {
        let child = golden_child([0x50; 16]).build();
        let parent = golden_dynamic().unique_id([0x50; 16]).build();
        let ch = child.header_offset.expect("dynamic");
        let with_parent = |name: &'static str, img: Image| Case {
            files: vec![
                ("child.vhd".into(), img.bytes),
                ("parent.vhd".into(), parent.bytes.clone()),
            ],
            ..Case::one(name, Vec::new())
        };
        let mut img = child.clone();
        img.set_header(|h| h.parent_locators[1].platform_code = h.parent_locators[0].platform_code);
        cases.push(with_parent("locator_duplicate", img).expect(
            "LOCATOR_DUPLICATE",
            ch + 576 + 24,
            &["locator 1", "W2ku", "twice"],
        ));
        let mut img = child.clone();
        img.set_header(|h| h.parent_locators[1].platform_data_offset = 0x1000_0000);
        cases.push(with_parent("locator_outside", img).expect(
            "LOCATOR_OUTSIDE",
            ch + 576 + 24 + 16,
            &["locator 1", "0x10000000", "past the footer"],
        ));
        // Locator 1's space is one sector (written as 1): 600 bytes exceed
        // it, and run into the block that follows.
        let mut img = child.clone();
        img.set_header(|h| h.parent_locators[1].platform_data_length = 600);
        cases.push(
            with_parent("locator_length", img)
                .expect(
                    "LOCATOR_LENGTH",
                    ch + 576 + 24 + 8,
                    &["locator 1", "data length 600", "data space 512"],
                )
                .also("BAT_OVERLAP_METADATA"),
        );
        let mut img = child.clone();
        img.set_header(|h| {
            for l in &mut h.parent_locators {
                l.platform_code = 0;
            }
        });
        cases.push(with_parent("no_parent_locator", img).expect(
            "NO_PARENT_LOCATOR",
            ch + 576,
            &["without any usable parent locator", "parent.vhd"],
        ));
        let mut img = child.clone();
        img.set_header(|h| h.parent_unique_id = [0; 16]);
        cases.push(
            with_parent("header_parent_id_zero", img)
                .expect("HEADER_PARENT_ID", ch + 40, &["parent unique id", "zero"])
                .also("PARENT_ID_MISMATCH"),
        );
    }

    // Batmap.
    let with_batmap = golden_dynamic().with_batmap().build();
    let bm_at = with_batmap.batmap_header_offset.expect("batmap");
    // tdbatmap header: cookie 8, batmap offset 8, size 4, version 4, checksum at 24.
    let stored = with_batmap.get_u32(bm_at + 24);
    {
        let mut img = with_batmap.clone();
        img.put_u32(bm_at + 24, stored ^ 0x10);
        cases.push(Case::one("batmap_checksum", img.bytes).expect(
            "BATMAP_CHECKSUM",
            bm_at + 24,
            &["checksum", &hex(stored ^ 0x10), &hex(stored)],
        ));
    }
    {
        // Block 5 is not allocated; mark it written and reseal the checksum.
        let mut img = with_batmap.clone();
        let map_at = bm_at + 512;
        img.bytes[map_at as usize] |= 0x80 >> 5;
        let map = img.bytes[map_at as usize..map_at as usize + 512].to_vec();
        img.put_u32(bm_at + 24, Batmap::bitmap_checksum(&map));
        cases.push(Case::one("batmap_marks_unallocated", img.bytes).expect(
            "BATMAP_INCONSISTENT",
            map_at,
            &["block 5", "not allocated"],
        ));
    }

    // Parents.
    let child = golden_child([0x50; 16]).build();
    let ch_at = child.header_offset.expect("dynamic");
    cases.push(Case {
        files: vec![("child.vhd".into(), child.bytes.clone())],
        ..Case::one("missing_parent", Vec::new()).expect(
            "PARENT_NOT_FOUND",
            ch_at + 64,
            &[
                "parent.vhd",
                "not found",
                "C:\\\\vms\\\\parent.vhd",
                "not followed",
                "{dir}/parent.vhd",
            ],
        )
    });
    {
        let other = golden_dynamic().unique_id([0x51; 16]).build();
        cases.push(Case {
            files: vec![
                ("child.vhd".into(), child.bytes.clone()),
                ("parent.vhd".into(), other.bytes),
            ],
            ..Case::one("parent_id_mismatch", Vec::new()).expect(
                "PARENT_ID_MISMATCH",
                ch_at + 40,
                &[
                    "unique id",
                    "51515151-5151-5151-5151-515151515151",
                    "50505050-5050-5050-5050-505050505050",
                ],
            )
        });
    }
    {
        let link = |name: &str, id: u8, parent: &str, parent_id: u8| {
            let spec = Spec::differencing(
                GOLDEN_SIZE,
                GOLDEN_BLOCK,
                ParentLink {
                    name: parent.into(),
                    unique_id: [parent_id; 16],
                    locators: vec![Locator::w2ru(&format!(".\\{parent}"))],
                },
            )
            .unique_id([id; 16]);
            (name.to_string(), spec.build().bytes)
        };
        cases.push(Case {
            files: vec![
                link("a.vhd", 0xa, "b.vhd", 0xb),
                link("b.vhd", 0xb, "a.vhd", 0xa),
            ],
            ..Case::one("parent_loop", Vec::new()).expect(
                "PARENT_LOOP",
                ch_at + 576,
                &["a.vhd", "loops"],
            )
        });
    }
    cases.push(Case {
        files: chain(17),
        ..Case::one("chain_too_deep", Vec::new()).expect(
            "CHAIN_TOO_DEEP",
            ch_at + 576,
            &["16 links"],
        )
    });
    cases
}

/// What one run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the real binary; fails the test on a panic.
pub fn vhdkit(args: &[&std::ffi::OsStr]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_vhdkit"))
        .args(args)
        .output()
        .expect("run vhdkit");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "vhdkit {args:?} panicked: {}",
        run.stderr
    );
    run
}

/// `vhdkit check --json PATH`, parsed.
pub fn check_json(path: &Path) -> (Run, serde_json::Value) {
    let run = vhdkit(&["check".as_ref(), "--json".as_ref(), path.as_os_str()]);
    let json = serde_json::from_str(&run.stdout).unwrap_or(serde_json::Value::Null);
    (run, json)
}

/// The findings of a `check --json` answer with severity "error".
pub fn error_codes(json: &serde_json::Value) -> Vec<String> {
    let mut codes: Vec<String> = json["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|f| f["severity"] == "error")
                .filter_map(|f| f["code"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    codes.sort();
    codes.dedup();
    codes
}

/// Whether `tool` runs (`tool probe`); prints a skip note when it does not.
pub fn have_tool(tool: &str, probe: &str) -> bool {
    let ok = Command::new(tool)
        .arg(probe)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("skipping: {tool} is not installed");
    }
    ok
}

/// Runs `cmd args` (in `dir` when given) with `stdin` fed in; its output.
pub fn run_tool(
    dir: Option<&Path>,
    cmd: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut command = Command::new(cmd);
    if let Some(d) = dir {
        command.current_dir(d);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs the fixture script `testdata/<script>` into a temporary folder,
/// once per test binary (`cell` holds the folder), and returns the folder.
pub fn script_disks(
    cell: &'static std::sync::OnceLock<tempfile::TempDir>,
    script: &str,
) -> &'static Path {
    cell.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(script);
        let out = Command::new("bash")
            .arg(path)
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .path()
}

/// A parent (`parent_id`, block 0 = `block0`) at `root/elsewhere/base.vhd`
/// and a differencing child at `root/child/child.vhd` whose locators
/// `locators` makes from the parent's path. Returns (root, child, parent).
pub fn chain_in_two_folders(
    parent_id: [u8; 16],
    block0: &[u8],
    locators: impl Fn(&Path) -> Vec<Locator>,
) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let elsewhere = root.path().join("elsewhere");
    let child_dir = root.path().join("child");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(&child_dir).unwrap();
    let parent = Spec::dynamic(GOLDEN_SIZE, GOLDEN_BLOCK)
        .unique_id(parent_id)
        .block(0, block0)
        .build()
        .write(&elsewhere, "base.vhd");
    let child = Spec::differencing(
        GOLDEN_SIZE,
        GOLDEN_BLOCK,
        ParentLink {
            name: "base.vhd".into(),
            unique_id: parent_id,
            locators: locators(&parent),
        },
    )
    .unique_id([0x61; 16])
    .build()
    .write(&child_dir, "child.vhd");
    (root, child, parent)
}
