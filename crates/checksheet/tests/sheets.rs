//! The shipped sheets read cleanly, say what Annex C says, and score as documented.

use dodvpn_checksheet::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn catalogues() -> Vec<Catalogue> {
    builtin().expect("the shipped check sheets are valid")
}

fn tr() -> Catalogue {
    catalogues()
        .into_iter()
        .find(|c| c.catalogue == "tr11636-annex-c")
        .unwrap()
}

fn services(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn asked(cat: &Catalogue, sheet: &str, svc: &[&str]) -> Vec<(String, String)> {
    let sheet = cat.sheet(sheet).unwrap();
    cat.applicable(sheet, &services(svc))
        .into_iter()
        .map(|(i, r)| (i.id.clone(), r.to_string()))
        .collect()
}

#[test]
fn the_shipped_sheets_are_the_four_the_centre_offers() {
    let cats = catalogues();
    let sheets: Vec<String> = cats
        .iter()
        .flat_map(|c| c.sheets.iter().map(|s| s.id.clone()))
        .collect();
    assert_eq!(sheets, ["large", "small", "provider", "mhlw"]);
    let tr = tr();
    for id in [
        "1-1-1", "2-2-1", "2-3-1", "3-6-1", "4-8-1", "4-8-2", "4-8-3", "4-9-3", "4-10-5", "6-1-5",
    ] {
        assert!(tr.item(id).is_some(), "item {id} is on the sheet");
    }
    assert_eq!(
        tr.item("1-1-1").unwrap().prefill.as_deref(),
        Some("peer-sheets")
    );
    assert_eq!(
        tr.item("2-2-1").unwrap().prefill.as_deref(),
        Some("no-transit")
    );
}

#[test]
fn circles_always_apply_and_triangles_only_with_their_service() {
    let tr = tr();
    // A small clinic with no services answers sections 1–3 only; section 1 is the
    // administrator's alone (Table C.6).
    let bare = asked(&tr, "small", &[]);
    assert!(bare.contains(&("1-1-1".into(), "admin".into())));
    assert!(!bare.contains(&("1-1-1".into(), "si".into())));
    assert!(bare.contains(&("2-2-1".into(), "si".into())));
    assert!(
        bare.iter().all(|(i, _)| !i.starts_with("4-")),
        "no ▲ item without its service: {bare:?}"
    );
    // Internet access brings 4-8 for both roles; mail brings 4-7 for the administrator only.
    let with = asked(&tr, "small", &["internet", "mail"]);
    for role in ["admin", "si"] {
        assert!(with.contains(&("4-8-1".into(), role.into())));
    }
    assert!(with.contains(&("4-7-1".into(), "admin".into())));
    assert!(!with.contains(&("4-7-1".into(), "si".into())));
    // Remote maintenance is not a small institution's service (Table C.6 has no ▲ there).
    assert!(asked(&tr, "small", &["remote-maintenance"])
        .iter()
        .all(|(i, _)| !i.starts_with("4-9-")));
    // A large institution with remote maintenance answers 4-9 as admin and SI, not SP.
    let large = asked(&tr, "large", &["remote-maintenance"]);
    assert!(large.contains(&("4-9-2".into(), "si".into())));
    assert!(!large.contains(&("4-9-2".into(), "sp".into())));
    // A VPN provider answers 4-10 but not 3 (Table C.8), an ASP provider both.
    let vpn = asked(&tr, "provider", &["sp-vpn"]);
    assert!(vpn.contains(&("4-10-1".into(), "sp".into())));
    assert!(vpn.iter().all(|(i, _)| !i.starts_with("3-")));
    assert!(asked(&tr, "provider", &["sp-asp"]).contains(&("3-6-1".into(), "sp".into())));
}

#[test]
fn a_more_specific_rule_overrides_its_section() {
    let cats = catalogues();
    let m = cats
        .iter()
        .find(|c| c.catalogue == "mhlw-cyber-checklist")
        .unwrap();
    let bare = asked(m, "mhlw", &[]);
    assert!(bare.contains(&("M-2-1".into(), "vendor".into())));
    assert!(
        !bare.contains(&("M-2-2".into(), "vendor".into())),
        "the vendor confirms M-2-2 only with remote maintenance"
    );
    assert!(asked(m, "mhlw", &["remote-maintenance"]).contains(&("M-2-2".into(), "vendor".into())));
}

fn submission(sheet: &str, svc: &[&str], answers: Vec<Answer>) -> Submission {
    let tr = tr();
    Submission {
        catalogue: tr.catalogue,
        version: tr.version,
        sheet: sheet.into(),
        services: services(svc),
        answers,
    }
}

fn answer(item: &str, role: &str, value: AnswerValue) -> Answer {
    Answer {
        item: item.into(),
        role: role.into(),
        value,
        note: String::new(),
        attachment: None,
    }
}

#[test]
fn the_score_counts_yes_over_applicable_and_lists_every_gap() {
    let cats = catalogues();
    let tr = tr();
    let all = asked(&tr, "small", &[]);
    // Everything yes except one "no", one "not applicable" and one left unanswered.
    let mut answers: Vec<Answer> = all
        .iter()
        .map(|(i, r)| answer(i, r, AnswerValue::Yes))
        .collect();
    answers[0].value = AnswerValue::No;
    answers[1].value = AnswerValue::NotApplicable;
    let left_out = answers.pop().unwrap();
    let sc = score(&cats, &submission("small", &[], answers)).unwrap();
    assert_eq!(sc.asked, all.len());
    assert_eq!((sc.no, sc.not_applicable, sc.unanswered), (1, 1, 1));
    assert_eq!(sc.yes, all.len() - 3);
    assert_eq!(sc.percent as usize, (all.len() - 3) * 100 / (all.len() - 1));
    assert_eq!(
        sc.gaps,
        vec![
            Gap {
                item: all[0].0.clone(),
                role: all[0].1.clone(),
                reason: GapReason::AnsweredNo
            },
            Gap {
                item: left_out.item,
                role: left_out.role,
                reason: GapReason::Unanswered
            },
        ]
    );
}

#[test]
fn bad_submissions_are_refused_with_a_reason_in_both_languages() {
    let cats = catalogues();
    let cases: Vec<(Submission, &str)> = vec![
        (
            submission(
                "small",
                &[],
                vec![answer("9-9-9", "admin", AnswerValue::Yes)],
            ),
            "9-9-9",
        ),
        (
            submission(
                "small",
                &[],
                vec![answer("4-8-1", "admin", AnswerValue::Yes)],
            ),
            "4-8-1",
        ),
        (
            submission(
                "small",
                &[],
                vec![
                    answer("2-2-1", "si", AnswerValue::Yes),
                    answer("2-2-1", "si", AnswerValue::No),
                ],
            ),
            "twice",
        ),
        (submission("nope", &[], vec![]), "nope"),
        (
            submission("small", &["teleportation"], vec![]),
            "teleportation",
        ),
        (
            Submission {
                version: "2020.1".into(),
                ..submission("small", &[], vec![])
            },
            "2020.1",
        ),
        (
            Submission {
                catalogue: "iso-27001".into(),
                ..submission("small", &[], vec![])
            },
            "iso-27001",
        ),
    ];
    for (s, needle) in cases {
        let e = score(&cats, &s).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains(" / "), "{e}");
        assert!(
            e.chars().any(|c| ('\u{3040}'..='\u{30ff}').contains(&c)),
            "Japanese half missing: {e}"
        );
    }
}

#[test]
fn comparing_two_submissions_names_each_changed_answer() {
    let before = submission(
        "small",
        &[],
        vec![
            answer("2-2-1", "admin", AnswerValue::No),
            answer("3-6-1", "admin", AnswerValue::Yes),
        ],
    );
    let mut after = before.clone();
    after.answers[0].value = AnswerValue::Yes;
    after.answers[1].note = "evidence changed, answer did not".into();
    after.answers.push(answer("3-5-1", "si", AnswerValue::No));
    assert_eq!(
        compare(&before, &after),
        vec![
            Change {
                item: "2-2-1".into(),
                role: "admin".into(),
                before: Some(AnswerValue::No),
                after: Some(AnswerValue::Yes)
            },
            Change {
                item: "3-5-1".into(),
                role: "si".into(),
                before: None,
                after: Some(AnswerValue::No)
            },
        ]
    );
    assert!(compare(&after, &after).is_empty());
}

#[test]
fn broken_catalogue_files_are_refused_not_half_read() {
    let good = include_str!("../../../checksheets/mhlw-checklist.toml");
    let cases = [
        (good.replace("id = \"M-1-1\"", "id = \"M-2-1\""), "repeated"),
        (
            good.replace(
                "\"M-3\" = { institution = \"always\" }",
                "\"M-3\" = { nurse = \"always\" }",
            ),
            "nurse",
        ),
        (
            good.replace("vendor = [\"remote-maintenance\"]", "vendor = [\"fax\"]"),
            "fax",
        ),
        (
            good.replace(
                "\"M-3\" = { institution = \"always\" }",
                "\"M-3\" = { institution = \"sometimes\" }",
            ),
            "sometimes",
        ),
        (
            good.replace("en = \"Organisation\" }", "en = \" \" }"),
            "English",
        ),
        (good.replace("\"M-3\" = {", "\"Z-9\" = {"), "Z-9"),
        (good.replace("[[item]]", "[[itme]]"), "itme"),
        (good[..good.len() / 2].to_string(), ""),
    ];
    for (text, needle) in cases {
        let e = Catalogue::parse(&text).unwrap_err().to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

proptest! {
    /// Whatever the answers, the score never panics, counts add up and the percent is
    /// never more than the yes share.
    #[test]
    fn any_answers_score_consistently(picks in proptest::collection::vec((0usize..200, 0u8..4), 0..120), svc in proptest::sample::subsequence(vec!["internet", "mail", "relay", "asp-use-other", "wireless-mobile"], 0..5)) {
        let cats = catalogues();
        let tr = tr();
        let all = asked(&tr, "small", &svc);
        let mut seen = BTreeSet::new();
        let answers: Vec<Answer> = picks.into_iter().filter_map(|(i, v)| {
            let (item, role) = all.get(i % all.len())?.clone();
            let value = match v { 0 => AnswerValue::Yes, 1 => AnswerValue::No, 2 => AnswerValue::NotApplicable, _ => return None };
            seen.insert((item.clone(), role.clone())).then(|| answer(&item, &role, value))
        }).collect();
        let sc = score(&cats, &submission("small", &svc, answers)).unwrap();
        prop_assert_eq!(sc.yes + sc.no + sc.not_applicable + sc.unanswered, sc.asked);
        prop_assert_eq!(sc.gaps.len(), sc.no + sc.unanswered);
        if sc.asked > sc.not_applicable {
            prop_assert!(sc.percent as usize * (sc.asked - sc.not_applicable) <= sc.yes * 100);
        }
    }

    /// Arbitrary text never panics the reader.
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,400}") {
        let _ = Catalogue::parse(&s);
    }
}
