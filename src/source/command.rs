//! Any program that writes a dump to stdout (`kind: command`): `mongodump --archive`, a
//! Hyperledger Fabric `peer snapshot`, CouchDB `_all_docs`. Restored by the source's
//! `restore_argv`, which reads the dump on stdin (`--target X` is passed to it as
//! `$LIFEBOAT_TARGET`). A non-zero exit fails the snapshot; stderr is kept, with the values of
//! the configured `env` scrubbed out, in the error or (on success) in the manifest facts.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use async_trait::async_trait;

use super::process::Process;
use super::{Dump, Facts, Sink, Source, SourceError, Target};
use crate::config::{CommandSpec, SecretString};

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

/// Restores by running the source's `restore_argv` with the dump on stdin.
pub struct CommandTarget {
    argv: Vec<String>,
    env: BTreeMap<String, SecretString>,
}

impl CommandTarget {
    pub fn new(spec: &CommandSpec, target: Option<&str>) -> Result<Self, SourceError> {
        let argv = spec
            .restore_argv
            .clone()
            .ok_or_else(|| SourceError::Target {
                target: target.map(crate::redact::url).unwrap_or_default(),
                reason: "the source has no `restore_argv`; add one to the config, or use --to-file"
                    .into(),
            })?;
        let mut env = spec.env.clone();
        if let Some(t) = target {
            env.insert("LIFEBOAT_TARGET".into(), SecretString::new(t));
        }
        Ok(CommandTarget { argv, env })
    }
}

#[async_trait]
impl Target for CommandTarget {
    async fn preflight(&self) -> Result<(), SourceError> {
        Ok(())
    }

    fn restore(&self) -> Result<Sink, SourceError> {
        let (mut cmd, secrets) =
            command(&self.argv, &self.env).ok_or_else(|| SourceError::Target {
                target: "restore_argv".into(),
                reason: "restore_argv is empty".into(),
            })?;
        cmd.stdin(Stdio::piped()).stdout(Stdio::null());
        let mut proc = Process::spawn(cmd, secrets)?;
        let stdin = proc.take_stdin()?;
        Ok(Sink {
            writer: Box::new(stdin),
            finish: Box::new(move || proc.wait().map(|_| ()).map_err(SourceError::from)),
        })
    }
}
