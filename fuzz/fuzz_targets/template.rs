//! Value templates: parse the input; a parsed template prints back to itself and renders with
//! any parameter values (the input's bytes reused as values). Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sc_model::Template;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (template, value) = text.split_once('\n').unwrap_or((&text, "v"));
    if let Ok(t) = Template::parse(template) {
        assert_eq!(Template::parse(&t.to_string()).as_ref(), Ok(&t));
        let out = t.render(|_| Some(value));
        assert!(out.is_some());
    }
    let _ = sc_model::template::percent_encode(&text);
});
