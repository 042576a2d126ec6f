//! `preflight`: is this file ready to upload to Glance and boot with Nova on
//! a given target? One read of the image gives the digests Glance will
//! record (and, for Swift, each segment's MD5); `check` gives the structure;
//! the rest is pure judgement on metadata, shown as PASS/WARN/FAIL lines.
//!
//! Sections, in report order: structure ([`crate::check`]), the image
//! record ([`record`]), the property lint ([`lint`]), the target rules
//! ([`targets`]), the flavor checks ([`flavor`]), the verdict. The rules
//! are the pure [`crate::cloud`] layer's; this command does the reading
//! (the one pass through [`crate::pipeline::digest`], the chain in
//! `chain`) and the writing (the package, through [`crate::writer`]).

mod chain;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::check::{self, Finding, Severity};
use crate::cloud::nova::ExpandReport;
pub use crate::cloud::{flavor, lint, record, targets, Line, Status};
use crate::disk::{Kind, Source};
use crate::format::foreign::Foreign;
use crate::grow::ExpandOptions;
use crate::partition::GrowRule;
use crate::pipeline::digest::{digest_source, Algo, DigestReader, DigestSink, Digests};
use crate::pipeline::Progress;
use crate::writer::package::{write_package, Member};
use crate::{Error, Result};
use flavor::{Flavor, FlavorOptions, FlavorReport, ImageFacts};
use lint::{Lint, LintInput};
use record::{ImageRecord, RecordInput, VirtualSizes};
use targets::{ChainLink, Facts, SegmentPlan, Target};

/// What `preflight` is asked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The cloud judged for (Glance by default).
    pub target: Target,
    /// Flavors to check a boot on.
    pub flavors: Vec<Flavor>,
    /// The hosts' hypervisor version, checked against `hypervisor_version_requires`.
    pub hypervisor_version: Option<String>,
    /// The image name (default: the file name without its extension).
    pub name: Option<String>,
    /// `min_ram` in MiB, as given (the lint judges it).
    pub min_ram: Option<String>,
    /// `min_disk` in GiB, as given (raised to the virtual size if below it).
    pub min_disk: Option<String>,
    /// Image properties, key and value.
    pub properties: Vec<(String, String)>,
    /// Simulate a boot request that asks for automatic disk config.
    pub request_auto_disk_config: bool,
    /// Swift segment size (and the size above which a file is segmented).
    pub segment_size: u64,
    /// Swift container the image object goes to.
    pub container: String,
    /// `xenserver`: write the chain as a gzipped tarball here.
    pub package: Option<PathBuf>,
    /// Rename the package into place without fsync.
    pub no_sync: bool,
    /// How the structure is checked (where parents may be looked for).
    pub check: check::Options,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            target: Target::Glance,
            flavors: Vec::new(),
            hypervisor_version: None,
            name: None,
            min_ram: None,
            min_disk: None,
            properties: Vec::new(),
            request_auto_disk_config: false,
            segment_size: targets::SWIFT_SEGMENT_SIZE,
            container: "images".into(),
            package: None,
            no_sync: false,
            check: check::Options::default(),
        }
    }
}

/// What IMAGE is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// One file (a VHD, or not).
    File,
    /// A folder holding a XenServer chain.
    Folder,
    /// A tarball (gzipped or not) holding a XenServer chain.
    Tarball,
}

/// Structure: the `check` of every file, link by link.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Structure {
    /// No error found.
    pub ok: bool,
    /// The section's PASS/WARN/FAIL lines.
    pub lines: Vec<Line>,
    /// `check`'s findings, every link.
    pub findings: Vec<Finding>,
}

/// The image record section.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RecordSection {
    /// The record as Glance would hold it.
    pub record: ImageRecord,
    /// The body of `POST /v2/images`, ready to send.
    pub create_request: serde_json::Value,
    /// The equivalent `openstack image create` command line.
    pub command: String,
    /// The size each consumer reads (absent for a raw file).
    pub virtual_sizes: Option<VirtualSizes>,
    /// The section's PASS/WARN/FAIL lines.
    pub lines: Vec<Line>,
}

/// The tarball written by `--package`.
#[derive(Debug, Clone, Serialize)]
pub struct Package {
    #[serde(serialize_with = "crate::format::path_json::path")]
    /// The tarball written.
    pub path: PathBuf,
    #[serde(flatten)]
    /// Its digests and size.
    pub digests: Digests,
}

/// The overall answer.
pub use crate::cloud::Verdict;

/// Everything `preflight` found, in report order.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    #[serde(serialize_with = "crate::format::path_json::path")]
    /// The image judged.
    pub image: PathBuf,
    /// The cloud judged for.
    pub target: Target,
    /// A file, a folder or a tarball.
    pub input: InputKind,
    /// raw, fixed, dynamic, differencing (of the file, or the chain's leaf).
    pub disk_type: Kind,
    /// The structure section (`check`).
    pub structure: Structure,
    /// The Glance record (every target but azure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordSection>,
    /// What Azure needs (`--target azure`), in place of the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure: Option<targets::AzureUpload>,
    /// The property lint.
    pub lint: Vec<Line>,
    /// The target's rules.
    pub target_rules: Vec<Line>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// A XenServer chain's links.
    pub chain: Option<Vec<ChainLink>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Rackspace: the Swift segments of the upload.
    pub segments: Option<SegmentPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The XenServer tarball, when one was written.
    pub package: Option<Package>,
    /// Each flavor's checks.
    pub flavors: Vec<FlavorReport>,
    /// Ready, or not.
    pub verdict: Verdict,
}

/// What IMAGE is, once the options are known to make sense for it.
fn usable_input(image: &Path, opts: &Options) -> Result<InputKind> {
    if opts.segment_size == 0 {
        return Err(Error::Usage("--segment-size must be above 0".into()));
    }
    let input = input_kind(image)?;
    if input == InputKind::Folder && opts.target != Target::Xenserver {
        return Err(Error::Usage(format!(
            "{}: a folder is a XenServer chain: use --target xenserver",
            image.display()
        )));
    }
    if opts.package.is_some() && opts.target != Target::Xenserver {
        return Err(Error::Usage(
            "--package writes a XenServer tarball: use it with --target xenserver".into(),
        ));
    }
    Ok(input)
}

/// Runs every check on `image`. An `Err` means preflight could not run
/// (exit status 2); problems with the image are FAIL lines in the report.
pub fn preflight(image: &Path, opts: &Options, progress: &dyn Progress) -> Result<Report> {
    let input = usable_input(image, opts)?;
    let chain_target = opts.target == Target::Xenserver;
    // A tarball's links are unpacked for checking and kept until the end
    // (the expand simulation reads the leaf).
    let Part {
        findings: structure_findings,
        lines: mut structure_lines,
        mut target_rules,
        chain,
        segments,
        package,
        upload,
        leaf,
        leaf_facts,
        unpacked: _unpacked,
    } = if chain_target {
        chain_part(image, input, opts, progress)?
    } else {
        file_part(image, opts, progress)?
    };
    structure_lines.extend(content_line(image, &leaf, &opts.check.parents));

    let structure_ok = !structure_lines.iter().any(|l| l.status == Status::Fail);
    if structure_ok {
        let upload_bytes = upload.as_ref().map_or(0, |d| d.size);
        target_rules.extend(free_space_line(image, &leaf, upload_bytes));
    }
    if structure_ok {
        structure_lines.insert(
            0,
            Line::new(
                "CHECK",
                Status::Pass,
                format!("check: no errors, {} warning(s)", structure_findings.len()),
            ),
        );
    }

    let lint = lint::lint(&LintInput {
        name: opts.name.as_deref(),
        min_ram: opts.min_ram.as_deref(),
        min_disk: opts.min_disk.as_deref(),
        properties: &opts.properties,
    });
    let Lint {
        lines: mut lint_lines,
        fields,
        properties,
    } = lint;
    // The scheduler's check needs no flavor: without one, it is shown here.
    if let (true, Some(req), Some(host)) = (
        opts.flavors.is_empty(),
        properties.get("hypervisor_version_requires"),
        opts.hypervisor_version.as_deref(),
    ) {
        lint_lines.push(flavor::version_line(req, Some(host)));
    }
    let sizes = leaf_facts.footer.as_ref().map(VirtualSizes::from_footer);
    let (record, record_lines) = record::build(&RecordInput {
        fields: &fields,
        properties: &properties,
        default_name: default_name(image),
        container_format: if chain_target { "ovf" } else { "bare" },
        digests: upload.as_ref(),
        sizes,
        recognised: matches!(leaf_facts.kind, Kind::Dynamic | Kind::Differencing),
    });
    let upload_path = match (&package, input) {
        (Some(p), _) => Some(p.path.clone()),
        (None, InputKind::Folder) => None,
        (None, InputKind::File) if chain_target => None,
        _ => Some(image.to_path_buf()),
    };
    let command = record.command_line(upload_path.as_deref());
    let create_request = record.create_request();

    let facts = ImageFacts {
        image: record.name.clone(),
        size: record.size,
        min_disk_gb: record.min_disk,
        min_ram_mb: record.min_ram,
        virtual_size: sizes.map(|s| s.qemu.max(s.hyperv)),
        auto_disk_config: properties.get("auto_disk_config").cloned(),
        hypervisor_version_requires: properties.get("hypervisor_version_requires").cloned(),
    };
    let flavors = flavor_reports(&leaf, &facts, opts);

    let mut report = Report {
        image: image.to_path_buf(),
        target: opts.target,
        input,
        disk_type: leaf_facts.kind,
        structure: Structure {
            ok: structure_ok,
            lines: structure_lines,
            findings: structure_findings,
        },
        azure: (opts.target == Target::Azure)
            .then(|| targets::azure_upload(&leaf_facts, &record.name)),
        record: (opts.target != Target::Azure).then_some(RecordSection {
            record,
            create_request,
            command,
            virtual_sizes: sizes,
            lines: record_lines,
        }),
        lint: lint_lines,
        target_rules,
        chain,
        segments,
        package,
        flavors,
        verdict: Verdict::default(),
    };
    report.verdict = report.tally();
    Ok(report)
}

/// A FAIL when the virtual disk's first sectors hold another image format's
/// header: the image was converted without being decoded, and a guest would
/// see a qcow2 (or VMDK, …) file where it expects a partition table.
/// Nothing when the disk cannot be read (the structure lines say why).
fn content_line(image: &Path, leaf: &Path, parents: &crate::disk::ParentOptions) -> Option<Line> {
    let disk = crate::disk::open_with(leaf, parents).ok()?;
    let len = usize::try_from(disk.size_bytes())
        .unwrap_or(usize::MAX)
        .min(crate::format::foreign::PREFIX_LEN);
    let mut first = vec![0u8; len];
    disk.read_at(0, &mut first).ok()?;
    let found = crate::format::foreign::detect_content(&first)?;
    let inner = format!("content.{}", found.name());
    let fix = match found {
        Foreign::Vhd | Foreign::VhdHeaderFragment { .. } => format!(
            "convert the original VHD instead of its bytes: `vhdkit convert ORIGINAL.vhd {} --to dynamic`",
            image.display()
        ),
        _ if disk.kind() == Kind::Raw => format!(
            "decode it: `qemu-img convert -f {} -O raw {} disk.raw`, `vhdkit convert disk.raw disk.vhd --to dynamic`",
            found.name(),
            image.display(),
        ),
        _ => format!(
            "decode it: `vhdkit convert {} {inner} --to raw`, `qemu-img convert -f {} -O raw {inner} disk.raw`, `vhdkit convert disk.raw disk.vhd --to dynamic`",
            image.display(),
            found.name(),
        ),
    };
    Some(
        Line::new(
            "CONTENT_FOREIGN",
            Status::Fail,
            format!(
                "the disk's content is {}: it was converted without being decoded, so a guest would see the {} file instead of a disk",
                found.description(),
                found.name()
            ),
        )
        .with_fix(fix),
    )
}

/// Share of the upload above which free-but-stored bytes earn a WARN.
const SPARSIFY_WARN_PERCENT: u64 = 5;

/// A WARN when the filesystems' free space holds data worth more than
/// [`SPARSIFY_WARN_PERCENT`] of the upload: `vhdkit sparsify` would leave
/// it out. Nothing when it cannot be read (the other sections say why).
fn free_space_line(image: &Path, leaf: &Path, upload_bytes: u64) -> Option<Line> {
    let disk = crate::disk::open(leaf).ok()?;
    let map = crate::fs::usage::survey(disk.as_ref()).ok()?;
    let dropped = map.dropped_bytes();
    if upload_bytes == 0 || dropped.saturating_mul(100) <= upload_bytes * SPARSIFY_WARN_PERCENT {
        return None;
    }
    Some(
        Line::new(
            "FREE_SPACE_DATA",
            Status::Warn,
            format!(
                "{dropped} bytes ({:.1}% of the {upload_bytes}-byte upload) are free in the filesystems but hold data; `vhdkit sparsify` would leave them out",
                dropped as f64 * 100.0 / upload_bytes as f64
            ),
        )
        .with_fix(format!(
            "vhdkit sparsify {} {}",
            image.display(),
            sparsified_name(image)
        )),
    )
}

/// `disk.vhd` -> `disk-sparse.vhd`.
fn sparsified_name(image: &Path) -> String {
    let stem = image
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    image
        .with_file_name(format!("{stem}-sparse.vhd"))
        .display()
        .to_string()
}

/// Nova's checks of each flavor, each simulating the boot-time resize of
/// the leaf with Nova's rule.
fn flavor_reports(leaf: &Path, facts: &ImageFacts, opts: &Options) -> Vec<FlavorReport> {
    let fopts = FlavorOptions {
        hypervisor_version: opts.hypervisor_version.clone(),
        request_auto_disk_config: opts.request_auto_disk_config,
    };
    let expand = |size: u64| -> Result<ExpandReport> {
        crate::grow::plan_expand(
            leaf,
            &ExpandOptions {
                size,
                rule: GrowRule::Nova,
                to: crate::writer::Target::Dynamic,
                disk_only: false,
                as_child: false,
                block_size: crate::format::header::DEFAULT_BLOCK_SIZE,
                creator: crate::writer::DEFAULT_CREATOR.into(),
                no_sync: false,
                parents: opts.check.parents.clone(),
            },
        )
    };
    opts.flavors
        .iter()
        .map(|f| flavor::check_flavor(facts, f, &fopts, &expand))
        .collect()
}

/// What the input-specific half of [`preflight`] finds.
struct Part {
    findings: Vec<Finding>,
    lines: Vec<Line>,
    target_rules: Vec<Line>,
    chain: Option<Vec<ChainLink>>,
    segments: Option<SegmentPlan>,
    package: Option<Package>,
    /// Digests of the bytes uploaded, when known.
    upload: Option<Digests>,
    /// The file a hypervisor boots (the chain's leaf).
    leaf: PathBuf,
    leaf_facts: Facts,
    unpacked: Option<tempfile::TempDir>,
}

/// One file for glance, rackspace or azure: check, then the one read.
fn file_part(image: &Path, opts: &Options, progress: &dyn Progress) -> Result<Part> {
    let mut findings = Vec::new();
    let mut lines = Vec::new();
    check_link(image, image, &opts.check, false, &mut findings, &mut lines)?;
    fail_outside_parents(&mut lines, opts.target);
    let source = Source::open(image)?;
    let facts = Facts::from_bytes(image, source.bytes());
    let segment = opts.target == Target::Rackspace && source.len() > opts.segment_size;
    let (digests, etags) = digest_source(
        &source,
        &[Algo::Md5, Algo::Sha512],
        segment.then_some(opts.segment_size),
        progress,
    )?;
    drop(source);
    let mut target_rules = match opts.target {
        Target::Rackspace => targets::rackspace_rules(&facts),
        Target::Azure => targets::azure_rules(&facts),
        Target::Glance | Target::Xenserver => targets::glance_rules(&facts),
    };
    let segments = etags.map(|etags| {
        let plan = targets::plan_segments(
            &opts.container,
            &file_name(image),
            digests.size,
            opts.segment_size,
            etags,
        );
        target_rules.push(Line::new(
            "SWIFT_SEGMENTS",
            Status::Pass,
            format!(
                "{} bytes is above the {}-byte object limit: upload {} segments and the static large object manifest",
                digests.size,
                opts.segment_size,
                plan.segments.len()
            ),
        ));
        plan
    });
    Ok(Part {
        findings,
        lines,
        target_rules,
        chain: None,
        segments,
        package: None,
        upload: Some(digests),
        leaf: image.to_path_buf(),
        leaf_facts: facts,
        unpacked: None,
    })
}

/// A single-file upload carries no parent: a locator naming a place outside
/// the image's folder (check's WARN) is a FAIL, as Glance's inspector
/// refuses images that reference external files.
fn fail_outside_parents(lines: &mut [Line], target: Target) {
    for line in lines.iter_mut().filter(|l| l.code == "PARENT_OUTSIDE") {
        line.status = Status::Fail;
        line.message.push_str(&format!(
            "; a {} upload is one file and must not reference files outside it",
            target.name()
        ));
    }
}

/// A XenServer chain: a folder, a tarball (digested as it is unpacked), or
/// one VHD as a chain of one; packed with `--package`.
fn chain_part(
    image: &Path,
    input: InputKind,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Part> {
    let mut unpacked = None;
    let (listing, tar_digests) = match input {
        InputKind::Folder => (chain::list_folder(image)?, None),
        InputKind::Tarball => {
            let dir = tempdir_beside(image)?;
            let source = Source::open(image)?;
            let gz = source.bytes().starts_with(&GZIP_MAGIC);
            let (digests, others) = digest_and_extract(&source, gz, dir.path(), progress)?;
            let mut listing = chain::list_folder(dir.path())?;
            listing.others = others;
            unpacked = Some(dir);
            (listing, Some(digests))
        }
        InputKind::File => (
            chain::FolderListing {
                links: vec![(0, image.to_path_buf())],
                others: Vec::new(),
            },
            None,
        ),
    };
    let mut links = read_links(&listing.links)?;
    let numbers: Vec<usize> = listing.links.iter().map(|l| l.0).collect();
    // A link inside a tarball is named by the tarball, not by the
    // temporary folder it was unpacked to.
    let shown = |link: &ChainLink| match input {
        InputKind::Tarball => PathBuf::from(format!("{}:{}.vhd", image.display(), link.index)),
        _ => link.path.clone(),
    };
    let mut findings = Vec::new();
    let mut lines = Vec::new();
    for link in &links {
        check_link(
            &link.path,
            &shown(link),
            &opts.check,
            input != InputKind::File,
            &mut findings,
            &mut lines,
        )?;
    }
    let mut target_rules = targets::xenserver_rules(&numbers, &listing.others, &links);
    let mut upload = tar_digests;
    let mut package = None;
    match (&opts.package, input) {
        (Some(_), InputKind::Tarball) => target_rules.push(Line::new(
            "XEN_PACKAGE",
            Status::Warn,
            "IMAGE is already a tarball: --package ignored".into(),
        )),
        (Some(out), _) if lines.iter().chain(&target_rules).any(|l| l.status == Status::Fail) => {
            // As convert refuses a damaged input, nothing is written for a
            // chain that fails.
            target_rules.push(Line::new(
                "XEN_PACKAGE",
                Status::Warn,
                format!("{} not written: the chain has FAILs", out.display()),
            ))
        }
        (Some(out), _) if !links.is_empty() => {
            let d = write_package_file(&links, out, image, opts.no_sync, progress)?;
            upload = Some(d.clone());
            package = Some(Package {
                path: out.clone(),
                digests: d,
            });
        }
        (None, InputKind::Folder | InputKind::File) => target_rules.push(Line::new(
            "XEN_PACKAGE",
            Status::Warn,
            "the upload is the chain's gzipped tarball: add --package OUT.tgz to write it and get its checksum".into(),
        )),
        _ => {}
    }
    let leaf = links
        .first()
        .map_or_else(|| image.to_path_buf(), |l| l.path.clone());
    let leaf_facts = Facts {
        path: leaf.clone(),
        kind: links.first().map_or(Kind::Raw, |l| l.kind),
        file_size: 0,
        footer: links.first().and_then(|l| l.footer.clone()),
    };
    for link in &mut links {
        link.path = shown(link);
    }
    Ok(Part {
        findings,
        lines,
        target_rules,
        chain: Some(links),
        segments: None,
        package,
        upload,
        leaf,
        leaf_facts,
        unpacked,
    })
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// `ustar` at offset 257 of a tar header.
const USTAR_OFFSET: usize = 257;

fn input_kind(image: &Path) -> Result<InputKind> {
    let meta = std::fs::metadata(image).map_err(|e| Error::io(image, "stat", e))?;
    if meta.is_dir() {
        return Ok(InputKind::Folder);
    }
    let mut head = [0u8; 512];
    let mut f = std::fs::File::open(image).map_err(|e| Error::io(image, "open", e))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(Error::io(image, "read", e)),
        }
    }
    let head = &head[..n];
    let tar = head
        .get(USTAR_OFFSET..USTAR_OFFSET + 5)
        .is_some_and(|m| m == b"ustar");
    Ok(if head.starts_with(&GZIP_MAGIC) || tar {
        InputKind::Tarball
    } else {
        InputKind::File
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(|| "image".into(), |n| n.to_string_lossy().into_owned())
}

fn default_name(p: &Path) -> String {
    let name = file_name(p);
    for ext in [".tar.gz", ".tgz", ".tar", ".vhd"] {
        if let Some(stem) = name.strip_suffix(ext) {
            if !stem.is_empty() {
                return stem.to_string();
            }
        }
    }
    name
}

fn tempdir_beside(image: &Path) -> Result<tempfile::TempDir> {
    let dir = match image.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tempfile::Builder::new()
        .prefix(".vhdkit-preflight.")
        .tempdir_in(&dir)
        .map_err(|e| Error::io(&dir, "create temporary folder", e))
}

fn read_links(found: &[(usize, PathBuf)]) -> Result<Vec<ChainLink>> {
    found.iter().map(|(n, p)| chain::read_link(*n, p)).collect()
}

/// Parent-resolution findings that the chain's numbering replaces.
const CHAIN_CODES: [&str; 5] = [
    "PARENT_NOT_FOUND",
    "PARENT_ID_MISMATCH",
    "PARENT_LOOP",
    "CHAIN_TOO_DEEP",
    "PARENT_NOT_VHD",
];

/// `check` of one file, its findings shown as `shown`. For a link of a
/// numbered chain, only its own findings count, and parent resolution is
/// left to the chain rules.
fn check_link(
    path: &Path,
    shown: &Path,
    options: &check::Options,
    numbered: bool,
    findings: &mut Vec<Finding>,
    lines: &mut Vec<Line>,
) -> Result<()> {
    match check::check_path(path, options) {
        Ok(report) => {
            for mut f in report.findings {
                if numbered && (f.file != path || CHAIN_CODES.contains(&f.code)) {
                    continue;
                }
                if f.file == path {
                    f.file = shown.to_path_buf();
                }
                let status = match f.severity {
                    Severity::Error => Status::Fail,
                    Severity::Warning => Status::Warn,
                };
                lines.push(Line::new(
                    f.code,
                    status,
                    format!("{} at {:#x}: {}", f.file.display(), f.offset, f.message),
                ));
                findings.push(f);
            }
            Ok(())
        }
        Err(Error::NotVhd { detail, .. }) => {
            lines.push(Line::new(
                "NOT_VHD",
                Status::Fail,
                format!(
                    "{}: {detail}; disk_format is vhd, so every target refuses it",
                    shown.display()
                ),
            ));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Reads a tarball once: its bytes go to the digests as the tar reader
/// pulls them, and its links are unpacked into `dir`.
fn digest_and_extract(
    source: &Source,
    gz: bool,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<(Digests, Vec<String>)> {
    source.advise_sequential();
    let bytes = source.bytes();
    let (digests, others) = std::thread::scope(|scope| {
        let mut sink = DigestSink::start(scope, &[Algo::Md5, Algo::Sha512]);
        let mut reader = DigestReader::new(bytes, &mut sink, progress);
        let others = chain::extract_chain(&mut reader, gz, dir);
        // Whatever the archive reader did not need (padding) is still uploaded.
        reader.feed_rest();
        (sink.finish(), others)
    });
    if crate::pipeline::INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    Ok((digests, others?))
}

/// Writes the chain's tarball to `out` and digests it as it is written.
fn write_package_file(
    links: &[ChainLink],
    out: &Path,
    image: &Path,
    no_sync: bool,
    progress: &dyn Progress,
) -> Result<Digests> {
    let mut inputs: Vec<&Path> = links.iter().map(|l| l.path.as_path()).collect();
    inputs.push(image);
    let members: Vec<Member<'_>> = links
        .iter()
        .map(|l| Member {
            path: &l.path,
            name: format!("{}.vhd", l.index),
        })
        .collect();
    write_package(&members, out, &inputs, no_sync, progress)
}

impl Report {
    /// Every line of every section.
    pub fn lines(&self) -> impl Iterator<Item = &Line> {
        self.structure
            .lines
            .iter()
            .chain(self.record.iter().flat_map(|r| &r.lines))
            .chain(&self.lint)
            .chain(&self.target_rules)
            .chain(self.flavors.iter().flat_map(|f| &f.lines))
    }

    fn tally(&self) -> Verdict {
        Verdict::tally(self.lines().map(|l| l.status))
    }

    /// The human report; `quiet` keeps only WARN and FAIL lines and the verdict.
    pub fn to_text(&self, quiet: bool) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        if !quiet {
            let _ = writeln!(
                out,
                "preflight {} ({}, {}) for {}",
                self.image.display(),
                self.input_name(),
                self.disk_type.name(),
                self.target.name()
            );
        }
        section(&mut out, "Structure", &self.structure.lines, quiet);
        if let Some(r) = &self.record {
            if !quiet {
                record_text(&mut out, r);
            }
            section(&mut out, "Record", &r.lines, quiet);
        }
        if let (Some(a), false) = (&self.azure, quiet) {
            azure_text(&mut out, a);
        }
        section(&mut out, "Property lint", &self.lint, quiet);
        section(
            &mut out,
            &format!("Target {}", self.target.name()),
            &self.target_rules,
            quiet,
        );
        if let (Some(p), false) = (&self.package, quiet) {
            let _ = writeln!(
                out,
                "Package {}: {} bytes, md5 {}, sha512 {}",
                p.path.display(),
                p.digests.size,
                p.digests.md5.as_deref().unwrap_or(""),
                p.digests.sha512.as_deref().unwrap_or("")
            );
        }
        if let (Some(s), false) = (&self.segments, quiet) {
            segments_text(&mut out, s);
        }
        for f in &self.flavors {
            section(
                &mut out,
                &format!(
                    "Flavor {} ({} MB RAM, {} GB root disk)",
                    f.flavor.name, f.flavor.ram_mb, f.flavor.root_gb
                ),
                &f.lines,
                quiet,
            );
        }
        let _ = writeln!(out, "{}", self.verdict.line(self.target.name()));
        out
    }

    fn input_name(&self) -> &'static str {
        match self.input {
            InputKind::File => "file",
            InputKind::Folder => "chain folder",
            InputKind::Tarball => "chain tarball",
        }
    }
}

/// Is IMAGE, the file exactly as it would be uploaded, ready for Glance
/// and Nova on a target? One read gives the digests Glance records.
///
/// Reports, in order: structure (`check`, link by link), the Glance v2
/// image record (JSON and `openstack image create` command), the
/// property lint, the target rules with fixes, the Nova checks of each
/// flavor, and a verdict. Exit status: 0 ready, 1 not ready (any FAIL),
/// 2 could not run.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Args {
    /// The image file; for --target xenserver also a folder or tarball
    /// holding a chain 0.vhd (leaf) … n.vhd (base).
    pub image: PathBuf,
    /// Where it goes: glance, rackspace, xenserver or azure.
    #[cfg_attr(feature = "cli", arg(long, default_value = "glance", value_parser = Target::parse))]
    pub target: Target,
    /// A flavor to boot on, NAME:RAM_MB:ROOT_GB (repeatable).
    #[cfg_attr(feature = "cli", arg(long = "flavor", value_name = "NAME:RAM_MB:ROOT_GB", value_parser = Flavor::parse))]
    pub flavors: Vec<Flavor>,
    /// The hosts' hypervisor version, checked against hypervisor_version_requires.
    #[cfg_attr(feature = "cli", arg(long, value_name = "X.Y.Z"))]
    pub hypervisor_version: Option<String>,
    /// The image name (default: the file name without its extension).
    #[cfg_attr(feature = "cli", arg(long))]
    pub name: Option<String>,
    /// min_ram in MiB.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "MB", allow_hyphen_values = true)
    )]
    pub min_ram: Option<String>,
    /// min_disk in GiB (raised to the virtual size if below it).
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "GB", allow_hyphen_values = true)
    )]
    pub min_disk: Option<String>,
    /// An image property KEY=VALUE (repeatable).
    #[cfg_attr(feature = "cli", arg(long = "property", value_name = "KEY=VALUE", value_parser = lint::parse_property))]
    pub properties: Vec<(String, String)>,
    /// Simulate a boot request asking for automatic disk config.
    #[cfg_attr(feature = "cli", arg(long))]
    pub request_auto_disk_config: bool,
    /// Swift segment size for --target rackspace (K/M/G suffixes).
    #[cfg_attr(feature = "cli", arg(long, default_value = "5G", value_parser = crate::report::parse_size_arg))]
    pub segment_size: u64,
    /// Swift container for the image object (segments go to CONTAINER_segments).
    #[cfg_attr(feature = "cli", arg(long, default_value = "images"))]
    pub container: String,
    /// --target xenserver: write the chain as a gzipped tarball here.
    #[cfg_attr(feature = "cli", arg(long, value_name = "OUT.tgz"))]
    pub package: Option<PathBuf>,
    /// Rename the --package tarball into place without fsync (see README: Durability).
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_sync: bool,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub parents: crate::report::ParentArgs,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub out: crate::report::OutputArgs,
}

/// One titled section of lines (only WARN and FAIL when `quiet`).
fn section(out: &mut String, title: &str, lines: &[Line], quiet: bool) {
    use std::fmt::Write as _;
    let shown: Vec<&Line> = lines
        .iter()
        .filter(|l| !quiet || l.status != Status::Pass)
        .collect();
    if shown.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}");
    for l in shown {
        let _ = writeln!(
            out,
            "  {:<4}  {:<28} {}",
            l.status.name(),
            l.code,
            l.message
        );
        if let Some(fix) = &l.fix {
            let _ = writeln!(out, "        fix: {fix}");
        }
    }
}

/// Pretty JSON, indented under a title.
fn indented_json(out: &mut String, value: &impl Serialize) {
    use std::fmt::Write as _;
    let json = serde_json::to_string_pretty(value).unwrap_or_default();
    for l in json.lines() {
        let _ = writeln!(out, "  {l}");
    }
}

/// The Glance record, the create request and the openstack command.
fn record_text(out: &mut String, r: &RecordSection) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "Image record (Glance v2)");
    indented_json(out, &r.record);
    if let Some(s) = r.virtual_sizes.filter(|s| s.differ) {
        let _ = writeln!(
            out,
            "  virtual size by consumer: Glance {} (original size), qemu {} ({}), Hyper-V {} (current size), XenServer {} (current size)",
            s.glance, s.qemu, s.qemu_rule, s.hyperv, s.xenserver
        );
    }
    let _ = writeln!(out, "Create request (POST /v2/images)");
    indented_json(out, &r.create_request);
    let _ = writeln!(out, "Command");
    let _ = writeln!(out, "  {}", r.command);
}

/// What Azure needs: the disk, its sizes and the upload commands.
fn azure_text(out: &mut String, a: &targets::AzureUpload) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "Azure upload");
    let _ = writeln!(out, "  disk type          {}", a.disk_type.name());
    let _ = writeln!(
        out,
        "  virtual size       {} bytes ({})",
        a.virtual_size,
        if a.whole_mib {
            format!("{} MiB", a.virtual_size / targets::MIB)
        } else {
            "not a whole number of MiB".into()
        }
    );
    let _ = writeln!(out, "  file size          {} bytes", a.file_size);
    let _ = writeln!(out, "  upload size bytes  {}", a.upload_size_bytes);
    let _ = writeln!(out, "Commands");
    for c in &a.commands {
        let _ = writeln!(out, "  {c}");
    }
}

/// The Swift segment plan and its manifest.
fn segments_text(out: &mut String, s: &SegmentPlan) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "Swift segments ({} bytes each, container {}_segments)",
        s.segment_size, s.container
    );
    for seg in &s.segments {
        let _ = writeln!(
            out,
            "  {:>4}  offset {:>14}  {:>12} bytes  md5 {}  {}",
            seg.index, seg.offset, seg.size_bytes, seg.etag, seg.path
        );
    }
    let _ = writeln!(out, "SLO manifest (PUT ?multipart-manifest=put)");
    indented_json(out, &s.manifest);
}

/// `vhdkit preflight`.
pub fn run(args: Args) -> Result<crate::report::Outcome> {
    let opts = Options {
        target: args.target,
        flavors: args.flavors,
        hypervisor_version: args.hypervisor_version,
        name: args.name,
        min_ram: args.min_ram,
        min_disk: args.min_disk,
        properties: args.properties,
        request_auto_disk_config: args.request_auto_disk_config,
        segment_size: args.segment_size,
        container: args.container,
        package: args.package,
        no_sync: args.no_sync,
        check: check::Options {
            parents: args.parents.options(),
            ..check::Options::default()
        },
    };
    let quiet = args.out.quiet;
    let bar = crate::report::Bar::new(chain::progress_total(&args.image), quiet);
    let report = preflight(&args.image, &opts, &bar);
    drop(bar);
    let report = report?;
    crate::report::Outcome::problems_unless(report.verdict.ready, &report, |r| r.to_text(quiet))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::digest::digest_bytes;
    use crate::pipeline::NoProgress;

    /// The digest engine's chunk size.
    const CHUNK_BYTES: usize = 1 << 20;

    #[test]
    fn default_names_drop_the_extension() {
        assert_eq!(default_name(Path::new("/a/web.vhd")), "web");
        assert_eq!(default_name(Path::new("chain.tar.gz")), "chain");
        assert_eq!(default_name(Path::new("chain.tgz")), "chain");
        assert_eq!(default_name(Path::new("dir")), "dir");
        assert_eq!(default_name(Path::new(".vhd")), ".vhd");
    }

    fn link_file(dir: &Path, name: &str, len: usize) -> ChainLink {
        let path = dir.join(name);
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&path, data).unwrap();
        ChainLink {
            index: name.trim_end_matches(".vhd").parse().unwrap(),
            path,
            kind: Kind::Raw,
            current_size: None,
            creator: None,
            unique_id: None,
            parent_unique_id: None,
            hidden: None,
            footer: None,
            parent_id_bytes: None,
        }
    }

    #[test]
    fn a_tarball_is_digested_whole_while_it_is_unpacked() {
        let t = tempfile::tempdir().unwrap();
        let links = [
            link_file(t.path(), "0.vhd", 3 * CHUNK_BYTES + 5),
            link_file(t.path(), "1.vhd", 1000),
        ];
        let tgz = t.path().join("c.tgz");
        let d = write_package_file(&links, &tgz, t.path(), false, &NoProgress).unwrap();
        let bytes = std::fs::read(&tgz).unwrap();
        assert_eq!(d, digest_bytes(&bytes, &[Algo::Md5, Algo::Sha512]));
        assert_eq!(input_kind(&tgz).unwrap(), InputKind::Tarball);

        let out = t.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let source = Source::open(&tgz).unwrap();
        let (digests, others) = digest_and_extract(&source, true, &out, &NoProgress).unwrap();
        assert_eq!(digests, d);
        assert!(others.is_empty());
        for l in &links {
            let name = format!("{}.vhd", l.index);
            assert_eq!(
                std::fs::read(out.join(&name)).unwrap(),
                std::fs::read(&l.path).unwrap()
            );
        }
    }

    #[test]
    fn one_pass_gives_whole_and_segment_digests() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("f");
        let data: Vec<u8> = (0..(2 * CHUNK_BYTES + 100))
            .map(|i| (i % 253) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let source = Source::open(&path).unwrap();
        let (d, etags) = digest_source(
            &source,
            &[Algo::Md5, Algo::Sha512],
            Some(700_000),
            &NoProgress,
        )
        .unwrap();
        assert_eq!(d, digest_bytes(&data, &[Algo::Md5, Algo::Sha512]));
        let want: Vec<String> = data
            .chunks(700_000)
            .map(|c| digest_bytes(c, &[Algo::Md5]).md5.unwrap())
            .collect();
        assert_eq!(etags.unwrap(), want);
    }
}
