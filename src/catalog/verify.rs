//! `verify`: every stored image read again and its MD5 and SHA-512 compared
//! with the record; a mismatch or a missing file marks the image `killed`.
//! With `fix`, what killed adds left is removed: their records, their
//! `tmp/` files, and store objects no record names.

use std::path::PathBuf;

use serde::Serialize;

use super::records::{self, Entry, COLUMNS};
use super::status::ImageStatus;
use super::{now_rfc3339, schema, write_tx, Catalog, DbContext, Result};
use crate::disk::Source;
use crate::pipeline::digest::{digest_source, Algo};
use crate::pipeline::Progress;

/// What one image's data gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataState {
    /// Size, MD5 and SHA-512 as recorded.
    Ok,
    /// The data differs from the record (tampered with, or damaged).
    Mismatch,
    /// The file is gone or unreadable.
    Missing,
    /// Not read: the image is killed, or being added.
    Skipped,
}

/// One image's verification.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    pub id: String,
    pub name: String,
    pub state: DataState,
    /// The status after the verification.
    pub status: ImageStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Everything `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// SQLite's `quick_check` ("ok" when sound).
    pub database: Vec<String>,
    pub images: Vec<Checked>,
    /// Records of adds that were killed (removed with `fix`).
    pub interrupted: Vec<String>,
    /// Store files nothing uses (removed with `fix`).
    pub orphans: Vec<PathBuf>,
    pub fixed: bool,
    /// No mismatch, nothing missing, and (without `fix`) nothing to clean.
    pub ok: bool,
}

/// Reads `entry`'s data and compares it with the record.
pub fn check_data(entry: &Entry, progress: &dyn Progress) -> (DataState, Option<String>) {
    let Some(path) = &entry.store.path else {
        return (
            DataState::Missing,
            Some("the record names no data file".into()),
        );
    };
    if !path.is_file() {
        return (
            DataState::Missing,
            Some(format!("{}: no such file", path.display())),
        );
    }
    let got = match Source::open(path)
        .and_then(|s| digest_source(&s, &[Algo::Md5, Algo::Sha512], None, progress))
    {
        Ok((d, _)) => d,
        Err(e) => return (DataState::Missing, Some(e.to_string())),
    };
    let i = &entry.image;
    let mut diffs = Vec::new();
    if Some(got.size) != i.size {
        diffs.push(format!("size {} (recorded {:?})", got.size, i.size));
    }
    if got.md5 != i.checksum {
        diffs.push(format!(
            "md5 {} (recorded {})",
            got.md5.unwrap_or_default(),
            i.checksum.as_deref().unwrap_or("none")
        ));
    }
    if got.sha512 != i.os_hash_value {
        diffs.push("sha512 differs from os_hash_value".into());
    }
    if diffs.is_empty() {
        (DataState::Ok, None)
    } else {
        (
            DataState::Mismatch,
            Some(format!("{}: {}", path.display(), diffs.join(", "))),
        )
    }
}

impl Catalog {
    /// Verifies the images `keys` (ids or names; every image when empty).
    pub fn verify(
        &mut self,
        keys: &[String],
        fix: bool,
        progress: &dyn Progress,
    ) -> Result<VerifyReport> {
        let database = schema::quick_check(&self.conn, &self.path)?;
        let entries = if keys.is_empty() {
            self.all_entries()?
        } else {
            keys.iter()
                .map(|k| self.get(k))
                .collect::<Result<Vec<_>>>()?
        };
        let mut images = Vec::new();
        for entry in entries {
            images.push(self.verify_one(entry, progress)?);
        }
        let (interrupted, orphans) = if fix {
            let ids = self.clean_interrupted()?;
            (ids, self.remove_orphans(true)?)
        } else {
            (self.interrupted_adds()?, self.remove_orphans(false)?)
        };
        let ok = database == ["ok"]
            && images
                .iter()
                .all(|c| matches!(c.state, DataState::Ok | DataState::Skipped))
            && (fix || (interrupted.is_empty() && orphans.is_empty()));
        Ok(VerifyReport {
            database,
            images,
            interrupted,
            orphans,
            fixed: fix,
            ok,
        })
    }

    fn all_entries(&self) -> Result<Vec<Entry>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM images ORDER BY seq"))
            .db(&self.path, "list images")?;
        let rows = stmt
            .query_map([], |r| records::from_row(r, &self.store))
            .db(&self.path, "list images")?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .db(&self.path, "list images")
    }

    fn verify_one(&mut self, entry: Entry, progress: &dyn Progress) -> Result<Checked> {
        let status = entry.image.status;
        let (state, detail) = match status {
            ImageStatus::Active | ImageStatus::Deactivated => check_data(&entry, progress),
            _ => (DataState::Skipped, None),
        };
        let status = if matches!(state, DataState::Mismatch | DataState::Missing) {
            self.kill(entry.seq)?;
            ImageStatus::Killed
        } else {
            status
        };
        Ok(Checked {
            id: entry.image.id,
            name: entry.image.name,
            state,
            status,
            path: entry.store.path,
            detail,
        })
    }

    /// Marks an image `killed`: its data is lost or not what was recorded.
    pub(crate) fn kill(&mut self, seq: i64) -> Result<()> {
        let path = self.path.clone();
        let tx = write_tx(&mut self.conn, &self.path)?;
        records::set_status(&tx, &path, seq, ImageStatus::Killed, &now_rfc3339())?;
        tx.commit().db(&path, "commit the status")
    }

    /// Ids of `queued`/`saving` records whose add is no longer running.
    fn interrupted_adds(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM images WHERE status IN ('queued', 'saving')")
            .db(&self.path, "list adds in progress")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .db(&self.path, "list adds in progress")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .db(&self.path, "list adds in progress")?;
        Ok(ids
            .into_iter()
            .filter(|id| !self.store.add_is_live(id))
            .collect())
    }

    /// Store files no record uses: stale `tmp/` files and unnamed objects;
    /// removed when `remove`.
    fn remove_orphans(&self, remove: bool) -> Result<Vec<PathBuf>> {
        let _gc = self.store.gc_lock(true)?;
        let mut orphans = self.store.stale_tmp_files()?;
        let mut stmt = self
            .conn
            .prepare("SELECT 1 FROM images WHERE stored_path = ?1 AND reference = 0 LIMIT 1")
            .db(&self.path, "list stored data")?;
        for name in self.store.objects()? {
            let used = stmt.exists([&name]).db(&self.path, "list stored data")?;
            if !used {
                orphans.push(self.store.root().join(&name));
            }
        }
        if remove {
            for f in &orphans {
                self.store.remove(f)?;
            }
        }
        Ok(orphans)
    }
}
