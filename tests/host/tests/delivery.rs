//! The delivery engine through the built plugin: per-record outcomes (a refused record isolated,
//! everything else delivered), redirects never followed, `Retry-After: 0` that cannot spin,
//! concurrent requests, identical chunks, and the counters that say it all.

mod common;

use std::time::Duration;

use fanout_testhost::fake_datadog::{FakeDatadog, REFUSED_MESSAGE, Reply};
use fanout_testhost::host::{FLB_ERROR, FLB_OK, FLB_RETRY, logs_of};
use fanout_testhost::{Chunk, HostVersion, Plugin, plugin_path};
use serde_json::json;

use common::records;

fn load() -> Plugin {
    Plugin::load(&plugin_path(), HostVersion::V5_1).expect("the plugin loads")
}

fn props<'a>(
    label: &'a str,
    intake: &'a FakeDatadog,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("destinations", "datadog"),
        ("apikey", "dd-delivery-test-key"),
        ("dd_url", intake.url.as_str()),
        ("label", label),
    ];
    p.extend_from_slice(extra);
    p
}

fn chunk_of(messages: impl IntoIterator<Item = String>) -> Chunk {
    messages
        .into_iter()
        .enumerate()
        .fold(Chunk::new(), |c, (i, m)| {
            c.event(i as u32, &json!({"log": m}))
        })
}

fn exit_line(label: &str) -> String {
    logs_of(label)
        .into_iter()
        .find(|l| l.text.contains("exiting:"))
        .map(|l| l.text)
        .unwrap_or_default()
}

#[test]
fn a_400_on_the_second_of_four_requests_isolates_the_refused_record() {
    let plugin = load();
    let intake = FakeDatadog::start();
    let instance = plugin
        .init(&props(
            "dd-400",
            &intake,
            &[("max_concurrent_requests", "1")],
        ))
        .unwrap();
    // 4000 logs: four requests of 1000; log 1500 (in the second) is refused by the intake.
    let chunk = chunk_of((0..4000).map(|i| {
        if i == 1500 {
            REFUSED_MESSAGE.to_owned()
        } else {
            format!("log {i}")
        }
    }));
    assert_eq!(
        instance.flush(chunk.bytes(), "t"),
        FLB_ERROR,
        "nothing pending, one record refused for good"
    );
    assert_eq!(instance.exit(), FLB_OK);
    let accepted = intake.accepted();
    assert_eq!(accepted.len(), 3999, "every other log delivered");
    assert!(accepted.iter().all(|e| e["message"] != REFUSED_MESSAGE));
    let refused: Vec<usize> = intake
        .received()
        .iter()
        .filter(|r| r.status == 400)
        .map(|r| r.entries.len())
        .collect();
    assert_eq!(
        refused.last(),
        Some(&1),
        "halved down to the one log: {refused:?}"
    );
    let errors: Vec<String> = logs_of("dd-400")
        .into_iter()
        .filter(|l| l.level == 1)
        .map(|l| l.text)
        .collect();
    assert_eq!(errors.len(), 1, "one line per cause: {errors:?}");
    assert!(
        errors[0].contains("datadog: 1 records rejected: HTTP 400"),
        "{}",
        errors[0]
    );
    let exit = exit_line("dd-400");
    assert!(
        exit.contains("datadog[delivered=3999 retried=0 dropped=0 rejected=1"),
        "{exit}"
    );
}

#[test]
fn a_redirect_is_not_followed_and_the_key_goes_nowhere_else() {
    let plugin = load();
    let intake = FakeDatadog::start();
    let elsewhere = FakeDatadog::start();
    let target = format!("{}/api/v2/logs", elsewhere.url);
    intake.script(std::iter::repeat_n(Reply::Redirect(307, target), 100));
    let instance = plugin
        .init(&props("dd-307", &intake, &[("flush_timeout", "1s")]))
        .unwrap();
    let status = instance.flush(chunk_of(["x".to_owned()]).bytes(), "t");
    assert_eq!(status, FLB_RETRY, "a redirect is not a delivery");
    assert_eq!(instance.exit(), FLB_OK);
    assert!(
        elsewhere.received().is_empty(),
        "nothing reached the redirect's target"
    );
    assert!(intake.accepted().is_empty());
    let port = elsewhere.url.rsplit(':').next().unwrap();
    let errors: Vec<String> = logs_of("dd-307")
        .into_iter()
        .filter(|l| l.level == 1)
        .map(|l| l.text)
        .collect();
    assert!(
        errors.iter().any(|e| e.contains(&format!(
            "HTTP 307 redirect to 127.0.0.1:{port}, not followed"
        ))),
        "{errors:?}"
    );
}

#[test]
fn retry_after_zero_is_honoured_with_a_floor() {
    let plugin = load();
    let intake = FakeDatadog::start();
    intake.script(std::iter::repeat_n(Reply::RetryAfter(429, 0), 5));
    let instance = plugin.init(&props("dd-ra0", &intake, &[])).unwrap();
    assert_eq!(
        instance.flush(chunk_of(["a".to_owned(), "b".to_owned()]).bytes(), "t"),
        FLB_OK
    );
    assert_eq!(instance.exit(), FLB_OK);
    let statuses: Vec<u16> = intake.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 429, 429, 429, 429, 202]);
    assert_eq!(intake.accepted().len(), 2);
}

#[test]
fn requests_go_out_concurrently_up_to_max_concurrent_requests() {
    let plugin = load();
    // A remote intake: every answer takes 150 ms.
    let intake = FakeDatadog::start_with_latency(Duration::from_millis(150));
    let instance = plugin
        .init(&props(
            "dd-conc",
            &intake,
            &[("max_concurrent_requests", "4")],
        ))
        .unwrap();
    let chunk = chunk_of((0..8000).map(|i| format!("log {i}")));
    assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
    assert_eq!(instance.exit(), FLB_OK);
    assert_eq!(intake.received().len(), 8);
    assert_eq!(intake.accepted().len(), 8000);
    assert_eq!(
        intake.most_in_flight(),
        4,
        "four requests in flight at once, never more"
    );
}

/// Two chunks with the same tag and bytes are two chunks: each is delivered to every
/// destination, whatever the other's progress.
#[test]
fn identical_chunks_do_not_share_progress() {
    let plugin = load();
    let intake = FakeDatadog::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out_s = out.display().to_string();
    let instance = plugin
        .init(&[
            ("destinations", "datadog,file"),
            ("apikey", "dd-delivery-test-key"),
            ("dd_url", intake.url.as_str()),
            ("path", &out_s),
            ("flush_timeout", "1s"),
            ("label", "dd-twins"),
        ])
        .unwrap();
    let chunk = chunk_of(["same".to_owned(), "bytes".to_owned()]);
    // The first copy reaches the file but not Datadog before its deadline.
    intake.script(std::iter::repeat_n(Reply::Status(503), 100));
    assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_RETRY);
    intake.script_clear();
    // The second copy, then Fluent Bit's resend of the first.
    assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
    assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
    assert_eq!(instance.exit(), FLB_OK);
    let mut in_file: Vec<String> = records(&out)
        .iter()
        .map(|r| r["log"].as_str().unwrap().to_owned())
        .collect();
    in_file.sort();
    assert_eq!(in_file, vec!["bytes", "bytes", "same", "same"]);
    let mut in_datadog: Vec<String> = intake
        .accepted()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    in_datadog.sort();
    assert_eq!(in_datadog, vec!["bytes", "bytes", "same", "same"]);
}
