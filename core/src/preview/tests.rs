use super::*;

/// The preview with no environment: a test's config names everything it needs.
fn report(
    sections: &[Section],
    records: &[(EventTime, Value)],
    tag: &str,
) -> Result<Report, String> {
    super::report(sections, records, tag, &|_| None)
}
use crate::classic;

fn sections(config: &str) -> Vec<Section> {
    classic::load("extra.conf", &|_| Ok(config.to_owned()), &|name| {
        (name == "AWS_REGION").then(|| "eu-west-1".to_owned())
    })
    .unwrap()
}

const CONFIG: &str = "[OUTPUT]\n    Name fanout\n    Match *\n    destinations datadog,firehose\n    apikey k\n    region ${AWS_REGION}\n    delivery_stream logs-$container_name\n    simple_aggregation on\n";

/// A misspelt key is the error Fluent Bit 5.1.1 stops on, with the likely name; keys Fluent
/// Bit takes itself pass; a core output's key that means nothing here passes with a note.
#[test]
fn keys_are_checked_against_the_property_table() {
    let typo = report(
            &sections("[OUTPUT]\n    Name fanout\n    Match *\n    Retry_Limit 2\n    tls.verify on\n    destinations firehose\n    region x\n    delivery_steam logs\n"),
            &records(),
            "t",
        )
        .unwrap();
    assert_eq!(
        typo.outputs[0].error.as_deref(),
        Some(
            "[error] [config] fanout: unknown configuration property 'delivery_steam' (did you mean 'delivery_stream'?): Fluent Bit 5.1.1 refuses to start; older versions ignore the key"
        )
    );
    let renamed = report(
        &sections(&format!(
            "{CONFIG}    auto_retry_requests true\n    workers 2\n"
        )),
        &records(),
        "t",
    )
    .unwrap();
    let output = &renamed.outputs[0];
    assert_eq!(output.error, None);
    assert!(
        output
            .notes
            .iter()
            .any(|n| n.contains("'auto_retry_requests' (kinesis_firehose output")),
        "{:?}",
        output.notes
    );
    assert!(
        renamed
            .text()
            .contains("note: ignoring properties of Fluent Bit's core outputs")
    );
}

fn records() -> Vec<(EventTime, Value)> {
    parse_records(
            "{\"container_name\":\"web\",\"log\":\"a\"}\n[1700000000,{\"container_name\":\"db\",\"log\":\"b\"}]\n{\"log\":\"c\"}\n",
            EventTime::new(1, 0),
        )
        .unwrap()
}

#[test]
fn each_record_is_routed_and_the_sample_is_counted() {
    let report = report(&sections(CONFIG), &records(), "app").unwrap();
    let output = &report.outputs[0];
    assert_eq!(output.error, None);
    let names: Vec<&str> = output.destinations.iter().map(|d| d.name).collect();
    assert_eq!(names, ["datadog", "firehose"]);
    let streams: Vec<String> = output
        .records
        .iter()
        .map(|r| match r.route("firehose") {
            Some(route) => match &route.refused {
                Some(refused) => refused.clone(),
                None => route.facts[0].text.clone(),
            },
            None => "-".into(),
        })
        .collect();
    assert_eq!(streams[..2], ["logs-web", "logs-db"]);
    assert!(streams[2].starts_with("NOT ROUTED"), "{streams:?}");
    assert_eq!(output.sample_records, 3);
    let datadog = &output.destination("datadog").unwrap().totals;
    assert_eq!(datadog.figure("requests"), Some(1));
    let firehose = &output.destination("firehose").unwrap().totals;
    assert_eq!(firehose.figure("calls"), Some(2));
    assert_eq!(firehose.places, vec!["logs-web", "logs-db"]);
    assert_eq!(firehose.figure("billed_units_with_aggregation"), Some(2));
    assert_eq!(firehose.figure("billed_units_without_aggregation"), Some(2));
    let text = report.text();
    assert!(text.contains("firehose: stream=logs-web"), "{text}");
    assert!(text.contains("firehose 2 calls"), "{text}");
}

#[test]
fn partition_keys_show_what_the_s3_prefix_is_built_from() {
    let config = CONFIG.replace(
        "simple_aggregation on",
        "simple_aggregation on\n    partition_keys service=$container_name",
    );
    let report = report(&sections(&config), &records(), "app").unwrap();
    let route = report.outputs[0].records[0].route("firehose").unwrap();
    let prefixes: Vec<&str> = route
        .facts
        .iter()
        .filter(|f| f.class == Some("prefix"))
        .map(|f| f.text.as_str())
        .collect();
    assert_eq!(prefixes, ["S3 prefix key service=web"]);
    assert!(report.text().contains("partition keys service=web"));
}

#[test]
fn dead_letter_says_where_refused_records_are_kept() {
    let config = CONFIG.replace(
        "simple_aggregation on",
        "simple_aggregation on\n    dead_letter /var/log/fanout/refused.jsonl",
    );
    let report = report(&sections(&config), &records(), "app").unwrap();
    let output = &report.outputs[0];
    assert_eq!(
        output.dead_letter.as_deref(),
        Some("/var/log/fanout/refused.jsonl")
    );
    assert!(output.notes.iter().any(|n| n.contains("up to 100 MiB")));
    let text = report.text();
    assert!(
        text.contains("reported as failed, kept in /var/log/fanout/refused.jsonl"),
        "{text}"
    );
    let without = super::report(&sections(CONFIG), &records(), "app", &|_| None).unwrap();
    assert!(!without.text().contains("kept in"));
}

#[test]
fn a_bad_property_gives_the_plugins_error_line() {
    let config = CONFIG.replace("Match *", "Match *\n    flush_timeout soon");
    let report = report(&sections(&config), &records(), "app").unwrap();
    let error = report.outputs[0].error.as_deref().unwrap();
    assert!(
        error.starts_with(
            "[error] [output:fanout:fanout.0] property 'flush_timeout': invalid value 'soon'"
        ),
        "{error}"
    );
    assert!(report.outputs[0].records.is_empty());
}

#[test]
fn a_config_without_fanout_is_refused() {
    let sections = sections("[OUTPUT]\n    Name null\n");
    assert!(report(&sections, &records(), "app").is_err());
}
