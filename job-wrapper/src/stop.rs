//! Stopping the sidecars once the command is done, so the Job can complete.
//!
//! Order matters: log shippers first (they still need the network), proxies last. Each step
//! has a time limit, and its result is reported but never changes the exit code.
//!
//! - Fluent Bit has no stop API: the fanout output with `exit_on_job_end on` stops it after
//!   delivering the end-of-job record; here we only wait until its HTTP port closes.
//! - Datadog Agent: `POST /agent/stop` on the IPC port with `Authorization: Bearer <token>`;
//!   its self-signed certificate is accepted only for localhost; from 7.62 on, the agent may
//!   require `ipc_cert.pem` (next to the token) as client certificate, which is sent when found.
//! - Fluentd: `POST /api/processes.flushBuffersAndKillWorkers` (judged by HTTP status).
//! - Envoy `POST /quitquitquit`, Istio pilot-agent `POST /quitquitquit`, Linkerd `POST /shutdown`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::Args;

/// One stop step's outcome, for the log and the tombstone.
#[derive(Debug)]
pub struct StepResult {
    pub sidecar: &'static str,
    pub target: String,
    pub ok: bool,
    pub detail: String,
    pub millis: u128,
}

impl StepResult {
    pub fn to_json(&self) -> Value {
        json!({"sidecar": self.sidecar, "target": self.target, "ok": self.ok, "detail": self.detail, "millis": self.millis})
    }
}

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

fn is_loopback(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1")
}

pub async fn stop_all(args: &Args) -> Vec<StepResult> {
    let mut results = Vec::new();
    let plain = reqwest::Client::builder()
        .timeout(args.stop_timeout)
        .build();
    if let Some(url) = &args.fluent_bit {
        results.push(wait_until_closed("fluent-bit", url, args.drain_timeout).await);
    }
    if let Some(url) = &args.datadog_agent {
        tokio::time::sleep(args.datadog_catch_up).await;
        results.push(stop_datadog(url, &args.datadog_auth_token, args.stop_timeout).await);
    }
    let Ok(client) = plain else {
        return results;
    };
    let mut posts: Vec<(&'static str, String)> = Vec::new();
    if let Some(url) = &args.fluentd_rpc {
        posts.push((
            "fluentd",
            format!("{}/api/processes.flushBuffersAndKillWorkers", base(url)),
        ));
    }
    posts.extend(args.stop_url.iter().map(|u| ("url", u.clone())));
    if let Some(url) = &args.envoy_admin {
        posts.push(("envoy", format!("{}/quitquitquit", base(url))));
    }
    if let Some(url) = &args.istio_agent {
        posts.push(("istio", format!("{}/quitquitquit", base(url))));
    }
    if let Some(url) = &args.linkerd_admin {
        posts.push(("linkerd", format!("{}/shutdown", base(url))));
    }
    for (sidecar, url) in posts {
        let started = Instant::now();
        let (ok, detail) = match client.post(&url).send().await {
            Ok(r) => (
                r.status().is_success(),
                format!("HTTP {}", r.status().as_u16()),
            ),
            Err(e) => (false, describe(&e)),
        };
        results.push(StepResult {
            sidecar,
            target: url,
            ok,
            detail,
            millis: started.elapsed().as_millis(),
        });
    }
    results
}

/// Waits until nothing listens at `url` any more (the process has exited).
async fn wait_until_closed(sidecar: &'static str, url: &str, timeout: Duration) -> StepResult {
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build();
    let mut detail = "still running when the drain timeout passed".to_string();
    let mut ok = false;
    if let Ok(client) = client {
        while started.elapsed() < timeout {
            match client.get(url).send().await {
                Err(e) if e.is_connect() => {
                    ok = true;
                    detail = "exited".into();
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
    StepResult {
        sidecar,
        target: url.to_owned(),
        ok,
        detail,
        millis: started.elapsed().as_millis(),
    }
}

async fn stop_datadog(url: &str, token_file: &Path, timeout: Duration) -> StepResult {
    let started = Instant::now();
    let target = format!("{}/agent/stop", base(url));
    let result = async {
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| format!("cannot read the auth token {}: {e}", token_file.display()))?;
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if is_loopback(url) {
            // The agent's IPC certificate is self-signed; trust it only on this host.
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let Some(cert) = token_file.parent().map(|d| d.join("ipc_cert.pem"))
            && let Ok(pem) = std::fs::read(&cert)
        {
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| format!("cannot use {} as client certificate: {e}", cert.display()))?;
            builder = builder.identity(identity);
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        let response = client
            .post(&target)
            .bearer_auth(token.trim())
            .header("Content-Type", "application/json")
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        if status.is_success() {
            Ok(format!("HTTP {}", status.as_u16()))
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }
    .await;
    let (ok, detail) = match result {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    StepResult {
        sidecar: "datadog-agent",
        target,
        ok,
        detail,
        millis: started.elapsed().as_millis(),
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        text = format!("{text}: {inner}");
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("https://localhost:5001"));
        assert!(is_loopback("https://127.0.0.1:5001/x"));
        assert!(is_loopback("https://[::1]:5001"));
        assert!(!is_loopback("https://agent.internal:5001"));
        assert!(!is_loopback("https://127.0.0.1.evil.com:5001"));
    }
}
