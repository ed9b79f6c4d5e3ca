//! Feature `tracing`: a task's span is created at spawn (with its id and spawn site) and entered
//! on every poll; a blocking job runs inside its span; waits in the OS poller are events.
//!
//! Run with `cargo test --features tracing --test trace_spans`.

#![cfg(feature = "tracing")]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use netpoll::net::TcpListener;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A span as the subscriber saw it.
#[derive(Clone, Debug, Default)]
struct SpanRecord {
    name: &'static str,
    target: String,
    fields: HashMap<String, String>,
    enters: usize,
}

/// An event, with the span the emitting thread was in.
#[derive(Clone, Debug)]
struct EventRecord {
    target: String,
    fields: HashMap<String, String>,
    in_span: Option<&'static str>,
}

#[derive(Default)]
struct Recorded {
    spans: Vec<SpanRecord>,
    events: Vec<EventRecord>,
}

/// Records every span and event (with their fields as text) from every thread.
struct Recorder {
    log: Mutex<Recorded>,
}

thread_local! {
    /// The spans this thread is in, innermost last (span ids are indexes + 1 into `spans`).
    static STACK: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut span = SpanRecord {
            name: attrs.metadata().name(),
            target: attrs.metadata().target().to_string(),
            ..SpanRecord::default()
        };
        attrs.record(&mut Fields(&mut span.fields));
        let mut log = self.log.lock().unwrap();
        log.spans.push(span);
        Id::from_u64(log.spans.len() as u64)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut log = self.log.lock().unwrap();
        let i = span.into_u64() as usize - 1;
        values.record(&mut Fields(&mut log.spans[i].fields));
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let mut log = self.log.lock().unwrap();
        let in_span = STACK
            .with(|s| s.borrow().last().copied())
            .map(|id| log.spans[id as usize - 1].name);
        log.events.push(EventRecord {
            target: event.metadata().target().to_string(),
            fields,
            in_span,
        });
    }

    fn enter(&self, span: &Id) {
        STACK.with(|s| s.borrow_mut().push(span.into_u64()));
        self.log.lock().unwrap().spans[span.into_u64() as usize - 1].enters += 1;
    }

    fn exit(&self, span: &Id) {
        STACK.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(at) = s.iter().rposition(|&id| id == span.into_u64()) {
                s.remove(at);
            }
        });
    }
}

/// The one recorder of this test binary (a global default reaches the runtime's threads).
fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<&'static Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let r: &'static Recorder = Box::leak(Box::new(Recorder {
            log: Mutex::new(Recorded::default()),
        }));
        struct Shared(&'static Recorder);
        impl Subscriber for Shared {
            fn enabled(&self, m: &Metadata<'_>) -> bool {
                self.0.enabled(m)
            }
            fn new_span(&self, a: &Attributes<'_>) -> Id {
                self.0.new_span(a)
            }
            fn record(&self, s: &Id, v: &Record<'_>) {
                self.0.record(s, v)
            }
            fn record_follows_from(&self, s: &Id, f: &Id) {
                self.0.record_follows_from(s, f)
            }
            fn event(&self, e: &Event<'_>) {
                self.0.event(e)
            }
            fn enter(&self, s: &Id) {
                self.0.enter(s)
            }
            fn exit(&self, s: &Id) {
                self.0.exit(s)
            }
        }
        tracing::subscriber::set_global_default(Shared(r)).expect("no other subscriber");
        r
    })
}

fn spans_named(name: &str, id: netpoll::TaskId) -> Vec<SpanRecord> {
    let id = id.to_string();
    recorder()
        .log
        .lock()
        .unwrap()
        .spans
        .iter()
        .filter(|s| s.name == name && s.fields.get("task.id") == Some(&id))
        .cloned()
        .collect()
}

#[test]
fn a_task_span_is_created_at_spawn_with_its_site_and_entered_on_every_poll() {
    recorder();
    let rt = netpoll::Runtime::builder().workers(2).build().unwrap();
    let task = rt.spawn(async {
        for _ in 0..3 {
            netpoll::yield_now().await;
        }
        7
    });
    let id = task.id();
    let spawn_line = line!() - 7;
    assert_eq!(rt.block_on(task).unwrap(), 7);
    let spans = spans_named("task", id);
    assert_eq!(spans.len(), 1, "one span per task: {spans:?}");
    let span = &spans[0];
    assert_eq!(span.target, "netpoll::task");
    assert!(
        span.fields["loc.file"].ends_with("trace_spans.rs"),
        "spawn site: {span:?}"
    );
    assert_eq!(span.fields["loc.line"], spawn_line.to_string());
    // Three yields: four polls at least.
    assert!(span.enters >= 4, "entered on each poll: {span:?}");
}

#[test]
fn a_blocking_job_runs_inside_its_span() {
    recorder();
    let rt = netpoll::Runtime::builder().workers(1).build().unwrap();
    let job = rt.spawn_blocking(|| {
        tracing::info!(target: "trace_spans::probe", marker = "inside the blocking job");
    });
    let id = job.id();
    rt.block_on(job).unwrap();
    let spans = spans_named("blocking", id);
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert!(spans[0].enters >= 1);
    let log = recorder().log.lock().unwrap();
    let probe = log
        .events
        .iter()
        .find(|e| e.fields.get("marker").map(String::as_str) == Some("inside the blocking job"))
        .expect("the job's event was recorded");
    assert_eq!(probe.in_span, Some("blocking"));
}

#[test]
fn poller_waits_are_events_that_count_what_they_found() {
    recorder();
    let found_readiness = || {
        recorder()
            .log
            .lock()
            .unwrap()
            .events
            .iter()
            .filter(|e| e.target == "netpoll::poller")
            .any(|e| e.fields["events"].parse::<usize>().unwrap() > 0)
    };
    let rt = netpoll::Runtime::builder().workers(1).build().unwrap();
    let ln = rt
        .block_on(async { TcpListener::bind("127.0.0.1:0") })
        .unwrap();
    let addr = ln.local_addr().unwrap();
    let server = rt.spawn(async move {
        let (conn, _) = ln.accept().await?;
        let mut buf = [0u8; 64];
        loop {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                return std::io::Result::Ok(());
            }
            conn.write_all(&buf[..n]).await?;
        }
    });
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // A read that finds its data at once does not wait; pausing before each write lets the
    // server's read park, so that the data arrives through the poller. Bounded.
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(2));
        client.write_all(b"hello").unwrap();
        let mut echoed = [0u8; 5];
        client.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, b"hello");
        if found_readiness() {
            break;
        }
    }
    drop(client);
    rt.block_on(server).unwrap().unwrap();
    let log = recorder().log.lock().unwrap();
    let waits: Vec<_> = log
        .events
        .iter()
        .filter(|e| e.target == "netpoll::poller")
        .collect();
    assert!(
        waits
            .iter()
            .any(|e| e.fields["events"].parse::<usize>().unwrap() > 0),
        "a wait found the connection's readiness: {waits:?}"
    );
    assert!(waits.iter().all(|e| e.fields.contains_key("blocking")));
}
