//! How row data and remote text are made safe to store or show, one rule each for every crate:
//! [`sanitize`] turns row data into a file or object name part (docs/design.md §8), [`excerpt`] quotes
//! what a server or a tool said in an error message.

/// Longest kept length of a sanitized part, so that a huge document number cannot make a file
/// name longer than filesystems allow (255 bytes).
pub const MAX_PART_CHARS: usize = 64;

/// `value` with every character outside `[A-Za-z0-9_-]` replaced by `_` (one `_` per character,
/// so `é` gives `_`), cut to [`MAX_PART_CHARS`] characters: never `/`, `\` or `..`, so row data
/// cannot leave the folder or bucket it is stored in.
pub fn sanitize(value: &str) -> String {
    value
        .chars()
        .take(MAX_PART_CHARS)
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect()
}

/// At most `max` characters of `text` on one line (white space collapsed), `…` when cut: a
/// response body or a tool's stderr quoted in an error.
pub fn excerpt(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizing_removes_path_tricks() {
        assert_eq!(sanitize("../../etc/passwd"), "______etc_passwd");
        assert_eq!(sanitize("2 269 090"), "2_269_090");
        assert_eq!(sanitize("Lot-12_a"), "Lot-12_a");
        assert_eq!(sanitize("é"), "_");
        assert_eq!(sanitize(&"9".repeat(100)).len(), MAX_PART_CHARS);
    }

    #[test]
    fn excerpt_is_one_short_line() {
        assert_eq!(excerpt("  a\n\tb  c ", 10), "a b c");
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(excerpt("", 3), "");
    }
}
