//! Stopping the sidecars once the command is done, so the Job can complete.
//!
//! Order matters: log shippers first (they still need the network), proxies last. Each step
//! has a time limit, and its result is reported but never changes the exit code.
//!
//! - Fluent Bit has no stop API: the fanout output with `exit_on_job_end on` stops it after
//!   delivering the end-of-job record; here we only wait until its HTTP port closes.
//! - Datadog Agent: `POST /agent/stop` on the IPC port with `Authorization: Bearer <token>`.
//!   From 7.62 on the agent has one certificate, `ipc_cert.pem` (next to the token): when it is
//!   there the server must present exactly it, and it is the client certificate too (see
//!   [`crate::agent_tls`]). Older agents make up a self-signed certificate at each start,
//!   accepted only on a loopback address (`localhost` is pinned to 127.0.0.1: neither DNS nor
//!   /etc/hosts can send the token elsewhere).
//! - Fluentd: `POST /api/processes.flushBuffersAndKillWorkers` (judged by HTTP status).
//! - Envoy `POST /quitquitquit`, Istio pilot-agent `POST /quitquitquit`, Linkerd `POST /shutdown`.
//!
//! Every request goes straight to the sidecar: `HTTPS_PROXY`/`HTTP_PROXY` are ignored, so the
//! agent's token and the stop calls never pass through a proxy.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::Args;
use crate::signals::Signals;

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

/// The loopback address to connect to for `url`: a loopback IP literal as it is, `localhost`
/// pinned to 127.0.0.1; `None` for any other host.
fn loopback_address(url: &reqwest::Url) -> Option<std::net::SocketAddr> {
    let port = url.port_or_known_default()?;
    let ip = match url.host()? {
        url::Host::Ipv4(ip) if ip.is_loopback() => std::net::IpAddr::V4(ip),
        url::Host::Ipv6(ip) if ip.is_loopback() => std::net::IpAddr::V6(ip),
        url::Host::Domain(name) if name.eq_ignore_ascii_case("localhost") => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

/// A client for the sidecars' local APIs: no proxy, ever.
pub fn local_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
}

/// Runs every stop step. A SIGTERM or SIGINT meanwhile (the pod is being deleted) cuts the
/// waits short — Fluent Bit's drain, the Datadog Agent's catch-up — but still sends the stop
/// requests, which are bounded by `--stop-timeout`.
pub async fn stop_all(args: &Args, signals: &mut Signals) -> Vec<StepResult> {
    let mut results = Vec::new();
    let mut stopping = false;
    let plain = local_client(args.stop_timeout);
    if let Some(url) = &args.fluent_bit {
        let started = Instant::now();
        let waited = tokio::select! {
            biased;
            signal = signals.stopping() => Err(signal),
            result = wait_until_closed("fluent-bit", url, args.drain_timeout) => Ok(result),
        };
        results.push(waited.unwrap_or_else(|signal| {
            stopping = true;
            StepResult {
                sidecar: "fluent-bit",
                target: url.clone(),
                ok: false,
                detail: format!("wait cut short by signal {signal}"),
                millis: started.elapsed().as_millis(),
            }
        }));
    }
    if let Some(url) = &args.datadog_agent {
        if !stopping {
            tokio::select! {
                biased;
                _ = signals.stopping() => {}
                () = tokio::time::sleep(args.datadog_catch_up) => {}
            }
        }
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
    let client = local_client(Duration::from_secs(2));
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
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL {url}: {e}"))?;
        let loopback = loopback_address(&parsed);
        let mut builder = reqwest::Client::builder().timeout(timeout).no_proxy();
        if let (Some(url::Host::Domain(name)), Some(address)) = (parsed.host(), loopback) {
            builder = builder.resolve(name, address);
        }
        let cert = token_file.parent().map(|d| d.join("ipc_cert.pem"));
        match cert.as_deref().map(|c| (c, std::fs::read(c))) {
            Some((cert, Ok(pem))) => {
                // 7.62+: only the agent's own certificate is accepted, and it is the client
                // identity the agent may require.
                let tls = crate::agent_tls::pinned_config(&pem)
                    .map_err(|e| format!("cannot use {}: {e}", cert.display()))?;
                builder = builder.tls_backend_preconfigured(tls);
            }
            _ if loopback.is_some() => {
                // Before 7.62 the certificate is made up at each start: nothing to pin, so it
                // is accepted on this host only.
                builder = builder.tls_danger_accept_invalid_certs(true);
            }
            _ => {}
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
    fn only_loopback_addresses_count_and_localhost_is_pinned() {
        let address = |u: &str| loopback_address(&reqwest::Url::parse(u).unwrap());
        assert_eq!(
            address("https://localhost:5001").unwrap().to_string(),
            "127.0.0.1:5001"
        );
        assert_eq!(
            address("https://127.0.0.2:5001/x").unwrap().to_string(),
            "127.0.0.2:5001"
        );
        assert_eq!(
            address("https://[::1]:5001").unwrap().to_string(),
            "[::1]:5001"
        );
        assert_eq!(address("https://agent.internal:5001"), None);
        assert_eq!(address("https://127.0.0.1.evil.com:5001"), None);
        assert_eq!(address("https://10.0.0.1:5001"), None);
    }
}
