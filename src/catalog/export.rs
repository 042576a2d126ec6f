//! `export`: what uploading a catalogued image takes, from the record: the
//! preflight verdict for a target, the `POST /v2/images` body and the
//! `openstack image create` line pointing at the stored file. The data is
//! read again only when asked, or when only its path is kept.

use std::path::PathBuf;

use serde::Serialize;

use super::records::Entry;
use super::status::Action;
use super::verify::{check_data, DataState};
use super::{Catalog, CatalogError, Result};
use crate::cloud::lint::{self, LintInput};
use crate::cloud::record::{shell_quote, ImageRecord, DISK_FORMAT, OS_HASH_ALGO};
use crate::cloud::targets::{self, ChainLink, Facts, Target, SWIFT_SEGMENT_SIZE};
use crate::cloud::{Line, Status, Verdict};
use crate::disk::Source;
use crate::pipeline::Progress;

/// What `export` is asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportOptions {
    pub target: Target,
    /// Read the data again and compare it with the record.
    pub reread: bool,
}

/// The upload, ready to go.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub id: String,
    pub target: Target,
    /// The file to upload.
    pub file: PathBuf,
    /// Whether the data was read again: ok, or skipped (the record trusted).
    pub data: DataState,
    /// The structure lines found when the image was added.
    pub structure: serde_json::Value,
    pub record: ImageRecord,
    pub create_request: serde_json::Value,
    pub command: String,
    pub lint: Vec<Line>,
    pub target_rules: Vec<Line>,
    pub verdict: Verdict,
}

/// The record as Glance will hold it after the upload.
fn glance_record(entry: &Entry, target: Target) -> ImageRecord {
    let i = &entry.image;
    let tarball = target == Target::Xenserver;
    ImageRecord {
        name: i.name.clone(),
        disk_format: DISK_FORMAT,
        container_format: if tarball { "ovf" } else { "bare" },
        visibility: Some(i.visibility.clone()),
        protected: i.protected,
        os_hidden: i.os_hidden.then_some(true),
        min_disk: i.min_disk,
        min_ram: i.min_ram,
        // A XenServer upload is the chain's tarball, whose digests differ.
        checksum: i.checksum.clone().filter(|_| !tarball),
        os_hash_algo: OS_HASH_ALGO,
        os_hash_value: i.os_hash_value.clone().filter(|_| !tarball),
        size: i.size.filter(|_| !tarball),
        virtual_size: i.virtual_size.filter(|_| !tarball),
        properties: i.properties.clone(),
    }
}

/// The target's rules on the stored file's metadata (no data read).
fn target_rules(entry: &Entry, file: &std::path::Path, target: Target) -> Result<Vec<Line>> {
    let source = Source::open(file)?;
    let facts = Facts::from_bytes(file, source.bytes());
    drop(source);
    let quoted = shell_quote(&file.to_string_lossy());
    Ok(match target {
        Target::Glance => targets::glance_rules(&facts),
        Target::Azure => targets::azure_rules(&facts),
        Target::Rackspace => {
            let mut lines = targets::rackspace_rules(&facts);
            if entry.image.size.unwrap_or(0) > SWIFT_SEGMENT_SIZE {
                lines.push(Line::new(
                    "SWIFT_SEGMENTS",
                    Status::Warn,
                    "above Swift's 5 GiB object limit: the upload goes in segments, whose MD5s need a read of the data".into(),
                ).with_fix(format!("vhdkit preflight {quoted} --target rackspace")));
            }
            lines
        }
        Target::Xenserver => {
            let mut lines = targets::xenserver_rules(&[0], &[], &[single_link(&facts)]);
            lines.push(
                Line::new(
                    "XEN_PACKAGE",
                    Status::Warn,
                    "the upload is the chain's gzipped tarball (container_format ovf), whose checksum differs from the image's".into(),
                )
                .with_fix(format!("vhdkit preflight {quoted} --target xenserver --package OUT.tgz")),
            );
            lines
        }
    })
}

/// The stored image as a XenServer chain of one link (`0.vhd`).
fn single_link(facts: &Facts) -> ChainLink {
    let f = facts.footer.as_ref();
    ChainLink {
        index: 0,
        path: facts.path.clone(),
        kind: facts.kind,
        current_size: f.map(|f| f.current_size),
        creator: f.map(|f| crate::format::fourcc(f.creator_application)),
        unique_id: f.map(|f| uuid::Uuid::from_bytes(f.unique_id).to_string()),
        // A catalogued image is one file: no parent is stored with it.
        parent_unique_id: None,
        hidden: f.map(crate::format::Footer::hidden),
        footer: facts.footer.clone(),
        parent_id_bytes: None,
    }
}

/// The outcomes of the structure lines `add` recorded (JSON).
fn recorded_statuses(structure: &serde_json::Value) -> impl Iterator<Item = Status> + '_ {
    structure
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| match l["status"].as_str() {
            Some("PASS") => Some(Status::Pass),
            Some("WARN") => Some(Status::Warn),
            Some("FAIL") => Some(Status::Fail),
            _ => None,
        })
}

impl Catalog {
    /// Builds the upload of one active image for `opts.target`.
    pub fn export(
        &mut self,
        key: &str,
        opts: ExportOptions,
        progress: &dyn Progress,
    ) -> Result<ExportReport> {
        let (entry, _) = self.get_for(key, Action::Export)?;
        let id = entry.image.id.clone();
        let Some(file) = entry.store.path.clone() else {
            return Err(CatalogError::refused(
                "NO_DATA",
                format!("image {id} has no data"),
            ));
        };
        let data = if opts.reread || entry.store.reference {
            let (state, detail) = check_data(&entry, progress);
            if state != DataState::Ok {
                self.kill(entry.seq)?;
                return Err(CatalogError::refused(
                    "DATA_MISMATCH",
                    format!(
                        "image {id} is now killed: its data does not match the record: {}",
                        detail.unwrap_or_default()
                    ),
                ));
            }
            state
        } else {
            DataState::Skipped
        };
        let record = glance_record(&entry, opts.target);
        let props: Vec<(String, String)> = record
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let lint = lint::lint(&LintInput {
            properties: &props,
            ..Default::default()
        });
        let rules = target_rules(&entry, &file, opts.target)?;
        let structure = entry.store.preflight.clone();
        let verdict = Verdict::tally(
            recorded_statuses(&structure).chain(lint.lines.iter().chain(&rules).map(|l| l.status)),
        );
        let upload = (opts.target != Target::Xenserver).then_some(file.as_path());
        Ok(ExportReport {
            id,
            target: opts.target,
            command: record.command_line(upload),
            create_request: record.create_request(),
            file,
            data,
            structure,
            record,
            lint: lint.lines,
            target_rules: rules,
            verdict,
        })
    }
}
