//! The answer a refused request gets (issue 12 point 6): HTTP 403 with a short page in
//! Japanese and English saying why, and how to ask for the site.

/// Why a request was refused, in words for the person at the terminal.
pub fn explain(reason: &str) -> (&'static str, &'static str) {
    let kind = reason.split(':').next().unwrap_or(reason);
    match kind {
        "not_listed" => (
            "このサイトは、あなたの組織の許可リストにありません。",
            "This site is not on your organisation's allowlist.",
        ),
        "wrong_port" => (
            "このサイトは許可されていますが、このポートまたはこのパスは許可されていません。",
            "This site is allowed, but not on this port or for this path.",
        ),
        "sni_mismatch" => (
            "TLS で名乗ったサーバ名が、接続先として指定したホストと一致しません。",
            "The server name sent in TLS does not match the host asked for.",
        ),
        "no_sni" => (
            "TLS の接続にサーバ名 (SNI) がありません。",
            "The TLS connection names no server (SNI).",
        ),
        "address" => (
            "このホスト名はインターネット上のアドレスではなく、内部または特別なアドレスを指しています。",
            "This host name points to an internal or special address, not one on the Internet.",
        ),
        "auth_required" => (
            "このゲートウェイは利用者の認証を求めています。",
            "This gateway requires you to sign in.",
        ),
        "resolve" => (
            "このホスト名を解決できませんでした。",
            "This host name could not be resolved.",
        ),
        _ => (
            "このリクエストはゲートウェイの方針により拒否されました。",
            "This request was refused by the gateway's policy.",
        ),
    }
}

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The whole HTTP response: status line, headers and the page.
pub fn forbidden(host: &str, port: u16, reason: &str) -> Vec<u8> {
    let (ja, en) = explain(reason);
    let site = escape(&format!("{host}:{port}"));
    let reason_text = escape(reason);
    let body = format!(
        "<!doctype html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\"><title>ブロックされました / Blocked</title></head><body>\n\
<h1>アクセスできません / Access blocked</h1>\n\
<p><code>{site}</code></p>\n\
<p lang=\"ja\">{ja}</p>\n\
<p lang=\"en\">{en}</p>\n\
<h2>申請の方法 / How to apply</h2>\n\
<p lang=\"ja\">業務にこのサイトが必要な場合は、組織の管理者にサイトの追加を申請してください（例: <code>dodvpn admin gateway apply --org 組織ID --entry {site_entry} --reason 理由</code>）。セキュリティ責任者またはプロバイダが承認すると、数秒以内に利用できるようになります。</p>\n\
<p lang=\"en\">If your work needs this site, ask your organisation's administrator to apply for it (e.g. <code>dodvpn admin gateway apply --org ORG --entry {site_entry} --reason WHY</code>). Once your security officer or the provider approves it, it works within seconds.</p>\n\
<p><small>reason / 理由: <code>{reason_text}</code></small></p>\n\
</body></html>\n",
        site_entry = escape(host),
    );
    // 407 is the status browsers answer with credentials.
    let (status, challenge) = if reason == "auth_required" {
        (
            "407 Proxy Authentication Required",
            "Proxy-Authenticate: Basic realm=\"dodvpn gateway\", charset=\"UTF-8\"\r\n",
        )
    } else {
        ("403 Forbidden", "")
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nX-Dodvpn-Reason: {}\r\n{challenge}\r\n",
        body.len(),
        reason.replace(['\r', '\n'], " "),
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// A short error for a request that could not even be read (400, 408, 431, 502, 503).
pub fn error(status: u16, en: &str, ja: &str) -> Vec<u8> {
    let phrase = match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let body = format!("{ja}\n{en}\n");
    format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_says_why_and_how_in_both_languages_and_escapes_the_host() {
        let r = String::from_utf8(forbidden("<x>.example.test", 443, "not_listed")).unwrap();
        assert!(r.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{r}");
        assert!(
            r.contains("許可リストにありません")
                && r.contains("not on your organisation's allowlist")
        );
        assert!(r.contains("申請の方法") && r.contains("How to apply"));
        assert!(r.contains("&lt;x&gt;.example.test") && !r.contains("<x>"));
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        let a = String::from_utf8(forbidden("h", 443, "auth_required")).unwrap();
        assert!(
            a.starts_with("HTTP/1.1 407 Proxy Authentication Required\r\n"),
            "{a}"
        );
        assert!(a.contains("Proxy-Authenticate: Basic"));
    }
}
