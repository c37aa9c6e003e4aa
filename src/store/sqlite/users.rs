//! Accounts.

use async_trait::async_trait;
use chrono::Utc;
use uuid::Uuid;

use super::{SqliteStore, micros};
use crate::model::User;
use crate::store::row::UserRow;
use crate::store::{StoreResult, Users};

#[async_trait]
impl Users for SqliteStore {
    async fn create_user(&self, email: &str, password_hash: &str) -> StoreResult<User> {
        let row: UserRow = sqlx::query_as(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
             RETURNING id, email, password_hash, created_at",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(email)
        .bind(password_hash)
        .bind(micros(Utc::now()))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, email, password_hash, created_at FROM users WHERE email = ?1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<User>> {
        let row: Option<UserRow> =
            sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE id = ?1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(Into::into))
    }

    async fn delete_user(&self, id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM users WHERE id = ?1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
