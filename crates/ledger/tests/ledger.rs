//! CSV round trips through the encodings Excel writes, bad files are named by line and
//! column, and the diagram's DOT is what Graphviz draws.

use dodvpn_ledger::*;
use proptest::prelude::*;

fn equipment(id: &str, name: &str) -> Equipment {
    Equipment {
        id: id.into(),
        category: EquipmentCategory::Network,
        name: name.into(),
        location: "サーバ室 B1".into(),
        owner: "情報システム課".into(),
        model: "RTX1210".into(),
        os_version: "Rev.14.01.42".into(),
        remote_maintenance: true,
        vendor: "給食サービス株式会社".into(),
        last_reviewed: Date::parse("2026-04-01").unwrap(),
        addresses: vec![],
    }
}

fn external(id: &str) -> External {
    External {
        id: id.into(),
        kind: ExternalKind::VendorVpn,
        contractor: "給食サービス株式会社".into(),
        contract_ref: "K-2019-07".into(),
        device_model: "VPN-BOX 3000".into(),
        firmware: "2.1.0".into(),
        terminates_at: "栄養科 端末室".into(),
        responsible: "山田".into(),
        last_reviewed: Date::parse("2024-11-30").unwrap(),
        addresses: vec![
            "203.0.113.7".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        ],
    }
}

#[test]
fn export_is_utf8_with_bom_and_a_bilingual_header() {
    let csv = to_csv(&[equipment("EQ-1", "コアスイッチ")]);
    assert!(csv.starts_with(b"\xEF\xBB\xBF"), "Excel needs the BOM");
    let text = String::from_utf8(csv[3..].to_vec()).unwrap();
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with("管理番号 (id),区分 (category),名称 (name)"),
        "{header}"
    );
    assert!(text.contains("\r\n"));
}

#[test]
fn csv_round_trips_through_utf8_bom_plain_utf8_and_shift_jis() {
    let rows = vec![
        equipment("EQ-1", "コアスイッチ"),
        equipment("EQ-2", "電子カルテ端末, 3F \"東\""),
    ];
    let exported = to_csv(&rows);
    assert_eq!(from_csv::<Equipment>(&exported).unwrap(), rows);
    let plain = &exported[3..];
    assert_eq!(from_csv::<Equipment>(plain).unwrap(), rows);
    let text = std::str::from_utf8(plain).unwrap();
    let (sjis, _, lossy) = encoding_rs::SHIFT_JIS.encode(text);
    assert!(!lossy);
    assert!(
        std::str::from_utf8(&sjis).is_err(),
        "the Shift_JIS bytes are not UTF-8"
    );
    assert_eq!(from_csv::<Equipment>(&sjis).unwrap(), rows);
    let ext = vec![external("X-1")];
    assert_eq!(from_csv::<External>(&to_csv(&ext)).unwrap(), ext);
    let text = String::from_utf8(to_csv(&ext)[3..].to_vec()).unwrap();
    assert!(text.contains(",公開アドレス (addresses)\r\n"), "{text}");
    assert!(text.contains(",203.0.113.7 2001:db8::7\r\n"), "{text}");
}

#[test]
fn addresses_are_checked_deduplicated_and_may_be_left_out() {
    let head = "id,kind,contractor,responsible,last_reviewed,addresses\n";
    let rows = from_csv::<External>(
        format!("{head}X-1,vendor-vpn,A,B,2026-01-01,\"203.0.113.7, 203.0.113.7、2001:DB8::1\"\n")
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        rows[0].addresses,
        [
            "203.0.113.7".parse::<std::net::IpAddr>().unwrap(),
            "2001:db8::1".parse().unwrap()
        ]
    );
    let e = from_csv::<External>(
        format!(
            "{head}X-1,vendor-vpn,A,B,2026-01-01,\nX-2,internet,A,B,2026-01-01,vpn.example.jp\n"
        )
        .as_bytes(),
    )
    .unwrap_err();
    assert_eq!((e.line, e.column), (3, Some(6)), "{e}");
    assert!(
        e.to_string().contains("vpn.example.jp") && e.to_string().contains("IP アドレス"),
        "{e}"
    );
    let many: Vec<String> = (1..=17).map(|i| format!("192.0.2.{i}")).collect();
    let e = from_csv::<External>(
        format!("{head}X-1,vendor-vpn,A,B,2026-01-01,{}\n", many.join(" ")).as_bytes(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("at most 16"), "{e}");
    // A file without the column, as exported before it existed, still reads.
    let old = "id,kind,contractor,responsible,last_reviewed\nX-1,internet,A,B,2026-01-01\n";
    assert!(from_csv::<External>(old.as_bytes()).unwrap()[0]
        .addresses
        .is_empty());
}

#[test]
fn headers_may_be_keys_or_japanese_labels_and_values_japanese_words() {
    let csv = "管理番号,種別,契約先,責任者,最終確認日\nX-9,専用線,回線事業者,佐藤,2026-01-15\n";
    let rows = from_csv::<External>(csv.as_bytes()).unwrap();
    assert_eq!(rows[0].kind, ExternalKind::LeasedLine);
    assert_eq!(rows[0].contract_ref, "");
    let eq = "id,category,name,location,owner,remote_maintenance,last_reviewed\nE,サーバ,PACS,3F,放射線科,無,2026-02-01\n";
    assert!(!from_csv::<Equipment>(eq.as_bytes()).unwrap()[0].remote_maintenance);
}

#[test]
fn a_bad_file_is_refused_whole_with_line_and_column() {
    let head = "id,kind,contractor,responsible,last_reviewed\n";
    let cases: &[(&str, u64, Option<usize>, &str)] = &[
        (
            "X-1,vendor-vpn,A,B,2026-01-01\nX-2,fax,A,B,2026-01-01\n",
            3,
            Some(2),
            "fax",
        ),
        ("X-1,vendor-vpn,A,B,2026-02-30\n", 2, Some(5), "2026-02-30"),
        ("X-1,vendor-vpn,,B,2026-01-01\n", 2, Some(3), "required"),
        (
            "X-1,vendor-vpn,A,B,2026-01-01\nX-1,internet,C,D,2026-01-01\n",
            3,
            Some(1),
            "line 2",
        ),
        ("X-1,vendor-vpn,A,B\n", 2, None, "4 cells"),
        ("X-1,vendor-vpn,A,B,2026-01-01,extra\n", 2, None, "6 cells"),
    ];
    for (body, line, column, needle) in cases {
        let e = from_csv::<External>(format!("{head}{body}").as_bytes()).unwrap_err();
        assert_eq!((e.line, e.column), (*line, *column), "{body}: {e}");
        let shown = e.to_string();
        assert!(shown.contains(needle) && shown.contains("行目"), "{shown}");
    }
    let e = from_csv::<External>(b"id,colour\nX,red\n").unwrap_err();
    assert_eq!((e.line, e.column), (1, Some(2)));
    let e = from_csv::<External>(b"id,kind\n\xfd\xfe\x81\x20").unwrap_err();
    assert!(e.to_string().contains("Shift_JIS"), "{e}");
}

#[test]
fn a_row_is_overdue_a_year_after_its_review() {
    let reviewed = Date::parse("2025-03-01").unwrap();
    assert!(!review_overdue(
        reviewed,
        Date::parse("2026-03-01").unwrap()
    ));
    assert!(review_overdue(reviewed, Date::parse("2026-03-02").unwrap()));
    assert_eq!(Date::from_unix_ms(0).to_string(), "1970-01-01");
}

#[test]
fn the_dot_names_every_node_and_edge_and_escapes_labels() {
    let d = Diagram {
        title: "Core \"Hospital\" / 中央病院".into(),
        nodes: vec![
            Node {
                id: "dev-a".into(),
                label: "本館\nDV-100".into(),
                kind: NodeKind::OwnSite,
                group: "中央病院".into(),
            },
            Node {
                id: "dev-b".into(),
                label: "Lab".into(),
                kind: NodeKind::PeerSite,
                group: "City Lab".into(),
            },
            Node {
                id: "ext-X-1".into(),
                label: "VPN-BOX".into(),
                kind: NodeKind::Outside,
                group: "給食サービス".into(),
            },
        ],
        edges: vec![
            Edge {
                from: "dev-a".into(),
                to: "dev-b".into(),
                state: EdgeState::Live,
                label: "tcp/443".into(),
            },
            Edge {
                from: "dev-a".into(),
                to: "ext-X-1".into(),
                state: EdgeState::Outside,
                label: "".into(),
            },
        ],
    };
    let dot = d.to_dot();
    assert!(
        dot.contains("label=\"Core \\\"Hospital\\\" / 中央病院\""),
        "{dot}"
    );
    assert!(dot.contains("\"dev-a\" [label=\"本館\\nDV-100\""));
    assert!(dot.contains("\"dev-a\" -> \"dev-b\" [label=\"tcp/443\", color=\"#1a7f37\""));
    assert!(dot.contains("\"dev-a\" -> \"ext-X-1\"") && dot.contains("style=dotted"));
    assert_eq!(
        dot.matches("subgraph cluster_").count(),
        4,
        "three organisations and the legend"
    );
}

proptest! {
    /// Any bytes: an error or rows, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = from_csv::<External>(&b);
        let _ = from_csv::<Equipment>(&b);
    }

    /// Any printable names round-trip through export and import.
    #[test]
    fn printable_text_round_trips(name in "[^\\p{C}]{1,40}", loc in "[^\\p{C}]{1,40}") {
        prop_assume!(!name.trim().is_empty() && !loc.trim().is_empty());
        let mut e = equipment("EQ-1", name.trim());
        e.location = loc.trim().to_string();
        let back = from_csv::<Equipment>(&to_csv(std::slice::from_ref(&e))).unwrap();
        prop_assert_eq!(back, vec![e]);
    }

    /// Quotes, commas, newlines and Japanese in DOT labels never break the quoting.
    #[test]
    fn dot_labels_stay_inside_their_quotes(label in "\\PC{0,60}") {
        let d = Diagram { title: label.clone(), nodes: vec![Node { id: label.clone(), label: label.clone(), kind: NodeKind::OwnSite, group: label }], edges: vec![] };
        let dot = d.to_dot();
        for line in dot.lines() {
            // Unescaped quotes come in pairs on every line.
            let unescaped = line.replace("\\\\", "").replace("\\\"", "");
            prop_assert_eq!(unescaped.matches('"').count() % 2, 0, "{}", line);
        }
    }
}
