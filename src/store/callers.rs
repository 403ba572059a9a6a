//! Callers and API keys. Keys are stored as SHA-256 only; lookups always
//! require `revoked_at is null`, so revocation is immediate.

use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreResult};
use crate::domain::{Caller, CallerId};

impl Store {
    /// Creates the caller if needed and adds a key (by its hash).
    pub async fn insert_api_key(&self, caller: &str, key_hash: &[u8; 32]) -> StoreResult<CallerId> {
        let mut tx = self.pool.begin().await?;
        let caller_id: Uuid = sqlx::query_scalar(
            "insert into callers (caller_id, name) values ($1, $2)
             on conflict (name) do update set name = excluded.name
             returning caller_id",
        )
        .bind(Uuid::now_v7())
        .bind(caller)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("insert into api_keys (api_key_id, caller_id, key_hash) values ($1, $2, $3)")
            .bind(Uuid::now_v7())
            .bind(caller_id)
            .bind(&key_hash[..])
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(CallerId::from_uuid(caller_id))
    }

    /// Revokes every live key of `caller`; returns how many.
    pub async fn revoke_api_keys(&self, caller: &str) -> StoreResult<u64> {
        let done = sqlx::query(
            "update api_keys k set revoked_at = now()
             from callers c
             where c.caller_id = k.caller_id and c.name = $1 and k.revoked_at is null",
        )
        .bind(caller)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The caller owning a live key with this hash.
    pub async fn find_caller_by_key(&self, key_hash: &[u8; 32]) -> StoreResult<Option<Caller>> {
        let row = sqlx::query(
            "select c.caller_id, c.name from api_keys k
             join callers c on c.caller_id = k.caller_id
             where k.key_hash = $1 and k.revoked_at is null",
        )
        .bind(&key_hash[..])
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Caller {
            id: CallerId::from_uuid(r.get("caller_id")),
            name: r.get("name"),
            key_hash: *key_hash,
        }))
    }
}
