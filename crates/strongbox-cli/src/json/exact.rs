//! [`check_exact`]: the numbers and keys of JSON text that would not be stored as written.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use super::number::stored_number;

/// How deep arrays and objects may nest; serde_json refuses deeper values in the first place.
const MAX_DEPTH: usize = 128;

/// Number literals longer than this are shortened in messages.
const SHOWN_LITERAL_CHARS: usize = 40;

/// Why a value cannot be stored exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inexact {
    /// A number that would be stored as another number.
    Number {
        /// Where, as a path from the value (`$.players[3].chips`).
        path: String,
        /// The number as written (shortened when long).
        literal: String,
        /// What it would become.
        stored_as: String,
    },
    /// An object with the same key twice: one of the two values would be lost.
    DuplicateKey {
        /// The object, as a path from the value.
        path: String,
        /// The repeated key.
        key: String,
    },
    /// Nested deeper than 128 arrays and objects.
    TooDeep {
        /// Where the limit was reached.
        path: String,
    },
    /// Not JSON at all (the scan runs on text serde_json already accepted, so this is a bug).
    Invalid {
        /// Byte offset of the problem.
        offset: usize,
    },
}

impl fmt::Display for Inexact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inexact::Number {
                path,
                literal,
                stored_as,
            } => write!(
                f,
                "the number {literal} at {path} cannot be stored exactly (it would become \
                 {stored_as}); write it as a JSON string to keep every digit"
            ),
            Inexact::DuplicateKey { path, key } => write!(
                f,
                "the object at {path} has the key {} more than once (only one of its values \
                 would be kept); remove the duplicate",
                json_string(key)
            ),
            Inexact::TooDeep { path } => {
                write!(
                    f,
                    "the value nests more than {MAX_DEPTH} levels deep at {path}"
                )
            }
            Inexact::Invalid { offset } => write!(f, "invalid JSON at byte {offset}"),
        }
    }
}

impl std::error::Error for Inexact {}

/// Checks that the JSON text `text` (one value, with optional whitespace around it) would be
/// stored as written: every number comes back as the same decimal number and no object repeats
/// a key.
///
/// # Errors
/// The first problem, in text order, with its path from the value.
pub fn check_exact(text: &str) -> Result<(), Inexact> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        path: Vec::new(),
    };
    scanner.value(0)?;
    scanner.skip_whitespace();
    if scanner.pos == scanner.bytes.len() {
        Ok(())
    } else {
        Err(scanner.invalid())
    }
}

/// One step of a path: an object's key or an array's index.
enum Segment<'a> {
    Key(Cow<'a, str>),
    Index(usize),
}

/// A recursive-descent pass over JSON text, remembering the path to where it is.
struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    path: Vec<Segment<'a>>,
}

impl<'a> Scanner<'a> {
    fn value(&mut self, depth: usize) -> Result<(), Inexact> {
        self.skip_whitespace();
        match self.bytes.get(self.pos) {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.word("true"),
            Some(b'f') => self.word("false"),
            Some(b'n') => self.word("null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.invalid()),
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), Inexact> {
        if depth > MAX_DEPTH {
            return Err(Inexact::TooDeep { path: self.path() });
        }
        self.pos += 1; // '{'
        self.skip_whitespace();
        if self.eat(b'}') {
            return Ok(());
        }
        let mut keys: HashSet<Cow<'a, str>> = HashSet::new();
        loop {
            self.skip_whitespace();
            let key = self.key()?;
            if keys.contains(&key) {
                return Err(Inexact::DuplicateKey {
                    path: self.path(),
                    key: key.into_owned(),
                });
            }
            self.skip_whitespace();
            if !self.eat(b':') {
                return Err(self.invalid());
            }
            self.path.push(Segment::Key(key.clone()));
            self.value(depth)?;
            self.path.pop();
            keys.insert(key);
            self.skip_whitespace();
            if self.eat(b'}') {
                return Ok(());
            }
            if !self.eat(b',') {
                return Err(self.invalid());
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), Inexact> {
        if depth > MAX_DEPTH {
            return Err(Inexact::TooDeep { path: self.path() });
        }
        self.pos += 1; // '['
        self.skip_whitespace();
        if self.eat(b']') {
            return Ok(());
        }
        let mut index = 0;
        loop {
            self.path.push(Segment::Index(index));
            self.value(depth)?;
            self.path.pop();
            self.skip_whitespace();
            if self.eat(b']') {
                return Ok(());
            }
            if !self.eat(b',') {
                return Err(self.invalid());
            }
            index += 1;
        }
    }

    /// An object key, unescaped.
    fn key(&mut self) -> Result<Cow<'a, str>, Inexact> {
        let start = self.pos;
        let escaped = self.string()?;
        let quoted = &self.text[start..self.pos];
        if !escaped {
            return Ok(Cow::Borrowed(&quoted[1..quoted.len() - 1]));
        }
        serde_json::from_str::<String>(quoted)
            .map(Cow::Owned)
            .map_err(|_| Inexact::Invalid { offset: start })
    }

    /// Skips a string, quotes included; true when it holds an escape.
    fn string(&mut self) -> Result<bool, Inexact> {
        if !self.eat(b'"') {
            return Err(self.invalid());
        }
        let mut escaped = false;
        loop {
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 2;
                }
                Some(_) => self.pos += 1,
                None => return Err(self.invalid()),
            }
        }
    }

    fn word(&mut self, word: &str) -> Result<(), Inexact> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.invalid())
        }
    }

    fn number(&mut self) -> Result<(), Inexact> {
        let start = self.pos;
        self.eat(b'-');
        self.digits()?;
        if self.eat(b'.') {
            self.digits()?;
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            self.digits()?;
        }
        let literal = &self.text[start..self.pos];
        match stored_number(literal) {
            None => Ok(()),
            Some(stored_as) => Err(Inexact::Number {
                path: self.path(),
                literal: shorten(literal),
                stored_as,
            }),
        }
    }

    fn digits(&mut self) -> Result<(), Inexact> {
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        if self.pos == start {
            Err(self.invalid())
        } else {
            Ok(())
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.bytes.get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn invalid(&self) -> Inexact {
        Inexact::Invalid { offset: self.pos }
    }

    /// The current path: `$`, then `.name` or `["other name"]` per key and `[i]` per index.
    fn path(&self) -> String {
        let mut path = String::from("$");
        for segment in &self.path {
            match segment {
                Segment::Key(key) if is_identifier(key) => {
                    path.push('.');
                    path.push_str(key);
                }
                Segment::Key(key) => {
                    path.push('[');
                    path.push_str(&json_string(key));
                    path.push(']');
                }
                Segment::Index(index) => path.push_str(&format!("[{index}]")),
            }
        }
        path
    }
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A string as a JSON string literal.
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn shorten(literal: &str) -> String {
    if literal.chars().count() <= SHOWN_LITERAL_CHARS {
        literal.to_owned()
    } else {
        let head: String = literal.chars().take(SHOWN_LITERAL_CHARS).collect();
        format!("{head}... ({} characters)", literal.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_names_the_path() {
        let cases = [
            (
                r#"{"players":[{"chips":1},{"chips":2},{"n":"x"},{"chips":18446744073709551616}]}"#,
                "$.players[3].chips",
            ),
            (r#"[[1,2],[3,1e-400]]"#, "$[1][1]"),
            (
                r#"{"two words":{"a\"b":[0, 1e-400]}}"#,
                r#"$["two words"]["a\"b"][1]"#,
            ),
            (r#"  { "x" : 123456789012345678901234567890 }  "#, "$.x"),
        ];
        for (text, expected) in cases {
            match check_exact(text) {
                Err(Inexact::Number { path, .. }) => assert_eq!(path, expected, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let message = check_exact(r#"{"a":[1e-400]}"#).unwrap_err().to_string();
        assert!(
            message.contains("$.a[0]") && message.contains("1e-400"),
            "{message}"
        );
    }

    #[test]
    fn duplicate_keys_are_refused_even_when_escaped() {
        let cases = [
            (r#"{"a":1,"a":2}"#, "$", "a"),
            (r#"{"a":1,"\u0061":2}"#, "$", "a"),
            (r#"{"x":[{"k":1},{"k":1,"j":2,"k":3}]}"#, "$.x[1]", "k"),
        ];
        for (text, expected_path, expected_key) in cases {
            assert_eq!(
                check_exact(text),
                Err(Inexact::DuplicateKey {
                    path: expected_path.to_owned(),
                    key: expected_key.to_owned()
                }),
                "{text}"
            );
        }
        // The same key in sibling objects, and keys that differ only after unescaping, are fine.
        assert_eq!(check_exact(r#"[{"a":1},{"a":2}]"#), Ok(()));
        assert_eq!(check_exact(r#"{"a":{"a":{"a":1}}}"#), Ok(()));
        assert_eq!(check_exact(r#"{"a\n":1,"a":2}"#), Ok(()));
    }

    #[test]
    fn ordinary_values_pass() {
        let values = [
            "null",
            "true",
            "false",
            r#""123456789012345678901234567890""#,
            r#""a \"quoted\" 1e-400 and \\ backslash\\""#,
            r#"{"digits":"18446744073709551616","n":[1,2.5,-3e-2,{"deep":[[[]]]}],"e":{}}"#,
            "[]",
            "{}",
            " [ 1 , 2 ] ",
            r#"{"name":"alice","chips":1000,"tags":["vip","🎲"],"ratio":0.1}"#,
        ];
        for text in values {
            serde_json::from_str::<serde_json::Value>(text).unwrap();
            assert_eq!(check_exact(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn invalid_or_too_deep_text_is_an_error_not_a_panic() {
        for text in [
            "", "{", "[1,", r#"{"a"}"#, r#""open"#, "1 2", "-", "1.", "tru", "\"\\",
        ] {
            assert!(
                matches!(check_exact(text), Err(Inexact::Invalid { .. })),
                "{text}"
            );
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(matches!(check_exact(&deep), Err(Inexact::TooDeep { .. })));
    }
}
