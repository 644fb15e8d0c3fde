//! Property harness for path normalization and route matching: the decision
//! is made on exactly the path forwarded, and no upstream that decodes more
//! (percent-escapes, `;parameters`, dot segments) reads it as a less
//! protected route. Replays `fuzz/corpus/paths/` first, then `FUZZ_CASES`
//! random paths built from hostile pieces.

mod fuzz_support;

use http::Method;
use proptest::prelude::*;
use sessiongate::auth::routes::RouteTable;
use sessiongate::config::{AuthPolicy, PathMatch, RouteConfig};
use sessiongate::proxy::path::normalize;

fn table() -> RouteTable {
    let r = |m: PathMatch, auth, methods: Option<Vec<Method>>| RouteConfig {
        matcher: m,
        auth,
        methods,
    };
    RouteTable::new(vec![
        r(PathMatch::Prefix("/healthz".into()), AuthPolicy::None, None),
        r(PathMatch::Prefix("/public/".into()), AuthPolicy::None, None),
        r(
            PathMatch::Exact("/api/open".into()),
            AuthPolicy::None,
            Some(vec![Method::GET]),
        ),
        r(
            PathMatch::Prefix("/opt/".into()),
            AuthPolicy::Optional,
            None,
        ),
        r(PathMatch::Prefix("/".into()), AuthPolicy::Required, None),
    ])
}

fn strictness(p: AuthPolicy) -> u8 {
    match p {
        AuthPolicy::None => 0,
        AuthPolicy::Optional => 1,
        AuthPolicy::Required => 2,
    }
}

/// The path as the most lenient upstream reads it: every escape decoded,
/// `;parameters` dropped from each segment, dot segments resolved, `//` merged.
fn lenient_upstream_view(path: &str) -> String {
    let b = path.as_bytes();
    let mut bytes = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|c| hex(*c)),
            b.get(i + 2).and_then(|c| hex(*c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                bytes.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                bytes.push(c);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&bytes).into_owned();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match seg.split(';').next().unwrap_or("") {
            "" | "." => trailing = last,
            ".." => {
                out.pop();
                trailing = last;
            }
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let slash = if trailing && !out.is_empty() { "/" } else { "" };
    format!("/{}{}", out.join("/"), slash)
}

fn check(path: &str) -> Result<(), TestCaseError> {
    let Ok(n) = normalize(path) else {
        return Ok(());
    };
    let n = n.into_owned();
    prop_assert!(n.starts_with('/'), "{path:?} -> {n:?}");
    prop_assert_eq!(
        normalize(&n).map(|x| x.into_owned()),
        Ok(n.clone()),
        "not idempotent: {:?}",
        path
    );
    for bad in ["//", "/./", "/../", "\\", "#"] {
        prop_assert!(!n.contains(bad), "{path:?} -> {n:?} contains {bad:?}");
    }
    prop_assert!(
        !n.ends_with("/.") && !n.ends_with("/.."),
        "{path:?} -> {n:?}"
    );
    let upper = n.to_ascii_uppercase();
    for bad in ["%2F", "%5C", "%00"] {
        prop_assert!(!upper.contains(bad), "{path:?} -> {n:?} contains {bad}");
    }
    for seg in upper.split('/') {
        let read = seg.replace("%2E", ".").replace("%3B", ";");
        let bare = read.split(';').next().unwrap_or("");
        prop_assert!(
            bare != "." && bare != "..",
            "{path:?} -> {n:?} keeps a dot segment in disguise: {seg:?}"
        );
    }
    prop_assert!(
        n.bytes().all(|c| c > 0x20 && c != 0x7f),
        "{path:?} -> {n:?}"
    );
    let t = table();
    for m in [Method::GET, Method::POST, Method::DELETE] {
        let decided = t.policy(&m, &n);
        // The forwarded path is `n`: an upstream that normalizes again decides alike.
        prop_assert_eq!(decided, t.policy(&m, &normalize(&n).expect("idempotent")));
        // An upstream that decodes more never lands on a less protected route.
        let lenient = lenient_upstream_view(&n);
        prop_assert!(
            strictness(decided) >= strictness(t.policy(&m, &lenient)),
            "{} {:?} -> {:?} decided {:?}, a lenient upstream reads {:?} as {:?}",
            m,
            path,
            n,
            decided,
            lenient,
            t.policy(&m, &lenient)
        );
    }
    Ok(())
}

#[test]
fn the_seed_corpus_keeps_the_path_properties() {
    let seeds = fuzz_support::corpus_lines("paths");
    assert!(seeds.len() > 20);
    for p in seeds {
        if let Err(e) = check(&p) {
            panic!("corpus path {p:?}: {e}");
        }
    }
}

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("public".to_owned()),
        Just("api".to_owned()),
        Just("open".to_owned()),
        Just("opt".to_owned()),
        Just("healthz".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E%2e".to_owned()),
        Just(".%2e".to_owned()),
        Just(";".to_owned()),
        Just("..;x".to_owned()),
        Just("%3b".to_owned()),
        Just("%2f".to_owned()),
        Just("%5C".to_owned()),
        Just("\\".to_owned()),
        Just("%00".to_owned()),
        Just("%25".to_owned()),
        Just("%".to_owned()),
        Just("%70".to_owned()),
        Just("%c0%ae".to_owned()),
        Just("%C3%A9".to_owned()),
        Just("%09".to_owned()),
        Just("%23".to_owned()),
        Just("~".to_owned()),
        "[a-zA-Z0-9._;=%~-]{1,6}",
    ]
}

/// One segment no upstream reads as anything else: starts with a character
/// that is not a dot (so never `.`/`..`, with or without `;parameters`),
/// then RFC 3986 `pchar`s, `;` parameters and upper-case escapes of
/// characters that are neither unreserved nor separators.
fn safe_segment() -> impl Strategy<Value = String> {
    let first = "[A-Za-z0-9_~!$&'()*+,=:@-]";
    let rest = prop_oneof![
        4 => "[A-Za-z0-9._~!$&'()*+,=:@;-]",
        1 => prop::sample::select(vec!["%20", "%3F", "%23", "%25", "%C3%A9", "%E2%82%AC", "%22"])
            .prop_map(str::to_owned),
    ];
    (first, prop::collection::vec(rest, 0..8)).prop_map(|(f, r)| format!("{f}{}", r.concat()))
}

proptest! {
    #![proptest_config(fuzz_support::config())]

    #[test]
    fn built_paths_keep_the_path_properties(
        segs in prop::collection::vec(prop::collection::vec(piece(), 1..3), 0..8),
        trailing in any::<bool>(),
    ) {
        let mut p = String::new();
        for s in &segs {
            p.push('/');
            p.push_str(&s.concat());
        }
        if trailing || p.is_empty() {
            p.push('/');
        }
        check(&p)?;
    }

    /// The converse, so that refusing everything does not pass: a path any
    /// upstream reads one way (no dot segments, no `//`, no escapes that
    /// decode to a separator or control, no backslash) is accepted unchanged.
    #[test]
    fn paths_every_upstream_reads_alike_are_accepted_unchanged(
        segs in prop::collection::vec(safe_segment(), 0..8),
        trailing in any::<bool>(),
    ) {
        let mut p = String::new();
        for s in &segs {
            p.push('/');
            p.push_str(s);
        }
        if trailing || p.is_empty() {
            p.push('/');
        }
        let n = normalize(&p).map(|n| n.into_owned());
        prop_assert_eq!(n, Ok(p.clone()), "a safe path was refused or changed");
        check(&p)?;
    }

    #[test]
    fn arbitrary_ascii_paths_keep_the_path_properties(tail in "[ -~]{0,40}") {
        check(&format!("/{tail}"))?;
    }

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        let _ = normalize(&s);
    }
}
