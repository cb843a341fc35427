//! Prometheus metrics (issue 17 item 3, docs/metrics.md), scraped for real: a centre
//! process with `--metrics-listen`, real requests and a real enrolment through the CLI,
//! an event stream and a push; a sync-only agent process with its own listener; the
//! Grafana dashboard in ops/grafana checked against what both expose.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "metrics-test-token-0123456789abcdef";

fn token_file(dir: &Path, mode: u32) -> std::path::PathBuf {
    let p = dir.join("metrics.token");
    std::fs::write(&p, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

/// The metrics URL a process printed ("… http://ADDR/metrics (scrapers: …)").
fn metrics_url(lines: &[String]) -> String {
    lines
        .iter()
        .find_map(|l| {
            let at = l.find("http://")?;
            let url = l[at..].split_whitespace().next()?;
            url.ends_with("/metrics").then(|| url.to_string())
        })
        .unwrap_or_else(|| panic!("no metrics URL printed: {lines:?}"))
}

fn client_from(src: &str) -> reqwest::Client {
    // reqwest is built without a default TLS provider; these URLs are plain HTTP, but
    // building the client still wants one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .local_address(src.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn get(
    from: &str,
    url: &str,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = client_from(from).get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// One exposition sample: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parse the OpenMetrics text (label values may hold `{`, `}` and `,`, as route
/// templates do).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = vec![];
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("sample line");
        let name = line[..name_end].to_string();
        let mut labels = vec![];
        let mut rest = &line[name_end..];
        if rest.starts_with('{') {
            let (mut key, mut val, mut in_val, mut esc) =
                (String::new(), String::new(), false, false);
            let mut end = 0;
            for (i, ch) in rest[1..].char_indices() {
                if in_val {
                    if esc {
                        val.push(ch);
                        esc = false;
                    } else if ch == '\\' {
                        esc = true;
                    } else if ch == '"' {
                        in_val = false;
                        labels.push((std::mem::take(&mut key), std::mem::take(&mut val)));
                    } else {
                        val.push(ch);
                    }
                } else if ch == '"' {
                    in_val = true;
                } else if ch == '}' {
                    end = i + 2;
                    break;
                } else if ch != '=' && ch != ',' {
                    key.push(ch);
                }
            }
            rest = &rest[end..];
        }
        let value = rest
            .split_whitespace()
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("value of {line:?}: {e}"));
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// Sum of the samples named `name` whose labels include all of `want`.
fn value(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<f64> = parse(text)
        .into_iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .collect();
    (!hits.is_empty()).then(|| hits.iter().sum())
}

fn must(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    value(text, name, want).unwrap_or_else(|| panic!("no sample {name}{want:?} in:\n{text}"))
}

/// Every sample name a family may have, from the `# TYPE` lines (OpenMetrics: a
/// counter `x` is sampled as `x_total`, a histogram as `x_bucket`, `x_count`, `x_sum`).
fn sample_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let (name, kind) = (it.next().unwrap(), it.next().unwrap());
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_count", "_sum"],
            _ => &[""],
        };
        for s in suffixes {
            out.insert(format!("{name}{s}"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn centre_metrics_move_with_requests_enrolment_streams_pushes_and_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let token = token_file(tmp.path(), 0o600);
    // Only 127.0.0.2 may scrape, with the token: 127.0.0.1 is "another host" here.
    let c = Centre::start_with(
        Backend::Sqlite,
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-allow",
            "127.0.0.2",
            "--metrics-token-file",
            token.to_str().unwrap(),
        ],
    );
    let url = metrics_url(&c.stdout_lines);
    assert!(
        c.stdout_lines
            .iter()
            .any(|l| l.contains("scrapers: 127.0.0.2/32, bearer token")),
        "{:?}",
        c.stdout_lines
    );

    // Access control: wrong remote, no token, wrong token, other paths.
    let (st, _, body) = get("127.0.0.1", &url, Some(TOKEN)).await;
    assert_eq!(
        st, 403,
        "a remote outside --metrics-allow was answered: {body}"
    );
    let (st, h, _) = get("127.0.0.2", &url, None).await;
    assert_eq!(st, 401);
    assert_eq!(h["www-authenticate"], "Bearer");
    let (st, _, body) = get(
        "127.0.0.2",
        &url,
        Some("metrics-test-token-0123456789abcdeX"),
    )
    .await;
    assert_eq!(st, 401, "a wrong token was accepted");
    assert!(!body.contains("dodvpn_"), "{body}");
    let (st, _, _) = get("127.0.0.2", &url.replace("/metrics", "/other"), Some(TOKEN)).await;
    assert_eq!(st, 404);
    let scrape = || async {
        let (st, h, text) = get("127.0.0.2", &url, Some(TOKEN)).await;
        assert_eq!(st, 200, "{text}");
        assert!(
            h["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text"),
            "{h:?}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        text
    };

    let t0 = scrape().await;
    assert_eq!(
        must(
            &t0,
            "dodvpn_center_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    for state in ["registered", "in_service", "revoked"] {
        assert_eq!(must(&t0, "dodvpn_center_devices", &[("state", state)]), 0.0);
    }
    assert_eq!(must(&t0, "dodvpn_center_event_streams", &[]), 0.0);
    assert_eq!(must(&t0, "dodvpn_center_read_only", &[]), 0.0);
    for kind in ["pool", "connection", "database", "decode", "other"] {
        assert_eq!(
            must(&t0, "dodvpn_center_db_errors_total", &[("kind", kind)]),
            0.0
        );
    }

    // Requests: a created organisation, an unknown one, a path no route has.
    let org = c.org("Metrics Hospital", "hospital");
    let api = c.client();
    let r = api
        .request(reqwest::Method::GET, "/api/v1/orgs/org-000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = api
        .request(reqwest::Method::GET, "/no/such/path/x1y2z3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // Enrolment (TR D.6 c–l) of two devices, a group, a policy.
    let a = onboard(&c, &org, "MET-A", "10.1.0.0/24").await;
    let b = onboard(&c, &org, "MET-B", "10.2.0.0/24").await;
    c.admin_ok(&["group", "create", "M"]);
    c.admin_ok(&["group", "add", "M", &a.id]);
    c.admin_ok(&["group", "add", "M", &b.id]);
    set_policy(&c, &org, &open_policy());

    // An event stream, then a push to it.
    let mut rx = stream(&b, &c, 0).await;
    next_kind(&mut rx, "hello").await;
    let t1 = scrape().await;
    assert_eq!(must(&t1, "dodvpn_center_event_streams", &[]), 1.0);
    assert_eq!(
        must(&t1, "dodvpn_center_devices", &[("state", "in_service")]),
        2.0
    );
    assert_eq!(
        must(&t1, "dodvpn_center_devices", &[("state", "registered")]),
        0.0
    );
    let live_before = must(&t1, "dodvpn_center_pushes_total", &[("source", "live")]);
    let lat_before = must(&t1, "dodvpn_center_push_latency_seconds_count", &[]);
    c.admin_ok(&["connection", "apply", "--from", &a.id, "--to", &b.id]);
    next_kind(&mut rx, "grant").await;
    let t2 = scrape().await;
    let live = must(&t2, "dodvpn_center_pushes_total", &[("source", "live")]);
    assert!(
        live >= live_before + 1.0,
        "live pushes {live_before} → {live}"
    );
    let lat = must(&t2, "dodvpn_center_push_latency_seconds_count", &[]);
    assert!(
        lat >= lat_before + 1.0,
        "push latency count {lat_before} → {lat}"
    );
    let lat_sum = must(&t2, "dodvpn_center_push_latency_seconds_sum", &[]);
    assert!(
        lat_sum >= 0.0 && lat_sum < 10.0 * lat,
        "push latency sum {lat_sum} for {lat}"
    );
    assert_eq!(
        must(
            &t2,
            "dodvpn_center_push_latency_seconds_bucket",
            &[("le", "+Inf")]
        ),
        lat
    );
    assert!(must(&t2, "dodvpn_center_pushes_total", &[("source", "backlog")]) >= 0.0);

    // Requests by route template and status, with their latency.
    let created = parse(&t2)
        .into_iter()
        .filter(|s| {
            s.name == "dodvpn_center_http_requests_total"
                && s.labels.contains(&("method".into(), "POST".into()))
                && s.labels.contains(&("route".into(), "/api/v1/orgs".into()))
        })
        .collect::<Vec<_>>();
    assert_eq!(created.len(), 1, "{created:?}");
    let status = &created[0]
        .labels
        .iter()
        .find(|(k, _)| k == "status")
        .unwrap()
        .1;
    assert!(status.starts_with('2'), "org create answered {status}");
    assert_eq!(created[0].value, 1.0);
    assert_eq!(
        must(
            &t2,
            "dodvpn_center_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/api/v1/orgs/{id}"),
                ("status", "404")
            ]
        ),
        1.0
    );
    assert!(
        must(
            &t2,
            "dodvpn_center_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ) >= 1.0
    );
    assert!(
        must(
            &t2,
            "dodvpn_center_http_requests_total",
            &[("method", "POST"), ("route", "/api/v1/device/enroll")]
        ) >= 2.0,
        "two enrolments"
    );
    assert!(
        must(
            &t2,
            "dodvpn_center_http_request_duration_seconds_count",
            &[("method", "GET"), ("route", "/api/v1/device/events")]
        ) >= 1.0
    );
    for raw in ["org-000000000000", "/no/such/path", &a.id, &b.id] {
        assert!(!t2.contains(raw), "a raw path or id is a label: {raw}");
    }

    // Audit appends: exactly the records in the log (all written by this process),
    // counted when their change committed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = audit_actions(&c).len() as f64;
        let t = scrape().await;
        let appends = must(&t, "dodvpn_center_audit_appends_total", &[]);
        if appends == records && records > 20.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "audit appends {appends} != {records} records in the log"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A second stream opens and closes: the gauge follows.
    let extra = a
        .tier2(&c)
        .request(reqwest::Method::GET, "/api/v1/device/events?since=0")
        .send()
        .await
        .unwrap();
    assert!(extra.status().is_success());
    assert_eq!(
        must(&scrape().await, "dodvpn_center_event_streams", &[]),
        2.0
    );
    let backlog = must(
        &scrape().await,
        "dodvpn_center_pushes_total",
        &[("source", "backlog")],
    );
    assert!(
        backlog >= 1.0,
        "a's stream from 0 replayed its events: {backlog}"
    );
    drop(extra);
    let deadline = Instant::now() + Duration::from_secs(10);
    while must(&scrape().await, "dodvpn_center_event_streams", &[]) != 1.0 {
        assert!(
            Instant::now() < deadline,
            "the closed stream is still counted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A real database error: the organisations table is renamed away under the running
    // centre, an organisation cannot be created (503), and the error is counted.
    let db = rusqlite::Connection::open(c.dir.join("center.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let before = must(
        &scrape().await,
        "dodvpn_center_db_errors_total",
        &[("kind", "database")],
    );
    db.execute_batch("ALTER TABLE orgs RENAME TO orgs_away")
        .unwrap();
    let refused = c.admin(&["org", "create", "Nowhere", "--kind", "lab"]);
    db.execute_batch("ALTER TABLE orgs_away RENAME TO orgs")
        .unwrap();
    assert!(
        refused.is_err(),
        "an organisation was created without its table"
    );
    let after = must(
        &scrape().await,
        "dodvpn_center_db_errors_total",
        &[("kind", "database")],
    );
    assert!(after >= before + 1.0, "database errors {before} → {after}");
    let t = scrape().await;
    assert!(
        must(
            &t,
            "dodvpn_center_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/v1/orgs"),
                ("status", "503")
            ]
        ) >= 1.0,
        "the failed create is not counted as a 503"
    );
    c.org("Somewhere", "lab");
}

/// A centre does not start with metrics options that cannot work, and says why.
#[test]
fn metrics_options_that_cannot_work_are_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["center", "--data"])
            .arg(tmp.path().join("centre"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = run(&["--metrics-listen", "0.0.0.0:0"]);
    assert!(e.contains("--metrics-allow"), "{e}");
    let open = token_file(tmp.path(), 0o644);
    let e = run(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-token-file",
        open.to_str().unwrap(),
    ]);
    assert!(e.contains("chmod 600"), "{e}");
    let e = run(&["--metrics-allow", "192.0.2.0/24"]);
    assert!(e.contains("--metrics-listen"), "{e}");
    let e = run(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-allow",
        "not-a-net",
    ]);
    assert!(e.contains("neither an address nor a network"), "{e}");
    assert!(
        !tmp.path().join("centre").exists(),
        "the data directory was created before the options were checked"
    );
}

/// A real `dodvpn agent run --sync-only` process: its metrics follow the centre
/// connection and the grants; a wrong token is refused. Then every metric the
/// Grafana dashboard queries must be in the centre's or the agent's exposition.
#[tokio::test(flavor = "multi_thread")]
async fn agent_metrics_and_the_dashboard_match_what_is_exposed() {
    let c = Centre::start_with(Backend::Sqlite, &["--metrics-listen", "127.0.0.1:0"]);
    let centre_url = metrics_url(&c.stdout_lines);
    let org = c.org("Dashboard Clinic", "clinic");
    let a = onboard(&c, &org, "DASH-A", "10.1.0.0/24").await;
    let b = onboard(&c, &org, "DASH-B", "10.2.0.0/24").await;
    c.admin_ok(&["group", "create", "D"]);
    c.admin_ok(&["group", "add", "D", &a.id]);
    c.admin_ok(&["group", "add", "D", &b.id]);
    set_policy(&c, &org, &open_policy());

    let tmp = tempfile::tempdir().unwrap();
    let token = token_file(tmp.path(), 0o600);
    let mut agent = KillOnDrop(
        Command::new(BIN)
            .args(["agent", "run", "--sync-only", "--keystore"])
            .arg(&b.dir)
            .args(["--metrics-listen", "127.0.0.1:0", "--metrics-token-file"])
            .arg(&token)
            .env("DODVPN_KEYSTORE_PASSPHRASE", PASSPHRASE)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let out = agent.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut seen = vec![];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen
        .iter()
        .any(|l: &String| l.contains("connected to the centre"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("the agent did not connect: {seen:?}"),
        }
    }
    let agent_url = metrics_url(&seen);
    let (st, _, _) = get("127.0.0.1", &agent_url, Some("not-the-token-0123456789")).await;
    assert_eq!(st, 401, "the agent accepted a wrong token");
    let (st, _, _) = get("127.0.0.1", &agent_url, None).await;
    assert_eq!(st, 401, "the agent answered without a token");
    let agent_scrape = || async {
        let (st, _, text) = get("127.0.0.1", &agent_url, Some(TOKEN)).await;
        assert_eq!(st, 200, "{text}");
        text
    };
    let t = agent_scrape().await;
    assert_eq!(must(&t, "dodvpn_agent_center_connected", &[]), 1.0);
    assert_eq!(must(&t, "dodvpn_agent_grants", &[]), 0.0);
    assert_eq!(must(&t, "dodvpn_agent_revoked", &[]), 0.0);
    assert_eq!(
        must(&t, "dodvpn_agent_dataplane_up", &[]),
        0.0,
        "--sync-only has no data plane"
    );
    assert_eq!(
        must(&t, "dodvpn_agent_drops_total", &[("reason", "bad_tag")]),
        0.0
    );
    assert_eq!(
        must(
            &t,
            "dodvpn_agent_filter_refusals_total",
            &[("direction", "inbound"), ("why", "service")]
        ),
        0.0
    );
    c.admin_ok(&["connection", "apply", "--from", &a.id, "--to", &b.id]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while must(&agent_scrape().await, "dodvpn_agent_grants", &[]) != 1.0 {
        assert!(
            Instant::now() < deadline,
            "the grant never showed in the agent's metrics"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let agent_text = agent_scrape().await;
    let (st, _, centre_text) = get("127.0.0.1", &centre_url, None).await;
    assert_eq!(st, 200);

    // The centre goes away: the agent says so, counts one outage, and reconnects.
    let mut c = c;
    c.kill9();
    let deadline = Instant::now() + Duration::from_secs(20);
    while must(&agent_scrape().await, "dodvpn_agent_center_connected", &[]) != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the agent still reports the centre connected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        must(
            &agent_scrape().await,
            "dodvpn_agent_center_disconnects_total",
            &[]
        ),
        1.0
    );
    assert_eq!(
        must(&agent_scrape().await, "dodvpn_agent_grants", &[]),
        1.0,
        "grants kept"
    );
    c.spawn();
    let deadline = Instant::now() + Duration::from_secs(40);
    while must(&agent_scrape().await, "dodvpn_agent_center_connected", &[]) != 1.0 {
        assert!(
            Instant::now() < deadline,
            "the agent did not report the reconnection"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        must(
            &agent_scrape().await,
            "dodvpn_agent_center_disconnects_total",
            &[]
        ),
        1.0,
        "retries while the centre was away counted as outages"
    );
    drop(agent);

    // The dashboard: every metric it queries exists, and it covers every family.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/grafana/dodvpn.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut exprs = vec![];
    collect_queries(&dash, &mut exprs);
    assert!(
        exprs.len() >= 25,
        "only {} queries in {}",
        exprs.len(),
        path.display()
    );
    let mut exposed = sample_names(&centre_text);
    exposed.extend(sample_names(&agent_text));
    let mut queried = BTreeSet::new();
    for e in &exprs {
        for name in metric_names(e) {
            assert!(
                exposed.contains(&name),
                "the dashboard queries {name}, which neither the centre nor the agent exposes (query: {e})"
            );
            queried.insert(name);
        }
    }
    let families: BTreeSet<String> = exposed
        .iter()
        .map(|n| {
            ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .fold(n.clone(), |n, s| {
                    n.strip_suffix(s).map(str::to_string).unwrap_or(n)
                })
        })
        .collect();
    for f in &families {
        assert!(
            queried.iter().any(|q| q.starts_with(f.as_str())),
            "the dashboard shows nothing of {f}"
        );
    }
}

/// A child process that is killed (by its PID) when the test ends, failed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every `expr` and templating `query` in a dashboard.
fn collect_queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => collect_queries(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_queries(x, out)),
        _ => {}
    }
}

/// The `dodvpn_…` metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = expr;
    while let Some(i) = rest.find("dodvpn_") {
        let tail = &rest[i..];
        let end = tail
            .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}
