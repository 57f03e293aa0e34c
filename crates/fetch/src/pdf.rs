//! Checks that bytes really are a PDF before anything is uploaded: the `%PDF-` magic at the start
//! and an `%%EOF` marker near the end (a truncated download has none).

/// How far from the end `%%EOF` may be (the PDF spec allows trailing bytes; 1 KiB is what readers accept).
const EOF_WINDOW: usize = 1024;

/// Why bytes are not a PDF. Display is readable: `empty file`, `starts with "<html>"`...
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAPdf {
    #[error("empty file")]
    Empty,
    #[error("does not start with %PDF- (starts with {0:?})")]
    BadMagic(String),
    #[error("no %%EOF marker in its last {EOF_WINDOW} bytes (truncated?)")]
    NoEof,
}

/// Ok when `bytes` start with `%PDF-` and end (within 1 KiB) with `%%EOF`.
pub fn validate_pdf(bytes: &[u8]) -> Result<(), NotAPdf> {
    if bytes.is_empty() {
        return Err(NotAPdf::Empty);
    }
    if !bytes.starts_with(b"%PDF-") {
        let head: String = String::from_utf8_lossy(&bytes[..bytes.len().min(16)])
            .chars()
            .map(|c| if c.is_control() { '.' } else { c })
            .collect();
        return Err(NotAPdf::BadMagic(head));
    }
    let tail = &bytes[bytes.len().saturating_sub(EOF_WINDOW)..];
    if !tail.windows(5).any(|w| w == b"%%EOF") {
        return Err(NotAPdf::NoEof);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_minimal_pdf() {
        assert_eq!(validate_pdf(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n"), Ok(()));
    }

    #[test]
    fn refuses_what_is_not_a_pdf() {
        assert_eq!(validate_pdf(b""), Err(NotAPdf::Empty));
        assert_eq!(validate_pdf(b"<html>oops</html>"), Err(NotAPdf::BadMagic("<html>oops</html".into())));
        assert_eq!(validate_pdf(b"%PDF-1.4\n1 0 obj"), Err(NotAPdf::NoEof));
        let mut far = b"%PDF-1.4\n%%EOF".to_vec();
        far.extend([b' '; 2000]);
        assert_eq!(validate_pdf(&far), Err(NotAPdf::NoEof));
    }
}
