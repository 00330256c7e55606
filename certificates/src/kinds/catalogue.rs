//! The catalogue of kinds: codes, titles, legal bases and the rules that depend on the kind alone.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::CertError;
use crate::wording;

/// Every kind of certificate this crate issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateKind {
    /// Certificato di residenza.
    Residenza,
    /// Residenza alla data.
    ResidenzaAllaData,
    /// Stato di famiglia.
    StatoFamiglia,
    /// Stato di famiglia alla data.
    StatoFamigliaAllaData,
    /// Stato di famiglia alla data del decesso.
    StatoFamigliaDecesso,
    /// Stato di famiglia con rapporti di parentela (the relationship to the intestatario printed).
    StatoFamigliaParentela,
    /// Cittadinanza.
    Cittadinanza,
    /// Stato libero.
    StatoLibero,
    /// Esistenza in vita.
    EsistenzaInVita,
    /// Certificato cumulativo di famiglia (residence, citizenship and family).
    CumulativoFamiglia,
    /// Certificato contestuale (the parts the requester chooses).
    Contestuale,
    /// Residenza con provenienza (emigrazione).
    ResidenzaProvenienza,
    /// Estremi della carta d'identità.
    EstremiCartaIdentita,
    /// Residenza AIRE: registration in the Anagrafe degli italiani residenti all'estero.
    ResidenzaAire,
    /// Stato civile (the current marital status, from the registry).
    StatoCivile,
    /// Stato di famiglia AIRE: the family sheet of a family registered in this comune's AIRE.
    StatoFamigliaAire,
    /// Residenza in convivenza: residence in a *convivenza anagrafica* (art. 5 DPR 223/1989).
    ResidenzaConvivenza,
    /// Contratto di convivenza: the registration of a contract of cohabitation (L. 76/2016).
    ContrattoConvivenza,
    /// Anagrafico di nascita: the birth data as recorded in the anagrafe (not the civil-status act).
    AnagraficoNascita,
    /// Anagrafico di matrimonio: the marriage data as recorded in the anagrafe.
    AnagraficoMatrimonio,
    /// Certificato di nascita (stato civile).
    Nascita,
    /// Certificato di matrimonio (stato civile).
    Matrimonio,
    /// Certificato di morte (stato civile).
    Morte,
    /// Certificato di unione civile (stato civile, L. 76/2016).
    UnioneCivile,
}

impl CertificateKind {
    /// Every kind, registry kinds first.
    pub const ALL: [CertificateKind; 24] = [
        Self::Residenza,
        Self::ResidenzaAllaData,
        Self::StatoFamiglia,
        Self::StatoFamigliaAllaData,
        Self::StatoFamigliaDecesso,
        Self::StatoFamigliaParentela,
        Self::Cittadinanza,
        Self::StatoLibero,
        Self::EsistenzaInVita,
        Self::CumulativoFamiglia,
        Self::Contestuale,
        Self::ResidenzaProvenienza,
        Self::EstremiCartaIdentita,
        Self::ResidenzaAire,
        Self::StatoCivile,
        Self::StatoFamigliaAire,
        Self::ResidenzaConvivenza,
        Self::ContrattoConvivenza,
        Self::AnagraficoNascita,
        Self::AnagraficoMatrimonio,
        Self::Nascita,
        Self::Matrimonio,
        Self::Morte,
        Self::UnioneCivile,
    ];

    /// The code used on the command line, in the API and in the stamp.
    pub fn code(self) -> &'static str {
        match self {
            Self::Residenza => "residenza",
            Self::ResidenzaAllaData => "residenza_alla_data",
            Self::StatoFamiglia => "stato_famiglia",
            Self::StatoFamigliaAllaData => "stato_famiglia_alla_data",
            Self::StatoFamigliaDecesso => "stato_famiglia_decesso",
            Self::StatoFamigliaParentela => "stato_famiglia_parentela",
            Self::Cittadinanza => "cittadinanza",
            Self::StatoLibero => "stato_libero",
            Self::EsistenzaInVita => "esistenza_in_vita",
            Self::CumulativoFamiglia => "cumulativo_famiglia",
            Self::Contestuale => "contestuale",
            Self::ResidenzaProvenienza => "residenza_provenienza",
            Self::EstremiCartaIdentita => "estremi_carta_identita",
            Self::ResidenzaAire => "residenza_aire",
            Self::StatoCivile => "stato_civile",
            Self::StatoFamigliaAire => "stato_famiglia_aire",
            Self::ResidenzaConvivenza => "residenza_convivenza",
            Self::ContrattoConvivenza => "contratto_convivenza",
            Self::AnagraficoNascita => "anagrafico_nascita",
            Self::AnagraficoMatrimonio => "anagrafico_matrimonio",
            Self::UnioneCivile => "unione_civile",
            Self::Nascita => "nascita",
            Self::Matrimonio => "matrimonio",
            Self::Morte => "morte",
        }
    }

    /// The printed title.
    pub fn title(self) -> &'static str {
        match self {
            Self::Residenza => "Certificato di residenza",
            Self::ResidenzaAllaData => "Certificato di residenza alla data",
            Self::StatoFamiglia => "Certificato di stato di famiglia",
            Self::StatoFamigliaAllaData => "Certificato di stato di famiglia alla data",
            Self::StatoFamigliaDecesso => "Certificato di stato di famiglia alla data del decesso",
            Self::StatoFamigliaParentela => {
                "Certificato di stato di famiglia con rapporti di parentela"
            }
            Self::Cittadinanza => "Certificato di cittadinanza",
            Self::StatoLibero => "Certificato di stato libero",
            Self::EsistenzaInVita => "Certificato di esistenza in vita",
            Self::CumulativoFamiglia => "Certificato cumulativo di famiglia",
            Self::Contestuale => "Certificato contestuale",
            Self::ResidenzaProvenienza => "Certificato di residenza con provenienza",
            Self::EstremiCartaIdentita => "Certificato degli estremi della carta d'identità",
            Self::ResidenzaAire => "Certificato di residenza AIRE",
            Self::StatoCivile => "Certificato di stato civile",
            Self::StatoFamigliaAire => "Certificato di stato di famiglia AIRE",
            Self::ResidenzaConvivenza => "Certificato di residenza in convivenza",
            Self::ContrattoConvivenza => "Certificato di contratto di convivenza",
            Self::AnagraficoNascita => "Certificato anagrafico di nascita",
            Self::AnagraficoMatrimonio => "Certificato anagrafico di matrimonio",
            Self::UnioneCivile => "Certificato di unione civile",
            Self::Nascita => "Certificato di nascita",
            Self::Matrimonio => "Certificato di matrimonio",
            Self::Morte => "Certificato di morte",
        }
    }

    /// The legal basis printed under the title.
    pub fn legal_basis(self) -> &'static str {
        if self == Self::UnioneCivile {
            wording::BASIS_CIVIL_UNION
        } else if self == Self::ResidenzaAire {
            wording::BASIS_AIRE
        } else if self == Self::StatoFamigliaAire {
            wording::BASIS_AIRE_FAMILY
        } else if self == Self::ResidenzaConvivenza {
            wording::BASIS_CONVIVENZA
        } else if self == Self::ContrattoConvivenza {
            wording::BASIS_CONTRACT
        } else if matches!(self, Self::AnagraficoNascita | Self::AnagraficoMatrimonio) {
            wording::BASIS_REGISTRY_RECORDS
        } else if self.is_civil_status() {
            wording::BASIS_CIVIL_STATUS
        } else if self.is_past_situation() {
            wording::BASIS_PAST
        } else {
            wording::BASIS_REGISTRY
        }
    }

    /// Certificates of a past situation (art. 35, comma 4, DPR 223/1989): issued only on a stated
    /// reason, and they say so.
    pub fn is_past_situation(self) -> bool {
        matches!(
            self,
            Self::ResidenzaAllaData | Self::StatoFamigliaAllaData | Self::StatoFamigliaDecesso
        )
    }

    /// Civil-status kinds are exempt from bollo by law and signed by the Ufficiale dello Stato Civile.
    pub fn is_civil_status(self) -> bool {
        matches!(
            self,
            Self::Nascita | Self::Matrimonio | Self::Morte | Self::UnioneCivile
        )
    }

    /// "Alla data" kinds need an `as_of` date and a stated reason.
    pub fn needs_as_of(self) -> bool {
        matches!(self, Self::ResidenzaAllaData | Self::StatoFamigliaAllaData)
    }

    /// Certificates of facts that cannot change have no expiry (DPR 445/2000 art. 41, comma 1): birth
    /// (from the civil-status act or from the anagrafe) and death. Everything else is valid six months.
    pub fn expires(self) -> bool {
        !matches!(self, Self::Nascita | Self::AnagraficoNascita | Self::Morte)
    }
}

impl fmt::Display for CertificateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for CertificateKind {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|k| k.code() == wanted)
            .ok_or_else(|| CertError::UnknownKind(s.chars().take(40).collect()))
    }
}
