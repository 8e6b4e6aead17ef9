//! Waiting for sidecars before the command starts.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

/// Waits until every URL answers 2xx and every file exists, polling with backoff (100 ms
/// doubling to 2 s) until `timeout`. Returns what was still not ready.
pub async fn wait(urls: &[String], files: &[PathBuf], timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let client = crate::stop::local_client(Duration::from_secs(2)).ok();
    let mut pending_urls: Vec<&String> = urls.iter().collect();
    let mut pending_files: Vec<&PathBuf> = files.iter().collect();
    let mut delay = Duration::from_millis(100);
    loop {
        let mut still = Vec::new();
        for url in pending_urls {
            let ok = match &client {
                Some(client) => {
                    matches!(client.get(url).send().await, Ok(r) if r.status().is_success())
                }
                None => false,
            };
            if !ok {
                still.push(url);
            }
        }
        pending_urls = still;
        pending_files.retain(|f| !f.exists());
        if pending_urls.is_empty() && pending_files.is_empty() {
            return Vec::new();
        }
        if Instant::now() + delay > deadline {
            return pending_urls
                .into_iter()
                .cloned()
                .chain(pending_files.into_iter().map(|f| f.display().to_string()))
                .collect();
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
