//! Property tests of value templates: parsing arbitrary text never panics, a parsed template
//! prints back to itself, rendering inserts exactly the parameters (percent-encoded with
//! `|url`), and the catalog's own templates render any parameter values.

use proptest::prelude::*;
use sc_model::Template;
use sc_model::template::{Segment, percent_encode};
use std::collections::BTreeMap;

/// Text that is mostly template syntax.
fn template_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("${".to_string()),
            Just("}".to_string()),
            Just("|url".to_string()),
            Just("|".to_string()),
            "[a-zA-Z0-9]{1,6}",
            any::<String>(),
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parsing_arbitrary_text_never_panics(text in prop_oneof![template_text(), any::<String>()]) {
        if let Ok(t) = Template::parse(&text) {
            // Printing gives text that parses to the same template.
            let printed = t.to_string();
            prop_assert_eq!(Template::parse(&printed), Ok(t.clone()));
            // Without parameters it renders the text as given.
            if t.params().is_empty() {
                prop_assert_eq!(t.render(|_| None), Some(text.clone()));
            }
        } else {
            prop_assert!(text.contains("${"), "{text:?} refused without a parameter");
        }
    }

    #[test]
    fn rendering_inserts_the_values(
        text in template_text(),
        values in proptest::collection::vec(any::<String>(), 1..4),
    ) {
        let Ok(t) = Template::parse(&text) else { return Ok(()) };
        let params: BTreeMap<String, String> = t
            .params()
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), values[i % values.len()].clone()))
            .collect();
        let out = t.render(|name| params.get(name).map(String::as_str));
        prop_assert!(out.is_some());
        let mut want = String::new();
        for s in t.segments() {
            match s {
                Segment::Literal(l) => want.push_str(l),
                Segment::Param { name, url } => {
                    let v = &params[name];
                    want.push_str(&if *url { percent_encode(v) } else { v.clone() });
                }
            }
        }
        prop_assert_eq!(out, Some(want));
        // A missing parameter renders nothing.
        if !t.params().is_empty() {
            prop_assert_eq!(t.render(|_| None), None);
        }
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved(s in any::<String>()) {
        let e = percent_encode(&s);
        let bytes = e.as_bytes();
        let mut i = 0;
        let mut decoded = Vec::new();
        while i < bytes.len() {
            if bytes[i] == b'%' {
                prop_assert!(i + 2 < bytes.len(), "a cut escape in {e}");
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                decoded.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 3;
            } else {
                prop_assert!(is_unreserved(bytes[i]), "{e}");
                decoded.push(bytes[i]);
                i += 1;
            }
        }
        prop_assert_eq!(decoded, s.as_bytes());
    }

    #[test]
    fn catalog_templates_render_any_values(value in any::<String>()) {
        // Every documented key's template renders whatever its parameters hold, and holds
        // nothing but the literal text and those values.
        for key in sc_model::catalog().all_keys() {
            let out = key.template.render(|_| Some(value.as_str()));
            prop_assert!(out.is_some(), "{} of {}", key.name, key.target);
            let reparsed = Template::parse(&key.template.to_string());
            prop_assert_eq!(reparsed.as_ref(), Ok(&key.template), "{} of {}", key.name, key.target);
        }
    }
}
