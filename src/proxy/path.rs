//! Request-path normalization (SPEC 6). The path that routing decides on is
//! the path that is forwarded, so the upstream can never see a different one.

use std::borrow::Cow;

/// Percent-decodes the unreserved characters RFC 3986 says are equivalent
/// (`%61` = `a`), upper-cases the hex of the rest, removes dot segments and
/// merges `//`. Refuses what upstream servers read in different ways.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, &'static str> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err("the path must start with /");
    }
    // One pass: refusals, and whether anything needs rewriting (an escape,
    // a parameter, `//` or a segment starting with a dot).
    let mut needs_work = false;
    let mut prev = 0u8;
    for &b in bytes {
        match b {
            b'\\' => return Err("backslash in the path"),
            0..=0x20 | 0x7f => return Err("control character or space in the path"),
            b'#' => return Err("fragment in the request target"),
            b'%' | b';' => needs_work = true,
            b'/' | b'.' if prev == b'/' => needs_work = true,
            _ => {}
        }
        prev = b;
    }
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(bytes)?;
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        // Read the segment as the most decoding upstream would: `%2E` is a
        // dot and `%3B` starts parameters (`%2e%2e%3b` is `..;` is `..`).
        // Escapes are upper-cased by now.
        let loose = seg.replace("%2E", ".").replace("%3B", ";");
        let bare = loose.split(';').next().unwrap_or("");
        let is_dot = bare == "." || bare == "..";
        if is_dot && (*seg != "." && *seg != "..") {
            return Err("a dot segment with parameters or encoding");
        }
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            "" if i != last => {} // `//` merged
            s => out.push(s),
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for s in &out {
        result.push('/');
        result.push_str(s);
    }
    if result.is_empty() {
        result.push('/');
    }
    Ok(Cow::Owned(result))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A UTF-8 lead byte that can only start an overlong (or impossible)
/// sequence: `%C0%AE` is `.` and `%C0%AF` is `/` to an old decoder.
fn overlong_utf8(lead: u8, next: Option<u8>) -> bool {
    match lead {
        0xC0 | 0xC1 | 0xF5..=0xFF => true,
        0xE0 => next.is_some_and(|n| (0x80..0xA0).contains(&n)),
        0xF0 => next.is_some_and(|n| (0x80..0x90).contains(&n)),
        _ => false,
    }
}

fn decode_unreserved(bytes: &[u8]) -> Result<String, &'static str> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b as char);
            i += 1;
            continue;
        }
        let (Some(h), Some(l)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err("malformed percent-encoding in the path");
        };
        let v = h * 16 + l;
        let next = (bytes.get(i + 3) == Some(&b'%'))
            .then(|| {
                let h = bytes.get(i + 4).copied().and_then(hex)?;
                let l = bytes.get(i + 5).copied().and_then(hex)?;
                Some(h * 16 + l)
            })
            .flatten();
        if overlong_utf8(v, next) {
            return Err("an overlong or invalid UTF-8 escape in the path");
        }
        match v {
            b'/' => return Err("encoded slash (%2F) in the path"),
            b'\\' => return Err("encoded backslash (%5C) in the path"),
            0 => return Err("encoded NUL (%00) in the path"),
            // pingora escapes raw controls in the request line (a tab becomes
            // `%09`), and some servers trim or split on them once decoded.
            0x01..=0x1f | 0x7f => return Err("encoded control character in the path"),
            // Keep an encoded dot encoded; the segment check above refuses `%2e` segments.
            b'.' => out.push_str("%2E"),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => out.push(v as char),
            _ => {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(h)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(l)]));
            }
        }
        i += 3;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    fn ok(p: &str) -> String {
        normalize(p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .into_owned()
    }

    /// The one-pass check sends exactly the paths with an escape, a
    /// parameter, `//` or `/.` to the rewriting path, for every short path
    /// over the characters that matter.
    #[test]
    fn only_paths_that_may_change_are_rewritten() {
        let alphabet = [b'/', b'.', b'a', b'%', b';'];
        let mut paths = vec![b"/".to_vec()];
        for _ in 0..6 {
            let longer: Vec<Vec<u8>> = paths
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| [p.as_slice(), &[*c]].concat()))
                .collect();
            paths.extend(longer.into_iter().filter(|p| p.len() <= 7));
            paths.sort();
            paths.dedup();
        }
        assert!(paths.len() > 5_000, "{}", paths.len());
        for p in paths {
            let p = String::from_utf8(p).unwrap();
            let may_change =
                p.contains('%') || p.contains("//") || p.contains("/.") || p.contains(';');
            if let Ok(n) = normalize(&p) {
                let borrowed = matches!(n, std::borrow::Cow::Borrowed(_));
                assert_eq!(borrowed, !may_change, "{p}");
            }
        }
    }

    #[test]
    fn plain_paths_pass_untouched() {
        for p in [
            "/",
            "/api/things",
            "/a/b.json",
            "/a/.well-known/x",
            "/a-b_c~d",
        ] {
            assert_eq!(ok(p), p);
        }
    }

    #[test]
    fn dot_segments_and_double_slashes_are_resolved() {
        assert_eq!(ok("/public/../api/x"), "/api/x");
        assert_eq!(ok("/a/./b"), "/a/b");
        assert_eq!(ok("/a//b"), "/a/b");
        assert_eq!(ok("//a"), "/a");
        assert_eq!(ok("/../../x"), "/x");
        assert_eq!(ok("/a/.."), "/");
        assert_eq!(ok("/a/b/."), "/a/b/");
        assert_eq!(ok("/a/"), "/a/");
        assert_eq!(ok("/healthz/../admin"), "/admin");
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_upper_cased() {
        assert_eq!(ok("/%61dmin"), "/admin");
        assert_eq!(ok("/a%20b"), "/a%20b");
        assert_eq!(ok("/a%3fb"), "/a%3Fb");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for p in [
            "/public/a%2Fb",
            "/public/a%2fb",
            "/public/a%5Cb",
            "/public/a%5cb",
            "/public/%2e%2e/x",
            "/public/%2E/x",
            "/public/.%2e/x",
            "/public/a\\b",
            "/public/a%00b",
            "/public/..;x/y",
            "/public/.;x/y",
            "/public/%2e%2e%3b/x",
            "/public/.%3bx/y",
            "/public/%c0%ae%c0%ae/x",
            "/public/x%C0%AFy",
            "/public/%e0%80%ae",
            "/public/%f0%80%80%af",
            "/public/%ff",
            "/public/%09/../x",
            "/public/x%0d%0a",
            "/public/%7F",
            "/a%zz",
            "/a%2",
            "relative",
            "/a#b",
            "/a\0b",
        ] {
            assert!(normalize(p).is_err(), "{p:?} was accepted");
        }
    }

    #[test]
    fn genuine_utf8_escapes_are_kept() {
        assert_eq!(ok("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(ok("/%E2%82%AC/%F0%9F%98%80"), "/%E2%82%AC/%F0%9F%98%80");
    }

    #[test]
    fn parameters_on_ordinary_segments_are_kept() {
        assert_eq!(ok("/a;v=1/b"), "/a;v=1/b");
    }
}
