//! Fluent Bit's classic configuration format, as far as a preview needs it: `[SECTION]`
//! headers, `key value` lines, `#` comments, `@INCLUDE` (relative to the including file) and
//! `@SET`/`${VAR}` substitution (variables first, then the environment; unset is empty, as in
//! Fluent Bit).

use std::collections::HashMap;
use std::path::Path;

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

/// Reads a config file and its includes. `env` is consulted for `${VAR}` after `@SET`s.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Section>, String> {
    let mut sections = Vec::new();
    let mut vars = HashMap::new();
    read(path, env, &mut vars, &mut sections, 0)?;
    Ok(sections)
}

fn read(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    vars: &mut HashMap<String, String>,
    sections: &mut Vec<Section>,
    depth: usize,
) -> Result<(), String> {
    if depth > 16 {
        return Err(format!("{}: @INCLUDE nested too deeply", path.display()));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("@INCLUDE") {
            let included = path.parent().unwrap_or(Path::new(".")).join(rest.trim());
            read(&included, env, vars, sections, depth + 1)?;
        } else if let Some(rest) = line.strip_prefix("@SET") {
            let (key, value) = rest.trim().split_once('=').ok_or_else(|| {
                format!("{}:{}: @SET needs key=value", path.display(), number + 1)
            })?;
            vars.insert(key.trim().to_owned(), value.trim().to_owned());
        } else if line.starts_with('[') && line.ends_with(']') {
            sections.push(Section {
                name: line[1..line.len() - 1].trim().to_ascii_uppercase(),
                properties: Vec::new(),
            });
        } else {
            let section = sections.last_mut().ok_or_else(|| {
                format!(
                    "{}:{}: a property outside any section",
                    path.display(),
                    number + 1
                )
            })?;
            let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            section
                .properties
                .push((key.to_owned(), expand(value.trim(), vars, env)));
        }
    }
    Ok(())
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
        let dir = std::env::temp_dir().join(format!("classic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("main.conf"),
            "@SET stream=logs\n[SERVICE]\n    Flush 1\n# c\n@INCLUDE extra.conf\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("extra.conf"),
            "[OUTPUT]\n    Name fanout\n    delivery_stream ${stream}-$container_name\n    apikey ${KEY}\n    dd_source ${UNSET}\n",
        )
        .unwrap();
        let env = |k: &str| (k == "KEY").then(|| "secret".to_string());
        let sections = load(&dir.join("main.conf"), &env).unwrap();
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[1].name, "OUTPUT");
        assert_eq!(
            sections[1].get("delivery_stream"),
            Some("logs-$container_name")
        );
        assert_eq!(sections[1].get("APIKEY"), Some("secret"));
        assert_eq!(sections[1].get("dd_source"), Some(""));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
