//! The `tokens` table: agent bearer tokens by digest.

use hutch_types::SandboxId;
use rusqlite::{params, OptionalExtension};

use crate::{Store, StoreError};

impl Store {
    /// Records a token digest for `sandbox_id`, valid until `expires_at` (unix seconds).
    pub fn insert_token(
        &self,
        digest: &str,
        sandbox_id: &SandboxId,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO tokens (digest, sandbox_id, expires_at) VALUES (?1, ?2, ?3)",
            params![digest, sandbox_id.as_str(), expires_at],
        )?;
        Ok(())
    }

    /// The sandbox a token digest belongs to, if the token is known and not expired at `now`.
    pub fn token_sandbox(&self, digest: &str, now: i64) -> Result<Option<SandboxId>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT sandbox_id FROM tokens WHERE digest = ?1 AND expires_at > ?2",
        )?;
        let id: Option<String> = stmt
            .query_row(params![digest, now], |r| r.get(0))
            .optional()?;
        Ok(id.and_then(|s| SandboxId::parse(&s).ok()))
    }

    /// Invalidates every token of a sandbox.
    pub fn revoke_tokens(&self, sandbox_id: &SandboxId) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM tokens WHERE sandbox_id = ?1",
            params![sandbox_id.as_str()],
        )?)
    }

    /// Drops tokens that expired before `now`.
    pub fn purge_expired_tokens(&self, now: i64) -> Result<usize, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM tokens WHERE expires_at <= ?1", params![now])?)
    }
}

#[cfg(test)]
mod tests {
    use crate::sandboxes::tests::record;
    use crate::Store;

    #[test]
    fn tokens_expire_and_follow_their_sandbox() {
        let s = Store::open_in_memory().unwrap();
        let r = record("tok");
        s.insert_sandbox(&r).unwrap();
        s.insert_token("d1", &r.id, 200).unwrap();
        s.insert_token("d2", &r.id, 100).unwrap();
        assert_eq!(s.token_sandbox("d1", 150).unwrap(), Some(r.id.clone()));
        assert_eq!(s.token_sandbox("d2", 150).unwrap(), None);
        assert_eq!(s.token_sandbox("nope", 150).unwrap(), None);
        assert_eq!(s.purge_expired_tokens(150).unwrap(), 1);
        s.delete_sandbox(&r.id).unwrap();
        assert_eq!(s.token_sandbox("d1", 150).unwrap(), None, "cascade");
        // A token for an unknown sandbox violates the foreign key.
        assert!(s.insert_token("d3", &r.id, 300).is_err());
    }
}
