//! Changes to records only: properties (`set`), and Glance's
//! `deactivate`, `reactivate` and `delete`. The data and every field Glance
//! derives from it never change: a fix is a new image.

use std::collections::BTreeMap;

use rusqlite::params;
use serde::Serialize;

use super::records::{self, Entry};
use super::status::{transition, Action, ImageStatus};
use super::{now_rfc3339, write_tx, Catalog, CatalogError, DbContext, Result};
use crate::cloud::lint::{self, LintInput, RESERVED_KEYS, RESERVED_PREFIX};
use crate::cloud::{Line, Status};

/// Fields a record's owner may not set or remove: Glance maintains them.
pub const FORMAT_KEYS: [&str; 2] = ["disk_format", "container_format"];
/// Glance fields that are columns, not properties: set, never removed.
pub const BASE_KEYS: [&str; 7] = [
    "name",
    "owner",
    "visibility",
    "protected",
    "os_hidden",
    "min_ram",
    "min_disk",
];

/// The refusal for a Glance-maintained key.
fn immutable(key: &str) -> CatalogError {
    let hint = match key {
        "status" => " (status changes by deactivate, reactivate and delete)",
        _ => "",
    };
    CatalogError::refused(
        "IMMUTABLE",
        format!("{key} is maintained by Glance from the data: image data is immutable; add a new image{hint}"),
    )
}

fn is_maintained(key: &str) -> bool {
    RESERVED_KEYS.contains(&key) || key.starts_with(RESERVED_PREFIX) || FORMAT_KEYS.contains(&key)
}

/// What `set` changed.
#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    #[serde(flatten)]
    pub entry: Entry,
    /// Keys set (fields and properties).
    pub set: Vec<String>,
    pub removed: Vec<String>,
    /// The lint's WARN lines (a FAIL refuses the change).
    pub lines: Vec<Line>,
}

/// What a status change or a delete did.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub id: String,
    pub name: String,
    pub before: ImageStatus,
    /// `None` once deleted.
    pub after: Option<ImageStatus>,
    /// The store file removed with the last image using it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_data: Option<std::path::PathBuf>,
}

impl Catalog {
    /// The image `key` and the status `action` leaves it in; refused when
    /// Glance does not allow `action` in its status.
    pub(crate) fn get_for(&self, key: &str, action: Action) -> Result<(Entry, ImageStatus)> {
        let entry = self.get(key)?;
        let i = &entry.image;
        let after = transition(&i.id, i.status, i.protected, action)?;
        Ok((entry, after))
    }

    /// Sets and removes properties of one image, with `updated_at`.
    pub fn set(
        &mut self,
        key: &str,
        set: &[(String, String)],
        remove: &[String],
    ) -> Result<SetReport> {
        let (entry, _) = self.get_for(key, Action::SetProperties)?;
        let id = entry.image.id.clone();
        for k in set.iter().map(|(k, _)| k).chain(remove) {
            if is_maintained(k) {
                return Err(immutable(k));
            }
        }
        if let Some(k) = remove.iter().find(|k| BASE_KEYS.contains(&k.as_str())) {
            return Err(CatalogError::refused(
                "BASE_FIELD",
                format!("{k} is a Glance field, not a property: set it to a new value instead"),
            ));
        }
        if let Some(k) = remove
            .iter()
            .find(|k| !entry.image.properties.contains_key(k.as_str()))
        {
            return Err(CatalogError::refused(
                "NO_PROPERTY",
                format!("image {id} has no property {k:?} to remove"),
            ));
        }
        let owner = set
            .iter()
            .rev()
            .find(|(k, _)| k == "owner")
            .map(|(_, v)| v.clone());
        let others: Vec<(String, String)> =
            set.iter().filter(|(k, _)| k != "owner").cloned().collect();
        let lint = lint::lint(&LintInput {
            properties: &others,
            ..Default::default()
        });
        let refused: Vec<String> = lint
            .lines
            .iter()
            .filter(|l| l.status == Status::Fail)
            .map(|l| format!("{} {}", l.code, l.message))
            .collect();
        if !refused.is_empty() {
            return Err(CatalogError::refused(
                "PROPERTY_LINT",
                format!("Glance would refuse: {}", refused.join("; ")),
            ));
        }
        let mut merged: BTreeMap<&String, &String> = entry.image.properties.iter().collect();
        for k in remove {
            merged.remove(k);
        }
        merged.extend(lint.properties.iter());
        if merged.len() > lint::MAX_PROPERTIES {
            return Err(CatalogError::refused(
                "PROPERTY_QUOTA",
                format!(
                    "{} properties: Glance's image_property_quota allows {}",
                    merged.len(),
                    lint::MAX_PROPERTIES
                ),
            ));
        }
        self.write_changes(entry.seq, owner.as_deref(), &lint, remove)?;
        let mut changed: Vec<String> = set.iter().map(|(k, _)| k.clone()).collect();
        changed.dedup();
        Ok(SetReport {
            entry: self.get(&id)?,
            set: changed,
            removed: remove.to_vec(),
            lines: lint.lines,
        })
    }

    /// One transaction: the base fields, the properties, `updated_at`.
    fn write_changes(
        &mut self,
        seq: i64,
        owner: Option<&str>,
        lint: &lint::Lint,
        remove: &[String],
    ) -> Result<()> {
        let path = self.path.clone();
        let tx = write_tx(&mut self.conn, &self.path)?;
        let f = &lint.fields;
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        tx.execute(
            "UPDATE images SET name = coalesce(?1, name), owner = coalesce(?2, owner), \
             visibility = coalesce(?3, visibility), protected = coalesce(?4, protected), \
             os_hidden = coalesce(?5, os_hidden), min_ram = coalesce(?6, min_ram), \
             min_disk = coalesce(?7, min_disk), updated_at = ?8 WHERE seq = ?9",
            params![
                f.name,
                owner,
                f.visibility,
                f.protected,
                f.os_hidden,
                f.min_ram.map(to_i64),
                f.min_disk.map(to_i64),
                now_rfc3339(),
                seq
            ],
        )
        .db(&path, "update an image")?;
        for k in remove {
            tx.execute(
                "DELETE FROM properties WHERE image_seq = ?1 AND key = ?2",
                params![seq, k],
            )
            .db(&path, "remove a property")?;
        }
        records::write_properties(&tx, &path, seq, &lint.properties)?;
        tx.commit().db(&path, "commit the changes")
    }

    /// `deactivate` or `reactivate` (a no-op when already there).
    pub fn change_status(&mut self, key: &str, action: Action) -> Result<StatusReport> {
        let (entry, after) = self.get_for(key, action)?;
        let before = entry.image.status;
        if after != before {
            let path = self.path.clone();
            let tx = write_tx(&mut self.conn, &self.path)?;
            records::set_status(&tx, &path, entry.seq, after, &now_rfc3339())?;
            tx.commit().db(&path, "commit the status")?;
        }
        Ok(StatusReport {
            id: entry.image.id,
            name: entry.image.name,
            before,
            after: Some(after),
            removed_data: None,
        })
    }

    /// Deletes the record, and the stored data when no other image uses it.
    pub fn delete(&mut self, key: &str) -> Result<StatusReport> {
        let (entry, before) = self.get_for(key, Action::Delete)?;
        let _gc = self.store.gc_lock(true)?;
        let path = self.path.clone();
        let tx = write_tx(&mut self.conn, &self.path)?;
        tx.execute("DELETE FROM images WHERE seq = ?1", [entry.seq])
            .db(&path, "delete an image")?;
        let orphan = match (&entry.stored_path, entry.store.reference) {
            (Some(p), false) => records::references(&tx, &path, p)? == 0,
            _ => false,
        };
        tx.commit().db(&path, "commit the delete")?;
        let removed_data = match (orphan, &entry.store.path) {
            (true, Some(file)) => {
                self.store.remove(file)?;
                Some(file.clone())
            }
            _ => None,
        };
        Ok(StatusReport {
            id: entry.image.id,
            name: entry.image.name,
            before,
            after: None,
            removed_data,
        })
    }
}
