//! Mapping files: how the columns of a historical export become event fields (DESIGN §2).
//!
//! A mapping is TOML: an optional `[source]` table (format, delimiter, header, default zone) and
//! a `[fields]` table with one entry per event field. A field takes its text from a `column`,
//! from several `columns` joined by `join` (time assembled from year, month, day and `HH:MM`),
//! from a `constant`, or from the `row_number`; then an optional value `map` (with `split` for
//! cells holding several codes: the first code the map knows wins), a `default` for empty
//! cells, and per-field parsing: `decimals` for amounts in major units (exact decimal
//! arithmetic, so `410.45000000000005` yuan is 41045 fen), `negative` for a sign column
//! (refund rows), `format` and `timezone` for times. A field with no entry reads the column of
//! the same name if the header has one, so a CSV with the §2 column names needs no mapping.
//!
//! Settlement exports have one row per fee line: `[source] group_by` folds consecutive rows of
//! one settlement into one event, and the `items.*` fields (`items.code`, `items.quantity`, …,
//! written `"items.code"` or as an `items` sub-table of `[fields]`) make each row one of its
//! line items; see [`super::group`] for the rules.
//!
//! A mapping that names a column the header lacks is refused as a whole, listing the unknown
//! names against the header; a row that does not fit becomes a reject with a reason.

use std::collections::BTreeMap;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::convert::{FieldKind, FIELDS};

/// Why a mapping cannot be used; replay aborts with this message.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("cannot read mapping {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("mapping {path}: {message}")]
    Syntax { path: String, message: String },
    #[error("mapping: {0}")]
    Invalid(String),
    #[error("mapping refers to columns not in the header: {unknown} (the header has: {header})")]
    UnknownColumns { unknown: String, header: String },
}

/// `[source]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceSpec {
    /// `csv` or `jsonl`; detected from the content when absent.
    pub format: Option<String>,
    /// One character (`,`, `|`, `;`, `\t`); detected from the header when absent.
    pub delimiter: Option<String>,
    /// Whether the first row names the columns; without a header columns are named `1`, `2`, …
    pub header: bool,
    /// Zone of date-times that carry no offset: `+08:00`, `UTC`, or `Asia/Shanghai`.
    pub timezone: String,
    /// Columns whose values identify one event across several rows (`["setl_id"]`): consecutive
    /// rows with equal values fold into one event, one line item per row. Empty: one row, one
    /// event.
    pub group_by: Vec<String>,
    /// With `group_by`, how the rows' `amount_minor` make the event's: `sum` (the column is a
    /// per-line fee) or `first` (every row repeats the settlement's total).
    pub group_amount: GroupAmount,
}

/// How a folded event's amount comes from its rows' amounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupAmount {
    /// The sum over the rows: the amount column is each line's fee.
    #[default]
    Sum,
    /// The first row's: every row repeats the settlement's total.
    First,
}

impl Default for SourceSpec {
    fn default() -> Self {
        SourceSpec {
            format: None,
            delimiter: None,
            header: true,
            timezone: "+08:00".into(),
            group_by: Vec::new(),
            group_amount: GroupAmount::Sum,
        }
    }
}

/// Sign of an amount taken from another column: negative when that column holds one of `values`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignSpec {
    pub column: String,
    pub values: Vec<String>,
}

/// How one event field is read.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FieldSpec {
    pub column: Option<String>,
    pub columns: Option<Vec<String>>,
    /// Separator placed between `columns` (default a space).
    pub join: Option<String>,
    pub constant: Option<String>,
    /// Use `<file name>#<row number>` (event_id of files that have none).
    pub row_number: bool,
    pub map: Option<BTreeMap<String, String>>,
    /// Cell holds several codes separated by this; the first one `map` knows is used. For
    /// `items.trace_codes`, every part is one code.
    pub split: Option<String>,
    /// Value used when the cell is empty.
    pub default: Option<String>,
    /// Amounts (`amount_minor`, `items.amount_minor`): the text is in major units with this many
    /// decimal places to the minor unit.
    pub decimals: Option<u32>,
    pub negative: Option<SignSpec>,
    /// Times: `rfc3339`, `epoch_s`, `epoch_ms`, or a strftime pattern such as `%Y-%m-%d %H:%M:%S`.
    pub format: Option<String>,
    /// Times: zone for this field, overriding `[source] timezone`.
    pub timezone: Option<String>,
}

/// The file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    #[serde(default)]
    pub source: SourceSpec,
    /// Event fields by name; item fields as `items.<name>`, from either spelling in the TOML.
    #[serde(default, deserialize_with = "fields_table")]
    pub fields: BTreeMap<String, FieldSpec>,
}

/// `[fields]`, where `items.code = { … }` (a sub-table in TOML) and `"items.code" = { … }` (a
/// quoted key) both become the entry `items.code`.
fn fields_table<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, FieldSpec>, D::Error> {
    struct Fields;
    impl<'de> Visitor<'de> for Fields {
        type Value = BTreeMap<String, FieldSpec>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a table of field names")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(name) = m.next_key::<String>()? {
                if name == "items" {
                    for (sub, spec) in m.next_value::<BTreeMap<String, FieldSpec>>()? {
                        out.insert(format!("items.{sub}"), spec);
                    }
                } else {
                    out.insert(name, m.next_value::<FieldSpec>()?);
                }
            }
            Ok(out)
        }
    }
    d.deserialize_map(Fields)
}

impl MappingFile {
    pub fn load(path: &std::path::Path) -> Result<MappingFile, MappingError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| MappingError::Read {
            path: name.clone(),
            source,
        })?;
        MappingFile::parse(&text, &name)
    }

    pub fn parse(text: &str, name: &str) -> Result<MappingFile, MappingError> {
        let file: MappingFile = toml::from_str(text).map_err(|e| MappingError::Syntax {
            path: name.into(),
            message: e.to_string(),
        })?;
        for (field, spec) in &file.fields {
            let kind = FIELDS
                .iter()
                .find(|(n, _)| n == field)
                .map(|(_, k)| *k)
                .ok_or_else(|| {
                    MappingError::Invalid(format!("fields.{field}: not an event field"))
                })?;
            let sources = [
                spec.column.is_some(),
                spec.columns.is_some(),
                spec.constant.is_some(),
                spec.row_number,
            ]
            .iter()
            .filter(|s| **s)
            .count();
            if sources != 1 {
                return Err(MappingError::Invalid(format!(
                    "fields.{field}: give exactly one of column, columns, constant, row_number"
                )));
            }
            if spec.decimals.is_some() && kind != FieldKind::Amount {
                return Err(MappingError::Invalid(format!(
                    "fields.{field}: decimals applies to amount_minor only (and items.amount_minor)"
                )));
            }
            if spec.format.is_some() && kind != FieldKind::Time {
                return Err(MappingError::Invalid(format!(
                    "fields.{field}: format applies to ts only"
                )));
            }
        }
        if file.source.group_by.iter().any(String::is_empty) {
            return Err(MappingError::Invalid(
                "source.group_by: column names must not be empty".into(),
            ));
        }
        if let Some(d) = &file.source.delimiter {
            if d.len() != 1 {
                return Err(MappingError::Invalid(
                    "source.delimiter: must be one character".into(),
                ));
            }
        }
        Ok(file)
    }

    /// Every column name the mapping reads.
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.source.group_by.iter().map(String::as_str).collect();
        for spec in self.fields.values() {
            out.extend(spec.column.as_deref());
            out.extend(spec.columns.iter().flatten().map(String::as_str));
            out.extend(spec.negative.as_ref().map(|n| n.column.as_str()));
        }
        out
    }
}
