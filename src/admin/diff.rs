//! The changes between two configs, one line each, for `RELOAD CONFIG` and SIGHUP.
//!
//! Lines look like `shards[1].primary: "127.0.0.1:3321" -> "127.0.0.1:3322"`,
//! `+ sharding.tables[2]: {key = "id", name = "t"}` (added), `- users[0]: …` (removed).
//! Passwords are never printed: a changed password shows as `(changed)`.

use toml::Value;

use crate::config::Config;

/// Changes from `old` to `new`, in file order; empty when they are equal.
pub fn config_diff(old: &Config, new: &Config) -> Vec<String> {
    let old = Value::try_from(old).unwrap_or(Value::Boolean(false));
    let new = Value::try_from(new).unwrap_or(Value::Boolean(false));
    let mut out = Vec::new();
    diff_value("", &old, &new, &mut out);
    out
}

fn is_secret(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    last == "password" || last == "password_hash"
}

fn show(path: &str, v: &Value) -> String {
    if is_secret(path) {
        return "(secret)".into();
    }
    match v {
        Value::Table(t) => {
            let parts: Vec<String> = t
                .iter()
                .map(|(k, v)| {
                    let p = format!("{path}.{k}");
                    format!("{k} = {}", show(&p, v))
                })
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(|v| show(path, v)).collect();
            format!("[{}]", parts.join(", "))
        }
        other => other.to_string(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn diff_value(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Table(a), Value::Table(b)) => {
            for (k, va) in a {
                let p = join(path, k);
                match b.get(k) {
                    Some(vb) => diff_value(&p, va, vb, out),
                    None => out.push(format!("- {p}: {}", show(&p, va))),
                }
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    let p = join(path, k);
                    out.push(format!("+ {p}: {}", show(&p, vb)));
                }
            }
        }
        // Arrays of tables (shards, users, tables) compare element by element; arrays of
        // scalars (replicas, reference_tables) print whole.
        (Value::Array(a), Value::Array(b)) if a.iter().chain(b.iter()).all(|v| v.is_table()) => {
            for i in 0..a.len().max(b.len()) {
                let p = format!("{path}[{i}]");
                match (a.get(i), b.get(i)) {
                    (Some(va), Some(vb)) => diff_value(&p, va, vb, out),
                    (Some(va), None) => out.push(format!("- {p}: {}", show(&p, va))),
                    (None, Some(vb)) => out.push(format!("+ {p}: {}", show(&p, vb))),
                    (None, None) => {}
                }
            }
        }
        _ if is_secret(path) => out.push(format!("{path}: (changed)")),
        _ => out.push(format!(
            "{path}: {} -> {}",
            show(path, old),
            show(path, new)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        admin_listen = "127.0.0.1:6032"
        [[admin_users]]
        name = "admin"
        password = "admin"
        [backend]
        user = "app"
        password = "app"
        [[shards]]
        name = "s1"
        primary = "127.0.0.1:3311"
        replicas = ["127.0.0.1:3312"]
        [[shards]]
        name = "s2"
        primary = "127.0.0.1:3321"
        [sharding]
        default_shard = "s1"
        [[sharding.tables]]
        name = "accounts"
        key = "user_id"
    "#;

    fn cfg(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    #[test]
    fn equal_configs_have_no_changes() {
        assert!(config_diff(&cfg(BASE), &cfg(BASE)).is_empty());
    }

    #[test]
    fn changes_added_and_removed_entries() {
        let new = BASE.replace("127.0.0.1:3321", "127.0.0.1:3322").replace(
            "replicas = [\"127.0.0.1:3312\"]",
            "replicas = [\"127.0.0.1:3312\", \"127.0.0.1:3313\"]",
        ) + "\n[[sharding.tables]]\nname = \"orders\"\nkey = \"user_id\"\n";
        let d = config_diff(&cfg(BASE), &cfg(&new));
        assert!(
            d.contains(&r#"shards[1].primary: "127.0.0.1:3321" -> "127.0.0.1:3322""#.to_string()),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|l| l.starts_with("shards[0].replicas: [\"127.0.0.1:3312\"] -> [")),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|l| l.starts_with("+ sharding.tables[1]: {") && l.contains("orders")),
            "{d:?}"
        );
        assert_eq!(d.len(), 3, "{d:?}");
    }

    #[test]
    fn passwords_are_never_printed() {
        let new = BASE.replace("password = \"admin\"", "password = \"hunter2\"");
        let d = config_diff(&cfg(BASE), &cfg(&new));
        assert_eq!(d, vec!["admin_users[0].password: (changed)".to_string()]);
        let new = BASE.replace(
            "[[admin_users]]\n        name = \"admin\"\n        password = \"admin\"",
            "",
        );
        let d = config_diff(&cfg(BASE), &cfg(&new));
        assert!(
            d.iter()
                .all(|l| !l.contains("\"admin\"") || !l.contains("password = \"")),
            "{d:?}"
        );
        assert!(d.iter().any(|l| l.contains("(secret)")), "{d:?}");
    }
}
