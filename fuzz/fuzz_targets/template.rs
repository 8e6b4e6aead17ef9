//! Any text as templates and as a record: parsing and rendering never panic, and templates
//! rendered one after another with a shared index of the record's nested maps (as the Datadog
//! encoder renders a record's service and tags) render exactly as each does alone.
#![no_main]

use fanout_core::accessor::{Choice, NestedMaps, Template};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: (&str, &str, &str)| {
    let (templates, tag, record) = data;
    let body = serde_json::from_str::<serde_json::Value>(record)
        .ok()
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    let records =
        fanout_core::record::Records::from_json(&[(fanout_core::time::EventTime::new(1, 0), body)]);
    let Some(record) = records.get(0) else { return };
    let mut maps = NestedMaps::new();
    for template in templates.split('\n') {
        if let Ok(choice) = Choice::parse(template) {
            let alone = choice.render(tag, &record.body);
            let mut shared = String::new();
            let rendered = choice.render_into(tag, &record.body, &mut maps, &mut shared);
            assert_eq!(alone, rendered.then_some(shared), "{template:?}");
        }
        if let Ok(t) = Template::parse(template) {
            let alone = t.render(tag, &record.body).ok();
            let mut shared = String::new();
            let rendered = t.render_into(tag, &record.body, &mut maps, &mut shared);
            assert_eq!(alone, rendered.ok().map(|()| shared), "{template:?}");
        }
    }
});
