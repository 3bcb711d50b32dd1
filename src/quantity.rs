//! Kubernetes quantities: parse, canonical print, MilliValue (docs/wire-contract.md §7). Pure: std and serde only.
//!
//! This module mirrors `k8s.io/apimachinery/pkg/api/resource.Quantity`:
//! [`Quantity::parse`] follows Go's `ParseQuantity` (same grammar, same scanner, same error
//! texts, values rounded up to nano, BinarySI capped at 2^63-1), [`fmt::Display`] prints the
//! canonical form of docs/wire-contract.md §7.2 and [`Quantity::milli_value`] is Go's `MilliValue()`.
//!
//! Two deliberate differences from Go (docs/wire-contract.md §10 item 5):
//! - the input text is never echoed back (Go's cached-string quirk); output is always canonical;
//! - a DecimalSI value whose canonical exponent is above 18 (no SI letter exists) is printed in
//!   exponent form (`1000E` → `1e21`) instead of silently dropping the suffix.
//!
//! # Representation
//!
//! A [`Quantity`] is an exact decimal `mantissa × 10^exponent` (`i128` mantissa, `i32` exponent)
//! plus the [`Format`] remembered from the suffix. There is no floating point anywhere: Go uses
//! an `int64` fast path and falls back to arbitrary precision (`inf.Dec`); a single `i128`
//! covers every value Go's fast path can hold and far more, while keeping the type `Copy` and
//! at most 32 bytes (we keep a million of them in memory), so no heap allocation per value.
//!
//! The value is always stored normalized: the mantissa carries no trailing decimal zeros
//! (they are moved into the exponent) and zero is stored as `0 × 10^0`. Hence the derived
//! `PartialEq`/`Hash` compare the *value and the format*: `1k` == `1000` (both DecimalSI), but
//! `1Ki` != `1024` (BinarySI vs DecimalSI). Use [`Quantity::cmp_value`] to compare values only.
//!
//! # Limits (explicit, unlike Go)
//!
//! After rounding up to nano (and, for BinarySI, after the 2^63-1 cap) the mantissa may have at
//! most [`MAX_DIGITS`] (38) significant decimal digits and the normalized decimal exponent must
//! be at most [`MAX_EXPONENT`] (1000, enough for any finite `f64`). Anything else is
//! [`QuantityError::TooLarge`]. Parsed values never have an exponent below -9 (nano); values
//! built with [`Quantity::from_scaled`] may go down to `-MAX_EXPONENT`. Go instead accepts any
//! size (and truncates exponents to 32 bits); values beyond our limits are nonsensical for
//! metrics, so rejecting them loudly is preferred over silently changing them.
//! [`Quantity::milli_value`] saturates at the `i64` bounds where Go's result is undefined.
//!
//! # Serde
//!
//! Serializes as the canonical string. Deserializes from a JSON string (trimmed like Go) or a
//! JSON number; `null` is rejected (Go decodes it as 0) — see the `Deserialize` impl.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Maximum number of significant decimal digits of a quantity's mantissa (after rounding up to
/// nano and removing trailing zeros). `10^38 - 1` is the largest such mantissa; it fits `i128`.
pub const MAX_DIGITS: usize = 38;

/// Maximum absolute value of the normalized base-10 exponent of a quantity (`1e1000` is the
/// largest power of ten accepted). Parsed values are never below `1e-9` in magnitude unless zero.
pub const MAX_EXPONENT: i32 = 1000;

/// 2^63-1: the cap Go applies to BinarySI values when parsing.
const BINARY_SI_MAX: u128 = i64::MAX as u128;

/// Errors returned by [`Quantity::parse`]. The first three have exactly Go's texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Go `ErrFormatWrong`: the text does not have the shape `number suffix`.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    /// Go `ErrSuffix`: the suffix is neither an SI letter, a binary suffix nor `e<int64>`.
    #[error("unable to parse quantity's suffix")]
    Suffix,
    /// Go `ErrNumeric`: only reachable, as in Go, for digit-less inputs on Go's slow path
    /// (e.g. `Pi`, `Ei`, `e-10`).
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    /// Our own explicit limit (not in Go): more than [`MAX_DIGITS`] significant digits, or a
    /// normalized decimal exponent outside `±`[`MAX_EXPONENT`].
    #[error(
        "quantity out of supported range: at most {} significant digits and a decimal exponent within ±{} (after rounding up to nano)",
        MAX_DIGITS,
        MAX_EXPONENT
    )]
    TooLarge,
}

/// How a quantity is printed; remembered from the suffix it was parsed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `n u m "" k M G T P E` (powers of 1000), e.g. `12M`.
    DecimalSI,
    /// `Ki Mi Gi Ti Pi Ei` (powers of 1024), e.g. `12Mi`.
    BinarySI,
    /// `e<exp>` with an exponent that is a multiple of 3, e.g. `12e6`.
    DecimalExponent,
}

impl Format {
    /// The Go name of the format (`"DecimalSI"`, `"BinarySI"`, `"DecimalExponent"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::DecimalSI => "DecimalSI",
            Format::BinarySI => "BinarySI",
            Format::DecimalExponent => "DecimalExponent",
        }
    }
}

/// An exact Kubernetes resource quantity (see the module docs for the representation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quantity {
    /// Normalized: no trailing zeros; `|mantissa| < 10^MAX_DIGITS`; 0 for zero.
    mantissa: i128,
    /// Base-10 exponent; 0 for zero; within `±MAX_EXPONENT`.
    exponent: i32,
    format: Format,
}

impl Default for Quantity {
    /// Zero, DecimalSI (prints `0`).
    fn default() -> Self {
        Quantity { mantissa: 0, exponent: 0, format: Format::DecimalSI }
    }
}

/// `10^k` for `k <= 38`.
fn pow10(k: u32) -> i128 {
    10i128.pow(k)
}

/// Number of decimal digits of `v` (`v > 0`).
fn digit_count(v: u128) -> i64 {
    i64::from(v.ilog10()) + 1
}

impl Quantity {
    /// Builds a normalized quantity from `mantissa × 10^exponent`, checking the limits.
    fn from_parts(mantissa: i128, exponent: i64, format: Format) -> Result<Quantity, QuantityError> {
        if mantissa == 0 {
            return Ok(Quantity { mantissa: 0, exponent: 0, format });
        }
        let mut m = mantissa;
        let mut e = exponent;
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        if m.unsigned_abs() >= pow10(MAX_DIGITS as u32).unsigned_abs() {
            return Err(QuantityError::TooLarge);
        }
        if !(-i64::from(MAX_EXPONENT)..=i64::from(MAX_EXPONENT)).contains(&e) {
            return Err(QuantityError::TooLarge);
        }
        // In range by the check just above.
        let exponent = e as i32;
        Ok(Quantity { mantissa: m, exponent, format })
    }

    /// Normalizes an `i64 × 10^exp` with `exp` in `-3..=0`: always within the limits.
    fn from_small(value: i64, exp: i32, format: Format) -> Quantity {
        let mut m = i128::from(value);
        let mut e = exp;
        if m == 0 {
            e = 0;
        } else {
            while m % 10 == 0 {
                m /= 10;
                e += 1;
            }
        }
        Quantity { mantissa: m, exponent: e, format }
    }

    /// Go `ParseQuantity`. No whitespace is allowed; see the module docs for the limits.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        match parse_plain_integer(s) {
            Some(value) => Ok(Quantity::from_i64(value, Format::DecimalSI)),
            None => Quantity::parse_general(s),
        }
    }

    /// [`Quantity::parse`] for every input (the plain-integer fast path aside).
    fn parse_general(s: &str) -> Result<Quantity, QuantityError> {
        if s.is_empty() {
            return Err(QuantityError::Format);
        }
        let scanned = scan(s.as_bytes())?;
        let (base, exp, mut format) = interpret_suffix(scanned.suffix)?;

        if !scanned.has_digit {
            // Go takes its int64 fast path for these (value 0) unless the decimal scale is
            // below nano or the binary suffix is Pi/Ei; its slow path then fails to read a
            // number out of an empty numeric part.
            let slow = match base {
                Base::Ten => exp < -9,
                Base::Two => exp >= 50,
            };
            if slow {
                return Err(QuantityError::Numeric);
            }
        }

        // digits × 10^exp10 (× 2^exp for binary suffixes), digits big-endian, values 0..=9.
        let mut digits: Vec<u8> = scanned.int_digits.iter().chain(scanned.frac_digits).map(|b| b - b'0').collect();
        let mut exp10: i128 = -(scanned.frac_digits.len() as i128);
        match base {
            Base::Ten => exp10 += i128::from(exp),
            Base::Two => {
                for _ in 0..exp / 10 {
                    mul_small(&mut digits, 1024);
                }
            }
        }

        // Strip leading zeros; zero keeps the format (e.g. `0Ki` is BinarySI, `e3` DecimalExponent).
        let first_nonzero = digits.iter().position(|&d| d != 0);
        let Some(first) = first_nonzero else {
            return Ok(Quantity { mantissa: 0, exponent: 0, format });
        };
        digits.drain(..first);
        strip_trailing_zeros(&mut digits, &mut exp10);

        // Round up (away from zero by magnitude) to nano.
        if exp10 < -9 {
            let cut = -9 - exp10;
            let len = digits.len() as i128;
            if cut >= len {
                digits.clear();
                digits.push(1);
            } else {
                digits.truncate((len - cut) as usize);
                increment(&mut digits);
            }
            exp10 = -9;
            strip_trailing_zeros(&mut digits, &mut exp10);
        }

        if format == Format::BinarySI {
            let int_digits = digits.len() as i128 + exp10;
            let capped = if int_digits > 19 {
                true
            } else {
                // value < 10^19 and exp10 >= -9: at most 28 digits, fits u128.
                let m = digits_to_u128(&digits);
                if exp10 >= 0 {
                    m * 10u128.pow(exp10 as u32) > BINARY_SI_MAX
                } else {
                    m > BINARY_SI_MAX * 10u128.pow((-exp10) as u32)
                }
            };
            if capped {
                digits = BINARY_SI_MAX.to_string().bytes().map(|b| b - b'0').collect();
                exp10 = 0;
            }
            if digits.len() as i128 + exp10 <= 0 {
                // 0 < |v| < 1: Go switches to DecimalSI.
                format = Format::DecimalSI;
            }
        }

        if digits.len() > MAX_DIGITS || exp10 > i128::from(MAX_EXPONENT) {
            return Err(QuantityError::TooLarge);
        }
        let magnitude = digits_to_u128(&digits) as i128; // <= 38 digits: fits i128
        let mantissa = if scanned.negative { -magnitude } else { magnitude };
        // exp10 is within -9..=MAX_EXPONENT here.
        Quantity::from_parts(mantissa, exp10 as i64, format)
    }

    /// Go `NewQuantity(value, format)`: exactly `value`.
    pub fn from_i64(value: i64, format: Format) -> Quantity {
        Quantity::from_small(value, 0, format)
    }

    /// Go `NewMilliQuantity(milli, format)`: exactly `milli / 1000`. As in Go the format is
    /// kept as given; a BinarySI value that is not a whole number (or below 1024 in magnitude)
    /// prints in DecimalSI form (`from_milli(1024, BinarySI)` prints `1024m`).
    pub fn from_milli(milli: i64, format: Format) -> Quantity {
        Quantity::from_small(milli, -3, format)
    }

    /// Go `NewScaledQuantity(value, scale)`: exactly `value × 10^scale`, DecimalSI. Unlike
    /// parsing, no rounding to nano happens (as in Go). Errors with
    /// [`QuantityError::TooLarge`] if the normalized exponent is outside `±MAX_EXPONENT`.
    pub fn from_scaled(value: i64, scale: i32) -> Result<Quantity, QuantityError> {
        Quantity::from_parts(i128::from(value), i64::from(scale), Format::DecimalSI)
    }

    /// The format remembered from the suffix (or given to a constructor).
    pub fn format(&self) -> Format {
        self.format
    }

    /// True if the value is zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// The normalized mantissa (no trailing zeros): value = `mantissa() × 10^exponent()`.
    pub fn mantissa(&self) -> i128 {
        self.mantissa
    }

    /// The normalized base-10 exponent: value = `mantissa() × 10^exponent()`.
    pub fn exponent(&self) -> i32 {
        self.exponent
    }

    /// Go `MilliValue()`: the value × 1000 rounded up in magnitude (away from zero, like Go's
    /// int64 path; for positive values this is `ceil`), as an `i64`.
    ///
    /// Overflow: Go's result is undefined there; this implementation **saturates** to
    /// `i64::MAX` / `i64::MIN` (e.g. `9Ei`, `1E`, `12345678901234567890`).
    pub fn milli_value(&self) -> i64 {
        self.scaled_value(-3)
    }

    /// Go `Value()`: the value rounded up in magnitude to an integer, saturating like
    /// [`Quantity::milli_value`].
    pub fn value(&self) -> i64 {
        self.scaled_value(0)
    }

    /// Go `ScaledValue(scale)`: `value / 10^scale` rounded up in magnitude (away from zero),
    /// saturating at the `i64` bounds.
    pub fn scaled_value(&self, scale: i32) -> i64 {
        let m = self.mantissa;
        if m == 0 {
            return 0;
        }
        let saturated = if m > 0 { i64::MAX } else { i64::MIN };
        let shift = i64::from(self.exponent) - i64::from(scale);
        let result: i128 = if shift >= 0 {
            if shift > 38 {
                return saturated;
            }
            match m.checked_mul(pow10(shift as u32)) {
                Some(v) => v,
                None => return saturated,
            }
        } else {
            let k = -shift;
            if k > 38 {
                // |m| < 10^38 <= 10^k: only the rounding unit is left.
                return m.signum() as i64;
            }
            let p = pow10(k as u32);
            let q = m / p;
            if m % p != 0 { q + m.signum() } else { q }
        };
        i64::try_from(result).unwrap_or(saturated)
    }

    /// Compares the values only (ignoring the format), like Go's `Cmp`.
    pub fn cmp_value(&self, other: &Quantity) -> Ordering {
        let (a, b) = (self.mantissa, other.mantissa);
        match a.signum().cmp(&b.signum()) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
        if a == 0 {
            return Ordering::Equal;
        }
        let magnitude = cmp_magnitude(a.unsigned_abs(), self.exponent, b.unsigned_abs(), other.exponent);
        if a > 0 { magnitude } else { magnitude.reverse() }
    }

    /// For BinarySI printing: `(n, k)` with value = `n × 1024^k`, `k` maximal (≤ 6), when the
    /// value is an integer with `1024 <= |v| <= 2^63-1`; otherwise `None` (printed as DecimalSI).
    fn binary_parts(&self) -> Option<(i128, usize)> {
        if self.exponent < 0 {
            return None; // normalized: a negative exponent means a fraction
        }
        let mut v = self.mantissa.checked_mul(10i128.checked_pow(self.exponent as u32)?)?;
        // Above 2^63-1 in magnitude (only `-2^63` via `from_i64`) the binary form would not
        // parse back (parsing caps BinarySI), so print plainly, as Go does.
        if v.unsigned_abs() < 1024 || v.unsigned_abs() > BINARY_SI_MAX {
            return None;
        }
        let mut k = 0;
        while k < 6 && v % 1024 == 0 {
            v /= 1024;
            k += 1;
        }
        Some((v, k))
    }
}

/// Compares `a × 10^ea` with `b × 10^eb` for `a, b > 0` with at most 38 digits each.
fn cmp_magnitude(a: u128, ea: i32, b: u128, eb: i32) -> Ordering {
    let oa = digit_count(a) + i64::from(ea);
    let ob = digit_count(b) + i64::from(eb);
    if oa != ob {
        return oa.cmp(&ob);
    }
    // Same order of magnitude: the shift is below 38 digits, so the product fits.
    if ea >= eb { (a * 10u128.pow((ea - eb) as u32)).cmp(&b) } else { a.cmp(&(b * 10u128.pow((eb - ea) as u32))) }
}

enum Base {
    Ten,
    Two,
}

struct Scanned<'a> {
    negative: bool,
    /// Integer digits, leading zeros stripped.
    int_digits: &'a [u8],
    /// Fraction digits.
    frac_digits: &'a [u8],
    /// Whether the numeric part held any digit at all (Go's `inf.Dec` needs one).
    has_digit: bool,
    suffix: &'a [u8],
}

fn is_suffix_letter(b: u8) -> bool {
    matches!(b, b'e' | b'E' | b'i' | b'n' | b'u' | b'm' | b'k' | b'K' | b'M' | b'G' | b'T' | b'P')
}

/// A plain integer of at most 18 digits with an optional sign (`42`, `-7`, `+0`): nearly every value written,
/// and exactly an `i64`, so it needs none of the general parser's digit arithmetic. `i64::from_str` accepts
/// exactly an optional sign and ASCII digits.
fn parse_plain_integer(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.len() > 18 {
        return None;
    }
    s.parse().ok()
}

/// Go `parseQuantityString`: sign, leading zeros, integer digits, `.` + digits, then a run of
/// suffix letters, an optional sign and digits; anything left over is a format error.
fn scan(s: &[u8]) -> Result<Scanned<'_>, QuantityError> {
    let end = s.len();
    let mut pos = 0;
    let mut negative = false;
    match s.first() {
        Some(b'-') => {
            negative = true;
            pos = 1;
        }
        Some(b'+') => pos = 1,
        _ => {}
    }
    let sign_len = pos;
    while pos < end && s[pos] == b'0' {
        pos += 1;
    }
    let stripped_zero = pos > sign_len;
    let mut result = Scanned { negative, int_digits: &[], frac_digits: &[], has_digit: true, suffix: &[] };
    if pos >= end {
        // Only a sign and zeros (or just a sign): zero.
        return Ok(result);
    }
    let int_start = pos;
    while pos < end && s[pos].is_ascii_digit() {
        pos += 1;
    }
    result.int_digits = &s[int_start..pos];
    if pos < end && s[pos] == b'.' {
        pos += 1;
        let frac_start = pos;
        while pos < end && s[pos].is_ascii_digit() {
            pos += 1;
        }
        result.frac_digits = &s[frac_start..pos];
    }
    result.has_digit = stripped_zero || !result.int_digits.is_empty() || !result.frac_digits.is_empty();
    let suffix_start = pos;
    while pos < end && is_suffix_letter(s[pos]) {
        pos += 1;
    }
    if pos < end && (s[pos] == b'-' || s[pos] == b'+') {
        pos += 1;
    }
    while pos < end && s[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return Err(QuantityError::Format);
    }
    result.suffix = &s[suffix_start..];
    Ok(result)
}

/// Go `suffixHandler.interpret`: SI letters, binary suffixes, then `e|E` + an `int64`.
fn interpret_suffix(suffix: &[u8]) -> Result<(Base, i64, Format), QuantityError> {
    let decimal = |e| Ok((Base::Ten, e, Format::DecimalSI));
    let binary = |e| Ok((Base::Two, e, Format::BinarySI));
    match suffix {
        b"" => decimal(0),
        b"n" => decimal(-9),
        b"u" => decimal(-6),
        b"m" => decimal(-3),
        b"k" => decimal(3),
        b"M" => decimal(6),
        b"G" => decimal(9),
        b"T" => decimal(12),
        b"P" => decimal(15),
        b"E" => decimal(18),
        b"Ki" => binary(10),
        b"Mi" => binary(20),
        b"Gi" => binary(30),
        b"Ti" => binary(40),
        b"Pi" => binary(50),
        b"Ei" => binary(60),
        [b'e' | b'E', rest @ ..] if !rest.is_empty() => std::str::from_utf8(rest)
            .ok()
            .and_then(|r| r.parse::<i64>().ok())
            .map(|e| (Base::Ten, e, Format::DecimalExponent))
            .ok_or(QuantityError::Suffix),
        _ => Err(QuantityError::Suffix),
    }
}

/// Multiplies a big-endian decimal digit vector by `factor` in place.
fn mul_small(digits: &mut Vec<u8>, factor: u32) {
    let mut carry: u32 = 0;
    for d in digits.iter_mut().rev() {
        let v = u32::from(*d) * factor + carry;
        *d = (v % 10) as u8;
        carry = v / 10;
    }
    let mut prefix = Vec::new();
    while carry > 0 {
        prefix.push((carry % 10) as u8);
        carry /= 10;
    }
    prefix.reverse();
    digits.splice(0..0, prefix);
}

/// Adds one to a big-endian decimal digit vector (non-empty, no leading zeros).
fn increment(digits: &mut Vec<u8>) {
    for d in digits.iter_mut().rev() {
        if *d == 9 {
            *d = 0;
        } else {
            *d += 1;
            return;
        }
    }
    digits.insert(0, 1);
}

fn strip_trailing_zeros(digits: &mut Vec<u8>, exp10: &mut i128) {
    while digits.len() > 1 && digits.last() == Some(&0) {
        digits.pop();
        *exp10 += 1;
    }
}

/// Callers guarantee at most 38 digits.
fn digits_to_u128(digits: &[u8]) -> u128 {
    digits.iter().fold(0u128, |acc, &d| acc * 10 + u128::from(d))
}

fn si_letter(exponent: i32) -> Option<&'static str> {
    Some(match exponent {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        _ => return None,
    })
}

impl fmt::Display for Quantity {
    /// The canonical form (docs/wire-contract.md §7.2, with §10 item 5): never a fraction, never `-0`, never the input
    /// text echoed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mantissa == 0 {
            return f.write_str("0");
        }
        if self.format == Format::BinarySI
            && let Some((n, k)) = self.binary_parts()
        {
            const BINARY: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            return write!(f, "{n}{}", BINARY[k]);
        }
        // Lower the exponent to a multiple of 3 (mantissa × 10 or × 100, printed as zeros).
        let pad = self.exponent.rem_euclid(3);
        let e3 = self.exponent - pad;
        write!(f, "{}", self.mantissa)?;
        for _ in 0..pad {
            f.write_str("0")?;
        }
        match self.format {
            Format::DecimalExponent if e3 == 0 => Ok(()),
            Format::DecimalExponent => write!(f, "e{e3}"),
            // BinarySI values that cannot print in binary form print as DecimalSI.
            Format::DecimalSI | Format::BinarySI => match si_letter(e3) {
                Some(letter) => f.write_str(letter),
                // Beyond E (10^18) there is no SI letter: exponent form, not Go's dropped suffix.
                None => write!(f, "e{e3}"),
            },
        }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    /// Same as [`Quantity::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl serde::Serialize for Quantity {
    /// The canonical string, as a JSON string.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    /// Like Go's `UnmarshalJSON`: a string is trimmed of surrounding whitespace and parsed; a
    /// number is parsed as a quantity (`1.5` → `1500m`, `1000` → `1k`).
    ///
    /// Differences from Go, on purpose:
    /// - `null` is **rejected** (Go silently decodes it as 0). Use `Option<Quantity>` to allow it.
    /// - Without serde_json's `arbitrary_precision` the number's text is not available: integers
    ///   in the `i64`/`u64` range are exact; any other number (fraction, exponent or bigger)
    ///   arrives as an `f64`, whose shortest round-trip decimal text is parsed. That is exact for
    ///   numbers of up to 15 significant digits, but an exponent in the JSON text is not
    ///   remembered (`1e3` → `1k`, where Go keeps DecimalExponent and prints `1e3`).
    /// - The string's JSON escapes are decoded first (Go parses the raw bytes between quotes).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor)
    }
}

struct QuantityVisitor;

impl serde::de::Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes quantity as a string or a number")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
        Quantity::parse(v.trim()).map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
        Ok(Quantity::from_i64(v, Format::DecimalSI))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
        Quantity::from_parts(i128::from(v), 0, Format::DecimalSI).map_err(E::custom)
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Quantity, E> {
        Quantity::parse(&v.to_string()).map_err(E::custom)
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Quantity, E> {
        Quantity::parse(&v.to_string()).map_err(E::custom)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
        if !v.is_finite() {
            return Err(E::custom("a quantity must be a finite number"));
        }
        // `Display` for f64 prints the shortest round-trip decimal, never in exponent form.
        Quantity::parse(&v.to_string()).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_integer_fast_path_agrees_with_the_general_parser() {
        let mut inputs: Vec<String> = (-2000..2000).map(|v: i64| v.to_string()).collect();
        for text in ["+0", "-0", "000", "+42", "0042", "-000100", "999999999999999999", "-999999999999999999"] {
            inputs.push(text.to_string());
        }
        for exp in 0..18 {
            inputs.push(10i64.pow(exp).to_string());
            inputs.push((10i64.pow(exp) * 7 - 1).to_string());
        }
        for text in &inputs {
            assert!(parse_plain_integer(text).is_some(), "{text}");
            let (fast, general) = (Quantity::parse(text).unwrap(), Quantity::parse_general(text).unwrap());
            assert_eq!(fast, general, "{text}");
            assert_eq!(fast.to_string(), general.to_string(), "{text}");
        }
        // Longer numbers, suffixes, fractions, exponents and bare signs take the general path.
        for text in ["1234567890123456789", "1k", "1.5", "1e3", "-", "+", "", "4 2", "١"] {
            assert_eq!(parse_plain_integer(text), None, "{text}");
        }
    }

    fn q(s: &str) -> Quantity {
        match Quantity::parse(s) {
            Ok(v) => v,
            Err(e) => panic!("parse {s:?}: {e}"),
        }
    }

    const OVERFLOW: i64 = i64::MAX;

    /// Every row of docs/wire-contract.md §7.3 (the "canonical" column), plus MilliValue where given.
    /// "overflow" rows assert our documented saturation.
    #[test]
    fn contract_table_7_3() {
        let rows: &[(&str, &str, Option<i64>)] = &[
            ("0", "0", Some(0)),
            ("00", "0", Some(0)),
            ("-0", "0", Some(0)),
            ("+0", "0", Some(0)),
            ("1", "1", Some(1000)),
            ("+1", "1", Some(1000)),
            ("-1", "-1", Some(-1000)),
            ("42", "42", Some(42000)),
            ("1.", "1", Some(1000)),
            ("1.0", "1", Some(1000)),
            ("1.5", "1500m", Some(1500)),
            ("-1.5", "-1500m", Some(-1500)),
            ("1.500", "1500m", Some(1500)),
            ("0.1", "100m", Some(100)),
            ("0.5", "500m", Some(500)),
            (".5", "500m", Some(500)),
            ("1.08", "1080m", Some(1080)),
            ("1080000000n", "1080m", Some(1080)),
            ("1500m", "1500m", Some(1500)),
            ("1000m", "1", Some(1000)),
            ("5000m", "5", Some(5000)),
            ("1000u", "1m", Some(1)),
            ("0.001", "1m", Some(1)),
            ("0.0001", "100u", Some(1)),
            ("0.1m", "100u", Some(1)),
            ("0.5n", "1n", Some(1)),
            ("3.001n", "4n", Some(1)),
            ("0.00000012345", "124n", Some(1)),
            ("1.23456789", "1234567890n", Some(1235)),
            ("1000", "1k", Some(1_000_000)),
            ("1001", "1001", Some(1_001_000)),
            ("2000", "2k", None),
            ("2500", "2500", None),
            ("1000k", "1M", None),
            ("1000M", "1G", None),
            ("0.001T", "1G", None),
            ("1.5G", "1500M", None),
            ("1e3", "1e3", Some(1_000_000)),
            ("1E3", "1e3", Some(1_000_000)),
            ("1.0e3", "1e3", None),
            ("1.2e3", "1200", Some(1_200_000)),
            ("12e2", "1200", Some(1_200_000)),
            ("5E+2", "500", None),
            ("5e-2", "50e-3", Some(50)),
            ("1e-3", "1e-3", Some(1)),
            ("0.001e0", "1e-3", Some(1)),
            ("1000e-12", "1e-9", Some(1)),
            ("1e-10", "1e-9", Some(1)),
            ("1.1E-9", "2e-9", Some(1)),
            (".001e12", "1e9", None),
            ("4.2e1", "42", Some(42000)),
            ("1Ki", "1Ki", Some(1_024_000)),
            ("8Ki", "8Ki", None),
            ("0.5Ki", "512", None),
            ("1.5Ki", "1536", None),
            (".001Ki", "1024m", Some(1024)),
            (".000001Ki", "1024u", Some(2)),
            (".000000001Ki", "1024n", Some(1)),
            (".000000000001Ki", "2n", Some(1)),
            ("307200Ki", "300Mi", None),
            ("100Mi", "100Mi", None),
            ("1024Mi", "1Gi", None),
            ("0.5Gi", "512Mi", None),
            ("1.5Gi", "1536Mi", None),
            ("1025024Mi", "1001Gi", None),
            ("1024Gi", "1Ti", None),
            ("1025Mi", "1025Mi", None),
            ("-1Ki", "-1Ki", None),
            ("1025", "1025", None),
            ("9Ei", "9223372036854775807", Some(OVERFLOW)),
            ("1E", "1E", Some(OVERFLOW)),
            ("12E", "12E", Some(OVERFLOW)),
            ("10E", "10E", Some(OVERFLOW)),
            ("10000000000000000000", "10E", Some(OVERFLOW)),
            ("1000000000000000000", "1E", Some(OVERFLOW)),
            ("1.0E", "1E", Some(OVERFLOW)),
            ("999999999999999999.1", "999999999999999999100m", Some(OVERFLOW)),
            ("9223372036854775807.0", "9223372036854775807", Some(OVERFLOW)),
            ("9999999999999999999000m", "9999999999999999999", Some(OVERFLOW)),
            ("12345678901234567890", "12345678901234567890", Some(OVERFLOW)),
            ("e3", "0", Some(0)),
        ];
        for &(input, canonical, milli) in rows {
            let parsed = q(input);
            assert_eq!(parsed.to_string(), canonical, "canonical of {input:?}");
            if let Some(m) = milli {
                assert_eq!(parsed.milli_value(), m, "milli_value of {input:?}");
            }
            // Canonical output is a fixed point.
            assert_eq!(q(canonical).to_string(), canonical, "re-parse of {canonical:?}");
            assert_eq!(q(canonical).cmp_value(&parsed), Ordering::Equal, "{input:?}");
        }
    }

    #[test]
    fn formats_remembered_from_suffix() {
        assert_eq!(q("1").format(), Format::DecimalSI);
        assert_eq!(q("1k").format(), Format::DecimalSI);
        assert_eq!(q("1Ki").format(), Format::BinarySI);
        assert_eq!(q("1e3").format(), Format::DecimalExponent);
        assert_eq!(q("4.2e1").format(), Format::DecimalExponent);
        assert_eq!(q("e3").format(), Format::DecimalExponent);
        assert_eq!(q("0Ki").format(), Format::BinarySI);
        // BinarySI with 0 < |v| < 1 switches to DecimalSI at parse time; 0.5Ki = 512 does not.
        assert_eq!(q(".0001Ki").format(), Format::DecimalSI);
        assert_eq!(q(".001Ki").format(), Format::BinarySI); // 1.024 >= 1: stays BinarySI
        assert_eq!(q("-.0001Ki").format(), Format::DecimalSI);
        assert_eq!(q("0.5Ki").format(), Format::BinarySI);
        assert_eq!(Format::BinarySI.as_str(), "BinarySI");
    }

    #[test]
    fn binary_cap_and_negatives() {
        // Capped by magnitude, sign kept.
        assert_eq!(q("-9Ei").to_string(), "-9223372036854775807");
        assert_eq!(q("-9Ei").milli_value(), i64::MIN);
        assert_eq!(q("8Ei").to_string(), "9223372036854775807");
        assert_eq!(q("7Ei").to_string(), "7Ei");
        assert_eq!(q("7Ei").value(), 7 << 60);
        // Huge binary inputs are capped, never TooLarge.
        assert_eq!(q("123456789012345678901234567890123456789012345Ki").to_string(), "9223372036854775807");
    }

    #[test]
    fn constructors() {
        assert_eq!(Quantity::from_i64(1000, Format::DecimalSI).to_string(), "1k");
        assert_eq!(Quantity::from_i64(1024, Format::BinarySI).to_string(), "1Ki");
        assert_eq!(Quantity::from_i64(42, Format::DecimalSI).to_string(), "42");
        assert_eq!(Quantity::from_milli(1, Format::DecimalSI).to_string(), "1m");
        assert_eq!(Quantity::from_milli(1024, Format::BinarySI).to_string(), "1024m");
        assert_eq!(Quantity::from_milli(1024, Format::BinarySI).format(), Format::BinarySI);
        assert_eq!(Quantity::from_scaled(1000, -9).map(|v| v.to_string()), Ok("1u".into()));
        assert_eq!(Quantity::from_scaled(1, -12).map(|v| v.to_string()), Ok("1e-12".into()));
        assert_eq!(Quantity::from_scaled(1, 1001), Err(QuantityError::TooLarge));
        assert_eq!(Quantity::from_i64(0, Format::BinarySI).to_string(), "0");
        assert_eq!(Quantity::from_i64(1000, Format::DecimalExponent).to_string(), "1e3");
        assert_eq!(Quantity::from_i64(-1536, Format::BinarySI).to_string(), "-1536");
        assert_eq!(Quantity::from_i64(-2048, Format::BinarySI).to_string(), "-2Ki");
        assert_eq!(Quantity::from_i64(i64::MAX, Format::DecimalSI).milli_value(), i64::MAX);
        assert_eq!(Quantity::from_i64(i64::MIN, Format::DecimalSI).milli_value(), i64::MIN);
        assert_eq!(Quantity::from_i64(i64::MIN, Format::BinarySI).to_string(), "-9223372036854775808");
        assert_eq!(Quantity::from_milli(-7, Format::DecimalSI).milli_value(), -7);
        assert_eq!(Quantity::from_milli(1500, Format::DecimalSI), q("1.5"));
        assert_eq!(Quantity::from_i64(1000, Format::DecimalSI), q("1k"));
        assert_eq!(Quantity::default().to_string(), "0");
        assert!(Quantity::default().is_zero());
    }

    #[test]
    fn invalid_inputs_give_go_errors() {
        for s in ["", "aoeu", "1.1.M", "1+1.0M", "0.1am", " 1", "1 ", "1KI"] {
            assert_eq!(Quantity::parse(s), Err(QuantityError::Format), "{s:?}");
        }
        for s in ["1i", ".5i", "-3.01i", "0.1mi", "1mi", "1e", "-3.01e-", "--1", "1Ki3"] {
            assert_eq!(Quantity::parse(s), Err(QuantityError::Suffix), "{s:?}");
        }
        // Exponent must fit an int64, as in Go's strconv.ParseInt.
        assert_eq!(Quantity::parse("1e99999999999999999999"), Err(QuantityError::Suffix));
        // Digit-less inputs on Go's slow path (derived from the Go source, not a [run] row).
        for s in ["Pi", "Ei", "-Ei", ".Pi", "e-10", "-e-10"] {
            assert_eq!(Quantity::parse(s), Err(QuantityError::Numeric), "{s:?}");
        }
        // ... while these take Go's fast path and are zero.
        for s in ["+", "-", ".", "Ki", "Ti", "e-9", "m", "00e-10", "0.Ei"] {
            assert!(q(s).is_zero(), "{s:?}");
        }
        assert_eq!(
            QuantityError::Format.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
        assert_eq!(QuantityError::Suffix.to_string(), "unable to parse quantity's suffix");
        assert_eq!(QuantityError::Numeric.to_string(), "unable to parse numeric part of quantity");
        assert!("abc".parse::<Quantity>().is_err());
        assert_eq!("1.5".parse::<Quantity>(), Ok(q("1500m")));
    }

    #[test]
    fn explicit_limits() {
        let d38 = "12345678901234567890123456789012345678";
        let d39 = "123456789012345678901234567890123456789";
        assert_eq!(q(d38).to_string(), d38);
        assert_eq!(q(&format!("-{d38}")).to_string(), format!("-{d38}"));
        assert_eq!(Quantity::parse(d39), Err(QuantityError::TooLarge));
        // 39 digits, but only 38 significant after removing trailing zeros.
        assert_eq!(q("123456789012345678901234567890123456780").to_string(), "123456789012345678901234567890123456780");
        // Rounding to nano reduces the digits: accepted.
        assert_eq!(q("1.2345678901234567890123456789").to_string(), "1234567891n");
        // Rounding 38 nines up carries into a 39th digit that is a trailing zero: accepted.
        let nines = "9".repeat(29);
        assert_eq!(q(&format!("{nines}.9999999999")).to_string(), "100e27");
        // 30 integer digits + 9 fraction digits = 39 significant: too large.
        assert_eq!(Quantity::parse(&format!("1{}.000000001", "0".repeat(29))), Err(QuantityError::TooLarge));
        // Exponent bound.
        assert_eq!(q("1e1000").to_string(), "10e999");
        assert_eq!(q("1e999").to_string(), "1e999");
        assert_eq!(q("1e998").to_string(), "100e996");
        assert_eq!(Quantity::parse("1e1001"), Err(QuantityError::TooLarge));
        assert_eq!(Quantity::parse("10e1000"), Err(QuantityError::TooLarge));
        assert_eq!(q("0.1e1001").to_string(), "10e999");
        assert!(q("0e99999").is_zero());
        assert_eq!(q("0e99999").to_string(), "0");
        // Tiny values round up to nano whatever the exponent.
        assert_eq!(q("1e-99999999999").to_string(), "1e-9");
        assert_eq!(q("0.0000000000000000000000000001").to_string(), "1n");
        assert_eq!(q("-1e-99999999999").to_string(), "-1e-9");
        assert!(QuantityError::TooLarge.to_string().contains("38 significant digits"));
        assert_eq!(std::mem::size_of::<Quantity>(), 32);
        assert!(std::mem::size_of::<Quantity>() <= 32);
    }

    #[test]
    fn large_exponents_use_exponent_form() {
        // docs/wire-contract.md §10 item 5: no dropped suffix beyond E.
        assert_eq!(q("1000E").to_string(), "1e21");
        assert_eq!(q("10000E").to_string(), "10e21");
        assert_eq!(q("1e100").to_string(), "10e99");
        assert_eq!(q("1e99").to_string(), "1e99");
        assert_eq!(q("1e99").format(), Format::DecimalExponent);
        assert_eq!(q("1e100").milli_value(), i64::MAX);
        assert_eq!(q("-1e100").milli_value(), i64::MIN);
        assert_eq!(q("1000E").cmp_value(&q("1e21")), Ordering::Equal);
        assert_eq!(q("1e21").to_string(), "1e21");
        assert_eq!(q("999E").to_string(), "999E");
    }

    #[test]
    fn milli_value_rounding() {
        assert_eq!(q("1.0001").milli_value(), 1001);
        assert_eq!(q("1u").milli_value(), 1);
        assert_eq!(q("1n").milli_value(), 1);
        // Away from zero for negatives (Go's int64 path).
        assert_eq!(q("-1u").milli_value(), -1);
        assert_eq!(q("-1.0001").milli_value(), -1001);
        assert_eq!(q("1.5").value(), 2);
        assert_eq!(q("-1.5").value(), -2);
        assert_eq!(q("9223372036854775.807").milli_value(), i64::MAX);
        assert_eq!(q("9223372036854775.808").milli_value(), i64::MAX);
        assert_eq!(q("-9223372036854775.808").milli_value(), i64::MIN);
        assert_eq!(q("-9223372036854775.807").milli_value(), -i64::MAX);
        assert_eq!(q("1k").scaled_value(3), 1);
        assert_eq!(q("1").scaled_value(3), 1);
        assert_eq!(Quantity::from_scaled(1, -1000).map(|v| v.milli_value()), Ok(1));
    }

    #[test]
    fn value_comparison() {
        assert_eq!(q("1Ki").cmp_value(&q("1024")), Ordering::Equal);
        assert_ne!(q("1Ki"), q("1024"));
        assert_eq!(q("1k"), q("1000"));
        assert_eq!(q("1.5").cmp_value(&q("2")), Ordering::Less);
        assert_eq!(q("-1.5").cmp_value(&q("-2")), Ordering::Greater);
        assert_eq!(q("-1").cmp_value(&q("0")), Ordering::Less);
        assert_eq!(q("0").cmp_value(&q("0Ki")), Ordering::Equal);
        assert_eq!(q("1e100").cmp_value(&q("9E")), Ordering::Greater);
        assert_eq!(q("999m").cmp_value(&q("1")), Ordering::Less);
        assert_eq!(q("1001m").cmp_value(&q("1")), Ordering::Greater);
    }

    fn json(s: &str) -> Result<Quantity, String> {
        serde_json::from_str::<Quantity>(s).map_err(|e| e.to_string())
    }

    #[test]
    fn json_decoding() {
        let ok: &[(&str, &str)] = &[
            ("42", "42"),
            ("\"42\"", "42"),
            ("\" 42 \"", "42"),
            ("-7", "-7"),
            ("1.5", "1500m"),
            ("0.1", "100m"),
            ("\"+1\"", "1"),
            ("\"1.5Gi\"", "1536Mi"),
            ("1000", "1k"),
            ("18446744073709551615", "18446744073709551615"),
            ("-0.0", "0"),
            ("1e21", "1e21"),
            ("123456789.123456", "123456789123456u"),
        ];
        for &(input, canonical) in ok {
            assert_eq!(json(input).map(|v| v.to_string()), Ok(canonical.to_string()), "{input}");
        }
        let format_text = QuantityError::Format.to_string();
        for input in ["\"abc\"", "\"\""] {
            let err = json(input).err().unwrap_or_default();
            assert!(err.starts_with(&format_text), "{input}: {err}");
        }
        for input in ["true", "{}", "[]", "null"] {
            let err = json(input).err().unwrap_or_default();
            assert!(err.contains("invalid type"), "{input}: {err}");
            assert!(err.contains("expected a Kubernetes quantity"), "{input}: {err}");
        }
        assert!(json("\"1Ki3\"").is_err());
        // null is allowed only through Option.
        assert_eq!(serde_json::from_str::<Option<Quantity>>("null").ok(), Some(None));
    }

    #[test]
    fn json_serialize_round_trip() {
        for s in ["1.5", "1000E", "1.5Gi", "-1Ki", "0", "5e-2", "+1", "9Ei", "1e100"] {
            let parsed = q(s);
            let text = match serde_json::to_string(&parsed) {
                Ok(t) => t,
                Err(e) => panic!("{e}"),
            };
            assert_eq!(text, format!("\"{parsed}\""));
            let back: Quantity = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => panic!("{e}"),
            };
            assert_eq!(back.cmp_value(&parsed), Ordering::Equal, "{s}");
            assert_eq!(back.to_string(), parsed.to_string());
        }
        assert_eq!(serde_json::to_string(&q("1000E")).ok(), Some("\"1e21\"".to_string()));
        assert_eq!(serde_json::to_string(&q("+1")).ok(), Some("\"1\"".to_string()));
    }

    /// SplitMix64: a tiny deterministic generator, so the property tests need no extra crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform-ish in `0..n` (n > 0).
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len() as u64) as usize]
        }

        fn digits(&mut self, max_len: u64) -> String {
            let len = self.below(max_len + 1);
            (0..len).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
        }

        fn format(&mut self) -> Format {
            [Format::DecimalSI, Format::BinarySI, Format::DecimalExponent][self.below(3) as usize]
        }
    }

    const CASES: usize = 20_000;

    /// parse(display(q)) keeps the value; display is a fixed point once the text has been
    /// parsed (a BinarySI value that prints as a plain integer, e.g. `1025000`, re-parses as
    /// DecimalSI and then prints `1025k`, exactly as in Go; every other format is stable at once).
    fn assert_round_trip(quantity: &Quantity) {
        let text1 = quantity.to_string();
        let back1 = q(&text1);
        assert_eq!(back1.cmp_value(quantity), Ordering::Equal, "{quantity:?} -> {text1}");
        let text2 = back1.to_string();
        if quantity.format() != Format::BinarySI {
            assert_eq!(text2, text1, "{quantity:?}");
        }
        let back2 = q(&text2);
        assert_eq!(back2.cmp_value(quantity), Ordering::Equal, "{text2}");
        assert_eq!(back2.to_string(), text2, "{quantity:?}");
        assert_eq!(back2, back1, "{quantity:?}");
    }

    #[test]
    fn generated_values_round_trip() {
        let mut rng = Rng(1);
        let bound = pow10(MAX_DIGITS as u32);
        for _ in 0..CASES {
            let format = rng.format();
            let quantity = if format == Format::BinarySI {
                // BinarySI values are only ever below 2^63 (parse caps, constructors are i64).
                let v = rng.next() as i64 >> rng.below(63);
                if rng.below(2) == 0 { Quantity::from_i64(v, format) } else { Quantity::from_milli(v, format) }
            } else {
                let magnitude = (i128::from(rng.next()) << 64 | i128::from(rng.next())) % bound;
                let mantissa = (magnitude >> rng.below(127)) * if rng.below(2) == 0 { 1 } else { -1 };
                let exponent = rng.below(60) as i64 - 9;
                match Quantity::from_parts(mantissa, exponent, format) {
                    Ok(v) => v,
                    Err(e) => panic!("{mantissa} {exponent}: {e}"),
                }
            };
            assert_round_trip(&quantity);
        }
        // A few extremes.
        for quantity in [
            Quantity::from_i64(i64::MAX, Format::BinarySI),
            Quantity::from_i64(i64::MIN, Format::BinarySI),
            Quantity::from_i64(1 << 62, Format::BinarySI),
            q("99999999999999999999999999999999999999"),
            q("-99999999999999999999999999999999999999e962"),
            q("1n"),
        ] {
            assert_round_trip(&quantity);
        }
    }

    #[test]
    fn generated_texts_round_trip() {
        const SUFFIXES: &[&str] = &[
            "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "e", "E", "e-", "e+",
        ];
        let mut rng = Rng(2);
        let mut parsed = 0;
        for _ in 0..CASES {
            let mut text = rng.pick(&["", "", "+", "-"]).to_string();
            text += &rng.digits(22);
            if rng.below(2) == 0 {
                text.push('.');
                text += &rng.digits(14);
            }
            let suffix = rng.pick(SUFFIXES);
            text += suffix;
            if suffix.starts_with(['e', 'E']) {
                text += &rng.digits(3);
            }
            if let Ok(quantity) = Quantity::parse(&text) {
                parsed += 1;
                assert_round_trip(&quantity);
                // Parsing never yields something below nano.
                assert!(quantity.is_zero() || quantity.exponent() >= -9, "{text}");
            }
        }
        assert!(parsed > CASES / 2, "only {parsed} generated texts parsed");
    }

    #[test]
    fn random_texts_never_panic() {
        const PIECES: &[&str] = &[
            "0",
            "1",
            "9",
            ".",
            "+",
            "-",
            "e",
            "E",
            "i",
            "n",
            "u",
            "m",
            "k",
            "K",
            "M",
            "G",
            "T",
            "P",
            " ",
            "a",
            "\u{e9}",
            "\u{1f600}",
            "00000000000000000000",
            "99999999999999999999",
        ];
        let mut rng = Rng(3);
        for _ in 0..CASES {
            let len = rng.below(12);
            let text: String = (0..len).map(|_| rng.pick(PIECES)).collect();
            let _ = Quantity::parse(&text);
        }
    }

    #[test]
    fn milli_matches_i64_arithmetic() {
        let mut rng = Rng(4);
        for _ in 0..CASES {
            let milli = rng.next() as i64 >> rng.below(64);
            let quantity = Quantity::from_milli(milli, Format::DecimalSI);
            assert_eq!(quantity.milli_value(), milli);
            assert_eq!(q(&quantity.to_string()).milli_value(), milli);
        }
    }

    #[test]
    fn decimal_text_matches_integer_oracle() {
        let mut rng = Rng(5);
        for _ in 0..CASES {
            let int = rng.below(1_000_000_000_000);
            let frac = rng.below(1_000_000_000);
            let negative = rng.below(2) == 0;
            // int.frac with 9 fraction digits is exact at nano: compare with i128 arithmetic.
            let text = format!("{}{int}.{frac:09}", if negative { "-" } else { "" });
            let quantity = q(&text);
            let nanos = i128::from(int) * 1_000_000_000 + i128::from(frac);
            // Rounded up in magnitude (away from zero).
            let milli = (nanos + 999_999) / 1_000_000;
            let (nanos, milli) = if negative { (-nanos, -milli) } else { (nanos, milli) };
            assert_eq!(i128::from(quantity.milli_value()), milli, "{text}");
            let expected = Quantity::from_parts(nanos, -9, Format::DecimalSI);
            assert_eq!(Ok(quantity), expected, "{text}");
        }
    }
}
