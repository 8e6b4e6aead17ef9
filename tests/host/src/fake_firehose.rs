//! A fault-injecting Amazon Data Firehose endpoint on 127.0.0.1 (JSON 1.1 wire protocol), for
//! what moto cannot do: fail some records of a `PutRecordBatch` (`FailedPutCount`), throttle,
//! or refuse a stream, on a script. It records every request with its decoded records and the
//! credentials it was signed with.
//!
//! It refuses what Firehose refuses, before any script: more than 500 records, a record over
//! 1,000 KiB before base64, or a request over 4 MiB (HTTP 400 `InvalidArgumentException`, with
//! the service's wording), and a SigV4 signature that does not verify against the secret of a
//! test key ([`TEST_KEYS`]: HTTP 403 `InvalidSignatureException`; an access key it does not
//! know: 403 `UnrecognizedClientException`). Keys issued at run time (moto's STS) have secrets
//! it cannot know: [`FakeFirehose::start_with_issued_keys`] checks only their signature's shape.

use std::sync::Mutex;

use base64::Engine;
use serde_json::{Value, json};

use crate::scripted::{Answer, Incoming, Script, ScriptedServer};

/// The repository's test credentials (access key id, or its prefix for keys a stand-in issues,
/// and secret): what the stand-in verifies signatures with.
pub const TEST_KEYS: &[(&str, &str)] = &[
    ("AKIDFANOUTTEST0000000", "fanout-test-secret"),
    ("AKIDFIRELENSTEST0000", "firelens-test-secret"),
    ("AKIDMETRICSTEST00000", "metrics-test-secret"),
    ("AKIDREALHOSTTEST0000", "real-host-test-secret"),
    ("AKIDEKSTEST000000000", "eks-test-secret"),
    ("AKIDFANOUTDEMO000000", "fanout-demo-secret"),
    ("AKIDSOAKTEST00000000", "soak-secret"),
    ("ASIASHORTLIVED", "short-lived-secret"),
];

/// Firehose's `PutRecordBatch` limits.
pub const MAX_RECORDS: usize = 500;
pub const MAX_RECORD_BYTES: usize = 1_024_000;
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// A stream that does not exist: every call to it is answered `ResourceNotFoundException`,
/// whatever the script says (the script is not consumed).
pub const MISSING_STREAM: &str = "logs-missing";

/// A scripted answer to one `PutRecordBatch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Accept every record.
    Accept,
    /// HTTP 200 with these record indices failed (`ServiceUnavailableException`).
    FailRecords(Vec<usize>),
    /// HTTP 200 with every n-th record failed (`InternalFailure`).
    FailEvery(usize),
    /// Request-level throttling: HTTP 503 `ServiceUnavailableException`.
    Throttle,
    /// HTTP 400 with this error type (e.g. `ResourceNotFoundException`, `AccessDeniedException`).
    Error(&'static str),
}

#[derive(Clone, Debug)]
pub struct Received {
    pub target: String,
    pub stream: String,
    /// Decoded `Data` of every record, in request order.
    pub records: Vec<Vec<u8>>,
    /// Indices the endpoint accepted.
    pub accepted: Vec<usize>,
    pub http_status: u16,
    pub authorization: Option<String>,
    pub security_token: Option<String>,
    /// Why the request broke Firehose's rules (limits, signature), if it did.
    pub violation: Option<String>,
}

impl Received {
    /// The access key id the request was signed with.
    pub fn access_key(&self) -> Option<&str> {
        let auth = self.authorization.as_deref()?;
        let credential = auth.split("Credential=").nth(1)?;
        credential.split('/').next()
    }
}

/// The Firehose endpoint stand-in; dereferences to its [`ScriptedServer`].
pub struct FakeFirehose(ScriptedServer<Reply, Received>);

impl std::ops::Deref for FakeFirehose {
    type Target = ScriptedServer<Reply, Received>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl FakeFirehose {
    pub fn start() -> FakeFirehose {
        FakeFirehose(ScriptedServer::start(|request, state| {
            handle(request, state, false)
        }))
    }

    /// For requests signed with keys issued at run time (moto's STS), whose secrets the
    /// stand-in cannot know: their signatures are checked for shape only; [`TEST_KEYS`] are
    /// still verified.
    pub fn start_with_issued_keys() -> FakeFirehose {
        FakeFirehose(ScriptedServer::start(|request, state| {
            handle(request, state, true)
        }))
    }

    /// Every accepted record, as (stream, data), in arrival order.
    pub fn accepted(&self) -> Vec<(String, Vec<u8>)> {
        self.received()
            .into_iter()
            .flat_map(|r| {
                let stream = r.stream.clone();
                r.accepted
                    .iter()
                    .map(|&i| (stream.clone(), r.records[i].clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn handle(request: Incoming, state: &Mutex<Script<Reply, Received>>, issued_keys: bool) -> Answer {
    let header = |name: &str| request.header(name).map(str::to_owned);
    let target = header("X-Amz-Target").unwrap_or_default();
    let authorization = header("Authorization");
    let security_token = header("X-Amz-Security-Token");
    let parsed: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let stream = parsed["DeliveryStreamName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let records: Vec<Vec<u8>> = parsed["Records"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|r| {
                    base64::engine::general_purpose::STANDARD
                        .decode(r["Data"].as_str().unwrap_or_default())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();

    let violation = signature_violation(&request, issued_keys)
        .map(|(kind, message)| (403, kind, message))
        .or_else(|| {
            limit_violation(&records, request.body.len())
                .map(|m| (400, "InvalidArgumentException", m))
        });
    if let Some((status, kind, message)) = violation {
        state.lock().unwrap().seen.push(Received {
            target,
            stream,
            records,
            accepted: Vec::new(),
            http_status: status,
            authorization,
            security_token,
            violation: Some(message.clone()),
        });
        return Answer {
            status,
            headers: vec![("Content-Type", "application/x-amz-json-1.1".to_owned())],
            body: json!({"__type": kind, "message": message}).to_string(),
        };
    }
    let reply = if target != "Firehose_20150804.PutRecordBatch" {
        Reply::Error("UnknownOperationException")
    } else if stream == MISSING_STREAM {
        Reply::Error("ResourceNotFoundException")
    } else {
        state.lock().unwrap().next_reply().unwrap_or(Reply::Accept)
    };
    let n = records.len();
    let (status, response, accepted) = match &reply {
        Reply::Accept => (
            200,
            batch_response(n, &[], "InternalFailure"),
            (0..n).collect(),
        ),
        Reply::FailRecords(failed) => (
            200,
            batch_response(n, failed, "ServiceUnavailableException"),
            (0..n).filter(|i| !failed.contains(i)).collect(),
        ),
        Reply::FailEvery(every) => {
            let failed: Vec<usize> = (0..n).filter(|i| i % every == 0).collect();
            let accepted = (0..n).filter(|i| !failed.contains(i)).collect();
            (200, batch_response(n, &failed, "InternalFailure"), accepted)
        }
        Reply::Throttle => (
            503,
            json!({"__type": "ServiceUnavailableException", "message": "Slow down."}),
            Vec::new(),
        ),
        Reply::Error(kind) => (
            400,
            json!({"__type": kind, "message": format!("scripted {kind}")}),
            Vec::new(),
        ),
    };
    state.lock().unwrap().seen.push(Received {
        target,
        stream,
        records,
        accepted,
        http_status: status,
        authorization,
        security_token,
        violation: None,
    });
    Answer {
        status,
        headers: vec![
            ("Content-Type", "application/x-amz-json-1.1".to_owned()),
            (
                "x-amzn-RequestId",
                "00000000-0000-0000-0000-000000000000".to_owned(),
            ),
        ],
        body: response.to_string(),
    }
}

fn batch_response(n: usize, failed: &[usize], code: &str) -> Value {
    let responses: Vec<Value> = (0..n)
        .map(|i| {
            if failed.contains(&i) {
                json!({"ErrorCode": code, "ErrorMessage": "scripted failure"})
            } else {
                json!({"RecordId": format!("rec-{i}")})
            }
        })
        .collect();
    json!({"FailedPutCount": failed.iter().filter(|&&i| i < n).count(), "Encrypted": false, "RequestResponses": responses})
}

/// Firehose's limits, with its error wording, or `None`.
fn limit_violation(records: &[Vec<u8>], body_len: usize) -> Option<String> {
    if records.len() > MAX_RECORDS {
        return Some(format!(
            "1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length less than or equal to {MAX_RECORDS} (got {})",
            records.len()
        ));
    }
    if let Some((index, record)) = records
        .iter()
        .enumerate()
        .find(|(_, r)| r.len() > MAX_RECORD_BYTES)
    {
        return Some(format!(
            "1 validation error detected: Value at 'records.{}.member.data' failed to satisfy constraint: Member must have length less than or equal to {MAX_RECORD_BYTES} (got {})",
            index + 1,
            record.len()
        ));
    }
    (body_len > MAX_REQUEST_BYTES).then(|| {
        format!(
            "Records size exceeds {MAX_REQUEST_BYTES} bytes limit (request of {body_len} bytes)"
        )
    })
}

/// Verifies the request's SigV4 signature as Firehose does: the same canonical request signed
/// with the key's secret must give the signature it carries. `None` when it verifies.
fn signature_violation(request: &Incoming, issued_keys: bool) -> Option<(&'static str, String)> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let missing = || {
        Some((
            "MissingAuthenticationTokenException",
            "Missing Authentication Token".to_owned(),
        ))
    };
    // An unsigned request, or one signed some other way, is refused, never let through.
    let Some(fields) = request
        .header("Authorization")
        .and_then(|authorization| authorization.strip_prefix("AWS4-HMAC-SHA256 "))
    else {
        return missing();
    };
    let field = |name: &str| {
        fields
            .split(", ")
            .find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    };
    let (Some(credential), Some(signed_headers), Some(signature)) = (
        field("Credential"),
        field("SignedHeaders"),
        field("Signature"),
    ) else {
        return missing();
    };
    // Credential=<key id>/<date>/<region>/<service>/aws4_request
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, _date, region, service, "aws4_request"] = scope[..] else {
        return missing();
    };
    let Some(secret) = TEST_KEYS
        .iter()
        .find(|(known, _)| key_id.starts_with(known))
        .map(|(_, secret)| *secret)
    else {
        if issued_keys && signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        return Some((
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".to_owned(),
        ));
    };
    let Some(time) = request.header("X-Amz-Date").and_then(parse_amz_date) else {
        return missing();
    };
    let token = request.header("X-Amz-Security-Token").map(str::to_owned);
    let identity =
        aws_credential_types::Credentials::new(key_id, secret, token, None, "test").into();
    let Ok(params) = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
    else {
        return missing();
    };
    let params = params.into();
    let host = request.header("Host").unwrap_or_default();
    let url = format!("http://{host}{}", request.target);
    // Exactly the headers the client signed (the signer adds X-Amz-Date and the token itself).
    let headers: Vec<(&str, &str)> = signed_headers
        .split(';')
        .filter(|name| !matches!(*name, "x-amz-date" | "x-amz-security-token"))
        .filter_map(|name| request.header(name).map(|value| (name, value)))
        .collect();
    // A request the signer cannot take has no signature to match: it is refused too.
    let expected = SignableRequest::new(
        "POST",
        url,
        headers.into_iter(),
        SignableBody::Bytes(&request.body),
    )
    .ok()
    .and_then(|signable| sign(signable, &params).ok())
    .map(|output| output.signature().to_owned());
    (expected.as_deref() != Some(signature)).then(|| {
        (
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided."
                .to_owned(),
        )
    })
}

/// `X-Amz-Date` (`20261205T070000Z`) as a time.
fn parse_amz_date(date: &str) -> Option<std::time::SystemTime> {
    let digits = |range: std::ops::Range<usize>| date.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(seconds).ok()?))
}
