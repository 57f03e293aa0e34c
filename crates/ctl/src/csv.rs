//! The CSV files `registrectl enqueue --csv` reads: a header line, then one document per line;
//! fields separated by commas, optionally in double quotes (a quote inside doubled), as
//! spreadsheets export them. Only what those files need: no multi-line fields.

/// The fields of one line, or why the line cannot be read.
pub fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, '"') => return Err("a double quote inside an unquoted field".into()),
            (false, ',') => {
                out.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, c) if was_quoted && !c.is_whitespace() => return Err("text after a closing double quote".into()),
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("a double quote is not closed".into());
    }
    out.push(field);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::fields;

    #[test]
    fn quoted_and_plain_fields() {
        assert_eq!(fields("index,4 866 594,Montréal").unwrap(), ["index", "4 866 594", "Montréal"]);
        assert_eq!(fields(r#"acte,"12,3","Vente ""simple""",x"#).unwrap(), ["acte", "12,3", "Vente \"simple\"", "x"]);
        assert_eq!(fields("a,,b").unwrap(), ["a", "", "b"]);
        assert!(fields(r#"a,"open"#).is_err());
        assert!(fields(r#"a,b"c"#).is_err());
    }
}
