//! The PostgreSQL leader: a session-level advisory lock on the catalog database, held by a
//! connection of its own (not the catalog pool's, whose connections come and go). The
//! server releases it when that connection ends, so a dead leader frees it at once; a
//! leader whose connection broke learns it at the next renew and stands down.

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};

use super::{Leader, LeaderError};
use crate::model::SecretString;

/// The advisory lock key: "lifeboat" in ASCII, so it is recognisable in `pg_locks`.
pub const LOCK_KEY: i64 = 0x6c69_6665_626f_6174;

/// The key of a role's lock (`run --jobs`): [`LOCK_KEY`] + 1 for backup, + 2 for verify.
pub fn role_key(role: Option<crate::policy::schedule::Role>) -> i64 {
    use crate::policy::schedule::Role;
    match role {
        None => LOCK_KEY,
        Some(Role::Backup) => LOCK_KEY + 1,
        Some(Role::Verify) => LOCK_KEY + 2,
    }
}

pub struct PgAdvisory {
    url: SecretString,
    conn: Option<PgConnection>,
    held: bool,
    key: i64,
}

impl PgAdvisory {
    pub fn new(url: SecretString) -> PgAdvisory {
        PgAdvisory::with_key(url, LOCK_KEY)
    }

    /// The lock under another key (a role's: [`role_key`]).
    pub fn with_key(url: SecretString, key: i64) -> PgAdvisory {
        PgAdvisory {
            url,
            conn: None,
            held: false,
            key,
        }
    }

    fn err(&self, e: sqlx::Error) -> LeaderError {
        let password = url::Url::parse(self.url.expose())
            .ok()
            .and_then(|u| u.password().map(str::to_string))
            .unwrap_or_default();
        LeaderError::Postgres(crate::model::redact::scrub(&e.to_string(), &[&password]))
    }
}

#[async_trait]
impl Leader for PgAdvisory {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn try_acquire(&mut self) -> Result<bool, LeaderError> {
        if self.held {
            return Ok(true);
        }
        if self.conn.is_none() {
            let conn = PgConnection::connect(self.url.expose())
                .await
                .map_err(|e| self.err(e))?;
            self.conn = Some(conn);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        let got: Result<bool, sqlx::Error> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(self.key)
            .fetch_one(&mut *conn)
            .await;
        match got {
            Ok(got) => {
                self.held = got;
                Ok(got)
            }
            Err(e) => {
                self.conn = None;
                Err(self.err(e))
            }
        }
    }

    async fn renew(&mut self) -> Result<bool, LeaderError> {
        let Some(conn) = self.conn.as_mut() else {
            self.held = false;
            return Ok(false);
        };
        // The lock lives as long as this session: check the session still holds it.
        let held: Result<bool, sqlx::Error> = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
             AND pid = pg_backend_pid() AND granted \
             AND ((classid::bigint << 32) | objid::bigint) = $1)",
        )
        .bind(self.key)
        .fetch_one(&mut *conn)
        .await;
        match held {
            Ok(h) => {
                self.held = h;
                Ok(h)
            }
            Err(e) => {
                self.held = false;
                self.conn = None;
                Err(self.err(e))
            }
        }
    }

    async fn release(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if self.held {
                let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(self.key)
                    .execute(&mut conn)
                    .await;
            }
            let _ = conn.close().await;
        }
        self.held = false;
    }
}
