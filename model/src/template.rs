//! Value templates: literal text with `${parameter}` and `${parameter|url}` insertions.

use std::fmt;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Literal text.
    Literal(String),
    /// A parameter; `url` percent-encodes the value (RFC 3986 unreserved characters kept).
    Param {
        /// The parameter name.
        name: String,
        /// Whether the value is percent-encoded.
        url: bool,
    },
}

/// A parsed value template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

impl Template {
    /// Parses `text`; `${` starts a parameter reference that ends at `}`.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut segments = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                segments.push(Segment::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated parameter reference in {text:?}"))?;
            let inner = &after[..end];
            let (name, url) = match inner.split_once('|') {
                Some((name, "url")) => (name, true),
                Some((_, filter)) => return Err(format!("unknown filter {filter:?} in {text:?}")),
                None => (inner, false),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("bad parameter name {name:?} in {text:?}"));
            }
            segments.push(Segment::Param {
                name: name.to_string(),
                url,
            });
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_string()));
        }
        Ok(Template { segments })
    }

    /// The segments of the template.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The parameter names the template uses, in order of first use.
    pub fn params(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for s in &self.segments {
            if let Segment::Param { name, .. } = s
                && !out.contains(&name.as_str())
            {
                out.push(name);
            }
        }
        out
    }

    /// Renders the template, reading parameters through `lookup`; `None` when one is missing.
    pub fn render<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Literal(t) => out.push_str(t),
                Segment::Param { name, url } => {
                    let v = lookup(name)?;
                    if *url {
                        out.push_str(&percent_encode(v));
                    } else {
                        out.push_str(v);
                    }
                }
            }
        }
        Some(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.segments {
            match s {
                Segment::Literal(t) => f.write_str(t)?,
                Segment::Param { name, url: false } => write!(f, "${{{name}}}")?,
                Segment::Param { name, url: true } => write!(f, "${{{name}|url}}")?,
            }
        }
        Ok(())
    }
}

/// Percent-encodes every byte except the RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let t = Template::parse("a=${x};b=${y|url};").unwrap();
        assert_eq!(t.params(), vec!["x", "y"]);
        let r = t.render(|p| match p {
            "x" => Some("1"),
            "y" => Some("p@ss/w=rd"),
            _ => None,
        });
        assert_eq!(r.as_deref(), Some("a=1;b=p%40ss%2Fw%3Drd;"));
        assert_eq!(t.to_string(), "a=${x};b=${y|url};");
        assert_eq!(t.render(|_| None), None);
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(Template::parse("${x").is_err());
        assert!(Template::parse("${x|b64}").is_err());
        assert!(Template::parse("${a-b}").is_err());
    }
}
