//! Any program that writes a dump to stdout (`kind: command`): `mongodump --archive`, a
//! Hyperledger Fabric `peer snapshot`, CouchDB `_all_docs`. Restored by the source's
//! `restore_argv`, which reads the dump on stdin (`--target X` is passed to it as
//! `$LIFEBOAT_TARGET`). A non-zero exit fails the snapshot; stderr is kept, with the values of
//! the configured `env` scrubbed out, in the error or (on success) in the manifest facts.

pub mod scratch;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use async_trait::async_trait;

use super::process::Process;
use super::{Dump, Facts, Sink, Source, SourceError, Target};
use crate::model::SecretString;
use serde::Deserialize;

/// Keep at most this much of a successful command's stderr in the manifest.
const STDERR_FACT_LIMIT: usize = 4096;

fn command(
    argv: &[String],
    env: &BTreeMap<String, SecretString>,
) -> Option<(Command, Vec<String>)> {
    let (program, args) = argv.split_first()?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v.expose())));
    let secrets = env.values().map(|v| v.expose().to_string()).collect();
    Some((cmd, secrets))
}

pub struct CommandSource {
    name: String,
    argv: Vec<String>,
    env: BTreeMap<String, SecretString>,
}

impl CommandSource {
    pub fn new(name: &str, spec: &CommandSpec) -> Self {
        CommandSource {
            name: name.to_string(),
            argv: spec.argv.clone(),
            env: spec.env.clone(),
        }
    }
}

#[async_trait]
impl Source for CommandSource {
    fn kind(&self) -> &'static str {
        "command"
    }

    async fn preflight(&self) -> Result<Facts, SourceError> {
        let mut facts = Facts::new();
        facts.insert(
            "program".into(),
            self.argv.first().cloned().unwrap_or_default().into(),
        );
        Ok(facts)
    }

    async fn dump(&self) -> Result<Dump, SourceError> {
        let (mut cmd, secrets) =
            command(&self.argv, &self.env).ok_or_else(|| SourceError::Unreachable {
                source_name: self.name.clone(),
                reason: "argv is empty".into(),
            })?;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let mut proc = Process::spawn(cmd, secrets)?;
        let stdout = proc.take_stdout()?;
        let stop = proc.stopper();
        Ok(Dump {
            reader: Box::new(stdout),
            finish: Box::new(move || {
                let stderr = proc.wait()?;
                let mut facts = Facts::new();
                if !stderr.is_empty() {
                    let kept: String = stderr.chars().take(STDERR_FACT_LIMIT).collect();
                    facts.insert("stderr".into(), kept.into());
                }
                Ok(facts)
            }),
            stop: Some(stop),
        })
    }
}

/// Restores by running the source's `restore_argv` with the dump on stdin. Unless `stream`,
/// the dump is staged first in an unlinked temporary file (mode 0600, in `$TMPDIR`), and
/// `restore_argv` starts only once the whole snapshot was authenticated and matched its
/// SHA-256: a corrupt or forged snapshot never reaches the live target.
pub struct CommandTarget {
    argv: Vec<String>,
    env: BTreeMap<String, SecretString>,
    stream: bool,
}

impl CommandTarget {
    pub fn new(
        spec: &CommandSpec,
        target: Option<&str>,
        stream: bool,
    ) -> Result<Self, SourceError> {
        let argv = spec
            .restore_argv
            .clone()
            .ok_or_else(|| SourceError::Target {
                target: target.map(crate::model::redact::url).unwrap_or_default(),
                reason: "the source has no `restore_argv`; add one to the config, or use --to-file"
                    .into(),
            })?;
        let mut env = spec.env.clone();
        if let Some(t) = target {
            env.insert("LIFEBOAT_TARGET".into(), SecretString::new(t));
        }
        Ok(CommandTarget { argv, env, stream })
    }

    fn command(&self) -> Result<(Command, Vec<String>), SourceError> {
        command(&self.argv, &self.env).ok_or_else(|| SourceError::Target {
            target: "restore_argv".into(),
            reason: "restore_argv is empty".into(),
        })
    }
}

/// The error of the staging file.
fn staging(e: std::io::Error) -> SourceError {
    SourceError::Target {
        target: "restore_argv".into(),
        reason: format!(
            "cannot stage the dump in a temporary file ({e}); free space in $TMPDIR, point TMPDIR elsewhere, or pass --stream"
        ),
    }
}

#[async_trait]
impl Target for CommandTarget {
    async fn preflight(&self) -> Result<(), SourceError> {
        Ok(())
    }

    fn restore(&self) -> Result<Sink, SourceError> {
        let (mut cmd, secrets) = self.command()?;
        if !self.stream {
            // tempfile creates it 0600 and unlinks it: only this process can read it.
            let staged = tempfile::tempfile().map_err(staging)?;
            let mut reader = staged.try_clone().map_err(staging)?;
            return Ok(Sink {
                // Unbuffered: a failed write (a full disk) fails the restore before `finish`.
                writer: Box::new(staged),
                finish: Box::new(move || {
                    use std::io::Seek;
                    // The writer was flushed and dropped before `finish` (the pipeline
                    // only calls it after the checksum matched).
                    reader.rewind().map_err(staging)?;
                    cmd.stdin(Stdio::from(reader)).stdout(Stdio::null());
                    let proc = Process::spawn(cmd, secrets)?;
                    proc.wait().map(|_| ()).map_err(SourceError::from)
                }),
            });
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::null());
        let mut proc = Process::spawn(cmd, secrets)?;
        let stdin = proc.take_stdin()?;
        Ok(Sink {
            writer: Box::new(stdin),
            finish: Box::new(move || proc.wait().map(|_| ()).map_err(SourceError::from)),
        })
    }
}

/// A program that writes the dump to stdout, and one that restores it from stdin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    /// Environment for both commands; values are secrets (scrubbed from kept stderr).
    #[serde(default)]
    pub env: BTreeMap<String, SecretString>,
    pub restore_argv: Option<Vec<String>>,
}

/// Any program that writes a dump to stdout (and one that reads it back).
pub struct CommandKind;
pub static KIND: CommandKind = CommandKind;

impl super::Spec for CommandSpec {
    fn kind(&self) -> &'static dyn super::Kind {
        &KIND
    }
    fn validate(&self) -> Result<(), super::SpecError> {
        if self.argv.is_empty() {
            return Err(super::SpecError::new(
                "argv",
                "empty; write the dump command, e.g. [\"mongodump\", \"--archive\"]",
            ));
        }
        if self.restore_argv.as_ref().is_some_and(Vec::is_empty) {
            return Err(super::SpecError::new(
                "restore_argv",
                "empty; write the restore command or leave it out",
            ));
        }
        Ok(())
    }
    fn source(
        &self,
        name: &str,
        _kube: std::sync::Arc<dyn crate::kube::KubeApi>,
    ) -> Box<dyn Source> {
        Box::new(CommandSource::new(name, self))
    }
}

#[async_trait]
impl super::Kind for CommandKind {
    async fn scratch(
        &self,
        dir: &std::path::Path,
        _opts: &super::scratch::ScratchOptions,
    ) -> Result<Option<Box<dyn super::scratch::Scratch>>, super::scratch::ScratchError> {
        Ok(Some(Box::new(scratch::CommandScratch::new(dir)?)))
    }
    fn name(&self) -> &'static str {
        "command"
    }
    fn target(
        &self,
        to: &super::RestoreTo,
        opts: &super::RestoreOptions,
        source: Option<&super::SourceSpec>,
        _kube: std::sync::Arc<dyn crate::kube::KubeApi>,
    ) -> Result<Box<dyn Target>, SourceError> {
        match (to, source) {
            (super::RestoreTo::Url(target), Some(super::SourceSpec::Command(spec))) => Ok(
                Box::new(CommandTarget::new(spec, Some(target), opts.stream)?),
            ),
            (super::RestoreTo::Url(_), _) => Err(super::unsupported(
                to,
                "command snapshots restore through their source's `restore_argv`, and this source is no longer a command source in the config; use --to-file",
            )),
            _ => Err(super::unsupported(
                to,
                "command snapshots restore with --target X (passed to restore_argv as $LIFEBOAT_TARGET) or --to-file",
            )),
        }
    }
}
