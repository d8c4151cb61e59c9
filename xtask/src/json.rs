//! A small JSON reader, enough for criterion's result files, the reference scripts'
//! output and JSONL corpora ([RFC 8259](https://www.rfc-editor.org/rfc/rfc8259)).
//!
//! xtask keeps its dependencies to `anyhow` so that it compiles in seconds; this is the
//! price. It parses into a tree and offers lookups; it never writes JSON.

use anyhow::{Result, bail};

/// A parsed JSON value. Objects keep their keys in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// Any number, as a double.
    Number(f64),
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object, as key/value pairs.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object; `None` for other values or a missing key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value at a path of object keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Value> {
        keys.iter().try_fold(self, |value, key| value.get(key))
    }

    /// The number, if this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Parses one JSON document; trailing whitespace is allowed, anything else is not.
///
/// # Errors
/// Fails on malformed JSON, naming the byte offset.
pub fn parse(text: &str) -> Result<Value> {
    let mut parser = Parser { text, pos: 0 };
    let value = parser.value()?;
    parser.skip_whitespace();
    if parser.pos != text.len() {
        bail!("unexpected trailing data at byte {}", parser.pos);
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn value(&mut self) -> Result<Value> {
        self.skip_whitespace();
        match self.peek() {
            Some('{') => self.object(),
            Some('[') => self.array(),
            Some('"') => Ok(Value::String(self.string()?)),
            Some('t') => self.literal("true", Value::Bool(true)),
            Some('f') => self.literal("false", Value::Bool(false)),
            Some('n') => self.literal("null", Value::Null),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            Some(c) => bail!("unexpected `{c}` at byte {}", self.pos),
            None => bail!("unexpected end of input"),
        }
    }

    fn object(&mut self) -> Result<Value> {
        self.expect('{')?;
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.eat('}') {
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_whitespace();
            let key = self.string()?;
            self.skip_whitespace();
            self.expect(':')?;
            members.push((key, self.value()?));
            self.skip_whitespace();
            if self.eat('}') {
                return Ok(Value::Object(members));
            }
            self.expect(',')?;
        }
    }

    fn array(&mut self) -> Result<Value> {
        self.expect('[')?;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.eat(']') {
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_whitespace();
            if self.eat(']') {
                return Ok(Value::Array(items));
            }
            self.expect(',')?;
        }
    }

    fn string(&mut self) -> Result<String> {
        self.expect('"')?;
        let mut out = String::new();
        loop {
            let Some(c) = self.next() else { bail!("unterminated string") };
            match c {
                '"' => return Ok(out),
                '\\' => out.push(self.escape()?),
                c => out.push(c),
            }
        }
    }

    /// The character for the escape sequence after a backslash.
    fn escape(&mut self) -> Result<char> {
        Ok(match self.next() {
            Some('"') => '"',
            Some('\\') => '\\',
            Some('/') => '/',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => {
                let high = self.hex4()?;
                if (0xD800..0xDC00).contains(&high) && self.text[self.pos..].starts_with("\\u") {
                    self.pos += 2;
                    let low = self.hex4()?;
                    let code = 0x10000 + ((high - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF);
                    char::from_u32(code).unwrap_or('\u{FFFD}')
                } else {
                    char::from_u32(high).unwrap_or('\u{FFFD}')
                }
            }
            _ => bail!("bad escape sequence at byte {}", self.pos),
        })
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self.text.get(self.pos..self.pos + 4);
        let Some(code) = digits.and_then(|d| u32::from_str_radix(d, 16).ok()) else {
            bail!("bad \\u escape at byte {}", self.pos);
        };
        self.pos += 4;
        Ok(code)
    }

    fn number(&mut self) -> Result<Value> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit() || "+-.eE".contains(c)) {
            self.pos += 1;
        }
        let text = &self.text[start..self.pos];
        match text.parse() {
            Ok(n) => Ok(Value::Number(n)),
            Err(_) => bail!("bad number `{text}` at byte {start}"),
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value> {
        if !self.text[self.pos..].starts_with(word) {
            bail!("unexpected input at byte {}", self.pos);
        }
        self.pos += word.len();
        Ok(value)
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: char) -> Result<()> {
        if !self.eat(c) {
            bail!("expected `{c}` at byte {}", self.pos);
        }
        Ok(())
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += c.len_utf8();
        }
        hit
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_documents() {
        let doc = parse(r#" {"a": [1, -2.5e3, true, null], "b": {"c": "x"}} "#).expect("valid");
        assert_eq!(doc.path(&["b", "c"]).and_then(Value::as_str), Some("x"));
        let Some(Value::Array(items)) = doc.get("a") else { panic!("array expected") };
        assert_eq!(items[1].as_f64(), Some(-2500.0));
        assert_eq!(items[2], Value::Bool(true));
        assert_eq!(items[3], Value::Null);
    }

    #[test]
    fn unescapes_strings() {
        let doc = parse(r#""tab\there \"q\" \u00e9 \ud83d\ude00 caf""#).expect("valid");
        assert_eq!(doc.as_str(), Some("tab\there \"q\" é 😀 caf"));
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in ["{", "[1,]", r#"{"a" 1}"#, "tru", "1 2", r#""\x""#] {
            assert!(parse(bad).is_err(), "{bad} should fail");
        }
    }
}
