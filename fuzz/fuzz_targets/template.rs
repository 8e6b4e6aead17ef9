//! Any text as a template and as a record: parsing and rendering never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: (&str, &str, &str)| {
    let (template, tag, record) = data;
    let record = serde_json::from_str::<serde_json::Value>(record)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    if let Ok(choice) = fanout::accessor::Choice::parse(template) {
        let _ = choice.render(tag, &record);
    }
    if let Ok(t) = fanout::accessor::Template::parse(template) {
        let _ = t.render(tag, &record);
    }
});
