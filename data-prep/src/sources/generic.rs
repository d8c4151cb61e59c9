//! Your own labelled data: JSON Lines, CSV or Parquet, with a column mapping in the recipe
//! (`columns = { text = "body", labels = "ttps", group = "report_id" }`), so a team brings
//! its reports without writing code. A mapped column missing from the file is an error
//! naming it and listing the columns present; a row with a missing or null text is a reject.

use std::path::Path;

use polars::prelude::*;
use serde_json::Value;

use super::{RawRow, Sink, SourceRead, json_lines};
use crate::config::{ColumnMap, SourceConfig, SourceKind};
use crate::error::{Error, Result};

fn columns(src: &SourceConfig) -> ColumnMap {
    src.columns.clone().unwrap_or_default()
}

/// Splits string labels on the configured separator (default `,`), trimming each.
fn split_labels(raw: &str, sep: &str) -> Vec<String> {
    raw.split(sep)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn json_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A JSON Lines file with mapped fields.
pub(super) fn jsonl(src: &SourceConfig, path: &Path, sink: &mut Sink<'_>) -> Result<SourceRead> {
    let map = columns(src);
    let sep = map.label_separator.clone().unwrap_or_else(|| ",".into());
    json_lines(
        src,
        path,
        Some(sink),
        |out, line, obj: serde_json::Map<String, Value>| {
            let field = |name: &Option<String>| name.as_ref().and_then(|n| obj.get(n));
            let Some(text) = obj.get(&map.text).and_then(json_text) else {
                let reason = format!("field `{}` is missing or not a string", map.text);
                out.reject(src, path, line, reason);
                return;
            };
            let labels = match field(&map.labels) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a.iter().filter_map(json_text).collect(),
                Some(Value::String(s)) => split_labels(s, &sep),
                Some(other) => {
                    let name = map.labels.as_deref().unwrap_or_default();
                    let reason = format!("field `{name}` is {other}, not a list or string");
                    out.reject(src, path, line, reason);
                    return;
                }
            };
            out.rows.push(RawRow {
                line,
                id: field(&map.id).and_then(json_text),
                group: field(&map.group).and_then(json_text),
                text,
                labels,
                summary: field(&map.summary).and_then(json_text),
                ..RawRow::default()
            });
        },
    )
}

/// A lazy scan of a CSV or Parquet file; each slice is collected on its own.
fn scan(src: &SourceConfig, path: &Path) -> Result<LazyFrame> {
    let ctx = format!("reading {}", path.display());
    let pl_path = PlRefPath::try_from_path(path).map_err(|e| Error::polars(ctx.clone(), e))?;
    // Opening first gives a plain "no such file" error naming the path.
    std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    match src.kind {
        SourceKind::Csv => LazyCsvReader::new(pl_path)
            .with_has_header(true)
            .with_infer_schema_length(Some(10_000))
            .finish(),
        _ => LazyFrame::scan_parquet(pl_path, ScanArgsParquet::default()),
    }
    .map_err(|e| Error::polars(ctx, e))
}

/// One mapped column as optional strings (numbers are formatted; other types are errors).
fn string_column(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<Option<String>>> {
    let present: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let col = df.column(name).map_err(|_| Error::Schema {
        path: path.to_path_buf(),
        message: format!("no column `{name}` (columns: {})", present.join(", ")),
    })?;
    let dtype = col.dtype().clone();
    if !(dtype.is_string() || dtype.is_primitive_numeric() || dtype.is_null()) {
        return Err(Error::Schema {
            path: path.to_path_buf(),
            message: format!("column `{name}` is {dtype}, expected text"),
        });
    }
    let cast = col
        .cast(&DataType::String)
        .map_err(|e| Error::polars(format!("column `{name}`"), e))?;
    let s = cast
        .str()
        .map_err(|e| Error::polars(format!("column `{name}`"), e))?;
    Ok(s.iter().map(|v| v.map(str::to_owned)).collect())
}

/// A label column: a list of strings, or strings split on the separator.
fn label_column(df: &DataFrame, name: &str, sep: &str, path: &Path) -> Result<Vec<Vec<String>>> {
    let col = df.column(name).map_err(|_| Error::Schema {
        path: path.to_path_buf(),
        message: format!("no label column `{name}`"),
    })?;
    if let DataType::List(inner) = col.dtype() {
        if !inner.is_string() {
            return Err(Error::Schema {
                path: path.to_path_buf(),
                message: format!("label column `{name}` is a list of {inner}, expected text"),
            });
        }
        let lists = col
            .list()
            .map_err(|e| Error::polars(format!("column `{name}`"), e))?;
        let mut out = Vec::with_capacity(lists.len());
        for v in lists.amortized_iter() {
            let labels = match v {
                None => Vec::new(),
                Some(s) => {
                    let s = s.as_ref().str();
                    let s = s.map_err(|e| Error::polars(format!("column `{name}`"), e))?;
                    s.iter().flatten().map(str::to_owned).collect()
                }
            };
            out.push(labels);
        }
        return Ok(out);
    }
    Ok(string_column(df, name, path)?
        .into_iter()
        .map(|v| v.map(|s| split_labels(&s, sep)).unwrap_or_default())
        .collect())
}

/// A CSV or Parquet file with mapped columns, read by Polars a chunk's rows at a time.
pub(super) fn table(src: &SourceConfig, path: &Path, sink: &mut Sink<'_>) -> Result<SourceRead> {
    let map = columns(src);
    let lf = scan(src, path)?;
    let ctx = || format!("reading {}", path.display());
    let schema = lf
        .clone()
        .collect_schema()
        .map_err(|e| Error::polars(ctx(), e))?;
    let mapped = [
        &Some(map.text.clone()),
        &map.id,
        &map.group,
        &map.summary,
        &map.labels,
    ];
    for name in mapped.into_iter().flatten() {
        if schema.get(name).is_none() {
            let present: Vec<&str> = schema.iter_names().map(|n| n.as_str()).collect();
            return Err(Error::Schema {
                path: path.to_path_buf(),
                message: format!("no column `{name}` (columns: {})", present.join(", ")),
            });
        }
    }
    let slice = sink.chunk_rows().min(1 << 30);
    let mut offset = 0_usize;
    loop {
        let df = lf
            .clone()
            .slice(offset as i64, slice as IdxSize)
            .collect()
            .map_err(|e| Error::polars(ctx(), e))?;
        let height = df.height();
        sink.send_all(table_rows(src, &map, &df, offset, path)?)?;
        offset += height;
        if height < slice || sink.done() {
            return Ok(SourceRead::default());
        }
    }
}

/// The rows of one slice of a table, the first being row `offset` of the file.
fn table_rows(
    src: &SourceConfig,
    map: &ColumnMap,
    df: &DataFrame,
    offset: usize,
    path: &Path,
) -> Result<SourceRead> {
    let sep = map.label_separator.clone().unwrap_or_else(|| ",".into());
    let optional = |name: &Option<String>| -> Result<Option<Vec<Option<String>>>> {
        name.as_deref()
            .map(|n| string_column(df, n, path))
            .transpose()
    };
    let texts = string_column(df, &map.text, path)?;
    let ids = optional(&map.id)?;
    let groups = optional(&map.group)?;
    let summaries = optional(&map.summary)?;
    let labels = map
        .labels
        .as_deref()
        .map(|n| label_column(df, n, &sep, path))
        .transpose()?;
    let mut out = SourceRead::default();
    let pick = |c: &Option<Vec<Option<String>>>, i: usize| c.as_ref().and_then(|v| v[i].clone());
    for (i, text) in texts.into_iter().enumerate() {
        // Line numbers count the CSV header, as an editor shows them.
        let line = if src.kind == SourceKind::Csv {
            offset + i + 2
        } else {
            offset + i + 1
        };
        let Some(text) = text else {
            out.reject(src, path, line, format!("column `{}` is null", map.text));
            continue;
        };
        out.rows.push(RawRow {
            line,
            id: pick(&ids, i),
            group: pick(&groups, i),
            text,
            labels: labels.as_ref().map(|l| l[i].clone()).unwrap_or_default(),
            summary: pick(&summaries, i),
            ..RawRow::default()
        });
    }
    Ok(out)
}
