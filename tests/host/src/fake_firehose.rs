//! A fault-injecting Amazon Data Firehose endpoint on 127.0.0.1 (JSON 1.1 wire protocol), for
//! what moto cannot do: fail some records of a `PutRecordBatch` (`FailedPutCount`), throttle,
//! or refuse a stream, on a script. It records every request with its decoded records and the
//! credentials it was signed with.

use std::sync::Mutex;

use base64::Engine;
use serde_json::{Value, json};

use crate::scripted::{Answer, Incoming, Script, ScriptedServer};

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
        FakeFirehose(ScriptedServer::start(handle))
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

fn handle(request: Incoming, state: &Mutex<Script<Reply, Received>>) -> Answer {
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
