//! A small table type rendered as Markdown, CSV and JSON (numbers stay numbers).

use serde::Serialize;

use crate::report::collect::Stat;

/// How a column's numbers are printed (JSON keeps the raw values).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Fmt {
    /// Fractions shown in % with 2 decimals (values stored in [0, 1]).
    Pct,
    /// Values already in %, 2 decimals (the paper's own numbers).
    PaperPct,
    /// Three significant digits in scientific notation.
    Sci,
    /// Fixed decimals.
    Fixed(usize),
    /// Integers / text.
    Plain,
}

/// One cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Text(String),
    Num(f64),
    Stat(Stat),
    Missing,
}

impl From<Option<Stat>> for Value {
    fn from(s: Option<Stat>) -> Self {
        s.map_or(Value::Missing, Value::Stat)
    }
}
impl From<Option<f64>> for Value {
    fn from(s: Option<f64>) -> Self {
        s.map_or(Value::Missing, Value::Num)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

/// A column header and its format.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    pub name: String,
    pub fmt: Fmt,
}

/// A titled table.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    /// File stem (`table8-accuracy-base`).
    pub id: String,
    pub title: String,
    /// What the numbers are and where the paper's come from.
    pub caption: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

fn fmt_num(x: f64, fmt: Fmt) -> String {
    if !x.is_finite() {
        return "NaN".into();
    }
    match fmt {
        Fmt::Pct => format!("{:.2}", 100.0 * x),
        Fmt::PaperPct => format!("{x:.2}"),
        Fmt::Sci => {
            if x == 0.0 {
                "0".into()
            } else if (1e-2..1e4).contains(&x.abs()) {
                let digits = (2 - x.abs().log10().floor() as i32).max(0) as usize;
                format!("{x:.digits$}")
            } else {
                format!("{x:.2e}")
            }
        }
        Fmt::Fixed(d) => format!("{x:.d$}"),
        Fmt::Plain => format!("{x}"),
    }
}

/// A cell as text in `fmt`: `mean ± std` for a statistic over several seeds.
pub(crate) fn render(v: &Value, fmt: Fmt) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Num(x) => fmt_num(*x, fmt),
        Value::Stat(s) => match s.std {
            Some(sd) => format!("{} ± {}", fmt_num(s.mean, fmt), fmt_num(sd, fmt)),
            None => fmt_num(s.mean, fmt),
        },
        Value::Missing => "–".into(),
    }
}

impl Table {
    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Starts a table with `columns` (name, format).
    pub fn new(id: &str, title: &str, caption: &str, columns: &[(&str, Fmt)]) -> Self {
        Table {
            id: id.to_string(),
            title: title.to_string(),
            caption: caption.to_string(),
            columns: columns
                .iter()
                .map(|(n, f)| Column {
                    name: n.to_string(),
                    fmt: *f,
                })
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (padded with missing cells to the column count).
    pub fn push(&mut self, mut row: Vec<Value>) {
        row.resize(self.columns.len(), Value::Missing);
        self.rows.push(row);
    }

    /// The cells as text.
    pub fn text_rows(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|r| {
                r.iter()
                    .zip(&self.columns)
                    .map(|(v, c)| render(v, c.fmt))
                    .collect()
            })
            .collect()
    }

    /// GitHub Markdown: a heading, the caption, the table.
    pub fn to_markdown(&self) -> String {
        let mut s = format!("### {}\n\n{}\n\n", self.title, self.caption);
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        s.push_str(&format!("| {} |\n", names.join(" | ")));
        s.push_str(&format!("|{}\n", "---|".repeat(names.len())));
        for r in self.text_rows() {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        s.push('\n');
        s
    }

    /// CSV (RFC 4180 through `csv::Writer`: fields with a comma, quote, `\r` or `\n` quoted):
    /// a statistic becomes three columns (`name`, `name std`, `name n`); text stays text.
    pub fn to_csv(&self) -> String {
        let has_stat: Vec<bool> = (0..self.columns.len())
            .map(|j| self.rows.iter().any(|r| matches!(r[j], Value::Stat(_))))
            .collect();
        let mut header = Vec::new();
        for (c, &st) in self.columns.iter().zip(&has_stat) {
            header.push(c.name.clone());
            if st {
                header.push(format!("{} std", c.name));
                header.push(format!("{} n", c.name));
            }
        }
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        // Writing into a Vec cannot fail, and every record has the header's length.
        let write = |w: &mut csv::Writer<Vec<u8>>, cells: &[String]| {
            w.write_record(cells).expect("CSV into memory");
        };
        write(&mut w, &header);
        for r in &self.rows {
            let mut cells = Vec::new();
            for (v, &st) in r.iter().zip(&has_stat) {
                match v {
                    Value::Text(t) => cells.push(t.clone()),
                    Value::Num(x) => cells.push(format!("{x}")),
                    Value::Stat(s) => cells.push(format!("{}", s.mean)),
                    Value::Missing => cells.push(String::new()),
                }
                if st {
                    match v {
                        Value::Stat(s) => {
                            cells.push(s.std.map_or(String::new(), |x| format!("{x}")));
                            cells.push(format!("{}", s.n));
                        }
                        _ => cells.extend([String::new(), String::new()]),
                    }
                }
            }
            write(&mut w, &cells);
        }
        let bytes = w.into_inner().expect("CSV into memory");
        String::from_utf8(bytes).expect("CSV of UTF-8 strings is UTF-8")
    }

    /// An HTML `<table>` with the title and caption.
    pub fn to_html(&self) -> String {
        let mut s = format!(
            "<h3 id=\"{}\">{}</h3>\n<p class=\"caption\">{}</p>\n<table>\n<thead><tr>",
            html_escape(&self.id),
            html_escape(&self.title),
            html_escape(&self.caption)
        );
        for c in &self.columns {
            s.push_str(&format!("<th>{}</th>", html_escape(&c.name)));
        }
        s.push_str("</tr></thead>\n<tbody>\n");
        for r in self.text_rows() {
            s.push_str("<tr>");
            for (cell, col) in r.iter().zip(&self.columns) {
                if col.fmt == Fmt::Plain {
                    s.push_str(&format!("<td class=\"t\">{}</td>", html_escape(cell)));
                } else {
                    s.push_str(&format!("<td>{}</td>", html_escape(cell)));
                }
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</tbody>\n</table>\n");
        s
    }
}

/// Escapes `&`, `<`, `>`, `"`.
pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_stats_percent_and_missing() {
        let mut t = Table::new("t", "T", "c", &[("m", Fmt::Plain), ("acc", Fmt::Pct)]);
        t.push(vec![
            "ft".into(),
            Value::Stat(Stat::of([0.5, 0.7]).unwrap()),
        ]);
        t.push(vec!["lp".into()]);
        let md = t.to_markdown();
        assert!(md.contains("| ft | 60.00 ± 14.14 |"), "{md}");
        assert!(md.contains("| lp | – |"), "{md}");
        let csv = t.to_csv();
        assert!(csv.starts_with("m,acc,acc std,acc n\n"), "{csv}");
        assert!(csv.contains("ft,0.6,0.1414"), "{csv}");
        let html = t.to_html();
        assert!(html.contains("<td>60.00 ± 14.14</td>"), "{html}");
        assert!(html.contains("<td class=\"t\">ft</td>"), "{html}");
    }

    /// Text with commas, quotes, `\r` and `\n` survives a round trip through a CSV reader.
    #[test]
    fn csv_quotes_every_special_character() {
        let mut t = Table::new(
            "t",
            "T",
            "c",
            &[("method", Fmt::Plain), ("note", Fmt::Plain)],
        );
        let tricky = ["a,b", "say \"hi\"", "line\rreturn", "two\nlines", "plain"];
        for (i, x) in tricky.iter().enumerate() {
            t.push(vec![
                Value::Text(format!("m{i}")),
                Value::Text(x.to_string()),
            ]);
        }
        let csv = t.to_csv();
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        let got: Vec<String> = r.records().map(|rec| rec.unwrap()[1].to_string()).collect();
        assert_eq!(got, tricky, "{csv:?}");
    }

    #[test]
    fn scientific_format_keeps_three_significant_digits() {
        assert_eq!(fmt_num(0.3664, Fmt::Sci), "0.366");
        assert_eq!(fmt_num(24.71, Fmt::Sci), "24.7");
        assert_eq!(fmt_num(81400.0, Fmt::Sci), "8.14e4");
        assert_eq!(fmt_num(0.0014, Fmt::Sci), "1.40e-3");
    }
}
