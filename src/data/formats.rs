//! Low-level readers for the original distribution formats of docs/method.md §4 and for user data files:
//! JSONL (one object per line), CSV (header row, standard `"` quoting), TSV (header row or
//! positional columns, **quoting disabled**) and plain text (one example per line).
//!
//! GLUE's TSV files contain unescaped `"` inside sentences (e.g. MRPC, SST-2), so TSV is read
//! with quoting off: a tab always separates fields and a line break always ends a record. CSV
//! keeps standard quoting, so its fields may hold commas, tabs and line breaks.
//!
//! Every reader accepts a UTF-8 byte-order mark and CRLF line endings, skips blank lines, and
//! reports 1-based line numbers (a multi-line CSV record reports the line it starts on).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Example, LabelMap};
use crate::error::{Error, Result};

/// On-disk format of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Comma-separated, header row, standard `"` quoting (RFC 4180).
    Csv,
    /// Tab-separated, header row, no quoting (GLUE style).
    Tsv,
    /// One JSON object per line; fields are keys (a dotted key `a.b` reaches into nested objects).
    Jsonl,
    /// One text per line, no columns and no labels.
    Text,
}

impl FileFormat {
    /// The format implied by a file extension (case-insensitive): `.csv`, `.tsv`,
    /// `.jsonl`/`.json`/`.ndjson`, `.txt`; `None` for anything else.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(FileFormat::Csv),
            "tsv" => Some(FileFormat::Tsv),
            "jsonl" | "json" | "ndjson" => Some(FileFormat::Jsonl),
            "txt" => Some(FileFormat::Text),
            _ => None,
        }
    }
}

impl FromStr for FileFormat {
    type Err = Error;

    /// Parses `csv`, `tsv`, `jsonl` (or `json`), `text` (or `txt`), ignoring ASCII case.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on field `format` for any other name.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(FileFormat::Csv),
            "tsv" => Ok(FileFormat::Tsv),
            "jsonl" | "json" | "ndjson" => Ok(FileFormat::Jsonl),
            "text" | "txt" => Ok(FileFormat::Text),
            _ => Err(Error::InvalidArgument {
                field: "format".into(),
                reason: format!("unknown data format `{s}` (expected csv, tsv, jsonl or text)"),
            }),
        }
    }
}

/// Generic user data: a CSV (header) / TSV (header) / JSONL file with named text column(s) and
/// an optional label column, or a plain text file with one text per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSpec {
    /// The data file.
    pub path: PathBuf,
    /// Its format; `None` infers it from the extension ([`FileFormat::from_path`]).
    pub format: Option<FileFormat>,
    /// Column (CSV/TSV header name) or JSON key of the first text. Ignored for text files.
    pub text_a: String,
    /// Column or key of the second text of a pair task.
    pub text_b: Option<String>,
    /// Column or key of the label; `None` reads the examples unlabelled.
    pub label: Option<String>,
}

impl FileSpec {
    /// A spec for a single-text, unlabelled file whose format follows from its extension.
    pub fn new(path: impl Into<PathBuf>, text_a: impl Into<String>) -> Self {
        FileSpec {
            path: path.into(),
            format: None,
            text_a: text_a.into(),
            text_b: None,
            label: None,
        }
    }

    /// The explicit format, else the one implied by the extension.
    ///
    /// # Errors
    /// [`Error::UnknownFormat`] when neither gives one.
    pub fn resolved_format(&self) -> Result<FileFormat> {
        self.format
            .or_else(|| FileFormat::from_path(&self.path))
            .ok_or_else(|| Error::UnknownFormat {
                path: self.path.clone(),
            })
    }
}

/// Reads a user data file described by `spec`, mapping its labels to ids with `labels`.
///
/// Each row gives one [`Example`]; its label is `None` iff `spec.label` is `None`. With an open
/// `labels` map the file's new labels are added in sorted order (numerically if all are
/// integers); a fixed map rejects them.
///
/// # Errors
/// [`Error::MissingData`] (no such file), [`Error::UnknownFormat`], [`Error::EmptyData`] (no
/// rows), [`Error::MissingField`] (a named column or key is absent), [`Error::JsonLine`],
/// [`Error::Csv`], [`Error::Parse`] (wrong field count or type, empty label, invalid UTF-8),
/// [`Error::UnknownLabel`] (fixed map), [`Error::InvalidArgument`] (`text_b` or `label` given for
/// a text file), [`Error::Io`].
pub fn read_file(spec: &FileSpec, labels: &mut LabelMap) -> Result<Vec<Example>> {
    let path = spec.path.as_path();
    let raws = match spec.resolved_format()? {
        FileFormat::Text => {
            for (field, given) in [("text_b", &spec.text_b), ("label", &spec.label)] {
                if given.is_some() {
                    return Err(Error::InvalidArgument {
                        field: field.into(),
                        reason: format!(
                            "{} is a text file: one text per line, no columns",
                            path.display()
                        ),
                    });
                }
            }
            read_lines(path)?
                .into_iter()
                .map(|(line, text)| RawExample {
                    line,
                    text_a: text,
                    text_b: None,
                    label: None,
                })
                .collect()
        }
        format => {
            let source = match format {
                FileFormat::Csv => Source::Csv,
                FileFormat::Tsv => Source::Tsv { header: true },
                _ => Source::Jsonl,
            };
            let cols = Columns {
                text_a: Col::Name(&spec.text_a),
                text_b: spec.text_b.as_deref().map(Col::Name),
                label: spec.label.as_deref().map(Col::Name),
            };
            collect(path, source, |rec| cols.read(rec).map(Some))?
        }
    };
    finish(path, raws, labels)
}

/// Reads a whole file as UTF-8 and strips a leading byte-order mark.
///
/// # Errors
/// [`Error::MissingData`] if the file does not exist, [`Error::Io`] on other I/O errors,
/// [`Error::Parse`] (with the line) on invalid UTF-8.
pub(crate) fn read_utf8(path: &Path) -> Result<String> {
    if super::embedded::is_embedded(path) {
        let bytes = super::embedded::read(path).ok_or_else(|| Error::MissingData {
            path: path.to_path_buf(),
        })?;
        return decode_utf8(path, bytes.to_vec());
    }
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::MissingData {
                path: path.to_path_buf(),
            }
        } else {
            Error::io(path, e)
        }
    })?;
    decode_utf8(path, bytes)
}

/// `bytes` as UTF-8 without a leading byte-order mark; invalid UTF-8 is an error naming its line.
fn decode_utf8(path: &Path, bytes: Vec<u8>) -> Result<String> {
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        Error::Parse {
            path: path.to_path_buf(),
            line,
            field: None,
            message: format!("invalid UTF-8 at byte {valid}"),
        }
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

/// The non-blank lines of a text file as (1-based line number, line without its `\r\n`/`\n`).
///
/// # Errors
/// As [`read_utf8`].
pub(crate) fn read_lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let text = read_utf8(path)?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| (i + 1, line.to_string()))
        .collect())
}

/// One example before its label is mapped to an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawExample {
    /// 1-based line of the record, for errors.
    pub line: usize,
    pub text_a: String,
    pub text_b: Option<String>,
    /// The label as written (trimmed), `None` when unlabelled.
    pub label: Option<String>,
}

/// Maps raw labels to ids and builds the examples.
///
/// With an open `labels` map the labels not yet in it are added first, sorted (numerically if all
/// parse as integers), so that ids do not depend on row order.
///
/// # Errors
/// [`Error::EmptyData`] if `raws` is empty; [`Error::UnknownLabel`] for a label outside a fixed
/// map.
pub(crate) fn finish(
    path: &Path,
    raws: Vec<RawExample>,
    labels: &mut LabelMap,
) -> Result<Vec<Example>> {
    if raws.is_empty() {
        return Err(Error::EmptyData {
            path: path.to_path_buf(),
        });
    }
    if !labels.is_fixed() {
        let mut new: Vec<&str> = raws
            .iter()
            .filter_map(|r| r.label.as_deref())
            .filter(|l| labels.id(l).is_none())
            .collect();
        new.sort_unstable();
        new.dedup();
        let numeric: Option<Vec<i64>> = new.iter().map(|l| l.parse().ok()).collect();
        if let Some(values) = numeric {
            let mut pairs: Vec<(i64, &str)> = values.into_iter().zip(new).collect();
            pairs.sort_unstable();
            new = pairs.into_iter().map(|(_, l)| l).collect();
        }
        for label in new {
            labels.insert(label);
        }
    }
    raws.into_iter()
        .map(|raw| {
            let label = match raw.label {
                None => None,
                Some(label) => Some(labels.id(&label).ok_or_else(|| Error::UnknownLabel {
                    path: path.to_path_buf(),
                    line: raw.line,
                    label,
                    known: labels.names().to_vec(),
                })?),
            };
            Ok(Example {
                text_a: raw.text_a,
                text_b: raw.text_b,
                label,
            })
        })
        .collect()
}

/// Where a field lives in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Col<'a> {
    /// A header column, or a JSON key (a dotted key `a.b` reaches into nested objects when the
    /// object has no key `a.b`).
    Name(&'a str),
    /// A 0-based column of a headerless table, with the name to use in errors.
    Index(usize, &'a str),
}

impl Col<'_> {
    /// The name used in errors: the key, or `name (column k)` with k 1-based.
    fn describe(self) -> String {
        match self {
            Col::Name(name) => name.to_string(),
            Col::Index(i, name) => format!("{name} (column {})", i + 1),
        }
    }
}

/// Read access to one record (a JSON object or a table row) of a data file.
pub(crate) trait Record {
    /// 1-based line the record starts on.
    fn line(&self) -> usize;
    /// The file, for errors.
    fn path(&self) -> &Path;
    /// Whether the field exists and is not JSON `null`.
    fn has(&self, col: Col) -> bool;
    /// A text field, unchanged.
    ///
    /// # Errors
    /// [`Error::MissingField`] if absent, [`Error::Parse`] if not a string.
    fn text(&self, col: Col) -> Result<String>;
    /// A label field as a trimmed string (JSON bools as `true`/`false`, integers in decimal);
    /// `None` for JSON `null` or a blank value.
    ///
    /// # Errors
    /// [`Error::MissingField`] if absent, [`Error::Parse`] for arrays and objects.
    fn label(&self, col: Col) -> Result<Option<String>>;

    /// A [`Error::Parse`] at this record.
    fn parse_error(&self, col: Option<Col>, message: String) -> Error {
        Error::Parse {
            path: self.path().to_path_buf(),
            line: self.line(),
            field: col.map(Col::describe),
            message,
        }
    }

    /// A [`Error::MissingField`] at this record.
    fn missing(&self, col: Col) -> Error {
        Error::MissingField {
            path: self.path().to_path_buf(),
            line: self.line(),
            field: col.describe(),
        }
    }
}

/// The text and label fields of a plain (template-free) task or user file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Columns<'a> {
    pub text_a: Col<'a>,
    pub text_b: Option<Col<'a>>,
    pub label: Option<Col<'a>>,
}

impl Columns<'_> {
    /// Reads one record; a `label` column that is null or blank is an error.
    pub(crate) fn read(&self, rec: &dyn Record) -> Result<RawExample> {
        Ok(RawExample {
            line: rec.line(),
            text_a: rec.text(self.text_a)?,
            text_b: self.text_b.map(|col| rec.text(col)).transpose()?,
            label: self.label.map(|col| required_label(rec, col)).transpose()?,
        })
    }
}

/// A label that must be present: null or blank is an [`Error::Parse`] naming the field.
pub(crate) fn required_label(rec: &dyn Record, col: Col) -> Result<String> {
    rec.label(col)?
        .ok_or_else(|| rec.parse_error(Some(col), "null or empty label".into()))
}

/// A file format seen as records with fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row and standard quoting.
    Csv,
    /// TSV without quoting, with or without a header row.
    Tsv { header: bool },
}

/// Reads every record of `path` through `f`; `Ok(None)` from `f` skips the record.
///
/// # Errors
/// Those of the readers ([`Error::MissingData`], [`Error::JsonLine`], [`Error::Csv`],
/// [`Error::Parse`], ...) and of `f`.
pub(crate) fn collect<F>(path: &Path, source: Source, mut f: F) -> Result<Vec<RawExample>>
where
    F: FnMut(&dyn Record) -> Result<Option<RawExample>>,
{
    let mut out = Vec::new();
    match source {
        Source::Jsonl => for_each_object(path, |rec| {
            out.extend(f(rec)?);
            Ok(())
        })?,
        Source::Csv | Source::Tsv { .. } => {
            let (delimiter, quoting, header) = match source {
                Source::Tsv { header } => (b'\t', false, header),
                _ => (b',', true, true),
            };
            for_each_row(path, delimiter, quoting, header, |rec| {
                out.extend(f(rec)?);
                Ok(())
            })?;
        }
    }
    Ok(out)
}

/// Streams the objects of a JSONL file through `f`, skipping blank lines.
///
/// # Errors
/// [`Error::JsonLine`] on invalid JSON, [`Error::Parse`] on a line that is not an object, those
/// of [`read_utf8`] and of `f`.
fn for_each_object<F>(path: &Path, mut f: F) -> Result<()>
where
    F: FnMut(&dyn Record) -> Result<()>,
{
    let text = read_utf8(path)?;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|source| Error::JsonLine {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
        let Value::Object(object) = value else {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                field: None,
                message: format!("expected a JSON object, found {}", json_kind(&value)),
            });
        };
        f(&JsonRecord {
            path,
            line: i + 1,
            object: &object,
        })?;
    }
    Ok(())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One object of a JSONL file.
struct JsonRecord<'a> {
    path: &'a Path,
    line: usize,
    object: &'a Map<String, Value>,
}

impl JsonRecord<'_> {
    fn get(&self, col: Col) -> Option<&Value> {
        let Col::Name(key) = col else {
            return None;
        };
        if let Some(value) = self.object.get(key) {
            return Some(value);
        }
        let mut parts = key.split('.');
        let mut value = self.object.get(parts.next()?)?;
        for part in parts {
            value = value.as_object()?.get(part)?;
        }
        Some(value)
    }
}

impl Record for JsonRecord<'_> {
    fn line(&self) -> usize {
        self.line
    }

    fn path(&self) -> &Path {
        self.path
    }

    fn has(&self, col: Col) -> bool {
        self.get(col).is_some_and(|v| !v.is_null())
    }

    fn text(&self, col: Col) -> Result<String> {
        match self.get(col) {
            None => Err(self.missing(col)),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(self.parse_error(
                Some(col),
                format!("expected a string, found {}", json_kind(other)),
            )),
        }
    }

    fn label(&self, col: Col) -> Result<Option<String>> {
        let label = match self.get(col) {
            None => return Err(self.missing(col)),
            Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => match n.as_f64() {
                // A label written as 1.0 means class 1; keep other floats as written.
                Some(x) if n.is_f64() && x.fract() == 0.0 && x.abs() < 1e15 => {
                    format!("{}", x as i64)
                }
                _ => n.to_string(),
            },
            Some(other) => {
                return Err(self.parse_error(
                    Some(col),
                    format!(
                        "expected a label string, number or boolean, found {}",
                        json_kind(other)
                    ),
                ))
            }
        };
        Ok(Some(label).filter(|l| !l.is_empty()))
    }
}

/// Streams the data rows of a delimited file through `f`. Every data row must have as many
/// fields as the header (or, without a header, as the first row).
///
/// Rows are not collected: SST-2's 67k rows are parsed in one pass with one reused buffer.
///
/// # Errors
/// [`Error::Csv`] from the CSV parser, [`Error::Parse`] on a wrong field count, those of
/// [`read_utf8`] and of `f`.
fn for_each_row<F>(path: &Path, delimiter: u8, quoting: bool, header: bool, mut f: F) -> Result<()>
where
    F: FnMut(&dyn Record) -> Result<()>,
{
    let text = read_utf8(path)?;
    // Headers are handled here, not by the csv crate, so that short rows get our error (naming
    // the line and field) rather than the crate's.
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(quoting)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut record = csv::StringRecord::new();
    let mut lines = LineCounter::new(text.as_bytes());
    let mut columns: Option<(usize, HashMap<String, usize>)> = None;
    let mut width: Option<(usize, &str)> = None;
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(source) => {
                let byte = source
                    .position()
                    .unwrap_or_else(|| reader.position())
                    .byte();
                return Err(Error::Csv {
                    path: path.to_path_buf(),
                    line: lines.line_at(byte),
                    source,
                });
            }
        }
        let line = lines.line_at(record.position().map_or(0, |p| p.byte()));
        if header && columns.is_none() {
            let mut names = HashMap::new();
            for (i, name) in record.iter().enumerate() {
                names.entry(name.trim().to_string()).or_insert(i);
            }
            columns = Some((line, names));
            width = Some((record.len(), "as in the header"));
            continue;
        }
        let (expected, what) = *width.get_or_insert((record.len(), "as in the first row"));
        let row = TableRow {
            path,
            line,
            header: columns.as_ref().map(|(line, names)| (*line, names)),
            record: &record,
        };
        if record.len() != expected {
            return Err(row.parse_error(
                None,
                format!("{} fields, expected {expected} ({what})", record.len()),
            ));
        }
        f(&row)?;
    }
}

/// Turns byte offsets of csv records into 1-based line numbers.
///
/// The csv crate's own `Position::line` is off after CRLF line endings and skipped blank lines,
/// and a record's `Position::byte` points at the line terminators skipped before it; so lines
/// are counted here, from the record's first byte.
struct LineCounter<'t> {
    text: &'t [u8],
    /// Bytes before `offset` have been counted ...
    offset: usize,
    /// ... and `offset` is on this line.
    line: usize,
}

impl<'t> LineCounter<'t> {
    fn new(text: &'t [u8]) -> Self {
        LineCounter {
            text,
            offset: 0,
            line: 1,
        }
    }

    /// The line of the first byte at or after `byte` that is not a line terminator.
    fn line_at(&mut self, byte: u64) -> usize {
        let len = self.text.len();
        let mut start = usize::try_from(byte).map_or(len, |b| b.min(len));
        while start < len && matches!(self.text[start], b'\r' | b'\n') {
            start += 1;
        }
        if start < self.offset {
            // Records arrive in order; restart only if one ever does not.
            self.offset = 0;
            self.line = 1;
        }
        let newlines = self.text[self.offset..start]
            .iter()
            .filter(|&&b| b == b'\n');
        self.line += newlines.count();
        self.offset = start;
        self.line
    }
}

/// One data row of a CSV/TSV file.
struct TableRow<'a> {
    path: &'a Path,
    /// The header's line and its name → column index map (first occurrence of a repeated
    /// name); `None` if headerless.
    header: Option<(usize, &'a HashMap<String, usize>)>,
    /// 1-based line the record starts on.
    line: usize,
    record: &'a csv::StringRecord,
}

impl TableRow<'_> {
    fn get(&self, col: Col) -> Result<&str> {
        let index = match (col, self.header) {
            (Col::Index(i, _), _) => i,
            (Col::Name(name), Some((header_line, columns))) => *columns
                .get(name.trim())
                .ok_or_else(|| Error::MissingField {
                    path: self.path.to_path_buf(),
                    line: header_line,
                    field: name.to_string(),
                })?,
            (Col::Name(_), None) => {
                return Err(
                    self.parse_error(Some(col), "a headerless table has no named columns".into())
                )
            }
        };
        self.record.get(index).ok_or_else(|| self.missing(col))
    }
}

impl Record for TableRow<'_> {
    fn line(&self) -> usize {
        self.line
    }

    fn path(&self) -> &Path {
        self.path
    }

    fn has(&self, col: Col) -> bool {
        self.get(col).is_ok()
    }

    fn text(&self, col: Col) -> Result<String> {
        self.get(col).map(str::to_string)
    }

    fn label(&self, col: Col) -> Result<Option<String>> {
        let label = self.get(col)?.trim();
        Ok((!label.is_empty()).then(|| label.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::{temp_dir, write};

    fn spec(path: &Path, text_a: &str, text_b: Option<&str>, label: Option<&str>) -> FileSpec {
        FileSpec {
            path: path.to_path_buf(),
            format: None,
            text_a: text_a.into(),
            text_b: text_b.map(Into::into),
            label: label.map(Into::into),
        }
    }

    fn ex(a: &str, b: Option<&str>, label: Option<usize>) -> Example {
        Example {
            text_a: a.into(),
            text_b: b.map(Into::into),
            label,
        }
    }

    #[test]
    fn format_from_extension_and_name() {
        assert_eq!(
            FileFormat::from_path(Path::new("a/b.CSV")),
            Some(FileFormat::Csv)
        );
        assert_eq!(
            FileFormat::from_path(Path::new("b.json")),
            Some(FileFormat::Jsonl)
        );
        assert_eq!(
            FileFormat::from_path(Path::new("b.txt")),
            Some(FileFormat::Text)
        );
        assert_eq!(FileFormat::from_path(Path::new("b.parquet")), None);
        assert_eq!("TSV".parse::<FileFormat>().unwrap(), FileFormat::Tsv);
        assert!("xml".parse::<FileFormat>().is_err());
        let err = read_file(&FileSpec::new("x.parquet", "t"), &mut LabelMap::open()).unwrap_err();
        assert!(matches!(err, Error::UnknownFormat { .. }), "{err}");
    }

    #[test]
    fn csv_with_bom_crlf_and_quoted_fields() {
        let dir = temp_dir("csv_with_bom_crlf_and_quoted_fields");
        let path = write(
            &dir,
            "d.csv",
            "\u{feff}label,text,other\r\n\
             pos,\"a, b\tc\",x\r\n\
             neg,\"line one\r\nline \"\"two\"\"\",y\r\n\
             \r\n\
             pos,plain,z\r\n",
        );
        let mut labels = LabelMap::open();
        let got = read_file(&spec(&path, "text", None, Some("label")), &mut labels).unwrap();
        assert_eq!(
            labels.names(),
            ["neg", "pos"],
            "new labels are added sorted"
        );
        assert_eq!(
            got,
            vec![
                ex("a, b\tc", None, Some(1)),
                ex("line one\r\nline \"two\"", None, Some(0)),
                ex("plain", None, Some(1)),
            ]
        );
    }

    #[test]
    fn csv_error_lines_count_embedded_newlines() {
        let dir = temp_dir("csv_error_lines_count_embedded_newlines");
        let path = write(
            &dir,
            "d.csv",
            "text,label\r\n\"a\r\nb\",1\r\n\r\n\r\nc,2\r\n",
        );
        let mut labels = LabelMap::fixed(["1"]);
        let err = read_file(&spec(&path, "text", None, Some("label")), &mut labels).unwrap_err();
        match err {
            Error::UnknownLabel {
                path: p,
                line,
                label,
                known,
            } => {
                assert_eq!((p, line, label.as_str()), (path.clone(), 6, "2"));
                assert_eq!(known, ["1"]);
            }
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn tsv_keeps_quotes_literally() {
        let dir = temp_dir("tsv_keeps_quotes_literally");
        let path = write(
            &dir,
            "d.tsv",
            "s1\ts2\tlabel\n\" quoted start\tends \"\t1\nit 's \"x\t\"\t0\n",
        );
        let mut labels = LabelMap::fixed_with_aliases(&[("no", &["0"]), ("yes", &["1"])]);
        let got = read_file(&spec(&path, "s1", Some("s2"), Some("label")), &mut labels).unwrap();
        assert_eq!(
            got,
            vec![
                ex("\" quoted start", Some("ends \""), Some(1)),
                ex("it 's \"x", Some("\""), Some(0)),
            ]
        );
    }

    #[test]
    fn tsv_with_bom_and_crlf_reports_lines() {
        let dir = temp_dir("tsv_with_bom_and_crlf_reports_lines");
        let path = write(
            &dir,
            "d.tsv",
            "\u{feff}Quality\t#1 String\r\n1\ta \"b\r\n\r\n2\tc\r\n",
        );
        let mut labels = LabelMap::fixed(["0", "1"]);
        let err = read_file(
            &spec(&path, "#1 String", None, Some("Quality")),
            &mut labels,
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::UnknownLabel { line: 4, label, .. } if label == "2"),
            "{err}"
        );
        let path = write(&dir, "e.tsv", "\u{feff}Quality\t#1 String\r\n1\ta \"b\r\n");
        let got = read_file(
            &spec(&path, "#1 String", None, Some("Quality")),
            &mut labels,
        )
        .unwrap();
        assert_eq!(got, vec![ex("a \"b", None, Some(1))]);
    }

    #[test]
    fn tsv_wrong_field_count_names_the_line() {
        let dir = temp_dir("tsv_wrong_field_count_names_the_line");
        let path = write(&dir, "d.tsv", "text\tlabel\na\t1\nb\n");
        let err = read_file(
            &spec(&path, "text", None, Some("label")),
            &mut LabelMap::open(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Parse { line: 3, .. }), "{err}");
        assert!(err.to_string().contains("d.tsv, line 3"), "{err}");
    }

    #[test]
    fn missing_column_names_header_and_field() {
        let dir = temp_dir("missing_column_names_header_and_field");
        let path = write(&dir, "d.csv", "text,label\na,1\n");
        let err =
            read_file(&spec(&path, "sentence", None, None), &mut LabelMap::open()).unwrap_err();
        match &err {
            Error::MissingField {
                path: p,
                line,
                field,
            } => assert_eq!((p, *line, field.as_str()), (&path, 1, "sentence")),
            other => panic!("unexpected error {other}"),
        }
        assert!(
            err.to_string().contains("missing field `sentence`"),
            "{err}"
        );
    }

    #[test]
    fn jsonl_labels_strings_bools_numbers() {
        let dir = temp_dir("jsonl_labels_strings_bools_numbers");
        let path = write(
            &dir,
            "d.jsonl",
            "\u{feff}{\"q\": \"a\", \"p\": \"b\", \"label\": true}\r\n\
             \r\n\
             {\"q\": \"c\", \"p\": \"d\", \"label\": false}\r\n\
             {\"q\": \"e\", \"p\": \"f\", \"label\": \"True\"}\r\n\
             {\"q\": \"g\", \"p\": \"h\", \"label\": 0}\r\n\
             {\"q\": \"i\", \"p\": \"j\", \"label\": 1.0}\r\n",
        );
        let mut labels =
            LabelMap::fixed_with_aliases(&[("False", &["false", "0"]), ("True", &["true", "1"])]);
        let got = read_file(&spec(&path, "q", Some("p"), Some("label")), &mut labels).unwrap();
        let ids: Vec<_> = got.iter().map(|e| e.label).collect();
        assert_eq!(ids, [Some(1), Some(0), Some(1), Some(0), Some(1)]);
        assert_eq!(got[1], ex("c", Some("d"), Some(0)));
    }

    #[test]
    fn jsonl_nested_keys_by_dotted_path() {
        let dir = temp_dir("jsonl_nested_keys_by_dotted_path");
        let path = write(
            &dir,
            "d.jsonl",
            "{\"target\": {\"text\": \"x\"}, \"a.b\": \"y\"}\n",
        );
        let got = read_file(
            &spec(&path, "target.text", Some("a.b"), None),
            &mut LabelMap::open(),
        )
        .unwrap();
        assert_eq!(got, vec![ex("x", Some("y"), None)]);
    }

    #[test]
    fn malformed_json_names_file_and_line() {
        let dir = temp_dir("malformed_json_names_file_and_line");
        let path = write(&dir, "d.jsonl", "{\"t\": \"a\"}\n\n{\"t\": \"b\",}\n");
        let err = read_file(&spec(&path, "t", None, None), &mut LabelMap::open()).unwrap_err();
        assert!(matches!(err, Error::JsonLine { line: 3, .. }), "{err}");
        let shown = err.to_string();
        assert!(shown.contains("d.jsonl, line 3"), "{shown}");
        assert!(
            std::error::Error::source(&err).is_some(),
            "keeps the serde_json source"
        );
    }

    #[test]
    fn json_line_that_is_not_an_object() {
        let dir = temp_dir("json_line_that_is_not_an_object");
        let path = write(&dir, "d.jsonl", "[1, 2]\n");
        let err = read_file(&spec(&path, "t", None, None), &mut LabelMap::open()).unwrap_err();
        assert!(matches!(err, Error::Parse { line: 1, .. }), "{err}");
    }

    #[test]
    fn missing_json_field_names_file_line_and_field() {
        let dir = temp_dir("missing_json_field_names_file_line_and_field");
        let path = write(
            &dir,
            "d.jsonl",
            "{\"premise\": \"a\", \"hypothesis\": \"b\", \"label\": \"x\"}\n\
             {\"premise\": \"c\", \"label\": \"x\"}\n",
        );
        let err = read_file(
            &spec(&path, "premise", Some("hypothesis"), Some("label")),
            &mut LabelMap::open(),
        )
        .unwrap_err();
        match &err {
            Error::MissingField {
                path: p,
                line,
                field,
            } => assert_eq!((p, *line, field.as_str()), (&path, 2, "hypothesis")),
            other => panic!("unexpected error {other}"),
        }
        let shown = err.to_string();
        assert!(
            shown.contains("d.jsonl, line 2: missing field `hypothesis`"),
            "{shown}"
        );
    }

    #[test]
    fn wrong_json_type_and_null_label_are_errors() {
        let dir = temp_dir("wrong_json_type_and_null_label_are_errors");
        let path = write(&dir, "d.jsonl", "{\"t\": 3, \"l\": \"a\"}\n");
        let err = read_file(&spec(&path, "t", None, Some("l")), &mut LabelMap::open()).unwrap_err();
        assert!(
            matches!(&err, Error::Parse { field: Some(f), line: 1, .. } if f == "t"),
            "{err}"
        );
        assert!(err.to_string().contains("field `t`"), "{err}");
        let path = write(&dir, "e.jsonl", "{\"t\": \"x\", \"l\": null}\n");
        let err = read_file(&spec(&path, "t", None, Some("l")), &mut LabelMap::open()).unwrap_err();
        assert!(
            matches!(&err, Error::Parse { field: Some(f), .. } if f == "l"),
            "{err}"
        );
    }

    #[test]
    fn unknown_label_names_label_file_and_line() {
        let dir = temp_dir("unknown_label_names_label_file_and_line");
        let path = write(
            &dir,
            "d.jsonl",
            "{\"t\": \"a\", \"l\": \"entailment\"}\n{\"t\": \"b\", \"l\": \"maybe\"}\n",
        );
        let mut labels = LabelMap::fixed(["entailment", "contradiction"]);
        let err = read_file(&spec(&path, "t", None, Some("l")), &mut labels).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("d.jsonl, line 2: unknown label `maybe`"),
            "{shown}"
        );
        assert!(shown.contains("entailment, contradiction"), "{shown}");
    }

    #[test]
    fn empty_files_are_errors() {
        let dir = temp_dir("empty_files_are_errors");
        for name in ["e.csv", "e.tsv", "e.jsonl", "e.txt"] {
            let path = write(&dir, name, "");
            let err = read_file(&spec(&path, "t", None, None), &mut LabelMap::open()).unwrap_err();
            assert!(
                matches!(&err, Error::EmptyData { path: p } if p == &path),
                "{err}"
            );
        }
        // A header alone, or only blank lines, is no data either.
        let path = write(&dir, "h.csv", "t,l\r\n");
        let err = read_file(&spec(&path, "t", None, Some("l")), &mut LabelMap::open()).unwrap_err();
        assert!(matches!(err, Error::EmptyData { .. }), "{err}");
        let path = write(&dir, "b.jsonl", "\n  \n\r\n");
        let err = read_file(&spec(&path, "t", None, None), &mut LabelMap::open()).unwrap_err();
        assert!(matches!(err, Error::EmptyData { .. }), "{err}");
    }

    #[test]
    fn missing_file_is_missing_data() {
        let dir = temp_dir("missing_file_is_missing_data");
        let path = dir.join("nope.csv");
        let err = read_file(&spec(&path, "t", None, None), &mut LabelMap::open()).unwrap_err();
        assert!(
            matches!(&err, Error::MissingData { path: p } if p == &path),
            "{err}"
        );
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let dir = temp_dir("invalid_utf8_names_the_line");
        let path = dir.join("d.txt");
        std::fs::write(&path, b"ok\nbad \xff here\n").unwrap();
        let err = read_file(&spec(&path, "t", None, None), &mut LabelMap::open()).unwrap_err();
        assert!(matches!(err, Error::Parse { line: 2, .. }), "{err}");
    }

    #[test]
    fn text_files_one_example_per_line() {
        let dir = temp_dir("text_files_one_example_per_line");
        let path = write(
            &dir,
            "d.txt",
            "\u{feff}first line\r\n\r\nsecond, \"line\"\r\n",
        );
        let got = read_file(&spec(&path, "ignored", None, None), &mut LabelMap::open()).unwrap();
        assert_eq!(
            got,
            vec![
                ex("first line", None, None),
                ex("second, \"line\"", None, None)
            ]
        );
        let err = read_file(&spec(&path, "t", None, Some("l")), &mut LabelMap::open()).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    }

    #[test]
    fn open_map_orders_numeric_labels_numerically_and_grows() {
        let dir = temp_dir("open_map_orders_numeric_labels_numerically_and_grows");
        let path = write(&dir, "d.csv", "t,l\na,10\nb,2\nc,1\nd,2\n");
        let mut labels = LabelMap::open();
        let got = read_file(&spec(&path, "t", None, Some("l")), &mut labels).unwrap();
        assert_eq!(labels.names(), ["1", "2", "10"]);
        let ids: Vec<_> = got.iter().map(|e| e.label).collect();
        assert_eq!(ids, [Some(2), Some(1), Some(0), Some(1)]);
        // A second file keeps the ids and appends its new labels.
        let path = write(&dir, "e.csv", "t,l\ne,0\nf,2\n");
        let got = read_file(&spec(&path, "t", None, Some("l")), &mut labels).unwrap();
        assert_eq!(labels.names(), ["1", "2", "10", "0"]);
        assert_eq!(got[1].label, Some(1));
        labels.freeze();
        let path = write(&dir, "f.csv", "t,l\ng,3\n");
        let err = read_file(&spec(&path, "t", None, Some("l")), &mut labels).unwrap_err();
        assert!(matches!(err, Error::UnknownLabel { line: 2, .. }), "{err}");
    }
}
