//! The Italian fiscal code (codice fiscale): validation and computation.
//!
//! A fiscal code is 16 characters: 3 for the surname, 3 for the given names, 2 for the birth year, a month
//! letter, 2 for the day (plus 40 for women), the 4-character cadastral (Belfiore) code of the birth place
//! and a check character. When two people would get the same code (omocodia), the Agenzia delle Entrate
//! replaces digits with letters (`0..9` → `LMNPQRSTUV`), starting from the rightmost of the seven digit
//! positions; the check character is then computed over the substituted text. Validation therefore accepts
//! a letter in any digit position as long as it is one of those ten.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::CertError;

/// The letters that stand for the digits 0–9 in an omocodic fiscal code.
const OMOCODIA: &[u8; 10] = b"LMNPQRSTUV";
/// Zero-based positions that hold digits in a fiscal code (year, day, Belfiore number).
const DIGIT_POSITIONS: [usize; 7] = [6, 7, 9, 10, 12, 13, 14];
/// Month letters, January to December.
const MONTHS: &[u8; 12] = b"ABCDEHLMPRST";

/// A validated fiscal code, upper case, 16 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FiscalCode(String);

impl FiscalCode {
    /// Parses and validates a fiscal code. Spaces are ignored and case does not matter.
    pub fn parse(input: &str) -> Result<Self, CertError> {
        let code: String = input
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        let bytes = code.as_bytes();
        let bad = || CertError::InvalidFiscalCode(input.chars().take(32).collect());
        if bytes.len() != 16 || !bytes.iter().all(u8::is_ascii_alphanumeric) {
            return Err(bad());
        }
        for (i, &b) in bytes.iter().enumerate() {
            let ok = if DIGIT_POSITIONS.contains(&i) {
                b.is_ascii_digit() || OMOCODIA.contains(&b)
            } else if i == 15 {
                b.is_ascii_uppercase()
            } else if i == 8 {
                MONTHS.contains(&b)
            } else {
                b.is_ascii_uppercase()
            };
            if !ok {
                return Err(bad());
            }
        }
        let day = decode_digit(bytes[9]) * 10 + decode_digit(bytes[10]);
        if !(1..=31).contains(&day) && !(41..=71).contains(&day) {
            return Err(bad());
        }
        if check_character(&bytes[..15]) != bytes[15] {
            return Err(bad());
        }
        Ok(FiscalCode(code))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the code carries omocodia substitutions.
    pub fn is_omocodic(&self) -> bool {
        DIGIT_POSITIONS
            .iter()
            .any(|&i| !self.0.as_bytes()[i].is_ascii_digit())
    }

    /// The code with every omocodia substitution undone (the "base" code), with its check character.
    pub fn without_omocodia(&self) -> FiscalCode {
        let mut bytes = self.0.as_bytes()[..15].to_vec();
        for &i in &DIGIT_POSITIONS {
            bytes[i] = b'0' + decode_digit(bytes[i]);
        }
        let check = check_character(&bytes);
        bytes.push(check);
        FiscalCode(String::from_utf8_lossy(&bytes).into_owned())
    }
}

impl fmt::Display for FiscalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for FiscalCode {
    type Error = CertError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        FiscalCode::parse(&value)
    }
}

impl From<FiscalCode> for String {
    fn from(value: FiscalCode) -> Self {
        value.0
    }
}

impl std::str::FromStr for FiscalCode {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FiscalCode::parse(s)
    }
}

/// The numeric value of a digit position, whether a digit or an omocodia letter.
fn decode_digit(b: u8) -> u8 {
    if b.is_ascii_digit() {
        b - b'0'
    } else {
        OMOCODIA.iter().position(|&l| l == b).unwrap_or(0) as u8
    }
}

/// The check character over the first 15 characters (upper-case ASCII letters and digits).
pub fn check_character(first15: &[u8]) -> u8 {
    // Values of characters in odd (1st, 3rd, …) positions, from the Ministry's decree (DM 23/12/1976).
    const ODD: [u32; 26] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24,
        23,
    ];
    let mut sum = 0u32;
    for (i, &b) in first15.iter().enumerate() {
        let index = if b.is_ascii_digit() {
            (b - b'0') as usize
        } else {
            (b.saturating_sub(b'A') as usize).min(25)
        };
        sum += if i % 2 == 0 { ODD[index] } else { index as u32 };
    }
    b'A' + (sum % 26) as u8
}

/// Strips accents, apostrophes and spaces and keeps upper-case ASCII letters, as the fiscal code rules do.
fn letters(name: &str) -> Vec<u8> {
    name.chars()
        .filter_map(|c| {
            let base = match c {
                'à' | 'á' | 'â' | 'ä' | 'À' | 'Á' | 'Â' | 'Ä' | 'ă' | 'Ă' => 'A',
                'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => 'E',
                'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => 'I',
                'ò' | 'ó' | 'ô' | 'ö' | 'Ò' | 'Ó' | 'Ô' | 'Ö' => 'O',
                'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => 'U',
                'ç' | 'Ç' => 'C',
                'ñ' | 'Ñ' => 'N',
                'ș' | 'Ș' | 'ş' | 'Ş' => 'S',
                'ț' | 'Ț' | 'ţ' | 'Ţ' => 'T',
                other => other.to_ascii_uppercase(),
            };
            base.is_ascii_uppercase().then_some(base as u8)
        })
        .collect()
}

fn is_vowel(b: u8) -> bool {
    matches!(b, b'A' | b'E' | b'I' | b'O' | b'U')
}

fn three(consonants: Vec<u8>, vowels: Vec<u8>) -> Vec<u8> {
    let mut out: Vec<u8> = consonants.into_iter().chain(vowels).take(3).collect();
    while out.len() < 3 {
        out.push(b'X');
    }
    out
}

fn split(name: &str) -> (Vec<u8>, Vec<u8>) {
    let l = letters(name);
    (
        l.iter().copied().filter(|&b| !is_vowel(b)).collect(),
        l.iter().copied().filter(|&b| is_vowel(b)).collect(),
    )
}

/// Computes the regular fiscal code of a person, then applies `omocodia` substitutions (0 = none, up to 7).
///
/// `belfiore` is the cadastral code of the birth comune, or `Z…` for a foreign country.
pub fn compute(
    surname: &str,
    given_names: &str,
    female: bool,
    birth: time::Date,
    belfiore: &str,
    omocodia: usize,
) -> Result<FiscalCode, CertError> {
    let (sc, sv) = split(surname);
    let (mut nc, nv) = split(given_names);
    if nc.len() >= 4 {
        nc = vec![nc[0], nc[2], nc[3]];
    }
    let mut code = three(sc, sv);
    code.extend(three(nc, nv));
    code.extend(format!("{:02}", birth.year().rem_euclid(100)).bytes());
    code.push(MONTHS[usize::from(u8::from(birth.month())) - 1]);
    let day = birth.day() + if female { 40 } else { 0 };
    code.extend(format!("{day:02}").bytes());
    let bel = belfiore.as_bytes();
    if bel.len() != 4 {
        return Err(CertError::InvalidFiscalCode(belfiore.to_owned()));
    }
    code.extend(bel);
    for &i in DIGIT_POSITIONS.iter().rev().take(omocodia.min(7)) {
        code[i] = OMOCODIA[usize::from(code[i] - b'0')];
    }
    let check = check_character(&code);
    code.push(check);
    FiscalCode::parse(&String::from_utf8_lossy(&code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn known_code_validates() {
        // The textbook example used by the Agenzia delle Entrate.
        let cf = compute("Rossi", "Mario", false, date!(1980 - 01 - 01), "H501", 0).unwrap();
        assert_eq!(cf.as_str(), "RSSMRA80A01H501U");
        assert!(FiscalCode::parse("rssmra80a01h501u").is_ok());
        assert!(FiscalCode::parse("RSSMRA80A01H501A").is_err());
    }

    #[test]
    fn omocodia_round_trip() {
        let base = compute("Rossi", "Mario", false, date!(1980 - 01 - 01), "H501", 0).unwrap();
        let omo = compute("Rossi", "Mario", false, date!(1980 - 01 - 01), "H501", 1).unwrap();
        assert_eq!(&omo.as_str()[..14], &base.as_str()[..14]);
        assert_eq!(&omo.as_str()[14..15], "M");
        assert!(omo.is_omocodic());
        assert_eq!(omo.without_omocodia(), base);
        let all = compute("Rossi", "Mario", false, date!(1980 - 01 - 01), "H501", 7).unwrap();
        assert_eq!(all.without_omocodia(), base);
    }

    #[test]
    fn bad_inputs_are_errors() {
        for s in [
            "",
            "RSSMRA80A01H501",
            "RSSMRA80Z01H501U",
            "RSSMRA80A99H501U",
            "ÀSSMRA80A01H501U",
            "1SSMRA80A01H501U",
        ] {
            assert!(FiscalCode::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn women_and_accents() {
        let cf = compute("D'Alò", "Zoè", true, date!(2010 - 12 - 31), "G337", 0).unwrap();
        assert!(cf.as_str().starts_with("DLAZOE10T71G337"));
    }
}
