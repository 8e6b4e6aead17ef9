//! moto's server (PyPI `moto[server]`) on 127.0.0.1 as the real Firehose, S3 and STS wire
//! protocol, started and stopped by the tests.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Moto {
    pub url: String,
    child: Child,
}

fn helper_script() -> PathBuf {
    crate::host::workspace_root().join("tests/host/moto_helper.py")
}

impl Moto {
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server starts (pip install 'moto[server]')");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start listening on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    /// Creates `bucket` and one Direct PUT stream per `(name, prefix)` delivering to it.
    pub fn create_streams(&self, bucket: &str, streams: &[(&str, &str)]) {
        let specs: Vec<String> = streams.iter().map(|(n, p)| format!("{n}={p}")).collect();
        let status = Command::new("python3")
            .arg(helper_script())
            .args([self.url.as_str(), "setup", bucket])
            .args(&specs)
            .status()
            .expect("python3 runs");
        assert!(status.success(), "moto setup failed");
    }

    /// Every object in `bucket`: key → content.
    pub fn objects(&self, bucket: &str) -> Vec<(String, String)> {
        let out = Command::new("python3")
            .arg(helper_script())
            .args([self.url.as_str(), "objects", bucket])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let map: Value = serde_json::from_slice(&out.stdout).expect("JSON from the helper");
        let mut objects: Vec<(String, String)> = map
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        objects.sort();
        objects
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
