//! A small RFC 4180 CSV reader for the host import (no dependency needed for one format).
//!
//! * Fields are separated by `,`; records end with LF, CRLF or a lone CR.
//! * A field starting with `"` is quoted: it may contain `,`, line breaks and `""` (one
//!   quote). Text between the closing quote and the next separator makes that record
//!   malformed (reported for the record, the others are still read); spaces there are
//!   ignored.
//! * A `"` inside an unquoted field is kept literally (as most spreadsheets write it).
//! * Blank (or whitespace-only) lines are skipped; a leading UTF-8 byte-order mark is ignored.
//! * A quoted field still open at the end of the input fails the whole input: everything
//!   after the opening quote would be one field, so no row can be trusted.

/// One record: the physical line it starts on (1-based) and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    /// Line of the first character of the record.
    pub line: usize,
    /// Field values (quotes removed, `""` unescaped).
    pub fields: Vec<String>,
    /// Why the record is malformed, if it is.
    pub error: Option<String>,
}

/// The input cannot be read as CSV at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CsvError {
    /// Line where the problem starts.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Default)]
struct Builder {
    records: Vec<Record>,
    fields: Vec<String>,
    field: String,
    /// The current field started with a quote.
    quoted: bool,
    /// The current field's closing quote was seen.
    closed: bool,
    error: Option<String>,
    start_line: usize,
}

impl Builder {
    fn end_field(&mut self) {
        self.fields.push(std::mem::take(&mut self.field));
        self.quoted = false;
        self.closed = false;
    }

    fn end_record(&mut self, next_line: usize) {
        let blank =
            self.fields.is_empty() && self.field.trim().is_empty() && !self.quoted && self.error.is_none();
        if !blank {
            self.end_field();
            self.records.push(Record {
                line: self.start_line,
                fields: std::mem::take(&mut self.fields),
                error: self.error.take(),
            });
        } else {
            // A whitespace-only line: drop its spaces so they do not start the next record.
            self.field.clear();
        }
        self.start_line = next_line;
    }
}

/// Reads every record of `text`.
pub(super) fn parse(text: &str) -> Result<Vec<Record>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut b = Builder { start_line: 1, ..Builder::default() };
    let mut line = 1;
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    b.field.push('"');
                }
                '"' => {
                    in_quotes = false;
                    b.closed = true;
                }
                '\n' => {
                    line += 1;
                    b.field.push(c);
                }
                '\r' => {
                    if chars.peek() != Some(&'\n') {
                        line += 1;
                    }
                    b.field.push(c);
                }
                _ => b.field.push(c),
            }
            continue;
        }
        match c {
            ',' => b.end_field(),
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                line += 1;
                b.end_record(line);
            }
            '"' if b.field.is_empty() && !b.quoted => {
                in_quotes = true;
                b.quoted = true;
            }
            ' ' | '\t' if b.closed => {}
            _ if b.closed => {
                if b.error.is_none() {
                    b.error = Some(format!("unexpected {c:?} after a closing quote"));
                }
            }
            _ => b.field.push(c),
        }
    }
    if in_quotes {
        return Err(CsvError { line: b.start_line, message: "a quoted field is not closed".to_owned() });
    }
    b.end_record(line);
    Ok(b.records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<Vec<String>> {
        parse(text).unwrap().into_iter().map(|r| r.fields).collect()
    }

    #[test]
    fn plain_and_quoted_fields() {
        assert_eq!(fields("a,b,c\n1,2,3\n"), [["a", "b", "c"], ["1", "2", "3"]]);
        assert_eq!(fields("a,b\r\n1,2"), [["a", "b"], ["1", "2"]]);
        assert_eq!(fields("\"x, y\",\"say \"\"hi\"\"\",\"\""), [["x, y", "say \"hi\"", ""]]);
        assert_eq!(fields("a,,\n"), [["a", "", ""]]);
        assert_eq!(fields("ab\"c,d"), [["ab\"c", "d"]]);
        assert_eq!(fields("\u{feff}name\n"), [["name"]]);
        assert_eq!(fields(""), Vec::<Vec<String>>::new());
    }

    #[test]
    fn line_numbers_count_physical_lines_and_skip_blank_ones() {
        let records = parse("h1,h2\n\n\"multi\nline\",x\r\nlast,y").unwrap();
        let lines: Vec<usize> = records.iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 3, 5]);
        assert_eq!(records[1].fields, ["multi\nline", "x"]);
        // A quoted empty line is a record, not a blank line.
        assert_eq!(fields("\"\"\n"), [[""]]);
        assert_eq!(fields("a\n   \n\"b\" ,c\n"), [vec!["a"], vec!["b", "c"]]);
    }

    #[test]
    fn junk_after_a_closing_quote_marks_the_record_and_an_open_quote_fails_the_input() {
        let records = parse("\"a\"b,c\nd,e\n").unwrap();
        assert!(records[0].error.is_some());
        assert_eq!(records[1], Record { line: 2, fields: vec!["d".into(), "e".into()], error: None });
        let error = parse("a,b\n\"open,c\nmore").unwrap_err();
        assert_eq!(error.line, 2);
    }
}
