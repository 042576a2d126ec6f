//! `vhdkit catalog` through the real binary (and the library for threads):
//! every subcommand, every status transition and refusal, digests against
//! md5sum and sha512sum, the stored copy against the file, concurrent adds
//! from threads and processes, and `kill -9` at random moments of an add.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const MIB: usize = 1 << 20;

/// A scratch folder with a catalog in it.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn db(&self) -> PathBuf {
        self.path("cat.db")
    }

    /// `vhdkit catalog ARGS --catalog DB`.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vhdkit"))
            .arg("catalog")
            .args(args)
            .arg("--catalog")
            .arg(self.db())
            .output()
            .expect("run vhdkit")
    }

    /// The same with `--json`: (exit status, JSON printed).
    fn json(&self, args: &[&str]) -> (i32, Value) {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        let text = String::from_utf8_lossy(&out.stdout);
        let v = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "catalog {args:?}: not JSON ({e}): {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), v)
    }

    /// A dynamic VHD of `mib` MiB of data made from `seed`.
    fn vhd(&self, name: &str, mib: usize, seed: u8) -> PathBuf {
        let raw = self.path(&format!("{name}.raw"));
        std::fs::write(&raw, data(mib * MIB, seed)).unwrap();
        let vhd = self.path(name);
        let out = Command::new(env!("CARGO_BIN_EXE_vhdkit"))
            .args(["convert", p(&raw), p(&vhd), "--to", "dynamic", "-q"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        std::fs::remove_file(raw).unwrap();
        vhd
    }

    /// Adds `image` with `args`; returns the new image's JSON record.
    fn add(&self, image: &Path, args: &[&str]) -> Value {
        let mut all = vec!["add", p(image)];
        all.extend_from_slice(args);
        let (code, v) = self.json(&all);
        assert_eq!(code, 0, "{v}");
        v
    }

    fn objects(&self) -> Vec<PathBuf> {
        walk(&self.path("cat.store/objects"))
    }

    fn tmp_files(&self) -> Vec<PathBuf> {
        walk(&self.path("cat.store/tmp"))
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Bytes no two seeds share (xorshift), so each image's digests differ.
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed).wrapping_mul(0xA076_1D64_78BD_642F);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `TOOL FILE`'s first word (md5sum, sha512sum), or None when missing.
fn digest_tool(tool: &str, file: &Path) -> Option<String> {
    let out = Command::new(tool).arg(file).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace().next().map(str::to_string)
}

fn id(v: &Value) -> String {
    v["image"]["id"].as_str().unwrap().to_string()
}

#[test]
fn add_records_glance_digests_and_stores_an_identical_copy() {
    let s = Scratch::new();
    let vhd = s.vhd("web.vhd", 6, 1);
    let v = s.add(
        &vhd,
        &["--property", "os_distro=ubuntu", "--min-ram", "512"],
    );
    let img = &v["image"];
    assert_eq!(img["status"], "active");
    assert_eq!(img["name"], "web");
    assert_eq!(img["disk_format"], "vhd");
    assert_eq!(img["container_format"], "bare");
    assert_eq!(img["visibility"], "shared");
    assert_eq!(img["min_ram"], 512);
    assert_eq!(img["min_disk"], 1);
    assert_eq!(img["os_distro"], "ubuntu");
    assert_eq!(img["os_hash_algo"], "sha512");
    assert_eq!(img["size"], std::fs::metadata(&vhd).unwrap().len());
    // Glance's inspector reads the footer's original size.
    assert_eq!(img["virtual_size"], 6 * MIB as u64);
    if let Some(md5) = digest_tool("md5sum", &vhd) {
        assert_eq!(img["checksum"], md5.as_str());
    } else {
        eprintln!("note: md5sum missing, digest not cross-checked");
    }
    if let Some(sha) = digest_tool("sha512sum", &vhd) {
        assert_eq!(img["os_hash_value"], sha.as_str());
    }
    let stored = PathBuf::from(v["store"]["path"].as_str().unwrap());
    assert!(stored.ends_with(img["os_hash_value"].as_str().unwrap()));
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        std::fs::read(&vhd).unwrap()
    );
    assert!(["copy", "reflink"].contains(&v["method"].as_str().unwrap()));
    assert!(s.tmp_files().is_empty());

    // The same data again: a second record, one stored file.
    let again = s.add(&vhd, &["--name", "web-2"]);
    assert_eq!(again["method"], "existing");
    assert_ne!(id(&again), id(&v));
    assert_eq!(s.objects().len(), 1);

    // show by id and by name; the text lists every property.
    let (code, shown) = s.json(&["show", &id(&v)]);
    assert_eq!(code, 0);
    assert_eq!(shown["image"], v["image"]);
    let (code, by_name) = s.json(&["show", "web-2"]);
    assert_eq!((code, id(&by_name)), (0, id(&again)));
    let text = String::from_utf8(s.run(&["show", "web"]).stdout).unwrap();
    assert!(text.contains("os_distro          ubuntu"), "{text}");
    assert!(text.contains(stored.to_str().unwrap()), "{text}");
    let (code, v) = s.json(&["show", "nothing-like-it"]);
    assert_eq!(code, 1);
    assert_eq!(v["refused"]["code"], "NOT_FOUND");
}

#[test]
fn add_refuses_what_preflight_fails_for_glance_unless_forced() {
    let s = Scratch::new();
    let raw = s.path("disk.raw");
    std::fs::write(&raw, data(2 * MIB, 3)).unwrap();
    let (code, v) = s.json(&["add", p(&raw)]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["refused"]["code"], "PREFLIGHT_FAIL");
    assert!(v["refused"]["message"]
        .as_str()
        .unwrap()
        .contains("NOT_VHD"));
    let (code, v) = s.json(&["list"]);
    assert_eq!((code, v["images"].as_array().unwrap().len()), (0, 0));

    // A damaged VHD: the footer checksum broken.
    let vhd = s.vhd("bad.vhd", 2, 4);
    let mut bytes = std::fs::read(&vhd).unwrap();
    let end = bytes.len();
    bytes[end - 512 + 64] ^= 0xff;
    std::fs::write(&vhd, &bytes).unwrap();
    let (code, v) = s.json(&["add", p(&vhd)]);
    assert_eq!(code, 1, "{v}");
    assert!(
        v["refused"]["message"]
            .as_str()
            .unwrap()
            .contains("CHECKSUM"),
        "{v}"
    );

    let forced = s.add(&raw, &["--force"]);
    assert_eq!(forced["store"]["forced"], true);
    assert_eq!(forced["image"]["status"], "active");
    assert!(forced["image"]["virtual_size"].is_null());
}

#[test]
fn property_lint_refuses_what_glance_refuses() {
    let s = Scratch::new();
    let vhd = s.vhd("a.vhd", 1, 5);
    let long_key = format!("{}=v", "k".repeat(256));
    for bad in [
        &["--property", "checksum=abc"][..],
        &["--property", "os_glance_x=1"],
        &["--property", &long_key],
        &["--property", "auto_disk_config=maybe"],
        &["--min-ram", "-1"],
    ] {
        let mut args = vec!["add", p(&vhd)];
        args.extend_from_slice(bad);
        let (code, v) = s.json(&args);
        assert_eq!(code, 1, "{bad:?}: {v}");
        assert_eq!(v["refused"]["code"], "PROPERTY_LINT", "{bad:?}");
    }
    let many: Vec<String> = (0..129).map(|i| format!("k{i}=v")).collect();
    let mut args = vec!["add", p(&vhd)];
    for m in &many {
        args.extend(["--property", m.as_str()]);
    }
    let (code, v) = s.json(&args);
    assert_eq!(
        (code, &v["refused"]["code"]),
        (1, &Value::from("PROPERTY_LINT"))
    );
    let (_, v) = s.json(&["list"]);
    assert!(v["images"].as_array().unwrap().is_empty());
}

/// Three builds of two distros, added in order.
fn three_builds(s: &Scratch) -> Vec<String> {
    let builds = [
        ("u1.vhd", "ubuntu", "24.04", "True"),
        ("d1.vhd", "debian", "12", "True"),
        ("u2.vhd", "ubuntu", "24.04", "True"),
    ];
    let mut ids = Vec::new();
    for (i, (name, distro, version, adc)) in builds.iter().enumerate() {
        let vhd = s.vhd(name, 1, 10 + i as u8);
        let v = s.add(
            &vhd,
            &[
                "--property",
                &format!("os_distro={distro}"),
                "--property",
                &format!("os_version={version}"),
                "--property",
                &format!("auto_disk_config={adc}"),
            ],
        );
        ids.push(id(&v));
        // created_at has whole seconds; the order of equal ones is the add order.
    }
    ids
}

#[test]
fn list_and_find_by_property() {
    let s = Scratch::new();
    let ids = three_builds(&s);
    let (code, v) = s.json(&["find", "os_distro=ubuntu", "os_version=24.04"]);
    assert_eq!(code, 0);
    assert_eq!(v["ids"], serde_json::json!([ids[2], ids[0]]));
    let (_, v) = s.json(&[
        "find",
        "os_distro=ubuntu",
        "auto_disk_config=True",
        "--latest",
    ]);
    assert_eq!(v["ids"], serde_json::json!([ids[2]]));
    let out = s.run(&["find", "os_distro=ubuntu", "--latest"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", ids[2])
    );
    let (code, v) = s.json(&["find", "os_distro=fedora"]);
    assert_eq!((code, v["ids"].as_array().unwrap().len()), (1, 0));

    let (code, v) = s.json(&[
        "list",
        "--property",
        "os_distro=ubuntu",
        "--sort",
        "created_at:asc",
    ]);
    assert_eq!(code, 0);
    let listed: Vec<&str> = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[0].as_str(), ids[2].as_str()]);
    let (_, v) = s.json(&["list", "--limit", "1"]);
    assert_eq!(v["images"][0]["id"], ids[2].as_str());
    let (_, v) = s.json(&["list", "--name", "d1", "--status", "active"]);
    assert_eq!(v["images"][0]["id"], ids[1].as_str());
    let text =
        String::from_utf8(s.run(&["list", "--property", "os_distro=debian"]).stdout).unwrap();
    let mut rows = text.lines();
    let header = rows.next().unwrap();
    for col in [
        "id",
        "name",
        "status",
        "size",
        "virtual_size",
        "created_at",
        "os_distro",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(rows.next().unwrap().contains("debian"));
    assert!(rows.next().is_none());

    // A deactivated image is not found; reactivated, it is again.
    s.json(&["deactivate", &ids[2]]);
    let (_, v) = s.json(&["find", "os_distro=ubuntu", "--latest"]);
    assert_eq!(v["ids"], serde_json::json!([ids[0]]));
    s.json(&["reactivate", &ids[2]]);
    let (_, v) = s.json(&["find", "os_distro=ubuntu", "--latest"]);
    assert_eq!(v["ids"], serde_json::json!([ids[2]]));
    let bad = s.run(&["list", "--sort", "checksum"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn set_changes_properties_never_the_data() {
    let s = Scratch::new();
    let vhd = s.vhd("a.vhd", 1, 20);
    let v = s.add(
        &vhd,
        &["--property", "os_distro=ubuntu", "--property", "build=1"],
    );
    let id = id(&v);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, r) = s.json(&[
        "set",
        &id,
        "--property",
        "os_version=24.04",
        "--property",
        "name=renamed",
        "--property",
        "min_disk=3",
        "--remove-property",
        "build",
    ]);
    assert_eq!(code, 0, "{r}");
    let img = &r["image"];
    assert_eq!(img["os_version"], "24.04");
    assert_eq!(img["name"], "renamed");
    assert_eq!(img["min_disk"], 3);
    assert!(img.get("build").is_none());
    assert_ne!(img["updated_at"], v["image"]["updated_at"]);
    assert_eq!(img["checksum"], v["image"]["checksum"]);

    for key in [
        "checksum",
        "size",
        "virtual_size",
        "os_hash_value",
        "disk_format",
        "container_format",
        "id",
        "status",
    ] {
        let (code, r) = s.json(&["set", &id, "--property", &format!("{key}=x")]);
        assert_eq!(code, 1, "{key}");
        assert_eq!(r["refused"]["code"], "IMMUTABLE", "{key}");
        assert!(
            r["refused"]["message"]
                .as_str()
                .unwrap()
                .contains("image data is immutable; add a new image"),
            "{r}"
        );
        let (code, _) = s.json(&["set", &id, "--remove-property", key]);
        assert_eq!(code, 1, "{key}");
    }
    let out = s.run(&["set", &id, "--property", "size=1"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("image data is immutable; add a new image")
    );
    let (code, r) = s.json(&["set", &id, "--remove-property", "nope"]);
    assert_eq!(
        (code, &r["refused"]["code"]),
        (1, &Value::from("NO_PROPERTY"))
    );
    let (code, r) = s.json(&["set", &id, "--property", "visibility=everyone"]);
    assert_eq!(
        (code, &r["refused"]["code"]),
        (1, &Value::from("PROPERTY_LINT"))
    );
    assert_eq!(s.run(&["set", &id]).status.code(), Some(2));
}

#[test]
fn status_transitions_and_their_refusals() {
    let s = Scratch::new();
    let vhd = s.vhd("a.vhd", 1, 30);
    let id = id(&s.add(&vhd, &["--protected"]));
    let (code, r) = s.json(&["deactivate", &id]);
    assert_eq!(
        (code, &r["before"], &r["after"]),
        (0, &"active".into(), &"deactivated".into())
    );
    let (code, r) = s.json(&["deactivate", &id]);
    assert_eq!((code, &r["after"]), (0, &"deactivated".into()));
    let (code, r) = s.json(&["export", &id]);
    assert_eq!((code, &r["refused"]["code"]), (1, &"DEACTIVATED".into()));
    let (code, r) = s.json(&["reactivate", &id]);
    assert_eq!((code, &r["after"]), (0, &"active".into()));
    let (code, r) = s.json(&["reactivate", &id]);
    assert_eq!((code, &r["after"]), (0, &"active".into()));

    let (code, r) = s.json(&["delete", &id]);
    assert_eq!((code, &r["refused"]["code"]), (1, &"PROTECTED".into()));
    assert_eq!(s.objects().len(), 1);
    s.json(&["set", &id, "--property", "protected=false"]);
    let (code, r) = s.json(&["delete", &id]);
    assert_eq!(code, 0, "{r}");
    assert!(r["after"].is_null());
    assert!(r["removed_data"].is_string());
    assert!(s.objects().is_empty());
    let (code, _) = s.json(&["show", &id]);
    assert_eq!(code, 1);

    // A killed image cannot be deactivated, exported or reactivated; it can be deleted.
    let v = s.add(&vhd, &[]);
    let killed = id_of_killed(&s, &v);
    for action in ["deactivate", "reactivate", "export"] {
        let (code, r) = s.json(&[action, &killed]);
        assert_eq!(
            (code, &r["refused"]["code"]),
            (1, &"STATUS".into()),
            "{action}"
        );
    }
    assert_eq!(s.json(&["delete", &killed]).0, 0);
}

/// Tampers with the stored copy of `v`, verifies: the image is killed.
fn id_of_killed(s: &Scratch, v: &Value) -> String {
    let stored = PathBuf::from(v["store"]["path"].as_str().unwrap());
    let mut perm = std::fs::metadata(&stored).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&stored, perm).unwrap();
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&stored, bytes).unwrap();
    let (code, r) = s.json(&["verify"]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["images"][0]["state"], "mismatch");
    assert_eq!(r["images"][0]["status"], "killed");
    id(v)
}

#[test]
fn verify_finds_tampered_and_lost_data() {
    let s = Scratch::new();
    let a = s.vhd("a.vhd", 1, 40);
    let b = s.vhd("b.vhd", 1, 41);
    let va = s.add(&a, &[]);
    let vb = s.add(&b, &["--reference"]);
    assert_eq!(vb["method"], "reference");
    assert_eq!(vb["store"]["path"], p(&std::fs::canonicalize(&b).unwrap()));
    let (code, r) = s.json(&["verify"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["ok"], true);
    let (code, r) = s.json(&["export", &id(&vb)]);
    assert_eq!((code, &r["data"]), (0, &"ok".into()), "{r}");

    // The referenced file changes: export reads it and kills the image.
    let mut bytes = std::fs::read(&b).unwrap();
    bytes[700] ^= 0x40;
    std::fs::write(&b, bytes).unwrap();
    let (code, r) = s.json(&["export", &id(&vb)]);
    assert_eq!((code, &r["refused"]["code"]), (1, &"DATA_MISMATCH".into()));
    let (_, r) = s.json(&["show", &id(&vb)]);
    assert_eq!(r["image"]["status"], "killed");

    // The stored copy is lost.
    std::fs::remove_file(va["store"]["path"].as_str().unwrap()).unwrap();
    let (code, r) = s.json(&["verify", &id(&va)]);
    assert_eq!(code, 1);
    assert_eq!(r["images"][0]["state"], "missing");
    let (_, r) = s.json(&["verify"]);
    assert!(r["images"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["state"] == "skipped"));
}

#[test]
fn export_gives_the_upload_for_each_target() {
    let s = Scratch::new();
    let vhd = s.vhd("web.vhd", 2, 50);
    let v = s.add(
        &vhd,
        &["--property", "os_distro=ubuntu", "--visibility", "private"],
    );
    let stored = v["store"]["path"].as_str().unwrap();
    let (code, r) = s.json(&["export", &id(&v)]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["verdict"]["ready"], true);
    assert_eq!(r["data"], "skipped");
    assert_eq!(r["record"]["checksum"], v["image"]["checksum"]);
    assert_eq!(r["create_request"]["os_distro"], "ubuntu");
    assert_eq!(r["create_request"]["visibility"], "private");
    assert!(r["create_request"].get("checksum").is_none());
    let cmd = r["command"].as_str().unwrap();
    assert!(
        cmd.starts_with("openstack image create --disk-format vhd --container-format bare"),
        "{cmd}"
    );
    assert!(cmd.contains(&format!("--file {stored} web")), "{cmd}");
    let (code, r) = s.json(&["export", &id(&v), "--reread"]);
    assert_eq!((code, &r["data"]), (0, &"ok".into()));

    // Azure wants a fixed VHD: not ready, with the fix.
    let (code, r) = s.json(&["export", &id(&v), "--target", "azure"]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["verdict"]["ready"], false);
    let (_, r) = s.json(&["export", &id(&v), "--target", "xenserver"]);
    assert_eq!(r["record"]["container_format"], "ovf");
    assert!(r["target_rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["code"] == "XEN_PACKAGE"));
    let text = String::from_utf8(s.run(&["export", &id(&v)]).stdout).unwrap();
    assert!(text.contains("Verdict: READY for glance"), "{text}");
    assert!(text.contains("POST /v2/images"), "{text}");
}

#[test]
fn a_foreign_or_corrupt_catalog_is_an_error_and_untouched() {
    let s = Scratch::new();
    let text = s.path("cat.db");
    std::fs::write(&text, "name,size\nweb,1\n").unwrap();
    let (code, r) = s.json(&["list"]);
    assert_eq!(code, 2);
    assert_eq!(r["error"]["kind"], "not_a_catalog");
    assert_eq!(r["error"]["path"], p(&text));
    let out = s.run(&["list"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a vhdkit catalog"));
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        "name,size\nweb,1\n"
    );
    assert!(!s.path("cat.db-wal").exists());
}

#[test]
fn the_catalog_path_comes_from_the_environment() {
    let s = Scratch::new();
    let vhd = s.vhd("a.vhd", 1, 60);
    let env_db = s.path("env/one.db");
    let out = Command::new(env!("CARGO_BIN_EXE_vhdkit"))
        .args(["catalog", "add", p(&vhd), "--json"])
        .env("VHDKIT_CATALOG", &env_db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(env_db.exists());
    assert!(s.path("env/one.store/objects").is_dir());
    let xdg = s.path("xdg");
    let out = Command::new(env!("CARGO_BIN_EXE_vhdkit"))
        .args(["catalog", "list"])
        .env_remove("VHDKIT_CATALOG")
        .env("XDG_DATA_HOME", &xdg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(xdg.join("vhdkit/catalog.db").exists());
}

#[test]
fn adds_from_threads_lose_no_row() {
    let s = Scratch::new();
    let images: Vec<PathBuf> = (0..6)
        .map(|i| s.vhd(&format!("t{i}.vhd"), 1, 70 + i))
        .collect();
    let db = s.db();
    std::thread::scope(|scope| {
        for (i, img) in images.iter().enumerate() {
            let db = &db;
            scope.spawn(move || {
                let mut cat = vhdkit::catalog::Catalog::open(db).unwrap();
                let opts = vhdkit::catalog::add::AddOptions {
                    properties: vec![("n".into(), i.to_string()), ("batch".into(), "t".into())],
                    ..Default::default()
                };
                cat.add(img, &opts, &vhdkit::pipeline::NoProgress).unwrap();
            });
        }
    });
    let (_, v) = s.json(&["list", "--property", "batch=t"]);
    let mut ns: Vec<String> = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["n"].as_str().unwrap().to_string())
        .collect();
    ns.sort();
    assert_eq!(ns, ["0", "1", "2", "3", "4", "5"]);
    assert_eq!(s.objects().len(), 6);
}

#[test]
fn adds_from_processes_and_a_list_at_the_same_time() {
    let s = Scratch::new();
    let images: Vec<PathBuf> = (0..4)
        .map(|i| s.vhd(&format!("p{i}.vhd"), 8, 80 + i))
        .collect();
    // Create the catalog first so every process opens the same schema.
    assert!(s.run(&["list"]).status.success());
    let adders: Vec<_> = images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            Command::new(env!("CARGO_BIN_EXE_vhdkit"))
                .args(["catalog", "add", p(img), "--json", "--catalog", p(&s.db())])
                .args([
                    "--property",
                    &format!("n={i}"),
                    "--property",
                    "kind=proc",
                    "--property",
                    "x=y",
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut lists = 0;
    let mut running = adders;
    while !running.is_empty() {
        let (code, v) = s.json(&["list"]);
        assert_eq!(code, 0, "{v}");
        for img in v["images"].as_array().unwrap() {
            // Never half-written: every row has its properties; an active one its digests.
            assert_eq!(img["kind"], "proc", "{img}");
            assert_eq!(img["x"], "y", "{img}");
            if img["status"] == "active" {
                assert!(img["checksum"].is_string() && img["size"].is_u64(), "{img}");
            } else {
                assert!(
                    ["queued", "saving"].contains(&img["status"].as_str().unwrap()),
                    "{img}"
                );
            }
        }
        lists += 1;
        running.retain_mut(|c| match c.try_wait().unwrap() {
            Some(st) => {
                assert!(st.success());
                false
            }
            None => true,
        });
    }
    assert!(lists > 0);
    let (_, v) = s.json(&["find", "kind=proc"]);
    assert_eq!(v["ids"].as_array().unwrap().len(), 4);
    assert!(s.tmp_files().is_empty());
}

/// A pseudo-random fraction in [0, 1) from a seed (splitmix64).
fn fraction(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as f64 / u64::MAX as f64
}

#[test]
fn kill_9_mid_add_leaves_a_sound_catalog_and_verify_fix_leaves_no_orphans() {
    let s = Scratch::new();
    let images: Vec<PathBuf> = (0..3)
        .map(|i| s.vhd(&format!("k{i}.vhd"), 48, 90 + i))
        .collect();
    assert!(s.run(&["list"]).status.success());
    // How long one add takes, to spread the kills over it.
    let start = std::time::Instant::now();
    let first = s.add(&images[0], &[]);
    let whole = start.elapsed().as_secs_f64().max(0.05);
    s.json(&["delete", &id(&first)]);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill seed {seed}, one add {whole:.3} s");
    let mut interrupted = 0;
    for round in 0..10u64 {
        let at = fraction(seed ^ round) * whole * 1.2;
        let img = &images[(round % 3) as usize];
        let mut child = Command::new(env!("CARGO_BIN_EXE_vhdkit"))
            .args([
                "catalog",
                "add",
                p(img),
                "--catalog",
                p(&s.db()),
                "--property",
                "round=r",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_secs_f64(at));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let (code, v) = s.json(&["list"]);
        assert_eq!(code, 0, "round {round} at {at:.3} s: {v}");
        for i in v["images"].as_array().unwrap() {
            let st = i["status"].as_str().unwrap();
            assert!(["queued", "saving", "active"].contains(&st), "{i}");
            interrupted += usize::from(st != "active");
            if st == "active" {
                assert!(i["checksum"].is_string(), "{i}");
            }
        }
    }
    // Each add cleans what the killed one before it left; some kills must
    // have landed mid-add for this test to mean anything.
    eprintln!("rounds that left an interrupted record: {interrupted}");
    assert!(interrupted > 0);
    let (code, r) = s.json(&["verify", "--fix"]);
    assert_eq!(code, 0, "{r}");
    eprintln!(
        "verify --fix removed: {} {}",
        r["interrupted"], r["orphans"]
    );
    assert!(s.tmp_files().is_empty(), "{:?}", s.tmp_files());
    let (_, v) = s.json(&["list"]);
    let active = v["images"].as_array().unwrap();
    assert!(active.iter().all(|i| i["status"] == "active"), "{v}");
    // Every object is used by a record, and every record's data is there.
    let used: std::collections::BTreeSet<String> = active
        .iter()
        .map(|i| i["os_hash_value"].as_str().unwrap().to_string())
        .collect();
    let stored: std::collections::BTreeSet<String> = s
        .objects()
        .iter()
        .map(|o| o.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(used, stored);
    let (code, r) = s.json(&["verify"]);
    assert_eq!((code, &r["ok"]), (0, &Value::Bool(true)), "{r}");
    // And an add still works.
    s.add(&images[1], &[]);
}
