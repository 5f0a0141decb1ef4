//! The dashboard of `cargo flake serve`, as a real process on a loopback
//! port, over a history built by uploading real reports through the API:
//! sign-in and its cookie, CSRF, escaping, project scoping (HTTP level, with
//! a cookie jar by hand), and the same journey in headless Chromium driven
//! over the DevTools protocol, which leaves a screenshot in
//! `target/test-artifacts/dashboard.png`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flake_core::tokens::{self, Role};
use flake_tests::{Server, report};

const PROJECT: &str = "github.com/org/app";
const PROJECT_IN_URL: &str = "github.com%2Forg%2Fapp";
/// A test name an attacker could choose.
const EVIL: &str = "<script>alert(1)</script>";

/// A server over a history with a flaky test (a flip: the same commit fails
/// then passes), the runs of real reports, and a test named like a script.
struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    server: Server,
    read: String,
    upload: String,
    other: String,
    /// The id of the flaky test and its flake rate as the API gives it.
    flaky_id: String,
    flaky_rate: f64,
    evil_id: String,
}

fn junit(fail: bool) -> Vec<u8> {
    let mut x = String::from("<testsuite name=\"s\">");
    let failure = |m: &str| {
        if fail {
            format!("<failure message=\"{m}\">{m} at src/lib.rs:3</failure>")
        } else {
            String::new()
        }
    };
    x.push_str(&format!(
        "<testcase classname=\"app.Mod\" name=\"flips\">{}</testcase>",
        failure("boom: the connection was reset")
    ));
    x.push_str("<testcase classname=\"app.Mod\" name=\"steady\"></testcase>");
    // The name and the message are attacker-controlled: XML-escaped here,
    // HTML text in the history.
    x.push_str(&format!(
        "<testcase classname=\"app.Evil\" name=\"&lt;script&gt;alert(1)&lt;/script&gt;\">{}</testcase>",
        failure("&lt;img src=x onerror=alert(2)&gt;")
    ));
    x.push_str("</testsuite>");
    x.into_bytes()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let location = flake_core::store::Location::Sqlite(db.clone());
    let mut store = flake_core::store::Store::connect(&location).unwrap();
    let now = flake_core::meta::now_ms();
    let upload = tokens::create(&mut store, PROJECT, Role::Upload, None, None, now).unwrap();
    let read = tokens::create(&mut store, PROJECT, Role::Read, None, None, now).unwrap();
    let other = tokens::create(&mut store, "other", Role::Read, None, None, now).unwrap();
    drop(store);
    let server = Server::start(dir.path(), &["--db", db.to_str().unwrap()], &[]);

    let post = |query: &str, bytes: &[u8]| {
        let url = server.url(&format!("/api/v1/projects/{PROJECT_IN_URL}/runs?{query}"));
        let r = ureq::post(&url)
            .set("Authorization", &format!("Bearer {}", upload.token))
            .send_bytes(bytes)
            .unwrap_or_else(|e| panic!("upload {query}: {e}"));
        assert_eq!(r.status(), 201, "{query}");
    };
    for (i, rel) in ["rspec/run1.json", "go-test/count3.json", "jest/jest.json"]
        .iter()
        .enumerate()
    {
        let path = report(rel);
        if path.exists() {
            let bytes = std::fs::read(&path).unwrap();
            post(
                &format!("commit=c{i}&branch=main&run_id=real-{i}&name={rel}"),
                &bytes,
            );
        }
    }
    for (run, fail) in [("flip-1", true), ("flip-2", false)] {
        post(
            &format!("commit=samecommit&branch=main&run_id={run}"),
            &junit(fail),
        );
    }
    // The flaky tests as the API sees them.
    let url = server.url(&format!(
        "/api/v1/projects/{PROJECT_IN_URL}/flaky-tests?page_size=100"
    ));
    let body: serde_json::Value = ureq::get(&url)
        .set("Authorization", &format!("Bearer {}", read.token))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let items = body["items"].as_array().unwrap();
    let find = |part: &str| {
        items
            .iter()
            .find(|i| i["id"].as_str().unwrap().contains(part))
            .unwrap_or_else(|| panic!("no flaky test with {part:?} in {body}"))
    };
    let flaky = find("flips");
    let evil = find(EVIL);
    Fixture {
        server,
        read: read.token,
        upload: upload.token,
        other: other.token,
        flaky_id: flaky["id"].as_str().unwrap().to_owned(),
        flaky_rate: flaky["flake_rate"].as_f64().unwrap(),
        evil_id: evil["id"].as_str().unwrap().to_owned(),
        db,
        _dir: dir,
    }
}

use flake_core::webhooks::percent_encode as encode;

/// Status, headers of interest and body of a response, errors included.
struct Answer {
    status: u16,
    location: Option<String>,
    set_cookie: Option<String>,
    csp: Option<String>,
    body: String,
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> Answer {
    let r = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    Answer {
        status: r.status(),
        location: r.header("location").map(str::to_owned),
        set_cookie: r.header("set-cookie").map(str::to_owned),
        csp: r.header("content-security-policy").map(str::to_owned),
        body: r.into_string().unwrap_or_default(),
    }
}

/// A client that never follows redirects, with a one-cookie jar by hand.
struct Browser {
    agent: ureq::Agent,
    cookie: Option<String>,
    base: String,
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser {
            agent: ureq::AgentBuilder::new().redirects(0).build(),
            cookie: None,
            base: base.to_owned(),
        }
    }

    fn req(&self, method: &str, path: &str) -> ureq::Request {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.set("Cookie", c);
        }
        req
    }

    fn get(&self, path: &str) -> Answer {
        answer(self.req("GET", path).call())
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        let origin = self.base.clone();
        answer(
            self.req("POST", path)
                .set("Origin", &origin)
                .send_form(form),
        )
    }

    /// Signs in with `token`; keeps the cookie on success.
    fn login(&mut self, token: &str) -> Answer {
        let a = self.post("/login", &[("token", token)]);
        if let Some(c) = &a.set_cookie {
            self.cookie = c.split(';').next().map(str::to_owned);
        }
        a
    }
}

/// The CSRF token of a page's sign-out form.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in {page}"));
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[test]
fn the_dashboard_signs_in_with_a_read_token_scopes_and_escapes() {
    let f = fixture();
    let project_page = format!("/p/{PROJECT_IN_URL}");
    let mut b = Browser::new(&f.server.base);

    // Without a session every page sends the browser to the sign-in form.
    for path in ["/", project_page.as_str()] {
        let a = b.get(path);
        assert_eq!(
            (a.status, a.location.as_deref()),
            (303, Some("/login")),
            "{path}"
        );
    }
    let form = b.get("/login");
    assert_eq!(form.status, 200);
    assert!(form.body.contains("name=\"token\"") && form.body.contains("name=\"viewport\""));

    // Bad tokens: no cookie, and the token is never echoed.
    for (token, status) in [("cfk_1_nope", 401), ("", 401), (f.upload.as_str(), 403)] {
        let a = b.login(token);
        assert_eq!(a.status, status, "{token}: {}", a.body);
        assert!(a.set_cookie.is_none(), "{token}");
        assert!(token.is_empty() || !a.body.contains(token));
    }
    // A sign-in posted from another site is refused, even with a good token.
    let a = answer(
        b.req("POST", "/login")
            .set("Origin", "http://evil.example")
            .send_form(&[("token", &f.read)]),
    );
    assert_eq!(a.status, 403);
    assert!(a.set_cookie.is_none());

    // A read token: a session cookie, HttpOnly and SameSite=Strict; Secure
    // behind an https proxy.
    let a = answer(
        b.req("POST", "/login")
            .set("Origin", &f.server.base)
            .set("X-Forwarded-Proto", "https")
            .send_form(&[("token", &f.read)]),
    );
    assert_eq!(a.status, 303);
    assert!(a.set_cookie.unwrap().contains("; Secure"));
    let a = b.login(&f.read);
    assert_eq!((a.status, a.location.as_deref()), (303, Some("/")));
    let cookie = a.set_cookie.unwrap();
    for part in ["flake_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure") && !cookie.contains(&f.read));

    let home = b.get("/");
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains(&format!("href=\"{project_page}\"")));
    assert!(!home.body.contains(&f.read), "a page shows the token");

    // The project page: the table, the chart, no external asset, escaped.
    let page = b.get(&project_page);
    assert_eq!(page.status, 200, "{}", page.body);
    let csp = page.csp.unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(page.body.contains("<svg") && page.body.contains("id=\"tests\""));
    assert!(page.body.contains(&f.flaky_id.replace('<', "&lt;")));
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.body.contains(EVIL), "an unescaped test id");
    for external in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!page.body.contains(external), "external asset: {external}");
    }
    // The filter works without JavaScript.
    let filtered = b.get(&format!("{project_page}?q=flips"));
    assert!(filtered.body.contains(&f.flaky_id));
    assert!(!filtered.body.contains("steady"), "{}", filtered.body);

    // One test's page: the script-named test, escaped, with its failure.
    let evil = b.get(&format!("{project_page}/t/{}", encode(&f.evil_id)));
    assert_eq!(evil.status, 200, "{}", evil.body);
    assert!(!evil.body.contains(EVIL) && !evil.body.contains("<img src=x"));
    assert!(
        evil.body.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "{}",
        evil.body
    );
    let flaky = b.get(&format!("{project_page}/t/{}", encode(&f.flaky_id)));
    assert_eq!(flaky.status, 200);
    assert!(flaky.body.contains("boom: the connection was reset"));
    assert!(flaky.body.contains("(flip)"), "{}", flaky.body);
    // Why it flakes: the section is there, and with this little history it
    // says so instead of inventing a cause.
    assert!(
        flaky.body.contains("<h2 id=\"why\">Why it flakes</h2>"),
        "{}",
        flaky.body
    );
    assert!(
        flaky.body.contains("No cause stands out beyond chance")
            || flaky.body.contains("class=\"why\""),
        "{}",
        flaky.body
    );
    let missing = b.get(&format!("{project_page}/t/no-such-test"));
    assert_eq!(missing.status, 404);

    // Another project: 403, for its pages and its tests.
    for path in ["/p/other", "/p/other/t/x"] {
        assert_eq!(b.get(path).status, 403, "{path}");
    }
    // A session of the other project cannot read this one.
    let mut other = Browser::new(&f.server.base);
    assert_eq!(other.login(&f.other).status, 303);
    assert_eq!(other.get(&project_page).status, 403);
    assert_eq!(other.get("/p/other").status, 200);
    // Revoking its token ends that session at its next page.
    let other_id: i64 = f.other.split('_').nth(1).unwrap().parse().unwrap();
    let mut store = flake_core::store::Store::open(&f.db).unwrap();
    assert!(
        store
            .revoke_token(other_id, flake_core::meta::now_ms())
            .unwrap()
    );
    drop(store);
    let a = other.get("/p/other");
    assert_eq!((a.status, a.location.as_deref()), (303, Some("/login")));

    // Sign out: the CSRF token is required and must be the session's.
    let csrf = csrf_of(&page.body);
    for form in [
        vec![],
        vec![("csrf", "0".repeat(64))],
        vec![("csrf", String::new())],
    ] {
        let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = b.post("/logout", &fields);
        assert_eq!(a.status, 403, "{form:?}");
    }
    assert_eq!(
        b.get("/").status,
        200,
        "a refused sign-out kept the session"
    );
    let a = b.post("/logout", &[("csrf", &csrf)]);
    assert_eq!((a.status, a.location.as_deref()), (303, Some("/login")));
    assert!(a.set_cookie.unwrap().contains("Max-Age=0"));
    // The old cookie no longer works.
    assert_eq!(b.get("/").status, 303);
}

// ---- The browser test: headless Chromium over the DevTools protocol ----

/// The Chromium binary, if one is installed.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A headless Chromium; killed when dropped.
struct Chromium {
    child: Child,
    _profile: tempfile::TempDir,
    /// `ws://127.0.0.1:PORT/devtools/browser/…`
    ws: String,
}

impl Chromium {
    fn start(binary: &str) -> Chromium {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-extensions",
                "--remote-debugging-port=0",
                // A phone's screen: the pages must read there.
                "--window-size=412,915",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary} does not start: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let ws = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(at) = line.find("ws://")
                        && line.contains("DevTools listening on")
                    {
                        break line[at..].trim().to_owned();
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "{binary} printed no `DevTools listening on ws://…` within 60 s:\n{}",
                        seen.join("\n")
                    );
                }
            }
        };
        // Keep draining stderr so Chromium never blocks on it.
        std::thread::spawn(move || for _ in rx {});
        Chromium {
            child,
            _profile: profile,
            ws,
        }
    }

    /// The WebSocket URL of the first page target.
    fn page(&self) -> String {
        let http = self
            .ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let list: serde_json::Value = ureq::get(&format!("http://{http}/json/list"))
                .timeout(Duration::from_secs(5))
                .call()
                .ok()
                .and_then(|r| r.into_json().ok())
                .unwrap_or_default();
            if let Some(page) = list.as_array().and_then(|targets| {
                targets
                    .iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            }) {
                return page.to_owned();
            }
            assert!(Instant::now() < deadline, "Chromium opened no page: {list}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DevTools protocol session on one page; every call is bounded in time.
struct Cdp {
    ws: tungstenite::WebSocket<std::net::TcpStream>,
    next: u64,
}

impl Cdp {
    fn connect(url: &str) -> Cdp {
        let addr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (ws, _) = tungstenite::client(url, stream)
            .unwrap_or_else(|e| panic!("no DevTools WebSocket at {url}: {e}"));
        // Short reads from here on: a call checks its deadline between them.
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Cdp { ws, next: 0 }
    }

    /// Calls `method` and returns its result (events in between are dropped).
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next += 1;
        let id = self.next;
        let message = serde_json::json!({"id": id, "method": method, "params": params});
        self.ws
            .send(tungstenite::Message::Text(message.to_string().into()))
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "{method}: no answer within 30 s");
            match self.ws.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                    if v["id"] == id {
                        assert!(v["error"].is_null(), "{method}: {}", v["error"]);
                        return v["result"].clone();
                    }
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("{method}: {e}"),
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expression, "returnByValue": true}),
        );
        assert!(
            r["exceptionDetails"].is_null(),
            "{expression}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Waits until `condition` (a JavaScript expression) is true in a page
    /// that finished loading.
    fn wait_for(&mut self, what: &str, condition: &str) {
        let expression = format!("document.readyState === 'complete' && !!({condition})");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.eval(&expression) != serde_json::Value::Bool(true) {
            if Instant::now() > deadline {
                let page = self.eval("location.href + '\\n' + document.body.innerText");
                panic!("{what}: not within 30 s; the page is {page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Standard base64 (Page.captureScreenshot's data).
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("test-artifacts")
}

#[test]
fn the_dashboard_works_in_headless_chromium() {
    let Some(binary) = chromium() else {
        let required = ["CI", "FLAKE_TESTS_REQUIRE_CHROMIUM"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
        assert!(
            !required,
            "headless Chromium is required here (CI or FLAKE_TESTS_REQUIRE_CHROMIUM is set) \
             but neither `chromium` nor `chromium-browser` runs: `apt-get install -y chromium`"
        );
        eprintln!(
            "skipped: the dashboard's browser test needs headless Chromium (`apt-get install -y chromium`)"
        );
        return;
    };
    let f = fixture();
    let browser = Chromium::start(binary);
    let mut page = Cdp::connect(&browser.page());
    let js = |s: &str| serde_json::to_string(s).unwrap();

    // Sign in by pasting the token into the form.
    page.call(
        "Page.navigate",
        serde_json::json!({"url": f.server.url("/login")}),
    );
    page.wait_for(
        "the sign-in form",
        "location.pathname === '/login' && document.querySelector('input[name=token]')",
    );
    page.eval(&format!(
        "(function(){{document.querySelector('input[name=token]').value = {};\
         document.getElementById('login').submit(); return true;}})()",
        js(&f.read)
    ));
    page.wait_for(
        "the projects page after signing in",
        "location.pathname === '/' && document.querySelector('a.project')",
    );
    assert_eq!(
        page.eval("document.cookie"),
        serde_json::json!(""),
        "the session cookie is HttpOnly"
    );

    // Open the project page by its link.
    page.eval("document.querySelector('a.project').click(), true");
    page.wait_for(
        "the project page",
        "location.pathname.startsWith('/p/') && document.getElementById('tests')",
    );
    // The live filter hides what does not match.
    let hidden = page.eval(
        "(function(){var q = document.getElementById('q'); q.value = 'flips';\
         q.dispatchEvent(new Event('input'));\
         var rows = Array.from(document.querySelectorAll('#tests tbody tr'));\
         return rows.filter(function(r){ return r.hidden; }).length + '/' + rows.length;})()",
    );
    let hidden = hidden.as_str().unwrap().to_owned();
    assert!(
        !hidden.starts_with("0/"),
        "the filter hid nothing: {hidden}"
    );
    // Find the flaky test in the table and follow its link.
    let href = page.eval(&format!(
        "(function(){{var id = {};\
         var rows = document.querySelectorAll('#tests tbody tr');\
         for (var i = 0; i < rows.length; i++) {{\
           var r = rows[i];\
           if (r.cells[0].textContent === id && r.cells[2].textContent !== '0') {{\
             var a = r.querySelector('a'); a.click(); return a.getAttribute('href'); }} }}\
         return null;}})()",
        js(&f.flaky_id)
    ));
    assert!(href.is_string(), "no row of {} with flaky runs", f.flaky_id);
    page.wait_for(
        "the test's page",
        "location.pathname.indexOf('/t/') > 0 && document.getElementById('test-id')",
    );
    let text = page.eval("document.body.innerText");
    let text = text.as_str().unwrap();
    let rate = format!(
        "flake rate {}",
        flake_core::report::html::percent(f.flaky_rate)
    );
    for expected in [
        f.flaky_id.as_str(),
        rate.as_str(),
        "boom: the connection was reset",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not in the page:\n{text}"
        );
    }

    let shot = page.call(
        "Page.captureScreenshot",
        serde_json::json!({"format": "png"}),
    );
    let png = base64(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let dir = artifacts();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dashboard.png"), &png).unwrap();
    eprintln!("screenshot: {}", dir.join("dashboard.png").display());
}
