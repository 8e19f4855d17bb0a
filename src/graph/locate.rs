//! A lenient RON walker that records where things are, so errors found after parsing (a value out of range,
//! an edge naming no node, a cycle) can point at the exact line and column.
//!
//! `ron` checks the syntax and the types; this walker only finds spans. It never fails loudly: on text it
//! cannot follow it returns what it has, and callers fall back to coarser positions.

/// A value and the byte range it covers.
#[derive(Debug, Clone)]
pub struct Spanned {
    pub start: usize,
    pub end: usize,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Value {
    /// A number, boolean, character, unit variant or other bare token.
    Atom,
    Str(String),
    Seq(Vec<Spanned>),
    /// `Name(key: value, ...)` or `(key: value, ...)`. `paren` is where the parenthesis opens.
    Struct {
        name: Option<String>,
        paren: usize,
        fields: Vec<Field>,
    },
    /// `Name(a, b)` or `(a, b)`.
    Tuple {
        name: Option<String>,
        paren: usize,
        items: Vec<Spanned>,
    },
    Map(Vec<(Spanned, Spanned)>),
}

#[derive(Debug, Clone)]
pub struct Field {
    pub key: String,
    pub key_start: usize,
    pub value: Spanned,
}

impl Spanned {
    /// The named field of a struct.
    pub fn field(&self, key: &str) -> Option<&Field> {
        match &self.value {
            Value::Struct { fields, .. } => fields.iter().find(|f| f.key == key),
            _ => None,
        }
    }

    /// The start of the element a path such as `bands[1].freq_hz` names, inside this value.
    pub fn locate(&self, path: &str) -> Option<usize> {
        let mut here = self;
        let mut at = self.start;
        for segment in path.split('.') {
            let (name, indices) = match segment.find('[') {
                Some(i) => (&segment[..i], &segment[i..]),
                None => (segment, ""),
            };
            if !name.is_empty() {
                if let Some(field) = here.field(name) {
                    at = field.key_start;
                    here = &field.value;
                } else if let Value::Map(entries) = &here.value {
                    let (key, value) = entries.iter().find(|(k, _)| matches!(&k.value, Value::Str(s) if s == name))?;
                    at = key.start;
                    here = value;
                } else {
                    return None;
                }
            }
            for index in indices.split(['[', ']']).filter(|s| !s.is_empty()) {
                let i: usize = index.parse().ok()?;
                let item = match &here.value {
                    Value::Seq(items) | Value::Tuple { items, .. } => items.get(i)?,
                    _ => return None,
                };
                at = item.start;
                here = item;
            }
        }
        Some(at)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Punct(u8),
    Str(String),
    Ident(String),
    Atom,
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    /// What is left of the text (empty past its end: every scan below may overshoot by a byte or two on
    /// malformed text, and never indexes directly).
    fn rest(&self) -> &[u8] {
        self.src.get(self.pos..).unwrap_or(&[])
    }

    fn skip_trivia(&mut self) {
        loop {
            while self.pos < self.src.len() && self.src[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            if self.rest().starts_with(b"//") {
                while self.pos < self.src.len() && self.src[self.pos] != b'\n' {
                    self.pos += 1;
                }
            } else if self.rest().starts_with(b"/*") {
                let mut depth = 0usize;
                while self.pos < self.src.len() {
                    if self.rest().starts_with(b"/*") {
                        depth += 1;
                        self.pos += 2;
                    } else if self.rest().starts_with(b"*/") {
                        depth = depth.saturating_sub(1);
                        self.pos += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        self.pos += 1;
                    }
                }
            } else {
                return;
            }
        }
    }

    fn next(&mut self) -> Option<(usize, Tok)> {
        let tok = self.token();
        self.pos = self.pos.min(self.src.len());
        tok
    }

    fn token(&mut self) -> Option<(usize, Tok)> {
        self.skip_trivia();
        let start = self.pos;
        let c = *self.src.get(self.pos)?;
        let tok = match c {
            b'(' | b')' | b'[' | b']' | b'{' | b'}' | b',' | b':' => {
                self.pos += 1;
                Tok::Punct(c)
            }
            b'"' => Tok::Str(self.string()),
            b'r' if matches!(self.src.get(self.pos + 1), Some(b'"' | b'#')) => {
                self.raw_string();
                let end = self.pos.min(self.src.len());
                Tok::Str(String::from_utf8_lossy(&self.src[start..end]).into_owned())
            }
            b'b' if self.src.get(self.pos + 1) == Some(&b'"') => {
                self.pos += 1;
                Tok::Str(self.string())
            }
            b'\'' => {
                self.pos += 1;
                while self.pos < self.src.len() && self.src[self.pos] != b'\'' {
                    self.pos += if self.src[self.pos] == b'\\' { 2 } else { 1 };
                }
                self.pos += 1;
                Tok::Atom
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while self.pos < self.src.len()
                    && (self.src[self.pos].is_ascii_alphanumeric() || self.src[self.pos] == b'_')
                {
                    self.pos += 1;
                }
                Tok::Ident(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
            }
            _ => {
                while self.pos < self.src.len()
                    && !self.src[self.pos].is_ascii_whitespace()
                    && !b"()[]{},:\"'".contains(&self.src[self.pos])
                {
                    self.pos += 1;
                }
                Tok::Atom
            }
        };
        Some((start, tok))
    }

    /// A `"..."` string starting at `pos`; returns its unescaped-enough contents.
    fn string(&mut self) -> String {
        self.pos += 1;
        let mut out = Vec::new();
        while self.pos < self.src.len() && self.src[self.pos] != b'"' {
            if self.src[self.pos] == b'\\' && self.pos + 1 < self.src.len() {
                out.push(self.src[self.pos + 1]);
                self.pos += 2;
            } else {
                out.push(self.src[self.pos]);
                self.pos += 1;
            }
        }
        self.pos += 1;
        String::from_utf8_lossy(&out).into_owned()
    }

    fn raw_string(&mut self) {
        self.pos += 1;
        let mut hashes = 0;
        while self.src.get(self.pos) == Some(&b'#') {
            hashes += 1;
            self.pos += 1;
        }
        self.pos += 1;
        while self.pos < self.src.len() {
            let after = self.src.get(self.pos + 1..).unwrap_or(&[]);
            if self.src[self.pos] == b'"' && after.len() >= hashes && after.iter().take(hashes).all(|&b| b == b'#') {
                self.pos += 1 + hashes;
                return;
            }
            self.pos += 1;
        }
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Option<(usize, Tok)>>,
    /// Nesting depth, bounded so malformed text cannot exhaust the stack.
    depth: usize,
}

/// Deeper nesting than this is not followed (ron itself refuses it).
const MAX_DEPTH: usize = 128;

impl Parser<'_> {
    fn peek(&mut self) -> Option<&(usize, Tok)> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next());
        }
        self.peeked.as_ref().and_then(|t| t.as_ref())
    }

    fn bump(&mut self) -> Option<(usize, Tok)> {
        match self.peeked.take() {
            Some(t) => t,
            None => self.lexer.next(),
        }
    }

    fn end(&self) -> usize {
        self.lexer.pos
    }

    fn eat(&mut self, c: u8) -> bool {
        if matches!(self.peek(), Some((_, Tok::Punct(p))) if *p == c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Spanned> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let v = self.value_inner();
        self.depth -= 1;
        v
    }

    fn value_inner(&mut self) -> Option<Spanned> {
        let (start, tok) = self.bump()?;
        let token_end = self.end();
        let value = match tok {
            Tok::Str(s) => {
                return Some(Spanned { start, end: token_end, value: Value::Str(s) });
            }
            Tok::Atom => {
                return Some(Spanned { start, end: token_end, value: Value::Atom });
            }
            Tok::Ident(name) => {
                if matches!(self.peek(), Some((_, Tok::Punct(b'(')))) {
                    let (paren, _) = self.bump()?;
                    self.paren_body(Some(name), paren)?
                } else {
                    return Some(Spanned { start, end: token_end, value: Value::Atom });
                }
            }
            Tok::Punct(b'(') => self.paren_body(None, start)?,
            Tok::Punct(b'[') => {
                let mut items = Vec::new();
                while !self.eat(b']') {
                    items.push(self.value()?);
                    self.eat(b',');
                }
                Value::Seq(items)
            }
            Tok::Punct(b'{') => {
                let mut entries = Vec::new();
                while !self.eat(b'}') {
                    let key = self.value()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    let value = self.value()?;
                    entries.push((key, value));
                    self.eat(b',');
                }
                Value::Map(entries)
            }
            Tok::Punct(_) => return None,
        };
        Some(Spanned { start, end: self.end(), value })
    }

    /// After an opening parenthesis at `paren`: struct fields or tuple items up to the closing one.
    fn paren_body(&mut self, name: Option<String>, paren: usize) -> Option<Value> {
        let mut fields = Vec::new();
        let mut items = Vec::new();
        loop {
            if self.eat(b')') {
                break;
            }
            let (key_start, tok) = self.peek()?.clone();
            if let Tok::Ident(key) = tok {
                self.bump();
                if self.eat(b':') {
                    let value = self.value()?;
                    fields.push(Field { key, key_start, value });
                } else {
                    // A bare identifier, or a named value such as `Some(1)`: step back by re-lexing.
                    self.lexer.pos = key_start;
                    self.peeked = None;
                    items.push(self.value()?);
                }
            } else {
                items.push(self.value()?);
            }
            self.eat(b',');
        }
        Some(if items.is_empty() { Value::Struct { name, paren, fields } } else { Value::Tuple { name, paren, items } })
    }
}

/// Walks a RON document, skipping leading `#![enable(...)]` attributes.
pub fn walk(src: &str) -> Option<Spanned> {
    let mut lexer = Lexer { src: src.as_bytes(), pos: 0 };
    lexer.skip_trivia();
    while lexer.rest().starts_with(b"#!") {
        let mut depth = 0i32;
        while lexer.pos < src.len() {
            match src.as_bytes()[lexer.pos] {
                b'[' => depth += 1,
                b']' => {
                    depth -= 1;
                    if depth == 0 {
                        lexer.pos += 1;
                        break;
                    }
                }
                _ => {}
            }
            lexer.pos += 1;
        }
        lexer.skip_trivia();
    }
    Parser { lexer, peeked: None, depth: 0 }.value()
}

/// The largest char boundary of `src` at or before `offset` (clamped to the text).
pub fn floor_boundary(src: &str, offset: usize) -> usize {
    let mut o = offset.min(src.len());
    while !src.is_char_boundary(o) {
        o -= 1;
    }
    o
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = floor_boundary(src, offset);
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The byte offset of a 1-based line and column; the end of the text if past it.
pub fn offset_of(src: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for _ in 1..line {
        match src[offset..].find('\n') {
            Some(i) => offset += i + 1,
            None => return src.len(),
        }
    }
    let rest = &src[offset..];
    offset + rest.char_indices().nth(col.saturating_sub(1)).map_or(rest.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_parameters_and_edges() {
        let src = "// c\n(\n  nodes: {\n    \"eq\": Eq(bands: [(kind: Peak, freq_hz: 1.0), (kind: Notch, freq_hz: 2.0)]),\n  },\n  edges: [(\"input\", \"eq\")],\n)";
        let doc = walk(src).unwrap();
        let nodes = &doc.field("nodes").unwrap().value;
        let Value::Map(entries) = &nodes.value else { panic!("not a map") };
        let (key, node) = &entries[0];
        assert!(matches!(&key.value, Value::Str(s) if s == "eq"));
        let at = node.locate("bands[1].freq_hz").unwrap();
        assert_eq!(line_col(src, at), (4, 64));
        assert_eq!(&src[at..at + 7], "freq_hz");
        let edges = &doc.field("edges").unwrap().value;
        let at = edges.locate("[0][1]").unwrap();
        assert_eq!(&src[at..at + 4], "\"eq\"");
        assert_eq!(offset_of(src, 4, 64), node.locate("bands[1].freq_hz").unwrap());
    }
}
