//! Configuration files (TOML) for the long-running commands, `dodvpn center` and
//! `dodvpn agent run`, beside their flags (docs/packaging.md, "Configuration files").
//!
//! A file's keys are the command's long flags without the dashes (`listen = "…"` for
//! `--listen`, `tls-name = ["…"]` for the repeatable `--tls-name`), so the flags, the
//! man pages and the file never drift apart: a flag added to the command is a key of
//! its file at once. A flag given on the command line, or its environment variable,
//! overrides the file. The file is turned into flags and the command line parsed again,
//! so every value goes through the same parser as the flag: a bad address is refused
//! the same way from both.
//!
//! Every error in a file is reported, each with its line and column, before anything
//! starts; `--check-config` reports them (or the effective settings) and exits.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::builder::ValueParser;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// `--config FILE` and `--check-config`, flattened into each command that reads a file.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ConfigArgs {
    /// Read settings from this TOML file. Its keys are this command's long flags
    /// (`listen = "0.0.0.0:8443"`, lists for repeatable flags); flags and environment
    /// variables override the file.
    #[arg(long = "config", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Check the configuration (the file, the flags and the environment), report every
    /// error with its line and column, print the effective settings, and exit without
    /// starting: status 0 when valid, 1 otherwise.
    #[arg(long)]
    pub check_config: bool,
}

/// Argument ids of [`ConfigArgs`]; a command that has `CHECK_ID` reads files.
const FILE_ID: &str = "config_file";
const CHECK_ID: &str = "check_config";
/// Arguments that are never keys of a file.
const NOT_KEYS: &[&str] = &[FILE_ID, CHECK_ID, "help", "version"];

/// One error of a configuration file, at a byte range of its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub span: std::ops::Range<usize>,
    pub message: String,
}

/// A file's settings as the extra command-line arguments they stand for, with where
/// each key was set (for `--check-config`).
#[derive(Debug, Default)]
pub struct FileSettings {
    pub args: Vec<OsString>,
    /// Argument id → (key, byte offset of the key) for the keys the file sets.
    pub keys: BTreeMap<String, (String, usize)>,
}

/// Parse the process's command line into `C`, merging a configuration file for the
/// commands that take `--config`. Exits (status 1) on a bad file, and after
/// `--check-config`, as clap exits on bad flags.
pub fn parse_cli<C: clap::Parser>() -> C {
    let argv: Vec<OsString> = std::env::args_os().collect();
    match resolve::<C>(&argv) {
        Ok(Resolved::Run(c)) => *c,
        Ok(Resolved::Exit(code)) => std::process::exit(code),
        Err(e) => e.exit(),
    }
}

pub enum Resolved<C> {
    Run(Box<C>),
    Exit(i32),
}

/// The whole merge, without exiting the process (tests call it with their own argv).
pub fn resolve<C: clap::Parser>(argv: &[OsString]) -> Result<Resolved<C>, clap::Error> {
    // First pass with the settings a file may supply made optional: a `--keystore`
    // given only by the file must not fail here. The final pass has the real rules.
    let first = relax(C::command()).try_get_matches_from(argv)?;
    let Some((path, leaf)) = leaf_reading_files(&first) else {
        return final_parse::<C>(argv).map(|c| Resolved::Run(Box::new(c)));
    };
    let file = leaf.get_one::<PathBuf>(FILE_ID).cloned();
    let check = leaf.get_flag(CHECK_ID);
    let mut root = C::command();
    root.build();
    let cmd = find_command(&root, &path);
    let name = format!("dodvpn {}", path.join(" "));

    let mut settings = FileSettings::default();
    let mut text = String::new();
    if let Some(file) = &file {
        text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!(
                    "error: cannot read the configuration file {}: {e}",
                    file.display()
                );
                return Ok(Resolved::Exit(1));
            }
        };
        match settings_from_file(cmd, &text, leaf) {
            Ok(s) => settings = s,
            Err(errors) => {
                report(file, &text, &errors);
                eprintln!(
                    "{} error(s) in {}; {name} {}",
                    errors.len(),
                    file.display(),
                    if check {
                        "configuration check failed"
                    } else {
                        "was not started"
                    }
                );
                return Ok(Resolved::Exit(1));
            }
        }
    }
    let mut full = argv.to_vec();
    full.extend(settings.args.iter().cloned());
    let matches = match C::command().try_get_matches_from(&full) {
        Ok(m) => m,
        Err(e) if check => {
            // Conflicts and missing required settings, with or without the file.
            eprint!("{}", e.render());
            eprintln!("{name} configuration check failed");
            return Ok(Resolved::Exit(1));
        }
        Err(e) => return Err(e),
    };
    if check {
        let leaf = leaf_of(&matches, &path);
        print!(
            "{}",
            effective(cmd, leaf, &settings, file.as_deref(), &text)
        );
        return Ok(Resolved::Exit(0));
    }
    C::from_arg_matches(&matches)
        .map(|c| Resolved::Run(Box::new(c)))
        .map_err(|e| e.format(&mut C::command()))
}

fn final_parse<C: clap::Parser>(argv: &[OsString]) -> Result<C, clap::Error> {
    let m = C::command().try_get_matches_from(argv)?;
    C::from_arg_matches(&m).map_err(|e| e.format(&mut C::command()))
}

/// Every command that reads files, with its required arguments made optional.
fn relax(cmd: Command) -> Command {
    let reads_files = cmd.get_arguments().any(|a| a.get_id() == CHECK_ID);
    let cmd = if reads_files {
        cmd.mut_args(|a| a.required(false))
    } else {
        cmd
    };
    cmd.mut_subcommands(relax)
}

/// The subcommand path (e.g. `["agent", "run"]`) and matches of the command that was
/// run, when it reads configuration files.
fn leaf_reading_files(m: &ArgMatches) -> Option<(Vec<String>, &ArgMatches)> {
    let mut path = vec![];
    let mut cur = m;
    while let Some((name, sub)) = cur.subcommand() {
        path.push(name.to_string());
        cur = sub;
    }
    matches!(cur.try_get_one::<bool>(CHECK_ID), Ok(Some(_))).then_some((path, cur))
}

fn leaf_of<'a>(m: &'a ArgMatches, path: &[String]) -> &'a ArgMatches {
    path.iter().fold(m, |m, name| {
        m.subcommand_matches(name)
            .expect("same path as the first pass")
    })
}

fn find_command<'a>(root: &'a Command, path: &[String]) -> &'a Command {
    path.iter().fold(root, |c, name| {
        c.find_subcommand(name)
            .expect("the path comes from this command's matches")
    })
}

/// The keys a file for `cmd` may hold: its long flags, but not `--config` itself.
pub fn keys(cmd: &Command) -> Vec<(&str, &Arg)> {
    cmd.get_arguments()
        .filter(|a| !NOT_KEYS.contains(&a.get_id().as_str()))
        .filter_map(|a| a.get_long().map(|l| (l, a)))
        .collect()
}

/// Check a file's text against `cmd`'s flags: every error at once, or the arguments
/// the file stands for. Keys whose flag `given` already has (from the command line or
/// the environment) are checked but not used: the flag wins.
pub fn settings_from_file(
    cmd: &Command,
    text: &str,
    given: &ArgMatches,
) -> Result<FileSettings, Vec<FileError>> {
    let table: BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>> =
        match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                return Err(vec![FileError {
                    span: e.span().unwrap_or(0..0),
                    message: format!("not valid TOML: {}", e.message().trim()),
                }])
            }
        };
    let known = keys(cmd);
    let mut errors = vec![];
    let mut out = FileSettings::default();
    for (key, value) in &table {
        let Some((long, arg)) = known.iter().find(|(l, _)| *l == key.get_ref()) else {
            let list: Vec<&str> = known.iter().map(|(l, _)| *l).collect();
            errors.push(FileError {
                span: key.span(),
                message: format!(
                    "unknown key `{}`; the keys are: {}",
                    key.get_ref(),
                    list.join(", ")
                ),
            });
            continue;
        };
        let args = match values_of(long, arg, value) {
            Ok(a) => a,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let id = arg.get_id().as_str();
        let overridden = matches!(
            given.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if !overridden {
            out.args.extend(args);
            out.keys
                .insert(id.to_string(), (long.to_string(), key.span().start));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        errors.sort_by_key(|e| e.span.start);
        Err(errors)
    }
}

/// A TOML value as the flags it stands for, each checked by the flag's own parser.
fn values_of(
    long: &str,
    arg: &Arg,
    value: &toml::Spanned<toml::Value>,
) -> Result<Vec<OsString>, FileError> {
    let at = |message: String| FileError {
        span: value.span(),
        message,
    };
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match value.get_ref() {
            toml::Value::Boolean(b) => {
                let on = *b == matches!(arg.get_action(), ArgAction::SetTrue);
                Ok(if on {
                    vec![format!("--{long}").into()]
                } else {
                    vec![]
                })
            }
            other => Err(at(format!(
                "`{long}` must be true or false, not {}",
                kind(other)
            ))),
        },
        ArgAction::Append => match value.get_ref() {
            toml::Value::Array(items) => {
                let mut out = vec![];
                for (i, item) in items.iter().enumerate() {
                    let s = scalar(item, arg).ok_or_else(|| {
                        at(format!(
                            "each item of `{long}` must be {}; item {} is {}",
                            expected(arg),
                            i + 1,
                            kind(item)
                        ))
                    })?;
                    check_value(long, arg, &s)
                        .map_err(|e| at(format!("`{long}` item {}: {e}", i + 1)))?;
                    out.push(format!("--{long}={s}").into());
                }
                Ok(out)
            }
            other => Err(at(format!(
                "`{long}` must be a list (`{long} = [\"…\"]`), not {}",
                kind(other)
            ))),
        },
        _ => {
            let s = scalar(value.get_ref(), arg).ok_or_else(|| {
                at(format!(
                    "`{long}` must be {}, not {}",
                    expected(arg),
                    kind(value.get_ref())
                ))
            })?;
            check_value(long, arg, &s).map_err(|e| at(format!("`{long}`: {e}")))?;
            Ok(vec![format!("--{long}={s}").into()])
        }
    }
}

/// Strings as they are; numbers as written (`mtu = 1400` and `mtu = "1400"` alike)
/// where the flag takes more than text: `database = 5` is a mistake, not a URL.
fn scalar(v: &toml::Value, arg: &Arg) -> Option<String> {
    let text_only = [
        ValueParser::string(),
        ValueParser::os_string(),
        ValueParser::path_buf(),
    ]
    .iter()
    .any(|p| p.type_id() == arg.get_value_parser().type_id());
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) if !text_only => Some(i.to_string()),
        toml::Value::Float(f) if !text_only => Some(f.to_string()),
        _ => None,
    }
}

/// What `scalar` accepts for `arg`, in words.
fn expected(arg: &Arg) -> &'static str {
    if scalar(&toml::Value::Integer(0), arg).is_some() {
        "a string or a number"
    } else {
        "a string"
    }
}

fn kind(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table (settings are top-level keys)",
    }
}

/// Run one value through the flag's own parser (address, duration, number, choices):
/// the file and the command line accept exactly the same values.
fn check_value(long: &str, arg: &Arg, value: &str) -> Result<(), String> {
    let probe = Command::new("dodvpn")
        .no_binary_name(true)
        .disable_help_flag(true)
        .arg(
            Arg::new("value")
                .long("value")
                .value_name("VALUE")
                .value_parser(arg.get_value_parser().clone())
                .action(ArgAction::Set),
        );
    match probe.try_get_matches_from([format!("--value={value}")]) {
        Ok(_) => Ok(()),
        Err(e) => {
            // clap names the probe's flag; the reader knows it as --LONG.
            let text = e
                .to_string()
                .replace("--value <VALUE>", &format!("--{long}"));
            let first = text.lines().next().unwrap_or("invalid value").trim();
            Err(first.strip_prefix("error: ").unwrap_or(first).to_string())
        }
    }
}

/// A password in a URL (`postgres://user:SECRET@host/db`) is not printed.
fn redact(value: &str) -> String {
    let Some(scheme_end) = value.find("://") else {
        return value.to_string();
    };
    let rest = &value[scheme_end + 3..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &value[..scheme_end + 3],
            &authority[..colon],
            &value[scheme_end + 3 + at..]
        ),
        _ => value.to_string(),
    }
}

/// Line and column (both from 1, the column in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// `FILE:LINE:COLUMN: error: …` for each error, the way compilers print them.
fn report(file: &Path, text: &str, errors: &[FileError]) {
    for e in errors {
        let (line, col) = line_col(text, e.span.start);
        eprintln!("{}:{line}:{col}: error: {}", file.display(), e.message);
    }
}

/// What `--check-config` prints: each setting, its value and where it came from.
fn effective(
    cmd: &Command,
    leaf: &ArgMatches,
    settings: &FileSettings,
    file: Option<&Path>,
    text: &str,
) -> String {
    let mut out = String::new();
    match file {
        Some(f) => {
            let _ = writeln!(out, "{}: configuration valid", f.display());
        }
        None => {
            let _ = writeln!(
                out,
                "no configuration file (--config): flags and environment valid"
            );
        }
    }
    for (long, arg) in keys(cmd) {
        let id = arg.get_id().as_str();
        let values: Vec<String> = leaf
            .get_raw(id)
            .map(|v| v.map(|s| s.to_string_lossy().to_string()).collect())
            .unwrap_or_default();
        let shown = match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => leaf.get_flag(id).to_string(),
            _ if values.is_empty() => "(not set)".to_string(),
            ArgAction::Append => format!("[{}]", values.join(", ")),
            _ => values.join(" "),
        };
        let shown = redact(&shown);
        let from = match (settings.keys.get(id), leaf.value_source(id)) {
            (Some((_, at)), _) => {
                let (line, _) = line_col(text, *at);
                format!("file, line {line}")
            }
            (None, Some(ValueSource::CommandLine)) => format!("flag --{long}"),
            (None, Some(ValueSource::EnvVariable)) => format!(
                "environment {}",
                arg.get_env()
                    .map(|e| e.to_string_lossy())
                    .unwrap_or_default()
            ),
            (None, Some(ValueSource::DefaultValue)) => "default".to_string(),
            _ => "default".to_string(),
        };
        let _ = writeln!(out, "  {long:<18} = {shown:<40} ({from})");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[derive(clap::Parser, Debug)]
    struct T {
        #[command(subcommand)]
        cmd: Sub,
    }
    #[derive(clap::Subcommand, Debug)]
    enum Sub {
        Serve {
            #[arg(long, default_value = "127.0.0.1:8443")]
            listen: std::net::SocketAddr,
            #[arg(long)]
            store: PathBuf,
            #[arg(long, default_value_t = 1400)]
            mtu: u16,
            #[arg(long)]
            quiet: bool,
            #[arg(long = "name")]
            names: Vec<String>,
            #[arg(long, env = "DODVPN_TEST_CONFIG_DATA", default_value = "./data")]
            data: PathBuf,
            #[command(flatten)]
            config: ConfigArgs,
        },
        Other {
            #[arg(long)]
            x: Option<String>,
        },
    }

    fn argv(extra: &[&str]) -> Vec<OsString> {
        std::iter::once("dodvpn")
            .chain(extra.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn with_file(text: &str, extra: &[&str]) -> (tempfile::NamedTempFile, Vec<OsString>) {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        let mut a = vec!["serve", "--config", f.path().to_str().unwrap()];
        a.extend(extra);
        let v = argv(&a);
        (f, v)
    }

    fn run(argv: &[OsString]) -> T {
        match resolve::<T>(argv) {
            Ok(Resolved::Run(t)) => *t,
            Ok(Resolved::Exit(c)) => panic!("exited with {c}"),
            Err(e) => panic!("{e}"),
        }
    }

    fn errors(text: &str) -> Vec<(usize, usize, String)> {
        let mut root = T::command();
        root.build();
        let cmd = root.find_subcommand("serve").unwrap();
        let given = relax(T::command())
            .try_get_matches_from(argv(&["serve"]))
            .unwrap();
        let given = given.subcommand_matches("serve").unwrap();
        match settings_from_file(cmd, text, given) {
            Ok(_) => vec![],
            Err(es) => es
                .into_iter()
                .map(|e| {
                    let (l, c) = line_col(text, e.span.start);
                    (l, c, e.message)
                })
                .collect(),
        }
    }

    #[test]
    fn file_supplies_settings_and_required_arguments() {
        let (_f, a) = with_file(
            "listen = \"0.0.0.0:9000\"\nstore = \"/s\"\nmtu = 1300\nquiet = true\nname = [\"a\", \"b\"]\n",
            &[],
        );
        let Sub::Serve {
            listen,
            store,
            mtu,
            quiet,
            names,
            ..
        } = run(&a).cmd
        else {
            panic!()
        };
        assert_eq!(listen.to_string(), "0.0.0.0:9000");
        assert_eq!(store, PathBuf::from("/s"));
        assert_eq!((mtu, quiet), (1300, true));
        assert_eq!(names, vec!["a", "b"]);
    }

    #[test]
    fn flags_and_environment_override_the_file() {
        let (_f, a) = with_file(
            "listen = \"0.0.0.0:9000\"\nstore = \"/s\"\nname = [\"file\"]\n",
            &["--listen", "127.0.0.1:1", "--name", "flag"],
        );
        let Sub::Serve { listen, names, .. } = run(&a).cmd else {
            panic!()
        };
        assert_eq!(listen.to_string(), "127.0.0.1:1");
        assert_eq!(names, vec!["flag"], "a list flag replaces the file's list");
    }

    #[test]
    fn without_the_file_a_required_flag_is_still_required() {
        assert!(resolve::<T>(&argv(&["serve"])).is_err());
        let (_f, a) = with_file("mtu = 1300\n", &[]);
        assert!(
            resolve::<T>(&a).is_err(),
            "store is in neither the file nor the flags"
        );
        // Commands without files parse as before.
        assert!(matches!(
            run(&argv(&["other", "--x", "1"])).cmd,
            Sub::Other { .. }
        ));
    }

    #[test]
    fn every_error_has_its_line_and_column() {
        let es = errors("lisen = \"1.2.3.4:5\"\nmtu = \"big\"\nquiet = \"yes\"\nlisten = \"300.1.1.1:80\"\nname = \"x\"\n[table]\n");
        let at: Vec<(usize, usize)> = es.iter().map(|(l, c, _)| (*l, *c)).collect();
        assert_eq!(
            at,
            vec![(1, 1), (2, 7), (3, 9), (4, 10), (5, 8), (6, 2)],
            "{es:#?}"
        );
        assert!(es[0].2.contains("unknown key `lisen`") && es[0].2.contains("listen"));
        assert!(
            es[1].2.contains("`mtu`") && es[1].2.contains("big"),
            "{}",
            es[1].2
        );
        assert!(es[2].2.contains("true or false"));
        assert!(es[3].2.contains("300.1.1.1:80"), "{}", es[3].2);
        assert!(es[4].2.contains("must be a list"));
        assert!(es[5].2.contains("unknown key `table`"));
    }

    #[test]
    fn a_syntax_error_is_located_too() {
        let es = errors("listen = \"127.0.0.1:1\"\nmtu = = 3\n");
        assert_eq!(es.len(), 1);
        assert_eq!(es[0].0, 2, "{es:?}");
        assert!(es[0].2.contains("not valid TOML"));
    }

    #[test]
    fn passwords_in_urls_are_not_printed() {
        assert_eq!(
            redact("postgres://dodvpn:s3cret@db.example:5432/dodvpn"),
            "postgres://dodvpn:***@db.example:5432/dodvpn"
        );
        assert_eq!(redact("postgres://dodvpn@db/x"), "postgres://dodvpn@db/x");
        assert_eq!(redact("https://h:8443/a:b@c"), "https://h:8443/a:b@c");
        assert_eq!(redact("/var/lib/x"), "/var/lib/x");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("a\nbé c", 6), (2, 4));
        assert_eq!(line_col("", 0), (1, 1));
    }
}
