//! The per-comune diritti of the civil-status certificates.

use serde::{Deserialize, Serialize};

use super::FEE_EXEMPT_CENTS;
use crate::kinds::CertificateKind;

/// The diritti di segreteria of the civil-status certificates, per comune (the
/// `[certificates.civil_status_diritti]` table of the server's configuration), in euro cents.
/// Civil-status certificates are exempt from bollo (L. 405/1990 art. 7); the diritti they owe are the
/// comune's own decision, so they are configuration. The default is the exempt rate of L. 604/1962
/// Tab. D (0,26 €), the behaviour before this table existed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CivilStatusDiritti {
    /// Certificato di nascita, cents.
    pub nascita: u32,
    /// Certificato di matrimonio, cents.
    pub matrimonio: u32,
    /// Certificato di morte, cents.
    pub morte: u32,
    /// Certificato di unione civile, cents.
    pub unione_civile: u32,
}

impl Default for CivilStatusDiritti {
    fn default() -> Self {
        CivilStatusDiritti {
            nascita: FEE_EXEMPT_CENTS,
            matrimonio: FEE_EXEMPT_CENTS,
            morte: FEE_EXEMPT_CENTS,
            unione_civile: FEE_EXEMPT_CENTS,
        }
    }
}

impl CivilStatusDiritti {
    /// The diritti for a civil-status kind, `None` for the registry kinds.
    pub fn cents(&self, kind: CertificateKind) -> Option<u32> {
        match kind {
            CertificateKind::Nascita => Some(self.nascita),
            CertificateKind::Matrimonio => Some(self.matrimonio),
            CertificateKind::Morte => Some(self.morte),
            CertificateKind::UnioneCivile => Some(self.unione_civile),
            _ => None,
        }
    }
}
