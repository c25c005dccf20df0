//! The `templates` and `template_builds` tables: built templates and their builds.
//!
//! Metadata travels as opaque JSON text: the manager owns its shape, the store only keeps it.

use rusqlite::{params, OptionalExtension, Row};

use crate::{Store, StoreError};

/// A built template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    /// Public id (a string on the wire), 100 and up.
    pub id: i64,
    /// Unique slug.
    pub name: String,
    /// `building`, `active` or `failed`.
    pub status: String,
    /// Active version (its root directory); None until a build succeeds.
    pub version: Option<i64>,
    /// Metadata JSON.
    pub meta: String,
    /// The most recent build.
    pub build_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// One build of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRecord {
    /// Build id.
    pub id: String,
    /// The template it builds.
    pub template_id: i64,
    /// The version directory it fills.
    pub version: i64,
    /// `building`, `active` or `failed`.
    pub status: String,
    /// 0–100.
    pub progress: i64,
    /// What it is doing now (or failed at).
    pub current_step: Option<String>,
    /// Why it failed, naming the step.
    pub error_message: Option<String>,
    /// Metadata JSON the template takes on if the build succeeds.
    pub meta: String,
    /// The request as submitted.
    pub source: String,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds.
    pub completed_at: Option<i64>,
    /// Wall time of a finished build.
    pub duration_ms: Option<i64>,
}

const TEMPLATE_COLUMNS: &str = "id, name, status, version, meta, build_id, created_at, updated_at";

fn template_row(r: &Row<'_>) -> rusqlite::Result<TemplateRecord> {
    Ok(TemplateRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        status: r.get(2)?,
        version: r.get(3)?,
        meta: r.get(4)?,
        build_id: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

const BUILD_COLUMNS: &str = "id, template_id, version, status, progress, current_step, \
                             error_message, meta, source, started_at, completed_at, duration_ms";

fn build_row(r: &Row<'_>) -> rusqlite::Result<BuildRecord> {
    Ok(BuildRecord {
        id: r.get(0)?,
        template_id: r.get(1)?,
        version: r.get(2)?,
        status: r.get(3)?,
        progress: r.get(4)?,
        current_step: r.get(5)?,
        error_message: r.get(6)?,
        meta: r.get(7)?,
        source: r.get(8)?,
        started_at: r.get(9)?,
        completed_at: r.get(10)?,
        duration_ms: r.get(11)?,
    })
}

impl Store {
    /// Creates a template row (its `id` is assigned) and returns the id.
    pub fn insert_template(&self, t: &TemplateRecord) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO templates (name, status, version, meta, build_id, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                t.name,
                t.status,
                t.version,
                t.meta,
                t.build_id,
                t.created_at,
                t.updated_at
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Rewrites every column of a template row but its id; false if it does not exist.
    pub fn update_template(&self, t: &TemplateRecord) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE templates SET name = ?2, status = ?3, version = ?4, meta = ?5, build_id = ?6, \
             created_at = ?7, updated_at = ?8 WHERE id = ?1",
            params![
                t.id,
                t.name,
                t.status,
                t.version,
                t.meta,
                t.build_id,
                t.created_at,
                t.updated_at
            ],
        )?;
        Ok(n == 1)
    }

    /// A template by id.
    pub fn get_template(&self, id: i64) -> Result<Option<TemplateRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE id = ?1"),
                params![id],
                template_row,
            )
            .optional()?)
    }

    /// A template by name.
    pub fn template_by_name(&self, name: &str) -> Result<Option<TemplateRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE name = ?1"),
                params![name],
                template_row,
            )
            .optional()?)
    }

    /// Every template, by id.
    pub fn all_templates(&self) -> Result<Vec<TemplateRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TEMPLATE_COLUMNS} FROM templates ORDER BY id"
        ))?;
        let rows = stmt.query_map([], template_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a template and its builds; false if it did not exist.
    pub fn delete_template(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM templates WHERE id = ?1", params![id])?
            == 1)
    }

    /// Records a new build.
    pub fn insert_build(&self, b: &BuildRecord) -> Result<(), StoreError> {
        self.conn().execute(
            &format!(
                "INSERT INTO template_builds ({BUILD_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ),
            params![
                b.id,
                b.template_id,
                b.version,
                b.status,
                b.progress,
                b.current_step,
                b.error_message,
                b.meta,
                b.source,
                b.started_at,
                b.completed_at,
                b.duration_ms
            ],
        )?;
        Ok(())
    }

    /// Rewrites the mutable columns of a build (status, progress, step, error, completion).
    pub fn update_build(&self, b: &BuildRecord) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE template_builds SET status = ?2, progress = ?3, current_step = ?4, \
             error_message = ?5, completed_at = ?6, duration_ms = ?7 WHERE id = ?1",
            params![
                b.id,
                b.status,
                b.progress,
                b.current_step,
                b.error_message,
                b.completed_at,
                b.duration_ms
            ],
        )?;
        Ok(n == 1)
    }

    /// Sets a running build's progress and step.
    pub fn set_build_progress(
        &self,
        id: &str,
        progress: i64,
        current_step: &str,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE template_builds SET progress = ?2, current_step = ?3 WHERE id = ?1",
            params![id, progress, current_step],
        )?;
        Ok(())
    }

    /// A build by id.
    pub fn get_build(&self, id: &str) -> Result<Option<BuildRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {BUILD_COLUMNS} FROM template_builds WHERE id = ?1"),
                params![id],
                build_row,
            )
            .optional()?)
    }

    /// Builds in a status (`building` at start-up: the interrupted ones).
    pub fn builds_with_status(&self, status: &str) -> Result<Vec<BuildRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {BUILD_COLUMNS} FROM template_builds WHERE status = ?1 ORDER BY started_at"
        ))?;
        let rows = stmt.query_map(params![status], build_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The version a new build of a template gets: one more than any earlier build's.
    pub fn next_template_version(&self, template_id: i64) -> Result<i64, StoreError> {
        let max: Option<i64> = self.conn().query_row(
            "SELECT MAX(version) FROM template_builds WHERE template_id = ?1",
            params![template_id],
            |r| r.get(0),
        )?;
        Ok(max.unwrap_or(0) + 1)
    }

    /// How many sandboxes (in any status) were created from a template id.
    pub fn count_sandboxes_of_template(&self, template_id: &str) -> Result<u64, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM sandboxes WHERE template_id = ?1",
            params![template_id],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandboxes::tests::record;

    fn template(name: &str) -> TemplateRecord {
        TemplateRecord {
            id: 0,
            name: name.into(),
            status: "building".into(),
            version: None,
            meta: "{}".into(),
            build_id: None,
            created_at: 1,
            updated_at: 1,
        }
    }

    fn build(id: &str, template_id: i64, version: i64) -> BuildRecord {
        BuildRecord {
            id: id.into(),
            template_id,
            version,
            status: "building".into(),
            progress: 0,
            current_step: None,
            error_message: None,
            meta: "{}".into(),
            source: "x".into(),
            started_at: 10,
            completed_at: None,
            duration_ms: None,
        }
    }

    #[test]
    fn templates_and_builds_round_trip() {
        let s = Store::open_in_memory().unwrap();
        let id = s.insert_template(&template("py")).unwrap();
        assert_eq!(id, 100, "ids start clear of the built-in ones");
        assert!(
            s.insert_template(&template("py")).is_err(),
            "names are unique"
        );
        assert_eq!(s.next_template_version(id).unwrap(), 1);
        s.insert_build(&build("b1", id, 1)).unwrap();
        assert_eq!(s.next_template_version(id).unwrap(), 2);
        s.set_build_progress("b1", 40, "packages").unwrap();
        let mut b = s.get_build("b1").unwrap().unwrap();
        assert_eq!(
            (b.progress, b.current_step.as_deref()),
            (40, Some("packages"))
        );
        assert_eq!(s.builds_with_status("building").unwrap().len(), 1);
        b.status = "active".into();
        b.completed_at = Some(20);
        s.update_build(&b).unwrap();
        assert!(s.builds_with_status("building").unwrap().is_empty());

        let mut t = s.template_by_name("py").unwrap().unwrap();
        t.status = "active".into();
        t.version = Some(1);
        s.update_template(&t).unwrap();
        assert_eq!(s.get_template(id).unwrap().unwrap().version, Some(1));
        assert_eq!(s.all_templates().unwrap().len(), 1);

        let mut sb = record("sb1");
        sb.template_id = id.to_string();
        s.insert_sandbox(&sb).unwrap();
        assert_eq!(s.count_sandboxes_of_template(&id.to_string()).unwrap(), 1);

        assert!(s.delete_template(id).unwrap());
        assert!(s.get_build("b1").unwrap().is_none(), "builds go with it");
        assert_eq!(s.insert_template(&template("py")).unwrap(), 101);
    }
}
