//! Label selectors (the full grammar and the JSON `matchLabels`/`matchExpressions` form) and
//! field selectors with the fields each resource supports.
//!
//! Parsing follows `k8s.io/apimachinery/pkg/labels` and `pkg/fields`, including their error
//! messages, so clients see the same `400 BadRequest` text as from a real API server.

use std::fmt;

use serde_json::Value;

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOp {
    /// `k in (a,b)`, `matchExpressions` `In`.
    In,
    /// `k notin (a,b)`: also true when the label is absent.
    NotIn,
    /// `k=v` or `k==v`.
    Equals,
    /// `k!=v`: also true when the label is absent.
    NotEquals,
    /// `k`.
    Exists,
    /// `!k`.
    DoesNotExist,
    /// `k>5` (integer comparison).
    GreaterThan,
    /// `k<5` (integer comparison).
    LessThan,
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key, e.g. `app.kubernetes.io/name`.
    pub key: String,
    /// How the label is compared.
    pub op: LabelOp,
    /// Sorted, deduplicated values (one for `=`, `!=`, `>`, `<`; none for `k` and `!k`).
    pub values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let value = labels
            .and_then(|l| l.get(&self.key))
            .and_then(Value::as_str);
        match self.op {
            LabelOp::In | LabelOp::Equals => {
                value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            LabelOp::NotIn | LabelOp::NotEquals => {
                value.is_none_or(|v| !self.values.iter().any(|x| x == v))
            }
            LabelOp::Exists => value.is_some(),
            LabelOp::DoesNotExist => value.is_none(),
            LabelOp::GreaterThan | LabelOp::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.op == LabelOp::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one = || self.values.first().map(String::as_str).unwrap_or("");
        match self.op {
            LabelOp::Exists => write!(f, "{}", self.key),
            LabelOp::DoesNotExist => write!(f, "!{}", self.key),
            LabelOp::Equals => write!(f, "{}={}", self.key, one()),
            LabelOp::NotEquals => write!(f, "{}!={}", self.key, one()),
            LabelOp::GreaterThan => write!(f, "{}>{}", self.key, one()),
            LabelOp::LessThan => write!(f, "{}<{}", self.key, one()),
            LabelOp::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            LabelOp::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
        }
    }
}

/// A parsed label selector: all requirements must hold. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parse `k=v,k!=v,k in (a,b),k notin (a),k,!k` (URL-decoded already).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parser = Parser {
            items: lex(s),
            pos: 0,
        };
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// From a `metav1.LabelSelector` JSON object (`matchLabels`, `matchExpressions`).
    /// `null` and `{}` give the empty selector, which matches everything.
    pub fn from_json(sel: &Value) -> Result<Self, String> {
        let mut requirements = Vec::new();
        if sel.is_null() {
            return Ok(Self::default());
        }
        let obj = sel
            .as_object()
            .ok_or_else(|| format!("label selector must be an object, got {sel}"))?;
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let v = v
                        .as_str()
                        .ok_or_else(|| format!("matchLabels[{k}] must be a string, got {v}"))?;
                    requirements.push(new_requirement(k, LabelOp::Equals, vec![v.to_string()])?);
                }
            }
            Some(other) => return Err(format!("matchLabels must be an object, got {other}")),
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for expr in exprs {
                    let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
                    let op_name = expr.get("operator").and_then(Value::as_str).unwrap_or("");
                    let op = match op_name {
                        "In" => LabelOp::In,
                        "NotIn" => LabelOp::NotIn,
                        "Exists" => LabelOp::Exists,
                        "DoesNotExist" => LabelOp::DoesNotExist,
                        other => {
                            return Err(format!(
                                "{other:?} is not a valid label selector operator"
                            ));
                        }
                    };
                    let values = match expr.get("values") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(vs)) => vs
                            .iter()
                            .map(|v| {
                                v.as_str().map(str::to_string).ok_or_else(|| {
                                    format!("matchExpressions values of {key:?} must be strings")
                                })
                            })
                            .collect::<Result<_, _>>()?,
                        Some(other) => {
                            return Err(format!(
                                "matchExpressions values of {key:?} must be a list, got {other}"
                            ));
                        }
                    };
                    requirements.push(new_requirement(key, op, values)?);
                }
            }
            Some(other) => return Err(format!("matchExpressions must be a list, got {other}")),
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// Whether an object's `metadata.labels` match.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether this selector has no requirement (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

/// The canonical string form, as `labels.Selector.String()` prints it (`a=b,c in (d,e)`).
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

fn new_requirement(key: &str, op: LabelOp, values: Vec<String>) -> Result<Requirement, String> {
    validate_label_key(key)?;
    match op {
        LabelOp::In | LabelOp::NotIn if values.is_empty() => {
            return Err(
                "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
                    .to_string(),
            );
        }
        LabelOp::Equals | LabelOp::NotEquals | LabelOp::GreaterThan | LabelOp::LessThan
            if values.len() != 1 =>
        {
            return Err(format!(
                "values: Invalid value: {values:?}: exact-match compatibility requires one single value"
            ));
        }
        LabelOp::Exists | LabelOp::DoesNotExist if !values.is_empty() => {
            return Err(format!(
                "values: Invalid value: {values:?}: values set must be empty for exists and does not exist"
            ));
        }
        LabelOp::GreaterThan | LabelOp::LessThan if values[0].parse::<i64>().is_err() => {
            return Err(format!(
                "values[0]: Invalid value: {:?}: for 'Gt', 'Lt' operators, the value must be an integer",
                values[0]
            ));
        }
        _ => {}
    }
    if !matches!(op, LabelOp::GreaterThan | LabelOp::LessThan) {
        for (i, v) in values.iter().enumerate() {
            validate_label_value(key, i, v)?;
        }
    }
    let mut values = values;
    values.sort();
    values.dedup();
    Ok(Requirement {
        key: key.to_string(),
        op,
        values,
    })
}

const NAME_FMT_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// `validation.IsQualifiedName`: `[prefix/]name`.
fn validate_label_key(key: &str) -> Result<(), String> {
    let invalid = |why: String| Err(format!("Invalid value: {key:?}: {why}"));
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if name.contains('/') {
        return invalid(format!(
            "a qualified name {NAME_FMT_MSG} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ));
    }
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return invalid("prefix part must be non-empty".to_string());
        }
        if !is_dns1123_subdomain(prefix) {
            return invalid("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')".to_string());
        }
    }
    if name.is_empty() {
        return invalid("name part must be non-empty".to_string());
    }
    if name.len() > 63 {
        return invalid("name part must be no more than 63 bytes".to_string());
    }
    if !is_name_part(name) {
        return invalid(format!(
            "name part {NAME_FMT_MSG} (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        ));
    }
    Ok(())
}

/// `validation.IsValidLabelValue`: empty, or a name part of at most 63 bytes.
fn validate_label_value(key: &str, index: usize, v: &str) -> Result<(), String> {
    if v.len() > 63 {
        return Err(format!(
            "values[{index}][{key}]: Invalid value: {v:?}: must be no more than 63 bytes"
        ));
    }
    if !v.is_empty() && !is_name_part(v) {
        return Err(format!(
            "values[{index}][{key}]: Invalid value: {v:?}: a valid label {NAME_FMT_MSG} (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Error,
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Tok> {
    Some(match s {
        ")" => Tok::ClosedPar,
        "," => Tok::Comma,
        "!" => Tok::DoesNotExist,
        "==" => Tok::DoubleEquals,
        "=" => Tok::Equals,
        ">" => Tok::GreaterThan,
        "in" => Tok::In,
        "<" => Tok::LessThan,
        "!=" => Tok::NotEquals,
        "notin" => Tok::NotIn,
        "(" => Tok::OpenPar,
        _ => return None,
    })
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// The lexer of `labels.Parse`, run to the end of the string.
fn lex(s: &str) -> Vec<(Tok, String)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && is_space(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() {
            out.push((Tok::End, String::new()));
            return out;
        }
        if is_special(b[pos]) {
            let start = pos;
            let mut last: Option<(Tok, usize)> = None;
            while pos < b.len() && is_special(b[pos]) {
                let candidate = &s[start..=pos];
                if let Some(t) = keyword(candidate) {
                    last = Some((t, pos + 1));
                } else if last.is_some() {
                    break;
                }
                pos += 1;
            }
            match last {
                Some((t, end)) => {
                    out.push((t, s[start..end].to_string()));
                    pos = end;
                }
                None => {
                    out.push((
                        Tok::Error,
                        format!("error expected: keyword found '{}'", &s[start..pos]),
                    ));
                }
            }
        } else {
            let start = pos;
            while pos < b.len() && !is_special(b[pos]) && !is_space(b[pos]) {
                pos += 1;
            }
            let word = &s[start..pos];
            out.push((keyword(word).unwrap_or(Tok::Identifier), word.to_string()));
        }
    }
}

struct Parser {
    items: Vec<(Tok, String)>,
    pos: usize,
}

impl Parser {
    /// `in` and `notin` are identifiers where values are expected.
    fn as_value(t: Tok) -> Tok {
        match t {
            Tok::In | Tok::NotIn => Tok::Identifier,
            t => t,
        }
    }

    fn lookahead(&self, values: bool) -> (Tok, String) {
        let i = self.pos.min(self.items.len() - 1);
        let (t, l) = &self.items[i];
        (if values { Self::as_value(*t) } else { *t }, l.clone())
    }

    fn consume(&mut self, values: bool) -> (Tok, String) {
        let r = self.lookahead(values);
        if self.pos < self.items.len() - 1 {
            self.pos += 1;
        }
        r
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(true);
            match tok {
                Tok::Identifier | Tok::DoesNotExist => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    let (t, l) = self.consume(true);
                    match t {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let (t2, l2) = self.lookahead(true);
                            if t2 != Tok::Identifier && t2 != Tok::DoesNotExist {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Tok::End => return Ok(reqs),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let mut negated = false;
        let (mut tok, mut lit) = self.consume(true);
        if tok == Tok::DoesNotExist {
            negated = true;
            (tok, lit) = self.consume(true);
        }
        if tok != Tok::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        validate_label_key(&lit)?;
        let key = lit;
        let (next, _) = self.lookahead(true);
        if negated || next == Tok::End || next == Tok::Comma {
            let op = if negated {
                LabelOp::DoesNotExist
            } else {
                LabelOp::Exists
            };
            return new_requirement(&key, op, Vec::new());
        }
        let (tok, lit) = self.consume(false);
        let op = match tok {
            Tok::In => LabelOp::In,
            Tok::NotIn => LabelOp::NotIn,
            Tok::Equals | Tok::DoubleEquals => LabelOp::Equals,
            Tok::NotEquals => LabelOp::NotEquals,
            Tok::GreaterThan => LabelOp::GreaterThan,
            Tok::LessThan => LabelOp::LessThan,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        };
        let values = match op {
            LabelOp::In | LabelOp::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        new_requirement(&key, op, values)
    }

    fn set_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(true);
        if tok != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(true);
        match tok {
            Tok::Identifier | Tok::Comma => {
                let values = self.identifiers()?;
                let (tok, _) = self.consume(true);
                if tok != Tok::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(values)
            }
            Tok::ClosedPar => {
                self.consume(true);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn identifiers(&mut self) -> Result<Vec<String>, String> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.consume(true);
            match tok {
                Tok::Identifier => {
                    values.push(lit);
                    let (t2, l2) = self.lookahead(true);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(values),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (t2, _) = self.lookahead(true);
                    if t2 == Tok::ClosedPar {
                        values.push(String::new());
                        return Ok(values);
                    }
                    if t2 == Tok::Comma {
                        self.consume(true);
                        values.push(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.lookahead(true);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(true);
        if tok == Tok::Identifier {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field label, e.g. `metadata.name`.
    pub field: String,
    /// `true` for `!=`.
    pub negated: bool,
    /// The value compared with the field's string form.
    pub value: String,
}

/// A parsed field selector for one resource: all terms must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    group: String,
    resource: String,
    requirements: Vec<FieldRequirement>,
}

/// The field labels a resource supports besides `metadata.name` and `metadata.namespace`.
fn extra_fields(group: &str, resource: &str) -> &'static [&'static str] {
    match (group, resource) {
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "secrets") => &["type"],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "namespaces") => &["status.phase", "name"],
        ("batch", "jobs") => &["status.successful"],
        ("apps", "replicasets") => &["status.replicas"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parse `a=b,c!=d` for `resource` (plural, with its group): unsupported fields are an
    /// error with the API server's message `field label not supported: <field>`.
    pub fn parse(s: &str, group: &str, resource: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        let mut terms = split_unescaped(s, ',');
        terms.sort();
        for term in terms.iter().filter(|t| !t.is_empty()) {
            let Some((field, negated, raw)) = split_term(term) else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            requirements.push(FieldRequirement {
                field: field.to_string(),
                negated,
                value: unescape(raw)?,
            });
        }
        // Field labels are checked once the whole selector has parsed, as the API server
        // converts them after parsing.
        for r in &requirements {
            let field = r.field.as_str();
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !extra_fields(group, resource).contains(&field)
            {
                return Err(format!("field label not supported: {field}"));
            }
        }
        Ok(Self {
            group: group.to_string(),
            resource: resource.to_string(),
            requirements,
        })
    }

    /// Whether the object's fields satisfy every term.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let have = field_value(&self.group, &self.resource, obj, &r.field);
            (have == r.value) != r.negated
        })
    }

    /// Whether this selector has no term (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms, sorted as the API server sorts them.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }
}

/// The string form of a field label on an object, as the API server's `ToSelectableFields`
/// computes it: absent strings are `""`, absent numbers `"0"`, absent booleans `"false"`.
fn field_value(group: &str, resource: &str, obj: &Value, field: &str) -> String {
    let string_at = |ptr: &str| match obj.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let int_at = |ptr: &str| match obj.pointer(ptr) {
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".to_string(),
    };
    match field {
        "metadata.name" => string_at("/metadata/name"),
        "metadata.namespace" => string_at("/metadata/namespace"),
        "name" if resource == "namespaces" => string_at("/metadata/name"),
        "spec.hostNetwork" => match obj.pointer("/spec/hostNetwork") {
            Some(Value::Bool(true)) => "true".to_string(),
            _ => "false".to_string(),
        },
        "spec.unschedulable" => match obj.pointer("/spec/unschedulable") {
            Some(Value::Bool(true)) => "true".to_string(),
            _ => "false".to_string(),
        },
        "status.podIP" => {
            let first = obj
                .pointer("/status/podIPs/0/ip")
                .and_then(Value::as_str)
                .map(str::to_string);
            first.unwrap_or_else(|| string_at("/status/podIP"))
        }
        "status.successful" if group == "batch" => int_at("/status/succeeded"),
        "status.replicas" => int_at("/status/replicas"),
        "source" => string_at("/source/component"),
        other => {
            let ptr: String = other.split('.').map(|p| format!("/{p}")).collect();
            string_at(&ptr)
        }
    }
}

/// Split on `sep` where it is not preceded by a backslash escape.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

/// `fields.splitTerm`: the leftmost `!=`, `==` or `=` splits field from value.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    (0..term.len())
        .filter(|i| term.is_char_boundary(*i))
        .find_map(|i| {
            let rest = &term[i..];
            if rest.starts_with("!=") {
                Some((&term[..i], true, &term[i + 2..]))
            } else if rest.starts_with("==") {
                Some((&term[..i], false, &term[i + 2..]))
            } else if rest.starts_with('=') {
                Some((&term[..i], false, &term[i + 1..]))
            } else {
                None
            }
        })
}

/// `fields.UnescapeValue`: only `\\`, `\,` and `\=` are escapes; a bare `,` or `=` is an error.
fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ ('\\' | ',' | '=')) => out.push(n),
                Some(n) => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{n}"
                    ));
                }
                None => {
                    return Err("invalid field selector: invalid escape sequence: \\".to_string());
                }
            },
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {c:?}"
                ));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "x", "labels": labels}})
    }

    #[test]
    fn equality_forms() {
        let o = obj(json!({"app": "web", "tier": "front"}));
        for s in ["app=web", "app==web", "app = web", "app=web,tier=front"] {
            assert!(LabelSelector::parse(s).unwrap().matches(&o), "{s}");
        }
        assert!(!LabelSelector::parse("app=db").unwrap().matches(&o));
        assert!(
            !LabelSelector::parse("app=web,tier=back")
                .unwrap()
                .matches(&o)
        );
    }

    #[test]
    fn not_equals_matches_absent_label() {
        let s = LabelSelector::parse("env!=prod").unwrap();
        assert!(s.matches(&obj(json!({}))));
        assert!(s.matches(&json!({"metadata": {}})));
        assert!(s.matches(&obj(json!({"env": "dev"}))));
        assert!(!s.matches(&obj(json!({"env": "prod"}))));
    }

    #[test]
    fn set_operators() {
        let s = LabelSelector::parse("env in (dev, qa),tier notin (db)").unwrap();
        assert!(s.matches(&obj(json!({"env": "qa"}))));
        assert!(s.matches(&obj(json!({"env": "dev", "tier": "web"}))));
        assert!(!s.matches(&obj(json!({"env": "dev", "tier": "db"}))));
        assert!(!s.matches(&obj(json!({"env": "prod"}))));
        assert!(!s.matches(&obj(json!({}))));
        let r = &s.requirements()[0];
        assert_eq!(r.values, vec!["dev", "qa"]);
    }

    #[test]
    fn exists_and_not_exists() {
        let s = LabelSelector::parse("app,!canary").unwrap();
        assert!(s.matches(&obj(json!({"app": "x"}))));
        assert!(!s.matches(&obj(json!({"app": "x", "canary": "1"}))));
        assert!(!s.matches(&obj(json!({}))));
    }

    #[test]
    fn keys_with_prefix_and_dots() {
        let s = LabelSelector::parse(
            "batch.kubernetes.io/controller-uid=3f1c-aa,app.kubernetes.io/name in (sc)",
        )
        .unwrap();
        let o = obj(
            json!({"batch.kubernetes.io/controller-uid": "3f1c-aa", "app.kubernetes.io/name": "sc"}),
        );
        assert!(s.matches(&o));
        assert_eq!(
            s.to_string(),
            "app.kubernetes.io/name in (sc),batch.kubernetes.io/controller-uid=3f1c-aa"
        );
    }

    #[test]
    fn key_prefix_validation() {
        assert!(LabelSelector::parse("example.com/x=y").is_ok());
        let e = LabelSelector::parse("Example.com/x=y").unwrap_err();
        assert!(
            e.contains("prefix part a lowercase RFC 1123 subdomain"),
            "{e}"
        );
        let e = LabelSelector::parse("/x").unwrap_err();
        assert!(e.contains("prefix part must be non-empty"), "{e}");
        let e = LabelSelector::parse("a/b/c").unwrap_err();
        assert!(e.contains("a qualified name must consist"), "{e}");
    }

    #[test]
    fn in_and_notin_as_values() {
        let s = LabelSelector::parse("x in (in,notin)").unwrap();
        assert!(s.matches(&obj(json!({"x": "notin"}))));
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(LabelSelector::parse("").unwrap().matches(&json!({})));
        assert!(LabelSelector::parse("  ").unwrap().is_empty());
        assert!(
            LabelSelector::from_json(&json!({}))
                .unwrap()
                .matches(&json!({}))
        );
        assert!(LabelSelector::from_json(&Value::Null).unwrap().is_empty());
    }

    #[test]
    fn empty_value_and_gt_lt() {
        let s = LabelSelector::parse("a=").unwrap();
        assert!(s.matches(&obj(json!({"a": ""}))));
        assert!(!s.matches(&obj(json!({}))));
        let s = LabelSelector::parse("n>3,n<10").unwrap();
        assert!(s.matches(&obj(json!({"n": "5"}))));
        assert!(!s.matches(&obj(json!({"n": "3"}))));
        assert!(!s.matches(&obj(json!({"n": "x"}))));
    }

    #[test]
    fn parse_errors() {
        let e = LabelSelector::parse("a b").unwrap_err();
        assert_eq!(
            e,
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        let e = LabelSelector::parse("a in b").unwrap_err();
        assert_eq!(e, "unable to parse requirement: found 'b' expected: '('");
        let e = LabelSelector::parse("a=b,").unwrap_err();
        assert_eq!(e, "found '', expected: identifier after ','");
        let e = LabelSelector::parse("a=b c").unwrap_err();
        assert_eq!(e, "found 'c', expected: ',' or 'end of string'");
        let e = LabelSelector::parse("=x").unwrap_err();
        assert_eq!(e, "found '=', expected: !, identifier, or 'end of string'");
        let e = LabelSelector::parse("a in (x").unwrap_err();
        assert_eq!(
            e,
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        let e = LabelSelector::parse("-bad=x").unwrap_err();
        assert!(
            e.starts_with(
                "unable to parse requirement: Invalid value: \"-bad\": name part must consist"
            ),
            "{e}"
        );
        let e = LabelSelector::parse("a=b c d").unwrap_err();
        assert!(e.starts_with("found 'c'"), "{e}");
        let e = LabelSelector::parse("!a=b").unwrap_err();
        assert_eq!(e, "found '=', expected: ',' or 'end of string'");
        let e = LabelSelector::parse("a=x/y").unwrap_err();
        assert!(e.contains("values[0][a]: Invalid value: \"x/y\""), "{e}");
        let e = LabelSelector::parse("a in ()").unwrap();
        assert_eq!(e.requirements()[0].values, vec![""]);
    }

    #[test]
    fn from_json_expressions() {
        let s = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["dev", "qa"]},
                {"key": "tier", "operator": "NotIn", "values": ["db"]},
                {"key": "team", "operator": "Exists"},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert!(s.matches(&obj(json!({"app": "web", "env": "qa", "team": "a"}))));
        assert!(!s.matches(&obj(json!({"app": "web", "env": "qa"}))));
        assert!(!s.matches(&obj(
            json!({"app": "web", "env": "qa", "team": "a", "canary": "y"})
        )));
        assert!(!s.matches(&obj(
            json!({"app": "web", "env": "qa", "team": "a", "tier": "db"})
        )));
        assert_eq!(
            s.to_string(),
            "app=web,!canary,env in (dev,qa),team,tier notin (db)"
        );
    }

    #[test]
    fn from_json_errors() {
        let e = LabelSelector::from_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
        )
        .unwrap_err();
        assert_eq!(e, "\"Gt\" is not a valid label selector operator");
        let e = LabelSelector::from_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
        )
        .unwrap_err();
        assert!(e.contains("values set can't be empty"), "{e}");
        let e = LabelSelector::from_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        )
        .unwrap_err();
        assert!(e.contains("values set must be empty"), "{e}");
    }

    #[test]
    fn field_selector_name_namespace() {
        let o = json!({"metadata": {"name": "sc-job", "namespace": "sc-system"}});
        let s = FieldSelector::parse("metadata.name=sc-job", "batch", "jobs").unwrap();
        assert!(s.matches(&o));
        let s = FieldSelector::parse(
            "metadata.name==sc-job,metadata.namespace=sc-system",
            "",
            "secrets",
        )
        .unwrap();
        assert!(s.matches(&o));
        let s = FieldSelector::parse("metadata.name!=sc-job", "", "configmaps").unwrap();
        assert!(!s.matches(&o));
        let s = FieldSelector::parse("metadata.namespace=", "", "namespaces").unwrap();
        assert!(s.matches(&json!({"metadata": {"name": "ns"}})));
        assert!(FieldSelector::parse("", "", "pods").unwrap().matches(&o));
    }

    #[test]
    fn field_selector_events() {
        let ev = json!({"metadata": {"name": "e1", "namespace": "sc-system"},
            "involvedObject": {"kind": "Job", "name": "sc-job", "namespace": "sc-system", "uid": "u1"},
            "reason": "Completed", "type": "Normal", "source": {"component": "job-controller"}});
        let s = FieldSelector::parse(
            "involvedObject.name=sc-job,involvedObject.namespace=sc-system,involvedObject.kind=Job,involvedObject.uid=u1",
            "",
            "events",
        )
        .unwrap();
        assert!(s.matches(&ev));
        let s = FieldSelector::parse(
            "source=job-controller,type!=Warning,reason=Completed",
            "",
            "events",
        )
        .unwrap();
        assert!(s.matches(&ev));
        let s = FieldSelector::parse("involvedObject.fieldPath=", "", "events").unwrap();
        assert!(s.matches(&ev));
        assert_eq!(
            FieldSelector::parse("reason=x", "events.k8s.io", "events").unwrap_err(),
            "field label not supported: reason"
        );
    }

    #[test]
    fn field_selector_pods() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "local", "restartPolicy": "Never"},
            "status": {"phase": "Running", "podIPs": [{"ip": "127.0.0.1"}]}});
        let s = FieldSelector::parse(
            "spec.nodeName=local,status.phase!=Succeeded,status.podIP=127.0.0.1",
            "",
            "pods",
        )
        .unwrap();
        assert!(s.matches(&pod));
        let s =
            FieldSelector::parse("spec.hostNetwork=false,spec.schedulerName=", "", "pods").unwrap();
        assert!(s.matches(&pod));
        let s = FieldSelector::parse("spec.nodeName=", "", "pods").unwrap();
        assert!(!s.matches(&pod));
        assert!(s.matches(&json!({"metadata": {"name": "q"}})));
    }

    #[test]
    fn field_selector_numbers_and_types() {
        let job = json!({"metadata": {"name": "j"}, "status": {"succeeded": 1}});
        assert!(
            FieldSelector::parse("status.successful=1", "batch", "jobs")
                .unwrap()
                .matches(&job)
        );
        assert!(
            FieldSelector::parse("status.successful=0", "batch", "jobs")
                .unwrap()
                .matches(&json!({}))
        );
        let sec = json!({"metadata": {"name": "s"}, "type": "helm.sh/release.v1"});
        assert!(
            FieldSelector::parse("type=helm.sh/release.v1", "", "secrets")
                .unwrap()
                .matches(&sec)
        );
        let ns = json!({"metadata": {"name": "n"}, "status": {"phase": "Active"}});
        assert!(
            FieldSelector::parse("status.phase=Active,name=n", "", "namespaces")
                .unwrap()
                .matches(&ns)
        );
        let rs = json!({"metadata": {"name": "r"}, "status": {"replicas": 2}});
        assert!(
            FieldSelector::parse("status.replicas!=0", "apps", "replicasets")
                .unwrap()
                .matches(&rs)
        );
    }

    #[test]
    fn field_selector_errors() {
        assert_eq!(
            FieldSelector::parse("spec.foo=bar", "", "pods").unwrap_err(),
            "field label not supported: spec.foo"
        );
        assert_eq!(
            FieldSelector::parse("type=x", "", "configmaps").unwrap_err(),
            "field label not supported: type"
        );
        assert_eq!(
            FieldSelector::parse("status.successful=1", "", "jobs").unwrap_err(),
            "field label not supported: status.successful"
        );
        assert_eq!(
            FieldSelector::parse("metadata.name", "", "pods").unwrap_err(),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
    }

    #[test]
    fn field_selector_escapes() {
        let o = json!({"metadata": {"name": "a,b"}});
        let s = FieldSelector::parse("metadata.name=a\\,b", "", "pods").unwrap();
        assert!(s.matches(&o));
        assert_eq!(
            FieldSelector::parse("metadata.name=a\\x", "", "pods").unwrap_err(),
            "invalid field selector: invalid escape sequence: \\x"
        );
        assert_eq!(
            FieldSelector::parse("metadata.name=a=b", "", "pods").unwrap_err(),
            "invalid field selector: unescaped character in value: '='"
        );
        // The leftmost operator splits the term.
        let s = FieldSelector::parse("metadata.name=a\\=b", "", "pods").unwrap();
        assert_eq!(s.requirements()[0].value, "a=b");
        // Parse errors come before unsupported field labels.
        assert_eq!(
            FieldSelector::parse("spec.foo=1,bad", "", "pods").unwrap_err(),
            "invalid selector: 'spec.foo=1,bad'; can't understand 'bad'"
        );
    }
}
