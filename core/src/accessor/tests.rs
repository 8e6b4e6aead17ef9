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
        .map(|&at| match fanout_contract::view::peek(&buf[at..]) {
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
        let Some(ValueRef::Map(map)) = fanout_contract::view::peek(&many[at..]) else {
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
    let c =
        Choice::parse("$kubernetes['labels']['app'] || svc-$container_name || unknown").unwrap();
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
