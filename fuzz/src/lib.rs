//! The bodies of vhdkit's fuzz targets, as plain functions.
//!
//! Each `fuzz_targets/<name>.rs` calls [`run`] with its name; the main
//! crate's `tests/fuzz_regressions.rs` includes this file with `#[path]` and
//! replays every file under `fuzz/regressions/<name>/` through the same
//! function on stable Rust. So this file uses only `std` and `vhdkit`.
//!
//! Invariants (a broken one panics, which libFuzzer reports as a crash):
//! - no panic anywhere in the library;
//! - no single allocation larger than the input's size allows
//!   ([`largest_allocation`], counted by a global allocator);
//! - `check` never says ok on an image `info` cannot open;
//! - an image `check` accepts converts to a dynamic VHD that reads back
//!   equal (small images only).

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use vhdkit::disk::device::{Device, MemDevice, SliceDevice};
use vhdkit::format::bat::Bat;
use vhdkit::format::footer::Footer;
use vhdkit::format::header::DynamicHeader;
use vhdkit::format::image::{has_head_footer, tail_footer_kind, Layout};
use vhdkit::fs::detect::detect;
use vhdkit::fs::ext::desc::GroupDescs;
use vhdkit::fs::ext::superblock::Superblock;
use vhdkit::fs::{ext, fat};
use vhdkit::partition::{self, GrowRule, TableKind};

/// Counts the largest single allocation since the last [`reset_largest`].
pub struct CountingAlloc;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is only an atomic maximum.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn reset_largest() {
    LARGEST.store(0, Ordering::Relaxed);
}

/// The largest single allocation since the last reset.
pub fn largest_allocation() -> usize {
    LARGEST.load(Ordering::Relaxed)
}

/// Allocations a target may make whatever the input: buffers of fixed size
/// (a convert's block buffers, a 64 KiB read window).
const FIXED_ALLOWANCE: usize = 8 << 20;

/// Fails when one allocation exceeded what `bytes` bytes of input (or of a
/// device made from it) can justify: the fixed allowance plus 64 per byte.
fn assert_alloc_bounded(target: &str, bytes: usize) {
    let limit = FIXED_ALLOWANCE.saturating_add(bytes.saturating_mul(64));
    let largest = largest_allocation();
    assert!(
        largest <= limit,
        "{target}: one allocation of {largest} bytes for {bytes} bytes of input (limit {limit})"
    );
}

/// The targets, by name.
pub const TARGETS: &[&str] = &["image", "whole_image", "partition", "ext", "fat", "expand"];

/// Runs target `name` on `data`; panics when an invariant breaks.
pub fn run(name: &str, data: &[u8]) {
    reset_largest();
    let bound = match name {
        "image" => image(data),
        "whole_image" => whole_image(data),
        "partition" => partition_table(data),
        "ext" => ext_fs(data),
        "fat" => fat_fs(data),
        "expand" => expand_plan(data),
        other => panic!("no fuzz target named {other}"),
    };
    assert_alloc_bounded(name, bound);
}

/// Footer, dynamic header, BAT and the whole layout, from bytes.
fn image(data: &[u8]) -> usize {
    let _ = tail_footer_kind(data);
    let _ = has_head_footer(data);
    if let Some(layout) = Layout::parse(data) {
        let _ = layout.structures_end();
        let _ = layout.disk_type();
        if let Some(Ok(parts)) = &layout.dynamic {
            locators(&parts.header, data);
        }
    }
    let tail = data
        .len()
        .checked_sub(512)
        .map(|at| Footer::parse(&data[at..], at as u64));
    for f in [Some(Footer::parse(data, 0)), tail]
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = f.to_bytes();
        let _ = f.computed_checksum();
        let _ = f.disk_type();
    }
    if let Some(rest) = data.get(512..) {
        if let Ok(h) = DynamicHeader::parse(rest, 512) {
            let _ = h.to_bytes();
            let _ = h.parent_name();
            let _ = h.bitmap_size_bytes();
            locators(&h, data);
            // The BAT as the header sizes it, from whatever follows.
            if let Some(bat) = data.get(1536..) {
                if let Ok(bat) = Bat::parse(bat, h.max_table_entries, 1536) {
                    let _ = bat.allocated_count();
                    let _ = bat.to_bytes();
                }
            }
        }
    }
    data.len()
}

fn locators(h: &DynamicHeader, data: &[u8]) {
    for loc in &h.parent_locators {
        let _ = loc.data_space_bytes();
        let start = usize::try_from(loc.platform_data_offset).unwrap_or(usize::MAX);
        let len = usize::try_from(loc.platform_data_length).unwrap_or(usize::MAX);
        if let Some(bytes) = start.checked_add(len).and_then(|end| data.get(start..end)) {
            let _ = loc.decode_path(bytes);
        }
    }
}

/// A private folder in /dev/shm (or the temp dir) for this process's files.
fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("vhdkit-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}

/// Removes this process's scratch folder (the regression test calls it;
/// a libFuzzer run leaves `vhdkit-fuzz-<pid>` in /dev/shm behind).
pub fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch_dir());
}

/// Virtual sizes up to this are converted and compared.
const ROUND_TRIP_MAX: u64 = 8 << 20;

/// `info` and `check` on a whole image (a file: both take a path), and a
/// convert round trip of what `check` accepts.
fn whole_image(data: &[u8]) -> usize {
    let dir = scratch_dir();
    let input = dir.join("in.vhd");
    let output = dir.join("out.vhd");
    let _ = std::fs::remove_file(&output);
    std::fs::write(&input, data).expect("write the input");
    let info = vhdkit::commands::info::info(&input);
    let mut options = vhdkit::check::Options::default();
    options.now_unix = Some(1_800_000_000);
    let report = vhdkit::check::check_path(&input, &options);
    if let Ok(r) = &report {
        if r.ok {
            if let Err(e) = &info {
                panic!("check says ok, info cannot open it: {e}");
            }
            round_trip(&input, &output);
        }
    }
    let _ = std::fs::remove_file(&output);
    data.len()
}

fn round_trip(input: &Path, output: &Path) {
    let Ok(src) = vhdkit::disk::open(input) else {
        panic!("check says ok, the disk cannot be opened");
    };
    if src.size_bytes() > ROUND_TRIP_MAX {
        return;
    }
    let mut opts = vhdkit::commands::convert::ConvertOptions::default();
    opts.no_sync = true;
    let progress = vhdkit::pipeline::NoProgress;
    if let Err(e) = vhdkit::commands::convert::convert(input, output, &opts, &progress) {
        panic!("check says ok, convert fails: {e}");
    }
    let back = vhdkit::disk::open(output).expect("open the converted image");
    let len = usize::try_from(src.size_bytes()).expect("small size");
    assert!(
        back.size_bytes() >= src.size_bytes(),
        "converted size {} below the input's {}",
        back.size_bytes(),
        src.size_bytes()
    );
    let mut a = vec![0u8; len];
    let mut b = vec![0u8; len];
    src.read_at(0, &mut a).expect("read the input");
    back.read_at(0, &mut b).expect("read the output");
    assert!(a == b, "convert round trip reads back different data");
}

/// The MBR/GPT reader over the input as a disk.
fn partition_table(data: &[u8]) -> usize {
    let dev = MemDevice {
        bytes: data.to_vec(),
    };
    if let Ok(table) = partition::read_table(&dev) {
        let _ = vhdkit::cloud::nova::preconditions(&table);
        for p in &table.partitions {
            let _ = p.start_lba.checked_add(p.size_sectors);
        }
    }
    data.len()
}

/// The input as a device grown to `new_len` bytes (zeros after it).
fn grown(data: &[u8], new_len: usize) -> MemDevice {
    let mut bytes = data.to_vec();
    bytes.resize(new_len.max(data.len()), 0);
    MemDevice { bytes }
}

/// Twice the input, in whole 4 KiB pages.
fn double(len: usize) -> usize {
    len.saturating_mul(2).div_ceil(4096).saturating_mul(4096)
}

/// The ext superblock and group descriptors, then probe, plan and grow.
fn ext_fs(data: &[u8]) -> usize {
    if let Some(sb) = data
        .get(1024..)
        .and_then(|b| Superblock::parse(b, 1024).ok())
    {
        let _ = sb.feature_names();
        let _ = sb.csum_seed();
        let _ = sb.clusters_per_group();
        descriptors(&sb, data);
    }
    let new_len = double(data.len());
    let mut dev = grown(data, new_len);
    if ext::probe(&dev).is_ok() {
        if let Ok(plan) = ext::plan_grow(&dev, new_len as u64) {
            let _ = ext::apply_grow(&mut dev, &plan);
        }
    }
    new_len
}

fn descriptors(sb: &Superblock, data: &[u8]) {
    let bs = u64::from(sb.block_size());
    let groups = sb.group_count_for(sb.blocks_count);
    let at = u64::from(sb.first_data_block)
        .checked_add(1)
        .and_then(|b| b.checked_mul(bs));
    let (Some(at), Ok(count), Ok(size)) = (
        at.and_then(|a| usize::try_from(a).ok()),
        usize::try_from(groups),
        usize::try_from(sb.desc_size),
    ) else {
        return;
    };
    let Some(bytes) = data.get(at..) else { return };
    if let Some(d) = GroupDescs::from_bytes(bytes.to_vec(), size, count) {
        for g in 0..d.count() {
            let _ = (d.block_bitmap(g), d.inode_bitmap(g), d.inode_table(g));
            let _ = (d.free_blocks(g), d.free_inodes(g), d.flags(g));
            let _ = d.compute_checksum(sb, g);
            let _ = d.block_bitmap_csum(g);
        }
    }
}

/// The FAT BPB and its layout, then probe, plan and grow.
fn fat_fs(data: &[u8]) -> usize {
    if let Some(b) = fat::Bpb::parse(data) {
        let _ = b.to_bytes();
        let _ = fat::Layout::validate(&b, data.len() as u64);
    }
    let new_len = double(data.len());
    let mut dev = grown(data, new_len);
    if let Ok(Some(_)) = fat::probe(&dev) {
        if let Ok(plan) = fat::plan_grow(&dev, new_len as u64) {
            let _ = fat::apply_grow(&mut dev, &plan);
        }
    }
    new_len
}

/// What `expand --dry-run` does, on the input as a disk grown by 2 MiB:
/// partition plan and apply, then the filesystem plan over the partition.
fn expand_plan(data: &[u8]) -> usize {
    let new_len = data.len().div_ceil(512).saturating_mul(512) + (2 << 20);
    let mut dev = grown(data, new_len);
    let rule = [GrowRule::Nova, GrowRule::Growpart, GrowRule::GrowpartLegacy][data.len() % 3];
    let Ok(table) = partition::read_table(&dev) else {
        return new_len;
    };
    let (offset, len) = if table.kind == TableKind::None {
        (0, new_len as u64)
    } else {
        if vhdkit::cloud::nova::preconditions(&table).is_err() {
            return new_len;
        }
        let Ok(plan) = partition::plan_grow_partition(&dev, new_len as u64, rule) else {
            return new_len;
        };
        if partition::apply(&mut dev, &plan).is_err() {
            return new_len;
        }
        let Some(p) = plan.after.partitions.first() else {
            return new_len;
        };
        (
            p.start_lba.saturating_mul(512),
            p.size_sectors.saturating_mul(512),
        )
    };
    let Ok(mut part) = SliceDevice::new(&mut dev, offset, len) else {
        return new_len;
    };
    let kind = detect(&part);
    if kind.is_ext() {
        if let Ok(plan) = ext::plan_grow(&part, len) {
            let _ = ext::apply_grow(&mut part, &plan);
        }
    } else if kind.is_fat() {
        if let Ok(plan) = fat::plan_grow(&part, len) {
            let _ = fat::apply_grow(&mut part, &plan);
        }
    }
    let _ = Device::size_bytes(&part);
    new_len
}
