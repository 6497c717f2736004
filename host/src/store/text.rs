//! Text as PostgreSQL can hold it: every text the store writes passes through here.

/// Text as PostgreSQL can hold it. A `text` value (and a string inside `jsonb`) cannot contain
/// NUL, and one such value fails its statement and every write sharing the transaction, so
/// every text the host writes passes through here: NUL becomes U+FFFD, as invalid UTF-8
/// already does where the host decodes bytes lossily.
pub(super) fn postgres_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// A text array literal (`{"a","b"}`), because arrays of arrays cannot be bound directly; NUL is
/// replaced like every other text the host writes.
pub(super) fn postgres_text_array(items: &[String]) -> String {
    let mut literal = String::from("{");
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            literal.push(',');
        }
        literal.push('"');
        for character in postgres_text(item).chars() {
            if character == '"' || character == '\\' {
                literal.push('\\');
            }
            literal.push(character);
        }
        literal.push('"');
    }
    literal.push('}');
    literal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_replaced_in_every_text_written() {
        assert_eq!(postgres_text("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
        assert!(matches!(
            postgres_text("plain"),
            std::borrow::Cow::Borrowed("plain")
        ));
        assert_eq!(postgres_text_array(&["a\0".to_owned()]), "{\"a\u{FFFD}\"}");
    }

    #[test]
    fn text_array_literals_escape_quotes_and_backslashes() {
        let table: &[(&[&str], &str)] = &[
            (&[], "{}"),
            (&["github.push"], r#"{"github.push"}"#),
            (&["a", "b,c"], r#"{"a","b,c"}"#),
            (
                &[r#"q"uote"#, r"back\slash"],
                r#"{"q\"uote","back\\slash"}"#,
            ),
        ];
        for (items, expected) in table {
            let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
            assert_eq!(postgres_text_array(&items), *expected);
        }
    }
}
