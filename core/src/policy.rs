/*!
IAM-style policy documents compared by meaning, not by text.

AWS hands a policy back rewritten: URL-encoded (IAM), keys reordered, a
single `Action` turned into a list or the reverse, an account id principal
expanded to `arn:aws:iam::<id>:root`. Tools that compare text report a
change on every run (and then need permissions to write what did not
change). [`normalize`] maps every spelling of one policy to one value.
*/

use serde_json::{Map, Value};

/// The keys whose value may be one string or a list of strings, with the
/// same meaning.
const SET_KEYS: &[&str] = &["Action", "NotAction", "Resource", "NotResource"];

fn string_set(v: &Value) -> Value {
    let mut items: Vec<Value> = match v {
        Value::Array(a) => a.iter().map(normalize_value).collect(),
        other => vec![normalize_value(other)],
    };
    items.sort_by_key(|a| a.to_string());
    items.dedup();
    Value::Array(items)
}

/// `123456789012` and `arn:aws:iam::123456789012:root` are one principal.
fn principal_id(s: &str) -> String {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        ["arn", _partition, "iam", "", account, "root"] => (*account).to_owned(),
        _ => s.to_owned(),
    }
}

fn principal(v: &Value) -> Value {
    match v {
        // "*" stays "*" (it is not the same as {"AWS": "*"} in every service).
        Value::String(s) => Value::String(s.clone()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let ids = match v {
                        Value::Array(a) => a.clone(),
                        other => vec![other.clone()],
                    };
                    let mut ids: Vec<Value> = ids
                        .iter()
                        .map(|i| match i {
                            Value::String(s) => Value::String(principal_id(s)),
                            other => other.clone(),
                        })
                        .collect();
                    ids.sort_by_key(|a| a.to_string());
                    ids.dedup();
                    (k.clone(), Value::Array(ids))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn condition(v: &Value) -> Value {
    match v {
        Value::Object(ops) => Value::Object(
            ops.iter()
                .map(|(op, keys)| {
                    let keys = match keys {
                        Value::Object(k) => Value::Object(
                            k.iter()
                                .map(|(key, val)| (key.clone(), string_set(val)))
                                .collect(),
                        ),
                        other => other.clone(),
                    };
                    (op.clone(), keys)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn statement(v: &Value) -> Value {
    let Value::Object(o) = v else {
        return normalize_value(v);
    };
    let mut out = Map::new();
    for (k, v) in o {
        let nv = match k.as_str() {
            k if SET_KEYS.contains(&k) => string_set(v),
            "Principal" | "NotPrincipal" => principal(v),
            "Condition" => condition(v),
            _ => normalize_value(v),
        };
        out.insert(k.clone(), nv);
    }
    Value::Object(out)
}

fn normalize_value(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), normalize_value(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize_value).collect()),
        other => other.clone(),
    }
}

/// A policy document in one canonical form: statements as a sorted list,
/// set-valued keys as sorted lists, account principals as bare ids.
pub fn normalize(doc: &Value) -> Value {
    let Value::Object(o) = doc else {
        return normalize_value(doc);
    };
    let mut out = Map::new();
    for (k, v) in o {
        if k == "Statement" {
            let mut list: Vec<Value> = match v {
                Value::Array(a) => a.iter().map(statement).collect(),
                other => vec![statement(other)],
            };
            list.sort_by_key(|s| s.to_string());
            out.insert(k.clone(), Value::Array(list));
        } else {
            out.insert(k.clone(), normalize_value(v));
        }
    }
    Value::Object(out)
}

/// Parses a policy as AWS returns it: JSON, or URL-encoded JSON (IAM).
pub fn parse(text: &str) -> Result<Value, String> {
    let trimmed = text.trim();
    let decoded = if trimmed.starts_with('%') || !trimmed.starts_with(['{', '[']) {
        percent_encoding::percent_decode_str(trimmed)
            .decode_utf8()
            .map_err(|e| format!("policy is not valid URL-encoded UTF-8: {e}"))?
            .into_owned()
    } else {
        trimmed.to_owned()
    };
    serde_json::from_str(&decoded).map_err(|e| format!("policy is not valid JSON: {e}"))
}

/// Whether two policies say the same.
pub fn same(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spellings_of_one_policy_are_equal() {
        let given = json!({"Version": "2012-10-17", "Statement": {
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}});
        let returned = json!({"Statement": [{"Action": ["sts:AssumeRole"], "Principal": {"Service": ["lambda.amazonaws.com"]},
            "Effect": "Allow"}], "Version": "2012-10-17"});
        assert!(same(&given, &returned));
        let other = json!({"Version": "2012-10-17", "Statement": {
            "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}});
        assert!(!same(&given, &other));
    }

    #[test]
    fn account_principals_and_orders_do_not_matter() {
        let a = json!({"Statement": [
            {"Effect": "Allow", "Action": ["b:Two", "a:One"], "Resource": "*", "Principal": {"AWS": "123456789012"}},
            {"Effect": "Deny", "Action": "c:Three", "Resource": "*",
             "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}}}]});
        let b = json!({"Statement": [
            {"Effect": "Deny", "Action": ["c:Three"], "Resource": ["*"],
             "Condition": {"StringEquals": {"aws:SourceAccount": ["123456789012"]}}},
            {"Effect": "Allow", "Action": ["a:One", "b:Two"], "Resource": ["*"],
             "Principal": {"AWS": ["arn:aws:iam::123456789012:root"]}}]});
        assert!(same(&a, &b));
    }

    #[test]
    fn parses_url_encoded_documents() {
        let enc = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            parse(enc),
            Ok(json!({"Version": "2012-10-17", "Statement": []}))
        );
        assert_eq!(parse(" {\"a\": 1} "), Ok(json!({"a": 1})));
        assert!(parse("not json").is_err());
    }
}
