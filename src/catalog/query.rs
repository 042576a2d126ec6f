//! Finding images by property, the way scripts pick "the newest ubuntu
//! 24.04 image with auto_disk_config=True" without a hard-coded id. Each
//! property filter is a look-up in the `(key, value, image)` index; several
//! are intersected before any image row is read.

use std::path::Path;

use rusqlite::types::Value;
use serde::Serialize;

use super::records::{self, Entry, COLUMNS};
use super::status::ImageStatus;
use super::store::Store;
use super::{DbContext, Result};

/// The fields `--sort` accepts.
pub const SORT_KEYS: [&str; 10] = [
    "created_at",
    "updated_at",
    "name",
    "status",
    "size",
    "virtual_size",
    "min_disk",
    "min_ram",
    "id",
    "owner",
];

/// `KEY[:asc|desc]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sort {
    pub key: &'static str,
    pub descending: bool,
}

impl Default for Sort {
    /// Glance's default order: newest first.
    fn default() -> Self {
        Sort {
            key: "created_at",
            descending: true,
        }
    }
}

impl Sort {
    pub fn parse(text: &str) -> std::result::Result<Sort, String> {
        let (key, dir) = text.split_once(':').unwrap_or((text, "asc"));
        let key = SORT_KEYS
            .into_iter()
            .find(|k| *k == key)
            .ok_or_else(|| format!("--sort {key:?}: expected one of {}", SORT_KEYS.join(", ")))?;
        let descending = match dir {
            "asc" => false,
            "desc" => true,
            other => return Err(format!("--sort direction {other:?}: expected asc or desc")),
        };
        Ok(Sort { key, descending })
    }
}

/// What `list` and `find` select.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Every one must match (key = value).
    pub properties: Vec<(String, String)>,
    pub name: Option<String>,
    pub status: Option<ImageStatus>,
    pub owner: Option<String>,
    pub sort: Sort,
    pub limit: Option<u64>,
}

/// The SQL and its parameters for `filter`, selecting `what`.
fn build(what: &str, filter: &Filter) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {what} FROM images");
    let mut params: Vec<Value> = Vec::new();
    let mut clauses: Vec<String> = Vec::new();
    if !filter.properties.is_empty() {
        let one = "SELECT image_seq FROM properties WHERE key = ? AND value = ?";
        let parts: Vec<&str> = filter.properties.iter().map(|_| one).collect();
        clauses.push(format!("seq IN ({})", parts.join(" INTERSECT ")));
        for (k, v) in &filter.properties {
            params.push(Value::Text(k.clone()));
            params.push(Value::Text(v.clone()));
        }
    }
    for (column, value) in [
        ("name", filter.name.clone()),
        ("status", filter.status.map(|s| s.name().to_string())),
        ("owner", filter.owner.clone()),
    ] {
        if let Some(v) = value {
            clauses.push(format!("{column} = ?"));
            params.push(Value::Text(v));
        }
    }
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    let dir = if filter.sort.descending {
        "DESC"
    } else {
        "ASC"
    };
    // The sort key comes from SORT_KEYS, never from the user's text.
    sql.push_str(&format!(" ORDER BY {} {dir}, seq {dir}", filter.sort.key));
    if let Some(n) = filter.limit {
        sql.push_str(" LIMIT ?");
        params.push(Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)));
    }
    (sql, params)
}

/// The images `filter` selects, in its order, with their properties.
pub fn list(
    conn: &rusqlite::Connection,
    db: &Path,
    store: &Store,
    filter: &Filter,
) -> Result<Vec<Entry>> {
    let (sql, params) = build(COLUMNS, filter);
    let mut stmt = conn.prepare(&sql).db(db, "list images")?;
    let mut entries: Vec<Entry> = stmt
        .query_map(rusqlite::params_from_iter(params), |r| {
            records::from_row(r, store)
        })
        .db(db, "list images")?
        .collect::<rusqlite::Result<_>>()
        .db(db, "list images")?;
    for e in &mut entries {
        e.image.properties = records::properties(conn, db, e.seq)?;
    }
    Ok(entries)
}

/// The ids of the active images with every property in `properties`,
/// newest first (only the newest with `latest`).
pub fn find(
    conn: &rusqlite::Connection,
    db: &Path,
    properties: &[(String, String)],
    latest: bool,
) -> Result<Vec<String>> {
    let filter = Filter {
        properties: properties.to_vec(),
        status: Some(ImageStatus::Active),
        limit: latest.then_some(1),
        ..Filter::default()
    };
    let (sql, params) = build("id", &filter);
    let mut stmt = conn.prepare(&sql).db(db, "find images")?;
    let ids = stmt
        .query_map(rusqlite::params_from_iter(params), |r| r.get(0))
        .db(db, "find images")?
        .collect::<rusqlite::Result<Vec<String>>>()
        .db(db, "find images")?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_parse() {
        assert_eq!(
            Sort::parse("size:desc").unwrap(),
            Sort {
                key: "size",
                descending: true
            }
        );
        assert!(!Sort::parse("name").unwrap().descending);
        assert!(Sort::parse("checksum").is_err());
        assert!(Sort::parse("name:up").is_err());
    }

    #[test]
    fn filters_become_one_intersection() {
        let f = Filter {
            properties: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            status: Some(ImageStatus::Active),
            limit: Some(1),
            ..Default::default()
        };
        let (sql, params) = build("id", &f);
        assert!(sql.contains("INTERSECT"), "{sql}");
        assert!(
            sql.ends_with("ORDER BY created_at DESC, seq DESC LIMIT ?"),
            "{sql}"
        );
        assert_eq!(params.len(), 6);
    }
}
