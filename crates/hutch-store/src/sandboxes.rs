//! The `sandboxes` table.

use std::collections::BTreeMap;

use hutch_types::{Resources, SandboxId, SandboxStatus};
use rusqlite::{params, OptionalExtension, Row};

use crate::{Store, StoreError};

/// A sandbox as the control plane records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRecord {
    /// Its id.
    pub id: SandboxId,
    /// Its lifecycle status.
    pub status: SandboxStatus,
    /// Template slug.
    pub template_name: String,
    /// Template id (a string on the wire).
    pub template_id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Auto-kill delay; None = never.
    pub timeout_seconds: Option<i64>,
    /// Unix seconds at which the reaper kills it.
    pub expires_at: Option<i64>,
    /// Whether it may reach the internet.
    pub internet_access: bool,
    /// Create-time environment variables.
    pub env_vars: BTreeMap<String, String>,
    /// Its limits.
    pub resources: Resources,
}

/// Which sandboxes to list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this status.
    pub status: Option<SandboxStatus>,
    /// Only rows after this cursor (from a previous page).
    pub after_seq: Option<i64>,
    /// Page size.
    pub limit: usize,
}

const COLUMNS: &str = "seq, id, status, template_name, template_id, created_at, timeout_seconds, \
                       expires_at, internet_access, env_vars, resources";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(i64, RawRecord)> {
    Ok((
        row.get(0)?,
        RawRecord {
            id: row.get(1)?,
            status: row.get(2)?,
            template_name: row.get(3)?,
            template_id: row.get(4)?,
            created_at: row.get(5)?,
            timeout_seconds: row.get(6)?,
            expires_at: row.get(7)?,
            internet_access: row.get(8)?,
            env_vars: row.get(9)?,
            resources: row.get(10)?,
        },
    ))
}

struct RawRecord {
    id: String,
    status: String,
    template_name: String,
    template_id: String,
    created_at: i64,
    timeout_seconds: Option<i64>,
    expires_at: Option<i64>,
    internet_access: bool,
    env_vars: String,
    resources: String,
}

impl RawRecord {
    fn decode(self) -> Result<SandboxRecord, StoreError> {
        let corrupt = |column: &'static str, id: &str| {
            let id = id.to_string();
            move |source| StoreError::Corrupt { id, column, source }
        };
        let id = serde_json::from_value(serde_json::Value::String(self.id.clone()))
            .map_err(corrupt("id", &self.id))?;
        let status = serde_json::from_value(serde_json::Value::String(self.status.clone()))
            .map_err(corrupt("status", &self.id))?;
        Ok(SandboxRecord {
            id,
            status,
            env_vars: serde_json::from_str(&self.env_vars)
                .map_err(corrupt("env_vars", &self.id))?,
            resources: serde_json::from_str(&self.resources)
                .map_err(corrupt("resources", &self.id))?,
            template_name: self.template_name,
            template_id: self.template_id,
            created_at: self.created_at,
            timeout_seconds: self.timeout_seconds,
            expires_at: self.expires_at,
            internet_access: self.internet_access,
        })
    }
}

impl Store {
    /// Inserts a new sandbox.
    pub fn insert_sandbox(&self, r: &SandboxRecord) -> Result<(), StoreError> {
        let env = serde_json::to_string(&r.env_vars).map_err(|source| StoreError::Corrupt {
            id: r.id.to_string(),
            column: "env_vars",
            source,
        })?;
        let res = serde_json::to_string(&r.resources).map_err(|source| StoreError::Corrupt {
            id: r.id.to_string(),
            column: "resources",
            source,
        })?;
        self.conn().execute(
            "INSERT INTO sandboxes (id, status, template_name, template_id, created_at, \
             timeout_seconds, expires_at, internet_access, env_vars, resources) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                r.id.as_str(),
                r.status.as_str(),
                r.template_name,
                r.template_id,
                r.created_at,
                r.timeout_seconds,
                r.expires_at,
                r.internet_access,
                env,
                res
            ],
        )?;
        Ok(())
    }

    /// One sandbox, if it exists.
    pub fn get_sandbox(&self, id: &SandboxId) -> Result<Option<SandboxRecord>, StoreError> {
        let raw = self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM sandboxes WHERE id = ?1"),
                params![id.as_str()],
                from_row,
            )
            .optional()?;
        raw.map(|(_, r)| r.decode()).transpose()
    }

    /// A page of sandboxes in creation order, with each row's cursor value.
    pub fn list_sandboxes(&self, f: &ListFilter) -> Result<Vec<(i64, SandboxRecord)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM sandboxes WHERE seq > ?1 AND (?2 IS NULL OR status = ?2) \
             ORDER BY seq LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![
                f.after_seq.unwrap_or(0),
                f.status.map(|s| s.as_str()),
                f.limit as i64
            ],
            from_row,
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, raw) = row?;
            out.push((seq, raw.decode()?));
        }
        Ok(out)
    }

    /// Every sandbox (for start-up reconciliation).
    pub fn all_sandboxes(&self) -> Result<Vec<SandboxRecord>, StoreError> {
        Ok(self
            .list_sandboxes(&ListFilter {
                limit: usize::MAX >> 1,
                ..ListFilter::default()
            })?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Sets the status; false if the sandbox does not exist.
    pub fn set_status(&self, id: &SandboxId, status: SandboxStatus) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE sandboxes SET status = ?2 WHERE id = ?1",
            params![id.as_str(), status.as_str()],
        )?;
        Ok(n == 1)
    }

    /// Sets the timeout and expiry; false if the sandbox does not exist.
    pub fn set_timeout(
        &self,
        id: &SandboxId,
        timeout_seconds: Option<i64>,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE sandboxes SET timeout_seconds = ?2, expires_at = ?3 WHERE id = ?1",
            params![id.as_str(), timeout_seconds, expires_at],
        )?;
        Ok(n == 1)
    }

    /// Removes a sandbox and its tokens; false if it did not exist.
    pub fn delete_sandbox(&self, id: &SandboxId) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM sandboxes WHERE id = ?1", params![id.as_str()])?;
        Ok(n == 1)
    }

    /// Sandboxes whose expiry has passed at `now`.
    pub fn expired_sandboxes(&self, now: i64) -> Result<Vec<SandboxId>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM sandboxes WHERE expires_at IS NOT NULL AND expires_at <= ?1",
        )?;
        let ids = stmt.query_map(params![now], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for id in ids {
            if let Ok(id) = SandboxId::parse(&id?) {
                out.push(id);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(id: &str) -> SandboxRecord {
        SandboxRecord {
            id: SandboxId::parse(id).unwrap(),
            status: SandboxStatus::Running,
            template_name: "code-interpreter".into(),
            template_id: "1".into(),
            created_at: 100,
            timeout_seconds: Some(60),
            expires_at: Some(160),
            internet_access: true,
            env_vars: [("A".to_string(), "1".to_string())].into(),
            resources: Resources::default(),
        }
    }

    #[test]
    fn round_trip_and_paging() {
        let s = Store::open_in_memory().unwrap();
        for i in 0..5 {
            s.insert_sandbox(&record(&format!("sb{i}"))).unwrap();
        }
        assert_eq!(
            s.get_sandbox(&record("sb1").id).unwrap().unwrap(),
            record("sb1")
        );
        let page = s
            .list_sandboxes(&ListFilter {
                limit: 2,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.len(), 2);
        let next = s
            .list_sandboxes(&ListFilter {
                limit: 10,
                after_seq: Some(page[1].0),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(next.len(), 3);
        assert_eq!(next[0].1.id.as_str(), "sb2");

        s.set_status(&record("sb3").id, SandboxStatus::Paused)
            .unwrap();
        let paused = s
            .list_sandboxes(&ListFilter {
                limit: 10,
                status: Some(SandboxStatus::Paused),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(paused.len(), 1);

        assert_eq!(s.expired_sandboxes(159).unwrap().len(), 0);
        assert_eq!(s.expired_sandboxes(160).unwrap().len(), 5);
        assert!(s.delete_sandbox(&record("sb0").id).unwrap());
        assert!(!s.delete_sandbox(&record("sb0").id).unwrap());
        assert!(s.get_sandbox(&record("sb0").id).unwrap().is_none());
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let s = Store::open_in_memory().unwrap();
        s.insert_sandbox(&record("dup")).unwrap();
        assert!(s.insert_sandbox(&record("dup")).is_err());
    }
}
