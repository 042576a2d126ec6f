//! Hostile parent locators, with real files: a differencing child made by a
//! stranger must not make vhdkit open or read anything outside the child's
//! folder unless the user names it (`ParentOptions`).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use vhdkit::disk::ParentOptions;

const BS: usize = GOLDEN_BLOCK as usize;
const PARENT_ID: [u8; 16] = [0x5e; 16];

fn secret() -> Vec<u8> {
    let mut b = b"SECRET-DATA ".repeat(BS / 12 + 1);
    b.truncate(BS);
    b
}

/// A same-id VHD holding SECRET-DATA in folder `elsewhere`, and a child in
/// folder `child` whose locators are made from the secret VHD's path.
fn setup(locators: impl Fn(&Path) -> Vec<Locator>) -> (tempfile::TempDir, PathBuf, PathBuf) {
    chain_in_two_folders(PARENT_ID, &secret(), locators)
}

fn tried(child: &Path) -> Vec<PathBuf> {
    let info = vhdkit::commands::info::info(child).unwrap();
    let parent = info.parent.expect("a differencing disk has parent info");
    assert!(parent.found.is_none(), "{:?}", parent.found);
    parent.tried.into_iter().map(|a| a.path).collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn absolute_path_to_a_same_id_vhd_elsewhere_is_not_read() {
    // The locators name the secret parent by its absolute path and, as
    // Windows writes them, by a relative path climbing out.
    let (root, child2, secret2) = setup(|secret| {
        vec![
            Locator::w2ku(&secret.display().to_string()),
            Locator::w2ru("..\\elsewhere\\base.vhd"),
        ]
    });
    let Err(e) = vhdkit::disk::open(&child2) else {
        panic!("opened a parent outside the child's folder");
    };
    assert_eq!(e.kind(), "parent", "{e}");
    for p in tried(&child2) {
        assert!(p.starts_with(child2.parent().unwrap()), "tried {p:?}");
    }

    // check: a warning per outside locator, and the parent not found.
    let (run, json) = check_json(&child2);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(error_codes(&json), ["PARENT_NOT_FOUND"]);
    let outside = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "PARENT_OUTSIDE" && f["severity"] == "warning")
        .count();
    assert_eq!(outside, 2, "{}", run.stdout);

    // convert refuses and writes nothing; no secret byte anywhere.
    let out = root.path().join("child").join("flat.raw");
    let run = vhdkit(&[
        "convert".as_ref(),
        child2.as_os_str(),
        out.as_os_str(),
        "--to".as_ref(),
        "raw".as_ref(),
        "-q".as_ref(),
    ]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(!out.exists());
    assert!(!run.stderr.contains("SECRET") && !run.stdout.contains("SECRET"));

    // With the user's word the same parent is used, and its data shows.
    let mut search = ParentOptions::default();
    search.search_dirs = vec![secret2.parent().unwrap().to_path_buf()];
    let mut explicit = ParentOptions::default();
    explicit.parent = Some(secret2.clone());
    for options in [search, explicit] {
        let disk = vhdkit::disk::open_with(&child2, &options).expect("allowed parent");
        let mut buf = vec![0u8; BS];
        disk.read_at(0, &mut buf).unwrap();
        assert!(contains(&buf, b"SECRET-DATA"), "{options:?}");
        let mut check_options = vhdkit::check::Options::default();
        check_options.parents = options.clone();
        let report = vhdkit::check::check_path(&child2, &check_options).unwrap();
        assert!(report.ok, "{:?}", report.findings);
    }
}

#[test]
fn system_files_named_by_locators_are_never_opened() {
    let (_root, child, _) = setup(|_| {
        vec![
            Locator::w2ku("/etc/passwd"),
            Locator::w2ru("..\\..\\..\\..\\..\\..\\etc\\shadow"),
        ]
    });
    let child_dir = child.parent().unwrap().to_path_buf();
    // A FIFO and a symlink to /proc beside the child: neither is a regular
    // VHD file; opening must neither block nor read them.
    let fifo = child_dir.join("passwd");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("note: mkfifo failed; FIFO case skipped");
    }
    std::os::unix::fs::symlink("/proc/self/environ", child_dir.join("shadow")).unwrap();
    let Err(e) = vhdkit::disk::open(&child) else {
        panic!("opened");
    };
    assert_eq!(e.kind(), "parent", "{e}");
    for p in tried(&child) {
        assert!(p.starts_with(&child_dir), "tried {p:?}");
    }
    let (run, json) = check_json(&child);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let codes: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes.iter().filter(|c| **c == "PARENT_OUTSIDE").count(),
        2,
        "{codes:?}"
    );
    assert!(
        codes.contains(&"PARENT_NOT_FOUND") || codes.contains(&"PARENT_NOT_VHD"),
        "{codes:?}"
    );
    // /proc through a symlink is refused as a parent file.
    let Err(e) = vhdkit::disk::parent::open_regular(&child_dir.join("shadow")) else {
        panic!("/proc file opened as a regular file");
    };
    assert_eq!(e.kind(), "parent");
    // Even named explicitly, /proc/self/environ is not a parent.
    let mut options = ParentOptions::default();
    options.parent = Some(PathBuf::from("/proc/self/environ"));
    assert!(vhdkit::disk::open_with(&child, &options).is_err());
}

#[test]
fn relative_locators_inside_the_folder_still_resolve() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("sub")).unwrap();
    Spec::dynamic(GOLDEN_SIZE, GOLDEN_BLOCK)
        .unique_id(PARENT_ID)
        .block(0, &pattern(7, BS))
        .build()
        .write(&root.path().join("sub"), "base.vhd");
    let child = Spec::differencing(
        GOLDEN_SIZE,
        GOLDEN_BLOCK,
        ParentLink {
            name: "base.vhd".into(),
            unique_id: PARENT_ID,
            locators: vec![Locator::w2ru("sub\\..\\sub\\base.vhd")],
        },
    )
    .build()
    .write(root.path(), "child.vhd");
    let disk = vhdkit::disk::open(&child).expect("inside the folder");
    let mut buf = vec![0u8; BS];
    disk.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, pattern(7, BS));
    let (run, json) = check_json(&child);
    assert_eq!(run.code, 0, "{json}");
}

#[test]
fn rebased_locators_name_the_same_parent_from_another_folder() {
    use vhdkit::format::{ParentLocator, PlatformCode};
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("a");
    let b = root.path().join("b/c");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let parent = a.join("base.vhd");
    std::fs::write(&parent, b"x").unwrap();
    let loc = |code: PlatformCode| ParentLocator {
        platform_code: code.code(),
        platform_data_space: 512,
        platform_data_length: 0,
        reserved: 0,
        platform_data_offset: 0,
    };
    let w2ku = vhdkit::format::header::encode_utf16le("C:\\x\\base.vhd");
    let locators = vec![
        (
            loc(PlatformCode::W2ru),
            vhdkit::format::header::encode_utf16le(".\\base.vhd"),
        ),
        (loc(PlatformCode::W2ku), w2ku.clone()),
    ];
    let out = vhdkit::disk::parent::rebase_locators(&locators, &parent, &b).unwrap();
    let text = out[0].0.decode_path(&out[0].1).unwrap();
    assert_eq!(text, "..\\..\\a\\base.vhd");
    assert_eq!(out[1].1, w2ku, "absolute locators are kept");
    // The rewritten path, taken from b, names the parent.
    let local = vhdkit::disk::parent::local_path(&text, &b);
    assert_eq!(
        std::fs::canonicalize(local).unwrap(),
        std::fs::canonicalize(&parent).unwrap()
    );
}
