//! Directory / PVC state (`kind: files`): a tar stream of a directory tree (regular files,
//! directories, symlinks, modes, mtimes), with optional `pre`/`post` hook commands (pause a
//! Fabric peer, `redis-cli BGREWRITEAOF`, ...). The `post` hook runs whatever happens once
//! `pre` has run: on success, on failure, and when the backup is interrupted.
//!
//! Restore (`--to-dir DIR`) unpacks into a staging directory beside DIR and renames it into
//! place at the end, so an interrupted restore never leaves a half-filled DIR. Entries that
//! would land outside the target (`..`, absolute paths, writing through a symlink), hard
//! links and device files are refused.
//!
//! The tree digest ([`TreeFacts`]) — file count, total bytes and a SHA-256 over every entry's
//! path, type, mode, size and content (or link target) — is recorded at backup time and can
//! be recomputed on any restored directory to prove it equal.

pub mod scratch;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::process::Process;
use super::{Dump, Facts, Sink, Source, SourceError, Target};

/// What a directory tree holds, in a form that can be compared after a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeFacts {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub tree_sha256: String,
}

impl TreeFacts {
    pub fn into_facts(self) -> Facts {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => Facts::new(),
        }
    }
}

#[derive(Default)]
struct TreeDigest {
    facts: TreeFacts,
    hasher: Sha256,
}

impl TreeDigest {
    fn add(&mut self, rel: &Path, kind: &str, mode: u32, size: u64, content: &str) {
        match kind {
            "file" => {
                self.facts.files += 1;
                self.facts.bytes += size;
            }
            "dir" => self.facts.dirs += 1,
            _ => self.facts.symlinks += 1,
        }
        self.hasher.update(format!(
            "{}\t{kind}\t{:o}\t{size}\t{content}\n",
            rel.display(),
            mode & 0o7777
        ));
    }

    fn finish(self) -> TreeFacts {
        TreeFacts {
            tree_sha256: hex::encode(self.hasher.finalize()),
            ..self.facts
        }
    }
}

/// Every entry below `root`, depth first, sorted by name, as (relative path, metadata).
/// Sockets, FIFOs and devices are skipped (they cannot be backed up as data).
fn walk(
    root: &Path,
    mut visit: impl FnMut(&Path, &Path, &fs::Metadata) -> io::Result<()>,
) -> io::Result<()> {
    fn go(
        root: &Path,
        dir: &Path,
        visit: &mut dyn FnMut(&Path, &Path, &fs::Metadata) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let meta = fs::symlink_metadata(&path)?;
            let ft = meta.file_type();
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            if ft.is_dir() {
                visit(&rel, &path, &meta)?;
                go(root, &path, visit)?;
            } else if ft.is_file() || ft.is_symlink() {
                visit(&rel, &path, &meta)?;
            } else {
                tracing::warn!(path = %path.display(), "skipping a socket, FIFO or device file");
            }
        }
        Ok(())
    }
    go(root, root, &mut visit)
}

/// The tree digest of a directory on disk (e.g. a restored one).
pub fn tree_facts(root: &Path) -> io::Result<TreeFacts> {
    let mut digest = TreeDigest::default();
    walk(root, |rel, path, meta| {
        let ft = meta.file_type();
        if ft.is_dir() {
            digest.add(rel, "dir", meta.mode(), 0, "");
        } else if ft.is_symlink() {
            let target = fs::read_link(path)?;
            digest.add(rel, "symlink", 0o777, 0, &target.to_string_lossy());
        } else {
            let mut hasher = Sha256::new();
            let n = io::copy(&mut fs::File::open(path)?, &mut hasher)?;
            digest.add(rel, "file", meta.mode(), n, &hex::encode(hasher.finalize()));
        }
        Ok(())
    })?;
    Ok(digest.finish())
}

/// Hashes what is read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Writes `root` as a tar stream into `out`, returning its tree digest.
fn archive(root: &Path, out: impl io::Write) -> io::Result<TreeFacts> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    builder.follow_symlinks(false);
    let mut digest = TreeDigest::default();
    walk(root, |rel, path, meta| {
        let ft = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
        if ft.is_dir() {
            header.set_size(0);
            builder.append_data(&mut header, rel, io::empty())?;
            digest.add(rel, "dir", meta.mode(), 0, "");
        } else if ft.is_symlink() {
            let target = fs::read_link(path)?;
            header.set_size(0);
            builder.append_link(&mut header, rel, &target)?;
            digest.add(rel, "symlink", 0o777, 0, &target.to_string_lossy());
        } else {
            let size = meta.len();
            let file = fs::File::open(path)?;
            let mut reader = HashingReader {
                inner: file.take(size),
                hasher: Sha256::new(),
                count: 0,
            };
            builder.append_data(&mut header, rel, &mut reader)?;
            if reader.count != size {
                return Err(io::Error::other(format!(
                    "{} changed size while it was archived ({size} → {} bytes); quiesce the writer with a `pre` hook",
                    path.display(),
                    reader.count
                )));
            }
            let sum = hex::encode(std::mem::take(&mut reader.hasher).finalize());
            digest.add(rel, "file", meta.mode(), size, &sum);
        }
        Ok(())
    })?;
    builder.into_inner()?;
    Ok(digest.finish())
}

/// A hook command; `post` hooks run from [`Drop`] if the run ends without reaching them.
struct Hook {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    what: &'static str,
    source: String,
}

impl Hook {
    fn run(&self) -> Result<String, SourceError> {
        let (program, args) = self.argv.split_first().ok_or_else(|| SourceError::Hook {
            source_name: self.source.clone(),
            hook: self.what,
            reason: "empty command".into(),
        })?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        Process::spawn(cmd, Vec::new())
            .and_then(Process::wait)
            .map_err(|e| SourceError::Hook {
                source_name: self.source.clone(),
                hook: self.what,
                reason: e.to_string(),
            })
    }
}

/// Runs the `post` hook exactly once: explicitly at the end, or when dropped.
struct PostHook(Option<Hook>);

impl PostHook {
    fn run(mut self) -> Result<(), SourceError> {
        match self.0.take() {
            Some(h) => h.run().map(|_| ()),
            None => Ok(()),
        }
    }
}

impl Drop for PostHook {
    fn drop(&mut self) {
        if let Some(h) = self.0.take()
            && let Err(e) = h.run()
        {
            tracing::error!(cause = %e, "post hook failed after an interrupted backup; check the service");
        }
    }
}

pub struct Files {
    name: String,
    path: PathBuf,
    pre: Option<Vec<String>>,
    post: Option<Vec<String>>,
}

impl Files {
    pub fn new(name: &str, spec: &FilesSpec, path: &Path) -> Self {
        Files {
            name: name.to_string(),
            path: path.to_path_buf(),
            pre: spec.pre.clone(),
            post: spec.post.clone(),
        }
    }

    fn hook(&self, argv: &Option<Vec<String>>, what: &'static str) -> Option<Hook> {
        argv.as_ref().map(|argv| Hook {
            argv: argv.clone(),
            env: vec![
                ("LIFEBOAT_SOURCE".into(), self.name.clone()),
                ("LIFEBOAT_PATH".into(), self.path.display().to_string()),
            ],
            what,
            source: self.name.clone(),
        })
    }
}

#[async_trait]
impl Source for Files {
    fn kind(&self) -> &'static str {
        "files"
    }

    async fn preflight(&self) -> Result<Facts, SourceError> {
        match fs::metadata(&self.path) {
            Ok(m) if m.is_dir() => Ok(Facts::new()),
            Ok(_) => Err(self.unreachable("it is not a directory")),
            Err(e) => Err(self.unreachable(&e.to_string())),
        }
    }

    async fn dump(&self) -> Result<Dump, SourceError> {
        if let Some(pre) = self.hook(&self.pre, "pre") {
            tokio::task::spawn_blocking(move || pre.run())
                .await
                .map_err(|e| self.unreachable(&e.to_string()))??;
        }
        // From here on the post hook must run, whatever happens.
        let post = PostHook(self.hook(&self.post, "post"));
        let (reader, writer) = io::pipe().map_err(|e| self.unreachable(&e.to_string()))?;
        let root = self.path.clone();
        let archiver = std::thread::spawn(move || archive(&root, writer));
        let name = self.name.clone();
        Ok(Dump {
            reader: Box::new(reader),
            finish: Box::new(move || {
                let archived = archiver
                    .join()
                    .map_err(|_| io::Error::other("the archiver thread panicked"))
                    .and_then(|r| r);
                let hooked = post.run();
                let facts = archived.map_err(|e| SourceError::Unreachable {
                    source_name: name,
                    reason: format!("archiving failed: {e}"),
                })?;
                hooked?;
                Ok(facts.into_facts())
            }),
            stop: None,
        })
    }
}

impl Files {
    fn unreachable(&self, reason: &str) -> SourceError {
        SourceError::Unreachable {
            source_name: self.name.clone(),
            reason: format!("{}: {reason}", self.path.display()),
        }
    }
}

/// `--to-dir DIR` for files snapshots.
pub struct DirTarget {
    dir: PathBuf,
    keep_special_modes: bool,
}

impl DirTarget {
    pub fn new(dir: &Path, keep_special_modes: bool) -> Self {
        DirTarget {
            dir: dir.to_path_buf(),
            keep_special_modes,
        }
    }

    fn fail(&self, reason: String) -> SourceError {
        SourceError::Target {
            target: format!("directory {}", self.dir.display()),
            reason,
        }
    }
}

/// Checks `dir` may receive a restore: it does not exist, or is an empty directory.
pub fn check_empty_dir(dir: &Path) -> Result<(), String> {
    match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            Err("it exists and is not a directory; choose a new path".into())
        }
        Err(e) => Err(format!("cannot read it: {e}")),
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(
                "it is not empty; restore into a new or empty directory (nothing is overwritten)"
                    .into(),
            ),
        },
    }
}

/// Moves a fully restored `staged` directory (a sibling of `dir`) to `dir`, which must still
/// be missing or empty: checked again, as something may have written there meanwhile;
/// rename(2) then replaces an empty directory in one step.
pub fn move_into_place(staged: &Path, dir: &Path) -> Result<(), String> {
    check_empty_dir(dir)?;
    fs::rename(staged, dir).map_err(|e| {
        format!(
            "cannot move the restored directory into place: {e}; it must still be missing or empty"
        )
    })
}

/// A staging directory removed unless it was moved into place.
struct Staging {
    path: PathBuf,
    done: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[async_trait]
impl Target for DirTarget {
    async fn preflight(&self) -> Result<(), SourceError> {
        check_empty_dir(&self.dir).map_err(|r| self.fail(r))
    }

    fn restore(&self) -> Result<Sink, SourceError> {
        let parent = match self.dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent)
            .map_err(|e| self.fail(format!("cannot create its parent: {e}")))?;
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "restore".into());
        let staging = parent.join(format!(
            ".{name}.lifeboat-partial-{:08x}",
            rand::random::<u32>()
        ));
        fs::create_dir(&staging)
            .map_err(|e| self.fail(format!("cannot create {}: {e}", staging.display())))?;
        let mut guard = Staging {
            path: staging.clone(),
            done: false,
        };
        let (reader, writer) = io::pipe().map_err(|e| self.fail(e.to_string()))?;
        let keep = self.keep_special_modes;
        let extractor = std::thread::spawn(move || unpack(reader, &staging, keep));
        let dir = self.dir.clone();
        Ok(Sink {
            writer: Box::new(writer),
            finish: Box::new(move || {
                let fail = |reason: String| SourceError::Target {
                    target: format!("directory {}", dir.display()),
                    reason,
                };
                extractor
                    .join()
                    .map_err(|_| fail("the extractor thread panicked".into()))?
                    .map_err(|e| fail(e.to_string()))?;
                move_into_place(&guard.path, &dir).map_err(fail)?;
                guard.done = true;
                drop(guard);
                Ok(())
            }),
        })
    }
}

/// Unpacks a tar stream into `dst`, refusing anything that would land outside it.
///
/// Modes: setuid, setgid and sticky bits are dropped unless `keep_special_modes` (the
/// restore does not restore ownership, so a setuid file would run as whoever restored it).
/// Directories are created writable by their owner and get their recorded mode last, so a
/// read-only directory restores without root.
pub fn unpack(reader: impl Read, dst: &Path, keep_special_modes: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let refuse = |path: &Path, why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("archive entry `{}` refused: {why}", path.display()),
        )
    };
    let mut archive = tar::Archive::new(reader);
    let mut dir_times: BTreeMap<PathBuf, (filetime::FileTime, u32)> = BTreeMap::new();
    let mode_mask = if keep_special_modes { 0o7777 } else { 0o777 };
    for entry in archive.entries()? {
        let mut entry = entry?;
        let rel = entry.path()?.into_owned();
        if rel.as_os_str().is_empty()
            || rel
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(refuse(&rel, "it is absolute or contains `..`"));
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            return Err(refuse(
                &rel,
                "only regular files, directories and symlinks are restored",
            ));
        }
        // Every ancestor inside dst must be a real directory, never a symlink.
        let mut cur = dst.to_path_buf();
        let parents: Vec<_> = rel
            .parent()
            .map(|p| p.components().collect())
            .unwrap_or_default();
        for c in parents {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(refuse(
                        &rel,
                        "it would be written through a symlink or file",
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&cur)?,
                Err(e) => return Err(e),
            }
        }
        let dest = dst.join(&rel);
        if let Ok(m) = fs::symlink_metadata(&dest)
            && !(m.is_dir() && kind.is_dir())
        {
            return Err(refuse(&rel, "it appears twice in the archive"));
        }
        // `tar` keeps only the 0o777 bits unless asked to preserve the rest.
        entry.set_preserve_permissions(keep_special_modes);
        entry.set_preserve_mtime(true);
        entry.unpack(&dest)?;
        if kind.is_dir() {
            let mtime = entry.header().mtime().unwrap_or(0);
            let mode = entry.header().mode().unwrap_or(0o755) & mode_mask;
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode | 0o700))?;
            dir_times.insert(
                dest,
                (filetime::FileTime::from_unix_time(mtime as i64, 0), mode),
            );
        }
    }
    // Directory modes and mtimes last, deepest first: creating children changed the
    // mtimes, and a read-only directory would have refused them.
    for (dir, (t, mode)) in dir_times.iter().rev() {
        fs::set_permissions(dir, fs::Permissions::from_mode(*mode))?;
        filetime::set_file_mtime(dir, *t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn sample(root: &Path) {
        fs::create_dir_all(root.join("ledger/chains")).unwrap();
        fs::write(
            root.join("ledger/chains/blockfile_000000"),
            vec![7u8; 100_000],
        )
        .unwrap();
        fs::write(root.join("config.yaml"), "peer: ünïcødé\n").unwrap();
        fs::set_permissions(root.join("config.yaml"), fs::Permissions::from_mode(0o640)).unwrap();
        symlink("ledger/chains", root.join("current")).unwrap();
        symlink("/etc/hostname", root.join("absolute-link")).unwrap();
        filetime::set_file_mtime(
            root.join("config.yaml"),
            filetime::FileTime::from_unix_time(1_600_000_000, 0),
        )
        .unwrap();
    }

    #[test]
    fn archive_and_unpack_round_trip() {
        let src = tempfile::tempdir().unwrap();
        sample(src.path());
        let mut tarball = Vec::new();
        let facts = archive(src.path(), &mut tarball).unwrap();
        assert_eq!((facts.files, facts.dirs, facts.symlinks), (2, 2, 2));
        let dst = tempfile::tempdir().unwrap();
        unpack(&tarball[..], dst.path(), true).unwrap();
        assert_eq!(tree_facts(dst.path()).unwrap(), facts);
        let m = fs::metadata(dst.path().join("config.yaml")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o640);
        assert_eq!(m.mtime(), 1_600_000_000);
        assert_eq!(
            fs::read_link(dst.path().join("current")).unwrap(),
            Path::new("ledger/chains")
        );
    }

    fn raw_entry(
        builder: &mut tar::Builder<&mut Vec<u8>>,
        path: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        data: &[u8],
    ) {
        let mut h = tar::Header::new_old();
        // Bypass the builder's own path checks: write the name bytes directly.
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        builder.append(&h, data).unwrap();
    }

    fn evil(entries: &[(&str, tar::EntryType, Option<&str>)]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut b = tar::Builder::new(&mut out);
            for (p, k, l) in entries {
                raw_entry(&mut b, p, *k, *l, if k.is_file() { b"pwned" } else { b"" });
            }
            b.finish().unwrap();
        }
        out
    }

    #[test]
    fn escaping_entries_are_refused() {
        use tar::EntryType::*;
        let cases: Vec<Vec<(&str, tar::EntryType, Option<&str>)>> = vec![
            vec![("../escape", Regular, None)],
            vec![("a/../../escape", Regular, None)],
            vec![("/tmp/lifeboat-absolute-escape", Regular, None)],
            vec![
                ("link", Symlink, Some("/tmp")),
                ("link/escape", Regular, None),
            ],
            vec![
                ("dir", Directory, None),
                ("dir", Symlink, Some("/")),
                ("dir/escape", Regular, None),
            ],
            vec![("hard", Link, Some("/etc/passwd"))],
            vec![("dev", Char, None)],
        ];
        for case in cases {
            let outside = tempfile::tempdir().unwrap();
            let dst = outside.path().join("dst");
            fs::create_dir(&dst).unwrap();
            let err = unpack(&evil(&case)[..], &dst, false)
                .expect_err(&format!("{case:?} must be refused"));
            assert!(err.to_string().contains("refused"), "{case:?}: {err}");
            assert!(!outside.path().join("escape").exists());
        }
        assert!(!Path::new("/tmp/lifeboat-absolute-escape").exists());
    }
}

/// A directory tree (`path`), or on Kubernetes a CSI VolumeSnapshot of a PVC (`pvc`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSpec {
    pub path: Option<PathBuf>,
    /// Command run before the archive starts (e.g. pause a writer).
    pub pre: Option<Vec<String>>,
    /// Command run after the archive ends, whatever happened, once `pre` has run.
    pub post: Option<Vec<String>>,
    /// Kubernetes: the PVC to snapshot with a CSI VolumeSnapshot instead of archiving `path`.
    pub pvc: Option<String>,
    pub namespace: Option<String>,
    pub volume_snapshot_class: Option<String>,
}

/// A directory tree, as a tar archive.
pub struct FilesKind;
pub static KIND: FilesKind = FilesKind;

impl super::Spec for FilesSpec {
    fn kind(&self) -> &'static dyn super::Kind {
        match self.pvc {
            Some(_) => &super::volume_snapshot::KIND,
            None => &KIND,
        }
    }
    fn validate(&self) -> Result<(), super::SpecError> {
        match (&self.path, &self.pvc) {
            (Some(_), None) => Ok(()),
            (None, Some(_)) if self.volume_snapshot_class.is_none() => Err(super::SpecError::new(
                "volume_snapshot_class",
                "a `pvc` source needs `volume_snapshot_class` (the CSI VolumeSnapshotClass to use)",
            )),
            (None, Some(_)) => Ok(()),
            _ => Err(super::SpecError::new(
                "path",
                "set exactly one of `path` (a directory to archive) or `pvc` (a PVC to snapshot on Kubernetes)",
            )),
        }
    }
    fn source(
        &self,
        name: &str,
        kube: std::sync::Arc<dyn crate::kube::KubeApi>,
    ) -> Box<dyn Source> {
        match (&self.path, &self.pvc) {
            (Some(path), _) => Box::new(Files::new(name, self, path)),
            // `validate` guarantees exactly one of path / pvc.
            (None, pvc) => Box::new(super::volume_snapshot::VolumeSnapshotSource::new(
                name,
                self,
                pvc.as_deref().unwrap_or_default(),
                kube,
            )),
        }
    }
}

#[async_trait]
impl super::Kind for FilesKind {
    async fn scratch(
        &self,
        dir: &Path,
        _opts: &super::scratch::ScratchOptions,
    ) -> Result<Option<Box<dyn super::scratch::Scratch>>, super::scratch::ScratchError> {
        Ok(Some(Box::new(scratch::FilesScratch::new(dir))))
    }
    fn name(&self) -> &'static str {
        "files"
    }
    fn target(
        &self,
        to: &super::RestoreTo,
        opts: &super::RestoreOptions,
        _source: Option<&super::SourceSpec>,
        _kube: std::sync::Arc<dyn crate::kube::KubeApi>,
    ) -> Result<Box<dyn Target>, SourceError> {
        match to {
            super::RestoreTo::Dir(dir) => {
                Ok(Box::new(DirTarget::new(dir, opts.keep_special_modes)))
            }
            _ => Err(super::unsupported(
                to,
                "files snapshots restore into --to-dir DIR",
            )),
        }
    }
}
