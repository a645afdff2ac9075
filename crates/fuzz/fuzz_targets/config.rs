//! `vpngw::config::parse` on arbitrary UTF-8: never panics (it may, and
//! mostly will, refuse the text), and its errors format.
//!
//! `psk_env` names resolve to a fixed key (names starting with `UNSET` are
//! unset). `psk_file` is read from disk by the parser: texts that could
//! name a device or a kernel file (a read that blocks or never ends) are
//! skipped, as are `\u` escapes that could spell one.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys", "/run", "\\u", "\\U"]
        .iter()
        .any(|bad| text.contains(bad))
    {
        return;
    }
    let env = |name: &str| -> Option<String> {
        (!name.starts_with("UNSET")).then(|| "fuzz-pre-shared-key-0123456789".to_string())
    };
    match vpngw::config::parse(Path::new("fuzz.toml"), text, &env) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(e) => {
            let _ = (e.to_string(), format!("{e:?}"));
        }
    }
});
