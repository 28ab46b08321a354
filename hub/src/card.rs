//! The model card (README.md) of a checkpoint repository: YAML front matter the Hub indexes
//! (library, tags, metrics) and a short body with bf-eval's metrics as a table and the model
//! configuration. Pure text building, so the trainer and the CLI write the same card.

use serde_json::Value;

/// Flattens nested objects into dotted keys (`test.accuracy`); other values print as JSON.
pub fn flatten_metrics(v: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, x, out);
                }
            }
            Value::String(s) => out.push((prefix.to_string(), s.clone())),
            Value::Number(n) => out.push((prefix.to_string(), format_number(n))),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

fn format_number(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.is_finite() && f.abs() >= 1e-4 && f.abs() < 1e6 => {
            let s = format!("{f:.6}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        _ => n.to_string(),
    }
}

/// The card of checkpoint `repo_id`, with `metrics` (bf-eval's metrics.json) and `config`
/// (config.json) when known.
pub fn model_card(repo_id: &str, metrics: Option<&Value>, config: Option<&Value>) -> String {
    let name = repo_id.rsplit('/').next().unwrap_or(repo_id);
    let mut s = String::from("---\nlibrary_name: brainformer\ntags:\n- eeg\n- meg\n- brainformer\n---\n\n");
    s.push_str(&format!("# {name}\n\nA Brainformer checkpoint (a transformer over tokenized EEG/MEG windows), pushed by `bf-pipeline upload --model`.\n\n"));
    s.push_str("Files: `config.json` (the model configuration) and `model.safetensors` (the weights).\n\n");
    s.push_str("## Metrics\n\n");
    match metrics.map(flatten_metrics) {
        Some(rows) if !rows.is_empty() => {
            s.push_str("Held-out metrics from `bf-eval`:\n\n| metric | value |\n|---|---|\n");
            for (k, v) in rows {
                s.push_str(&format!("| {} | {} |\n", k.replace('|', "\\|"), v.replace('|', "\\|")));
            }
        }
        _ => s.push_str("No metrics were given (run `bf-eval` and upload again with its metrics.json).\n"),
    }
    if let Some(c) = config {
        s.push_str("\n## Configuration\n\n```json\n");
        s.push_str(&serde_json::to_string_pretty(c).unwrap_or_default());
        s.push_str("\n```\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_has_front_matter_and_metric_rows() {
        let m = serde_json::json!({"test": {"accuracy": 0.8125, "n": 64}, "loss": 1.25});
        let card = model_card("user/bf-small", Some(&m), Some(&serde_json::json!({"d_model": 64})));
        assert!(card.starts_with("---\nlibrary_name: brainformer\n"));
        assert!(card.contains("# bf-small"));
        assert!(card.contains("| loss | 1.25 |"), "{card}");
        assert!(card.contains("| test.accuracy | 0.8125 |"));
        assert!(card.contains("| test.n | 64 |"));
        assert!(card.contains("\"d_model\": 64"));
        assert!(model_card("x", None, None).contains("No metrics"));
    }
}
