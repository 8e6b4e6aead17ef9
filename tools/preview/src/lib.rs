//! `flb-fanout preview`: for a Fluent Bit config and sample records, show where each record
//! would go (Datadog service, source and tags; Firehose delivery stream) and the exact payload
//! each destination would send. The work is `fanout_core::preview`'s (the plugin's own
//! configuration readers and encoders); this crate reads the files and prints.

use std::path::Path;

use fanout_core::time::EventTime;
use serde_json::Value;

/// Fluent Bit's classic configuration format, read from files.
pub mod classic {
    use std::path::Path;

    pub use fanout_core::classic::Section;

    /// Reads a config file and its `@INCLUDE`s. `env` is consulted for `${VAR}` after `@SET`s.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Section>, String> {
        fanout_core::classic::load(
            &path.to_string_lossy(),
            &|file| std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}")),
            env,
        )
    }
}

/// Records from JSON lines (see [`fanout_core::preview::parse_records`]); lines without a time
/// get the current one.
pub fn parse_records(text: &str) -> Result<Vec<(EventTime, Value)>, String> {
    let now = EventTime::from_f64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
    )
    .unwrap_or(EventTime::new(0, 0));
    fanout_core::preview::parse_records(text, now)
}

/// The preview of every `[OUTPUT] Name fanout` section of `config` for `records`; the plugin's
/// error line when a property is wrong.
pub fn preview(
    config: &Path,
    records: &[(EventTime, Value)],
    tag: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let sections = classic::load(config, env)?;
    let report = fanout_core::preview::report(&sections, records, tag, env)
        .map_err(|e| format!("{}: {e}", config.display()))?;
    if let Some(error) = report.outputs.iter().find_map(|o| o.error.clone()) {
        return Err(error);
    }
    Ok(report.text())
}
