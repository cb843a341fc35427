//! Human or JSON output. Human output is one line per list item and `key: value` lines
//! for single objects, so it reads well in a terminal and greps well in scripts.

use serde_json::Value;

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
