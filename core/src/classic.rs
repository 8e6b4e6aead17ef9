//! Fluent Bit's classic configuration format, as far as a preview needs it: `[SECTION]`
//! headers, `key value` lines, `#` comments, `@INCLUDE` (relative to the including file) and
//! `@SET`/`${VAR}` substitution (variables first, then the environment; unset is empty, as in
//! Fluent Bit).

use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// Keys as written (Fluent Bit compares them case-insensitively), in order.
    pub properties: Vec<(String, String)>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a config and its includes. `read` gives a file's text by path (relative paths of
/// `@INCLUDE` are joined to the including file's directory); `env` is consulted for `${VAR}`
/// after `@SET`s.
pub fn load(
    path: &str,
    read: &dyn Fn(&str) -> Result<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Section>, String> {
    let mut sections = Vec::new();
    let mut vars = HashMap::new();
    let mut context = Context {
        read,
        env,
        vars: &mut vars,
        sections: &mut sections,
    };
    context.file(path, 0)?;
    Ok(sections)
}

struct Context<'a> {
    read: &'a dyn Fn(&str) -> Result<String, String>,
    env: &'a dyn Fn(&str) -> Option<String>,
    vars: &'a mut HashMap<String, String>,
    sections: &'a mut Vec<Section>,
}

/// `included` as seen from the file at `from`.
fn beside(from: &str, included: &str) -> String {
    if included.starts_with('/') {
        return included.to_owned();
    }
    match from.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{included}"),
        None => included.to_owned(),
    }
}

impl Context<'_> {
    fn file(&mut self, path: &str, depth: usize) -> Result<(), String> {
        if depth > 16 {
            return Err(format!("{path}: @INCLUDE nested too deeply"));
        }
        let text = (self.read)(path)?;
        for (number, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("@INCLUDE") {
                self.file(&beside(path, rest.trim()), depth + 1)?;
            } else if let Some(rest) = line.strip_prefix("@SET") {
                let (key, value) = rest
                    .trim()
                    .split_once('=')
                    .ok_or_else(|| format!("{path}:{}: @SET needs key=value", number + 1))?;
                self.vars
                    .insert(key.trim().to_owned(), value.trim().to_owned());
            } else if line.starts_with('[') && line.ends_with(']') {
                self.sections.push(Section {
                    name: line[1..line.len() - 1].trim().to_ascii_uppercase(),
                    properties: Vec::new(),
                });
            } else {
                let value = {
                    let (_, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                    expand(value.trim(), self.vars, self.env)
                };
                let section = self.sections.last_mut().ok_or_else(|| {
                    format!("{path}:{}: a property outside any section", number + 1)
                })?;
                let (key, _) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                section.properties.push((key.to_owned(), value));
            }
        }
        Ok(())
    }
}

fn expand(
    value: &str,
    vars: &HashMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find('}') {
            Some(end) => {
                let name = &rest[start + 2..start + 2 + end];
                out.push_str(
                    &vars
                        .get(name)
                        .cloned()
                        .or_else(|| env(name))
                        .unwrap_or_default(),
                );
                rest = &rest[start + 3 + end..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_includes_and_variables() {
        let files = |path: &str| {
            match path {
            "etc/main.conf" => Ok(
                "@SET stream=logs\n[SERVICE]\n    Flush 1\n# c\n@INCLUDE extra.conf\n".to_owned(),
            ),
            "etc/extra.conf" => Ok("[OUTPUT]\n    Name fanout\n    delivery_stream ${stream}-$container_name\n    apikey ${KEY}\n    dd_source ${UNSET}\n".to_owned()),
            other => Err(format!("cannot read {other}")),
        }
        };
        let env = |k: &str| (k == "KEY").then(|| "secret".to_string());
        let sections = load("etc/main.conf", &files, &env).unwrap();
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[1].name, "OUTPUT");
        assert_eq!(
            sections[1].get("delivery_stream"),
            Some("logs-$container_name")
        );
        assert_eq!(sections[1].get("APIKEY"), Some("secret"));
        assert_eq!(sections[1].get("dd_source"), Some(""));
        assert_eq!(
            load("etc/missing.conf", &files, &env).unwrap_err(),
            "cannot read etc/missing.conf"
        );
    }
}
