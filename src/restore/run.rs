//! One restore, in named steps: check every target before downloading,
//! download and verify every artifact before applying any, check the
//! encrypted headers, then apply step by step. Each step adds typed notes
//! to the [`RestoreReport`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::database::{self, apply_globals, restore_database, Chosen, RestorePath};
use super::plan::{
    check_named, check_table_target, check_target, configured_tree, dump_major, pg_config, plan,
    refuse_downgrade, target_state,
};
use super::report::{Note, RestoreReport};
use super::tree::{recorded_root, restore_tree, tree_outcome};
use super::{fetch, select, tables, RestoreError, RestoreRequest, Step};
use crate::config::{JobConfig, PostgresConfig};
use crate::crypto::CryptoError;
use crate::pg::conn;
use crate::pg::tools;
use crate::progress::{Phase, Progress};
use crate::repo::manifest::{Artifact, Manifest};
use crate::repo::store::Repo;

/// What every step of one restore shares.
struct Run<'a> {
    repo: &'a Repo,
    job: &'a JobConfig,
    m: &'a Manifest,
    req: &'a RestoreRequest,
    steps: Vec<Step>,
    staging: &'a Path,
    progress: Arc<Progress>,
    /// Steps whose dump is staged decoded, for `pg_restore --jobs`.
    plain: Vec<bool>,
}

/// Executes (or with `dry_run`, describes) a restore. Returns what was (or
/// would be) done, step by step.
pub async fn run(
    repo: &Repo,
    job: &JobConfig,
    m: &Manifest,
    req: &RestoreRequest,
) -> Result<RestoreReport, RestoreError> {
    let steps = plan(m, req, &|name| configured_tree(job, name))?;
    let staging = tempfile::Builder::new()
        .prefix("ccbackup-restore-")
        .tempdir_in(req.staging_dir.clone().unwrap_or_else(std::env::temp_dir))
        .map_err(RestoreError::Staging)?;
    let mut report = RestoreReport::new(&steps);
    let mut run = Run {
        repo,
        job,
        m,
        req,
        plain: vec![false; steps.len()],
        steps,
        staging: staging.path(),
        progress: req.progress.clone().unwrap_or_default(),
    };
    // Refuse before downloading.
    run.check_downgrades(&mut report)?;
    run.check_databases(&mut report).await?;
    run.require_identity()?;
    let staged = run.stage_all().await?;
    run.check_headers(&staged).await?;
    run.apply_all(&staged, &mut report).await?;
    Ok(report)
}

/// A refusal stops a real restore; a dry run reports it and goes on, so the
/// whole plan is shown (and the operator sees which flags it needs).
fn refuse_or_report(
    report: &mut RestoreReport,
    step: usize,
    req: &RestoreRequest,
    why: String,
) -> Result<(), RestoreError> {
    if !req.dry_run {
        return Err(RestoreError::Plan(why));
    }
    report.refuse(step, why);
    Ok(())
}

fn client_note(chosen: &Chosen) -> Note {
    Note::Client {
        pg_restore: chosen.tools.version.clone(),
        from: chosen.tools.dir_display(),
        server: chosen.server.version.clone(),
        through_sql: chosen.path == RestorePath::Sql,
    }
}

impl Run<'_> {
    /// Unencrypted artifacts of a job that encrypts are refused (unless
    /// allowed): a store writer could have swapped them in.
    fn check_downgrades(&self, report: &mut RestoreReport) -> Result<(), RestoreError> {
        let encrypts = self.job.encryption.is_some();
        for (i, step) in self.steps.iter().enumerate() {
            if let Err(why) =
                refuse_downgrade(encrypts, step.artifact(), self.req.allow_unencrypted)
            {
                refuse_or_report(report, i, self.req, why)?;
            }
        }
        Ok(())
    }

    /// Every database target and server version, and the client for each.
    async fn check_databases(&mut self, report: &mut RestoreReport) -> Result<(), RestoreError> {
        for i in 0..self.steps.len() {
            if let Step::Database {
                artifact,
                database,
                target,
            } = &self.steps[i]
            {
                let plain =
                    check_database(self.job, self.req, report, i, artifact, database, target)
                        .await?;
                self.plain[i] = plain;
            }
        }
        Ok(())
    }

    /// An encrypted backup without an identity fails before any download.
    fn require_identity(&self) -> Result<(), RestoreError> {
        if self.req.identities.is_some() {
            return Ok(());
        }
        match self
            .steps
            .iter()
            .map(Step::artifact)
            .find(|a| a.encryption.is_some())
        {
            Some(a) => Err(CryptoError::NoIdentity { key: a.key.clone() }.into()),
            None => Ok(()),
        }
    }

    /// Downloads and verifies everything before applying anything.
    async fn stage_all(&self) -> Result<Vec<PathBuf>, RestoreError> {
        let mut staged = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let a = step.artifact();
            let path = self.staging.join(format!("{i}.zst"));
            let fetched = tokio::select! {
                r = self.stage_step(a, &path, self.plain[i]) => r?,
                // Nothing has been applied yet; the staging directory goes
                // when `run` returns.
                _ = self.req.cancel.cancelled() => return Err(RestoreError::Interrupted {
                    what: format!("while downloading {}; nothing was applied", a.key),
                }),
            };
            staged.push(fetched);
        }
        Ok(staged)
    }

    /// Downloads and checks one artifact into staging: as stored, or (for a
    /// dump `pg_restore --jobs` reads) decoded in the same pass, at `path`
    /// with `.dump` for `.zst`.
    async fn stage_step(
        &self,
        a: &Artifact,
        path: &Path,
        plain: bool,
    ) -> Result<PathBuf, RestoreError> {
        let (m, req) = (self.m, self.req);
        if !plain {
            return Ok(fetch::verified_local(
                self.repo,
                &m.job,
                &m.id,
                a,
                path,
                &self.progress,
                &req.cancel,
            )
            .await?);
        }
        let path = path.with_extension("dump");
        let ids = req.identities.clone();
        fetch::plain::stage_plain(
            self.repo,
            &m.job,
            &m.id,
            a,
            &path,
            ids,
            &self.progress,
            &req.cancel,
        )
        .await?;
        Ok(path)
    }

    /// A wrong identity is found here, on each artifact's header, before
    /// the first step changes anything.
    async fn check_headers(&self, staged: &[PathBuf]) -> Result<(), RestoreError> {
        for ((step, path), _) in self
            .steps
            .iter()
            .zip(staged)
            .zip(&self.plain)
            .filter(|(_, p)| !**p)
        {
            let a = step.artifact();
            if a.encryption.is_some() {
                let path = path.clone();
                let a = a.clone();
                let ids = self.req.identities.clone();
                tokio::task::spawn_blocking(move || {
                    crate::crypto::open_artifact(&path, &a, ids.as_deref()).map(|_| ())
                })
                .await
                .map_err(|_| RestoreError::Join)??;
            }
        }
        Ok(())
    }

    /// Applies the staged steps in order; an interruption stops between
    /// steps and says what was restored until then.
    async fn apply_all(
        &self,
        staged: &[PathBuf],
        report: &mut RestoreReport,
    ) -> Result<(), RestoreError> {
        let mut applied: Vec<&str> = Vec::new();
        for (i, (step, path)) in self.steps.iter().zip(staged).enumerate() {
            if self.req.cancel.is_cancelled() {
                return Err(RestoreError::Interrupted {
                    what: format!(
                        "before {}; restored until then: {}",
                        step.artifact().key,
                        if applied.is_empty() {
                            "nothing".to_owned()
                        } else {
                            applied.join(", ")
                        }
                    ),
                });
            }
            self.progress
                .start_phase(Phase::Restoring, step.artifact().raw_bytes);
            self.apply_step(i, step, path, report).await?;
            report.done(i, self.req.dry_run);
            applied.push(&step.artifact().key);
        }
        Ok(())
    }

    async fn apply_step(
        &self,
        i: usize,
        step: &Step,
        path: &Path,
        report: &mut RestoreReport,
    ) -> Result<(), RestoreError> {
        let req = self.req;
        match step {
            Step::Globals { artifact } => {
                let cfg = pg_config(self.job, &artifact.source)?;
                // A dry run checks every statement too, so a tampered
                // artifact is refused before anyone relies on the plan.
                let g = apply_globals(cfg, artifact, path, req).await?;
                report.note(i, Note::Globals(g));
            }
            Step::Database {
                artifact, target, ..
            } => {
                self.apply_database(i, artifact, target, path, report)
                    .await?
            }
            Step::Tree { artifact, dest } => {
                let r = restore_tree(artifact, dest, path, req).await?;
                if !req.dry_run {
                    self.progress.add_written(r.written, r.bytes);
                }
                report.tree(i, tree_outcome(artifact, dest, r, req.dry_run));
                if let Some(w) = recorded_root(artifact, dest, req) {
                    report.note(i, Note::Warning(w));
                }
            }
        }
        Ok(())
    }

    async fn apply_database(
        &self,
        i: usize,
        artifact: &Artifact,
        target: &str,
        path: &Path,
        report: &mut RestoreReport,
    ) -> Result<(), RestoreError> {
        let req = self.req;
        let cfg = pg_config(self.job, &artifact.source)?;
        let mut list = None;
        if !req.tables.is_empty() {
            let sel = tables::select_for(cfg, artifact, target, path, req).await?;
            report.selection(i, &sel, req.dry_run);
            if let Err(why) = select::refuse_replace(&sel, target, req.clean) {
                refuse_or_report(report, i, req, why)?;
            }
            if !req.dry_run {
                list = Some(tables::write_list(&sel, self.staging)?);
            }
        }
        if req.dry_run {
            return Ok(());
        }
        let staged = if self.plain[i] {
            database::Staged::Plain(path)
        } else {
            database::Staged::Stored(path)
        };
        let warnings = restore_database(
            cfg,
            artifact,
            target,
            staged,
            self.staging,
            req,
            list.as_deref(),
        )
        .await?;
        self.progress.add_database();
        report.note(
            i,
            Note::Restored {
                target: target.to_owned(),
                selected: list.is_some(),
            },
        );
        for w in warnings {
            report.note(i, Note::Warning(w));
        }
        Ok(())
    }
}

/// Checks one database step's target, server version and client before
/// anything is downloaded; notes where it goes. Returns whether its dump
/// is to be staged decoded (`pg_restore --jobs`).
async fn check_database(
    job: &JobConfig,
    req: &RestoreRequest,
    report: &mut RestoreReport,
    i: usize,
    artifact: &Artifact,
    database: &str,
    target: &str,
) -> Result<bool, RestoreError> {
    let cfg = pg_config(job, &artifact.source)?;
    if let Err(why) = check_named(&cfg.databases, database, target, req) {
        refuse_or_report(report, i, req, why)?;
    }
    let admin = conn::connect(cfg, &cfg.maintenance_db).await?;
    // The client is chosen now, so a missing or unfit one refuses the
    // restore before anything is downloaded.
    let chosen = database::choose(cfg, artifact).await?;
    let plain =
        req.jobs > 1 && req.tables.is_empty() && !req.dry_run && chosen.path == RestorePath::Direct;
    if let Err(why) = check_server_version(cfg, artifact, database, &chosen) {
        refuse_or_report(report, i, req, why)?;
        return Ok(plain);
    }
    let state = target_state(cfg, &admin, target).await?;
    let allowed = if req.tables.is_empty() {
        check_target(state, target, database, req)
    } else {
        check_table_target(state, target, req)
    };
    if let Err(why) = allowed {
        refuse_or_report(report, i, req, why)?;
    }
    report.note(
        i,
        Note::DatabasePlan {
            database: database.to_owned(),
            raw_bytes: artifact.raw_bytes,
            artifact: artifact.key.clone(),
            host: cfg.host.clone(),
            port: cfg.port,
            target: target.to_owned(),
            state,
            tables: !req.tables.is_empty(),
        },
    );
    report.note(i, client_note(&chosen));
    Ok(plain)
}

/// Pure: a dump restores only into a server of its major or newer.
fn check_server_version(
    cfg: &PostgresConfig,
    artifact: &Artifact,
    database: &str,
    chosen: &Chosen,
) -> Result<(), String> {
    let server = &chosen.server;
    let need = dump_major(artifact);
    let have = tools::server_major(server.version_num);
    if have >= need {
        return Ok(());
    }
    Err(format!(
        "backup of `{database}` was taken from PostgreSQL {} but the target server {}:{} runs {}; \
         restoring into an older major version is not supported",
        artifact
            .postgres()
            .map(|p| p.server_version.as_str())
            .unwrap_or("?"),
        cfg.host,
        cfg.port,
        server.version
    ))
}
