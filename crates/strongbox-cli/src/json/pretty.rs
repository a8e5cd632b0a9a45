//! [`pretty`], [`one_line`] and [`one_line_raw`]: layout that leaves numbers and strings as
//! written.

use std::borrow::Cow;

use serde_json::value::RawValue;

/// JSON text indented as `serde_json::to_string_pretty` does (two spaces, `"key": value`,
/// `[]` and `{}` when empty), with every number and string copied as written.
///
/// The text must be valid JSON; whitespace outside strings is replaced.
pub fn pretty(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut pos = 0;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while pos < bytes.len() {
        let byte = bytes[pos];
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => pos += 1,
            b'{' | b'[' => {
                let close = if byte == b'{' { b'}' } else { b']' };
                let next = next_token(bytes, pos + 1);
                out.push(char::from(byte));
                if bytes.get(next) == Some(&close) {
                    out.push(char::from(close));
                    pos = next + 1;
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                    pos += 1;
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(char::from(byte));
                pos += 1;
            }
            b',' => {
                out.push(',');
                newline(&mut out, depth);
                pos += 1;
            }
            b':' => {
                out.push_str(": ");
                pos += 1;
            }
            b'"' => {
                let start = pos;
                pos += 1;
                while pos < bytes.len() && bytes[pos] != b'"' {
                    pos += if bytes[pos] == b'\\' { 2 } else { 1 };
                }
                pos = (pos + 1).min(bytes.len());
                out.push_str(&text[start..pos]);
            }
            _ => {
                let start = pos;
                while pos < bytes.len()
                    && !matches!(
                        bytes[pos],
                        b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' | b'}' | b']'
                    )
                {
                    pos += 1;
                }
                out.push_str(&text[start..pos]);
            }
        }
    }
    out
}

/// JSON text on one line: whitespace outside strings removed when the text spans lines (a
/// value a program stored as indented JSON), else the text as it is. A string in valid JSON
/// holds no raw line break, so every line break is whitespace between tokens.
pub fn one_line(text: &str) -> Cow<'_, str> {
    if !text.contains(['\n', '\r']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A value's stored text on one line, as [`one_line`] puts it: the same value when it already
/// is, else a new one.
///
/// # Errors
/// Never on the text of a `RawValue`, which is valid JSON.
pub fn one_line_raw(value: Box<RawValue>) -> serde_json::Result<Box<RawValue>> {
    match one_line(value.get()) {
        Cow::Borrowed(_) => Ok(value),
        Cow::Owned(text) => RawValue::from_string(text),
    }
}

/// The position of the first byte at or after `pos` that is not whitespace.
fn next_token(bytes: &[u8], mut pos: usize) -> usize {
    while matches!(bytes.get(pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        pos += 1;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_matches_serde_json_and_keeps_numbers() {
        let texts = [
            r#"{"a":[1,2,{"b":null,"c":[]}],"d":{},"e":"x, y: [z]","f":"q\"}"}"#,
            "[]",
            "3",
            r#"[{"a":{"b":[true,false]}}]"#,
        ];
        for text in texts {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                pretty(text),
                serde_json::to_string_pretty(&value).unwrap(),
                "{text}"
            );
        }
        assert_eq!(
            pretty(r#"{"n":340282366920938463463374607431768211455}"#),
            "{\n  \"n\": 340282366920938463463374607431768211455\n}"
        );
        assert_eq!(pretty(" [ 1 ,\n2 ] "), "[\n  1,\n  2\n]");
    }

    #[test]
    fn one_line_removes_only_whitespace_outside_strings() {
        assert!(matches!(one_line(r#"{"a": [1, 2]}"#), Cow::Borrowed(_)));
        let indented = "{\n  \"a b\": \"x \\\" \\\\ y\",\r\n  \"n\": 340282366920938463463374607431768211455\n}";
        assert_eq!(
            one_line(indented),
            r#"{"a b":"x \" \\ y","n":340282366920938463463374607431768211455}"#
        );
    }
}
