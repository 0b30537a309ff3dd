//! Numeric CSV matrices: comma-separated, one row per line, an optional header row (detected when any field
//! of the first line is not a number), blank lines ignored. Labels are a CSV with a single column.
//! Fields may be surrounded by double quotes; quoted fields containing commas are not supported.

use std::path::Path;

use crate::error::IoError;

/// A numeric matrix read from CSV, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvMatrix {
    /// Column names when the file had a header row.
    pub header: Option<Vec<String>>,
    /// Number of data rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// `rows × cols` values, row-major.
    pub data: Vec<f64>,
}

fn parse_field(field: &str) -> Option<f64> {
    let f = field.trim().trim_matches('"');
    match f.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => f.parse::<f64>().ok(),
    }
}

/// Reads a numeric CSV file. Every data row must have the same number of fields; the error names the line.
pub fn read(path: &Path) -> Result<CsvMatrix, IoError> {
    let text = std::fs::read_to_string(path).map_err(|source| IoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses CSV text; `path` is used in error messages.
pub fn parse(text: &str, path: &Path) -> Result<CsvMatrix, IoError> {
    let mut header = None;
    let mut cols = None;
    let mut rows = 0;
    let mut data = Vec::new();
    for (line_idx, line) in text.lines().enumerate() {
        let line_no = line_idx + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let parsed: Vec<Option<f64>> = fields.iter().map(|f| parse_field(f)).collect();
        if cols.is_none() && header.is_none() && parsed.iter().any(Option::is_none) {
            header = Some(
                fields
                    .iter()
                    .map(|f| f.trim().trim_matches('"').to_string())
                    .collect::<Vec<_>>(),
            );
            cols = Some(fields.len());
            continue;
        }
        let expected = *cols.get_or_insert(fields.len());
        if fields.len() != expected {
            return Err(IoError::format(
                path,
                format!(
                    "line {line_no} has {} fields, expected {expected}",
                    fields.len()
                ),
            ));
        }
        for (col, v) in parsed.into_iter().enumerate() {
            match v {
                Some(x) => data.push(x),
                None => {
                    return Err(IoError::format(
                        path,
                        format!(
                            "line {line_no}, column {}: {:?} is not a number",
                            col + 1,
                            fields[col].trim()
                        ),
                    ))
                }
            }
        }
        rows += 1;
    }
    Ok(CsvMatrix {
        header,
        rows,
        cols: cols.unwrap_or(0),
        data,
    })
}

/// Reads class labels from a one-column CSV file (an optional header row, blank lines ignored). Integers are
/// parsed as integers, not through `f64`, so a label too large for a class index is reported exactly as
/// written (`18446744073709551617`, not `18446744073709552000`); fields such as `3.0` are accepted as in
/// `.npy` float labels. The error names the file, the line and the field.
pub fn read_labels(path: &Path) -> Result<Vec<i64>, IoError> {
    let text = std::fs::read_to_string(path).map_err(|source| IoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_labels(&text, path)
}

/// Parses one-column CSV labels (see [`read_labels`]); `path` is used in error messages.
pub fn parse_labels(text: &str, path: &Path) -> Result<Vec<i64>, IoError> {
    let m = parse(text, path)?;
    if m.cols != 1 {
        return Err(IoError::format(
            path,
            format!("expected one column of labels, got {} columns", m.cols),
        ));
    }
    let mut out = Vec::with_capacity(m.rows);
    let mut skipped_header = m.header.is_none();
    for (line_idx, line) in text.lines().enumerate() {
        let field = line.trim_end_matches('\r').trim();
        if field.is_empty() {
            continue;
        }
        if !skipped_header {
            skipped_header = true;
            continue;
        }
        let f = field.trim_matches('"').trim();
        let bad =
            |what: &str| IoError::format(path, format!("line {}: label {f} {what}", line_idx + 1));
        let digits = f.strip_prefix(['+', '-']).unwrap_or(f);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            // An integer of any length: exact, whatever its size.
            out.push(
                f.trim_start_matches('+')
                    .parse::<i64>()
                    .map_err(|_| bad("is too large for a class index"))?,
            );
            continue;
        }
        let x = parse_field(f).ok_or_else(|| bad("is not a number"))?;
        // 2^63 is exactly representable; anything at or beyond it does not fit in i64.
        const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
        if !x.is_finite() || x.fract() != 0.0 || !(-TWO_POW_63..TWO_POW_63).contains(&x) {
            return Err(bad("is not an integer class index"));
        }
        out.push(x as i64);
    }
    Ok(out)
}

/// Writes a matrix as CSV atomically, with an optional header; values use Rust's shortest round-trip
/// formatting, so reading the file back gives bit-identical `f64`s.
pub fn write(
    path: &Path,
    header: Option<&[String]>,
    cols: usize,
    data: &[f64],
) -> Result<(), IoError> {
    if cols == 0 || data.len() % cols != 0 {
        return Err(IoError::value(
            path.display().to_string(),
            format!("{} values do not form rows of {cols} columns", data.len()),
        ));
    }
    let mut text = String::with_capacity(data.len() * 12);
    if let Some(h) = header {
        if h.len() != cols {
            return Err(IoError::value(
                path.display().to_string(),
                format!("header has {} names for {cols} columns", h.len()),
            ));
        }
        text.push_str(&h.join(","));
        text.push('\n');
    }
    for row in data.chunks(cols) {
        let fields: Vec<String> = row.iter().map(|v| format!("{v:?}")).collect();
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    decal_core::write_atomic(path, text.as_bytes())?;
    Ok(())
}
