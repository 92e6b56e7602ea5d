//! What every operation starts from: the loaded config, the opened catalog and the stores.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::catalog::{Catalog, CatalogError};
use crate::config::Config;
use crate::kube::KubeApi;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct App {
    pub config: Config,
    pub catalog: Catalog,
    pub stores: BTreeMap<String, Store>,
    /// The Kubernetes API (connected on first use); tests put the contract fake here.
    pub kube: Arc<dyn KubeApi>,
}

impl App {
    /// Opens the catalog (applying migrations) and every configured store (no I/O for
    /// remote stores until they are used).
    pub async fn open(config: Config) -> Result<App, AppError> {
        let stores = config
            .stores
            .iter()
            .map(|(name, cfg)| Store::open(name, cfg).map(|s| (name.clone(), s)))
            .collect::<Result<_, _>>()?;
        let catalog = Catalog::open(&config.catalog).await?;
        Ok(App {
            config,
            catalog,
            stores,
            kube: Arc::new(crate::kube::Live::default()),
        })
    }
}
