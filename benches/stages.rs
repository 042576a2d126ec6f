//! Criterion benches of the pipeline's hot inner stages: the zero scan, the
//! block classification over a sparse dynamic VHD (BAT walk), the digests,
//! and the block copy. Whole commands are timed by `benches/compare.rs` and
//! `vhdkit bench`.
//!
//! Kept short on purpose (10 samples, about 2 s per bench):
//! `cargo bench --bench stages`. Test disks go to a temporary folder in
//! `$VHDKIT_BENCH_DIR`, or the system's temporary folder.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vhdkit::commands::bench::generate::{
    generate, DataKind, GenerateOptions, WyRand, DEFAULT_SEED,
};
use vhdkit::disk::VirtualDisk;
use vhdkit::format::footer::Creator;
use vhdkit::format::{DiskType, DynamicHeader, Footer};
use vhdkit::pipeline::digest::{digest_bytes, Algo, Chunk, DigestSink};
use vhdkit::pipeline::plan::{self, full_bitmap, Plan, StoredBlock};
use vhdkit::pipeline::{self, zero::is_zero, DataSource, NoProgress};

const BLOCK: usize = 2 << 20;
const DIGEST_BYTES: usize = 64 << 20;
/// Virtual size of the test disk (128 blocks, 30 % of them data): small, so
/// that each block-copy iteration writes under 100 MB.
const DISK_BYTES: u64 = 256 << 20;

fn short<'c>(
    c: &'c mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    g
}

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    WyRand::new(DEFAULT_SEED).fill(&mut v);
    v
}

fn zero_scan(c: &mut Criterion) {
    let zeros = vec![0u8; BLOCK];
    let data = random(BLOCK);
    let mut last = vec![0u8; BLOCK];
    if let Some(b) = last.last_mut() {
        *b = 1;
    }
    let mut g = short(c, "zero_scan");
    g.throughput(Throughput::Bytes(BLOCK as u64));
    g.bench_function("2MiB zeros", |b| b.iter(|| is_zero(black_box(&zeros))));
    g.bench_function("2MiB random", |b| b.iter(|| is_zero(black_box(&data))));
    g.bench_function("2MiB zeros, last byte set", |b| {
        b.iter(|| is_zero(black_box(&last)))
    });
    g.finish();
}

/// A sparse test disk: raw, and the same as a dynamic VHD made by `convert`.
struct Disks {
    _dir: tempfile::TempDir,
    raw: PathBuf,
    dynamic: PathBuf,
}

fn disks() -> Disks {
    let base = std::env::var_os("VHDKIT_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::Builder::new()
        .prefix(".vhdkit-criterion-")
        .tempdir_in(&base)
        .expect("temporary folder");
    let raw = dir.path().join("sparse.raw");
    generate(
        &raw,
        &GenerateOptions {
            size_bytes: DISK_BYTES,
            allocated: 0.3,
            data: DataKind::Random,
            block_size_bytes: BLOCK as u64,
            seed: DEFAULT_SEED,
        },
    )
    .expect("generate");
    let dynamic = dir.path().join("sparse.vhd");
    vhdkit::commands::convert::convert(&raw, &dynamic, &Default::default(), &NoProgress)
        .expect("convert");
    Disks {
        _dir: dir,
        raw,
        dynamic,
    }
}

fn classify(c: &mut Criterion, d: &Disks) {
    let mut g = short(c, "classify");
    g.throughput(Throughput::Bytes(DISK_BYTES));
    g.bench_function("open dynamic (footer, header, BAT)", |b| {
        b.iter(|| vhdkit::disk::open(black_box(&d.dynamic)).expect("open"))
    });
    let dynamic = vhdkit::disk::open(&d.dynamic).expect("open");
    g.bench_function("dynamic 256MiB 30%", |b| {
        b.iter(|| plan::classify(dynamic.as_ref(), DISK_BYTES, BLOCK as u64).expect("classify"))
    });
    let raw = vhdkit::disk::open(&d.raw).expect("open");
    g.bench_function("raw 256MiB 30% (holes)", |b| {
        b.iter(|| plan::classify(raw.as_ref(), DISK_BYTES, BLOCK as u64).expect("classify"))
    });
    g.finish();
}

fn digests(c: &mut Criterion) {
    let data = random(DIGEST_BYTES);
    let mut g = short(c, "digest");
    g.throughput(Throughput::Bytes(DIGEST_BYTES as u64));
    for algo in Algo::ALL {
        g.bench_function(format!("{} 64MiB", algo.name()), |b| {
            b.iter(|| digest_bytes(black_box(&data), &[algo]))
        });
    }
    g.bench_function("DigestSink md5+sha512+crc32 64MiB (1MiB chunks)", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                let mut sink = DigestSink::start(s, &Algo::ALL);
                for chunk in data.chunks(1 << 20) {
                    sink.feed(Chunk::Borrowed(chunk));
                }
                sink.finish()
            })
        })
    });
    g.finish();
}

/// The dynamic plan `convert --to dynamic` makes for `disk`.
fn dynamic_plan(disk: &dyn VirtualDisk) -> Plan {
    let classes = plan::classify(disk, DISK_BYTES, BLOCK as u64).expect("classify");
    let bitmap = full_bitmap(BLOCK as u32);
    let blocks: Vec<StoredBlock> = classes
        .iter()
        .enumerate()
        .filter(|(_, &data)| data)
        .map(|(i, _)| StoredBlock {
            block_index: i as u64,
            source_offset: i as u64 * BLOCK as u64,
            len: BLOCK as u64,
            bitmap: Arc::clone(&bitmap),
        })
        .collect();
    let creator = Creator::by_name("win").expect("creator");
    let footer = Footer::new(DiskType::Dynamic, DISK_BYTES, creator, 0, [7; 16]);
    plan::plan_dynamic(
        &footer,
        &DynamicHeader::new(0, 0, BLOCK as u32),
        &[],
        &blocks,
    )
    .expect("plan")
}

fn block_copy(c: &mut Criterion, d: &Disks) {
    let raw = vhdkit::disk::open(&d.raw).expect("open");
    let classes = plan::classify(raw.as_ref(), DISK_BYTES, BLOCK as u64).expect("classify");
    let flat = plan::plan_flat(&classes, DISK_BYTES, DISK_BYTES, BLOCK as u64, None);
    let dynamic = dynamic_plan(raw.as_ref());
    let dir = d.raw.parent().unwrap_or(Path::new("."));
    let data_bytes = flat.data_blocks * BLOCK as u64;
    let mut g = short(c, "block_copy");
    g.throughput(Throughput::Bytes(data_bytes));
    for (name, plan, algos) in [
        ("raw -> raw, no digest", &flat, &[][..]),
        ("raw -> dynamic, no digest", &dynamic, &[][..]),
        (
            "raw -> dynamic, md5+sha512",
            &dynamic,
            &[Algo::Md5, Algo::Sha512][..],
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let out = tempfile::NamedTempFile::new_in(dir).expect("temporary file");
                pipeline::run(
                    plan,
                    &DataSource::Disk(raw.as_ref()),
                    out.as_file(),
                    out.path(),
                    algos,
                    &NoProgress,
                )
                .expect("run")
            })
        });
    }
    g.finish();
}

fn on_disks(c: &mut Criterion) {
    let d = disks();
    classify(c, &d);
    block_copy(c, &d);
}

criterion_group!(benches, zero_scan, digests, on_disks);
criterion_main!(benches);
