//! [`Ctx`]: what every operation starts from: the loaded config, the opened catalog and
//! stores, the Kubernetes API, the clock, the process-wide cancellation and progress.
//!
//! Tests replace `kube` with the contract fake and `clock` with a
//! [`ManualClock`](crate::model::ManualClock).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::catalog::{Catalog, CatalogError};
use crate::config::Config;
use crate::kube::KubeApi;
use crate::model::Clock;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CtxError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] crate::pipeline::crypto::CryptoError),
}

impl CtxError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        match self {
            CtxError::Catalog(e) => e.kind(),
            CtxError::Store(e) => e.kind(),
            CtxError::Crypto(e) => e.kind(),
        }
    }
}

pub struct Ctx {
    pub config: Config,
    pub catalog: Catalog,
    pub stores: BTreeMap<String, Store>,
    /// The Kubernetes API (connected on first use); tests put the contract fake here.
    pub kube: Arc<dyn KubeApi>,
    /// Every "now" of an operation comes from here.
    pub clock: Arc<dyn Clock>,
    /// Cancelled on SIGINT/SIGTERM: every operation started from this context stops.
    pub cancel: tokio_util::sync::CancellationToken,
    /// Where long operations report progress (hidden unless the CLI draws it).
    pub progress: indicatif::ProgressBar,
    /// Which manifests are acted on (from `encryption`; `--allow-unsigned` relaxes it).
    pub trust: crate::ops::manifest::Trust,
}

impl Ctx {
    /// Opens the catalog (applying migrations) and every configured store (no I/O for
    /// remote stores until they are used).
    pub async fn open(config: Config) -> Result<Ctx, CtxError> {
        let stores = config
            .stores
            .iter()
            .map(|(name, cfg)| Store::open(name, cfg).map(|s| (name.clone(), s)))
            .collect::<Result<_, _>>()?;
        let trust = crate::ops::manifest::Trust::from_config(&config.encryption)?;
        let catalog = Catalog::open(&config.catalog).await?;
        Ok(Ctx {
            config,
            catalog,
            stores,
            kube: Arc::new(crate::kube::Live::default()),
            clock: crate::model::clock::system(),
            cancel: tokio_util::sync::CancellationToken::new(),
            progress: indicatif::ProgressBar::hidden(),
            trust,
        })
    }

    /// The current time, from [`Ctx::clock`].
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}
