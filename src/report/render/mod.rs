//! How the report's tables are rendered: the [`table::Table`] type with its Markdown, CSV, JSON
//! and HTML forms.

pub mod table;
