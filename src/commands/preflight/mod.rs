//! `preflight`: is this file ready to upload to Glance and boot with Nova on
//! a given target? One read of the image gives the digests Glance will
//! record (and, for Swift, each segment's MD5); `check` gives the structure;
//! the rest is pure judgement on metadata, shown as PASS/WARN/FAIL lines.
//!
//! Sections, in report order: structure ([`crate::check`]), the image
//! record ([`record`]), the property lint ([`lint`]), the target rules
//! ([`targets`]), the flavor checks ([`flavor`]), the verdict.

pub mod flavor;
pub mod lint;

use serde::Serialize;

/// The outcome of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One rule's result: a stable code, the outcome, what was found, and the
/// fix as a runnable command where there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub code: String,
    pub status: Status,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Line {
    pub fn new(code: &str, status: Status, message: String) -> Line {
        Line {
            code: code.to_string(),
            status,
            message,
            fix: None,
        }
    }

    /// The same line with a fix.
    pub fn with_fix(mut self, fix: String) -> Line {
        self.fix = Some(fix);
        self
    }
}

pub mod record;
pub mod targets;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering as AtomicOrdering;

use crate::check::{self, Finding, Severity};
use crate::disk::{Kind, Source};
use crate::expand::{ExpandOptions, ExpandReport};
use crate::output::Output;
use crate::partition::GrowRule;
use crate::pipeline::digest::{Algo, Chunk, DigestSink, Digests};
use crate::pipeline::{self, Progress};
use crate::{Error, Result};
use flavor::{Flavor, FlavorOptions, FlavorReport, ImageFacts};
use lint::{Lint, LintInput};
use record::{ImageRecord, RecordInput, VirtualSizes};
use targets::{ChainLink, Facts, SegmentPlan, SegmentSink, Target};

/// Bytes read from the image per chunk of the one pass.
const CHUNK_BYTES: usize = 1 << 20;
/// Mapped pages are released once every consumer is this far past them.
const RELEASE_BYTES: u64 = 8 << 20;

/// What `preflight` is asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    pub flavors: Vec<Flavor>,
    pub hypervisor_version: Option<String>,
    pub name: Option<String>,
    pub min_ram: Option<String>,
    pub min_disk: Option<String>,
    pub properties: Vec<(String, String)>,
    /// Simulate a boot request that asks for automatic disk config.
    pub request_auto_disk_config: bool,
    /// Swift segment size (and the size above which a file is segmented).
    pub segment_size: u64,
    /// Swift container the image object goes to.
    pub container: String,
    /// `xenserver`: write the chain as a gzipped tarball here.
    pub package: Option<PathBuf>,
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
pub struct Structure {
    pub ok: bool,
    pub lines: Vec<Line>,
    pub findings: Vec<Finding>,
}

/// The image record section.
#[derive(Debug, Clone, Serialize)]
pub struct RecordSection {
    /// The record as Glance would hold it.
    pub record: ImageRecord,
    /// The body of `POST /v2/images`, ready to send.
    pub create_request: serde_json::Value,
    /// The equivalent `openstack image create` command line.
    pub command: String,
    /// The size each consumer reads (absent for a raw file).
    pub virtual_sizes: Option<VirtualSizes>,
    pub lines: Vec<Line>,
}

/// The tarball written by `--package`.
#[derive(Debug, Clone, Serialize)]
pub struct Package {
    pub path: PathBuf,
    #[serde(flatten)]
    pub digests: Digests,
}

/// The overall answer.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Verdict {
    pub ready: bool,
    pub fail: usize,
    pub warn: usize,
    pub pass: usize,
}

/// Everything `preflight` found, in report order.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub image: PathBuf,
    pub target: Target,
    pub input: InputKind,
    /// raw, fixed, dynamic, differencing (of the file, or the chain's leaf).
    pub disk_type: Kind,
    pub structure: Structure,
    pub record: RecordSection,
    pub lint: Vec<Line>,
    pub target_rules: Vec<Line>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<Vec<ChainLink>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<SegmentPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<Package>,
    pub flavors: Vec<FlavorReport>,
    pub verdict: Verdict,
}

/// Runs every check on `image`. An `Err` means preflight could not run
/// (exit status 2); problems with the image are FAIL lines in the report.
pub fn preflight(image: &Path, opts: &Options, progress: &dyn Progress) -> Result<Report> {
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
    let chain_target = opts.target == Target::Xenserver;
    if opts.package.is_some() && !chain_target {
        return Err(Error::Usage(
            "--package writes a XenServer tarball: use it with --target xenserver".into(),
        ));
    }
    // A tarball's links are unpacked for checking and kept until the end
    // (the expand simulation reads the leaf).
    let Part {
        findings: structure_findings,
        lines: mut structure_lines,
        target_rules,
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

    let structure_ok = !structure_lines.iter().any(|l| l.status == Status::Fail);
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
    let fopts = FlavorOptions {
        hypervisor_version: opts.hypervisor_version.clone(),
        request_auto_disk_config: opts.request_auto_disk_config,
    };
    let expand = |size: u64| -> Result<ExpandReport> {
        crate::expand::plan_expand(
            &leaf,
            &ExpandOptions {
                size,
                rule: GrowRule::Nova,
                to: crate::convert::Target::Dynamic,
                disk_only: false,
                as_child: false,
                block_size: crate::format::header::DEFAULT_BLOCK_SIZE,
                creator: crate::convert::DEFAULT_CREATOR.into(),
            },
        )
    };
    let flavors: Vec<FlavorReport> = opts
        .flavors
        .iter()
        .map(|f| flavor::check_flavor(&facts, f, &fopts, &expand))
        .collect();

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
        record: RecordSection {
            record,
            create_request,
            command,
            virtual_sizes: sizes,
            lines: record_lines,
        },
        lint: lint_lines,
        target_rules,
        chain,
        segments,
        package,
        flavors,
        verdict: Verdict {
            ready: false,
            fail: 0,
            warn: 0,
            pass: 0,
        },
    };
    report.verdict = report.tally();
    Ok(report)
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
    let source = Source::open(image)?;
    let facts = Facts::from_bytes(image, source.bytes());
    let segment = opts.target == Target::Rackspace && source.len() > opts.segment_size;
    let (digests, etags) = digest_file(&source, segment.then_some(opts.segment_size), progress)?;
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
        InputKind::Folder => (targets::list_folder(image)?, None),
        InputKind::Tarball => {
            let dir = tempdir_beside(image)?;
            let source = Source::open(image)?;
            let gz = source.bytes().starts_with(&GZIP_MAGIC);
            let (digests, others) = digest_and_extract(&source, gz, dir.path(), progress)?;
            let mut listing = targets::list_folder(dir.path())?;
            listing.others = others;
            unpacked = Some(dir);
            (listing, Some(digests))
        }
        InputKind::File => (
            targets::FolderListing {
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
            let d = write_package_file(&links, out, image, progress)?;
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
    found
        .iter()
        .map(|(n, p)| targets::read_link(*n, p))
        .collect()
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

/// The consumers of the one pass: the whole-file digests and, for Swift,
/// the segment MD5s.
struct Feed<'a> {
    sink: DigestSink<'a>,
    segments: Option<SegmentSink<'a>>,
}

impl<'a> Feed<'a> {
    fn start<'env>(scope: &'a std::thread::Scope<'a, 'env>, segment_size: Option<u64>) -> Self {
        Feed {
            sink: DigestSink::start(scope, &[Algo::Md5, Algo::Sha512]),
            segments: segment_size.map(|s| SegmentSink::start(scope, s)),
        }
    }

    fn feed(&mut self, chunk: Chunk<'a>) {
        if let Some(s) = &self.segments {
            s.feed(chunk.clone());
        }
        self.sink.feed(chunk);
    }

    fn consumed(&self) -> u64 {
        let d = self.sink.consumed();
        self.segments.as_ref().map_or(d, |s| d.min(s.consumed()))
    }

    fn finish(self) -> (Digests, Option<Vec<String>>) {
        let etags = self.segments.map(SegmentSink::finish);
        (self.sink.finish(), etags)
    }
}

fn interrupted() -> Result<()> {
    if pipeline::INTERRUPTED.load(AtomicOrdering::Relaxed) {
        return Err(Error::Usage("interrupted".into()));
    }
    Ok(())
}

/// The one read of a file: MD5 and SHA-512 of the whole, and each segment's
/// MD5, from the same chunks. Mapped pages are dropped behind the slowest
/// consumer.
fn digest_file(
    source: &Source,
    segment_size: Option<u64>,
    progress: &dyn Progress,
) -> Result<(Digests, Option<Vec<String>>)> {
    source.advise_sequential();
    let bytes = source.bytes();
    let out = std::thread::scope(|scope| {
        let mut feed = Feed::start(scope, segment_size);
        let mut released = 0u64;
        for chunk in bytes.chunks(CHUNK_BYTES) {
            if pipeline::INTERRUPTED.load(AtomicOrdering::Relaxed) {
                break;
            }
            feed.feed(Chunk::Borrowed(chunk));
            progress.advance(chunk.len() as u64);
            let done = feed.consumed();
            if done > released + RELEASE_BYTES {
                source.release(released, done - released);
                released = done;
            }
        }
        feed.finish()
    });
    interrupted()?;
    Ok(out)
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
    std::thread::scope(|scope| {
        let mut feed = Feed::start(scope, None);
        let mut tee = Tee {
            bytes,
            pos: 0,
            fed: 0,
            feed: &mut feed,
            progress,
        };
        let others = targets::extract_chain(&mut tee, gz, dir);
        // Whatever the archive reader did not need (padding) is still uploaded.
        tee.feed_to(bytes.len());
        let (digests, _) = feed.finish();
        Ok((digests, others?))
    })
}

/// A reader over the mapped file that feeds the digests, in order, one
/// chunk ahead of what it hands out.
struct Tee<'f, 'a> {
    bytes: &'a [u8],
    pos: usize,
    fed: usize,
    feed: &'f mut Feed<'a>,
    progress: &'f dyn Progress,
}

impl Tee<'_, '_> {
    fn feed_to(&mut self, end: usize) {
        while self.fed < end.min(self.bytes.len()) {
            let next = (self.fed + CHUNK_BYTES).min(self.bytes.len());
            self.feed.feed(Chunk::Borrowed(&self.bytes[self.fed..next]));
            self.progress.advance((next - self.fed) as u64);
            self.fed = next;
        }
    }
}

impl Read for Tee<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if pipeline::INTERRUPTED.load(AtomicOrdering::Relaxed) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "interrupted",
            ));
        }
        let n = buf.len().min(self.bytes.len() - self.pos);
        self.feed_to(self.pos + n);
        buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes the chain's tarball to `out` (temporary file, synced, renamed)
/// and digests the bytes as they are written.
fn write_package_file(
    links: &[ChainLink],
    out: &Path,
    image: &Path,
    progress: &dyn Progress,
) -> Result<Digests> {
    let mut inputs: Vec<&Path> = links.iter().map(|l| l.path.as_path()).collect();
    inputs.push(image);
    let output = Output::create(out, &inputs)?;
    let digests = std::thread::scope(|scope| -> Result<Digests> {
        let mut sink = DigestSink::start(scope, &[Algo::Md5, Algo::Sha512]);
        {
            let writer = HashWriter {
                file: output.file(),
                path: output.temp_path(),
                sink: &mut sink,
            };
            targets::write_package(
                links,
                std::io::BufWriter::with_capacity(CHUNK_BYTES, writer),
                progress,
            )?;
        }
        Ok(sink.finish())
    })?;
    output.commit()?;
    Ok(digests)
}

/// Writes to the output file and hands each buffer to the digests.
struct HashWriter<'w, 'a> {
    file: &'w std::fs::File,
    path: &'w Path,
    sink: &'w mut DigestSink<'a>,
}

impl Write for HashWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut f = self.file;
        f.write_all(buf).map_err(|e| {
            std::io::Error::new(e.kind(), format!("{}: write: {e}", self.path.display()))
        })?;
        self.sink.feed(Chunk::Shared(std::sync::Arc::from(buf)));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut f = self.file;
        f.flush()
    }
}

impl Report {
    /// Every line of every section.
    pub fn lines(&self) -> impl Iterator<Item = &Line> {
        self.structure
            .lines
            .iter()
            .chain(&self.record.lines)
            .chain(&self.lint)
            .chain(&self.target_rules)
            .chain(self.flavors.iter().flat_map(|f| &f.lines))
    }

    fn tally(&self) -> Verdict {
        let count = |s| self.lines().filter(|l| l.status == s).count();
        let fail = count(Status::Fail);
        Verdict {
            ready: fail == 0,
            fail,
            warn: count(Status::Warn),
            pass: count(Status::Pass),
        }
    }

    /// The human report; `quiet` keeps only WARN and FAIL lines and the verdict.
    pub fn to_text(&self, quiet: bool) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let section = |out: &mut String, title: &str, lines: &[Line]| {
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
        };
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
        section(&mut out, "Structure", &self.structure.lines);
        if !quiet {
            let r = &self.record;
            let _ = writeln!(out, "Image record (Glance v2)");
            let json = serde_json::to_string_pretty(&r.record).unwrap_or_default();
            for l in json.lines() {
                let _ = writeln!(out, "  {l}");
            }
            if let Some(s) = &r.virtual_sizes {
                if s.differ {
                    let _ = writeln!(
                        out,
                        "  virtual size by consumer: Glance {} (original size), qemu {} ({}), Hyper-V {} (current size), XenServer {} (current size)",
                        s.glance, s.qemu, s.qemu_rule, s.hyperv, s.xenserver
                    );
                }
            }
            let _ = writeln!(out, "Create request (POST /v2/images)");
            let json = serde_json::to_string_pretty(&r.create_request).unwrap_or_default();
            for l in json.lines() {
                let _ = writeln!(out, "  {l}");
            }
            let _ = writeln!(out, "Command");
            let _ = writeln!(out, "  {}", r.command);
        }
        section(&mut out, "Record", &self.record.lines);
        section(&mut out, "Property lint", &self.lint);
        section(
            &mut out,
            &format!("Target {}", self.target.name()),
            &self.target_rules,
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
            let json = serde_json::to_string_pretty(&s.manifest).unwrap_or_default();
            for l in json.lines() {
                let _ = writeln!(out, "  {l}");
            }
        }
        for f in &self.flavors {
            section(
                &mut out,
                &format!(
                    "Flavor {} ({} MB RAM, {} GB root disk)",
                    f.flavor.name, f.flavor.ram_mb, f.flavor.root_gb
                ),
                &f.lines,
            );
        }
        let v = &self.verdict;
        let _ = writeln!(
            out,
            "Verdict: {} for {} ({} FAIL, {} WARN, {} PASS)",
            if v.ready { "READY" } else { "NOT READY" },
            self.target.name(),
            v.fail,
            v.warn,
            v.pass
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::digest::digest_bytes;
    use crate::pipeline::NoProgress;

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
        let d = write_package_file(&links, &tgz, t.path(), &NoProgress).unwrap();
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
        let (d, etags) = digest_file(&source, Some(700_000), &NoProgress).unwrap();
        assert_eq!(d, digest_bytes(&data, &[Algo::Md5, Algo::Sha512]));
        let want: Vec<String> = data
            .chunks(700_000)
            .map(|c| digest_bytes(c, &[Algo::Md5]).md5.unwrap())
            .collect();
        assert_eq!(etags.unwrap(), want);
    }
}
