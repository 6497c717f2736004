//! The secrets of sources and destinations, and what writes to either owner share: the row
//! lock, the change mark every host process watches, and the outcome of an admin change.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::store::error::{Context, StoreError};

/// How a settings write treats an existing row of the same name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteMode {
    /// Insert, or overwrite the existing row (config applied at start).
    Upsert,
    /// Insert only; an existing row is a conflict (the API's create).
    Create,
    /// Overwrite only; a missing row is not found (the API's update).
    Update,
}

/// The outcome of an admin change to a source, a destination or a secret.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Done,
    NotFound,
    AlreadyExists,
    /// Retiring the last secret would leave the owner unable to sign or verify.
    LastSecret,
}

/// A new Standard Webhooks secret: `whsec_` and 32 bytes from the operating system's CSPRNG,
/// in base64.
pub fn generate_signing_secret() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Whose secrets a secret operation touches. Sources check signatures with every one of
/// theirs; destinations sign every delivery with every one of theirs.
#[derive(Clone, Copy, Debug)]
pub enum SecretOwner {
    Source,
    Destination,
}

impl SecretOwner {
    /// The owners' table, the secrets' table and its column naming the owner.
    pub(super) fn tables(self) -> (&'static str, &'static str, &'static str) {
        match self {
            SecretOwner::Source => ("sources", "source_secrets", "source_name"),
            SecretOwner::Destination => ("destinations", "destination_secrets", "destination_name"),
        }
    }
}

/// A secret as the API shows it: never its value.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct SecretView {
    pub id: Uuid,
    /// `config` (from the config file, replaced from it at start), `api` or `generated`.
    pub origin: String,
    pub created_at: DateTime<Utc>,
}

/// Locks the owner's row for the rest of the transaction; `false` when it does not exist.
pub(super) async fn lock_owner(
    transaction: &mut sqlx::PgConnection,
    owner: SecretOwner,
    name: &str,
) -> Result<bool, StoreError> {
    let (owners, _, _) = owner.tables();
    let found: Option<i32> = sqlx::query_scalar(&format!(
        "SELECT 1 FROM {owners} WHERE name = $1 FOR UPDATE"
    ))
    .bind(name)
    .fetch_optional(&mut *transaction)
    .await
    .with_context(|| format!("locking {owners} row {name}"))?;
    Ok(found.is_some())
}

/// Whether a settings write in `mode` may go on: an update needs the owner's row, and locks it
/// for the rest of the transaction so that its secrets change under the same lock.
pub(super) async fn may_write(
    transaction: &mut sqlx::PgConnection,
    owner: SecretOwner,
    name: &str,
    mode: WriteMode,
) -> Result<bool, StoreError> {
    Ok(mode != WriteMode::Update || lock_owner(transaction, owner, name).await?)
}

/// Marks the owner changed, so every host process rebuilds what it keeps of it.
pub(super) async fn touch_owner(
    transaction: &mut sqlx::PgConnection,
    owner: SecretOwner,
    name: &str,
) -> Result<(), StoreError> {
    let (owners, _, _) = owner.tables();
    sqlx::query(&format!(
        "UPDATE {owners} SET updated_at = now() WHERE name = $1"
    ))
    .bind(name)
    .execute(&mut *transaction)
    .await
    .with_context(|| format!("marking {owners} row {name} changed"))?;
    Ok(())
}

pub(super) async fn count_secrets(
    transaction: &mut sqlx::PgConnection,
    owner: SecretOwner,
    name: &str,
) -> Result<i64, StoreError> {
    let (_, secrets, owner_column) = owner.tables();
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {secrets} WHERE {owner_column} = $1"
    ))
    .bind(name)
    .fetch_one(&mut *transaction)
    .await
    .context("counting secrets")
}

/// Adds a secret unless the owner has it already; `None` when it had.
pub(super) async fn insert_secret(
    transaction: &mut sqlx::PgConnection,
    owner: SecretOwner,
    name: &str,
    secret: &str,
    origin: &str,
) -> Result<Option<SecretView>, StoreError> {
    let (_, secrets, owner_column) = owner.tables();
    let inserted = sqlx::query_as(&format!(
        "INSERT INTO {secrets} (id, {owner_column}, secret, origin) VALUES ($1, $2, $3, $4)
         ON CONFLICT ({owner_column}, secret) DO NOTHING
         RETURNING id, origin, created_at"
    ))
    .bind(Uuid::now_v7())
    .bind(name)
    .bind(secret)
    .bind(origin)
    .fetch_optional(&mut *transaction)
    .await
    .context("storing a secret")?;
    if inserted.is_some() {
        touch_owner(transaction, owner, name).await?;
    }
    Ok(inserted)
}

/// Makes the config-owned secrets exactly `config_secrets`, leaving the API's alone.
pub(super) async fn replace_config_secrets(
    transaction: &mut sqlx::PgConnection,
    owner: SecretOwner,
    name: &str,
    config_secrets: &[String],
) -> Result<(), StoreError> {
    let (_, secrets, owner_column) = owner.tables();
    let removed = sqlx::query(&format!(
        "DELETE FROM {secrets} WHERE {owner_column} = $1 AND origin = 'config'
             AND NOT (secret = ANY($2))"
    ))
    .bind(name)
    .bind(config_secrets)
    .execute(&mut *transaction)
    .await
    .context("removing secrets the config no longer names")?
    .rows_affected();
    if removed > 0 {
        touch_owner(transaction, owner, name).await?;
    }
    for secret in config_secrets {
        insert_secret(transaction, owner, name, secret, "config").await?;
    }
    Ok(())
}

/// Replaces every secret of the owner with `secret`.
pub(super) async fn replace_all_secrets(
    transaction: &mut sqlx::PgConnection,
    owner: SecretOwner,
    name: &str,
    secret: &str,
) -> Result<(), StoreError> {
    replace_api_secrets(transaction, owner, name, &[secret]).await
}

/// Replaces every secret of the owner with `new_secrets`, marked as the API's own.
pub(super) async fn replace_api_secrets(
    transaction: &mut sqlx::PgConnection,
    owner: SecretOwner,
    name: &str,
    new_secrets: &[impl AsRef<str>],
) -> Result<(), StoreError> {
    let (_, secrets, owner_column) = owner.tables();
    sqlx::query(&format!("DELETE FROM {secrets} WHERE {owner_column} = $1"))
        .bind(name)
        .execute(&mut *transaction)
        .await
        .context("removing the old secrets")?;
    insert_api_secrets(transaction, owner, name, new_secrets).await
}

/// Adds the secrets an API call gave the owner, marked as the API's own.
pub(super) async fn insert_api_secrets(
    transaction: &mut sqlx::PgConnection,
    owner: SecretOwner,
    name: &str,
    new_secrets: &[impl AsRef<str>],
) -> Result<(), StoreError> {
    for secret in new_secrets {
        insert_secret(transaction, owner, name, secret.as_ref(), "api").await?;
    }
    Ok(())
}

/// Commits an owner's change; `what` names the owner in the error.
pub(super) async fn commit_change(
    transaction: sqlx::Transaction<'_, sqlx::Postgres>,
    what: &'static str,
) -> Result<Change, StoreError> {
    transaction.commit().await.context(what)?;
    Ok(Change::Done)
}

/// Runs `statement` (`DELETE FROM … WHERE name = $1`) for `name`: not found when no row went.
pub(super) async fn delete_named(
    pool: &PgPool,
    statement: &'static str,
    name: &str,
    what: &'static str,
) -> Result<Change, StoreError> {
    let deleted = sqlx::query(statement)
        .bind(name)
        .execute(pool)
        .await
        .context(what)?
        .rows_affected();
    Ok(if deleted == 0 {
        Change::NotFound
    } else {
        Change::Done
    })
}

/// The secrets of an owner, oldest first, without their values; `None` when it does not exist.
pub async fn list_secrets(
    pool: &PgPool,
    owner: SecretOwner,
    name: &str,
) -> Result<Option<Vec<SecretView>>, StoreError> {
    let mut connection = pool.acquire().await.context("acquiring a connection")?;
    let (owners, secrets, owner_column) = owner.tables();
    let exists: bool = sqlx::query_scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM {owners} WHERE name = $1)"
    ))
    .bind(name)
    .fetch_one(&mut *connection)
    .await
    .context("looking up the owner of the secrets")?;
    if !exists {
        return Ok(None);
    }
    let views = sqlx::query_as(&format!(
        "SELECT id, origin, created_at FROM {secrets} WHERE {owner_column} = $1
         ORDER BY created_at, id"
    ))
    .bind(name)
    .fetch_all(&mut *connection)
    .await
    .context("listing secrets")?;
    Ok(Some(views))
}

/// Adds a secret through the API; both old and new ones are in force until one is retired.
pub async fn add_secret(
    pool: &PgPool,
    owner: SecretOwner,
    name: &str,
    secret: &str,
) -> Result<Result<SecretView, Change>, StoreError> {
    let mut transaction = pool.begin().await.context("starting a transaction")?;
    if !lock_owner(&mut transaction, owner, name).await? {
        return Ok(Err(Change::NotFound));
    }
    let Some(view) = insert_secret(&mut transaction, owner, name, secret, "api").await? else {
        return Ok(Err(Change::AlreadyExists));
    };
    transaction
        .commit()
        .await
        .context("committing the secret")?;
    Ok(Ok(view))
}

/// Retires one secret; refuses the last one, which would leave nothing to sign or verify with.
pub async fn retire_secret(
    pool: &PgPool,
    owner: SecretOwner,
    name: &str,
    secret_id: Uuid,
) -> Result<Change, StoreError> {
    let mut transaction = pool.begin().await.context("starting a transaction")?;
    if !lock_owner(&mut transaction, owner, name).await? {
        return Ok(Change::NotFound);
    }
    if count_secrets(&mut transaction, owner, name).await? <= 1 {
        let (_, secrets, owner_column) = owner.tables();
        let is_theirs: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {secrets} WHERE {owner_column} = $1 AND id = $2)"
        ))
        .bind(name)
        .bind(secret_id)
        .fetch_one(&mut *transaction)
        .await
        .context("looking up the secret")?;
        return Ok(if is_theirs {
            Change::LastSecret
        } else {
            Change::NotFound
        });
    }
    let (_, secrets, owner_column) = owner.tables();
    let removed = sqlx::query(&format!(
        "DELETE FROM {secrets} WHERE {owner_column} = $1 AND id = $2"
    ))
    .bind(name)
    .bind(secret_id)
    .execute(&mut *transaction)
    .await
    .context("retiring the secret")?
    .rows_affected();
    if removed == 0 {
        return Ok(Change::NotFound);
    }
    touch_owner(&mut transaction, owner, name).await?;
    transaction
        .commit()
        .await
        .context("committing the retirement")?;
    Ok(Change::Done)
}
