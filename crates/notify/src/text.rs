//! Small text helpers shared by the channels: one-line sanitizing of values that come from
//! outside (subjects, summaries), truncation on a character boundary, the local host name.

/// `text` with every control character (newlines, tabs, escapes, DEL, C1) replaced by a
/// space, so a hostile value cannot start a new log line, header or syslog record.
pub(crate) fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a character
/// boundary.
pub(crate) fn truncate_bytes(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// This machine's host name (Linux: `/proc/sys/kernel/hostname`), or `None` if unknown.
pub(crate) fn local_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_spaces() {
        assert_eq!(
            single_line("a\nb\r\tc\u{1b}[31m\u{7f}\u{85}d"),
            "a b  c [31m  d"
        );
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_bytes("héllo", 2), "h");
        assert_eq!(truncate_bytes("héllo", 3), "hé");
        assert_eq!(truncate_bytes("hi", 10), "hi");
    }
}
