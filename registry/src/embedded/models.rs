//! Registered models, versions, version tags and aliases in the embedded store. Version
//! numbers are allocated inside the registering transaction, so concurrent registrations
//! get distinct numbers, and the `(model, idempotency_key)` uniqueness makes a retried
//! registration return the first one.

use std::fs::File;
use std::path::Path;

use rusqlite::{OptionalExtension, Transaction, params};

use super::{EmbeddedStore, to_i64, to_u64};
use crate::error::{Error, Result};
use crate::fsutil::{self, HashingWriter};
use crate::registry::AliasSwap;
use crate::types::{ArtifactRecord, ModelVersion, Page, PageRequest, RunId, Tags};
use crate::validate;

impl EmbeddedStore {
    pub(super) fn register_version_impl(
        &self,
        model: &str,
        run: &RunId,
        artifacts: &[ArtifactRecord],
        tags: &Tags,
        idempotency_key: &str,
    ) -> Result<ModelVersion> {
        validate::name("model", model)?;
        validate::registration(artifacts, tags, idempotency_key)?;
        let number = self.write(|tx| {
            if let Some((number, first_run)) = find_key(tx, model, idempotency_key, self)? {
                return if first_run == run.0 {
                    tracing::debug!(model, number, "idempotent registration: version exists");
                    Ok(number)
                } else {
                    Err(Error::key_conflict(
                        model,
                        number,
                        idempotency_key,
                        &first_run,
                        run,
                    ))
                };
            }
            self.require_run(tx, run)?;
            for artifact in artifacts {
                self.check_stored(tx, run, artifact)?;
            }
            self.insert_version(tx, model, run, artifacts, tags, idempotency_key)
        })?;
        self.read(|tx| self.load_version(tx, model, number))
    }

    /// Checks that `artifact` was uploaded to `run` with this checksum and is on disk.
    fn check_stored(
        &self,
        tx: &Transaction<'_>,
        run: &RunId,
        artifact: &ArtifactRecord,
    ) -> Result<()> {
        let stored: Option<(String, i64)> = tx
            .query_row(
                "SELECT sha256, size_bytes FROM run_artifacts WHERE run_id = ?1 AND path = ?2",
                params![run.0, artifact.path],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(self.sql_err())?;
        let what = || format!("artifact {:?} of run {run}", artifact.path);
        match stored {
            None => Err(Error::NotFound {
                what: what(),
                hint: "upload it to the run before registering".into(),
            }),
            Some((sha, size)) if sha != artifact.sha256 || to_u64(size) != artifact.size_bytes => {
                Err(Error::Conflict(format!(
                    "{} is stored as sha256 {sha} ({size} bytes), not {} ({} bytes)",
                    what(),
                    artifact.sha256,
                    artifact.size_bytes
                )))
            }
            Some(_) if !self.objects.has(&artifact.sha256, artifact.size_bytes) => {
                Err(Error::not_found(format!("{} in the object store", what())))
            }
            Some(_) => Ok(()),
        }
    }

    fn insert_version(
        &self,
        tx: &Transaction<'_>,
        model: &str,
        run: &RunId,
        artifacts: &[ArtifactRecord],
        tags: &Tags,
        idempotency_key: &str,
    ) -> Result<u64> {
        let sql = self.sql_err();
        let now = crate::types::now_ms();
        tx.execute(
            "INSERT OR IGNORE INTO models (name, created_ms) VALUES (?1, ?2)",
            params![model, now],
        )
        .map_err(&sql)?;
        let last: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM versions WHERE model = ?1",
                [model],
                |row| row.get(0),
            )
            .map_err(&sql)?;
        let number = to_u64(last) + 1;
        tx.execute(
            "INSERT INTO versions (model, version, run_id, idempotency_key, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![model, to_i64(number), run.0, idempotency_key, now],
        )
        .map_err(&sql)?;
        for a in artifacts {
            tx.execute(
                "INSERT INTO version_artifacts (model, version, path, sha256, size_bytes) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    model,
                    to_i64(number),
                    a.path,
                    a.sha256,
                    to_i64(a.size_bytes)
                ],
            )
            .map_err(&sql)?;
        }
        for (key, value) in tags {
            put_tag(tx, model, number, key, value).map_err(&sql)?;
        }
        tracing::info!(model, version = number, run = %run, "registered model version");
        Ok(number)
    }

    pub(super) fn load_version(
        &self,
        tx: &Transaction<'_>,
        model: &str,
        number: u64,
    ) -> Result<ModelVersion> {
        let sql = self.sql_err();
        let run_id: Option<String> = tx
            .query_row(
                "SELECT run_id FROM versions WHERE model = ?1 AND version = ?2",
                params![model, to_i64(number)],
                |row| row.get(0),
            )
            .optional()
            .map_err(&sql)?;
        let run_id =
            run_id.ok_or_else(|| Error::not_found(format!("model {model:?} version {number}")))?;
        let mut stmt = tx
            .prepare_cached(
                "SELECT path, sha256, size_bytes FROM version_artifacts \
                 WHERE model = ?1 AND version = ?2 ORDER BY path",
            )
            .map_err(&sql)?;
        let artifacts = stmt
            .query_map(params![model, to_i64(number)], |row| {
                Ok(ArtifactRecord {
                    path: row.get(0)?,
                    sha256: row.get(1)?,
                    size_bytes: to_u64(row.get(2)?),
                })
            })
            .map_err(&sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&sql)?;
        let mut stmt = tx
            .prepare_cached("SELECT key, value FROM version_tags WHERE model = ?1 AND version = ?2")
            .map_err(&sql)?;
        let tags = stmt
            .query_map(params![model, to_i64(number)], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(&sql)?
            .collect::<Result<Tags, _>>()
            .map_err(&sql)?;
        let mut stmt = tx
            .prepare_cached(
                "SELECT alias FROM aliases WHERE model = ?1 AND version = ?2 ORDER BY alias",
            )
            .map_err(&sql)?;
        let aliases = stmt
            .query_map(params![model, to_i64(number)], |row| row.get(0))
            .map_err(&sql)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(&sql)?;
        Ok(ModelVersion {
            model: model.to_string(),
            version: number.to_string(),
            run_id: RunId(run_id),
            artifacts,
            tags,
            aliases,
        })
    }

    pub(super) fn list_models_impl(&self) -> Result<Vec<String>> {
        self.read(|tx| {
            let sql = self.sql_err();
            let mut stmt = tx
                .prepare_cached("SELECT name FROM models ORDER BY name")
                .map_err(&sql)?;
            let names = stmt.query_map([], |row| row.get(0)).map_err(&sql)?;
            names.collect::<Result<Vec<String>, _>>().map_err(&sql)
        })
    }

    pub(super) fn list_versions_impl(
        &self,
        model: &str,
        page: &PageRequest,
    ) -> Result<Page<ModelVersion>> {
        let after: u64 = match &page.token {
            None => 0,
            Some(token) => token.parse().map_err(|_| {
                Error::invalid(
                    "page token",
                    format!("{token:?} was not issued by this store"),
                )
            })?,
        };
        let limit = u64::from(page.max_results.clamp(1, 1000));
        self.read(|tx| {
            let sql = self.sql_err();
            let mut stmt = tx
                .prepare_cached(
                    "SELECT version FROM versions WHERE model = ?1 AND version > ?2 \
                     ORDER BY version LIMIT ?3",
                )
                .map_err(&sql)?;
            let numbers: Vec<i64> = stmt
                .query_map(params![model, to_i64(after), to_i64(limit + 1)], |row| {
                    row.get(0)
                })
                .map_err(&sql)?
                .collect::<Result<_, _>>()
                .map_err(&sql)?;
            let more = numbers.len() as u64 > limit;
            let items = numbers
                .iter()
                .take(limit as usize)
                .map(|&n| self.load_version(tx, model, to_u64(n)))
                .collect::<Result<Vec<_>>>()?;
            let next_token = if more {
                items.last().map(|v| v.version.clone())
            } else {
                None
            };
            Ok(Page { items, next_token })
        })
    }

    /// Fails with [`Error::NotFound`] unless the version exists.
    fn require_version(&self, tx: &Transaction<'_>, model: &str, number: u64) -> Result<()> {
        let found: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM versions WHERE model = ?1 AND version = ?2",
                params![model, to_i64(number)],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.sql_err())?;
        found
            .map(|_| ())
            .ok_or_else(|| Error::not_found(format!("model {model:?} version {number}")))
    }

    fn require_model(&self, tx: &Transaction<'_>, model: &str) -> Result<()> {
        let found: Option<i64> = tx
            .query_row("SELECT 1 FROM models WHERE name = ?1", [model], |row| {
                row.get(0)
            })
            .optional()
            .map_err(self.sql_err())?;
        found
            .map(|_| ())
            .ok_or_else(|| Error::not_found(format!("registered model {model:?}")))
    }

    fn alias_target(&self, tx: &Transaction<'_>, model: &str, alias: &str) -> Result<Option<u64>> {
        let found: Option<i64> = tx
            .query_row(
                "SELECT version FROM aliases WHERE model = ?1 AND alias = ?2",
                params![model, alias],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.sql_err())?;
        Ok(found.map(to_u64))
    }

    fn put_alias(&self, tx: &Transaction<'_>, model: &str, alias: &str, number: u64) -> Result<()> {
        tx.execute(
            "INSERT OR REPLACE INTO aliases (model, alias, version) VALUES (?1, ?2, ?3)",
            params![model, alias, to_i64(number)],
        )
        .map_err(self.sql_err())?;
        Ok(())
    }

    pub(super) fn set_alias_impl(&self, model: &str, alias: &str, version: &str) -> Result<()> {
        validate::alias(alias)?;
        let number = validate::version(version)?;
        self.write(|tx| {
            self.require_version(tx, model, number)?;
            self.put_alias(tx, model, alias, number)
        })
    }

    pub(super) fn get_alias_impl(&self, model: &str, alias: &str) -> Result<Option<ModelVersion>> {
        validate::alias(alias)?;
        self.read(|tx| {
            self.require_model(tx, model)?;
            match self.alias_target(tx, model, alias)? {
                Some(number) => self.load_version(tx, model, number).map(Some),
                None => Ok(None),
            }
        })
    }

    pub(super) fn delete_alias_impl(&self, model: &str, alias: &str) -> Result<()> {
        validate::alias(alias)?;
        self.write(|tx| {
            self.require_model(tx, model)?;
            tx.execute(
                "DELETE FROM aliases WHERE model = ?1 AND alias = ?2",
                params![model, alias],
            )
            .map_err(self.sql_err())?;
            Ok(())
        })
    }

    pub(super) fn swap_alias_impl(&self, model: &str, swap: &AliasSwap<'_>) -> Result<bool> {
        validate::alias(swap.alias)?;
        if let Some(previous) = swap.keep_previous_as {
            validate::alias(previous)?;
        }
        let number = validate::version(swap.version)?;
        let expected = swap.expected.map(validate::version).transpose()?;
        self.write(|tx| {
            self.require_version(tx, model, number)?;
            let current = self.alias_target(tx, model, swap.alias)?;
            if current != expected {
                return Ok(false);
            }
            self.put_alias(tx, model, swap.alias, number)?;
            if let (Some(previous), Some(old)) = (swap.keep_previous_as, current) {
                self.put_alias(tx, model, previous, old)?;
            }
            Ok(true)
        })
    }

    pub(super) fn set_version_tag_impl(
        &self,
        model: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        validate::tag(key, value)?;
        let number = validate::version(version)?;
        self.write(|tx| {
            self.require_version(tx, model, number)?;
            put_tag(tx, model, number, key, value).map_err(self.sql_err())
        })
    }

    pub(super) fn download_artifact_impl(
        &self,
        version: &ModelVersion,
        artifact_path: &str,
        dest: &Path,
    ) -> Result<ArtifactRecord> {
        validate::artifact_path(artifact_path)?;
        let record = version.artifact(artifact_path)?;
        let source = self.objects.path_of(&record.sha256);
        let mut input = File::open(&source).map_err(|e| Error::io(&source, e))?;
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsutil::create_dir_all(parent)?;
        }
        let output = File::create(dest).map_err(|e| Error::io(dest, e))?;
        let mut writer = HashingWriter::new(output);
        fsutil::copy(&mut input, &mut writer).map_err(|e| Error::io(dest, e))?;
        let (sha256, size_bytes, file) = writer.finish();
        file.sync_all().map_err(|e| Error::io(dest, e))?;
        Ok(ArtifactRecord {
            path: record.path.clone(),
            sha256,
            size_bytes,
        })
    }
}

fn put_tag(
    tx: &Transaction<'_>,
    model: &str,
    number: u64,
    key: &str,
    value: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO version_tags (model, version, key, value) VALUES (?1, ?2, ?3, ?4)",
        params![model, to_i64(number), key, value],
    )
    .map(|_| ())
}

fn find_key(
    tx: &Transaction<'_>,
    model: &str,
    key: &str,
    store: &EmbeddedStore,
) -> Result<Option<(u64, String)>> {
    tx.query_row(
        "SELECT version, run_id FROM versions WHERE model = ?1 AND idempotency_key = ?2",
        params![model, key],
        |row| Ok((to_u64(row.get(0)?), row.get(1)?)),
    )
    .optional()
    .map_err(store.sql_err())
}
