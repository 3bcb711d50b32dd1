//! Kubernetes label selectors: parse, validate, print, match (docs/wire-contract.md §8). Pure: std and serde only.
//!
//! Mirrors `k8s.io/apimachinery/pkg/labels` (`Parse`, `Requirement`, `String()`, `Matches`,
//! `ConvertSelectorToLabelsMap`), the label key / value validation of
//! `k8s.io/apimachinery/pkg/api/validate/content`, and `metav1.ParseToLabelSelector` /
//! `metav1.LabelSelectorAsSelector`. Error texts are the exact Go texts (docs/wire-contract.md §8.5, §3.3),
//! including the nil field path rendered as `<nil>` and the doubled spaces in `',  or '`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

// ---------------------------------------------------------------------------------------------
// Labels
// ---------------------------------------------------------------------------------------------

/// A set of labels a [`Selector`] can be matched against (Go `labels.Labels`).
pub trait Labels {
    /// The value of label `key`, if present.
    fn get(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> Labels for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

/// A slice of `(key, value)` pairs **sorted by key** (looked up by binary search).
impl Labels for [(Box<str>, Box<str>)] {
    fn get(&self, key: &str) -> Option<&str> {
        self.binary_search_by(|(k, _)| (**k).cmp(key)).ok().and_then(|i| <[_]>::get(self, i)).map(|(_, v)| &**v)
    }
}

/// A vector of `(key, value)` pairs **sorted by key** (see the slice impl).
impl Labels for Vec<(Box<str>, Box<str>)> {
    fn get(&self, key: &str) -> Option<&str> {
        Labels::get(self.as_slice(), key)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A selector / label error carrying the exact Go error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(String);

impl SelectorError {
    fn new(msg: impl Into<String>) -> Self {
        SelectorError(msg.into())
    }

    /// The Go error text.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// Go `strconv.Quote` (what `%q` prints for a string). Printability of non-ASCII characters is
/// approximated (controls, non-ASCII spaces, common format characters and private-use characters
/// are escaped; Go additionally escapes unassigned code points). Shared with the authorizer's 403 messages so
/// that both quote exactly as Kubernetes does.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_ascii() || go_is_print(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Approximation of Go's `strconv.IsPrint` for non-ASCII characters.
fn go_is_print(c: char) -> bool {
    let u = c as u32;
    let format_char = matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0x110BD | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F);
    let private_use = matches!(u, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD);
    let noncharacter = (u & 0xFFFE) == 0xFFFE || (0xFDD0..=0xFDEF).contains(&u);
    !(c.is_control() || c.is_whitespace() || format_char || private_use || noncharacter)
}

/// Go `encoding/json` rendering of a `[]string` (used for `Invalid value: [...]`).
fn go_json_string_list(values: &[String]) -> String {
    let mut out = String::from("[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in v.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                }
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

/// Go `field.Invalid(path, value, detail).Error()`; `path == None` is Go's nil path (`<nil>`).
/// `value` is the already-rendered bad value.
fn field_invalid(path: Option<&str>, rendered_value: &str, detail: &str) -> String {
    let mut s = format!("{}: Invalid value: {}", path.unwrap_or("<nil>"), rendered_value);
    if !detail.is_empty() {
        s.push_str(": ");
        s.push_str(detail);
    }
    s
}

/// Go `ErrorList.ToAggregate().Error()`: duplicates dropped, one error printed bare, several as
/// `[e1, e2]`.
fn aggregate(errs: Vec<String>) -> Option<String> {
    let mut seen = BTreeSet::new();
    let mut unique = Vec::new();
    for e in errs {
        if seen.insert(e.clone()) {
            unique.push(e);
        }
    }
    match unique.len() {
        0 => None,
        1 => unique.pop(),
        _ => Some(format!("[{}]", unique.join(", "))),
    }
}

// ---------------------------------------------------------------------------------------------
// Validation (k8s.io/apimachinery/pkg/api/validate/content)
// ---------------------------------------------------------------------------------------------

const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_ERR_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const LABEL_KEY_MAX_LENGTH: usize = 63;
const LABEL_VALUE_MAX_LENGTH: usize = 63;
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} bytes")
}

fn empty_error() -> &'static str {
    "must be non-empty"
}

/// Go `content.RegexError` (note the doubled spaces before `or`, as in Go).
fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{re}')");
    }
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push('\'');
        s.push_str(e);
        s.push_str("', ");
    }
    s.push_str("regex used for validation is '");
    s.push_str(re);
    s.push_str("')");
    s
}

/// `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`
fn matches_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
fn matches_dns1123_subdomain(s: &str) -> bool {
    let is_an = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.split('.').all(|label| {
        let b = label.as_bytes();
        match (b.first(), b.last()) {
            (Some(f), Some(l)) => is_an(f) && is_an(l) && b.iter().all(|c| is_an(c) || *c == b'-'),
            _ => false,
        }
    })
}

fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_ERR_MSG, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// Go `content.IsLabelKey` (a.k.a. `IsQualifiedName`): the list of problems, empty when valid.
pub fn label_key_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                errs.extend(dns1123_subdomain_errors(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(LABEL_KEY_ERR_MSG, LABEL_KEY_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > LABEL_KEY_MAX_LENGTH {
        errs.push(format!("name part {}", max_len_error(LABEL_KEY_MAX_LENGTH)));
    }
    if !matches_label_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(LABEL_KEY_ERR_MSG, LABEL_KEY_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// Go `content.IsLabelValue` (a.k.a. `validation.IsValidLabelValue`): the list of problems.
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !(value.is_empty() || matches_label_name(value)) {
        errs.push(regex_error(LABEL_VALUE_ERR_MSG, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// Go `labels.validateLabelKey(k, path)` rendered as a field error at `path` (`None` = nil path).
fn check_label_key(key: &str, path: Option<&str>) -> Result<(), String> {
    let errs = label_key_errors(key);
    if errs.is_empty() { Ok(()) } else { Err(field_invalid(path, &go_quote(key), &errs.join("; "))) }
}

/// Go `labels.validateLabelValue(k, v, path)`: the error is reported at `path[k]`.
fn check_label_value(key: &str, value: &str, path: Option<&str>) -> Result<(), String> {
    let errs = label_value_errors(value);
    if errs.is_empty() {
        Ok(())
    } else {
        let p = format!("{}[{}]", path.unwrap_or(""), key);
        Err(field_invalid(Some(&p), &go_quote(value), &errs.join("; ")))
    }
}

/// Validates a label key (qualified name: optional DNS-1123 subdomain prefix + `/` + name).
/// The error is Go's field error with a nil path, e.g.
/// `<nil>: Invalid value: "-a": name part must consist of …`.
pub fn validate_label_key(key: &str) -> Result<(), SelectorError> {
    check_label_key(key, None).map_err(SelectorError)
}

/// Validates a label value (empty, or ≤ 63 chars of `[-A-Za-z0-9_.]` starting and ending
/// alphanumeric). The error is Go's field error with a nil path, e.g.
/// `<nil>: Invalid value: "b!": a valid label must …`. (Go's label helpers report value errors
/// at `[key]`; see [`validate_label_value_for_key`].)
pub fn validate_label_value(value: &str) -> Result<(), SelectorError> {
    let errs = label_value_errors(value);
    if errs.is_empty() { Ok(()) } else { Err(SelectorError(field_invalid(None, &go_quote(value), &errs.join("; ")))) }
}

/// Validates the value of label `key` exactly like Go `ConvertSelectorToLabelsMap` does; the error
/// names the key as the field path, e.g. `[a]: Invalid value: "b!": a valid label must …`.
pub fn validate_label_value_for_key(key: &str, value: &str) -> Result<(), SelectorError> {
    check_label_value(key, value, None).map_err(SelectorError)
}

// ---------------------------------------------------------------------------------------------
// Operator, Requirement, Selector
// ---------------------------------------------------------------------------------------------

/// A requirement operator (Go `selection.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `k=v`
    Equals,
    /// `k==v`
    DoubleEquals,
    /// `k!=v`
    NotEquals,
    /// `k in (a,b)`
    In,
    /// `k notin (a,b)`
    NotIn,
    /// `k`
    Exists,
    /// `!k`
    DoesNotExist,
    /// `k>1`
    GreaterThan,
    /// `k<1`
    LessThan,
}

impl Operator {
    /// The Go `selection.Operator` string: `=`, `==`, `!=`, `in`, `notin`, `exists`, `!`, `gt`, `lt`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One requirement of a selector: key, operator and (sorted, de-duplicated) values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Go `labels.NewRequirement` (nil path): validates the key, the value count for the operator,
    /// integer values for `gt`/`lt`, and every value; error texts are Go's. The values are stored
    /// sorted and de-duplicated.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        new_requirement(key, operator, values).map_err(SelectorError)
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted and de-duplicated (empty for `Exists` / `DoesNotExist`).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, v: &str) -> bool {
        self.values.binary_search_by(|x| x.as_str().cmp(v)).is_ok()
    }

    /// Go `Requirement.Matches`.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                labels.get(&self.key).is_some_and(|v| self.has_value(v))
            }
            Operator::NotIn | Operator::NotEquals => labels.get(&self.key).is_none_or(|v| !self.has_value(v)),
            Operator::Exists => labels.get(&self.key).is_some(),
            Operator::DoesNotExist => labels.get(&self.key).is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(Ok(have)) = labels.get(&self.key).map(str::parse::<i64>) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan { have > want } else { have < want }
            }
        }
    }
}

impl fmt::Display for Requirement {
    /// Go `Requirement.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (op, parens) = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => ("=", false),
            Operator::DoubleEquals => ("==", false),
            Operator::NotEquals => ("!=", false),
            Operator::In => (" in ", true),
            Operator::NotIn => (" notin ", true),
            Operator::GreaterThan => (">", false),
            Operator::LessThan => ("<", false),
        };
        f.write_str(op)?;
        if parens {
            f.write_str("(")?;
        }
        f.write_str(&self.values.join(","))?;
        if parens {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Go `labels.NewRequirement` with a nil path; `Err` is the aggregated Go error text.
fn new_requirement(key: &str, op: Operator, vals: Vec<String>) -> Result<Requirement, String> {
    let mut errs = Vec::new();
    if let Err(e) = check_label_key(key, Some("key")) {
        errs.push(e);
    }
    let values_path = "values";
    match op {
        Operator::In | Operator::NotIn => {
            if vals.is_empty() {
                errs.push(field_invalid(
                    Some(values_path),
                    &go_json_string_list(&vals),
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
            if vals.len() != 1 {
                errs.push(field_invalid(
                    Some(values_path),
                    &go_json_string_list(&vals),
                    "exact-match compatibility requires one single value",
                ));
            }
        }
        Operator::Exists | Operator::DoesNotExist => {
            if !vals.is_empty() {
                errs.push(field_invalid(
                    Some(values_path),
                    &go_json_string_list(&vals),
                    "values set must be empty for exists and does not exist",
                ));
            }
        }
        Operator::GreaterThan | Operator::LessThan => {
            if vals.len() != 1 {
                errs.push(field_invalid(
                    Some(values_path),
                    &go_json_string_list(&vals),
                    "for 'Gt', 'Lt' operators, exactly one value is required",
                ));
            }
            for (i, v) in vals.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(field_invalid(
                        Some(&format!("{values_path}[{i}]")),
                        &go_quote(v),
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
    }
    for (i, v) in vals.iter().enumerate() {
        if let Err(e) = check_label_value(key, v, Some(&format!("{values_path}[{i}]"))) {
            errs.push(e);
        }
    }
    if let Some(e) = aggregate(errs) {
        return Err(e);
    }
    let mut values = vals;
    values.sort();
    values.dedup();
    Ok(Requirement { key: key.to_owned(), operator: op, values })
}

/// A parsed label selector: an AND of requirements, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Go `labels.Parse`: parses the selector grammar of docs/wire-contract.md §8.1; error texts are Go's.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        let mut parser = Parser::new(s);
        let requirements = parser.parse().map_err(SelectorError)?;
        Ok(Selector::from_requirements(requirements))
    }

    /// The selector that matches everything (Go `labels.Everything()`).
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// Builds a selector from requirements (stable-sorted by key, like Go's `Add`).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Selector {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Selector { requirements }
    }

    /// Go `metav1.LabelSelectorAsSelector` for a non-nil selector: matchLabels become `=`
    /// requirements (validated), matchExpressions become in/notin/exists/`!` requirements.
    pub fn from_label_selector(ls: &LabelSelector) -> Result<Selector, SelectorError> {
        let mut reqs = Vec::with_capacity(ls.match_labels.len() + ls.match_expressions.len());
        for (k, v) in &ls.match_labels {
            reqs.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        for e in &ls.match_expressions {
            let op = match e.operator {
                LabelSelectorOperator::In => Operator::In,
                LabelSelectorOperator::NotIn => Operator::NotIn,
                LabelSelectorOperator::Exists => Operator::Exists,
                LabelSelectorOperator::DoesNotExist => Operator::DoesNotExist,
            };
            reqs.push(Requirement::new(&e.key, op, e.values.clone())?);
        }
        Ok(Selector::from_requirements(reqs))
    }

    /// True when the selector has no requirements (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when every requirement matches `labels` (the empty selector matches everything).
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Go `metav1.ParseToLabelSelector(sel.String())`, guarded like the test-adapter
    /// (`len(sel.String()) > 0`): `None` for the empty selector. `=`/`==` go to `matchLabels`
    /// (last one wins for a repeated key), the others to `matchExpressions` in key order with
    /// sorted values. `gt`/`lt`/`!=` are errors with Go's text.
    pub fn to_label_selector(&self) -> Result<Option<LabelSelector>, SelectorError> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut out = LabelSelector::default();
        for r in &self.requirements {
            let op = match r.operator {
                Operator::Equals | Operator::DoubleEquals => {
                    let [v] = r.values.as_slice() else {
                        return Err(SelectorError::new("equals operator must have exactly one value"));
                    };
                    out.match_labels.insert(r.key.clone(), v.clone());
                    continue;
                }
                Operator::In => LabelSelectorOperator::In,
                Operator::NotIn => LabelSelectorOperator::NotIn,
                Operator::Exists => LabelSelectorOperator::Exists,
                Operator::DoesNotExist => LabelSelectorOperator::DoesNotExist,
                Operator::GreaterThan | Operator::LessThan => {
                    return Err(SelectorError(format!(
                        "{} isn't supported in label selectors",
                        go_quote(r.operator.as_str())
                    )));
                }
                Operator::NotEquals => {
                    return Err(SelectorError(format!(
                        "{} is not a valid label selector operator",
                        go_quote(r.operator.as_str())
                    )));
                }
            };
            out.match_expressions.push(LabelSelectorRequirement {
                key: r.key.clone(),
                operator: op,
                values: r.values.clone(),
            });
        }
        Ok(Some(out))
    }
}

impl fmt::Display for Selector {
    /// Go `internalSelector.String()`: requirements joined by `,` (docs/wire-contract.md §8.3).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            fmt::Display::fmt(r, f)?;
        }
        Ok(())
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

// ---------------------------------------------------------------------------------------------
// metav1.LabelSelector JSON
// ---------------------------------------------------------------------------------------------

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `metav1.LabelSelector` as JSON: both keys omitted when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LabelSelector {
    /// `matchLabels`
    #[serde(
        rename = "matchLabels",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub match_labels: BTreeMap<String, String>,
    /// `matchExpressions`
    #[serde(
        rename = "matchExpressions",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// `metav1.LabelSelectorOperator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabelSelectorOperator {
    /// `In`
    In,
    /// `NotIn`
    NotIn,
    /// `Exists`
    Exists,
    /// `DoesNotExist`
    DoesNotExist,
}

/// `metav1.LabelSelectorRequirement`: `values` omitted when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelectorRequirement {
    /// `key`
    pub key: String,
    /// `operator`
    pub operator: LabelSelectorOperator,
    /// `values`
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// ConvertSelectorToLabelsMap
// ---------------------------------------------------------------------------------------------

/// Go `labels.ConvertSelectorToLabelsMap` (the write route's `labels` parameter): `""` ⇒ `{}`;
/// otherwise split on `,`, each part split on `=` must give exactly two pieces (else
/// `invalid selector: [a b c]`), key and value are space-trimmed and validated (field errors
/// `<nil>: Invalid value: …` for keys, `[key]: Invalid value: …` for values). Last key wins.
pub fn parse_labels_map(s: &str) -> Result<BTreeMap<String, String>, SelectorError> {
    let mut map = BTreeMap::new();
    if s.is_empty() {
        return Ok(map);
    }
    for part in s.split(',') {
        let pieces: Vec<&str> = part.split('=').collect();
        let [key, value] = pieces.as_slice() else {
            return Err(SelectorError(format!("invalid selector: [{}]", pieces.join(" "))));
        };
        let key = key.trim();
        check_label_key(key, None).map_err(SelectorError)?;
        let value = value.trim();
        check_label_value(key, value, None).map_err(SelectorError)?;
        map.insert(key.to_owned(), value.to_owned());
    }
    Ok(map)
}

// ---------------------------------------------------------------------------------------------
// Lexer (byte-wise, like Go's: a NUL byte reads like the end of input)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn symbol_token(s: &[u8]) -> Option<Token> {
    Some(match s {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    /// The byte at `pos` (advancing), or 0 at the end.
    fn read(&mut self) -> u8 {
        match self.s.as_bytes().get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn slice(&self, from: usize, to: usize) -> &'a str {
        self.s.get(from..to).unwrap_or_default()
    }

    fn lex(&mut self) -> (Token, &'a str) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            return (Token::EndOfString, "");
        }
        self.unread();
        if is_special_symbol(ch) { self.scan_special_symbol() } else { self.scan_id_or_keyword() }
    }

    fn scan_id_or_keyword(&mut self) -> (Token, &'a str) {
        let start = self.pos;
        let end = loop {
            let before = self.pos;
            let ch = self.read();
            if ch == 0 {
                break before;
            }
            if is_special_symbol(ch) || is_whitespace(ch) {
                self.unread();
                break before;
            }
        };
        let lit = self.slice(start, end);
        let tok = match lit {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Identifier,
        };
        (tok, lit)
    }

    fn scan_special_symbol(&mut self) -> (Token, &'a str) {
        let start = self.pos;
        let mut last: Option<(Token, usize)> = None;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if !is_special_symbol(ch) {
                self.unread();
                break;
            }
            let buf = self.s.as_bytes().get(start..self.pos).unwrap_or_default();
            if let Some(tok) = symbol_token(buf) {
                last = Some((tok, self.pos));
            } else if last.is_some() {
                self.unread();
                break;
            }
        }
        match last {
            Some((tok, end)) => (tok, self.slice(start, end)),
            // Unreachable: every single special symbol is a token.
            None => (Token::EndOfString, ""),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser<'a> {
    items: Vec<(Token, &'a str)>,
    position: usize,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        let mut lexer = Lexer { s, pos: 0 };
        let mut items = Vec::new();
        loop {
            let item = lexer.lex();
            items.push(item);
            if item.0 == Token::EndOfString {
                break;
            }
        }
        Parser { items, position: 0 }
    }

    fn item(&self, i: usize, ctx: Context) -> (Token, &'a str) {
        let (tok, lit) = self.items.get(i).copied().unwrap_or((Token::EndOfString, ""));
        match (ctx, tok) {
            (Context::Values, Token::In | Token::NotIn) => (Token::Identifier, lit),
            _ => (tok, lit),
        }
    }

    fn lookahead(&self, ctx: Context) -> (Token, &'a str) {
        self.item(self.position, ctx)
    }

    fn consume(&mut self, ctx: Context) -> (Token, &'a str) {
        let item = self.item(self.position, ctx);
        self.position += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self.parse_requirement().map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(reqs),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(format!("found '{l2}', expected: identifier after ','"));
                            }
                        }
                        _ => {
                            return Err(format!("found '{l}', expected: ',' or 'end of string'"));
                        }
                    }
                }
                Token::EndOfString => return Ok(reqs),
                _ => {
                    return Err(format!("found '{lit}', expected: !, identifier, or 'end of string'"));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, op) = self.parse_key_and_infer_operator()?;
        if let Some(op @ (Operator::Exists | Operator::DoesNotExist)) = op {
            return new_requirement(key, op, Vec::new());
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(key, op, values.into_iter().collect())
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(&'a str, Option<Operator>), String> {
        let mut op = None;
        let (mut tok, mut lit) = self.consume(Context::Values);
        if tok == Token::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        check_label_key(lit, None)?;
        let (t, _) = self.lookahead(Context::Values);
        if (t == Token::EndOfString || t == Token::Comma) && op != Some(Operator::DoesNotExist) {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!("found '{lit}', expected: in, notin, =, ==, !=, gt, lt"));
            }
        })
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let set = self.parse_identifiers_list()?;
                let (t, _) = self.consume(Context::Values);
                if t != Token::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(set)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut set = BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    set.insert(lit.to_owned());
                    let (t2, l2) = self.lookahead(Context::Values);
                    match t2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(set),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (t2, _) = self.lookahead(Context::Values);
                    if t2 == Token::ClosedPar {
                        set.insert(String::new());
                        return Ok(set);
                    }
                    if t2 == Token::Comma {
                        set.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, _) = self.lookahead(Context::Values);
        if tok == Token::EndOfString || tok == Token::Comma {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            Ok(BTreeSet::from([lit.to_owned()]))
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const NAME_PART_REGEX_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE_REGEX_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    fn valid_examples() -> Vec<String> {
        let mut v: Vec<String> = [
            "x=a,y=b,z=c",
            "",
            "x!=a,y=b",
            "x=",
            "x= ",
            "x=,z= ",
            "x= ,z= ",
            "!x",
            "x>1",
            "x>1,z<5",
            "\rx",
            "this-is-a-dns.domain.com/key-with-dash",
            "this-is-another-dns.domain.com/key-with-dash in (so,what)",
            "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
            "foo  in\t (abc)",
            "x notin\n (abc)",
            "x in (abc,)",
            "x in (abc,abc)",
            "x in ()",
            "x in (a,,)",
            "x in (a,,a,,a,,a,,)",
            "x,y in (a)",
            "x notin ( )",
            "x notin (, a)",
            "a ",
            "a in (x,y,notin, z,in)",
            "notin=in",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(format!("{}=a", "k".repeat(63)));
        v.push(format!("x={}", "v".repeat(63)));
        v
    }

    fn invalid_examples() -> Vec<String> {
        let mut v: Vec<String> = [
            "x=a||y=b",
            "x==a==b",
            "!x=a",
            "x<a",
            "x,,y",
            ",x,y",
            "x nott in (y)",
            "a in (xyz),",
            "a in (xyz)b notin ()",
            "a in (xyz abc)",
            "a notin(",
            "a (",
            "(",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(format!("{}=a", "k".repeat(254)));
        v.push(format!("x={}", "v".repeat(254)));
        v
    }

    fn err(s: &str) -> String {
        match Selector::parse(s) {
            Ok(sel) => panic!("{s:?} parsed as {sel}"),
            Err(e) => e.to_string(),
        }
    }

    fn parse(s: &str) -> Selector {
        match Selector::parse(s) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn boxed(pairs: &[(&str, &str)]) -> Vec<(Box<str>, Box<str>)> {
        let mut v: Vec<(Box<str>, Box<str>)> = pairs.iter().map(|(k, v)| (Box::from(*k), Box::from(*v))).collect();
        v.sort();
        v
    }

    // ---- 1. examples of docs/wire-contract.md §8.4 and error texts of §8.5 ----

    #[test]
    fn valid_examples_parse() {
        for s in valid_examples() {
            assert!(Selector::parse(&s).is_ok(), "{s:?}: {:?}", Selector::parse(&s));
        }
    }

    #[test]
    fn invalid_examples_fail() {
        for s in invalid_examples() {
            assert!(Selector::parse(&s).is_err(), "{s:?} parsed");
        }
    }

    #[test]
    fn go_error_texts() {
        let cases: &[(&str, &str)] = &[
            ("x==a==b", "found '==', expected: ',' or 'end of string'"),
            ("!x=a", "found '=', expected: ',' or 'end of string'"),
            ("x=a=b", "found '=', expected: ',' or 'end of string'"),
            ("x,,y", "found ',', expected: identifier after ','"),
            ("a in (xyz),", "found '', expected: identifier after ','"),
            (",x,y", "found ',', expected: !, identifier, or 'end of string'"),
            ("(", "found '(', expected: !, identifier, or 'end of string'"),
            ("a in (xyz)b notin ()", "found 'b', expected: ',' or 'end of string'"),
            ("x nott in (y)", "unable to parse requirement: found 'nott', expected: in, notin, =, ==, !=, gt, lt"),
            ("a (", "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt"),
            ("a in (xyz abc)", "unable to parse requirement: found 'abc', expected: ',' or ')'"),
            ("a notin(", "unable to parse requirement: found '', expected: ',', ')' or identifier"),
            (
                "x<a",
                "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
            (
                "-x",
                "unable to parse requirement: <nil>: Invalid value: \"-x\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ),
            (
                "x=-a",
                "unable to parse requirement: values[0][x]: Invalid value: \"-a\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ),
            (
                "Example.com/key=v",
                "unable to parse requirement: <nil>: Invalid value: \"Example.com/key\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            ),
            // further parser paths
            ("!", "unable to parse requirement: found '', expected: identifier"),
            ("x=(", "unable to parse requirement: found '(', expected: identifier"),
            ("x===a", "unable to parse requirement: found '=', expected: identifier"),
            ("x in a", "unable to parse requirement: found 'a' expected: '('"),
            ("x in (a,=", "unable to parse requirement: found '=', expected: ',', or identifier"),
            ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
            ("x in (", "unable to parse requirement: found '', expected: ',', ')' or identifier"),
            ("x,", "found '', expected: identifier after ','"),
            ("x y", "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt"),
            ("!x in (a)", "found 'in', expected: ',' or 'end of string'"),
        ];
        for (input, want) in cases {
            assert_eq!(err(input), *want, "input {input:?}");
        }
        assert_eq!(
            err("x=a||y=b"),
            format!("unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {VALUE_REGEX_MSG}")
        );
    }

    #[test]
    fn long_key_and_value_error_texts() {
        let key = "k".repeat(254);
        assert_eq!(
            err(&format!("{key}=a")),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"{key}\": name part must be no more than 63 bytes"
            )
        );
        let value = "v".repeat(64);
        assert_eq!(
            err(&format!("x={value}")),
            format!(
                "unable to parse requirement: values[0][x]: Invalid value: \"{value}\": must be no more than 63 bytes"
            )
        );
    }

    #[test]
    fn multiple_field_errors_are_aggregated() {
        // Gt value that is neither an integer nor a valid label value: two errors.
        assert_eq!(
            err("x>-a"),
            format!(
                "unable to parse requirement: [values[0]: Invalid value: \"-a\": for 'Gt', 'Lt' operators, the value must be an integer, values[0][x]: Invalid value: \"-a\": {VALUE_REGEX_MSG}]"
            )
        );
        // Values are validated in sorted order.
        assert_eq!(
            err("x in (-b,-a)"),
            format!(
                "unable to parse requirement: [values[0][x]: Invalid value: \"-a\": {VALUE_REGEX_MSG}, values[1][x]: Invalid value: \"-b\": {VALUE_REGEX_MSG}]"
            )
        );
    }

    #[test]
    fn key_errors() {
        assert_eq!(
            err("a/b/c"),
            "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        );
        assert_eq!(
            err("/a"),
            "unable to parse requirement: <nil>: Invalid value: \"/a\": prefix part must be non-empty"
        );
        assert_eq!(
            err("a/"),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"a/\": name part must be non-empty; {NAME_PART_REGEX_MSG}"
            )
        );
        assert_eq!(
            err("x=a\"b"),
            format!("unable to parse requirement: values[0][x]: Invalid value: \"a\\\"b\": {VALUE_REGEX_MSG}")
        );
        assert!(validate_label_key("example.com/My_Name.1").is_ok());
        assert!(validate_label_key(&format!("{}/a", "a".repeat(253))).is_ok());
        assert!(validate_label_key(&format!("{}/a", "a".repeat(254))).is_err());
        assert!(validate_label_key("a..b").is_ok());
        assert!(validate_label_key("ex..com/a").is_err());
        assert!(validate_label_key("ex-.com/a").is_err());
        assert!(validate_label_key("a_").is_err());
        assert!(validate_label_key("").is_err());
        assert!(validate_label_value("").is_ok());
        assert!(validate_label_value("A-b_c.9").is_ok());
        assert!(validate_label_value("_a").is_err());
        assert_eq!(
            validate_label_value("b!").map_err(|e| e.to_string()),
            Err(format!("<nil>: Invalid value: \"b!\": {VALUE_REGEX_MSG}"))
        );
        assert_eq!(
            validate_label_value_for_key("a", "b!").map_err(|e| e.to_string()),
            Err(format!("[a]: Invalid value: \"b!\": {VALUE_REGEX_MSG}"))
        );
    }

    #[test]
    fn go_quote_escapes() {
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("\u{1}\u{7f}\u{b}"), "\"\\x01\\x7f\\v\"");
        assert_eq!(go_quote("é\u{a0}\u{feff}"), "\"é\\u00a0\\ufeff\"");
        assert_eq!(go_json_string_list(&["<a>".into(), "\"".into()]), "[\"\\u003ca\\u003e\",\"\\\"\"]");
    }

    // ---- 2. canonical String() and round trips ----

    #[test]
    fn canonical_strings() {
        let cases: &[(&str, &str)] = &[
            ("z=1,a=2", "a=2,z=1"),
            ("x in (b,a)", "x in (a,b)"),
            ("x= ", "x="),
            ("x notin (abc,,def),bar,z in (),w", "bar,w,x notin (,abc,def),z in ()"),
            ("x==a", "x==a"),
            ("x!=a", "x!=a"),
            ("!x", "!x"),
            ("x>1,z<5", "x>1,z<5"),
            ("x in (abc,)", "x in (,abc)"),
            ("x in (a,,a,,a,,a,,)", "x in (,a)"),
            ("x notin (, a)", "x notin (,a)"),
            ("x notin ( )", "x notin ()"),
            ("a in (x,y,notin, z,in)", "a in (in,notin,x,y,z)"),
            ("notin=in", "notin=in"),
            ("\rx", "x"),
            ("", ""),
            ("x=a,x!=b", "x=a,x!=b"),
            ("x!=b,x=a", "x!=b,x=a"),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).to_string(), *want, "input {input:?}");
        }
        // Go's own test: the good strings print as themselves minus spaces.
        for s in ["x=a,y=b,z=c", "x!=a,y=b", "x=", "x= ", "x=,z= ", "x= ,z= ", "!x", "x>1", "x>1,z<5"] {
            assert_eq!(parse(s).to_string(), s.replace(' ', ""));
        }
    }

    #[test]
    fn round_trip() {
        for s in valid_examples() {
            let sel = parse(&s);
            let printed = sel.to_string();
            let again = parse(&printed);
            assert_eq!(again, sel, "{s:?} -> {printed:?}");
            assert_eq!(again.to_string(), printed);
            let via_from_str: Selector = match printed.parse() {
                Ok(v) => v,
                Err(e) => panic!("{e}"),
            };
            assert_eq!(via_from_str, sel);
        }
    }

    #[test]
    fn requirements_are_sorted_with_sorted_values() {
        let sel = parse("z in (c,a,b,a),a,!m");
        let reqs = sel.requirements();
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[0].key(), "a");
        assert_eq!(reqs[0].operator(), Operator::Exists);
        assert!(reqs[0].values().is_empty());
        assert_eq!(reqs[1].key(), "m");
        assert_eq!(reqs[1].operator(), Operator::DoesNotExist);
        assert_eq!(reqs[2].operator(), Operator::In);
        assert_eq!(reqs[2].values(), ["a", "b", "c"]);
        assert_eq!(parse("x==a").requirements()[0].operator(), Operator::DoubleEquals);
        assert_eq!(parse("x notin (a)").requirements()[0].operator(), Operator::NotIn);
        assert_eq!(parse("x<3").requirements()[0].operator(), Operator::LessThan);
        assert_eq!(parse("x>3").requirements()[0].operator(), Operator::GreaterThan);
        assert_eq!(parse("x!=3").requirements()[0].operator(), Operator::NotEquals);
        assert_eq!(parse("x=3").requirements()[0].operator(), Operator::Equals);
    }

    #[test]
    fn nul_byte_behaves_like_go() {
        // Go's lexer reads a NUL byte as the end of input at the start of a token ...
        assert_eq!(parse("a \0,b").to_string(), "a");
        assert_eq!(err("a, \0b"), "found '', expected: identifier after ','");
        // (after a symbol the NUL is consumed by the symbol scanner)
        assert_eq!(parse("a,\0b").to_string(), "a,b");
        // ... and as a consumed terminator inside an identifier.
        assert_eq!(parse("a\0,b").to_string(), "a,b");
        assert_eq!(err("a\0b"), "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt");
    }

    #[test]
    fn empty_and_everything() {
        assert!(parse("").is_empty());
        assert!(parse("  \t\n").is_empty());
        assert!(Selector::everything().is_empty());
        assert_eq!(Selector::everything(), parse(""));
        assert!(!parse("a").is_empty());
        assert_eq!(Selector::everything().to_string(), "");
    }

    // ---- 3. matching ----

    fn check_match(sel: &str, labels: &[(&str, &str)], want: bool) {
        let s = parse(sel);
        assert_eq!(s.matches(&map(labels)), want, "{sel:?} vs {labels:?} (BTreeMap)");
        let b = boxed(labels);
        assert_eq!(s.matches(b.as_slice()), want, "{sel:?} vs {labels:?} (slice)");
        assert_eq!(s.matches(&b), want, "{sel:?} vs {labels:?} (Vec)");
        let h: HashMap<String, String> = map(labels).into_iter().collect();
        assert_eq!(s.matches(&h), want, "{sel:?} vs {labels:?} (HashMap)");
    }

    type MatchCase<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);

    #[test]
    fn matching_semantics() {
        let cases: &[MatchCase<'_>] = &[
            ("", &[("x", "y")], true),
            ("", &[], true),
            ("x=y", &[("x", "y")], true),
            ("x==y", &[("x", "y")], true),
            ("x=y", &[("x", "z")], false),
            ("x=z", &[], false),
            ("x=", &[("x", "")], true),
            ("x=", &[], false),
            ("x=y,z=w", &[("x", "y"), ("z", "w")], true),
            ("x=y,z=w", &[("x", "w"), ("z", "w")], false),
            ("x!=y,z!=w", &[("x", "z"), ("z", "a")], true),
            ("x!=y,z!=w", &[("x", "z"), ("z", "w")], false),
            ("x!=y", &[], true),
            ("x!=y", &[("x", "y")], false),
            ("notin=in", &[("notin", "in")], true),
            ("x", &[("x", "z")], true),
            ("x", &[("x", "")], true),
            ("x", &[("y", "z")], false),
            ("!x", &[("y", "z")], true),
            ("!x", &[("x", "z")], false),
            ("!x", &[], true),
            ("x in (a,b)", &[("x", "b")], true),
            ("x in (a,b)", &[("x", "c")], false),
            ("x in (a,b)", &[], false),
            ("x in ()", &[("x", "")], true),
            ("x in ()", &[("x", "a")], false),
            ("x notin (a,b)", &[("x", "c")], true),
            ("x notin (a,b)", &[("x", "a")], false),
            ("x notin (a,b)", &[], true),
            ("x>1", &[("x", "2")], true),
            ("x>1", &[("x", "1")], false),
            ("x>1", &[("x", "0")], false),
            ("x>1", &[("x", "-5")], false),
            ("x>1", &[("x", "+7")], true),
            ("x>1", &[("x", "007")], true),
            ("x>1", &[("x", "2.5")], false),
            ("x>1", &[("x", "abc")], false),
            ("x>1", &[("x", "")], false),
            ("x>1", &[("x", "99999999999999999999")], false),
            ("x>1", &[], false),
            ("x<1", &[("x", "0")], true),
            ("x<1", &[("x", "-3")], true),
            ("x<1", &[("x", "2")], false),
            ("x<1", &[("x", "zero")], false),
            ("x<1", &[], false),
            ("foo=bar,baz=blah", &[("foo", "bar"), ("baz", "blah")], true),
            ("foo=bar,foobar=bar,baz=blah", &[("foo", "bar"), ("baz", "blah")], false),
            ("a,!b,c in (1)", &[("a", "x"), ("c", "1")], true),
            ("a,!b,c in (1)", &[("a", "x"), ("b", "y"), ("c", "1")], false),
        ];
        for (sel, labels, want) in cases {
            check_match(sel, labels, *want);
        }
    }

    #[test]
    fn sorted_slice_lookup() {
        let b = boxed(&[("c", "3"), ("a", "1"), ("b", "2")]);
        assert_eq!(Labels::get(b.as_slice(), "a"), Some("1"));
        assert_eq!(Labels::get(b.as_slice(), "b"), Some("2"));
        assert_eq!(Labels::get(b.as_slice(), "c"), Some("3"));
        assert_eq!(Labels::get(b.as_slice(), "d"), None);
        let empty: &[(Box<str>, Box<str>)] = &[];
        assert_eq!(Labels::get(empty, "a"), None);
    }

    // ---- 4. LabelSelector conversion ----

    #[test]
    fn to_label_selector_mixed() {
        let ls = match parse("a=b,c in (y,x),!d,e,f notin (z),g==h").to_label_selector() {
            Ok(Some(ls)) => ls,
            other => panic!("{other:?}"),
        };
        assert_eq!(ls.match_labels, map(&[("a", "b"), ("g", "h")]));
        assert_eq!(
            ls.match_expressions,
            vec![
                LabelSelectorRequirement {
                    key: "c".into(),
                    operator: LabelSelectorOperator::In,
                    values: vec!["x".into(), "y".into()],
                },
                LabelSelectorRequirement {
                    key: "d".into(),
                    operator: LabelSelectorOperator::DoesNotExist,
                    values: vec![],
                },
                LabelSelectorRequirement { key: "e".into(), operator: LabelSelectorOperator::Exists, values: vec![] },
                LabelSelectorRequirement {
                    key: "f".into(),
                    operator: LabelSelectorOperator::NotIn,
                    values: vec!["z".into()],
                },
            ]
        );
        assert_eq!(
            serde_json::to_string(&ls).ok().as_deref(),
            Some(
                r#"{"matchLabels":{"a":"b","g":"h"},"matchExpressions":[{"key":"c","operator":"In","values":["x","y"]},{"key":"d","operator":"DoesNotExist"},{"key":"e","operator":"Exists"},{"key":"f","operator":"NotIn","values":["z"]}]}"#
            )
        );
    }

    #[test]
    fn to_label_selector_json() {
        let json = |s: &str| match parse(s).to_label_selector() {
            Ok(v) => serde_json::to_string(&v).unwrap_or_default(),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(json("queue=orders"), r#"{"matchLabels":{"queue":"orders"}}"#);
        assert_eq!(json(""), "null");
        assert_eq!(json("x in ()"), r#"{"matchExpressions":[{"key":"x","operator":"In","values":[""]}]}"#);
        assert_eq!(json("!x"), r#"{"matchExpressions":[{"key":"x","operator":"DoesNotExist"}]}"#);
        assert_eq!(json("x=a,x=b"), r#"{"matchLabels":{"x":"b"}}"#);
        assert_eq!(serde_json::to_string(&LabelSelector::default()).ok().as_deref(), Some("{}"));
    }

    #[test]
    fn to_label_selector_errors() {
        let e = |s: &str| parse(s).to_label_selector().map_err(|e| e.to_string());
        assert_eq!(e("x>1"), Err("\"gt\" isn't supported in label selectors".into()));
        assert_eq!(e("x<1"), Err("\"lt\" isn't supported in label selectors".into()));
        assert_eq!(e("a=b,x<1"), Err("\"lt\" isn't supported in label selectors".into()));
        assert_eq!(e("x!=1"), Err("\"!=\" is not a valid label selector operator".into()));
        assert_eq!(e("a!=1,b>2"), Err("\"!=\" is not a valid label selector operator".into()));
    }

    #[test]
    fn label_selector_deserialize_and_back() {
        let ls: LabelSelector = match serde_json::from_str(
            r#"{"matchLabels":{"app":"web"},"matchExpressions":[{"key":"tier","operator":"In","values":["b","a"]},{"key":"gone","operator":"DoesNotExist","values":null}]}"#,
        ) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        let sel = match Selector::from_label_selector(&ls) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(sel.to_string(), "app=web,!gone,tier in (a,b)");
        let nulls: LabelSelector = match serde_json::from_str(r#"{"matchLabels":null,"matchExpressions":null}"#) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(nulls, LabelSelector::default());
        assert!(matches!(Selector::from_label_selector(&nulls), Ok(s) if s.is_empty()));
        let bad = LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: LabelSelectorOperator::Exists,
                values: vec!["v".into()],
            }],
        };
        assert_eq!(
            Selector::from_label_selector(&bad).map_err(|e| e.to_string()),
            Err("values: Invalid value: [\"v\"]: values set must be empty for exists and does not exist".into())
        );
        let bad_in = LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "-k".into(),
                operator: LabelSelectorOperator::In,
                values: vec![],
            }],
        };
        assert_eq!(
            Selector::from_label_selector(&bad_in).map_err(|e| e.to_string()),
            Err(format!(
                "[key: Invalid value: \"-k\": {NAME_PART_REGEX_MSG}, values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty]"
            ))
        );
    }

    #[test]
    fn requirement_new() {
        let r = match Requirement::new("k", Operator::In, vec!["b".into(), "a".into(), "b".into()]) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.values(), ["a", "b"]);
        assert_eq!(r.to_string(), "k in (a,b)");
        assert_eq!(
            Requirement::new("k", Operator::Equals, vec!["a".into(), "b".into()]).map_err(|e| e.to_string()),
            Err("values: Invalid value: [\"a\",\"b\"]: exact-match compatibility requires one single value".into())
        );
        assert_eq!(
            Requirement::new("k", Operator::GreaterThan, vec![]).map_err(|e| e.to_string()),
            Err("values: Invalid value: []: for 'Gt', 'Lt' operators, exactly one value is required".into())
        );
        assert_eq!(Operator::DoesNotExist.to_string(), "!");
        assert_eq!(Operator::Exists.as_str(), "exists");
    }

    // ---- 5. ConvertSelectorToLabelsMap ----

    #[test]
    fn labels_map_ok() {
        let ok = |s: &str| match parse_labels_map(s) {
            Ok(m) => m,
            Err(e) => panic!("{s:?}: {e}"),
        };
        assert_eq!(ok("a=b,c=d"), map(&[("a", "b"), ("c", "d")]));
        assert_eq!(ok("a="), map(&[("a", "")]));
        assert_eq!(ok(""), BTreeMap::new());
        assert_eq!(ok(" a = b "), map(&[("a", "b")]));
        assert_eq!(ok("a=1,a=2"), map(&[("a", "2")]));
        assert_eq!(ok("example.com/x=Y_z"), map(&[("example.com/x", "Y_z")]));
    }

    #[test]
    fn labels_map_errors() {
        let e = |s: &str| parse_labels_map(s).map_err(|e| e.to_string());
        assert_eq!(e("a"), Err("invalid selector: [a]".into()));
        assert_eq!(e("a=b=c"), Err("invalid selector: [a b c]".into()));
        assert_eq!(e("a=b,"), Err("invalid selector: []".into()));
        assert_eq!(e(" "), Err("invalid selector: [ ]".into()));
        assert_eq!(e("-a=b"), Err(format!("<nil>: Invalid value: \"-a\": {NAME_PART_REGEX_MSG}")));
        assert_eq!(e("a=b!"), Err(format!("[a]: Invalid value: \"b!\": {VALUE_REGEX_MSG}")));
        assert_eq!(
            e("=b"),
            Err(format!("<nil>: Invalid value: \"\": name part must be non-empty; {NAME_PART_REGEX_MSG}"))
        );
        assert_eq!(e("a=b,c=d=e"), Err("invalid selector: [c d e]".into()));
    }
}
