//! Any text as a template and as a record: parsing and rendering never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: (&str, &str, &str)| {
    let (template, tag, record) = data;
    let body = serde_json::from_str::<serde_json::Value>(record)
        .ok()
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    let records =
        fanout::record::Records::from_json(&[(fanout::record::EventTime::new(1, 0), body)]);
    let Some(record) = records.get(0) else { return };
    if let Ok(choice) = fanout::accessor::Choice::parse(template) {
        let _ = choice.render(tag, &record.body);
    }
    if let Ok(t) = fanout::accessor::Template::parse(template) {
        let _ = t.render(tag, &record.body);
    }
});
