//! The catalog's look-ups over 100,000 images: `find` and `list` with two
//! property filters (the target: under 50 ms), on a catalog built
//! once per run with six properties per image.
//!
//! `cargo bench --bench catalog` (10 samples, about 2 s per bench). The
//! catalog goes to a temporary folder in `$VHDKIT_BENCH_DIR`, or the
//! system's temporary folder.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use vhdkit::catalog::query::Filter;
use vhdkit::catalog::records::{self, Entry, Image, Stored};
use vhdkit::catalog::{Catalog, ImageStatus};

const IMAGES: usize = 100_000;
const DISTROS: [&str; 5] = ["ubuntu", "debian", "centos", "fedora", "rocky"];
const VERSIONS: [&str; 4] = ["1", "2", "3", "4"];

/// Image `n` of the synthetic catalog: a build of one of 20 distro/version
/// pairs, one per second.
fn entry(n: usize) -> Entry {
    let mut properties = BTreeMap::new();
    properties.insert("os_distro".into(), DISTROS[n % 5].into());
    properties.insert("os_version".into(), VERSIONS[n / 5 % 4].into());
    properties.insert(
        "auto_disk_config".into(),
        if n % 3 == 0 { "False" } else { "True" }.into(),
    );
    properties.insert("build".into(), n.to_string());
    properties.insert(
        "architecture".into(),
        if n % 2 == 0 { "x86_64" } else { "aarch64" }.into(),
    );
    properties.insert("hypervisor_type".into(), "xen".into());
    let stamp = format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        1 + n / 2_592_000 % 12,
        1 + n / 86_400 % 28,
        n / 3600 % 24,
        n / 60 % 60,
        n % 60
    );
    Entry {
        seq: 0,
        image: Image {
            id: format!("00000000-0000-4000-8000-{n:012}"),
            name: format!("build-{n}"),
            status: ImageStatus::Active,
            owner: None,
            visibility: "shared".into(),
            protected: false,
            os_hidden: false,
            disk_format: "vhd".into(),
            container_format: "bare".into(),
            min_disk: 10,
            min_ram: 512,
            checksum: Some(format!("{n:032x}")),
            os_hash_algo: "sha512".into(),
            os_hash_value: Some(format!("{n:0128x}")),
            size: Some(1 << 30),
            virtual_size: Some(10 << 30),
            created_at: stamp.clone(),
            updated_at: stamp,
            properties,
        },
        store: Stored {
            path: None,
            reference: false,
            source_path: PathBuf::from(format!("/builds/{n}.vhd")),
            disk_type: "dynamic".into(),
            forced: false,
            preflight: serde_json::json!([]),
        },
        stored_path: Some(format!("objects/00/{n:0128x}")),
    }
}

fn build(dir: &std::path::Path) -> Catalog {
    let path = dir.join("bench.db");
    let cat = Catalog::open(&path).expect("open the bench catalog");
    let started = Instant::now();
    let conn = cat.connection();
    conn.execute_batch("BEGIN").unwrap();
    for n in 0..IMAGES {
        records::insert(conn, &path, &entry(n)).unwrap();
    }
    conn.execute_batch("COMMIT; ANALYZE").unwrap();
    eprintln!(
        "catalog of {IMAGES} images built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    cat
}

fn lookups(c: &mut Criterion) {
    let dir = match std::env::var_os("VHDKIT_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let cat = build(dir.path());
    let two = vec![
        ("os_distro".to_string(), "ubuntu".to_string()),
        ("os_version".to_string(), "3".to_string()),
    ];
    let mut g = c.benchmark_group("catalog 100k");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("find two properties --latest", |b| {
        b.iter(|| black_box(cat.find(&two, true).unwrap()))
    });
    g.bench_function("find two properties (all 5000 ids)", |b| {
        b.iter(|| black_box(cat.find(&two, false).unwrap()))
    });
    let filter = Filter {
        properties: two.clone(),
        limit: Some(20),
        ..Filter::default()
    };
    g.bench_function("list two properties --limit 20", |b| {
        b.iter(|| black_box(cat.list(&filter).unwrap()))
    });
    let all = Filter {
        properties: two.clone(),
        ..Filter::default()
    };
    assert_eq!(cat.list(&all).unwrap().len(), IMAGES / 20);
    g.bench_function("list two properties (all 5000 records)", |b| {
        b.iter(|| black_box(cat.list(&all).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
