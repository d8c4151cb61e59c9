//! Runs in the embedded store: creation, params (write-once), metrics, tags, artifacts and
//! status, each write one immediate transaction.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{OptionalExtension, Transaction, params};

use super::{EmbeddedStore, to_i64, to_u64};
use crate::error::{Error, Result};
use crate::types::{ArtifactRecord, Metric, Page, PageRequest, Run, RunId, RunStatus, Tags};
use crate::validate;

impl EmbeddedStore {
    pub(super) fn create_run_impl(
        &self,
        experiment: &str,
        name: &str,
        tags: &Tags,
    ) -> Result<RunId> {
        validate::name("experiment", experiment)?;
        for (key, value) in tags {
            validate::tag(key, value)?;
        }
        let id = RunId(format!("{:032x}", rand::random::<u128>()));
        let now = crate::types::now_ms();
        self.write(|tx| {
            let sql = self.sql_err();
            tx.execute(
                "INSERT OR IGNORE INTO experiments (name, created_ms) VALUES (?1, ?2)",
                params![experiment, now],
            )
            .map_err(&sql)?;
            tx.execute(
                "INSERT INTO runs (id, experiment, name, status, start_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id.0, experiment, name, RunStatus::Running.as_str(), now],
            )
            .map_err(&sql)?;
            self.put_run_tags(tx, &id, tags)
        })?;
        tracing::debug!(run = %id, experiment, "created run");
        Ok(id)
    }

    fn put_run_tags(&self, tx: &Transaction<'_>, run: &RunId, tags: &Tags) -> Result<()> {
        let mut stmt = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO run_tags (run_id, key, value) VALUES (?1, ?2, ?3)",
            )
            .map_err(self.sql_err())?;
        for (key, value) in tags {
            stmt.execute(params![run.0, key, value])
                .map_err(self.sql_err())?;
        }
        Ok(())
    }

    /// Fails with [`Error::NotFound`] unless the run exists.
    pub(super) fn require_run(&self, tx: &Transaction<'_>, run: &RunId) -> Result<()> {
        let found: Option<i64> = tx
            .query_row("SELECT 1 FROM runs WHERE id = ?1", [&run.0], |row| {
                row.get(0)
            })
            .optional()
            .map_err(self.sql_err())?;
        match found {
            Some(_) => Ok(()),
            None => Err(Error::not_found(format!("run {run}"))),
        }
    }

    pub(super) fn load_run(&self, tx: &Transaction<'_>, run: &RunId) -> Result<Run> {
        let sql = self.sql_err();
        let head: Option<(String, String, String)> = tx
            .query_row(
                "SELECT experiment, name, status FROM runs WHERE id = ?1",
                [&run.0],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(&sql)?;
        let (experiment, name, status) =
            head.ok_or_else(|| Error::not_found(format!("run {run}")))?;
        let pairs = |query: &str| -> Result<BTreeMap<String, String>> {
            let mut stmt = tx.prepare_cached(query).map_err(&sql)?;
            let rows = stmt
                .query_map([&run.0], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(&sql)?;
            rows.collect::<Result<_, _>>().map_err(&sql)
        };
        let params = pairs("SELECT key, value FROM params WHERE run_id = ?1")?;
        let tags = pairs("SELECT key, value FROM run_tags WHERE run_id = ?1")?;
        // The latest value per key: highest step, then latest timestamp (as MLflow).
        let mut stmt = tx
            .prepare_cached(
                "SELECT key, value FROM metrics WHERE run_id = ?1 \
                 ORDER BY key, step, timestamp_ms, rowid",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map([&run.0], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, f64>(1)?))
            })
            .map_err(&sql)?;
        let mut metrics = BTreeMap::new();
        for row in rows {
            let (key, value) = row.map_err(&sql)?;
            metrics.insert(key, value);
        }
        Ok(Run {
            id: run.clone(),
            experiment,
            name,
            status: RunStatus::parse(&status)?,
            params,
            metrics,
            tags,
        })
    }

    pub(super) fn list_runs_impl(&self, experiment: &str, page: &PageRequest) -> Result<Page<Run>> {
        let offset: u64 = match &page.token {
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
                    "SELECT id FROM runs WHERE experiment = ?1 \
                     ORDER BY start_ms DESC, id LIMIT ?2 OFFSET ?3",
                )
                .map_err(&sql)?;
            let ids: Vec<String> = stmt
                .query_map(
                    params![experiment, to_i64(limit + 1), to_i64(offset)],
                    |row| row.get(0),
                )
                .map_err(&sql)?
                .collect::<Result<_, _>>()
                .map_err(&sql)?;
            let more = ids.len() as u64 > limit;
            let items = ids
                .into_iter()
                .take(limit as usize)
                .map(|id| self.load_run(tx, &RunId(id)))
                .collect::<Result<Vec<_>>>()?;
            Ok(Page {
                items,
                next_token: more.then(|| (offset + limit).to_string()),
            })
        })
    }

    pub(super) fn log_params_impl(&self, run: &RunId, params: &Tags) -> Result<()> {
        for (key, value) in params {
            validate::key("param", key)?;
            validate::param_value(key, value)?;
        }
        self.write(|tx| {
            self.require_run(tx, run)?;
            let sql = self.sql_err();
            for (key, value) in params {
                let old: Option<String> = tx
                    .query_row(
                        "SELECT value FROM params WHERE run_id = ?1 AND key = ?2",
                        params![run.0, key],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(&sql)?;
                match old {
                    Some(old) if &old != value => {
                        return Err(Error::Conflict(format!(
                            "param {key:?} of run {run} is already {old:?}; params are \
                             write-once, so {value:?} was refused"
                        )));
                    }
                    Some(_) => {}
                    None => {
                        tx.execute(
                            "INSERT INTO params (run_id, key, value) VALUES (?1, ?2, ?3)",
                            params![run.0, key, value],
                        )
                        .map_err(&sql)?;
                    }
                }
            }
            Ok(())
        })
    }

    pub(super) fn log_metrics_impl(&self, run: &RunId, metrics: &[Metric]) -> Result<()> {
        metrics.iter().try_for_each(validate::metric)?;
        self.write(|tx| {
            self.require_run(tx, run)?;
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO metrics (run_id, key, step, timestamp_ms, value) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(self.sql_err())?;
            for m in metrics {
                stmt.execute(params![
                    run.0,
                    m.key,
                    to_i64(m.step),
                    m.timestamp_ms,
                    m.value
                ])
                .map_err(self.sql_err())?;
            }
            Ok(())
        })
    }

    pub(super) fn metric_history_impl(&self, run: &RunId, key: &str) -> Result<Vec<Metric>> {
        self.read(|tx| {
            self.require_run(tx, run)?;
            let sql = self.sql_err();
            let mut stmt = tx
                .prepare_cached(
                    "SELECT step, timestamp_ms, value FROM metrics WHERE run_id = ?1 AND key = ?2 \
                     ORDER BY step, timestamp_ms, rowid",
                )
                .map_err(&sql)?;
            let rows = stmt
                .query_map(params![run.0, key], |row| {
                    Ok(Metric {
                        key: key.to_string(),
                        step: to_u64(row.get(0)?),
                        timestamp_ms: row.get(1)?,
                        value: row.get(2)?,
                    })
                })
                .map_err(&sql)?;
            rows.collect::<Result<_, _>>().map_err(&sql)
        })
    }

    pub(super) fn set_run_tags_impl(&self, run: &RunId, tags: &Tags) -> Result<()> {
        for (key, value) in tags {
            validate::tag(key, value)?;
        }
        self.write(|tx| {
            self.require_run(tx, run)?;
            self.put_run_tags(tx, run, tags)
        })
    }

    pub(super) fn upload_artifact_impl(
        &self,
        run: &RunId,
        local_path: &Path,
        artifact_path: &str,
    ) -> Result<ArtifactRecord> {
        validate::artifact_path(artifact_path)?;
        self.read(|tx| self.require_run(tx, run))?;
        // The bytes go in first; the row that makes them visible follows.
        let (sha256, size_bytes) = self.objects.put(local_path)?;
        self.write(|tx| {
            self.require_run(tx, run)?;
            tx.execute(
                "INSERT OR REPLACE INTO run_artifacts (run_id, path, sha256, size_bytes) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![run.0, artifact_path, sha256, to_i64(size_bytes)],
            )
            .map_err(self.sql_err())?;
            Ok(())
        })?;
        tracing::debug!(run = %run, artifact_path, size_bytes, "stored artifact");
        Ok(ArtifactRecord {
            path: artifact_path.to_string(),
            sha256,
            size_bytes,
        })
    }

    pub(super) fn finish_run_impl(&self, run: &RunId, status: RunStatus) -> Result<()> {
        if status == RunStatus::Running {
            return Err(Error::invalid(
                "run status",
                "a run cannot be finished as RUNNING",
            ));
        }
        self.write(|tx| {
            self.require_run(tx, run)?;
            tx.execute(
                "UPDATE runs SET status = ?1, end_ms = ?2 WHERE id = ?3",
                params![status.as_str(), crate::types::now_ms(), run.0],
            )
            .map_err(self.sql_err())?;
            Ok(())
        })
    }
}
