//! `add`: one image into the catalog. The file is judged as `preflight`
//! judges it for Glance (structure, target rules, property lint), then read
//! once: the MD5 and SHA-512 pass runs while the store copy is made (a
//! reflink clone, or the kernel's copy of the same cached pages).
//!
//! The record goes `queued` → `saving` → `active`, each step committed on
//! its own: a process killed mid-add leaves a `saving` record and files in
//! `tmp/` that [`super::Catalog::clean_interrupted`] removes (run by every
//! add and by `verify --fix`), never an `active` record without its data.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use rusqlite::params;
use serde::Serialize;

use super::records::{self, Entry, Image, Stored};
use super::status::ImageStatus;
use super::store::{Method, Pending, Store};
use super::{now_rfc3339, write_tx, Catalog, CatalogError, DbContext, Result};
use crate::check;
use crate::cloud::lint::{self, BaseFields, LintInput};
use crate::cloud::record::{self, RecordInput, VirtualSizes, OS_HASH_ALGO};
use crate::cloud::targets::{self, Facts};
use crate::cloud::{Line, Status};
use crate::disk::{Kind, Source};
use crate::pipeline::digest::{digest_source, Algo, Digests};
use crate::pipeline::Progress;

/// Glance's default visibility for a new image.
pub const DEFAULT_VISIBILITY: &str = "shared";

/// What `catalog add` is asked.
#[derive(Debug, Clone, Default)]
pub struct AddOptions {
    pub name: Option<String>,
    pub properties: Vec<(String, String)>,
    pub owner: Option<String>,
    pub visibility: Option<String>,
    /// MiB, as typed (the lint checks it).
    pub min_ram: Option<String>,
    /// GiB, as typed (raised to the virtual size when below it).
    pub min_disk: Option<String>,
    pub protected: bool,
    /// Keep only the path; the data stays where it is.
    pub reference: bool,
    /// Catalogue an image preflight FAILs for Glance.
    pub force: bool,
}

/// What `add` did.
#[derive(Debug, Clone, Serialize)]
pub struct AddReport {
    #[serde(flatten)]
    pub entry: Entry,
    pub method: Method,
    /// Preflight's lines for Glance: structure, record, lint, target.
    pub lines: Vec<Line>,
    /// Records of killed adds removed first.
    pub cleaned: Vec<String>,
}

/// Preflight's judgement of the file, before any data is read.
struct Judged {
    lines: Vec<Line>,
    fields: BaseFields,
    properties: BTreeMap<String, String>,
    kind: Kind,
    sizes: Option<VirtualSizes>,
}

fn fails(lines: &[Line]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.status == Status::Fail)
        .map(|l| format!("{} {}", l.code, l.message))
        .collect()
}

/// The property lint (always binding), then the structure check and
/// Glance's target rules (binding unless `force`).
fn judge(image: &Path, opts: &AddOptions) -> Result<Judged> {
    let lint = lint::lint(&LintInput {
        name: opts.name.as_deref(),
        min_ram: opts.min_ram.as_deref(),
        min_disk: opts.min_disk.as_deref(),
        properties: &opts.properties,
    });
    let refused = fails(&lint.lines);
    if !refused.is_empty() {
        return Err(CatalogError::refused(
            "PROPERTY_LINT",
            format!(
                "Glance would refuse these properties: {}",
                refused.join("; ")
            ),
        ));
    }
    let mut lines = structure_lines(image)?;
    let source = Source::open(image)?;
    let facts = Facts::from_bytes(image, source.bytes());
    drop(source);
    lines.extend(targets::glance_rules(&facts));
    let refused = fails(&lines);
    if !refused.is_empty() && !opts.force {
        return Err(CatalogError::refused(
            "PREFLIGHT_FAIL",
            format!(
                "{}: preflight for Glance FAILs: {} (--force catalogues it anyway)",
                image.display(),
                refused.join("; ")
            ),
        ));
    }
    lines.extend(lint.lines);
    Ok(Judged {
        lines,
        fields: lint.fields,
        properties: lint.properties,
        kind: facts.kind,
        sizes: facts.footer.as_ref().map(VirtualSizes::from_footer),
    })
}

/// `check`'s findings as preflight lines (errors FAIL, warnings WARN).
pub fn structure_lines(image: &Path) -> Result<Vec<Line>> {
    match check::check_path(image, &check::Options::default()) {
        Ok(report) => Ok(report
            .findings
            .iter()
            .map(|f| {
                let status = match f.severity {
                    check::Severity::Error => Status::Fail,
                    check::Severity::Warning => Status::Warn,
                };
                Line::new(
                    f.code,
                    status,
                    format!("{} at {:#x}: {}", f.file.display(), f.offset, f.message),
                )
            })
            .collect()),
        Err(crate::Error::NotVhd { detail, .. }) => Ok(vec![Line::new(
            "NOT_VHD",
            Status::Fail,
            format!("{}: {detail}", image.display()),
        )]),
        Err(e) => Err(e.into()),
    }
}

/// The queued record (every field but the data's) and preflight's lines.
fn new_entry(image: &Path, opts: &AddOptions, judged: &Judged) -> (Entry, Vec<Line>) {
    let default_name = image
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    let (rec, record_lines) = record::build(&RecordInput {
        fields: &judged.fields,
        properties: &judged.properties,
        default_name,
        container_format: "bare",
        digests: None,
        sizes: judged.sizes,
        recognised: matches!(judged.kind, Kind::Dynamic | Kind::Differencing),
    });
    let now = now_rfc3339();
    let mut lines = judged.lines.clone();
    lines.extend(record_lines);
    let entry = Entry {
        seq: 0,
        image: Image {
            id: uuid::Uuid::new_v4().to_string(),
            name: rec.name,
            status: ImageStatus::Queued,
            owner: opts.owner.clone(),
            visibility: opts
                .visibility
                .clone()
                .or(rec.visibility)
                .unwrap_or_else(|| DEFAULT_VISIBILITY.into()),
            protected: opts.protected || rec.protected,
            os_hidden: rec.os_hidden.unwrap_or(false),
            disk_format: rec.disk_format.into(),
            container_format: rec.container_format.into(),
            min_disk: rec.min_disk,
            min_ram: rec.min_ram,
            checksum: None,
            os_hash_algo: OS_HASH_ALGO.into(),
            os_hash_value: None,
            size: None,
            virtual_size: rec.virtual_size,
            created_at: now.clone(),
            updated_at: now,
            properties: rec.properties,
        },
        store: Stored {
            path: None,
            reference: opts.reference,
            source_path: std::fs::canonicalize(image).unwrap_or_else(|_| image.to_path_buf()),
            disk_type: judged.kind.name().into(),
            forced: opts.force && !fails(&lines).is_empty(),
            preflight: serde_json::to_value(&lines).unwrap_or_default(),
        },
        stored_path: None,
    };
    (entry, lines)
}

/// The size and modification time, to notice a file changed mid-add.
fn stamp(path: &Path) -> Result<(u64, Option<std::time::SystemTime>)> {
    let m = std::fs::metadata(path).map_err(|e| crate::Error::io(path, "stat", e))?;
    Ok((m.len(), m.modified().ok()))
}

/// The one read: digests of `image` while `pending` (if any) fills.
fn ingest(
    image: &Path,
    pending: Option<&Pending>,
    progress: &dyn Progress,
) -> Result<(Digests, Method)> {
    let before = stamp(image)?;
    let file = File::open(image).map_err(|e| crate::Error::io(image, "open", e))?;
    let (digests, method) = std::thread::scope(|s| {
        let copier = pending.map(|p| s.spawn(|| p.fill(&file, image, before.0)));
        let digests = Source::open(image)
            .and_then(|s| digest_source(&s, &[Algo::Md5, Algo::Sha512], None, progress))
            .map(|(d, _)| d);
        let method = match copier.map(|c| c.join()) {
            None => Ok(Method::Reference),
            Some(Ok(m)) => m,
            Some(Err(_)) => Err(crate::Error::Usage("the store copy panicked".into())),
        };
        (digests, method)
    });
    let (digests, method) = (digests?, method?);
    if stamp(image)? != before || digests.size != before.0 {
        return Err(crate::Error::refused(
            image,
            "CHANGED_DURING_ADD",
            "the file changed while it was being added; add it again",
        )
        .into());
    }
    Ok((digests, method))
}

impl Catalog {
    /// Adds `image`; see the module documentation for the steps.
    pub fn add(
        &mut self,
        image: &Path,
        opts: &AddOptions,
        progress: &dyn Progress,
    ) -> Result<AddReport> {
        let judged = judge(image, opts)?;
        let cleaned = self.clean_interrupted()?;
        let (mut entry, lines) = new_entry(image, opts, &judged);
        let mut pending = if opts.reference {
            None
        } else {
            Some(self.store.begin(&entry.image.id)?)
        };
        let tx = write_tx(&mut self.conn, &self.path)?;
        entry.seq = records::insert(&tx, &self.path, &entry)?;
        tx.commit().db(&self.path, "commit a new image")?;
        let result = self.save_data(&mut entry, image, pending.as_mut(), progress);
        let method = match result {
            Ok(m) => m,
            Err(e) => {
                // The record of a failed add goes; its files go with `pending`.
                let _ = self
                    .conn
                    .execute("DELETE FROM images WHERE seq = ?1", [entry.seq]);
                return Err(e);
            }
        };
        if let Some(p) = pending {
            p.finish();
        }
        entry.image.properties = records::properties(&self.conn, &self.path, entry.seq)?;
        Ok(AddReport {
            entry,
            method,
            lines,
            cleaned,
        })
    }

    /// `saving`: the data read, hashed and stored; then `active`.
    fn save_data(
        &mut self,
        entry: &mut Entry,
        image: &Path,
        pending: Option<&mut Pending>,
        progress: &dyn Progress,
    ) -> Result<Method> {
        let now = now_rfc3339();
        records::set_status(&self.conn, &self.path, entry.seq, ImageStatus::Saving, &now)?;
        entry.image.status = ImageStatus::Saving;
        let (digests, mut method) = ingest(image, pending.as_deref(), progress)?;
        let sha512 = digests.sha512.clone().unwrap_or_default();
        let stored_path = match pending {
            Some(_) => Store::object_name(&sha512),
            None => entry.store.source_path.to_string_lossy().into_owned(),
        };
        // From here the record names an object: no removal until it is active.
        let _gc = self.store.gc_lock(false)?;
        let tx = write_tx(&mut self.conn, &self.path)?;
        tx.execute(
            "UPDATE images SET checksum = ?1, os_hash_value = ?2, size = ?3, stored_path = ?4 WHERE seq = ?5",
            params![
                digests.md5,
                digests.sha512,
                i64::try_from(digests.size).unwrap_or(i64::MAX),
                stored_path,
                entry.seq
            ],
        )
        .db(&self.path, "record the digests")?;
        tx.commit().db(&self.path, "commit the digests")?;
        if let Some(p) = pending {
            if !p.publish(&self.store, &sha512)? {
                method = Method::Existing;
            }
        }
        let now = now_rfc3339();
        if !records::set_status(&self.conn, &self.path, entry.seq, ImageStatus::Active, &now)? {
            return Err(CatalogError::refused(
                "DELETED_DURING_ADD",
                format!(
                    "image {} was removed while it was being added",
                    entry.image.id
                ),
            ));
        }
        entry.image.status = ImageStatus::Active;
        entry.image.updated_at = now;
        entry.image.checksum = digests.md5;
        entry.image.os_hash_value = digests.sha512;
        entry.image.size = Some(digests.size);
        entry.store.path = Some(self.store.resolve(&stored_path, entry.store.reference));
        entry.stored_path = Some(stored_path);
        Ok(method)
    }

    /// Removes what killed adds left: their `queued`/`saving` records and
    /// their files in `tmp/`. Returns the ids of the records removed.
    pub fn clean_interrupted(&mut self) -> Result<Vec<String>> {
        let path = self.path.clone();
        let store = self.store.clone();
        let tx = write_tx(&mut self.conn, &self.path)?;
        let stale: Vec<(i64, String)> = {
            let mut stmt = tx
                .prepare("SELECT seq, id FROM images WHERE status IN ('queued', 'saving')")
                .db(&path, "list adds in progress")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .db(&path, "list adds in progress")?
                .collect::<rusqlite::Result<Vec<(i64, String)>>>()
                .db(&path, "list adds in progress")?;
            rows.into_iter()
                .filter(|(_, id)| !store.add_is_live(id))
                .collect()
        };
        for (seq, _) in &stale {
            tx.execute("DELETE FROM images WHERE seq = ?1", [seq])
                .db(&path, "remove an interrupted add")?;
        }
        tx.commit().db(&path, "commit the clean-up")?;
        for f in store.stale_tmp_files()? {
            store.remove(&f)?;
        }
        Ok(stale.into_iter().map(|(_, id)| id).collect())
    }
}
