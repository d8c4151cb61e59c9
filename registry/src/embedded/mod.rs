//! The embedded store: the default backend, a local folder holding a SQLite database
//! (`registry.db`, WAL mode) and a content-addressed artifact store (`objects/`, see
//! [`objects`]). No server is needed.
//!
//! Concurrent writers on one machine (threads or processes) are safe: every write is one
//! `BEGIN IMMEDIATE` transaction (writers queue on SQLite's lock, with a busy timeout),
//! version numbers are allocated inside that transaction, and an idempotency key is unique
//! per model, so nothing is lost and no version is duplicated. Artifact bytes are stored
//! before the rows that reference them, so a version becomes visible only once all its
//! artifacts are on disk.

mod models;
pub mod objects;
mod runs;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::registry::{AliasSwap, Registry};
use crate::types::{
    ArtifactRecord, Metric, ModelVersion, Page, PageRequest, Run, RunId, RunStatus, Tags,
};
use objects::ObjectStore;

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// The database file inside the store folder.
pub const DB_FILE: &str = "registry.db";

/// An embedded registry in a local folder.
#[derive(Debug)]
pub struct EmbeddedStore {
    root: PathBuf,
    db_path: PathBuf,
    objects: ObjectStore,
    conn: Mutex<Connection>,
}

impl EmbeddedStore {
    /// Opens the store in `root`, creating the folder, database and object store if needed.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Sqlite`] naming the folder or database; a database written
    /// by a newer schema.
    pub fn open(root: &Path) -> Result<Self> {
        fsutil::create_dir_all(root)?;
        let db_path = root.join(DB_FILE);
        let objects = ObjectStore::new(root.join("objects"));
        objects.ensure()?;
        let sql = |source| Error::Sqlite {
            path: db_path.clone(),
            source,
        };
        let mut conn = Connection::open(&db_path).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        let _mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        init_schema(&mut conn, &db_path)?;
        tracing::debug!(root = %root.display(), "opened embedded registry");
        Ok(Self {
            root: root.to_path_buf(),
            db_path,
            objects,
            conn: Mutex::new(conn),
        })
    }

    /// The store folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the bytes of an artifact with this SHA-256 are kept (for inspection and tests).
    pub fn object_path(&self, sha256: &str) -> PathBuf {
        self.objects.path_of(sha256)
    }

    fn sql_err(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        |source| Error::Sqlite {
            path: self.db_path.clone(),
            source,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open (it rolls back on
        // drop), so the connection is still usable.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `body` in one `BEGIN IMMEDIATE` transaction and commits it.
    fn write<T>(&self, body: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql_err())?;
        let value = body(&tx)?;
        tx.commit().map_err(self.sql_err())?;
        Ok(value)
    }

    /// Runs `body` in a read transaction (a consistent snapshot).
    fn read<T>(&self, body: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(self.sql_err())?;
        body(&tx)
    }
}

fn init_schema(conn: &mut Connection, db_path: &Path) -> Result<()> {
    let sql = |source| Error::Sqlite {
        path: db_path.to_path_buf(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sql)?;
    if found > schema::SCHEMA_VERSION {
        return Err(Error::invalid(
            format!("embedded registry {}", db_path.display()),
            format!(
                "schema version {found} is newer than this ctiforge understands ({}); \
                 upgrade ctiforge",
                schema::SCHEMA_VERSION
            ),
        ));
    }
    tx.execute_batch(schema::CREATE).map_err(sql)?;
    tx.pragma_update(None, "user_version", schema::SCHEMA_VERSION)
        .map_err(sql)?;
    tx.commit().map_err(sql)
}

/// Converts a stored integer back to `u64` (negative values never get written).
fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Converts a count or size to SQLite's integer.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Registry for EmbeddedStore {
    fn describe(&self) -> String {
        format!("embedded store at {}", self.root.display())
    }

    fn create_run(&self, experiment: &str, name: &str, tags: &Tags) -> Result<RunId> {
        self.create_run_impl(experiment, name, tags)
    }

    fn get_run(&self, run: &RunId) -> Result<Run> {
        self.read(|tx| self.load_run(tx, run))
    }

    fn list_runs(&self, experiment: &str, page: &PageRequest) -> Result<Page<Run>> {
        self.list_runs_impl(experiment, page)
    }

    fn log_params(&self, run: &RunId, params: &Tags) -> Result<()> {
        self.log_params_impl(run, params)
    }

    fn log_metrics(&self, run: &RunId, metrics: &[Metric]) -> Result<()> {
        self.log_metrics_impl(run, metrics)
    }

    fn metric_history(&self, run: &RunId, key: &str) -> Result<Vec<Metric>> {
        self.metric_history_impl(run, key)
    }

    fn set_run_tags(&self, run: &RunId, tags: &Tags) -> Result<()> {
        self.set_run_tags_impl(run, tags)
    }

    fn upload_artifact(
        &self,
        run: &RunId,
        local_path: &Path,
        artifact_path: &str,
    ) -> Result<ArtifactRecord> {
        self.upload_artifact_impl(run, local_path, artifact_path)
    }

    fn finish_run(&self, run: &RunId, status: RunStatus) -> Result<()> {
        self.finish_run_impl(run, status)
    }

    fn register_version(
        &self,
        model: &str,
        run: &RunId,
        artifacts: &[ArtifactRecord],
        tags: &Tags,
        idempotency_key: &str,
    ) -> Result<ModelVersion> {
        self.register_version_impl(model, run, artifacts, tags, idempotency_key)
    }

    fn get_version(&self, model: &str, version: &str) -> Result<ModelVersion> {
        let number = crate::validate::version(version)?;
        self.read(|tx| self.load_version(tx, model, number))
    }

    fn list_models(&self) -> Result<Vec<String>> {
        self.list_models_impl()
    }

    fn list_versions(&self, model: &str, page: &PageRequest) -> Result<Page<ModelVersion>> {
        self.list_versions_impl(model, page)
    }

    fn set_alias(&self, model: &str, alias: &str, version: &str) -> Result<()> {
        self.set_alias_impl(model, alias, version)
    }

    fn get_alias(&self, model: &str, alias: &str) -> Result<Option<ModelVersion>> {
        self.get_alias_impl(model, alias)
    }

    fn delete_alias(&self, model: &str, alias: &str) -> Result<()> {
        self.delete_alias_impl(model, alias)
    }

    fn swap_alias(&self, model: &str, swap: &AliasSwap<'_>) -> Result<bool> {
        self.swap_alias_impl(model, swap)
    }

    fn set_version_tag(&self, model: &str, version: &str, key: &str, value: &str) -> Result<()> {
        self.set_version_tag_impl(model, version, key, value)
    }

    fn download_artifact(
        &self,
        version: &ModelVersion,
        artifact_path: &str,
        dest: &Path,
    ) -> Result<ArtifactRecord> {
        self.download_artifact_impl(version, artifact_path, dest)
    }
}
