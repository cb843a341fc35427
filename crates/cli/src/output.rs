//! Human or JSON output. Human output is one line per list item and `key: value` lines
//! for single objects, so it reads well in a terminal and greps well in scripts.

use serde_json::Value;

/// The refused outcomes of a connection application (`outcomes[]` or one outcome), as
/// "target: reason" lines; empty when everything asked for was granted.
pub fn refusals(v: &Value) -> Vec<String> {
    let one = |o: &Value| {
        (o["granted"] == Value::Bool(false)).then(|| {
            format!(
                "{}: {}",
                o["target_device"].as_str().unwrap_or("?"),
                o["reason"].as_str().unwrap_or("refused")
            )
        })
    };
    match v["outcomes"].as_array() {
        Some(list) => list.iter().filter_map(one).collect(),
        None => one(v).into_iter().collect(),
    }
}

/// Print an application's answer; a refusal is an error (non-zero exit), in both languages.
pub fn application(v: &Value, json: bool) -> anyhow::Result<()> {
    print(v, json);
    let refused = refusals(v);
    if refused.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the application was refused / 接続申請は拒否されました:\n  {}",
        refused.join("\n  ")
    )
}

pub fn print(v: &Value, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    match v {
        Value::Array(items) if items.is_empty() => println!("(none)"),
        Value::Array(items) => {
            for it in items {
                println!("{}", one_line(it));
            }
        }
        Value::Object(map) => {
            for (k, val) in map {
                match val {
                    Value::Array(a) if a.iter().all(|x| x.is_object()) && !a.is_empty() => {
                        println!("{k}:");
                        for x in a {
                            println!("  - {}", one_line(x));
                        }
                    }
                    _ => println!("{k}: {}", scalar(val)),
                }
            }
        }
        other => println!("{}", scalar(other)),
    }
}

fn one_line(v: &Value) -> String {
    match v {
        Value::Object(map) => map
            .iter()
            .filter(|(_, x)| !x.is_null())
            .map(|(k, x)| format!("{k}={}", scalar(x)))
            .collect::<Vec<_>>()
            .join("  "),
        other => scalar(other),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) if s.contains('\n') => format!("<{} lines>", s.lines().count()),
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refusals_are_found_in_one_outcome_and_in_lists() {
        assert!(refusals(&json!({"target_device": "d1", "granted": true})).is_empty());
        assert_eq!(
            refusals(&json!({"target_device": "d1", "granted": false, "reason": "not in a group"})),
            ["d1: not in a group"]
        );
        let list = json!({"outcomes": [
            {"target_device": "a", "granted": true},
            {"target_device": "b", "granted": false, "reason": "policy"}
        ]});
        assert_eq!(refusals(&list), ["b: policy"]);
        assert!(application(&list, true).is_err());
        assert!(application(&json!({"outcomes": []}), true).is_ok());
    }
}
