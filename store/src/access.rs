//! Who may act: organisations, principals, roles, API tokens and plans.

use crate::Store;

impl Store {
    /// Names of the plans that exist.
    pub async fn plan_names(&self) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar("SELECT name FROM plans ORDER BY name").fetch_all(&self.pool).await
    }
}
