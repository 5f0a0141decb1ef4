//! `cargo xtask bench-webhooks`: webhook fan-out of `cargo flake serve` (the
//! release binary, its own process) against PostgreSQL on the same machine,
//! to receivers on loopback in this process:
//!
//! 1. baseline: `--clients` (16) threads upload the 1,000-case report of
//!    `bench-serve` for `--seconds` (15) into a project without webhooks:
//!    upload latency p99, measured before the fan-outs and again after
//!    (the slower of the two is the baseline: the tables grow meanwhile);
//! 2. fan-out: one upload in which `--events` (10,000) tests turn flaky
//!    queues that many `flaky_test.new` events to each of 3 endpoints
//!    (keep-alive receivers answering 204): the time from that upload to
//!    the last delivery, and the server's peak RSS meanwhile; the same
//!    upload load as in 1 runs during the deliveries, and its p99 is
//!    compared with the baseline's.
//!
//! Every request has a timeout and every loop a bound.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flake_core::store::{Location, Store, WebhookEndpoint};
use flake_core::tokens::Role;

use crate::bench::build_release;
use crate::bench_serve::{
    CASES, RssSampler, Server, junit, load, mib, quantile, scratch, server_times, token, upload,
};

/// Settings of `bench-webhooks`.
#[derive(Debug, Clone)]
pub struct Options {
    seconds: u64,
    clients: usize,
    events: usize,
}

impl Options {
    /// Parses `--seconds N --clients N --events N`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            seconds: 15,
            clients: 16,
            events: 10_000,
        };
        for (a, v) in crate::bench::flags(args, &[])? {
            match a {
                "--seconds" => o.seconds = v as u64,
                "--clients" => o.clients = v,
                "--events" => o.events = v,
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        Ok(o)
    }
}

const LOAD_PROJECT: &str = "github.com/bench/load";
const HOOK_PROJECT: &str = "github.com/bench/hooks";
const ENDPOINTS: usize = 3;
/// The longest the fan-out may take before the bench gives up.
const FAN_OUT_LIMIT: Duration = Duration::from_secs(300);

/// A loopback receiver answering 204 on kept-alive connections; the
/// distinct webhook-ids it got.
struct Receiver {
    port: u16,
    ids: Arc<Mutex<HashSet<String>>>,
}

impl Receiver {
    fn start() -> Result<Receiver, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let ids: Arc<Mutex<HashSet<String>>> = Arc::default();
        let sink = ids.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let mut out = match stream.try_clone() {
                        Ok(s) => s,
                        Err(_) => return,
                    };
                    let mut reader = BufReader::new(stream);
                    while let Some(id) = read_request(&mut reader) {
                        if let Ok(mut ids) = sink.lock() {
                            ids.insert(id);
                        }
                        if out
                            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                            .is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        Ok(Receiver { port, ids })
    }

    fn count(&self) -> usize {
        self.ids.lock().map_or(0, |i| i.len())
    }
}

/// Reads one request; its webhook-id, or `None` at the end of the connection.
fn read_request(reader: &mut BufReader<std::net::TcpStream>) -> Option<String> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let (mut len, mut id) = (0usize, String::new());
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().ok()?,
                "webhook-id" => id = v.trim().to_owned(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(id)
}

/// Waits until every receiver has `want` distinct ids.
fn wait_for(receivers: &[Receiver], want: usize, since: Instant) -> Result<(), String> {
    while !receivers.iter().all(|r| r.count() >= want) {
        if since.elapsed() > FAN_OUT_LIMIT {
            let got: Vec<usize> = receivers.iter().map(Receiver::count).collect();
            return Err(format!(
                "the fan-out did not finish in {} s: {got:?} of {want} each",
                FAN_OUT_LIMIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A nextest-style report in which every one of `n` tests (named with
/// `prefix`) passed on a retry.
fn all_flaky(n: usize, prefix: &str) -> Vec<u8> {
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"bench\">\n<testsuite name=\"hooks\">\n",
    );
    for i in 0..n {
        x.push_str(&format!(
            "<testcase classname=\"pkg.hooks\" name=\"test_{prefix}{i:05}\" time=\"0.01\"><flakyFailure message=\"connection reset\" type=\"IOError\">ConnectionResetError: connection reset by peer</flakyFailure></testcase>\n"
        ));
    }
    x.push_str("</testsuite>\n</testsuites>\n");
    x.into_bytes()
}

/// Runs both parts and prints the table; whether every target was met.
pub fn run(root: &Path, o: &Options) -> Result<bool, String> {
    let flake = build_release(root)?;
    let pg = scratch()?;
    let load_token = token(pg.url(), LOAD_PROJECT, Role::Upload)?;
    let hook_token = token(pg.url(), HOOK_PROJECT, Role::Upload)?;
    let receivers: Vec<Receiver> = (0..ENDPOINTS)
        .map(|_| Receiver::start())
        .collect::<Result<_, _>>()?;
    {
        let mut store = Store::connect(&Location::parse(pg.url()).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        for r in &receivers {
            store
                .insert_webhook(&WebhookEndpoint::new(
                    HOOK_PROJECT,
                    format!("http://127.0.0.1:{}/hook", r.port),
                    vec!["flaky_test.new".into()],
                    flake_core::webhooks::new_secret().map_err(|e| e.to_string())?,
                    flake_core::meta::now_ms(),
                ))
                .map_err(|e| e.to_string())?;
        }
    }
    let server = Server::start_with(&flake, pg.url(), &["--allow-private-webhook-targets"])?;
    let report = Arc::new(junit(CASES));
    // The upload load, its line printed; the load and its p99.
    let uploads = |label: &'static str, server: &Arc<Server>| {
        let (report, token, srv) = (report.clone(), load_token.clone(), server.clone());
        let l = load(o.clients, o.seconds, usize::MAX, move |n, agent| {
            upload(
                agent,
                &srv,
                LOAD_PROJECT,
                &token,
                &format!("{label}-{n}"),
                &format!("{n:040x}"),
                &report,
            )
        });
        let log = server.take_log();
        let p99 = quantile(&l.latencies_ms, 0.99);
        println!(
            "  {} uploads ({:.0}/s), {} errors, p50 {:.0} ms, p99 {p99:.0} ms; server: {}",
            l.ok,
            l.ok as f64 / l.wall,
            l.errors,
            quantile(&l.latencies_ms, 0.5),
            server_times(&log.uploads)
        );
        (l, p99)
    };
    let server = Arc::new(server);

    println!(
        "baseline: {} clients upload a {CASES}-case report for {} s, no deliveries",
        o.clients, o.seconds
    );
    let (base, base_p99) = uploads("base", &server);

    // 2a: the fan-out alone.
    println!(
        "fan-out: one upload turns {} tests flaky: {} events to each of {ENDPOINTS} endpoints",
        o.events, o.events
    );
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    let rss = RssSampler::start(server.pid());
    let started = Instant::now();
    upload(
        &agent,
        &server,
        HOOK_PROJECT,
        &hook_token,
        "fan-out",
        "f00d",
        &all_flaky(o.events, "a"),
    )?;
    let uploaded = started.elapsed().as_secs_f64();
    let want = o.events;
    wait_for(&receivers, want, started)?;
    let fan_out = started.elapsed().as_secs_f64();
    let peak = rss.stop();
    let deliveries = o.events * ENDPOINTS;
    println!(
        "  the upload's 201 after {uploaded:.2} s; {deliveries} deliveries done {fan_out:.2} s after \
         the upload began ({:.0}/s after its 201); peak RSS {:.0} MiB",
        deliveries as f64 / (fan_out - uploaded).max(0.001),
        mib(peak)
    );

    // 2b: uploads while another fan-out is being delivered.
    println!("uploads while another {deliveries} deliveries run");
    upload(
        &agent,
        &server,
        HOOK_PROJECT,
        &hook_token,
        "fan-out-2",
        "f00e",
        &all_flaky(o.events, "b"),
    )?;
    let before: usize = receivers.iter().map(Receiver::count).sum();
    let (l, during_p99) = uploads("during", &server);
    let after: usize = receivers.iter().map(Receiver::count).sum();
    println!("  {} deliveries meanwhile", after - before);
    let rest = Instant::now();
    wait_for(&receivers, 2 * want, rest)?;
    println!(
        "  the rest delivered {:.2} s after the uploads stopped",
        rest.elapsed().as_secs_f64()
    );
    // The same load again with nothing to deliver: the tables have grown
    // and autovacuum may have woken since the first baseline, so the fair
    // comparison is with the slower of the two.
    println!("baseline again, nothing to deliver");
    let (_, again_p99) = uploads("again", &server);
    let base_p99 = base_p99.max(again_p99);
    let ratio = during_p99 / base_p99;
    let fan_ok = fan_out <= 30.0;
    let rss_ok = mib(peak) <= 150.0 * 1e6 / 1_048_576.0;
    let p99_ok = ratio <= 1.10;
    println!("\n| Figure | Value | Ratio to baseline | Target |\n|---|---|---|---|");
    let mark = |ok: bool| if ok { " (met)" } else { " (**missed**)" };
    println!(
        "| {} events to {ENDPOINTS} endpoints, delivered | {fan_out:.1} s | - | <= 30 s{} |",
        o.events,
        mark(fan_ok)
    );
    println!(
        "| server peak RSS during the fan-out | {:.0} MiB | - | <= 150 MB{} |",
        mib(peak),
        mark(rss_ok)
    );
    println!(
        "| upload p99 while deliveries run | {during_p99:.0} ms | {ratio:.2}x ({base_p99:.0} ms without, the slower of before and after) | <= 1.10x{} |",
        mark(p99_ok)
    );
    if l.errors + base.errors > 0 {
        println!(
            "upload errors: {:?}",
            l.first_error.or(base.first_error).unwrap_or_default()
        );
    }
    Ok(fan_ok && rss_ok && p99_ok)
}
