//! The input read path, measured as issue 13 asks: a file digested through
//! the mapped `Source` (with its SIGBUS guard and re-`fstat`) against the
//! same digests fed by `read()` into buffers (`digest_stream`, what a pipe
//! gets). Same file, same digest engine, same run; the file is read once
//! first so both read from the page cache.
//!
//! `cargo bench --bench read_path` (files in `$VHDKIT_BENCH_DIR` or the
//! system's temporary folder).

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vhdkit::disk::Source;
use vhdkit::pipeline::digest::{digest_source, digest_stream, Algo};
use vhdkit::pipeline::NoProgress;

const BYTES: usize = 512 << 20;

fn file() -> (tempfile::TempDir, PathBuf) {
    let base = std::env::var_os("VHDKIT_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::tempdir_in(base).expect("temporary folder");
    let path = dir.path().join("input.raw");
    let mut data = vec![0u8; BYTES];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&path, &data).expect("write the input");
    (dir, path)
}

fn read_path(c: &mut Criterion) {
    let (_dir, path) = file();
    let _ = std::fs::read(&path);
    for (name, algos) in [("md5", vec![Algo::Md5]), ("crc32", vec![Algo::Crc32])] {
        let mut g = c.benchmark_group(format!("read path {name}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(6))
            .throughput(Throughput::Bytes(BYTES as u64));
        g.bench_function("mmap (Source, SIGBUS guard)", |b| {
            b.iter(|| {
                let source = Source::open(&path).expect("open");
                digest_source(&source, &algos, None, &NoProgress).expect("digest")
            })
        });
        g.bench_function("read() into buffers", |b| {
            b.iter(|| {
                let f = std::fs::File::open(&path).expect("open");
                digest_stream(f, &path, &algos, &NoProgress).expect("digest")
            })
        });
        g.finish();
    }
}

criterion_group!(benches, read_path);
criterion_main!(benches);
