//! The `sessions`, `session_history` and `session_artifacts` tables.
//!
//! A session's state is kept as the opaque bytes its kernel wrote inside a sandbox: the store
//! (like the whole control plane) never looks inside them.

use rusqlite::{params, OptionalExtension, Row};

use crate::{Store, StoreError};

/// A session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// The client's (or a generated) id.
    pub session_id: String,
    /// The sandbox it runs in now, if any.
    pub sandbox_id: Option<String>,
    /// The session created that sandbox (and kills it when deleted).
    pub owns_sandbox: bool,
    /// Template for sandboxes the session creates.
    pub template: String,
    /// Environment JSON object for sandboxes the session creates.
    pub env_vars: String,
    /// Timeout for sandboxes the session creates.
    pub timeout_seconds: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Executions so far.
    pub execution_count: i64,
    /// JSON array: the names the last save kept.
    pub variables: String,
}

/// One execution of a session: the wire type, stored as it is served.
pub use hutch_types::sessions::SessionHistoryEntry as SessionExecution;

/// An artifact a session's execution produced: its JSON record as the agent gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionArtifact {
    /// The agent's artifact id.
    pub artifact_id: String,
    /// The sandbox holding the file.
    pub sandbox_id: String,
    /// The execution that made it.
    pub execution_id: String,
    /// The ArtifactObject JSON.
    pub record: String,
}

const COLUMNS: &str = "session_id, sandbox_id, owns_sandbox, template, env_vars, \
                       timeout_seconds, created_at, updated_at, execution_count, variables";

fn session_row(r: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        session_id: r.get(0)?,
        sandbox_id: r.get(1)?,
        owns_sandbox: r.get(2)?,
        template: r.get(3)?,
        env_vars: r.get(4)?,
        timeout_seconds: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        execution_count: r.get(8)?,
        variables: r.get(9)?,
    })
}

impl Store {
    /// Creates a session; false if one with this id exists.
    pub fn insert_session(&self, s: &SessionRecord) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            &format!(
                "INSERT OR IGNORE INTO sessions ({COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ),
            params![
                s.session_id,
                s.sandbox_id,
                s.owns_sandbox,
                s.template,
                s.env_vars,
                s.timeout_seconds,
                s.created_at,
                s.updated_at,
                s.execution_count,
                s.variables
            ],
        )?;
        Ok(n == 1)
    }

    /// A session.
    pub fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM sessions WHERE session_id = ?1"),
                params![id],
                session_row,
            )
            .optional()?)
    }

    /// Every session, oldest first.
    pub fn all_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM sessions ORDER BY created_at, session_id"
        ))?;
        let rows = stmt.query_map([], session_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Binds a session to a sandbox.
    pub fn set_session_sandbox(
        &self,
        id: &str,
        sandbox_id: Option<&str>,
        owns: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE sessions SET sandbox_id = ?2, owns_sandbox = ?3, updated_at = ?4 \
             WHERE session_id = ?1",
            params![id, sandbox_id, owns, now],
        )?;
        Ok(())
    }

    /// Records an execution: the history row and the session's counters in one transaction;
    /// with `saved`, the new state and the names it kept too.
    pub fn record_session_execution(
        &self,
        id: &str,
        e: &SessionExecution,
        saved: Option<(&[u8], &str)>,
        artifacts: &[SessionArtifact],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO session_history (session_id, execution_id, timestamp, code, \
             code_digest, execution_time, success, cache_hit, error_type, artifacts) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                id,
                e.execution_id,
                e.timestamp,
                e.code,
                e.code_digest,
                e.execution_time,
                e.success,
                e.cache_hit,
                e.error_type,
                e.artifacts
            ],
        )?;
        tx.execute(
            "UPDATE sessions SET execution_count = execution_count + 1, updated_at = ?2 \
             WHERE session_id = ?1",
            params![id, now],
        )?;
        if let Some((state, variables)) = saved {
            tx.execute(
                "UPDATE sessions SET state = ?2, variables = ?3 WHERE session_id = ?1",
                params![id, state, variables],
            )?;
        }
        for a in artifacts {
            tx.execute(
                "INSERT OR REPLACE INTO session_artifacts \
                 (session_id, artifact_id, sandbox_id, execution_id, record) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, a.artifact_id, a.sandbox_id, a.execution_id, a.record],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Replaces the saved state and the names it kept.
    pub fn save_session_state(
        &self,
        id: &str,
        state: &[u8],
        variables: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE sessions SET state = ?2, variables = ?3, updated_at = ?4 \
             WHERE session_id = ?1",
            params![id, state, variables, now],
        )?;
        Ok(())
    }

    /// The saved state, if any.
    pub fn session_state(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT state FROM sessions WHERE session_id = ?1",
                params![id],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()?
            .flatten())
    }

    /// The newest `limit` executions, newest first.
    pub fn session_history(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<Vec<SessionExecution>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT execution_id, timestamp, code, code_digest, execution_time, success, \
             cache_hit, error_type, artifacts FROM session_history WHERE session_id = ?1 \
             ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![id, limit as i64], |r| {
            Ok(SessionExecution {
                execution_id: r.get(0)?,
                timestamp: r.get(1)?,
                code: r.get(2)?,
                code_digest: r.get(3)?,
                execution_time: r.get(4)?,
                success: r.get(5)?,
                cache_hit: r.get(6)?,
                error_type: r.get(7)?,
                artifacts: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Totals over the whole history: (executions, summed seconds, cache hits).
    pub fn session_totals(&self, id: &str) -> Result<(i64, f64, i64), StoreError> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*), COALESCE(SUM(execution_time), 0.0), COALESCE(SUM(cache_hit), 0) \
             FROM session_history WHERE session_id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?)
    }

    /// The session's artifacts (of one execution when given), oldest first.
    pub fn session_artifacts(
        &self,
        id: &str,
        execution_id: Option<&str>,
    ) -> Result<Vec<SessionArtifact>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT artifact_id, sandbox_id, execution_id, record FROM session_artifacts \
             WHERE session_id = ?1 AND (?2 IS NULL OR execution_id = ?2) ORDER BY rowid",
        )?;
        let rows = stmt.query_map(params![id, execution_id], |r| {
            Ok(SessionArtifact {
                artifact_id: r.get(0)?,
                sandbox_id: r.get(1)?,
                execution_id: r.get(2)?,
                record: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets the session's artifact records; returns how many.
    pub fn delete_session_artifacts(&self, id: &str) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM session_artifacts WHERE session_id = ?1",
            params![id],
        )?)
    }

    /// Deletes a session with its history and artifact records; false if it did not exist.
    pub fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM sessions WHERE session_id = ?1", params![id])?
            == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> SessionRecord {
        SessionRecord {
            session_id: id.into(),
            sandbox_id: None,
            owns_sandbox: false,
            template: "code-interpreter".into(),
            env_vars: "{}".into(),
            timeout_seconds: None,
            created_at: 1,
            updated_at: 1,
            execution_count: 0,
            variables: "[]".into(),
        }
    }

    fn exec(id: &str, ok: bool, secs: f64, hit: bool) -> SessionExecution {
        SessionExecution {
            execution_id: id.into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
            code: "x = 1".into(),
            code_digest: "d".into(),
            execution_time: secs,
            success: ok,
            cache_hit: hit,
            error_type: (!ok).then(|| "ZeroDivisionError".into()),
            artifacts: 0,
        }
    }

    #[test]
    fn sessions_history_state_and_cascade() {
        let store = Store::open_in_memory().unwrap();
        assert!(store.insert_session(&session("a")).unwrap());
        assert!(!store.insert_session(&session("a")).unwrap(), "duplicate");
        assert_eq!(store.session_state("a").unwrap(), None);

        let art = SessionArtifact {
            artifact_id: "art_1".into(),
            sandbox_id: "sb".into(),
            execution_id: "e1".into(),
            record: "{}".into(),
        };
        store
            .record_session_execution(
                "a",
                &exec("e1", true, 0.5, false),
                Some((b"S1", "[\"x\"]")),
                &[art],
                2,
            )
            .unwrap();
        store
            .record_session_execution("a", &exec("e2", false, 1.5, true), None, &[], 3)
            .unwrap();
        let s = store.get_session("a").unwrap().unwrap();
        assert_eq!(s.execution_count, 2);
        assert_eq!(s.variables, "[\"x\"]");
        assert_eq!(s.updated_at, 3);
        assert_eq!(
            store.session_state("a").unwrap().as_deref(),
            Some(&b"S1"[..])
        );

        let h = store.session_history("a", 10).unwrap();
        assert_eq!(
            h.iter()
                .map(|e| e.execution_id.as_str())
                .collect::<Vec<_>>(),
            ["e2", "e1"]
        );
        assert_eq!(store.session_history("a", 1).unwrap().len(), 1);
        assert_eq!(store.session_totals("a").unwrap(), (2, 2.0, 1));
        assert_eq!(store.session_artifacts("a", None).unwrap().len(), 1);
        assert_eq!(store.session_artifacts("a", Some("e2")).unwrap().len(), 0);

        assert!(store.delete_session("a").unwrap());
        assert!(store.session_history("a", 10).unwrap().is_empty());
        assert!(store.session_artifacts("a", None).unwrap().is_empty());
        assert!(!store.delete_session("a").unwrap());
    }
}
