//! Routes by prefix and by query, under every reading of a path.

use super::*;

fn spec(prefix: &str, access: Access) -> RouteSpec {
    RouteSpec {
        prefix: Some(prefix.into()),
        query: Vec::new(),
        access,
        token: None,
    }
}

fn query_spec(names: &[&str], access: Access) -> RouteSpec {
    RouteSpec {
        prefix: None,
        query: names.iter().map(|n| n.to_string()).collect(),
        access,
        token: None,
    }
}

fn routes(specs: &[(&str, Access)]) -> Result<RouteTable, RouteError> {
    let specs: Vec<RouteSpec> = specs.iter().map(|(p, a)| spec(p, *a)).collect();
    RouteTable::new(&specs)
}

fn gated(t: &RouteTable, path: &str) -> bool {
    t.lookup(path, None).unwrap().access.is_gated()
}

fn table() -> RouteTable {
    routes(&[
        ("/videos/", Access::Session),
        ("/", Access::Public),
        ("/videos/free/", Access::Public),
    ])
    .unwrap()
}

/// WordPress: everything public but the pages named by query.
fn wordpress() -> RouteTable {
    RouteTable::new(&[
        spec("/", Access::Public),
        query_spec(&["p", "page_id", "preview"], Access::Session),
        spec("/members/", Access::Session),
    ])
    .unwrap()
}

fn access(t: &RouteTable, path: &str, query: &str) -> Access {
    t.lookup(path, Some(query)).unwrap().access
}

#[test]
fn longest_prefix_wins_whatever_the_config_order() {
    let t = table();
    assert!(gated(&t, "/videos/a"));
    assert!(!gated(&t, "/videos/free/a"));
    assert!(!gated(&t, "/about"));
    assert_eq!(
        t.lookup("/videos/free/x", None).unwrap().prefix.as_deref(),
        Some("/videos/free/")
    );
}

#[test]
fn a_path_no_route_matches_is_gated() {
    let t = routes(&[("/public/", Access::Public)]).unwrap();
    let m = t.lookup("/other", None).unwrap();
    assert_eq!(m.access, Access::Session);
    assert_eq!(m.prefix, None);
}

#[test]
fn tricks_that_reach_a_gated_path_are_still_gated() {
    let t = table();
    for path in [
        "//videos/a",
        "/vid%65os/a",
        "/videos;/a",
        "/videos;jsessionid=1/a",
        "/videos/a;x=1",
        "/Videos/a",
        "/VIDEOS%20/a",
        "/videos./a",
        "/videos%20/a",
        "/videos",
        "/videos;x",
    ] {
        assert!(gated(&t, path), "{path} must be gated");
    }
    assert!(!gated(&t, "/videos/free/x"));
    assert!(!gated(&t, "/Videos/Free/x"), "both readings say public");
    assert!(!gated(&t, "/about."));
}

#[test]
fn a_dot_segment_in_any_spelling_is_refused_not_resolved() {
    let t = table();
    for path in [
        "/public/../videos/a",
        "/./videos/a",
        "/videos/./a",
        "/videos/free/../a",
        "/x/..;/videos/a",
        "/x/.;/videos/a",
        "/x/%2e%2e/videos/a",
        "/x/%2e./videos/a",
        "/x/.%2e/videos/a",
        "/x/.../videos/a",
        "/x/\u{FF0E}\u{FF0E}/videos/a",
        "/x/\u{FF0E}/videos/a",
        "/x/%EF%BC%8E%EF%BC%8E/videos/a",
    ] {
        let err = t.lookup(path, None).unwrap_err();
        assert!(
            matches!(err, PathError::DotSegment | PathError::AboveRoot),
            "{path}: {err:?}"
        );
    }
    assert_eq!(t.lookup("/..", None).unwrap_err(), PathError::AboveRoot);
    assert_eq!(
        t.lookup("/videos/.hidden", None).unwrap().access,
        Access::Session
    );
}

#[test]
fn the_unicode_reading_gates_what_a_folding_server_would_serve_from_a_gated_route() {
    let t = table();
    for path in [
        "/\u{FF0F}\u{FF56}\u{FF49}\u{FF44}\u{FF45}\u{FF4F}\u{FF53}\u{FF0F}a",
        "/\u{FF56}\u{FF49}\u{FF44}\u{FF45}\u{FF4F}\u{FF53}/a",
        "/V\u{130}DEOS/a",
        "/v\u{ED}deos/a",
        "/v%C3%ADdeos/a",
        "/vi\u{301}deos/a",
        "/vid\u{200B}eos/a",
        "/vid\u{00AD}eos/a",
        "/vid%E2%80%8Beos/a",
        "/v\u{131}deos/a",
        "/v%EDdeos/a",
        "/V\u{130}DEOS./a",
    ] {
        let m = t.lookup(path, None).unwrap();
        assert_eq!(m.access, Access::Session, "{path}");
        assert_eq!(m.prefix.as_deref(), Some("/videos/"), "{path}");
    }
    // Under the public sub-route in every reading: still public.
    assert!(!gated(&t, "/v\u{ED}deos/free/a"));
    assert!(!gated(&t, "/caf\u{E9}/menu"));

    let t = routes(&[("/secret/", Access::Session), ("/", Access::Public)]).unwrap();
    assert!(gated(&t, "/\u{17F}ecret/plans"), "long s");
    assert!(gated(&t, "/\u{17F}ECRET/plans"));
    assert!(gated(&t, "/%C5%BFecret/plans"));
    assert!(
        !gated(&t, "/s\u{E9}cretaire/"),
        "another word is not folded into the route"
    );
}

#[test]
fn a_prefix_is_folded_too_so_plain_spellings_reach_it() {
    let t = routes(&[("/vid\u{E9}os/", Access::Session), ("/", Access::Public)]).unwrap();
    for path in [
        "/vid\u{E9}os/a",
        "/videos/a",
        "/VIDEOS/a",
        "/vide\u{301}os/a",
    ] {
        assert!(gated(&t, path), "{path}");
    }
    assert!(!gated(&t, "/videoss/a"));
    assert!(
        routes(&[("/a/\u{FF0E}\u{FF0E}/", Access::Public)]).is_err(),
        "a prefix that folds into a dot segment can never match"
    );
}

#[test]
fn a_folded_reading_never_opens_a_strictly_gated_path() {
    // "/Public/" gated, "/public/" open: to a case-insensitive server the
    // two are one, so both spellings are gated.
    let t = routes(&[("/public/", Access::Public), ("/Public/", Access::Session)]).unwrap();
    assert!(gated(&t, "/Public/x"));
    assert!(gated(&t, "/PUBLIC/x"));
    assert!(gated(&t, "/public/x"));
    assert!(gated(&t, "/p\u{FA}blic/x"));
    let m = t.lookup("/public/x", None).unwrap();
    assert_eq!(m.prefix.as_deref(), Some("/Public/"));
}

#[test]
fn a_path_gets_the_strictest_level_of_either_reading() {
    assert!(Access::Public < Access::Session);
    let t = table();
    // Strict reading: "/videos./a" under "/", public. Folded reading
    // (trailing dots dropped): "/videos/a", session.
    let m = t.lookup("/videos./a", None).unwrap();
    assert_eq!(m.access, Access::Session);
    assert_eq!(m.prefix.as_deref(), Some("/videos/"));
    // Both readings public: the strict reading's route is reported.
    let open = routes(&[("/a/", Access::Public), ("/A/", Access::Public)]).unwrap();
    assert_eq!(
        open.lookup("/A/x", None).unwrap().prefix.as_deref(),
        Some("/A/")
    );
}

#[test]
fn route_prefixes_must_be_normal_and_unique() {
    assert!(routes(&[("videos/", Access::Session)]).is_err());
    assert!(routes(&[("/a/../b", Access::Session)]).is_err());
    assert!(routes(&[("/a/./", Access::Session)]).is_err());
    let err = routes(&[("/a", Access::Session), ("/a", Access::Public)]).unwrap_err();
    assert_eq!(err.index, 1);
    assert_eq!(err.field, "prefix");
}

#[test]
fn a_typical_table_needs_no_folded_look_at_a_plain_path() {
    assert!(table().all_folded);
    assert!(!routes(&[("/Videos/", Access::Session)]).unwrap().all_folded);
}

#[test]
fn a_query_parameter_takes_its_route_whatever_the_path() {
    let t = wordpress();
    assert_eq!(access(&t, "/", "p=42"), Access::Session);
    assert_eq!(access(&t, "/index.php", "page_id=7"), Access::Session);
    assert_eq!(
        access(&t, "/some/page/", "preview=true&x=1"),
        Access::Session
    );
    assert_eq!(access(&t, "/", "s=video&paged=2"), Access::Public);
    assert_eq!(access(&t, "/", "pp=1&xp=2&page=3"), Access::Public);
    assert_eq!(access(&t, "/", ""), Access::Public);
    assert!(!gated(&t, "/"));
    let m = t.lookup("/", Some("x=1&p=42")).unwrap();
    assert_eq!(m.prefix.as_deref(), Some("?p&page_id&preview"));
    assert_eq!(m.spec, Some(1));
    assert_eq!(m.index, Some(2));
    assert_eq!(
        t.prefixes().collect::<Vec<_>>(),
        ["/members/", "/", "?p&page_id&preview"]
    );
    assert_eq!(t.len(), 3);
    // The path's own route is reported when it is as strict.
    let m = t.lookup("/members/x", Some("p=1")).unwrap();
    assert_eq!(m.prefix.as_deref(), Some("/members/"));
}

#[test]
fn query_parameter_names_match_in_every_spelling_a_server_reads() {
    let t = wordpress();
    for query in [
        "p",
        "p=",
        "P=42",
        "p[]=42",
        "p[0]=42",
        "%70=42",
        "%50=42",
        "%u0070=42",
        "page.id=7",
        "page+id=7",
        "page%20id=7",
        "Page_ID=7",
        "x=1;p=42",
        "x=1%26p=42",
        "p%3D=42",
        "p%00=42",
        "+p=42",
        "a=1&&preview=1",
    ] {
        assert_eq!(access(&t, "/", query), Access::Session, "?{query}");
    }
    for query in ["p_=1", "q=p", "x=p%3D1", "pp=42", "page_ids=1", "%zz=1"] {
        assert_eq!(access(&t, "/", query), Access::Public, "?{query}");
    }
}

#[test]
fn a_bracket_never_closed_names_what_php_reads_it_as() {
    // PHP files "page[id" as "page_id": WordPress serves page 42.
    let t = wordpress();
    for query in ["page[id=42", "page%5Bid=42", "x=1&Page[Id=42", "page[id"] {
        assert_eq!(access(&t, "/", query), Access::Session, "?{query}");
    }
    let mut found = t.lookup("/", None).unwrap();
    t.raise_by_form(&mut found, Some("comment=x&page[id=42"));
    assert_eq!(found.access, Access::Session, "a form body is read alike");
    // Closed, it is an array named "page", which no route names.
    assert_eq!(access(&t, "/", "page[id]=42"), Access::Public);
}

#[test]
fn query_routes_are_checked_when_they_are_written() {
    let both = RouteSpec {
        prefix: Some("/".into()),
        ..query_spec(&["p"], Access::Session)
    };
    assert_eq!(RouteTable::new(&[both]).unwrap_err().field, "query");
    let neither = query_spec(&[], Access::Session);
    assert_eq!(RouteTable::new(&[neither]).unwrap_err().field, "prefix");
    for open in [Access::Public, Access::Token] {
        let err = RouteTable::new(&[query_spec(&["p"], open)]).unwrap_err();
        assert_eq!(err.field, "access");
    }
    for bad in ["p=1", "a&b", "[]", "", " ", "%70"] {
        let err = RouteTable::new(&[query_spec(&[bad], Access::Session)]).unwrap_err();
        assert_eq!(err.field, "query", "{bad:?}");
    }
    // Only query routes: every path is still gated, a route for it or not.
    let t = RouteTable::new(&[query_spec(&["p"], Access::Session)]).unwrap();
    assert!(gated(&t, "/"));
    assert!(!t.is_empty());
}

#[test]
fn spaces_controls_and_stream_suffixes_around_a_segment_do_not_hide_it() {
    let t = table();
    // Java's `trim`, .NET's `Trim` and Python's `strip` drop them from both ends.
    for path in [
        "/%20videos/x",
        "/%20%20videos/x",
        "/videos%20/x",
        "/%C2%A0videos/x",
        "/videos%C2%A0/x",
        "/%E3%80%80videos/x",
        "/%E1%9A%80videos/x",
        "/%C2%85videos/x",
        "/VIDEOS%20/x",
        // NTFS reads "videos::$DATA" and "videos:$i30:$INDEX_ALLOCATION" as "videos".
        "/videos::$INDEX_ALLOCATION/x",
        "/videos:$i30:$INDEX_ALLOCATION/x",
        "/videos::$DATA/x",
        "/Videos:x/y",
    ] {
        assert!(gated(&t, path), "{path}");
    }
    // Servers disagree on control characters, wherever they are: refused.
    for path in [
        "/videos%09/x",
        "/%09videos/x",
        "/videos%0a/x",
        "/videos%0d%0a/x",
        "/%0dvideos/x",
        "/videos%0b/x",
        "/videos%0c/x",
        "/videos%1f/x",
        "/videos%7f/x",
        "/about%09",
    ] {
        assert_eq!(
            t.lookup(path, None).unwrap_err(),
            PathError::Ambiguous,
            "{path}"
        );
    }
    for path in ["/about%20us", "/wiki/Special:Search", "/a%20/b", "/%20x"] {
        assert!(!gated(&t, path), "{path}");
    }
    // A segment of dots and spaces is a dot segment, however it is spaced.
    assert_eq!(
        t.lookup("/about/%20../videos", None).unwrap_err(),
        PathError::DotSegment
    );
    assert_eq!(
        t.lookup("/about/..::$DATA/videos", None).unwrap_err(),
        PathError::DotSegment
    );
}

#[test]
fn a_decoded_question_mark_or_hash_is_read_as_the_end_of_the_path() {
    let t = table();
    for path in [
        "/videos%3Fx",
        "/videos%3f/x",
        "/videos%23/x",
        "/Videos%3F",
        "/videos.json%3F",
    ] {
        assert!(gated(&t, path), "{path}");
    }
    for path in ["/about%3F", "/what%3Fnow/x", "/a%23b"] {
        assert!(!gated(&t, path), "{path}");
    }
    // What follows it is a query to such a server.
    let wp = wordpress();
    for path in ["/%3Fp=42", "/index.php%3Fp=42", "/x%3Fa=1%26page_id=2"] {
        assert_eq!(
            wp.lookup(path, None).unwrap().access,
            Access::Session,
            "{path}"
        );
    }
    assert_eq!(wp.lookup("/%3Fq=42", None).unwrap().access, Access::Public);
    // Cut before a dot segment: the server that cuts there resolves it.
    assert_eq!(
        t.lookup("/about/..%3F/videos", None).unwrap_err(),
        PathError::DotSegment
    );
}

#[test]
fn a_format_suffix_with_a_trailing_slash_is_the_directory_page_too() {
    let t = table();
    for path in [
        "/videos.json/",
        "/videos.json//",
        "/Videos.JSON/",
        "/videos.html/",
        "/videos.json;v=1/",
        "/videos.json%20/",
    ] {
        assert!(gated(&t, path), "{path}");
    }
    for path in ["/videos.old/x", "/videos.json/x", "/videosx/"] {
        assert!(!gated(&t, path), "{path}");
    }
}

#[test]
fn a_public_prefix_with_a_colon_never_opens_what_its_gated_parent_covers() {
    let t = routes(&[
        ("/", Access::Public),
        ("/wiki/", Access::Session),
        ("/wiki/Special:Login/", Access::Public),
    ])
    .unwrap();
    // Read by a case-insensitive or Windows server as under "/wiki/".
    for path in [
        "/WIKI/special/x",
        "/Wiki/Special/secret",
        "/wiki./special/x",
        "/wiki/special/x",
    ] {
        assert!(gated(&t, path), "{path}");
    }
    // Windows reads the public route's own paths as "/wiki/Special/...": any
    // reading gated is gated.
    assert!(gated(&t, "/wiki/Special:Login/x"));
}

#[test]
fn a_format_suffix_only_ever_makes_a_path_stricter() {
    // "/videos/free.members/" is a folder under the gated "/videos/" to a
    // static server, whatever "/videos/free/" opens.
    let t = table();
    for path in [
        "/videos/free.members/",
        "/videos/free.json",
        "/videos/free.json/",
    ] {
        assert!(gated(&t, path), "{path}");
    }
    let open = routes(&[("/", Access::Session), ("/videos/", Access::Public)]).unwrap();
    for path in ["/videos.secret/", "/videos.json"] {
        assert!(gated(&open, path), "{path}");
    }
    assert!(!gated(&open, "/videos/x"));
    assert!(!gated(&open, "/videos"));
}

#[test]
fn the_cut_at_a_decoded_question_mark_sees_through_parameters_and_hashes() {
    let wp = wordpress();
    for path in [
        "/x%23%3Fp=42",
        "/;%3Fp=42",
        "/index.php;%3Fp=42",
        "/x%3Bq%3Fp=42",
        "/%3Fp=42",
    ] {
        assert_eq!(
            wp.lookup(path, None).unwrap().access,
            Access::Session,
            "{path}"
        );
    }
    for path in ["/x%23p=42", "/%3Fq=1", "/a%3F"] {
        assert_eq!(
            wp.lookup(path, None).unwrap().access,
            Access::Public,
            "{path}"
        );
    }
}

#[test]
fn a_path_that_starts_with_two_slashes_is_read_after_a_host_too() {
    // To PHP's parse_url and Node's URL, "//public/videos/x" is the path
    // "/videos/x" on the host "public".
    let t = routes(&[
        ("/public/", Access::Public),
        ("/videos/", Access::Session),
        ("/videos/free/", Access::Public),
        ("/", Access::Public),
    ])
    .unwrap();
    for path in [
        "//public/videos/intro",
        "///public/videos/intro",
        "//public//videos/intro",
        "//public/Videos./intro",
        "//public/videos%3Fx",
        "//x/videos",
    ] {
        assert!(gated(&t, path), "{path}");
    }
    for path in [
        "/public/videos/intro",
        "/public//videos/intro",
        "//public/",
        "//public",
        "//x/public/videos",
        "//x/videos/free/a",
    ] {
        assert!(!gated(&t, path), "{path}");
    }
    // The readings after a host refuse what they would refuse anyway.
    assert_eq!(
        t.lookup("//public/../videos", None).unwrap_err(),
        PathError::DotSegment
    );
}

#[test]
fn a_semicolon_kept_in_its_segment_is_a_reading_too() {
    // nginx, Apache, PHP, Node and Django read "/videos/free;/x" as the
    // segment "free;" under "/videos/", not as "/videos/free/x".
    let t = table();
    for path in [
        "/videos/free;/premium-video",
        "/videos/free%3B/premium-video",
        "/videos/free%3b/premium-video",
        "/videos/free;x=1/premium-video",
        "/videos/free;",
        // Folded: "/videos/free;/x".
        "/Videos/Free;/x",
        "/videos/free;./x",
        "/videos/free\u{FF1B}/x",
        // Cut at a decoded "?", and after a host.
        "/videos/free;/x%3Fy",
        "//host/videos/free;/x",
    ] {
        assert!(gated(&t, path), "{path}");
    }
    for path in ["/videos/free/x;y", "/videos/free/;/x", "/about;x/y", "/;x"] {
        assert!(!gated(&t, path), "{path}");
    }
    // A public route above a gated one, with "/" public: only the folded
    // reading that keeps the ";" (or reads "；" as one) finds "/videos/".
    let t = routes(&[
        ("/", Access::Public),
        ("/videos/", Access::Session),
        ("/videos/free/", Access::Public),
    ])
    .unwrap();
    for path in [
        "/Videos/free;/x",
        "/Videos/free\u{FF1B}/x",
        "/Videos/free%EF%BC%9B/x",
    ] {
        assert!(gated(&t, path), "{path}");
    }
}
