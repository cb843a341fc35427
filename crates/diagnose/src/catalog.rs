//! Every check's severity, title and recommendation, in Japanese and English.

use crate::Severity;

pub struct Entry {
    pub id: &'static str,
    pub severity: Severity,
    pub title_en: &'static str,
    pub title_ja: &'static str,
    pub rec_en: &'static str,
    pub rec_ja: &'static str,
}

const fn e(
    id: &'static str,
    severity: Severity,
    title_en: &'static str,
    title_ja: &'static str,
    rec_en: &'static str,
    rec_ja: &'static str,
) -> Entry {
    Entry {
        id,
        severity,
        title_en,
        title_ja,
        rec_en,
        rec_ja,
    }
}

use Severity::*;

pub static CHECKS: &[Entry] = &[
    e("tcp.open", Info, "TCP port open to the Internet", "インターネットに開いている TCP ポート",
      "Close the port at the firewall unless the service must be reachable from the Internet.",
      "インターネットから到達させる必要がなければファイアウォールでポートを閉じてください。"),
    e("ssh.banner", Info, "SSH server version shown", "SSH サーバのバージョンが表示されている",
      "Allow SSH only from known addresses, use keys, keep the server updated.",
      "SSH は既知のアドレスからのみ許可し、鍵認証を使い、サーバを最新に保ってください。"),
    e("http.banner", Info, "HTTP server software and page title shown", "HTTP サーバのソフトウェアとページタイトルが表示されている",
      "Hide the version in the Server header (e.g. ServerTokens Prod) and keep the server updated.",
      "Server ヘッダからバージョンを隠し（例: ServerTokens Prod）、サーバを最新に保ってください。"),
    e("http.dir_listing", Medium, "HTTP directory listing enabled", "HTTP のディレクトリ一覧が有効",
      "Disable automatic directory indexes (e.g. Options -Indexes) and remove files not meant to be public.",
      "ディレクトリ一覧の自動表示を無効にし（例: Options -Indexes）、公開不要なファイルを削除してください。"),
    e("http.vpn_login", High, "Login page of a VPN or remote-maintenance appliance exposed", "VPN・リモート保守機器のログイン画面が公開されている",
      "Check the appliance's firmware against the vendor's advisories, update it, and allow the login page only from known addresses.",
      "ベンダの脆弱性情報とファームウェアを照合して更新し、ログイン画面は既知のアドレスからのみ許可してください。"),
    e("ftp.banner", Info, "FTP server version shown", "FTP サーバのバージョンが表示されている",
      "Prefer SFTP; if FTP must stay, hide the version and keep the server updated.",
      "SFTP への移行を検討し、FTP を残す場合はバージョンを隠してサーバを最新に保ってください。"),
    e("ftp.anonymous", High, "Anonymous FTP login allowed", "匿名 FTP ログインが可能",
      "Disable anonymous login (vsftpd: anonymous_enable=NO) unless it is a deliberate public archive.",
      "意図した公開アーカイブでなければ匿名ログインを無効にしてください（vsftpd: anonymous_enable=NO）。"),
    e("ftp.anonymous_writable", Critical, "Anonymous FTP listing shows world-writable directories", "匿名 FTP の一覧に誰でも書き込めるディレクトリがある",
      "Remove write permission for anonymous users at once and check the directory for planted files.",
      "匿名ユーザの書き込み権限を直ちに外し、置かれたファイルがないか確認してください。"),
    e("smtp.banner", Info, "SMTP server banner shown", "SMTP サーバのバナーが表示されている",
      "Hide the software and version in the greeting; make sure the server is not an open relay.",
      "挨拶文からソフトウェア名とバージョンを隠し、オープンリレーでないことを確認してください。"),
    e("proxy.http_get", High, "Open HTTP proxy: forwards GET to another host", "オープン HTTP プロキシ: 他のホストへの GET を中継する",
      "Allow the proxy only for your own clients (e.g. squid http_access deny all for others) or close the port.",
      "プロキシは自組織の利用者のみに許可し（例: squid の http_access で他を拒否）、不要ならポートを閉じてください。"),
    e("proxy.http_connect", High, "Open HTTP proxy: CONNECT tunnels to another host", "オープン HTTP プロキシ: 他のホストへの CONNECT トンネルを許す",
      "Refuse CONNECT from outside, and to any port but 443 from inside.",
      "外部からの CONNECT を拒否し、内部からも 443 以外への CONNECT を禁止してください。"),
    e("dns.version", Low, "DNS server version disclosed (version.bind)", "DNS サーバのバージョンが開示されている（version.bind）",
      "Hide the version (BIND: options { version \"none\"; };) and keep the server updated.",
      "バージョンを隠し（BIND: options { version \"none\"; };）、サーバを最新に保ってください。"),
    e("dns.recursion", High, "Open DNS resolver: recursion offered to anyone", "オープンリゾルバ: 誰にでも再帰問い合わせを提供している",
      "Offer recursion only to your own networks (BIND: allow-recursion { trusted; };); it is used for amplification attacks.",
      "再帰問い合わせは自組織のネットワークのみに許可してください（BIND: allow-recursion）。DNS 増幅攻撃に悪用されます。"),
    e("dns.axfr", High, "DNS zone transfer (AXFR) allowed to anyone", "誰でも DNS ゾーン転送（AXFR）ができる",
      "Allow zone transfers only to your secondary servers (BIND: allow-transfer { secondaries; };).",
      "ゾーン転送はセカンダリサーバのみに許可してください（BIND: allow-transfer）。"),
    e("echo.tcp", Medium, "echo service open", "echo サービスが開いている",
      "Disable echo (inetd/xinetd); it has no use on the Internet and can be abused for loops.",
      "echo を無効にしてください（inetd/xinetd）。インターネット上では不要で、ループ攻撃に悪用されます。"),
    e("chargen.tcp", Medium, "chargen service open", "chargen サービスが開いている",
      "Disable chargen (inetd/xinetd); it can be abused to flood others.",
      "chargen を無効にしてください（inetd/xinetd）。他者への大量送信に悪用されます。"),
    e("daytime.tcp", Low, "daytime service open", "daytime サービスが開いている",
      "Disable daytime (inetd/xinetd); use NTP where time is needed.",
      "daytime を無効にしてください（inetd/xinetd）。時刻が必要なら NTP を使ってください。"),
    e("echo.udp", Medium, "UDP echo service open", "UDP の echo サービスが開いている",
      "Disable echo (inetd/xinetd); over UDP it reflects spoofed traffic and can loop with chargen.",
      "echo を無効にしてください（inetd/xinetd）。UDP では送信元を偽装した攻撃の反射に悪用されます。"),
    e("chargen.udp", High, "UDP chargen service open (amplifier)", "UDP の chargen サービスが開いている（増幅攻撃の踏み台）",
      "Disable chargen at once; over UDP it answers one small datagram with a large one and is used in amplification attacks.",
      "chargen を直ちに無効にしてください。UDP では小さな要求に大きな応答を返し、増幅攻撃に悪用されます。"),
    e("daytime.udp", Low, "UDP daytime service open", "UDP の daytime サービスが開いている",
      "Disable daytime (inetd/xinetd); use NTP where time is needed.",
      "daytime を無効にしてください（inetd/xinetd）。時刻が必要なら NTP を使ってください。"),
    e("snmp.public", High, "SNMP answers to the community \"public\"", "SNMP がコミュニティ名 \"public\" に応答する",
      "Remove the public community, use SNMPv3 with authentication, and allow SNMP only from the management network.",
      "public コミュニティを削除し、認証付きの SNMPv3 を使い、SNMP は管理ネットワークからのみ許可してください。"),
    e("socks.open", High, "Open SOCKS proxy: connects anyone to another host without authentication", "オープン SOCKS プロキシ: 認証なしで誰でも他のホストへ接続できる",
      "Require authentication and allow only your own clients (dante: client/socks pass rules for your networks only), or close the port.",
      "認証を必須にし、自組織の利用者のみに許可してください（dante: client/socks pass を自組織のネットワークに限定）。不要ならポートを閉じてください。"),
    e("icmp.timestamp", Low, "ICMP timestamp answered", "ICMP タイムスタンプ要求に応答する",
      "Drop ICMP timestamp requests (type 13) at the edge; they disclose the host's clock.",
      "境界で ICMP タイムスタンプ要求（タイプ 13）を破棄してください。ホストの時刻が漏れます。"),
    e("tls.cert_expired", Medium, "TLS certificate expired", "TLS 証明書の有効期限が切れている",
      "Renew the certificate; an expired one trains users to click through warnings.",
      "証明書を更新してください。期限切れの証明書は利用者に警告を無視する習慣をつけさせます。"),
    e("tls.cert_self_signed", Medium, "TLS certificate is self-signed", "TLS 証明書が自己署名",
      "Use a certificate from a CA the clients trust (a public CA, or the provider's CA for members).",
      "利用者が信頼する認証局の証明書（公的 CA、または会員向けには提供者の CA）を使ってください。"),
    e("tls.weak_cipher", High, "Weak TLS cipher suite accepted", "脆弱な TLS 暗号スイートを受け入れる",
      "Offer only AEAD suites with forward secrecy (ECDHE with AES-GCM or ChaCha20-Poly1305); disable NULL, anonymous, EXPORT, RC4, DES and 3DES.",
      "前方秘匿性のある AEAD 暗号スイート（ECDHE と AES-GCM または ChaCha20-Poly1305）のみを提供し、NULL・匿名・EXPORT・RC4・DES・3DES を無効にしてください。"),
    e("tls.v1_0", Medium, "TLS 1.0 offered", "TLS 1.0 が使える",
      "Offer TLS 1.2 and 1.3 only (MHLW guideline; TLS 1.0/1.1 are deprecated by RFC 8996).",
      "TLS 1.2 と 1.3 のみを提供してください（厚労省ガイドライン、RFC 8996 で TLS 1.0/1.1 は廃止）。"),
    e("tls.v1_1", Medium, "TLS 1.1 offered", "TLS 1.1 が使える",
      "Offer TLS 1.2 and 1.3 only (RFC 8996).",
      "TLS 1.2 と 1.3 のみを提供してください（RFC 8996）。"),
    e("rdp.exposed", High, "Remote Desktop (RDP) exposed", "リモートデスクトップ（RDP）が公開されている",
      "Never expose RDP to the Internet: reach it through the VPN only.",
      "RDP をインターネットに公開せず、VPN 経由でのみ接続してください。"),
    e("vnc.exposed", High, "VNC exposed", "VNC が公開されている",
      "Never expose VNC to the Internet: reach it through the VPN only.",
      "VNC をインターネットに公開せず、VPN 経由でのみ接続してください。"),
    e("telnet.exposed", High, "telnet exposed (clear-text logins)", "telnet が公開されている（平文ログイン）",
      "Disable telnet; use SSH from known addresses or the VPN.",
      "telnet を無効にし、既知のアドレスまたは VPN 経由の SSH を使ってください。"),
    e("smb.exposed", High, "SMB file sharing exposed", "SMB ファイル共有が公開されている",
      "Block SMB (TCP 139/445) at the Internet edge.",
      "SMB（TCP 139/445）をインターネット境界で遮断してください。"),
];

/// The entry of a check id; an unknown id (a bug) reads as an informational finding.
pub fn entry(id: &str) -> &'static Entry {
    CHECKS.iter().find(|e| e.id == id).unwrap_or(&CHECKS[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_complete_and_unique() {
        let mut ids = std::collections::HashSet::new();
        for e in CHECKS {
            assert!(ids.insert(e.id), "duplicate {}", e.id);
            assert!(!e.title_en.is_empty() && !e.title_ja.is_empty());
            assert!(!e.rec_en.is_empty() && !e.rec_ja.is_empty());
            assert!(e.rec_ja.chars().count() <= 1024 && e.rec_en.len() <= 1024);
        }
    }
}
