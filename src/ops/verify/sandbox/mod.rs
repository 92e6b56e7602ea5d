//! Where a verification restores: [`local`] (throwaway servers on this machine) or
//! [`kubernetes`] (a scratch namespace with a restore Job).

pub mod kubernetes;
pub mod local;

/// `--sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sandbox {
    #[default]
    Local,
    Kubernetes,
}

impl Sandbox {
    pub fn as_str(self) -> &'static str {
        match self {
            Sandbox::Local => "local",
            Sandbox::Kubernetes => "kubernetes",
        }
    }
}

impl From<crate::config::VerifySandbox> for Sandbox {
    fn from(s: crate::config::VerifySandbox) -> Sandbox {
        match s {
            crate::config::VerifySandbox::Local => Sandbox::Local,
            crate::config::VerifySandbox::Kubernetes => Sandbox::Kubernetes,
        }
    }
}
