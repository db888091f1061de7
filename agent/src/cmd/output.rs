//! How the operator commands print: the `-o` format, JSON, YAML and plain tables.

use clap::ValueEnum;
use serde_json::Value;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable text.
    Text,
    /// JSON.
    Json,
    /// YAML (the same document as JSON).
    Yaml,
}

/// A structured format: the same value as JSON or as YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Structured {
    Json,
    Yaml,
}

impl Output {
    /// The structured format this output asks for, if any.
    pub fn structured(self) -> Option<Structured> {
        match self {
            Output::Text => None,
            Output::Json => Some(Structured::Json),
            Output::Yaml => Some(Structured::Yaml),
        }
    }
}

/// `v` as indented JSON or as YAML, ending with a newline.
pub fn render(v: &Value, format: Structured) -> anyhow::Result<String> {
    let mut text = match format {
        Structured::Json => serde_json::to_string_pretty(v)?,
        Structured::Yaml => {
            serde_saphyr::to_string(v).map_err(|e| anyhow::anyhow!("rendering YAML failed: {e}"))?
        }
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Prints `v` as indented JSON or as YAML.
pub fn print_value(v: &Value, format: Structured) -> anyhow::Result<()> {
    print!("{}", render(v, format)?);
    Ok(())
}

/// Prints `rows` as a table under `headers`, columns padded to their widest cell.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", parts.join("   ").trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_reads_back_as_the_json_value() {
        let v = json!({
            "name": "blob_conn",
            "empty": "",
            "yes": "yes",
            "number_text": "0123",
            "nested": [{"a": 1, "b": null, "c": true, "d": 1.5}, [], {}],
            "multi": "line one\nline two",
        });
        let json: Value = serde_json::from_str(&render(&v, Structured::Json).unwrap()).unwrap();
        let yaml: Value = serde_saphyr::from_str(&render(&v, Structured::Yaml).unwrap()).unwrap();
        assert_eq!(json, v);
        assert_eq!(yaml, v);
    }
}
