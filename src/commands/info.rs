//! `info`: what a file is, its three sizes and who reads which, its creator,
//! its blocks, and its parent chain. Works on damaged files as far as their
//! structures allow (checking is `check`'s job).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::disk::{detect, detect_foreign, parent, Chain, Kind, ParentOptions};
use crate::format::footer::{qemu_size, qemu_uses_chs};
use crate::format::foreign::ForeignInfo;
use crate::format::rfc3339;
use crate::format::{fourcc, fourcc_hex, trimmed_fourcc, DiskType, Footer, Layout, PlatformCode};
use crate::report::size_text;
use crate::report::{Outcome, OutputArgs};
use crate::Result;

/// Geometry as shown.
#[derive(Debug, Clone, Serialize)]
pub struct GeometryInfo {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors_per_track: u8,
}

/// Which size each consumer reads.
#[derive(Debug, Clone, Serialize)]
pub struct SizeRules {
    /// The specification and Hyper-V: current size.
    pub spec: u64,
    pub hyperv: u64,
    /// qemu 10: C×H×S for `vpc `/`qemu` creators (unless force_size geometry), else current size.
    pub qemu: u64,
    pub qemu_rule: &'static str,
    /// Glance's format inspector: original size.
    pub glance: u64,
}

/// A parent locator as shown.
#[derive(Debug, Clone, Serialize)]
pub struct LocatorInfo {
    pub index: usize,
    pub platform_code: String,
    pub data_space: u32,
    pub data_length: u32,
    pub data_offset: u64,
    pub path: Option<String>,
}

/// One parent link of a differencing chain.
#[derive(Debug, Clone, Serialize)]
pub struct ParentInfo {
    /// The parent's name from the child's header.
    pub name: String,
    pub expected_unique_id: String,
    pub expected_timestamp: String,
    pub locators: Vec<LocatorInfo>,
    /// Only paths the parent options allowed (the child's folder by default).
    pub tried: Vec<parent::Attempt>,
    /// Locators naming a place outside the allowed folders: not followed.
    pub skipped: Vec<parent::Skipped>,
    /// The path found, if any.
    pub found: Option<PathBuf>,
    /// The parent's unique id equals the one the child expects.
    pub id_match: Option<bool>,
    /// The parent's own info (its chain continues there).
    pub info: Option<Box<Info>>,
    pub error: Option<String>,
}

/// Everything `info` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    #[serde(serialize_with = "crate::format::path_json::path")]
    pub path: PathBuf,
    pub disk_type: Kind,
    pub file_size: u64,
    pub virtual_size: u64,
    pub current_size: Option<u64>,
    pub original_size: Option<u64>,
    pub chs_size: Option<u64>,
    pub geometry: Option<GeometryInfo>,
    pub sizes: Option<SizeRules>,
    /// The four characters, trailing NULs and spaces trimmed.
    pub creator_application: Option<String>,
    /// The four bytes exactly, as hex.
    pub creator_application_hex: Option<String>,
    pub creator_version: Option<String>,
    pub creator_host_os: Option<String>,
    pub timestamp: Option<String>,
    pub unique_id: Option<String>,
    pub saved_state: Option<bool>,
    pub hidden: Option<u8>,
    pub footer_checksum_ok: Option<bool>,
    pub block_size: Option<u32>,
    pub max_table_entries: Option<u32>,
    pub allocated_blocks: Option<u64>,
    pub allocated_bytes: Option<u64>,
    pub batmap: Option<bool>,
    pub parent: Option<ParentInfo>,
    /// Another image format (qcow2, VMDK, VHDX, ...) recognised from the
    /// file's first bytes; `disk_type` and `virtual_size` then say how
    /// `--input-format raw` would read it.
    pub foreign_format: Option<ForeignInfo>,
}

fn host_os(code: u32) -> String {
    match code {
        0x5769_326B => "Wi2k".into(),
        0x4D61_6320 => "Mac".into(),
        0 => "none".into(),
        other => fourcc(other.to_be_bytes()),
    }
}

/// Reads what `info` shows about `path`.
pub fn info(path: &Path) -> Result<Info> {
    info_with(path, &ParentOptions::default())
}

/// [`info`], with parents also looked for where `options` allow.
pub fn info_with(path: &Path, options: &ParentOptions) -> Result<Info> {
    info_link(path, &mut Chain::new(options))
}

fn info_link(path: &Path, chain: &mut Chain) -> Result<Info> {
    let source = chain.open_source(path)?;
    let bytes = source.bytes();
    let file_size = source.len();
    let layout = match detect(bytes) {
        None => None,
        Some(_) => Layout::parse(bytes),
    };
    let Some(layout) = layout else {
        return Ok(Info {
            path: path.to_path_buf(),
            disk_type: Kind::Raw,
            file_size,
            virtual_size: file_size,
            current_size: None,
            original_size: None,
            chs_size: None,
            geometry: None,
            sizes: None,
            creator_application: None,
            creator_application_hex: None,
            creator_version: None,
            creator_host_os: None,
            timestamp: None,
            unique_id: None,
            saved_state: None,
            hidden: None,
            footer_checksum_ok: None,
            block_size: None,
            max_table_entries: None,
            allocated_blocks: None,
            allocated_bytes: None,
            batmap: None,
            parent: None,
            foreign_format: detect_foreign(bytes).map(|f| f.info(path)),
        });
    };
    let f: &Footer = &layout.footer;
    let kind = match f.disk_type() {
        Some(t) => Kind::from_disk_type(t),
        None if f.data_offset == u64::MAX => Kind::Fixed,
        None => Kind::Dynamic,
    };
    let parts = layout.dynamic.as_ref().and_then(|d| d.as_ref().ok());
    let header = parts.map(|p| &p.header);
    let bat = parts.and_then(|p| p.bat.as_ref().ok());
    let allocated = bat.map(|b| b.allocated_count() as u64);
    let parent = match (f.disk_type(), parts) {
        (Some(DiskType::Differencing), Some(p)) => Some(parent_info(path, bytes, p, chain)),
        _ => None,
    };
    Ok(Info {
        path: path.to_path_buf(),
        disk_type: kind,
        file_size,
        virtual_size: f.current_size,
        current_size: Some(f.current_size),
        original_size: Some(f.original_size),
        chs_size: Some(f.geometry.size_bytes()),
        geometry: Some(GeometryInfo {
            cylinders: f.geometry.cylinders,
            heads: f.geometry.heads,
            sectors_per_track: f.geometry.sectors_per_track,
        }),
        sizes: Some(SizeRules {
            spec: f.current_size,
            hyperv: f.current_size,
            qemu: qemu_size(f),
            qemu_rule: if qemu_uses_chs(f) {
                "chs"
            } else {
                "current_size"
            },
            glance: f.original_size,
        }),
        creator_application: Some(trimmed_fourcc(f.creator_application)),
        creator_application_hex: Some(fourcc_hex(f.creator_application)),
        creator_version: Some(format!(
            "{}.{}",
            f.creator_version >> 16,
            f.creator_version & 0xffff
        )),
        creator_host_os: Some(host_os(f.creator_host_os)),
        timestamp: Some(rfc3339(f.time_stamp)),
        unique_id: Some(uuid::Uuid::from_bytes(f.unique_id).to_string()),
        saved_state: Some(f.saved_state != 0),
        hidden: Some(f.hidden()),
        footer_checksum_ok: Some(f.checksum == f.computed_checksum()),
        block_size: header.map(|h| h.block_size),
        max_table_entries: header.map(|h| h.max_table_entries),
        allocated_blocks: allocated,
        allocated_bytes: header
            .zip(allocated)
            .map(|(h, n)| n * u64::from(h.block_size)),
        batmap: parts.map(|p| p.batmap.is_some()),
        parent,
        foreign_format: None,
    })
}

fn parent_info(
    path: &Path,
    bytes: &[u8],
    parts: &crate::format::image::DynamicParts,
    chain: &mut Chain,
) -> ParentInfo {
    let h = &parts.header;
    let locators = h
        .parent_locators
        .iter()
        .enumerate()
        .filter(|(_, l)| l.code() != PlatformCode::None)
        .map(|(index, l)| LocatorInfo {
            index,
            platform_code: l.code().name(),
            data_space: l.platform_data_space,
            data_length: l.platform_data_length,
            data_offset: l.platform_data_offset,
            path: parent::locator_text(bytes, l),
        })
        .collect();
    chain.enter(path);
    let (res, found) = chain.parent_of(path, bytes, h);
    let mut out = ParentInfo {
        name: h.parent_name(),
        expected_unique_id: uuid::Uuid::from_bytes(h.parent_unique_id).to_string(),
        expected_timestamp: rfc3339(h.parent_time_stamp),
        locators,
        tried: res.tried.clone(),
        skipped: res.skipped.clone(),
        found: res.found.clone(),
        id_match: None,
        info: None,
        error: None,
    };
    match found {
        Err(e) => {
            out.id_match = match e {
                crate::disk::LinkError::IdMismatch { .. } => Some(false),
                _ => out.found.as_ref().map(|_| true),
            };
            out.error = Some(e.message(&res, h));
        }
        Ok(p) => {
            out.id_match = Some(true);
            match info_link(&p, chain) {
                Ok(i) => out.info = Some(Box::new(i)),
                Err(e) => out.error = Some(e.to_string()),
            }
        }
    }
    out
}

impl Info {
    /// The human table.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write_text(&mut out, "");
        out
    }

    fn write_text(&self, out: &mut String, indent: &str) {
        use std::fmt::Write;
        let mut rows = Rows::default();
        rows.push("file", self.path.display().to_string());
        match &self.foreign_format {
            Some(f) => {
                rows.push(
                    "format",
                    format!("{}, not a VHD or a raw disk", f.description),
                );
                rows.push("fix", f.fix.clone());
            }
            None => {
                rows.push("disk type", self.disk_type.name().to_string());
                rows.push("virtual size", size_text(self.virtual_size));
            }
        }
        rows.push("file size", size_text(self.file_size));
        self.size_rows(&mut rows);
        self.footer_rows(&mut rows);
        if let (Some(bs), Some(n)) = (self.block_size, self.max_table_entries) {
            rows.push("block size", size_text(u64::from(bs)));
            rows.push("table entries", n.to_string());
            if let (Some(a), Some(b)) = (self.allocated_blocks, self.allocated_bytes) {
                rows.push("allocated", format!("{a} blocks, {}", size_text(b)));
            }
        }
        if let Some(p) = &self.parent {
            parent_rows(p, &mut rows);
        }
        for (k, v) in &rows.0 {
            let _ = writeln!(out, "{indent}{k:<22} {v}");
        }
        if let Some(pi) = self.parent.as_ref().and_then(|p| p.info.as_ref()) {
            let _ = writeln!(out, "{indent}parent:");
            pi.write_text(out, &format!("{indent}  "));
        }
    }

    /// The footer's sizes, its geometry and who reads which.
    fn size_rows(&self, rows: &mut Rows) {
        let (Some(cur), Some(orig), Some(chs), Some(g), Some(s)) = (
            self.current_size,
            self.original_size,
            self.chs_size,
            &self.geometry,
            &self.sizes,
        ) else {
            return;
        };
        rows.push("current size", size_text(cur));
        rows.push("original size", size_text(orig));
        rows.push(
            "geometry (C/H/S)",
            format!(
                "{}/{}/{} = {}",
                g.cylinders,
                g.heads,
                g.sectors_per_track,
                size_text(chs)
            ),
        );
        rows.push(
            "size seen by qemu",
            format!("{} ({})", size_text(s.qemu), s.qemu_rule),
        );
        rows.push(
            "size seen by Glance",
            format!("{} (original size)", size_text(s.glance)),
        );
        rows.push(
            "size seen by Hyper-V",
            format!("{} (current size)", size_text(s.hyperv)),
        );
    }

    /// Creator, timestamp, identity and checksum.
    fn footer_rows(&self, rows: &mut Rows) {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        if self.creator_application.is_none() {
            return;
        }
        // The exact bytes when padding NULs were trimmed from the name.
        let bytes = match &self.creator_application_hex {
            Some(hex) if hex.as_bytes().chunks(2).any(|b| b == b"00") => {
                format!(" (bytes {hex})")
            }
            _ => String::new(),
        };
        rows.push(
            "creator",
            format!(
                "{:?} {} on {}{bytes}",
                opt(&self.creator_application),
                opt(&self.creator_version),
                opt(&self.creator_host_os),
            ),
        );
        rows.push("timestamp", opt(&self.timestamp));
        rows.push("unique id", opt(&self.unique_id));
        rows.push(
            "saved state",
            format!("{}", self.saved_state.unwrap_or(false)),
        );
        if let Some(ok) = self.footer_checksum_ok {
            rows.push(
                "footer checksum",
                if ok {
                    "ok".into()
                } else {
                    "MISMATCH (run `vhdkit check`)".into()
                },
            );
        }
    }
}

/// The text table's rows, in order.
#[derive(Default)]
struct Rows(Vec<(String, String)>);

impl Rows {
    fn push(&mut self, key: &str, value: String) {
        self.0.push((key.to_string(), value));
    }
}

/// The parent's name, id, locators and where it was found.
fn parent_rows(p: &ParentInfo, rows: &mut Rows) {
    rows.push("parent name", p.name.clone());
    rows.push("parent unique id", p.expected_unique_id.clone());
    for l in &p.locators {
        rows.push(
            &format!("locator {}", l.index),
            format!(
                "{} {:?}",
                l.platform_code,
                l.path.clone().unwrap_or_default()
            ),
        );
    }
    match (&p.found, p.id_match) {
        (Some(found), Some(m)) => rows.push(
            "parent found",
            format!(
                "{} (unique id {})",
                found.display(),
                if m { "matches" } else { "DOES NOT MATCH" }
            ),
        ),
        (Some(found), None) => rows.push("parent found", found.display().to_string()),
        (None, _) => rows.push("parent found", "NO".into()),
    }
    if let Some(e) = &p.error {
        rows.push("parent error", e.clone());
    }
}

/// Show what an image is: kind, the three sizes and who reads which,
/// creator, blocks, parent chain.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Args {
    /// The image (raw, fixed, dynamic or differencing VHD).
    pub image: PathBuf,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub parents: crate::report::ParentArgs,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub out: OutputArgs,
}

/// `vhdkit info`.
pub fn run(args: Args) -> Result<Outcome> {
    let info = info_with(&args.image, &args.parents.options())?;
    Outcome::ok(&info, Info::to_text)
}
