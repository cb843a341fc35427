//! Configuration files for `dodvpn center` and `dodvpn agent run` (issue 17 item 2),
//! through the real binary: `--check-config` reports every error with its line and
//! column and starts nothing; flags and environment override the file; a bad file
//! stops the service before it touches its data; the files the Debian package ships
//! (packaging/etc) are valid, their commented defaults included.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dodvpn");

fn dodvpn(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("DODVPN_DATA")
        .env_remove("DODVPN_LISTEN")
        .env_remove("DODVPN_DATABASE_URL")
        .env_remove("DODVPN_KEYSTORE")
        .stdin(Stdio::null())
        .output()
        .expect("run dodvpn")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn check_center(file: &Path, extra: &[&str]) -> Output {
    let mut a = vec![
        "center",
        "--check-config",
        "--config",
        file.to_str().unwrap(),
    ];
    a.extend(extra);
    dodvpn(&a)
}

fn check_agent(file: &Path) -> Output {
    dodvpn(&[
        "agent",
        "run",
        "--check-config",
        "--config",
        file.to_str().unwrap(),
    ])
}

/// The `FILE:LINE:COLUMN: error:` lines of stderr, as (line, column, message).
fn errors(stderr: &str, file: &Path) -> Vec<(usize, usize, String)> {
    let prefix = format!("{}:", file.display());
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let mut parts = rest.splitn(3, ':');
            let line = parts.next().unwrap().parse().unwrap();
            let col = parts.next().unwrap().parse().unwrap();
            let msg = parts.next().unwrap().trim().to_string();
            (line, col, msg)
        })
        .collect()
}

#[test]
fn a_good_file_is_valid_and_check_config_starts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let f = write(
        tmp.path(),
        "center.toml",
        &format!(
            "# comment\ndata = \"{}\"\nlisten = \"0.0.0.0:9443\"\ntls-name = [\"centre.example\", \"192.0.2.10\"]\n",
            data.display()
        ),
    );
    let t0 = Instant::now();
    let o = check_center(&f, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("configuration valid"), "{out}");
    assert!(
        out.lines().any(|l| l.contains("listen")
            && l.contains("0.0.0.0:9443")
            && l.contains("file, line 3")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("tls-name") && l.contains("[centre.example, 192.0.2.10]")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("database") && l.contains("(not set)") && l.contains("default")),
        "{out}"
    );
    assert!(!data.exists(), "--check-config created the data directory");
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[test]
fn an_unknown_key_is_named_with_its_line_and_the_keys_there_are() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "c.toml",
        "data = \"/x\"\n\n  lisen = \"127.0.0.1:1\"\n",
    );
    let o = check_center(&f, &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let es = errors(&err, &f);
    assert_eq!(es.len(), 1, "{err}");
    assert_eq!((es[0].0, es[0].1), (3, 3), "{err}");
    assert!(es[0].2.contains("unknown key `lisen`"), "{err}");
    // The keys there are (other flags added to the command join the list).
    let listed = es[0].2.split("the keys are: ").nth(1).unwrap_or_default();
    let listed: Vec<&str> = listed.split(", ").collect();
    for key in ["data", "listen", "database", "tls-name"] {
        assert!(listed.contains(&key), "{key} not listed: {err}");
    }
    assert!(
        !listed.contains(&"config") && !listed.contains(&"check-config"),
        "{err}"
    );
    assert!(err.contains("configuration check failed"), "{err}");
}

#[test]
fn a_wrong_type_is_refused_for_centre_and_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "c.toml",
        "tls-name = \"one.example\"\ndatabase = 5\n",
    );
    let o = check_center(&f, &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    let es = errors(&err, &f);
    assert_eq!(es.len(), 2, "{err}");
    assert_eq!((es[0].0, es[0].1), (1, 12));
    assert!(es[0].2.contains("must be a list"), "{err}");
    assert_eq!((es[1].0, es[1].1), (2, 12));
    assert!(
        es[1]
            .2
            .contains("`database` must be a string, not an integer"),
        "{err}"
    );

    let a = write(
        tmp.path(),
        "a.toml",
        "keystore = \"/ks\"\nmtu = \"big\"\nsync-only = \"yes\"\nidle-timeout = \"5 parsecs\"\n",
    );
    let o = check_agent(&a);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    let es = errors(&err, &a);
    let at: Vec<(usize, usize)> = es.iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(at, vec![(2, 7), (3, 13), (4, 16)], "{err}");
    assert!(es[0].2.contains("invalid value 'big' for '--mtu'"), "{err}");
    assert!(es[1].2.contains("true or false"), "{err}");
    assert!(es[2].2.contains("'--idle-timeout'"), "{err}");
}

#[test]
fn a_bad_address_is_refused_as_the_flag_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "c.toml", "listen = \"300.1.1.1:80\"\n");
    let o = check_center(&f, &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    let es = errors(&err, &f);
    assert_eq!(es.len(), 1, "{err}");
    assert_eq!((es[0].0, es[0].1), (1, 10));
    assert!(
        es[0]
            .2
            .contains("invalid value '300.1.1.1:80' for '--listen'"),
        "{err}"
    );
    // The flag says the same about the same value.
    let (_, flag_err) = text(&dodvpn(&[
        "center",
        "--check-config",
        "--listen",
        "300.1.1.1:80",
    ]));
    assert!(
        flag_err.contains("invalid value '300.1.1.1:80' for '--listen"),
        "{flag_err}"
    );
    // An agent exception outside the address space, inside a list.
    let a = write(
        tmp.path(),
        "a.toml",
        "keystore = \"/ks\"\nallow-in = [\"10.1.0.0/24\", \"10.0.0.0/33,tcp/443\"]\n",
    );
    let (_, err) = text(&check_agent(&a));
    let es = errors(&err, &a);
    assert_eq!(es.len(), 1, "{err}");
    assert!(es[0].2.contains("`allow-in` item 2"), "{err}");
}

#[test]
fn every_error_is_reported_together() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "c.toml",
        "listen = \"localhost\"\ndata = \"/var/lib/x\"\ncolour = \"blue\"\ntls-name = [\"ok.example\", 7]\n[server]\nport = 1\n",
    );
    let o = check_center(&f, &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    let es = errors(&err, &f);
    let at: Vec<(usize, usize)> = es.iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(at, vec![(1, 10), (3, 1), (4, 12), (5, 2)], "{err}");
    assert!(es[0].2.contains("'localhost'"), "{err}");
    assert!(es[1].2.contains("unknown key `colour`"), "{err}");
    assert!(es[2].2.contains("item 2 is an integer"), "{err}");
    assert!(es[3].2.contains("unknown key `server`"), "{err}");
    assert!(err.contains("4 error(s) in"), "{err}");
    // A TOML syntax error stops the parser: that one error, located.
    let s = write(tmp.path(), "s.toml", "data = \"/x\"\nlisten = = 1\n");
    let (_, err) = text(&check_center(&s, &[]));
    let es = errors(&err, &s);
    assert_eq!(es.len(), 1, "{err}");
    assert_eq!(es[0].0, 2, "{err}");
    assert!(es[0].2.contains("not valid TOML"), "{err}");
}

/// A real centre: the file gives the data directory and an address that cannot be
/// bound here (TEST-NET-1); `--listen` on the command line wins and it serves.
#[test]
fn flags_and_environment_override_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("from-file");
    let f = write(
        tmp.path(),
        "center.toml",
        &format!(
            "data = \"{}\"\nlisten = \"192.0.2.1:8443\"\n",
            data.display()
        ),
    );
    // --check-config shows who decided.
    let (out, err) = text(&check_center(&f, &["--listen", "127.0.0.1:0"]));
    assert!(
        out.lines().any(|l| l.contains("listen")
            && l.contains("127.0.0.1:0")
            && l.contains("flag --listen")),
        "{out}{err}"
    );
    let o = Command::new(BIN)
        .args(["center", "--check-config", "--config", f.to_str().unwrap()])
        .env("DODVPN_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let (out, _) = text(&o);
    assert!(
        out.lines()
            .any(|l| l.contains("127.0.0.1:0") && l.contains("environment DODVPN_LISTEN")),
        "{out}"
    );

    let mut child = Command::new(BIN)
        .args([
            "center",
            "--config",
            f.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("DODVPN_DATA")
        .env_remove("DODVPN_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut lines = vec![];
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => {
                let done = l.trim() == "ready";
                lines.push(l);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(ready, "the centre did not start: {lines:?}");
    let all = lines.join("\n");
    assert!(
        all.contains(&format!("initialised in {}", data.display())),
        "the file's data directory was not used: {all}"
    );
    assert!(
        all.contains("https://127.0.0.1:"),
        "the flag's address was not used: {all}"
    );
    assert!(data.join("pki").is_dir());
}

#[test]
fn a_bad_file_stops_the_service_before_it_touches_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let f = write(
        tmp.path(),
        "center.toml",
        &format!(
            "data = \"{}\"\nlisten = \"127.0.0.1:0\"\nlisten-port = 1\n",
            data.display()
        ),
    );
    let o = dodvpn(&["center", "--config", f.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains(":3:1: error: unknown key `listen-port`"),
        "{err}"
    );
    assert!(err.contains("dodvpn center was not started"), "{err}");
    assert!(!out.contains("ready"));
    assert!(!data.exists(), "the centre touched its data directory");
    // A missing file is a clear error too.
    let o = dodvpn(&["center", "--config", "/nonexistent/center.toml"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("cannot read the configuration file /nonexistent/center.toml"),
        "{err}"
    );
    // Without the file, the agent's required key store is still required.
    let a = write(tmp.path(), "a.toml", "mtu = 1300\n");
    let o = check_agent(&a);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("--keystore"), "{err}");
}

/// Every commented `# key = value` line of the shipped files is a valid setting too,
/// so an operator who uncomments a default gets what the comment says.
#[test]
fn the_packaged_files_and_their_commented_defaults_are_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../packaging/etc");
    for (name, cmd) in [
        ("center.toml", &["center"][..]),
        ("agent.toml", &["agent", "run"][..]),
    ] {
        let shipped = root.join(name);
        let body = std::fs::read_to_string(&shipped).unwrap();
        let mut uncommented = String::new();
        let mut defaults = 0;
        for line in body.lines() {
            match line.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => {
                    defaults += 1;
                    uncommented.push_str(rest);
                }
                _ => uncommented.push_str(line),
            }
            uncommented.push('\n');
        }
        assert!(defaults >= 3, "{name}: only {defaults} commented defaults");
        let open = write(tmp.path(), name, &uncommented);
        for f in [&shipped, &open] {
            let mut a = cmd.to_vec();
            a.extend(["--check-config", "--config", f.to_str().unwrap()]);
            let o = dodvpn(&a);
            let (out, err) = text(&o);
            assert!(o.status.success(), "{}: {out}{err}", f.display());
        }
    }
}
