//! An organisation's allowlist (TR C 4-8-1: only the sites the work needs), deny by
//! default. Entries are exact hosts, `*.domain` wildcards (never at or above a
//! public suffix), `http://host/prefix` URL prefixes for plain HTTP, each with
//! optional ports. A decision costs one hash lookup per label of the host, however
//! long the list.

use crate::addr::ip_literal;
use std::collections::HashMap;
use std::fmt;

/// Ports an entry allows when it names none: HTTPS, and HTTP for `http://` prefixes.
pub const DEFAULT_TLS_PORT: u16 = 443;
pub const DEFAULT_HTTP_PORT: u16 = 80;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryError {
    Empty,
    BadHost(String),
    BadPort(String),
    /// `*.co.jp`, `*.jp`: a wildcard at or above a public suffix would allow the world.
    WildcardTooBroad(String),
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty entry / 空の項目です"),
            Self::BadHost(h) => write!(f, "{h:?} is not a host name / ホスト名ではありません"),
            Self::BadPort(p) => write!(f, "{p:?} is not a port / ポート番号ではありません"),
            Self::WildcardTooBroad(d) => write!(
                f,
                "*.{d} is at or above a public suffix and would allow every site under it / *.{d} は公開サフィックス以上のため許可できません"
            ),
        }
    }
}

impl std::error::Error for EntryError {}

/// A host as the gateway compares it: lower case, no trailing dot; IP literals in
/// their normal form.
pub fn normal_host(host: &str) -> String {
    match ip_literal(host) {
        Some(ip) => ip.to_string(),
        None => host.trim().trim_end_matches('.').to_ascii_lowercase(),
    }
}

fn valid_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
        })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Exact {
        host: String,
        ports: Vec<u16>,
    },
    Wildcard {
        domain: String,
        ports: Vec<u16>,
    },
    Prefix {
        host: String,
        port: u16,
        prefix: String,
    },
}

/// One parsed allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// As written, for logs and for the person who asked for it.
    pub text: String,
    rule: Rule,
}

fn split_port(s: &str) -> Result<(&str, Option<u16>), EntryError> {
    // [v6]:port, v6 alone, host:port, host.
    if let Some(rest) = s.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .ok_or_else(|| EntryError::BadHost(s.into()))?;
        return match tail.strip_prefix(':') {
            Some(p) => Ok((
                h,
                Some(p.parse().map_err(|_| EntryError::BadPort(p.into()))?),
            )),
            None if tail.is_empty() => Ok((h, None)),
            None => Err(EntryError::BadHost(s.into())),
        };
    }
    if s.matches(':').count() > 1 {
        return Ok((s, None));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => {
            let port: u16 = p.parse().map_err(|_| EntryError::BadPort(p.into()))?;
            if port == 0 {
                return Err(EntryError::BadPort(p.into()));
            }
            Ok((h, Some(port)))
        }
        None => Ok((s, None)),
    }
}

impl Entry {
    pub fn parse(text: &str) -> Result<Entry, EntryError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(EntryError::Empty);
        }
        let rule = if let Some(rest) = t.strip_prefix("http://") {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let (h, port) = split_port(authority)?;
            let host = normal_host(h);
            if ip_literal(&host).is_none() && !valid_name(&host) {
                return Err(EntryError::BadHost(h.into()));
            }
            let prefix = if path.is_empty() {
                "/".to_string()
            } else {
                path.to_string()
            };
            Rule::Prefix {
                host,
                port: port.unwrap_or(DEFAULT_HTTP_PORT),
                prefix,
            }
        } else {
            let (h, port) = split_port(t)?;
            let ports = vec![port.unwrap_or(DEFAULT_TLS_PORT)];
            if let Some(domain) = h.strip_prefix("*.") {
                let domain = normal_host(domain);
                if !valid_name(&domain) || ip_literal(&domain).is_some() {
                    return Err(EntryError::BadHost(h.into()));
                }
                // The registrable part must lie strictly below the public suffix.
                if psl::domain(domain.as_bytes()).is_none() {
                    return Err(EntryError::WildcardTooBroad(domain));
                }
                Rule::Wildcard { domain, ports }
            } else {
                let host = normal_host(h);
                if ip_literal(&host).is_none() && !valid_name(&host) {
                    return Err(EntryError::BadHost(h.into()));
                }
                Rule::Exact { host, ports }
            }
        };
        Ok(Entry {
            text: t.to_string(),
            rule,
        })
    }
}

/// What a client asks the gateway for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    /// `None` for CONNECT (the path is inside TLS); the request path for plain HTTP.
    pub path: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed, by this entry (as written).
    Allow(String),
    /// The host is listed, but not on this port, not for this path, or only for plain HTTP.
    WrongPort,
    NotListed,
}

#[derive(Debug, Default, Clone)]
pub struct Allowlist {
    exact: HashMap<String, Vec<(Vec<u16>, usize)>>,
    wildcard: HashMap<String, Vec<(Vec<u16>, usize)>>,
    prefix: HashMap<String, Vec<(u16, String, usize)>>,
    entries: Vec<String>,
}

impl Allowlist {
    pub fn new(entries: impl IntoIterator<Item = Entry>) -> Allowlist {
        let mut a = Allowlist::default();
        for e in entries {
            let i = a.entries.len();
            a.entries.push(e.text);
            match e.rule {
                Rule::Exact { host, ports } => a.exact.entry(host).or_default().push((ports, i)),
                Rule::Wildcard { domain, ports } => {
                    a.wildcard.entry(domain).or_default().push((ports, i))
                }
                Rule::Prefix { host, port, prefix } => {
                    a.prefix.entry(host).or_default().push((port, prefix, i))
                }
            }
        }
        a
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Deny by default: allowed only if an entry names this host (or a parent domain by
    /// wildcard) on this port; plain HTTP may also match a URL prefix.
    pub fn decide(&self, t: &Target<'_>) -> Verdict {
        let host = normal_host(t.host);
        let mut listed = false;
        let mut check = |rules: Option<&Vec<(Vec<u16>, usize)>>| -> Option<usize> {
            for (ports, i) in rules.into_iter().flatten() {
                listed = true;
                if ports.contains(&t.port) {
                    return Some(*i);
                }
            }
            None
        };
        if let Some(i) = check(self.exact.get(&host)) {
            return Verdict::Allow(self.entries[i].clone());
        }
        if ip_literal(&host).is_none() {
            // Every proper parent domain: a.b.example.jp → b.example.jp → example.jp → jp.
            let mut rest = host.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                if let Some(i) = check(self.wildcard.get(parent)) {
                    return Verdict::Allow(self.entries[i].clone());
                }
                rest = parent;
            }
        }
        for (port, prefix, i) in self.prefix.get(&host).into_iter().flatten() {
            listed = true;
            // A URL prefix can only be checked where the path is visible: plain HTTP.
            if t.path
                .is_some_and(|path| *port == t.port && path.starts_with(prefix.as_str()))
            {
                return Verdict::Allow(self.entries[*i].clone());
            }
        }
        if listed {
            Verdict::WrongPort
        } else {
            Verdict::NotListed
        }
    }
}
