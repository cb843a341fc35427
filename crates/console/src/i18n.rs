//! Message catalogues, Japanese and English. Every string a person reads on a page is
//! here, under one key with both languages; `tests::every_key_used_exists_in_both`
//! fails when a page uses a key that is missing or empty in either language.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The best of ja/en in an Accept-Language header (RFC 9110 12.5.4), by q value
    /// then order; English when neither is asked for.
    pub fn from_accept_language(h: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in h.split(',').take(32) {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = it
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|v| v.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            let lang = if tag == "ja" || tag.starts_with("ja-") {
                Lang::Ja
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    /// The text of `key`; a visible marker if it is missing (never a panic, and the
    /// catalogue test makes sure it does not happen).
    pub fn t(self, key: &str) -> &'static str {
        match CATALOGUE.iter().find(|(k, _, _)| *k == key) {
            Some((_, en, ja)) => match self {
                Lang::En => en,
                Lang::Ja => ja,
            },
            None => "[missing text]",
        }
    }
}

/// (key, English, Japanese)
pub const CATALOGUE: &[(&str, &str, &str)] = &[
    ("app.name", "dodvpn console", "dodvpn コンソール"),
    ("nav.skip", "Skip to content", "本文へ移動"),
    ("nav.label", "Main", "メイン"),
    ("nav.overview", "Overview", "概要"),
    ("nav.orgs", "Organisations and users", "組織と利用者"),
    ("nav.devices", "Devices", "機器"),
    ("nav.sessions", "Live sessions", "接続中のセッション"),
    ("nav.approvals", "Approvals", "承認"),
    ("nav.audit", "Audit", "監査ログ"),
    ("nav.ledger", "Ledger", "接続台帳"),
    ("nav.grants", "Grants", "接続許可"),
    ("col.agent", "Agent version (system)", "エージェントのバージョン（OS）"),
    ("ov.more", "More on the Devices page", "ほかは機器画面で"),
    ("dev.pages", "Pages of devices", "機器一覧のページ"),
    ("dev.page", "Page", "ページ"),
    ("dev.prev", "Previous 100", "前の100件"),
    ("dev.next", "Next 100", "次の100件"),
    ("nav.policy", "Policy", "ポリシー"),
    ("col.device", "Device", "機器"),
    ("nav.gateway", "Internet gateway", "インターネットゲートウェイ"),
    ("gw.apply", "Ask for a site", "サイトの利用を申請"),
    ("gw.entry", "Site", "サイト"),
    ("gw.entry_hint", "A host (updates.example.jp), a domain with its subdomains (*.example.jp), a port (:8443), or for plain HTTP a URL prefix (http://example.jp/path).", "ホスト（updates.example.jp）、サブドメインを含むドメイン（*.example.jp）、ポート（:8443）、平文 HTTP なら URL の前方一致（http://example.jp/path）。"),
    ("gw.reason", "Why the work needs it", "業務上の必要性"),
    ("gw.apply_submit", "Send the application", "申請する"),
    ("gw.applications", "Applications and approved sites", "申請と承認済みサイト"),
    ("gw.applicant", "Asked by", "申請者"),
    ("gw.expires", "Approved until", "承認期限"),
    ("gw.days", "Days approved", "承認日数"),
    ("gw.approve", "Approve", "承認"),
    ("gw.refuse", "Refuse", "却下"),
    ("gw.withdraw", "Withdraw", "取り消し"),
    ("gw.withdraw_confirm", "Withdraw this site? The gateway blocks it at once.", "このサイトの承認を取り消しますか？ゲートウェイは直ちに遮断します。"),
    ("gw.pending", "waiting for a decision", "審査待ち"),
    ("gw.approved", "approved", "承認済み"),
    ("gw.refused", "refused", "却下"),
    ("gw.withdrawn", "withdrawn", "取り消し済み"),
    ("gw.expired", "expired", "期限切れ"),
    ("gw.bad_days", "Approve for 1 to 366 days.", "承認日数は1〜366日で指定してください。"),
    ("gw.log", "Recent requests through the gateway", "ゲートウェイ経由の最近の通信"),
    ("gw.when", "When", "日時"),
    ("gw.user", "User", "利用者"),
    ("gw.request", "Request", "要求"),
    ("gw.bytes", "Bytes up / down", "送信 / 受信バイト"),
    ("gw.verdict", "Verdict", "判定"),
    ("gr.title", "Grant", "接続許可"),
    ("gr.active", "Live grants", "有効な接続許可"),
    ("gr.refused", "Refused connection applications (last 7 days)", "拒否された接続申請（過去7日間）"),
    ("gr.applicant", "Applicant device", "申請側機器"),
    ("gr.target", "Target device", "接続先機器"),
    ("gr.version", "Version", "版"),
    ("gr.until", "Valid until", "有効期限"),
    ("gr.role", "Role", "役割"),
    ("gr.local", "This end", "この端"),
    ("gr.peer", "Peer and its IKE identity", "相手とその IKE ID"),
    ("gr.peer_endpoint", "Peer address", "相手のアドレス"),
    ("gr.selectors", "Traffic selectors (local ⇄ remote)", "トラフィックセレクタ（自側 ⇄ 相手側）"),
    ("gr.services", "Services", "サービス"),
    ("gr.hosts", "Target hosts", "接続先ホスト"),
    ("gr.proposals", "Proposals", "暗号方式"),
    ("gr.issued", "Issued", "発行"),
    ("gr.signed", "Signed connection info (as pushed)", "署名付き接続情報（配信されたもの）"),
    ("gr.applicant_info", "Applicant's connection info", "申請側の接続情報"),
    ("gr.target_info", "Target's connection info", "接続先の接続情報"),
    ("gr.withdraw", "Withdraw this grant", "この接続許可を取り消す"),
    ("gr.withdraw_confirm", "Withdraw this grant? Both ends drop its tunnels now.", "この接続許可を取り消しますか？両端のトンネルは直ちに切断されます。"),
    ("pol.document", "Subscriber policy (JSON)", "加入者ポリシー（JSON）"),
    ("pol.help", "inbound: whom you accept, to which hosts and services, when, and whether each session needs your approval; outbound: whom your devices may reach. Nothing is allowed unless a rule allows it.", "inbound：受け入れる相手・ホスト・サービス・時間帯、セッションごとの承認の要否。outbound：自組織の機器の接続先。規則で許可しない限り何も許可されません。"),
    ("pol.dry_run", "Dry run", "試行（保存しない）"),
    ("pol.save", "Save", "保存"),
    ("pol.save_confirm", "Save this policy? Live grants are re-evaluated now.", "このポリシーを保存しますか？有効な接続許可は直ちに再評価されます。"),
    ("pol.saved", "Policy saved; live grants were re-evaluated.", "ポリシーを保存し、有効な接続許可を再評価しました。"),
    ("pol.invalid", "The policy was refused:", "ポリシーは受け付けられませんでした："),
    ("pol.json_at", "not valid JSON at line:column", "JSON として不正です（行:列）"),
    ("pol.dry_run_title", "Dry run: what saving would do", "試行結果：保存した場合の変化"),
    ("pol.dry_run_note", "Nothing was saved.", "何も保存していません。"),
    ("pol.unchanged", "Grants unchanged", "変化のない接続許可"),
    ("pol.added", "Would be granted (applications refused in the last 7 days)", "新たに許可される申請（過去7日間に拒否されたもの）"),
    ("pol.narrowed", "Would be narrowed", "縮小される接続許可"),
    ("pol.widened", "Would be widened", "拡大される接続許可"),
    ("pol.changed", "Would change", "変更される接続許可"),
    ("pol.withdrawn", "Would be withdrawn", "取り消される接続許可"),
    ("ledger.through", "Connections through DOD-VPN", "DOD-VPN 経由の接続"),
    ("ledger.outside", "Connections outside DOD-VPN (bring them in)", "DOD-VPN 外の接続（移行を推奨）"),
    ("ledger.equipment", "Equipment", "機器台帳"),
    ("ledger.diagram", "Network diagram", "ネットワーク構成図"),
    ("ledger.diagram_alt", "Network diagram of the organisation's connections", "この組織の接続のネットワーク構成図"),
    ("ledger.sheets", "Security check sheets", "セキュリティチェックシート"),
    ("ledger.report", "Download the inspector's report (PDF)", "提出用報告書（PDF）をダウンロード"),
    ("ledger.choose", "Choose an organisation", "組織を選択してください"),
    ("ledger.overdue", "review overdue", "確認期限切れ"),
    ("ledger.none", "None", "なし"),
    ("ledger.add_row", "Add a row", "行を追加"),
    ("ledger.edit", "Edit", "編集"),
    ("ledger.save", "Save", "保存"),
    ("ledger.delete", "Delete this row", "この行を削除"),
    ("ledger.back", "Back to the ledger", "台帳に戻る"),
    ("ledger.bad_row", "The row was not saved", "行を保存できませんでした"),
    ("ledger.changed", "Someone changed this table since you opened the form; nothing was saved. Open it again.", "フォームを開いた後に他の人がこの表を変更したため、保存していません。もう一度開いてください。"),
    ("ledger.id_taken", "Another row already has this ID", "この ID の行がすでにあります"),
    ("ledger.answer", "Answer a sheet", "チェックシートに回答"),
    ("field.id", "ID", "管理番号"),
    ("field.kind", "Kind", "種別"),
    ("field.contractor", "Contractor", "契約先"),
    ("field.contract_ref", "Contract reference", "契約番号"),
    ("field.device_model", "Device model", "機種"),
    ("field.firmware", "Firmware version", "ファームウェア版"),
    ("field.terminates_at", "Terminates at", "終端場所"),
    ("field.responsible", "Responsible person", "責任者"),
    ("field.last_reviewed", "Last reviewed", "最終確認日"),
    ("field.addresses", "Public addresses (space separated)", "公開アドレス（空白区切り）"),
    ("field.category", "Category", "区分"),
    ("field.name", "Name", "名称"),
    ("field.location", "Location", "設置場所"),
    ("field.owner", "Owner", "管理者"),
    ("field.model", "Model", "機種"),
    ("field.os_version", "OS or firmware version", "OS・ファームウェア版"),
    ("field.remote_maintenance", "Remote maintenance", "リモート保守"),
    ("field.vendor", "Vendor", "保守事業者"),
    ("answer.yes", "Yes", "はい"),
    ("answer.no", "No", "いいえ"),
    ("answer.na", "Not applicable", "該当なし"),
    ("col.item", "Item", "項目"),
    ("col.criterion", "Criterion", "基準"),
    ("col.answer", "Answer", "回答"),
    ("col.note", "Evidence note", "根拠・メモ"),
    ("sheet.services", "Services this organisation uses or provides (they decide the ▲ items)", "この組織が利用・提供するサービス（▲項目の対象を決めます）"),
    ("sheet.services_list", "Services, comma separated", "サービス（カンマ区切り）"),
    ("sheet.apply_services", "Show the items for these services", "このサービスの項目を表示"),
    ("sheet.submit", "Submit the answers", "回答を提出"),
    ("sheet.unknown_service", "Unknown service", "不明なサービスです"),
    ("col.peer", "Peer", "接続先"),
    ("col.services", "Services", "サービス"),
    ("col.since", "Since", "開始"),
    ("col.contractor", "Contractor", "契約先"),
    ("col.reviewed", "Last reviewed", "最終確認日"),
    ("col.location", "Location", "設置場所"),
    ("col.sheet", "Sheet", "シート"),
    ("col.score", "Score", "得点"),
    ("col.row", "Ledger row", "台帳の行"),
    ("col.purpose", "Purpose", "目的"),
    ("col.address", "Address", "アドレス"),
    ("col.severity", "Severity", "重大度"),
    ("col.finding", "Finding", "指摘"),
    ("col.addresses", "Public addresses", "公開アドレス"),
    ("ledger.exposure", "Exposure diagnosis (what the Internet sees)", "外部からの診断（インターネットから見えるもの）"),
    ("ledger.exposure_none", "No exposure diagnosis has been run.", "外部からの診断はまだ実施されていません。"),
    ("ledger.not_in_ledger", "not in the ledger", "台帳にない"),
    ("ledger.new", "new", "新規"),
    ("ledger.unchanged", "unchanged", "継続"),
    ("nav.logout", "Log out", "ログアウト"),
    ("role.provider_admin", "provider admin", "事業者管理者"),
    ("role.provider_operator", "provider operator", "事業者運用者"),
    ("role.auditor", "auditor", "監査人"),
    ("role.device_provider", "device provider", "機器提供者"),
    ("role.org_admin", "organisation admin", "組織管理者"),
    ("role.org_approver", "organisation approver", "組織承認者"),
    ("err.not_found", "Not found.", "見つかりません。"),
    ("err.forbidden", "Your role may not do this.", "この操作はあなたの役割では許可されていません。"),
    ("err.internal", "The centre could not answer. Try again later.", "センターが応答できませんでした。しばらくしてから再度お試しください。"),
    ("err.unavailable", "The centre is unavailable or read-only.", "センターは利用できないか、読み取り専用です。"),
    ("err.expired", "Your session has ended. Please log in again.", "セッションが終了しました。再度ログインしてください。"),
    ("err.csrf", "This form is not valid any more (missing or wrong security token). Reload the page and try again.", "このフォームは無効です（セキュリティトークンがないか誤っています）。ページを再読み込みしてやり直してください。"),
    ("err.too_large", "The form is too large.", "フォームが大きすぎます。"),
    ("err.not_a_form", "This is not a form submission.", "フォームの送信ではありません。"),
    ("err.bad_form", "Some fields are missing or invalid.", "入力項目が不足しているか、正しくありません。"),
    ("err.refused", "The centre refused this.", "センターがこの操作を拒否しました。"),
    ("err.reason", "Give a reason of 1 to 256 printable characters.", "理由を1〜256文字（制御文字なし）で入力してください。"),
    ("unit.seconds", "s", "秒"),
    ("login.title", "Log in", "ログイン"),
    ("login.username", "User name", "ユーザー名"),
    ("login.password", "Password", "パスワード"),
    ("login.submit", "Next", "次へ"),
    ("login.wrong", "Wrong user name or password.", "ユーザー名またはパスワードが違います。"),
    ("login.locked", "Too many failed attempts: this account is locked for a while.", "失敗が続いたため、このアカウントは一時的にロックされています。"),
    ("login.expired", "Your session has ended. Please log in again.", "セッションが終了しました。再度ログインしてください。"),
    ("login2.title", "Second factor", "二要素認証"),
    ("login2.code", "Code from your authenticator app, or a recovery code", "認証アプリのコード、またはリカバリーコード"),
    ("login2.hint", "Six digits, changing every 30 seconds.", "30秒ごとに変わる6桁の数字です。"),
    ("login2.submit", "Log in", "ログイン"),
    ("login2.wrong", "That code is not right.", "コードが正しくありません。"),
    ("login2.replayed", "That code has already been used. Wait for the next one.", "このコードは使用済みです。次のコードをお待ちください。"),
    ("setup.link", "Have an invitation code? Create your account", "招待コードをお持ちの方：アカウント作成"),
    ("setup.title", "Create your account", "アカウントの作成"),
    ("setup.intro", "Enter the one-time invitation code you were given, choose a user name and a password.", "受け取った一回限りの招待コードを入力し、ユーザー名とパスワードを決めてください。"),
    ("setup.code", "Invitation code", "招待コード"),
    ("setup.min", "at least", "最低文字数"),
    ("setup.again", "Password again", "パスワード（確認）"),
    ("setup.submit", "Create account", "アカウントを作成"),
    ("setup.bad_username", "A user name is 3 to 64 characters: letters, digits, . _ - @.", "ユーザー名は3〜64文字（英数字と . _ - @）です。"),
    ("setup.too_short", "The password is too short.", "パスワードが短すぎます。"),
    ("setup.too_long", "The password is too long (at most 256 characters).", "パスワードが長すぎます（256文字まで）。"),
    ("setup.mismatch", "The two passwords differ.", "2つのパスワードが一致しません。"),
    ("setup.bad_code", "This invitation code is unknown, used or expired.", "この招待コードは無効、使用済み、または期限切れです。"),
    ("setup.taken", "This user name is taken.", "このユーザー名は使用されています。"),
    ("factors.title", "Your second factor", "二要素認証の設定"),
    ("factors.intro", "Your account exists. Add this secret to your authenticator app and keep the recovery codes somewhere safe: they are shown only now.", "アカウントを作成しました。この秘密鍵を認証アプリに登録し、リカバリーコードを安全な場所に保管してください。表示は今回限りです。"),
    ("factors.totp", "Authenticator app (TOTP)", "認証アプリ（TOTP）"),
    ("factors.secret", "Secret:", "秘密鍵："),
    ("factors.uri", "Or import this link:", "またはこのリンクを取り込む："),
    ("factors.recovery", "Recovery codes", "リカバリーコード"),
    ("factors.to_login", "Log in now", "ログインする"),
    ("ov.expiring", "Certificates expiring within 30 days", "30日以内に期限切れとなる証明書"),
    ("ov.offline", "Devices in service but offline", "運用中でオフラインの機器"),
    ("ov.pending", "Pending applications and confirmations", "未処理の申請・確認"),
    ("ov.windows", "Maintenance windows open now", "現在開いている保守時間枠"),
    ("ov.none", "None.", "ありません。"),
    ("orgs.orgs", "Organisations", "組織"),
    ("orgs.users", "Console users", "コンソール利用者"),
    ("orgs.provider", "(provider)", "（事業者）"),
    ("orgs.enabled", "enabled", "有効"),
    ("orgs.disabled", "disabled", "無効"),
    ("orgs.disable", "Disable", "無効にする"),
    ("orgs.disable_confirm", "Disable this user and end its sessions?", "この利用者を無効にし、セッションを終了しますか？"),
    ("orgs.invite", "Invite a user", "利用者を招待"),
    ("orgs.invite_submit", "Create invitation", "招待コードを発行"),
    ("orgs.invite_done", "Give this one-time code to the new user (valid 3 days, shown only now):", "この一回限りのコードを新しい利用者に渡してください（有効期間3日、表示は今回限り）："),
    ("orgs.bad_scope", "You may not give this role in this organisation.", "この組織でこの役割を付与することはできません。"),
    ("account.title", "Your account", "あなたのアカウント"),
    ("passkey.title", "Passkeys", "パスキー"),
    ("passkey.intro", "A passkey on this computer, a phone or a security key logs you in without a password or code: the device asks for its PIN or your fingerprint.", "このコンピューター、スマートフォン、セキュリティキーのパスキーがあれば、パスワードやコードなしでログインできます。端末が PIN または指紋を確認します。"),
    ("passkey.last_used", "Last used", "最終使用"),
    ("passkey.name", "Name of the new passkey", "新しいパスキーの名前"),
    ("passkey.default_name", "My passkey", "マイパスキー"),
    ("passkey.add", "Add a passkey", "パスキーを追加"),
    ("passkey.remove", "Remove", "削除"),
    ("passkey.remove_confirm", "Remove this passkey? It will no longer log you in.", "このパスキーを削除しますか？以後このパスキーではログインできません。"),
    ("passkey.failed", "The passkey did not work:", "パスキーを使用できませんでした："),
    ("passkey.login_title", "Or log in with a passkey", "またはパスキーでログイン"),
    ("passkey.login", "Log in with a passkey", "パスキーでログイン"),
    ("passkey.username", "User name for the passkey", "パスキーのユーザー名"),
    ("passkey.wrong_host", "Passkeys work only when the console is opened under the centre's DNS name (not an IP address).", "パスキーは、コンソールをセンターの DNS 名（IP アドレスではなく）で開いた場合のみ使用できます。"),
    ("passkey.no_ceremony", "This passkey request has expired or was already used. Try again.", "このパスキー要求は期限切れか使用済みです。もう一度お試しください。"),
    ("passkey.not_verified", "The passkey's answer could not be verified.", "パスキーの応答を検証できませんでした。"),
    ("passkey.too_many", "This account already has the most passkeys allowed (10).", "このアカウントには上限（10個）のパスキーが登録済みです。"),
    ("passkey.none", "No passkey is registered for this user name.", "このユーザー名にはパスキーが登録されていません。"),
    ("passkey.bad_name", "Give the passkey a name of 1 to 64 characters.", "パスキーの名前は1〜64文字で指定してください。"),
    ("account.recovery", "Replace my recovery codes", "リカバリーコードを再発行"),
    ("account.recovery_confirm", "Your old recovery codes will stop working. Continue?", "古いリカバリーコードは使えなくなります。続けますか？"),
    ("account.recovery_done", "New recovery codes (shown only now):", "新しいリカバリーコード（表示は今回限り）："),
    ("col.id", "ID", "ID"),
    ("col.name", "Name", "名称"),
    ("col.kind", "Kind", "種別"),
    ("col.created", "Created", "作成日時"),
    ("col.role", "Role", "役割"),
    ("col.org", "Organisation", "組織"),
    ("col.state", "State", "状態"),
    ("col.action", "Action", "操作"),
    ("col.serial", "Serial", "シリアル"),
    ("col.model", "Model", "型番"),
    ("col.online", "Online", "接続"),
    ("col.cert_expiry", "Certificate expiry", "証明書の有効期限"),
    ("col.last_seen", "Last seen", "最終確認"),
    ("col.groups", "Groups", "グループ"),
    ("col.tier", "Tier", "階層"),
    ("col.reason", "Reason", "理由"),
    ("dev.title", "Device", "機器"),
    ("dev.online", "online", "オンライン"),
    ("dev.offline", "offline", "オフライン"),
    ("dev.certs", "Certificates", "証明書"),
    ("dev.valid", "valid", "有効"),
    ("dev.revoked", "revoked", "失効"),
    ("dev.revoke", "Revoke this device", "この機器を失効させる"),
    ("dev.revoke_check", "I understand: its certificates are revoked and its tunnels cut at once.", "証明書が失効し、トンネルが直ちに切断されることを理解しました。"),
    ("dev.revoke_confirm", "Revoke this device now? This cannot be undone.", "この機器を今すぐ失効させますか？元に戻せません。"),
    ("dev.revoke_unconfirmed", "Tick the confirmation box to revoke.", "失効させるには確認欄にチェックしてください。"),
    ("ses.live", "Live: updated as sessions change.", "ライブ更新中"),
    ("ses.lost", "Live updates interrupted; reconnecting.", "ライブ更新が中断しました。再接続しています。"),
    ("ses.end_a", "End A", "端点A"),
    ("ses.end_b", "End B", "端点B"),
    ("ses.since", "Since", "開始"),
    ("ses.bytes_a", "A bytes in / out", "A 受信/送信バイト"),
    ("ses.bytes_b", "B bytes in / out", "B 受信/送信バイト"),
    ("ses.none", "No live sessions.", "接続中のセッションはありません。"),
    ("ses.path", "Path", "経路"),
    ("ses.direct", "direct", "直接"),
    ("ses.relay", "through the relay", "リレー経由"),
    ("ses.cut", "Cut", "切断"),
    ("ses.cut_confirm", "Cut this session now? Both ends are told at once.", "このセッションを今すぐ切断しますか？両端に直ちに通知されます。"),
    ("ap.approver", "Approver", "承認組織"),
    ("ap.applicant", "Applicant", "申請組織"),
    ("ap.from", "From", "開始"),
    ("ap.until", "Until", "終了"),
    ("ap.open", "open", "開"),
    ("ap.closed", "closed", "閉"),
    ("ap.close", "Close now", "今すぐ閉じる"),
    ("ap.open_title", "Open a maintenance window", "保守時間枠を開く"),
    ("ap.device", "Only this device of the applicant (optional)", "申請組織のこの機器のみ（任意）"),
    ("ap.minutes", "Minutes open (1–1440)", "開いておく時間（分、1〜1440）"),
    ("ap.open_submit", "Open window", "時間枠を開く"),
    ("ap.bad_window", "Give the applicant organisation, and either 1 to 1440 minutes or a start and an end (at most 24 hours).", "申請組織と、1〜1440分または開始・終了時刻（最長24時間）を指定してください。"),
    ("ap.waiting", "Waiting for a window", "時間枠待ちの申請"),
    ("ap.applicant_device", "Applicant device", "申請機器"),
    ("ap.target", "Asked to reach", "接続先"),
    ("ap.asked", "Last asked", "最終申請"),
    ("ap.open_for", "Open a window", "時間枠を開く"),
    ("ap.start", "Start (empty: now)", "開始（空欄なら今）"),
    ("ap.end", "End (empty: start + minutes)", "終了（空欄なら開始＋分数）"),
    ("ap.times_hint", "Times are in your browser's time zone. A window lasts at most 24 hours and may start up to 90 days ahead.", "時刻はブラウザのタイムゾーンです。時間枠は最長24時間、90日先まで予約できます。"),
    ("ap.host", "Contracted host (empty: as your policy allows)", "契約ホスト（空欄ならポリシーの範囲）"),
    ("ap.service", "Contracted service, e.g. tcp/22 (empty: as your policy allows)", "契約サービス（例 tcp/22、空欄ならポリシーの範囲）"),
    ("ap.windows", "Windows", "時間枠"),
    ("ap.contract", "Contracted host and port", "契約ホスト・ポート"),
    ("ap.contract_any", "as the policy allows", "ポリシーの範囲"),
    ("ap.scheduled", "scheduled", "予約済み"),
    ("ap.warned", "applicant warned of the end", "終了予告済み"),
    ("ap.close_confirm", "Close this window now? Sessions it allows are cut.", "この時間枠を今すぐ閉じますか？許可されたセッションは切断されます。"),
    ("audit.chain_ok", "The hash chain verifies.", "ハッシュチェーンは検証に成功しました。"),
    ("audit.chain_bad", "The hash chain does NOT verify:", "ハッシュチェーンの検証に失敗しました："),
    ("audit.type", "Type", "種別"),
    ("audit.device", "Device", "機器"),
    ("audit.from", "From (date)", "開始日"),
    ("audit.to", "To (date)", "終了日"),
    ("audit.filter", "Filter", "絞り込み"),
    ("audit.export", "Export (JSON lines)", "エクスポート（JSON Lines）"),
    ("audit.records", "records", "件"),
    ("audit.time", "Time", "日時"),
    ("audit.actor", "Who", "実行者"),
    ("audit.subject", "Subject", "対象"),
    ("audit.change", "Change (before → after)", "変更内容（前 → 後）"),
    ("audit.bad_date", "Dates are YYYY-MM-DD.", "日付は YYYY-MM-DD 形式です。"),
    ("audit.checkpoint", "Newest signed checkpoint, size", "最新の署名済みチェックポイント（件数）"),
    ("audit.cosignatures", "device cosignatures", "件の装置による連署"),
    ("audit.witnessed", "witnessed", "証人による確認済み"),
    ("audit.witness_alerts", "Devices found the log inconsistent with a checkpoint they kept", "装置が保存済みチェックポイントとログの不整合を検出しました"),
    ("audit.kept", "Kept size", "保存済みの件数"),
    ("audit.shown", "Shown size", "提示された件数"),
    ("audit.problem", "Problem", "問題"),
    ("audit.reports", "Reports", "報告回数"),
];

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: &[(&str, &str)] = &[
        ("pages.rs", include_str!("pages.rs")),
        ("web.rs", include_str!("web.rs")),
        ("pages/account.rs", include_str!("pages/account.rs")),
        ("pages/approvals.rs", include_str!("pages/approvals.rs")),
        ("pages/gateway.rs", include_str!("pages/gateway.rs")),
        ("pages/grants.rs", include_str!("pages/grants.rs")),
        ("pages/policy.rs", include_str!("pages/policy.rs")),
        ("pages/ledger_edit.rs", include_str!("pages/ledger_edit.rs")),
        ("passkey.rs", include_str!("passkey.rs")),
    ];

    /// Every `"section.name"` literal in the page code (section = a catalogue
    /// prefix) must be a key with non-empty English and Japanese.
    #[test]
    fn every_key_used_exists_in_both() {
        let prefixes: std::collections::BTreeSet<&str> = CATALOGUE
            .iter()
            .map(|(k, _, _)| k.split('.').next().unwrap())
            .collect();
        let mut missing = Vec::new();
        let mut used = 0;
        for (file, src) in SOURCES {
            for lit in src.split('"').skip(1).step_by(2) {
                let Some((p, rest)) = lit.split_once('.') else {
                    continue;
                };
                if !prefixes.contains(p)
                    || rest.is_empty()
                    || !rest
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    continue;
                }
                used += 1;
                match CATALOGUE.iter().find(|(k, _, _)| *k == lit) {
                    Some((_, en, ja)) if !en.trim().is_empty() && !ja.trim().is_empty() => {}
                    _ => missing.push(format!("{file}: {lit}")),
                }
            }
        }
        assert!(used > 100, "the scan found only {used} keys");
        assert!(
            missing.is_empty(),
            "keys missing from the catalogue: {missing:?}"
        );
    }

    #[test]
    fn keys_are_unique_and_sentences_translated() {
        let mut seen = std::collections::HashSet::new();
        for (k, en, ja) in CATALOGUE {
            assert!(seen.insert(*k), "duplicate key {k}");
            assert!(!en.is_empty() && !ja.is_empty(), "{k}");
            // Identifiers such as "ID" are the same in both; sentences are not.
            if en.contains(' ') {
                assert_ne!(en, ja, "{k} is not translated");
            }
        }
        assert_eq!(Lang::Ja.t("nope"), "[missing text]");
    }

    #[test]
    fn accept_language_picks_by_q() {
        assert_eq!(
            Lang::from_accept_language("ja-JP,ja;q=0.9,en;q=0.8"),
            Lang::Ja
        );
        assert_eq!(Lang::from_accept_language("en-US,ja;q=0.5"), Lang::En);
        assert_eq!(Lang::from_accept_language("fr, ja;q=0.1"), Lang::Ja);
        assert_eq!(Lang::from_accept_language("de"), Lang::En);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
        assert_eq!(Lang::from_accept_language("ja;q=0"), Lang::En);
    }
}
