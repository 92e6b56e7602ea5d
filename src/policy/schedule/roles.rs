//! Job roles: which kinds of job one workload runs (`lifeboat run --jobs KIND,...`), and the
//! leader lock it takes for them.
//!
//! Two roles split the keys: **backup** (`backup`, `copy`, `prune`: they need the age
//! *recipients* and the signing key, never the age identity) and **verify** (`verify`: it
//! needs the identity to decrypt). A filter is either kinds of one role or everything; each
//! role elects its own leader under its own lock name (`<lock>-backup`, `<lock>-verify`), so a
//! backup workload and a verify workload each have exactly one leader and never wait for each
//! other.
//!
//! # Guarantees
//! - Parsing is strict: an unknown kind, an empty list, or kinds of both roles are refused
//!   with a message naming the choices (mixing roles under one lock would let a role workload
//!   and a mixed one run the same job at once).
//! - Every filter of one role maps to the same lock suffix, so two workloads of one role can
//!   never both lead; the unfiltered default keeps the unsuffixed lock (upgrades unchanged).
//!
//! # Caveats
//! Do not run an unfiltered `lifeboat run` next to role workloads: it takes the unsuffixed
//! lock and would run backups beside the backup role's leader.

use super::JobKind;

/// The kinds of job one workload runs; [`JobFilter::ALL`] unless `--jobs` narrows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobFilter(u8);

/// The role of a filtered workload, which names its leader lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `backup`, `copy`, `prune`: recipients and the signing key, no identity.
    Backup,
    /// `verify`: the age identity.
    Verify,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Backup => "backup",
            Role::Verify => "verify",
        }
    }

    /// The role a kind of job belongs to.
    pub fn of(kind: JobKind) -> Role {
        match kind {
            JobKind::Backup | JobKind::Copy | JobKind::Prune => Role::Backup,
            JobKind::Verify => Role::Verify,
        }
    }

    /// The leader lock name of this role: `base` + `-backup` / `-verify`.
    pub fn lock_name(self, base: &str) -> String {
        format!("{base}-{}", self.as_str())
    }
}

fn bit(kind: JobKind) -> u8 {
    1 << (kind as u8)
}

impl JobFilter {
    pub const ALL: JobFilter = JobFilter(0b1111);

    /// Parses `backup,copy,prune` or `verify` (comma-separated, any order, repeats allowed).
    pub fn parse(text: &str) -> Result<JobFilter, String> {
        let choices = || {
            JobKind::ALL
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut mask = 0u8;
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let kind = JobKind::parse(word).ok_or_else(|| {
                format!(
                    "unknown job kind `{word}` in --jobs; choose from {}",
                    choices()
                )
            })?;
            mask |= bit(kind);
        }
        if mask == 0 {
            return Err(format!(
                "--jobs names no job kind; choose from {} (e.g. `--jobs backup,copy,prune` or `--jobs verify`)",
                choices()
            ));
        }
        let filter = JobFilter(mask);
        let roles: Vec<Role> = filter.kinds().map(Role::of).collect();
        if roles.iter().any(|r| *r != roles[0]) {
            return Err(
                "--jobs mixes backup-side kinds (backup, copy, prune) with verify: run them as two workloads (`--jobs backup,copy,prune` and `--jobs verify`, each with its own leader lock) or omit --jobs to run everything"
                    .into(),
            );
        }
        Ok(filter)
    }

    pub fn contains(self, kind: JobKind) -> bool {
        self.0 & bit(kind) != 0
    }

    pub fn kinds(self) -> impl Iterator<Item = JobKind> {
        JobKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }

    /// The role whose lock this workload takes; `None` for every job (the unsuffixed lock).
    pub fn role(self) -> Option<Role> {
        if self == JobFilter::ALL {
            return None;
        }
        self.kinds().next().map(Role::of)
    }
}

impl Default for JobFilter {
    fn default() -> JobFilter {
        JobFilter::ALL
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn backup_side_kinds_share_the_backup_role() {
        let f = JobFilter::parse("backup,copy,prune").expect("parse");
        assert!(f.contains(JobKind::Backup) && f.contains(JobKind::Prune));
        assert!(!f.contains(JobKind::Verify));
        assert_eq!(f.role(), Some(Role::Backup));
        assert_eq!(
            JobFilter::parse("copy").expect("copy").role(),
            Some(Role::Backup)
        );
        let v = JobFilter::parse(" verify ").expect("verify");
        assert_eq!(v.role(), Some(Role::Verify));
        assert_eq!(v.kinds().collect::<Vec<_>>(), vec![JobKind::Verify]);
        assert_eq!(Role::Backup.lock_name("lifeboat"), "lifeboat-backup");
        assert_eq!(Role::Verify.lock_name("lifeboat"), "lifeboat-verify");
        assert_eq!(JobFilter::default().role(), None);
    }

    #[test]
    fn bad_lists_are_refused_with_the_choices() {
        let e = JobFilter::parse("backup,verify").expect_err("mixed");
        assert!(e.contains("two workloads"), "{e}");
        let e = JobFilter::parse("backups").expect_err("unknown");
        assert!(e.contains("backup, copy, prune, verify"), "{e}");
        assert!(JobFilter::parse(" , ").is_err());
    }

    proptest! {
        /// Any accepted filter runs kinds of exactly one role, and that role names its lock.
        #[test]
        fn accepted_filters_have_one_role(words in proptest::collection::vec(0usize..4, 1..6)) {
            let text = words.iter().map(|i| JobKind::ALL[*i].as_str()).collect::<Vec<_>>().join(",");
            let has_verify = words.contains(&3);
            let has_backup_side = words.iter().any(|i| *i < 3);
            match JobFilter::parse(&text) {
                Ok(f) => {
                    prop_assert!(!(has_verify && has_backup_side));
                    let role = f.role().expect("a role");
                    prop_assert!(f.kinds().all(|k| Role::of(k) == role));
                    for i in &words {
                        prop_assert!(f.contains(JobKind::ALL[*i]));
                    }
                }
                Err(_) => prop_assert!(has_verify && has_backup_side),
            }
        }
    }
}
