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
use crate::view::{FIELD_DEPTH, Key, MapRef, ValueRef};

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
mod tests {
    use super::*;
    use crate::record::Records;
    use crate::time::EventTime;
    use serde_json::{Value, json};

    fn record(v: Value) -> Records {
        Records::from_json(&[(EventTime::new(1, 0), v)])
    }

    fn body(r: &Records) -> Fields<'_> {
        r.get(0).unwrap().body
    }

    /// Two maps `{"a": <nested>, "b": 7, 5: "int key", "a": "last", "c": null}` with the same
    /// bytes at different places, then a map of 70 entries, then one cut short.
    fn nested_maps_chunk() -> (Vec<u8>, Vec<usize>) {
        use rmp::encode;
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for _ in 0..2 {
            starts.push(buf.len());
            encode::write_map_len(&mut buf, 5).unwrap();
            encode::write_str(&mut buf, "a").unwrap();
            encode::write_map_len(&mut buf, 1).unwrap();
            encode::write_str(&mut buf, "x").unwrap();
            encode::write_array_len(&mut buf, 2).unwrap();
            encode::write_uint(&mut buf, 1).unwrap();
            encode::write_str(&mut buf, "y").unwrap();
            encode::write_str(&mut buf, "b").unwrap();
            encode::write_uint(&mut buf, 7).unwrap();
            encode::write_uint(&mut buf, 5).unwrap();
            encode::write_str(&mut buf, "int key").unwrap();
            encode::write_str(&mut buf, "a").unwrap();
            encode::write_str(&mut buf, "last").unwrap();
            encode::write_str(&mut buf, "c").unwrap();
            encode::write_nil(&mut buf).unwrap();
        }
        starts.push(buf.len());
        encode::write_map_len(&mut buf, 70).unwrap();
        for n in 0..70 {
            encode::write_str(&mut buf, &format!("k{n}")).unwrap();
            encode::write_uint(&mut buf, n).unwrap();
        }
        starts.push(buf.len());
        encode::write_map_len(&mut buf, 3).unwrap();
        encode::write_str(&mut buf, "a").unwrap();
        encode::write_str(&mut buf, "first").unwrap();
        encode::write_str(&mut buf, "b").unwrap();
        encode::write_str_len(&mut buf, 10).unwrap();
        buf.extend_from_slice(b"cut");
        (buf, starts)
    }

    #[test]
    fn indexed_nested_maps_answer_exactly_as_a_walk_does() {
        let (buf, starts) = nested_maps_chunk();
        let maps: Vec<MapRef<'_>> = starts
            .iter()
            .map(|&at| match crate::view::peek(&buf[at..]) {
                Some(ValueRef::Map(map)) => map,
                other => panic!("a map, not {other:?}"),
            })
            .collect();
        let names = ["a", "b", "c", "5", "x", "k0", "k69", "k70", "", "A"];
        let mut index = NestedMaps::new();
        // Twice over every map without clearing: the second round reads the index.
        for _ in 0..2 {
            for (n, map) in maps.iter().enumerate() {
                for name in names {
                    assert_eq!(
                        index.get(*map, name),
                        map.get(name),
                        "map {n}, key {name:?}"
                    );
                }
            }
        }
        assert_eq!(index.get(maps[0], "a"), Some(ValueRef::Str(b"last")));
        assert_eq!(index.get(maps[1], "5"), Some(ValueRef::Str(b"int key")));
        assert_eq!(
            index.get(maps[3], "a"),
            None,
            "a walk that fails finds nothing"
        );
        // The two small maps are indexed, the large and the broken ones walked each time.
        assert_eq!(index.maps.len(), 2);
        assert_eq!(index.entries.len(), 10);
        index.clear();
        assert!(index.maps.is_empty() && index.entries.is_empty());
        // Past the bound on entries per record, maps are walked, still with the same answers.
        let mut many = Vec::new();
        let mut starts = Vec::new();
        for n in 0..40 {
            starts.push(many.len());
            rmp::encode::write_map_len(&mut many, 8).unwrap();
            for k in 0..8 {
                rmp::encode::write_str(&mut many, &format!("k{k}")).unwrap();
                rmp::encode::write_uint(&mut many, n * 8 + k).unwrap();
            }
        }
        for &at in &starts {
            let Some(ValueRef::Map(map)) = crate::view::peek(&many[at..]) else {
                panic!("a map")
            };
            assert_eq!(index.get(map, "k7"), map.get("k7"));
        }
        assert_eq!(index.entries.len(), MAX_INDEXED_TOTAL);
    }

    #[test]
    fn templates_sharing_an_index_render_as_alone() {
        let r = record(json!({
            "container_name": "web",
            "kubernetes": {
                "pod_name": "p-1", "namespace_name": "batch",
                "labels": {"tags.datadoghq.com/env": "prod", "app": "report"}
            },
            "other": {"labels": {"app": "not this one"}}
        }));
        let b = body(&r);
        let sources = [
            "$kubernetes['labels']['app']",
            "$other['labels']['app']",
            "$kubernetes['pod_name']-$kubernetes['labels']['tags.datadoghq.com/env']",
            "$kubernetes['labels']['missing']",
            "$kubernetes['namespace_name']/$container_name",
        ];
        let mut maps = NestedMaps::new();
        for source in sources {
            let template = Template::parse(source).unwrap();
            let mut shared = String::new();
            let with_index = template
                .render_into("t", &b, &mut maps, &mut shared)
                .map(|()| shared);
            assert_eq!(with_index, template.render("t", &b), "{source}");
        }
        // kubernetes, its labels, other, its labels: each indexed once.
        assert_eq!(maps.maps.len(), 4);
    }

    #[test]
    fn renders_fields_subkeys_and_tag_parts() {
        let r = record(json!({
            "container_name": "web",
            "ecs_cluster": "prod",
            "kubernetes": {"labels": {"app": "checkout", "app.kubernetes.io/name": "co"}},
            "list": ["a", "b"],
            "n": 3
        }));
        let cases = [
            ("logs-$container_name", "logs-web"),
            ("$ecs_cluster-$kubernetes['labels']['app']", "prod-checkout"),
            ("$ecs_cluster/$container_name/", "prod/web/"),
            ("$kubernetes['labels']['app.kubernetes.io/name']", "co"),
            ("$kubernetes[\"labels\"][\"app\"]", "checkout"),
            ("$list[1]-$n", "b-3"),
            ("$TAG", "ecs.web.stdout"),
            ("x-$TAG[1].$TAG[2]", "x-web.stdout"),
            ("$['container_name']", "web"),
            ("plain", "plain"),
            ("cost in $ only", "cost in $ only"),
        ];
        for (template, expected) in cases {
            let t = Template::parse(template).unwrap();
            assert_eq!(
                t.render("ecs.web.stdout", &body(&r)).unwrap(),
                expected,
                "{template}"
            );
        }
    }

    #[test]
    fn missing_fields_are_reported_by_name() {
        let r = record(json!({"kubernetes": {"labels": {}}, "gone": null}));
        let t = Template::parse("svc-$kubernetes['labels']['app']").unwrap();
        assert_eq!(
            t.render("t", &body(&r)).unwrap_err().to_string(),
            "record has no $kubernetes['labels']['app']"
        );
        assert!(
            Template::parse("$gone")
                .unwrap()
                .render("t", &body(&r))
                .is_err()
        );
        assert!(
            Template::parse("$TAG[3]")
                .unwrap()
                .render("a.b", &body(&r))
                .is_err()
        );
    }

    #[test]
    fn maps_render_as_json_and_quotes_escape() {
        let r = record(json!({"it's": {"a": 1}}));
        let t = Template::parse("$['it''s']").unwrap();
        assert_eq!(t.render("t", &body(&r)).unwrap(), r#"{"a":1}"#);
    }

    #[test]
    fn bad_templates_say_why() {
        for bad in ["$a['x'", "$a['x", "$TAG[]", "$[0]", "$a[x]"] {
            let err = Template::parse(bad).unwrap_err();
            assert_eq!(err.template, bad);
            assert!(!err.reason.is_empty());
        }
    }

    #[test]
    fn choices_fall_back_in_order() {
        let c = Choice::parse("$kubernetes['labels']['app'] || svc-$container_name || unknown")
            .unwrap();
        assert_eq!(
            c.render("t", &body(&record(json!({"container_name": "web"}))))
                .unwrap(),
            "svc-web"
        );
        assert_eq!(c.render("t", &body(&record(json!({})))).unwrap(), "unknown");
        let no_default = Choice::parse("$a || $b").unwrap();
        assert_eq!(
            no_default.render("t", &body(&record(json!({"c": 1})))),
            None
        );
        assert!(Choice::parse(" || ").is_err());
    }

    #[test]
    fn field_path_round_trips_through_display() {
        let p = FieldPath::parse("kubernetes['labels']['tags.datadoghq.com/service']").unwrap();
        assert_eq!(
            p.to_string(),
            "$kubernetes['labels']['tags.datadoghq.com/service']"
        );
        assert!(FieldPath::parse("$a-$b").is_err());
    }
}
