//! A minimal RFC 4180 CSV writer and reader, shared by every CSV file decal-report writes or reads.
//!
//! Fields are quoted only when they must be (a comma, a double quote, a line break, or leading/trailing
//! white space); a quote inside a quoted field is doubled. Rows end with `\n`. The reader accepts `\r\n`
//! too, and reports errors with the 1-based line on which the offending record starts.

use std::path::Path;

use crate::ReportError;

/// Appends one CSV row (with its trailing newline) to `out`.
pub fn write_row<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, field.as_ref());
    }
    out.push('\n');
}

fn push_field(out: &mut String, field: &str) {
    let needs_quotes = field.contains([',', '"', '\n', '\r'])
        || field.starts_with(char::is_whitespace)
        || field.ends_with(char::is_whitespace);
    if needs_quotes {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// One parsed CSV record and the 1-based line on which it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Line number (1-based) of the record's first character.
    pub line: usize,
    /// The unquoted fields.
    pub fields: Vec<String>,
}

/// Positions of the `names` columns in `header`, which may list them in any order; a missing one is an
/// error naming the file, the header's line and the column.
pub(crate) fn column_indices<const N: usize>(
    header: &Row,
    names: [&str; N],
    path: &Path,
) -> Result<[usize; N], ReportError> {
    let mut index = [0usize; N];
    for (slot, name) in index.iter_mut().zip(names) {
        *slot = header
            .fields
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| {
                ReportError::parse(path, header.line, format!("header has no `{name}` column"))
            })?;
    }
    Ok(index)
}

/// Refuses a data row whose field count differs from the header's, naming the file and the row's line.
pub(crate) fn check_row_width(row: &Row, header: &Row, path: &Path) -> Result<(), ReportError> {
    if row.fields.len() != header.fields.len() {
        return Err(ReportError::parse(
            path,
            row.line,
            format!(
                "{} fields, the header has {}",
                row.fields.len(),
                header.fields.len()
            ),
        ));
    }
    Ok(())
}

/// Parses CSV text into rows. Blank lines are skipped. Errors carry the line number and a message.
pub fn parse(text: &str) -> Result<Vec<Row>, (usize, String)> {
    let mut rows = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    loop {
        // Skip blank lines between records.
        while let Some(&c) = chars.peek() {
            if c == '\n' {
                line += 1;
                chars.next();
            } else if c == '\r' {
                chars.next();
            } else {
                break;
            }
        }
        if chars.peek().is_none() {
            return Ok(rows);
        }
        let start_line = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut in_quotes = false;
        let mut quoted_field = false;
        loop {
            match chars.next() {
                None => {
                    if in_quotes {
                        return Err((start_line, "unterminated quoted field".to_string()));
                    }
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('"') if in_quotes => {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        in_quotes = false;
                    }
                }
                Some('"') if field.is_empty() && !quoted_field => {
                    in_quotes = true;
                    quoted_field = true;
                }
                Some('"') => {
                    return Err((
                        line,
                        "stray double quote inside an unquoted field".to_string(),
                    ));
                }
                Some(c) if in_quotes => {
                    if c == '\n' {
                        line += 1;
                    }
                    field.push(c);
                }
                Some(',') => {
                    fields.push(std::mem::take(&mut field));
                    quoted_field = false;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some('\n') => {
                    line += 1;
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some(c) => {
                    if quoted_field {
                        return Err((
                            line,
                            format!("unexpected character {c:?} after a closing quote"),
                        ));
                    }
                    field.push(c);
                }
            }
        }
        rows.push(Row {
            line: start_line,
            fields,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_awkward_fields() {
        let fields = ["plain", "a,b", "say \"hi\"", "two\nlines", " padded", ""];
        let mut text = String::new();
        write_row(&mut text, &fields);
        write_row(&mut text, &["x", "y", "z", "w", "v", "u"]);
        assert_eq!(
            text,
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\" padded\",\nx,y,z,w,v,u\n"
        );
        let rows = parse(&text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].fields, fields);
        assert_eq!(rows[0].line, 1);
        // The first record spans two lines, so the second starts on line 3.
        assert_eq!(rows[1].line, 3);
    }

    #[test]
    fn crlf_and_blank_lines() {
        let rows = parse("a,b\r\n\r\n1,2\r\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].fields, ["1", "2"]);
        assert_eq!(rows[1].line, 3);
    }

    #[test]
    fn malformed_quotes_name_the_line() {
        assert_eq!(parse("a,b\n\"open,1\n").unwrap_err().0, 2);
        assert_eq!(parse("a,b\nx\"y,1\n").unwrap_err().0, 2);
        assert_eq!(parse("a,b\n\"x\"y,1\n").unwrap_err().0, 2);
    }
}
