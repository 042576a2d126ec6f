//! Target rules: what Glance, Rackspace (XenServer behind Swift), a XenAPI
//! tarball and Azure each want of the file, as PASS/WARN/FAIL lines with the
//! fix as a runnable `vhdkit` command. Also the Swift segment plan (its
//! MD5s come from the digest engine) and the XenServer chain rules over
//! links already read (`0.vhd` leaf … `n.vhd` base).
//!
//! Pure: functions of parsed metadata and bytes handed in; no file is
//! opened here (reading a chain folder or tarball is `preflight`'s, packing
//! one is the writer's).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::record::shell_quote;
use super::{Line, Status};
use crate::disk::{Kind, MAX_CHAIN_DEPTH};
use crate::format::footer::qemu_uses_chs;
use crate::format::{fourcc, Footer, Layout};

/// Where the image goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Target {
    #[default]
    /// OpenStack Glance, booted by Nova.
    Glance,
    /// Rackspace: Glance with the upload through Swift segments.
    Rackspace,
    /// XenServer: a chain 0.vhd … n.vhd, packaged as a tarball.
    Xenserver,
    /// Azure: a fixed VHD, size a whole number of MiB.
    Azure,
}

impl Target {
    /// `glance`, `rackspace`, `xenserver` or `azure`.
    pub fn name(self) -> &'static str {
        match self {
            Target::Glance => "glance",
            Target::Rackspace => "rackspace",
            Target::Xenserver => "xenserver",
            Target::Azure => "azure",
        }
    }

    /// Parses a name as [`Target::name`] gives it.
    pub fn parse(text: &str) -> std::result::Result<Target, String> {
        match text {
            "glance" => Ok(Target::Glance),
            "rackspace" => Ok(Target::Rackspace),
            "xenserver" => Ok(Target::Xenserver),
            "azure" => Ok(Target::Azure),
            _ => Err(format!(
                "--target {text:?}: expected glance, rackspace, xenserver or azure"
            )),
        }
    }
}

/// Swift's largest single object, and its default segment size: 5 GiB.
pub const SWIFT_SEGMENT_SIZE: u64 = 5 << 30;
/// Rackspace's import limit on the virtual disk (160 GB flavors; Nova's GB
/// are GiB).
pub const RACKSPACE_MAX_VIRTUAL_BYTES: u64 = 160 << 30;
/// Azure's smallest disk.
pub const AZURE_MIN_VIRTUAL_BYTES: u64 = 20 << 20;
/// Azure wants the virtual size a whole number of these.
pub const MIB: u64 = 1 << 20;
/// A VHD footer.
const FOOTER_BYTES: u64 = 512;

/// What the rules read of one VHD file.
#[derive(Debug, Clone)]
pub struct Facts {
    pub path: PathBuf,
    pub kind: Kind,
    pub file_size: u64,
    /// `None` for a raw file.
    pub footer: Option<Footer>,
}

impl Facts {
    /// Reads the facts from a whole file's bytes (metadata only).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Facts {
        let layout = crate::disk::detect(bytes).and(Layout::parse(bytes));
        let footer = layout.map(|l| l.footer);
        let kind = match footer.as_ref().map(|f| (f.disk_type(), f.data_offset)) {
            None => Kind::Raw,
            Some((Some(t), _)) => Kind::from_disk_type(t),
            Some((None, u64::MAX)) => Kind::Fixed,
            Some((None, _)) => Kind::Dynamic,
        };
        Facts {
            path: path.to_path_buf(),
            kind,
            file_size: bytes.len() as u64,
            footer,
        }
    }

    fn creator(&self) -> Option<[u8; 4]> {
        self.footer.as_ref().map(|f| f.creator_application)
    }
}

/// `vhdkit convert IMAGE OUT ARGS`, with OUT beside IMAGE.
fn convert_fix(image: &Path, suffix: &str, args: &str) -> String {
    vhdkit_fix("convert", image, suffix, args)
}

/// `vhdkit COMMAND IMAGE IMAGE-SUFFIX.vhd ARGS`, shell-quoted.
fn vhdkit_fix(command: &str, image: &Path, suffix: &str, args: &str) -> String {
    let stem = image
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    let out = image.with_file_name(format!("{stem}-{suffix}.vhd"));
    format!(
        "vhdkit {command} {} {} {args}",
        shell_quote(&image.to_string_lossy()),
        shell_quote(&out.to_string_lossy())
    )
}

fn not_a_vhd(f: &Facts, fix: String) -> Line {
    Line::new(
        "NOT_VHD",
        Status::Fail,
        format!(
            "{} is not a VHD (a raw file): disk_format vhd would be refused",
            f.path.display()
        ),
    )
    .with_fix(fix)
}

/// `glance`: what Glance 2025.1 and later accept.
pub fn glance_rules(f: &Facts) -> Vec<Line> {
    let fix = convert_fix(&f.path, "dynamic", "--to dynamic");
    let mut lines = Vec::new();
    match f.kind {
        Kind::Raw => return vec![not_a_vhd(f, fix)],
        Kind::Fixed => lines.push(
            Line::new(
                "GLANCE_FIXED",
                Status::Fail,
                "a fixed VHD has no footer copy at offset 0: Glance (2025.1 and later) detects it as raw or gpt and refuses the upload (415 Unsupported Media Type)".into(),
            )
            .with_fix(fix.clone()),
        ),
        Kind::Differencing => lines.push(
            Line::new(
                "GLANCE_DIFFERENCING",
                Status::Fail,
                "a differencing VHD needs its parent, which Glance does not store".into(),
            )
            .with_fix(fix.clone()),
        ),
        Kind::Dynamic => lines.push(Line::new(
            "GLANCE_FORMAT",
            Status::Pass,
            "dynamic VHD: Glance's inspector recognises it as vhd".into(),
        )),
    }
    if let Some(footer) = &f.footer {
        if footer.original_size != footer.current_size {
            lines.push(
                Line::new(
                    "GLANCE_ORIGINAL_SIZE",
                    Status::Warn,
                    format!(
                        "original size {} differs from current size {}: Glance records the original size as virtual_size, the hypervisor uses the current size",
                        footer.original_size, footer.current_size
                    ),
                )
                .with_fix(fix.clone()),
            );
        }
        lines.extend(
            chs_warning(footer)
                .map(|l| l.with_fix(convert_fix(&f.path, "win", "--to dynamic --creator win"))),
        );
    }
    lines
}

/// A `qemu`/`vpc ` creator whose geometry covers another size than the
/// footer's current size: qemu reads C×H×S, everyone else the current size.
/// Converting with the `win ` creator keeps the current size, and qemu reads
/// that creator by current size: then both agree (checked with qemu-img 10).
fn chs_warning(footer: &Footer) -> Option<Line> {
    let chs = footer.geometry.size_bytes();
    if !qemu_uses_chs(footer) || chs == footer.current_size {
        return None;
    }
    Some(
        Line::new(
            "CHS_SIZE",
            Status::Warn,
            format!(
                "creator {}: qemu reads the size from the geometry, {chs} bytes, where the footer's current size is {} bytes (Hyper-V, Glance and the specification read the current size)",
                crate::format::escape_text(&fourcc(footer.creator_application)),
                footer.current_size
            ),
        )
    )
}

/// `rackspace`: a dynamic `tap` VHD within the import limit.
pub fn rackspace_rules(f: &Facts) -> Vec<Line> {
    let fix = convert_fix(&f.path, "tap", "--to dynamic --creator tap");
    let mut lines = Vec::new();
    match f.kind {
        Kind::Raw => return vec![not_a_vhd(f, fix)],
        Kind::Dynamic => lines.push(Line::new(
            "RACKSPACE_DYNAMIC",
            Status::Pass,
            "dynamic VHD".into(),
        )),
        other => lines.push(
            Line::new(
                "RACKSPACE_DYNAMIC",
                Status::Fail,
                format!("a {} VHD: Rackspace imports dynamic VHDs", other.name()),
            )
            .with_fix(fix.clone()),
        ),
    }
    match f.creator() {
        Some(c) if &c == b"tap\0" => lines.push(Line::new(
            "RACKSPACE_CREATOR",
            Status::Pass,
            "creator \"tap\": XenServer resizes it".into(),
        )),
        Some(c) if &c == b"qemu" => lines.push(
            Line::new(
                "RACKSPACE_CREATOR",
                Status::Fail,
                "creator \"qemu\": VHDs whose creator is qemu do not resize on XenServer".into(),
            )
            .with_fix(fix.clone()),
        ),
        Some(c) => lines.push(
            Line::new(
                "RACKSPACE_CREATOR",
                Status::Fail,
                format!(
                    "creator {:?}: Rackspace wants \"tap\" (XenServer blktap)",
                    fourcc(c)
                ),
            )
            .with_fix(fix.clone()),
        ),
        None => {}
    }
    if let Some(footer) = &f.footer {
        let v = footer.current_size;
        lines.push(if v > RACKSPACE_MAX_VIRTUAL_BYTES {
            Line::new(
                "RACKSPACE_SIZE",
                Status::Fail,
                format!("virtual size {v} bytes is above the 160 GB import limit ({RACKSPACE_MAX_VIRTUAL_BYTES} bytes)"),
            )
        } else {
            Line::new(
                "RACKSPACE_SIZE",
                Status::Pass,
                format!("virtual size {v} bytes is within the 160 GB import limit"),
            )
        });
    }
    lines
}

/// `azure`: fixed, whole MiB, file = virtual + 512, at least 20 MiB.
pub fn azure_rules(f: &Facts) -> Vec<Line> {
    let virtual_size = f.footer.as_ref().map_or(f.file_size, |f| f.current_size);
    let small = virtual_size < AZURE_MIN_VIRTUAL_BYTES;
    // Below the minimum one expand fixes everything: it grows the disk (and
    // a partition and filesystem it can grow) and writes it fixed.
    let fix = if small {
        vhdkit_fix(
            "expand",
            &f.path,
            "azure",
            &format!(
                "--size {}M --to fixed --disk-only",
                AZURE_MIN_VIRTUAL_BYTES / MIB
            ),
        )
    } else {
        convert_fix(&f.path, "azure", "--to fixed --align 1M")
    };
    let Some(footer) = &f.footer else {
        return vec![not_a_vhd(f, fix)];
    };
    let v = footer.current_size;
    let mut lines = Vec::new();
    lines.push(if f.kind == Kind::Fixed {
        Line::new("AZURE_FIXED", Status::Pass, "fixed VHD".into())
    } else {
        Line::new(
            "AZURE_FIXED",
            Status::Fail,
            format!("a {} VHD: Azure takes fixed VHDs only", f.kind.name()),
        )
        .with_fix(fix.clone())
    });
    lines.push(if v % MIB == 0 {
        Line::new(
            "AZURE_MIB",
            Status::Pass,
            format!("virtual size {v} bytes is a whole number of MiB"),
        )
    } else {
        Line::new(
            "AZURE_MIB",
            Status::Fail,
            format!(
                "virtual size {v} bytes is not a whole number of MiB ({} bytes over)",
                v % MIB
            ),
        )
        .with_fix(fix.clone())
    });
    if f.kind == Kind::Fixed {
        let want = v.saturating_add(FOOTER_BYTES);
        lines.push(if f.file_size == want {
            Line::new(
                "AZURE_FILE_SIZE",
                Status::Pass,
                format!("file size {} = virtual size + 512", f.file_size),
            )
        } else {
            Line::new(
                "AZURE_FILE_SIZE",
                Status::Fail,
                format!(
                    "file size {} bytes, expected virtual size + 512 = {want}",
                    f.file_size
                ),
            )
            .with_fix(fix.clone())
        });
    }
    lines.push(if v >= AZURE_MIN_VIRTUAL_BYTES {
        Line::new(
            "AZURE_MIN_SIZE",
            Status::Pass,
            format!("virtual size {v} bytes is at least 20 MiB"),
        )
    } else {
        Line::new(
            "AZURE_MIN_SIZE",
            Status::Fail,
            format!("virtual size {v} bytes is below Azure's 20 MiB minimum"),
        )
        .with_fix(fix)
    });
    lines
}

/// What an upload to Azure needs, in place of a Glance record: the disk as
/// Azure judges it and the commands that create a managed disk of the exact
/// file size and copy the file into it as a page blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzureUpload {
    /// raw, fixed, dynamic or differencing (Azure takes fixed only).
    pub disk_type: Kind,
    /// Virtual size in bytes (the footer's current size; a raw file's size).
    pub virtual_size: u64,
    /// Whether the virtual size is a whole number of MiB (Azure requires it).
    pub whole_mib: bool,
    pub file_size: u64,
    /// `az disk create --upload-size-bytes`: the file size, footer included.
    pub upload_size_bytes: u64,
    /// The steps, in order: create the disk, get a write SAS, copy, revoke.
    pub commands: Vec<String>,
}

/// The Azure upload of `f` as the managed disk `name` (placeholders
/// RESOURCE_GROUP and `<SAS>`, the URL `grant-access` prints).
pub fn azure_upload(f: &Facts, name: &str) -> AzureUpload {
    let virtual_size = f.footer.as_ref().map_or(f.file_size, |f| f.current_size);
    let disk = format!(
        "--resource-group RESOURCE_GROUP --name {}",
        shell_quote(name)
    );
    AzureUpload {
        disk_type: f.kind,
        virtual_size,
        whole_mib: virtual_size % MIB == 0,
        file_size: f.file_size,
        upload_size_bytes: f.file_size,
        commands: vec![
            format!(
                "az disk create {disk} --upload-type Upload --upload-size-bytes {} --sku standard_lrs",
                f.file_size
            ),
            format!(
                "az disk grant-access {disk} --access-level Write --duration-in-seconds 86400 --query accessSas --output tsv"
            ),
            format!(
                "azcopy copy {} \"<SAS>\" --blob-type PageBlob",
                shell_quote(&f.path.to_string_lossy())
            ),
            format!("az disk revoke-access {disk}"),
        ],
    }
}

// ---------------------------------------------------------------- segments

/// One Swift segment of the upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub index: u64,
    pub offset: u64,
    pub size_bytes: u64,
    /// MD5 hex of the segment's bytes (Swift's ETag).
    pub etag: String,
    /// `/container/object` the segment is uploaded to.
    pub path: String,
}

/// How the upload is split for Swift, and the static large object manifest.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentPlan {
    pub segment_size: u64,
    pub container: String,
    pub object: String,
    pub segments: Vec<Segment>,
    /// The SLO manifest to `PUT ?multipart-manifest=put`:
    /// `[{path, etag, size_bytes}]`.
    pub manifest: serde_json::Value,
}

/// Segment object names as python-swiftclient lays them out:
/// `/<container>_segments/<object>/slo/<size>/<segment_size>/<index:08>`.
pub fn plan_segments(
    container: &str,
    object: &str,
    size: u64,
    segment_size: u64,
    etags: Vec<String>,
) -> SegmentPlan {
    let segments: Vec<Segment> = etags
        .into_iter()
        .enumerate()
        .map(|(i, etag)| {
            let index = i as u64;
            let offset = index * segment_size;
            Segment {
                index,
                offset,
                size_bytes: segment_size.min(size - offset),
                etag,
                path: format!(
                    "/{container}_segments/{object}/slo/{size}/{segment_size}/{index:08}"
                ),
            }
        })
        .collect();
    let manifest = serde_json::Value::Array(
        segments
            .iter()
            .map(
                |s| serde_json::json!({"path": s.path, "etag": s.etag, "size_bytes": s.size_bytes}),
            )
            .collect(),
    );
    SegmentPlan {
        segment_size,
        container: container.to_string(),
        object: object.to_string(),
        segments,
        manifest,
    }
}

// --------------------------------------------------------------- xenserver

/// The most links XenServer's import takes.
pub const XEN_MAX_LINKS: usize = MAX_CHAIN_DEPTH;

/// One link of a XenServer chain, as read.
#[derive(Debug, Clone, Serialize)]
pub struct ChainLink {
    pub index: usize,
    #[serde(serialize_with = "crate::format::path_json::path")]
    pub path: PathBuf,
    pub kind: Kind,
    pub current_size: Option<u64>,
    pub creator: Option<String>,
    pub unique_id: Option<String>,
    pub parent_unique_id: Option<String>,
    pub hidden: Option<u8>,
    #[serde(skip)]
    pub footer: Option<Footer>,
    #[serde(skip)]
    pub parent_id_bytes: Option<[u8; 16]>,
}

/// `N.vhd` → N (no sign, no leading `+`, no other name).
pub fn link_number(name: &str) -> Option<usize> {
    let n = name.strip_suffix(".vhd")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0'))
    {
        return None;
    }
    n.parse().ok()
}

/// A child whose size differs from its parent's: what each reader does.
fn size_mismatch(name: &str, link: &ChainLink, next: &ChainLink) -> Line {
    let (child, parent) = (
        link.current_size.unwrap_or(0),
        next.current_size.unwrap_or(0),
    );
    let readers = if child > parent {
        "libvhdi reads the part past the parent's end only where the child stores every sector \
         (`vhdkit expand --as-child` does; other writers may leave it to the parent, which \
         libvhdi then fails to read); Hyper-V refuses the chain (child/parent size mismatch)"
    } else {
        "the child is smaller than its parent; Hyper-V refuses the chain (child/parent size mismatch)"
    };
    Line::new(
        "XEN_CHAIN_SIZE",
        Status::Warn,
        format!(
            "{name} is {child} bytes, its parent {}.vhd {parent} bytes: {readers}",
            next.index
        ),
    )
}

/// The chain rules: numbering, length, link kinds, parent ids, sizes,
/// leaf not hidden, creator.
pub fn xenserver_rules(numbers: &[usize], others: &[String], links: &[ChainLink]) -> Vec<Line> {
    if numbers.is_empty() {
        return vec![Line::new(
            "XEN_CHAIN_NAMES",
            Status::Fail,
            "no 0.vhd: a XenServer image is a chain 0.vhd (leaf) … n.vhd (base)".into(),
        )];
    }
    let mut lines = numbering_rules(numbers, others, links.len());
    lines.extend(link_rules(links));
    if let Some(leaf) = links.first() {
        lines.extend(leaf_rules(leaf));
    }
    lines
}

/// Names 0.vhd … n.vhd without gaps, nothing else, at most
/// [`XEN_MAX_LINKS`] links.
fn numbering_rules(numbers: &[usize], others: &[String], links: usize) -> Vec<Line> {
    let mut lines = Vec::new();
    let gaps: Vec<String> = (0..numbers.last().map_or(0, |n| n + 1))
        .filter(|n| !numbers.contains(n))
        .map(|n| format!("{n}.vhd"))
        .collect();
    if gaps.is_empty() {
        lines.push(Line::new(
            "XEN_CHAIN_NAMES",
            Status::Pass,
            format!("links 0.vhd … {}.vhd without gaps", numbers.len() - 1),
        ));
    } else {
        lines.push(Line::new(
            "XEN_CHAIN_NAMES",
            Status::Fail,
            format!("the numbering has gaps: {} missing", gaps.join(", ")),
        ));
    }
    if !others.is_empty() {
        lines.push(Line::new(
            "XEN_CHAIN_OTHER_FILES",
            Status::Warn,
            format!("files that are not links: {}", others.join(", ")),
        ));
    }
    if links > XEN_MAX_LINKS {
        lines.push(Line::new(
            "XEN_CHAIN_LENGTH",
            Status::Fail,
            format!("{links} links: at most {XEN_MAX_LINKS}"),
        ));
    }
    lines
}

/// Link `i` of `len`'s kind: a VHD; differencing but for the base; the
/// base not differencing.
fn link_kind_rule(i: usize, len: usize, link: &ChainLink) -> Option<Line> {
    let name = format!("{}.vhd", link.index);
    let message = match (i + 1 == len, link.kind) {
        (_, Kind::Raw) => format!("{name} is not a VHD"),
        (true, Kind::Differencing) => {
            format!("{name}, the base, is a differencing disk: its parent is not in the chain")
        }
        (false, k) if k != Kind::Differencing => format!(
            "{name} is a {} disk but {}.vhd follows it: only the base may have no parent",
            k.name(),
            link.index + 1
        ),
        _ => return None,
    };
    Some(Line::new("XEN_CHAIN_KIND", Status::Fail, message))
}

/// Each link's kind, its parent id against the next link's footer, and
/// their sizes; a PASS when every id matches.
fn link_rules(links: &[ChainLink]) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut ids_ok = true;
    for (i, link) in links.iter().enumerate() {
        let name = format!("{}.vhd", link.index);
        if let Some(l) = link_kind_rule(i, links.len(), link) {
            ids_ok = false;
            lines.push(l);
        }
        if let (Some(parent_id), Some(next)) = (link.parent_id_bytes, links.get(i + 1)) {
            let next_id = next.footer.as_ref().map(|f| f.unique_id);
            if next_id != Some(parent_id) {
                ids_ok = false;
                lines.push(Line::new(
                    "XEN_CHAIN_PARENT_ID",
                    Status::Fail,
                    format!(
                        "{name}'s header names parent unique id {}, but {}.vhd's footer has {}",
                        uuid::Uuid::from_bytes(parent_id),
                        next.index,
                        next.unique_id.clone().unwrap_or_else(|| "none".into())
                    ),
                ));
            }
            if next.current_size != link.current_size {
                lines.push(size_mismatch(&name, link, next));
            }
        }
    }
    if ids_ok && links.len() > 1 {
        lines.push(Line::new(
            "XEN_CHAIN_PARENT_ID",
            Status::Pass,
            "every child's parent unique id matches its parent's footer".into(),
        ));
    }
    lines
}

/// The leaf (0.vhd): not hidden, and not made by qemu.
fn leaf_rules(leaf: &ChainLink) -> Vec<Line> {
    let mut lines = vec![match leaf.hidden {
        Some(0) | None => Line::new(
            "XEN_LEAF_HIDDEN",
            Status::Pass,
            "0.vhd is not hidden".into(),
        ),
        Some(h) => Line::new(
            "XEN_LEAF_HIDDEN",
            Status::Fail,
            format!("0.vhd is hidden (footer byte 85 = {h}): XenServer would not attach the leaf (vhd-util set -n 0.vhd -f hidden -v 0)"),
        ),
    }];
    if leaf.creator.as_deref() == Some("qemu") {
        lines.push(Line::new(
            "XEN_CREATOR",
            Status::Warn,
            "0.vhd's creator is \"qemu\": XenServer does not resize such VHDs".into(),
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::footer::Creator;
    use crate::format::DiskType;

    fn facts(kind: DiskType, size: u64, creator: &str, file_size: u64) -> Facts {
        let footer = Footer::new(kind, size, Creator::by_name(creator).unwrap(), 0, [1; 16]);
        Facts {
            path: PathBuf::from("/i/disk.vhd"),
            kind: Kind::from_disk_type(kind),
            file_size,
            footer: Some(footer),
        }
    }

    fn fails(lines: &[Line]) -> Vec<&str> {
        lines
            .iter()
            .filter(|l| l.status == Status::Fail)
            .map(|l| l.code.as_str())
            .collect()
    }

    #[test]
    fn glance_refuses_fixed_and_warns_sizes() {
        let f = facts(DiskType::Fixed, 64 * MIB, "win", 64 * MIB + 512);
        let l = glance_rules(&f);
        assert_eq!(fails(&l), ["GLANCE_FIXED"]);
        assert_eq!(
            l[0].fix.as_deref(),
            Some("vhdkit convert /i/disk.vhd /i/disk-dynamic.vhd --to dynamic")
        );
        let mut f = facts(DiskType::Dynamic, 64 * MIB, "win", 0);
        assert!(fails(&glance_rules(&f)).is_empty());
        f.footer.as_mut().unwrap().original_size = 32 * MIB;
        assert!(glance_rules(&f)
            .iter()
            .any(|l| l.code == "GLANCE_ORIGINAL_SIZE" && l.status == Status::Warn));
        let f = facts(DiskType::Dynamic, 64 * MIB + 512, "qemu", 0);
        assert!(glance_rules(&f).iter().any(|l| l.code == "CHS_SIZE"));
    }

    #[test]
    fn rackspace_wants_dynamic_tap_within_160g() {
        assert!(fails(&rackspace_rules(&facts(DiskType::Dynamic, GIB, "tap", 0))).is_empty());
        let l = rackspace_rules(&facts(DiskType::Dynamic, GIB, "qemu", 0));
        assert_eq!(fails(&l), ["RACKSPACE_CREATOR"]);
        assert!(l[1].message.contains("do not resize"));
        assert!(l[1]
            .fix
            .as_deref()
            .unwrap()
            .ends_with("--to dynamic --creator tap"));
        assert_eq!(
            fails(&rackspace_rules(&facts(
                DiskType::Fixed,
                GIB,
                "tap",
                GIB + 512
            ))),
            ["RACKSPACE_DYNAMIC"]
        );
        assert_eq!(
            fails(&rackspace_rules(&facts(
                DiskType::Dynamic,
                161 * GIB,
                "tap",
                0
            ))),
            ["RACKSPACE_SIZE"]
        );
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn azure_rules_each() {
        assert!(fails(&azure_rules(&facts(
            DiskType::Fixed,
            20 * MIB,
            "win",
            20 * MIB + 512
        )))
        .is_empty());
        assert_eq!(
            fails(&azure_rules(&facts(DiskType::Dynamic, 20 * MIB, "win", 0))),
            ["AZURE_FIXED"]
        );
        assert_eq!(
            fails(&azure_rules(&facts(
                DiskType::Fixed,
                20 * MIB + 512,
                "win",
                20 * MIB + 1024
            ))),
            ["AZURE_MIB"]
        );
        assert_eq!(
            fails(&azure_rules(&facts(
                DiskType::Fixed,
                20 * MIB,
                "win",
                20 * MIB + 1024
            ))),
            ["AZURE_FILE_SIZE"]
        );
        assert_eq!(
            fails(&azure_rules(&facts(
                DiskType::Fixed,
                19 * MIB,
                "win",
                19 * MIB + 512
            ))),
            ["AZURE_MIN_SIZE"]
        );
        let raw = Facts {
            path: "/i/r.img".into(),
            kind: Kind::Raw,
            file_size: 1,
            footer: None,
        };
        assert_eq!(fails(&azure_rules(&raw)), ["NOT_VHD"]);
    }

    #[test]
    fn segment_plan_names_sizes_and_etags() {
        let etags: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let plan = plan_segments("images", "d.vhd", 10_000, 4096, etags);
        assert_eq!(plan.segments.len(), 3);
        assert_eq!(plan.segments[2].size_bytes, 10_000 - 8192);
        assert_eq!(
            plan.manifest[1]["path"],
            "/images_segments/d.vhd/slo/10000/4096/00000001"
        );
        assert_eq!(plan.manifest[0]["etag"], "a");
    }

    #[test]
    fn link_names() {
        assert_eq!(link_number("0.vhd"), Some(0));
        assert_eq!(link_number("12.vhd"), Some(12));
        assert_eq!(link_number("01.vhd"), None);
        assert_eq!(link_number("a.vhd"), None);
        assert_eq!(link_number(".vhd"), None);
        assert_eq!(link_number("0.vhdx"), None);
    }

    fn link(index: usize, kind: Kind, id: u8, parent: Option<u8>) -> ChainLink {
        let mut footer = Footer::new(
            DiskType::Dynamic,
            GIB,
            Creator::by_name("tap").unwrap(),
            0,
            [id; 16],
        );
        footer.disk_type_code = match kind {
            Kind::Differencing => 4,
            _ => 3,
        };
        ChainLink {
            index,
            path: format!("{index}.vhd").into(),
            kind,
            current_size: Some(GIB),
            creator: Some("tap".into()),
            unique_id: Some(uuid::Uuid::from_bytes([id; 16]).to_string()),
            parent_unique_id: parent.map(|p| uuid::Uuid::from_bytes([p; 16]).to_string()),
            hidden: Some(0),
            footer: Some(footer),
            parent_id_bytes: parent.map(|p| [p; 16]),
        }
    }

    #[test]
    fn chain_rules() {
        let good = [
            link(0, Kind::Differencing, 1, Some(2)),
            link(1, Kind::Dynamic, 2, None),
        ];
        assert!(fails(&xenserver_rules(&[0, 1], &[], &good)).is_empty());
        let bad_id = [
            link(0, Kind::Differencing, 1, Some(9)),
            link(1, Kind::Dynamic, 2, None),
        ];
        assert_eq!(
            fails(&xenserver_rules(&[0, 1], &[], &bad_id)),
            ["XEN_CHAIN_PARENT_ID"]
        );
        assert_eq!(
            fails(&xenserver_rules(&[0, 2], &[], &good)),
            ["XEN_CHAIN_NAMES"]
        );
        let base_diff = [link(0, Kind::Differencing, 1, Some(5))];
        assert_eq!(
            fails(&xenserver_rules(&[0], &[], &base_diff)),
            ["XEN_CHAIN_KIND"]
        );
        let mut hidden = [link(0, Kind::Dynamic, 1, None)];
        hidden[0].hidden = Some(1);
        assert_eq!(
            fails(&xenserver_rules(&[0], &[], &hidden)),
            ["XEN_LEAF_HIDDEN"]
        );
        let many: Vec<ChainLink> = (0..17)
            .map(|i| {
                if i == 16 {
                    link(i, Kind::Dynamic, i as u8 + 1, None)
                } else {
                    link(i, Kind::Differencing, i as u8 + 1, Some(i as u8 + 2))
                }
            })
            .collect();
        let numbers: Vec<usize> = (0..17).collect();
        assert_eq!(
            fails(&xenserver_rules(&numbers, &[], &many)),
            ["XEN_CHAIN_LENGTH"]
        );
        assert_eq!(fails(&xenserver_rules(&[], &[], &[])), ["XEN_CHAIN_NAMES"]);
    }
}
