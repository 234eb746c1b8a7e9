//! Path readings (strict, folded, trimmed, with `;` kept, after a host) and the paths refused.

use super::*;

fn norm(path: &str) -> Result<String, PathError> {
    normalize(path).map(|p| String::from_utf8_lossy(&p).into_owned())
}

/// The folded reading of `path`, or its strict reading where that is the same.
fn folded(path: &str) -> Result<String, PathError> {
    let strict = normalize(path)?;
    let folded = folded_reading(&strict, Params::Dropped)?;
    let bytes = folded.as_deref().unwrap_or(&strict);
    Ok(String::from_utf8(bytes.to_vec()).expect("UTF-8"))
}

#[test]
fn a_path_that_starts_with_two_slashes_is_read_after_a_host_too() {
    assert_eq!(host_reading("//public/videos/x"), Some("/videos/x"));
    assert_eq!(host_reading("////public/videos/x"), Some("/videos/x"));
    assert_eq!(host_reading("//public//videos/"), Some("//videos/"));
    assert_eq!(host_reading("//public"), Some("/"));
    assert_eq!(host_reading("//"), Some("/"));
    assert_eq!(host_reading("/public//videos/x"), None);
    assert_eq!(host_reading("/videos/x"), None);
}

#[test]
fn the_kept_reading_keeps_semicolons_in_their_segment() {
    let kept =
        |path: &str| kept_reading(path).map(|kept| kept.map(|k| String::from_utf8(k).unwrap()));
    for (path, reading) in [
        ("/videos/free;/x", "/videos/free;/x"),
        ("/videos/free%3B/x", "/videos/free;/x"),
        ("/videos/free%3b/x", "/videos/free;/x"),
        ("/a;p=1/b;q/", "/a;p=1/b;q/"),
        ("//a;x//b", "/a;x/b"),
        ("/a/;/b", "/a/;/b"),
        ("/vid%65os;x", "/videos;x"),
        // No dot segment to this reading; `normalize` refuses it first.
        ("/a/..;/b", "/a/..;/b"),
    ] {
        assert_eq!(kept(path).unwrap().as_deref(), Some(reading), "{path}");
    }
    assert_eq!(kept("/videos/free/x"), Ok(None));
    assert_eq!(kept("/a%3/b"), Ok(None));
    assert_eq!(kept("/a;%zz").unwrap_err(), PathError::BadEscape);

    let folded = |strict: &[u8], params| {
        let folded = folded_reading(strict, params).unwrap().unwrap();
        String::from_utf8(folded).unwrap()
    };
    assert_eq!(folded(b"/Videos/Free;X/", Params::Kept), "/videos/free;x/");
    assert_eq!(folded(b"/Videos/Free;X/", Params::Dropped), "/videos/free/");
    let full_width = "/Videos/free\u{FF1B}x/".as_bytes();
    assert_eq!(folded(full_width, Params::Kept), "/videos/free;x/");
    assert_eq!(folded(full_width, Params::Dropped), "/videos/free/");
    assert!(folds_to_semicolon(full_width));
    assert!(folds_to_semicolon("/a\u{37E}".as_bytes()));
    assert!(!folds_to_semicolon(b"/a;b"));
    assert!(!folds_to_semicolon("/caf\u{E9}".as_bytes()));
}

#[test]
fn normalisation_decodes_drops_parameters_and_keeps_trailing_slash() {
    assert_eq!(norm("/a//b/").unwrap(), "/a/b/");
    assert_eq!(norm("/a;p=1/b;q/").unwrap(), "/a/b/");
    assert_eq!(norm("/vid%65os/x").unwrap(), "/videos/x");
    assert_eq!(norm("/.well-known/x").unwrap(), "/.well-known/x");
    assert_eq!(
        norm("/a/...").unwrap(),
        "/a/...",
        "not a dot segment to the strict reading"
    );
    assert_eq!(norm("/..").unwrap_err(), PathError::AboveRoot);
    assert_eq!(norm("/a%5cb").unwrap_err(), PathError::Ambiguous);
    assert_eq!(norm("/a%2Fb").unwrap_err(), PathError::Ambiguous);
    assert_eq!(norm("/a%zz").unwrap_err(), PathError::BadEscape);
    assert_eq!(norm("*").unwrap_err(), PathError::NotAbsolute);
    assert!(matches!(
        normalize("/plain/path").unwrap(),
        Cow::Borrowed(_)
    ));
}

#[test]
fn every_spelling_of_a_dot_segment_is_refused() {
    for path in [
        "/a/./b",
        "/a/../b",
        "/a/b/..",
        "/a/b/.",
        "/./a",
        "/a/..;/b",
        "/a/..;x=1/b",
        "/a/.;x/b",
        "/a/%2e%2e/b",
        "/a/%2E%2E/b",
        "/a/%2e./b",
        "/a/.%2e/b",
        "/a/%2e/b",
        "/a/%2e;x/b",
    ] {
        assert_eq!(norm(path).unwrap_err(), PathError::DotSegment, "{path}");
    }
    // Only the folded reading finds these.
    for path in [
        "/a/.../b",
        "/a/..%20/b",
        "/a/.%20/b",
        "/a/\u{FF0E}\u{FF0E}/b",
        "/a/%EF%BC%8E/b",
        "/a/\u{2025}/b",
        "/a/.\u{200B}./b",
        "/a/.%C2%AD./b",
        "/a/\u{FE52}/b",
    ] {
        assert!(normalize(path).is_ok(), "{path}");
        assert_eq!(folded(path).unwrap_err(), PathError::DotSegment, "{path}");
    }
}

#[test]
fn a_plain_path_is_its_own_strict_and_folded_reading() {
    // Every path of up to five characters from an alphabet of the bytes
    // that matter: each one called plain must read as itself both ways.
    let alphabet: &[&str] = &[
        "/", ".", " ", "a", "B", "%", "2e", ";", ":", "\\", "\0", "\t", "é",
    ];
    let mut paths = vec![String::new()];
    let mut plain = 0;
    for _ in 0..5 {
        let mut longer = Vec::new();
        for path in &paths {
            for piece in alphabet {
                longer.push(format!("{path}{piece}"));
            }
        }
        for path in longer.iter().flat_map(|p| [p.clone(), format!("/{p}")]) {
            if !is_plain(path.as_bytes()) {
                continue;
            }
            plain += 1;
            let strict = normalize(&path).unwrap();
            assert_eq!(strict.as_ref(), path.as_bytes(), "{path:?}");
            assert_eq!(
                folded_reading(&strict, Params::Dropped),
                Ok(None),
                "{path:?}"
            );
        }
        paths = longer;
    }
    assert!(plain > 600, "only {plain} plain paths");
    for path in [
        "/videos/page-8k.html",
        "/",
        "/a/b.mp4",
        "/x/y/",
        "/a-b_c~d/e.f.g",
    ] {
        assert!(is_plain(path.as_bytes()), "{path}");
    }
    for path in [
        "",
        "x",
        "/.well-known/a",
        "/a./b",
        "/a /b",
        "/a//b",
        "/A",
        "/%61",
        "/ a",
        "/a:b",
        "/a\tb",
        "/a\x7fb",
    ] {
        assert!(!is_plain(path.as_bytes()), "{path}");
    }
}

#[test]
fn ascii_paths_in_folded_form_are_not_read_again() {
    for path in ["/videos/x", "/", "/a/b.mp4", "/.well-known/acme"] {
        let strict = normalize(path).unwrap();
        assert_eq!(folded_reading(&strict, Params::Dropped), Ok(None), "{path}");
    }
    assert_eq!(folded("/Videos./X ").unwrap(), "/videos/x");
    assert_eq!(
        folded("/a/%20/b").unwrap(),
        "/a/b",
        "a blank segment collapses"
    );
}

#[test]
fn the_folded_reading_folds_case_compatibility_accents_and_invisibles() {
    for path in [
        "/\u{FF0F}\u{FF56}\u{FF49}\u{FF44}\u{FF45}\u{FF4F}\u{FF53}\u{FF0F}x",
        "/%EF%BC%B6IDEOS/x",
        "/V\u{130}DEOS/x",
        "/v\u{ED}deos/x",
        "/vi%CC%81deos/x",
        "/vid\u{200B}eos/x",
        "/vid\u{00AD}eos/x",
        "/vid%C2%ADeos/x",
        "/vid\u{FEFF}eos/x",
        "/v\u{131}deos/x",
        "/v%EDdeos/x",
    ] {
        assert_eq!(folded(path).unwrap(), "/videos/x", "{path}");
    }
    assert_eq!(folded("/\u{17F}ecret/").unwrap(), "/secret/");
    assert_eq!(folded("/stra\u{DF}e/").unwrap(), "/strasse/");
    assert_eq!(folded("/\u{FB01}les/").unwrap(), "/files/");
    assert_eq!(folded("/\u{C6}ther/\u{D8}l/").unwrap(), "/aether/ol/");
    assert_eq!(folded("/\u{3B1}\u{3B2}/").unwrap(), "/\u{3B1}\u{3B2}/");
    assert_eq!(
        folded("/a\u{FF3C}b").unwrap_err(),
        PathError::Ambiguous,
        "a full-width backslash folds to a backslash"
    );
}
