use super::*;
use crate::log::testing::MemorySink;
use crate::log::{HostThread, Level};
use crate::runtime::RuntimeLease;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default)]
struct CountShutdown(AtomicU64);
impl HostShutdown for CountShutdown {
    fn request_shutdown(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn instance(
    dir: &tempfile::TempDir,
    extra: &[(&str, &str)],
) -> (Instance, Arc<MemorySink>, RuntimeLease) {
    instance_with(dir, extra, Arc::new(CountShutdown::default()))
}

fn instance_with(
    dir: &tempfile::TempDir,
    extra: &[(&str, &str)],
    shutdown: Arc<dyn HostShutdown>,
) -> (Instance, Arc<MemorySink>, RuntimeLease) {
    let lease = RuntimeLease::acquire().unwrap();
    let mut props: HashMap<String, String> = HashMap::new();
    props.insert("destinations".into(), "file".into());
    props.insert(
        "path".into(),
        dir.path().join("out.jsonl").display().to_string(),
    );
    for (k, v) in extra {
        props.insert(k.to_string(), v.to_string());
    }
    let sink = MemorySink::new(Level::Debug);
    let inst = Instance::start(
        &props,
        sink.clone(),
        shutdown,
        "fanout.0".into(),
        lease.handle().clone(),
    )
    .unwrap();
    (inst, sink, lease)
}

#[test]
fn a_corrupt_chunk_is_an_error_with_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let (inst, sink, _lease) = instance(&dir, &[]);
    let _host = HostThread::enter();
    assert_eq!(inst.flush(&[0x92, 0xd7, 0x00], b"t"), FlushStatus::Error);
    assert!(
        sink.text()
            .contains("dropping a chunk of 3 bytes with tag 't': chunk is truncated")
    );
    inst.shutdown();
    assert!(sink.text().contains("rejected_chunks=1"));
}

/// A chunk of `{"message": text}` records in the 1.9 layout, written by hand.
fn chunk(messages: &[&str]) -> Vec<u8> {
    let mut buf = Vec::new();
    for m in messages {
        rmp::encode::write_array_len(&mut buf, 2).unwrap();
        rmp::encode::write_uint(&mut buf, 1).unwrap();
        rmp::encode::write_map_len(&mut buf, 1).unwrap();
        rmp::encode::write_str(&mut buf, "message").unwrap();
        rmp::encode::write_str(&mut buf, m).unwrap();
    }
    buf
}

const TOKEN: &str = "5f0c1e2d3b4a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn end_record(token: Option<&str>) -> String {
    let mut end = serde_json::json!({"job_wrapper": "end", "exit_code": 3});
    if let Some(token) = token {
        end["token"] = token.into();
    }
    end.to_string()
}

/// An instance with `exit_on_job_end` reading the token from `job-end.token` in `dir`
/// (not written yet), plus `extra`; the returned counter counts shutdown requests.
fn awaiting_job_end(
    dir: &tempfile::TempDir,
    extra: &[(&str, &str)],
) -> (
    Instance,
    Arc<MemorySink>,
    RuntimeLease,
    Arc<CountShutdown>,
    std::path::PathBuf,
) {
    let token_file = dir.path().join("job-end.token");
    let token_path = token_file.display().to_string();
    let mut properties = vec![
        ("exit_on_job_end", "on"),
        ("job_end_token_file", token_path.as_str()),
    ];
    properties.extend_from_slice(extra);
    let on = Arc::new(CountShutdown::default());
    let (inst, sink, lease) = instance_with(dir, &properties, on.clone());
    (inst, sink, lease, on, token_file)
}

#[test]
fn the_end_of_job_record_stops_the_host_only_when_asked_and_after_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let end = end_record(Some(TOKEN));
    std::fs::write(dir.path().join("job-end.token"), TOKEN).unwrap();
    let off = Arc::new(CountShutdown::default());
    let (inst, _sink, _lease) = instance_with(&dir, &[], off.clone());
    assert_eq!(inst.flush(&chunk(&["a", &end]), b"t"), FlushStatus::Ok);
    inst.shutdown();
    assert_eq!(
        off.0.load(Ordering::SeqCst),
        0,
        "exit_on_job_end is off by default"
    );

    let (inst, sink, _lease, on, _token_file) = awaiting_job_end(&dir, &[]);
    let _host = HostThread::enter();
    assert_eq!(inst.flush(&chunk(&["a", "b"]), b"t"), FlushStatus::Ok);
    assert_eq!(on.0.load(Ordering::SeqCst), 0);
    assert_eq!(inst.flush(&chunk(&["c", &end]), b"t"), FlushStatus::Ok);
    inst.shutdown();
    assert_eq!(on.0.load(Ordering::SeqCst), 1);
    assert!(sink.text().contains("asking Fluent Bit to shut down"));
    let written = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert!(
        written.lines().last().unwrap().contains("job_wrapper"),
        "delivered before the request"
    );
}

#[test]
fn look_alike_end_records_printed_by_the_application_never_stop_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let (inst, sink, _lease, on, token_file) = awaiting_job_end(&dir, &[]);
    let _host = HostThread::enter();
    // While the command runs there is no token: even a record carrying the right one
    // (which nobody can know yet) is not believed.
    let forged = [end_record(None), end_record(Some(TOKEN))];
    assert_eq!(
        inst.flush(&chunk(&["a", &forged[0], &forged[1]]), b"t"),
        FlushStatus::Ok
    );
    std::fs::write(&token_file, TOKEN).unwrap();
    let wrong = end_record(Some(&"ab".repeat(32)));
    assert_eq!(
        inst.flush(&chunk(&[&forged[0], &wrong, "b"]), b"t"),
        FlushStatus::Ok
    );
    assert_eq!(on.0.load(Ordering::SeqCst), 0, "nothing ended the Job");
    inst.shutdown();
    let text = sink.text();
    assert!(text.contains("forged_job_end=4"), "{text}");
    assert!(
        text.contains(
            "2 records look like job-wrapper's end-of-job record but do not carry this run's token"
        ),
        "{text}"
    );
    let written = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert_eq!(
        written.lines().count(),
        6,
        "look-alikes are delivered as logs"
    );
}

#[test]
fn the_host_stops_job_end_timeout_after_the_token_even_without_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let (inst, sink, _lease, on, token_file) =
        awaiting_job_end(&dir, &[("job_end_timeout", "200ms")]);
    let _host = HostThread::enter();
    assert_eq!(inst.flush(&chunk(&["a"]), b"t"), FlushStatus::Ok);
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(
        on.0.load(Ordering::SeqCst),
        0,
        "the command is still running"
    );
    // The wrapper wrote its token; the chunk with its record never arrives (Fluent Bit
    // dropped it after its retries).
    std::fs::write(&token_file, TOKEN).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while on.0.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(on.0.load(Ordering::SeqCst), 1);
    inst.shutdown();
    assert!(
        sink.text()
            .contains("its end-of-job record has not settled (dropped by Fluent Bit"),
        "{}",
        sink.text()
    );
}

#[test]
fn exit_on_job_end_needs_the_token_file() {
    let lease = RuntimeLease::acquire().unwrap();
    let props: HashMap<String, String> = [
        ("destinations", "file"),
        ("path", "/dev/null"),
        ("exit_on_job_end", "on"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sink = MemorySink::new(Level::Debug);
    let _host = HostThread::enter();
    assert!(
        Instance::start(
            &props,
            sink.clone(),
            Arc::new(CountShutdown::default()),
            "fanout.0".into(),
            lease.handle().clone(),
        )
        .is_none()
    );
    assert!(
        sink.text()
            .contains("property 'job_end_token_file': is required with exit_on_job_end"),
        "{}",
        sink.text()
    );
}

#[test]
fn flushing_on_the_init_thread_warns_once_about_workers() {
    let dir = tempfile::tempdir().unwrap();
    let (inst, sink, _lease) = instance(&dir, &[]);
    let _host = HostThread::enter();
    for _ in 0..3 {
        assert_eq!(inst.flush(&chunk(&["a"]), b"t"), FlushStatus::Ok);
    }
    inst.shutdown();
    assert_eq!(sink.text().matches("set 'workers 1'").count(), 1);

    // With workers, flushes come from Fluent Bit's worker threads: nothing to say.
    let (inst, sink, _lease) = instance(&dir, &[]);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let _host = HostThread::enter();
            assert_eq!(inst.flush(&chunk(&["b"]), b"t"), FlushStatus::Ok);
        });
    });
    inst.shutdown();
    assert!(!sink.text().contains("workers"), "{}", sink.text());
}

/// When the flush side gives up (a starved runtime), it cancels the job, which records
/// what got through before answering, so the resend skips it.
#[test]
fn a_cancelled_delivery_records_its_progress_before_answering() {
    let dir = tempfile::tempdir().unwrap();
    // A Datadog intake that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let (inst, _sink, lease) = instance(
        &dir,
        &[
            ("destinations", "file,datadog"),
            ("apikey", "k"),
            ("dd_url", &url),
        ],
    );
    let chunk = chunk(&["a", "b"]);
    // Connections the intake took (kept open: it never answers them).
    silent.set_nonblocking(true).unwrap();
    let held = std::cell::RefCell::new(Vec::new());
    let datadog_connected = || {
        while let Ok((stream, _)) = silent.accept() {
            held.borrow_mut().push(stream);
        }
        !held.borrow().is_empty()
    };
    let written = || {
        std::fs::read_to_string(dir.path().join("out.jsonl"))
            .map(|text| text.lines().count())
            .unwrap_or(0)
    };
    // Runs one delivery and cancels it once `ready` holds (the event, not a delay).
    let run = |ready: &dyn Fn() -> bool| {
        let (reply, answer) = std_mpsc::sync_channel(1);
        let (cancel, cancelled) = oneshot::channel();
        let job = Job {
            chunk: chunk.clone(),
            reserved: 0,
            tag: "t".into(),
            received: Instant::now(),
            reply,
            cancel: cancelled,
        };
        let pipeline = Arc::clone(&inst.pipeline);
        let handle = lease.handle().clone();
        let task = handle.spawn(async move { pipeline.process(job).await });
        let guard = Instant::now() + Duration::from_secs(30);
        while !ready() {
            assert!(Instant::now() < guard, "the delivery never got there");
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = cancel.send(());
        let status = answer.recv_timeout(Duration::from_secs(60)).unwrap();
        let _ = handle.block_on(task);
        status
    };
    // Cancelled once the file has both records and the Datadog request is on the wire.
    assert_eq!(
        run(&|| written() == 2 && datadog_connected()),
        FlushStatus::Retry
    );
    assert_eq!(inst.pipeline.ledger.len(), 1, "progress recorded");
    assert_eq!(written(), 2);
    // The resend (cancelled again once Datadog has its new request) does not write the
    // file a second time.
    held.borrow_mut().clear();
    assert_eq!(run(&datadog_connected), FlushStatus::Retry);
    assert_eq!(written(), 2, "the file had them: skipped");
    assert_eq!(inst.pipeline.ledger.len(), 1);
    drop(silent);
    inst.shutdown();
}

/// At shutdown, a delivery still running after `exit_timeout` is cancelled, with one
/// warning, instead of holding up Fluent Bit's exit: a job whose Datadog intake takes the
/// request and never answers, its flush deadline a minute away.
#[test]
fn shutdown_cancels_deliveries_still_running_after_exit_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let (inst, sink, _lease) = instance(
        &dir,
        &[
            ("destinations", "datadog"),
            ("apikey", "k"),
            ("dd_url", &url),
            ("flush_timeout", "60s"),
            ("exit_timeout", "200ms"),
        ],
    );
    let (reply, answer) = std_mpsc::sync_channel(1);
    // Kept until the end: a dropped sender would cancel the job by itself.
    let (_cancel, cancelled) = oneshot::channel();
    let job = Job {
        chunk: chunk(&["a"]),
        reserved: 0,
        tag: "t".into(),
        received: Instant::now(),
        reply,
        cancel: cancelled,
    };
    let jobs = inst.jobs.lock().unwrap().clone().unwrap();
    jobs.send(job).ok().unwrap();
    // In flight once the intake has the connection (it never answers).
    silent.set_nonblocking(true).unwrap();
    let guard = Instant::now() + Duration::from_secs(30);
    let _held = loop {
        match silent.accept() {
            Ok((stream, _)) => break stream,
            Err(_) => {
                assert!(Instant::now() < guard, "the request never left");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    let _host = HostThread::enter();
    inst.shutdown();
    let text = sink.text();
    assert!(
        text.contains("deliveries still running after exit_timeout (200ms) were cancelled"),
        "{text}"
    );
    assert!(answer.try_recv().is_err(), "cancelled, never answered");
}

#[test]
fn an_empty_chunk_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    let (inst, _sink, _lease) = instance(&dir, &[]);
    assert_eq!(inst.flush(&[], b"t"), FlushStatus::Ok);
    inst.shutdown();
}

#[test]
fn a_bad_property_fails_start_with_one_line() {
    let lease = RuntimeLease::acquire().unwrap();
    let props: HashMap<String, String> = [("destinations", "file")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sink = MemorySink::new(Level::Debug);
    let _host = HostThread::enter();
    assert!(
        Instance::start(
            &props,
            sink.clone(),
            Arc::new(CountShutdown::default()),
            "fanout.7".into(),
            lease.handle().clone()
        )
        .is_none()
    );
    assert_eq!(
        sink.text(),
        "[output:fanout:fanout.7] property 'path': is required: the file the file destination appends JSON lines to"
    );
}
