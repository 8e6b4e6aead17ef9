use super::*;
use serde_json::Value;

/// serde_json's verdict on `text` as one object, the way each strictness stands for it.
fn serde_verdict(text: &[u8], strictness: Strictness) -> bool {
    match strictness {
        Strictness::Value => {
            matches!(serde_json::from_slice::<Value>(text), Ok(Value::Object(_)))
        }
        Strictness::Structure => {
            std::str::from_utf8(text).is_ok()
                && text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
                && serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
        }
    }
}

fn ours(text: &[u8], strictness: Strictness) -> Result<Vec<Member>, Failure> {
    let mut members = Vec::new();
    let scanned = object(text, 0, strictness, &mut members)?;
    if skip_whitespace(text, scanned.end) != text.len() {
        return Err(Failure::Invalid);
    }
    if scanned.non_ascii && std::str::from_utf8(text).is_err() {
        return Err(Failure::Invalid);
    }
    Ok(members)
}

/// The scan that unescapes `a`'s string value as it goes gives the plain scan's verdict and
/// members (or, for a lone surrogate in that value, leaves it to the full path), and the text
/// serde_json decodes from that value. Every member's key word is its first eight bytes.
fn capture_agrees(text: &[u8]) {
    let (mut plain, mut captured) = (Vec::new(), Vec::new());
    let mut captures = [Capture::new(b"a", |_| true)];
    let verdict = object_capturing(text, 0, Strictness::Structure, &mut captured, &mut captures);
    let plain_verdict = object(text, 0, Strictness::Structure, &mut plain);
    let shown = String::from_utf8_lossy(text);
    if verdict == Err(Failure::Unsure) {
        return;
    }
    assert_eq!(verdict, plain_verdict, "{shown:?}");
    if verdict.is_err() {
        return;
    }
    assert_eq!(captured, plain, "{shown:?}");
    for member in &captured {
        if !member.key_escaped {
            assert_eq!(
                member.key_word,
                key_word_of(member.key_body(text)),
                "{shown:?}"
            );
        }
    }
    if let Some(index) = captures[0].member {
        let raw = &text[captured[index].value.clone()];
        if let Ok(expected) = serde_json::from_slice::<String>(raw) {
            assert_eq!(
                String::from_utf8_lossy(&captures[0].text),
                expected,
                "{shown:?}"
            );
        } else {
            // Only bytes that are not UTF-8 (which the caller checks) make serde_json refuse it.
            assert!(std::str::from_utf8(raw).is_err(), "{shown:?}");
        }
    }
}

/// Our verdict agrees with serde_json's wherever we give one.
fn agrees(text: &[u8]) {
    capture_agrees(text);
    for strictness in [Strictness::Structure, Strictness::Value] {
        match ours(text, strictness) {
            Err(Failure::Unsure) => {}
            verdict => assert_eq!(
                verdict.is_ok(),
                serde_verdict(text, strictness),
                "{strictness:?}: {:?}",
                String::from_utf8_lossy(text)
            ),
        }
    }
}

const SAMPLES: &[&str] = &[
    r#"{}"#,
    r#" { } "#,
    r#"{"a":1}"#,
    r#"{"a":1,}"#,
    r#"{,"a":1}"#,
    r#"{"a" 1}"#,
    r#"{"a":}"#,
    r#"{"a":1 "b":2}"#,
    r#"{"a":[1,2,[3,{"b":null}]],"c":{"d":{"e":[]}}}"#,
    r#"{"a":[1,]}"#,
    r#"{"a":[,1]}"#,
    r#"{"a":[1}"#,
    r#"{"a":{"b":1]}"#,
    r#"{"a":-0,"b":0.5,"c":-12.25,"d":1e5,"e":1E-5,"f":2e+300,"g":1e400}"#,
    r#"{"a":01}"#,
    r#"{"a":1.}"#,
    r#"{"a":.5}"#,
    r#"{"a":-}"#,
    r#"{"a":+1}"#,
    r#"{"a":1e}"#,
    r#"{"a":tru}"#,
    r#"{"a":true,"b":false,"c":null}"#,
    r#"{"a":nul}"#,
    r#"{"a":"\"\\\/\b\f\n\r\t\u00e9\u20AC"}"#,
    r#"{"a":"\x"}"#,
    r#"{"a":"\u12"}"#,
    r#"{"a":"\ud83d\ude00"}"#,
    r#"{"a":"\ud800"}"#,
    r#"{"a":"\udc00"}"#,
    r#"{"a":"\ud800\u0041"}"#,
    r#"{"a":"\ud800x"}"#,
    r#"{"\u006b":1}"#,
    "{\"a\":\"tab\there\"}",
    "{\"a\":\"caf\u{e9} \u{65e5}\u{672c} \u{1f600}\"}",
    r#"{"a":1}x"#,
    r#"{"a":1}}"#,
    r#"[1]"#,
    r#""a""#,
    r#"{"a":1"#,
    r#"{"a":"unterminated}"#,
    r#"{"a"#,
    "{\"a\":1}\u{a0}",
    r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":1}}}}}}}}"#,
];

#[test]
fn verdicts_agree_with_serde_json() {
    for sample in SAMPLES {
        agrees(sample.as_bytes());
    }
    for bytes in [
        &b"{\"a\":\"\xff\"}"[..],
        b"{\"a\":\"\xc3\"}",
        b"{\"\xe9\":1}",
        b"{\"a\":1,\xff}",
    ] {
        agrees(bytes);
    }
    // Deep nesting is left to the full path.
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(70), "]".repeat(70));
    assert_eq!(
        ours(deep.as_bytes(), Strictness::Structure),
        Err(Failure::Unsure)
    );
    let ok = format!("{{\"a\":{}1{}}}", "[".repeat(63), "]".repeat(63));
    assert!(ours(ok.as_bytes(), Strictness::Value).is_ok());
}

/// Every prefix and every one-byte change of the samples: the scanner never disagrees.
#[test]
fn mutations_agree_with_serde_json() {
    let replacements = b"{}[]\":,\\ 0-.eE+tuax\x01\x7f\xc3\xa9";
    for sample in SAMPLES {
        let bytes = sample.as_bytes();
        for cut in 0..bytes.len() {
            agrees(&bytes[..cut]);
        }
        for at in 0..bytes.len() {
            for &r in replacements {
                let mut changed = bytes.to_vec();
                changed[at] = r;
                agrees(&changed);
                changed.insert(at, r);
                agrees(&changed);
            }
        }
    }
}

#[test]
fn members_are_the_top_level_ones() {
    let text = br#" {"a" : [1,{"x":2}], "b\n":"s", "c":{"d":[]} ,"e":-1.5} "#;
    let members = ours(text, Strictness::Value).unwrap();
    let show: Vec<(&str, &str, bool)> = members
        .iter()
        .map(|m| {
            (
                std::str::from_utf8(&text[m.key.clone()]).unwrap(),
                std::str::from_utf8(&text[m.value.clone()]).unwrap(),
                m.key_escaped,
            )
        })
        .collect();
    assert_eq!(
        show,
        [
            ("\"a\"", "[1,{\"x\":2}]", false),
            ("\"b\\n\"", "\"s\"", true),
            ("\"c\"", "{\"d\":[]}", false),
            ("\"e\"", "-1.5", false),
        ]
    );
}

#[test]
fn unescape_matches_serde_json() {
    for raw in [
        r#"plain"#,
        r#"{\"level\":\"info\",\"msg\":\"a \\\"quoted\\\" word\"}"#,
        r#"\b\f\n\r\t\/\\\u00e9\u20ac\ud83d\ude00 end"#,
        "caf\u{e9} \u{1f600} ok",
        "",
    ] {
        let quoted = format!("\"{raw}\"");
        let mut out = Vec::new();
        let (end, _) = unescape(quoted.as_bytes(), 0, &mut out).unwrap();
        assert_eq!(end, quoted.len(), "{raw}");
        let expected: String = serde_json::from_str(&quoted).unwrap();
        assert_eq!(out, expected.as_bytes(), "{raw}");
    }
    for raw in [
        r#"\ud800"#,
        r#"\udc00x"#,
        r#"\ud800\u0041"#,
        r#"\x"#,
        r#"\u12"#,
        r#"\"#,
    ] {
        let quoted = format!("\"{raw}\"");
        assert!(
            unescape(quoted.as_bytes(), 0, &mut Vec::new()).is_err(),
            "{raw}"
        );
    }
}

#[test]
fn string_stops_find_the_first_special_byte_anywhere_in_a_word() {
    for len in 0..20 {
        for at in 0..len {
            for special in [b'"', b'\\', 0x00, 0x1f, 0x80, 0xff] {
                let mut text = vec![b'a'; len];
                text[at] = special;
                if at + 1 < len {
                    text[at + 1] = b'"';
                }
                assert_eq!(next_string_stop(&text, 0), at, "{len} {at} {special}");
            }
            let plain = vec![b' '; len];
            assert_eq!(next_string_stop(&plain, 0), len);
        }
    }
}
