//! Record accessors and templates, in the syntax of Fluent Bit's `rewrite_tag` and record
//! accessor: `$key`, `$key['sub']['sub2']`, `$key[0]`, `$TAG`, `$TAG[n]`, mixed with literal
//! text (`logs-$container_name`, `$ecs_cluster/$kubernetes['labels']['app']`).
//!
//! One deliberate difference: an unquoted key name is `[A-Za-z_][A-Za-z0-9_]*`, so `-`, `.`
//! and `/` end a reference instead of joining it (Fluent Bit's lexer would read
//! `$ecs_cluster-$app` as one broken key). Keys with other characters are written quoted:
//! `$['app.kubernetes.io/name']` at the top level, `['...']` below it. Inside quotes, `''`
//! stands for `'` (as in Fluent Bit) and double quotes work too.

use std::fmt;

use crate::record::Fields;
use fanout_contract::view::{FIELD_DEPTH, Key, MapRef, ValueRef};

/// One step below the top-level key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subkey {
    Key(String),
    Index(usize),
}

/// A path into a record: `$kubernetes['labels']['app']`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath {
    pub root: String,
    pub subkeys: Vec<Subkey>,
}

impl FieldPath {
    /// Parses a single reference such as `$kubernetes['labels']['app']` (the `$` is optional).
    pub fn parse(text: &str) -> Result<FieldPath, TemplateError> {
        let template = Template::parse(if text.starts_with('$') {
            text.to_owned()
        } else {
            format!("${text}")
        })?;
        match template.parts.as_slice() {
            [Segment::Field(path)] => Ok(path.clone()),
            _ => Err(TemplateError {
                template: text.to_owned(),
                reason: "expected a single record key such as $key or $key['sub']".into(),
            }),
        }
    }

    /// The value at this path, if every step exists. `null` counts as absent.
    pub fn lookup<'a>(&self, record: &Fields<'a>) -> Option<ValueRef<'a>> {
        self.lookup_in(record, &mut NestedMaps::unindexed())
    }

    /// [`FieldPath::lookup`], with the maps it steps into indexed in `maps` for the record's
    /// next lookups.
    pub fn lookup_in<'a>(
        &self,
        record: &Fields<'a>,
        maps: &mut NestedMaps<'a>,
    ) -> Option<ValueRef<'a>> {
        let mut value = record.get(&self.root)?;
        for subkey in &self.subkeys {
            value = match (subkey, value) {
                (Subkey::Key(k), ValueRef::Map(map)) => maps.get(map, k)?,
                (Subkey::Index(i), ValueRef::Array(items)) => items.iter().nth(*i)?,
                _ => return None,
            };
        }
        (!value.is_null()).then_some(value)
    }

    /// Depth of the value this path reaches (for the nesting limit of its JSON text).
    pub fn depth(&self) -> usize {
        FIELD_DEPTH + self.subkeys.len()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_identifier(&self.root) {
            write!(f, "${}", self.root)?;
        } else {
            write!(f, "$['{}']", self.root.replace('\'', "''"))?;
        }
        for subkey in &self.subkeys {
            match subkey {
                Subkey::Key(k) => write!(f, "['{}']", k.replace('\'', "''"))?,
                Subkey::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// The entries of the nested maps one record's references have stepped into, so that each
/// map is walked once however many references look into it: the default `dd_service` and the
/// convention tags look into `kubernetes` (and its `labels`) up to seven times a record, and
/// a lookup walks the whole map because a later duplicate key wins.
///
/// Maps are told apart by where they sit in the chunk, so an index is never used for another
/// map; [`NestedMaps::clear`] between records keeps it small. A map too large to be worth
/// indexing, or one whose entries end early (a truncated value), is looked up by walking it.
#[derive(Debug)]
pub struct NestedMaps<'a> {
    /// `false`: every lookup walks its map (a single lookup gains nothing from an index).
    indexing: bool,
    /// (the map's address, its first entry in `entries`, its entry count)
    maps: Vec<(usize, usize, usize)>,
    entries: Vec<(Key<'a>, ValueRef<'a>)>,
}

/// Maps with more entries than this are walked on every lookup.
const MAX_INDEXED_ENTRIES: usize = 64;
/// Entries kept for one record at most.
const MAX_INDEXED_TOTAL: usize = 256;

/// The default indexes: what a caller keeping one across records wants.
impl Default for NestedMaps<'_> {
    fn default() -> Self {
        NestedMaps::new()
    }
}

impl<'a> NestedMaps<'a> {
    /// An index for the references of one record after another.
    pub fn new() -> NestedMaps<'a> {
        NestedMaps::with_indexing(true)
    }

    /// No index: each lookup walks its map (for a single lookup; allocates nothing).
    pub fn unindexed() -> NestedMaps<'a> {
        NestedMaps::with_indexing(false)
    }

    fn with_indexing(indexing: bool) -> NestedMaps<'a> {
        NestedMaps {
            indexing,
            maps: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Forgets the maps of the record before.
    pub fn clear(&mut self) {
        self.maps.clear();
        self.entries.clear();
    }

    /// What [`MapRef::get`] answers, from the map's index.
    fn get(&mut self, map: MapRef<'a>, name: &str) -> Option<ValueRef<'a>> {
        if !self.indexing {
            return map.get(name);
        }
        let address = map.address();
        let (first, count) = match self.maps.iter().find(|m| m.0 == address) {
            Some(&(_, first, count)) => (first, count),
            None => {
                if map.len() > MAX_INDEXED_ENTRIES
                    || self.entries.len() + map.len() > MAX_INDEXED_TOTAL
                {
                    return map.get(name);
                }
                let first = self.entries.len();
                self.entries.extend(map.iter());
                let count = self.entries.len() - first;
                if count < map.len() {
                    // The walk ended early: only a walk answers as `get` does.
                    self.entries.truncate(first);
                    return map.get(name);
                }
                self.maps.push((address, first, count));
                (first, count)
            }
        };
        self.entries[first..first + count]
            .iter()
            .rev()
            .find(|(key, _)| key.is(name))
            .map(|&(_, value)| value)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Field(FieldPath),
    Tag,
    TagPart(usize),
}

/// Literal text mixed with record references, resolved per record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Segment>,
}

/// A template that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    pub template: String,
    pub reason: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot parse template '{}': {}",
            self.template, self.reason
        )
    }
}

impl std::error::Error for TemplateError {}

/// The reference a record or tag did not have, for the log line that explains a fallback.
/// Cheap to make: templates miss fields on every record that uses a fallback, and the text is
/// only formatted when someone shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingField<'t> {
    Field(&'t FieldPath),
    TagPart(usize),
    /// A choice with no alternatives (cannot be parsed; kept for completeness).
    Nothing,
}

impl fmt::Display for MissingField<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissingField::Field(path) => write!(f, "record has no {path}"),
            MissingField::TagPart(n) => write!(f, "tag has no part $TAG[{n}]"),
            MissingField::Nothing => f.write_str("no value"),
        }
    }
}

impl Template {
    pub fn parse(source: impl Into<String>) -> Result<Template, TemplateError> {
        let source = source.into();
        let parts = Parser {
            text: &source,
            pos: 0,
        }
        .parts()
        .map_err(|reason| TemplateError {
            template: source.clone(),
            reason,
        })?;
        Ok(Template { source, parts })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the template, or names the first reference the record or tag lacks.
    pub fn render(&self, tag: &str, record: &Fields<'_>) -> Result<String, MissingField<'_>> {
        // Allocated on the first push: a template whose first reference is missing (a
        // fallback tried on every record) allocates nothing.
        let mut out = String::new();
        self.render_into(tag, record, &mut NestedMaps::unindexed(), &mut out)?;
        Ok(out)
    }

    /// Appends the rendered template to `out`, or leaves `out` as it was and names the first
    /// reference the record or tag lacks. `maps` indexes the record's nested maps for the
    /// templates rendered after this one.
    pub fn render_into<'a>(
        &self,
        tag: &str,
        record: &Fields<'a>,
        maps: &mut NestedMaps<'a>,
        out: &mut String,
    ) -> Result<(), MissingField<'_>> {
        let start = out.len();
        for part in &self.parts {
            let missing = match part {
                Segment::Literal(text) => {
                    out.push_str(text);
                    continue;
                }
                Segment::Field(path) => match path.lookup_in(record, maps) {
                    Some(value) => {
                        out.push_str(&value.to_text(path.depth()));
                        continue;
                    }
                    None => MissingField::Field(path),
                },
                Segment::Tag => {
                    out.push_str(tag);
                    continue;
                }
                Segment::TagPart(n) => match tag.split('.').nth(*n) {
                    Some(piece) => {
                        out.push_str(piece);
                        continue;
                    }
                    None => MissingField::TagPart(*n),
                },
            };
            out.truncate(start);
            return Err(missing);
        }
        Ok(())
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Alternatives separated by `||`, tried in order: `$kubernetes['labels']['app'] || $container_name || web`.
/// The first one whose references all resolve wins; a plain literal always resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    options: Vec<Template>,
}

impl Choice {
    pub fn parse(source: &str) -> Result<Choice, TemplateError> {
        let options = source
            .split("||")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Template::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if options.is_empty() {
            return Err(TemplateError {
                template: source.to_owned(),
                reason: "no value between the '||'".into(),
            });
        }
        Ok(Choice { options })
    }

    /// The first alternative that renders, or `None` when none does.
    pub fn render(&self, tag: &str, record: &Fields<'_>) -> Option<String> {
        self.resolve(tag, record).ok()
    }

    /// Appends the first alternative that renders to `out`; `false` (and `out` as it was) when
    /// none does.
    pub fn render_into<'a>(
        &self,
        tag: &str,
        record: &Fields<'a>,
        maps: &mut NestedMaps<'a>,
        out: &mut String,
    ) -> bool {
        self.options
            .iter()
            .any(|option| option.render_into(tag, record, maps, out).is_ok())
    }

    /// How many `||` alternatives there are.
    pub fn alternatives(&self) -> usize {
        self.options.len()
    }

    /// The first alternative that renders *and* that `accept` takes (a destination's own rule:
    /// a valid stream name, a stream not known to be missing); `accept` also learns whether the
    /// value is the last alternative. Each one passed over says why, and the last reason is
    /// returned when none is taken.
    pub fn first_accepted(
        &self,
        tag: &str,
        record: &Fields<'_>,
        mut accept: impl FnMut(&str, bool) -> Result<(), String>,
    ) -> Result<String, String> {
        // Why the last alternative was passed over, made into text only if none is taken.
        let mut refused = None;
        let mut missing = MissingField::Nothing;
        for (n, option) in self.options.iter().enumerate() {
            match option.render(tag, record) {
                Ok(value) => match accept(&value, n + 1 == self.options.len()) {
                    Ok(()) => return Ok(value),
                    Err(why) => refused = Some(why),
                },
                Err(field) => {
                    missing = field;
                    refused = None;
                }
            }
        }
        Err(refused.unwrap_or_else(|| missing.to_string()))
    }

    /// Like [`Choice::render`], naming what the last alternative missed when none renders.
    pub fn resolve(&self, tag: &str, record: &Fields<'_>) -> Result<String, MissingField<'_>> {
        let mut missing = MissingField::Nothing;
        for option in &self.options {
            match option.render(tag, record) {
                Ok(value) => return Ok(value),
                Err(e) => missing = e,
            }
        }
        Err(missing)
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sources: Vec<&str> = self.options.iter().map(Template::source).collect();
        f.write_str(&sources.join(" || "))
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn parts(mut self) -> Result<Vec<Segment>, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        while let Some(c) = self.bump() {
            if c != '$' {
                literal.push(c);
                continue;
            }
            let reference = match self.peek() {
                Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                    let name = self.identifier();
                    if name == "TAG" {
                        if self.peek() == Some('[') {
                            Some(Segment::TagPart(self.tag_index()?))
                        } else {
                            Some(Segment::Tag)
                        }
                    } else {
                        Some(Segment::Field(FieldPath {
                            root: name,
                            subkeys: self.subkeys()?,
                        }))
                    }
                }
                Some('[') => {
                    let mut subkeys = self.subkeys()?;
                    match subkeys.first() {
                        Some(Subkey::Key(_)) => {
                            let Subkey::Key(root) = subkeys.remove(0) else {
                                unreachable!()
                            };
                            Some(Segment::Field(FieldPath { root, subkeys }))
                        }
                        _ => return Err("after '$[' expected a quoted key such as $['key']".into()),
                    }
                }
                // A '$' that starts no reference is kept as text ("cost in $").
                _ => None,
            };
            match reference {
                Some(part) => {
                    if !literal.is_empty() {
                        parts.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                }
                None => literal.push('$'),
            }
        }
        if !literal.is_empty() {
            parts.push(Segment::Literal(literal));
        }
        Ok(parts)
    }

    fn identifier(&mut self) -> String {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c == '_' || c.is_ascii_alphanumeric()) {
            self.pos += 1;
        }
        self.text[start..self.pos].to_owned()
    }

    fn tag_index(&mut self) -> Result<usize, String> {
        self.bump(); // '['
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = &self.text[start..self.pos];
        if digits.is_empty() || self.bump() != Some(']') {
            return Err("$TAG[n] needs a number, e.g. $TAG[1]".into());
        }
        digits
            .parse()
            .map_err(|_| format!("tag index '{digits}' is too large"))
    }

    fn subkeys(&mut self) -> Result<Vec<Subkey>, String> {
        let mut subkeys = Vec::new();
        while self.peek() == Some('[') {
            self.bump();
            match self.peek() {
                Some(quote @ ('\'' | '"')) => {
                    self.bump();
                    subkeys.push(Subkey::Key(self.quoted(quote)?));
                }
                Some(c) if c.is_ascii_digit() => {
                    let start = self.pos;
                    while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
                        self.pos += 1;
                    }
                    let digits = &self.text[start..self.pos];
                    subkeys.push(Subkey::Index(
                        digits
                            .parse()
                            .map_err(|_| format!("index '{digits}' is too large"))?,
                    ));
                }
                _ => {
                    return Err(format!(
                        "expected a quoted key or an index after '[' at byte {}",
                        self.pos
                    ));
                }
            }
            if self.bump() != Some(']') {
                return Err(format!("missing ']' before byte {}", self.pos));
            }
        }
        Ok(subkeys)
    }

    fn quoted(&mut self, quote: char) -> Result<String, String> {
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(format!("unterminated {quote}-quoted key")),
                Some(c) if c == quote => {
                    if self.peek() == Some(quote) {
                        self.bump();
                        out.push(quote);
                    } else {
                        return Ok(out);
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests;
