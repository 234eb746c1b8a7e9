//! Framing followed byte by byte, and connections that over-send.

use super::*;

fn exchange(request: &[u8], response: &[u8]) -> Read {
    let mut tracker = Tracker::new(true);
    tracker.wrote(request);
    tracker.read(response)
}

const GET: &[u8] = b"GET /a HTTP/1.1\r\nhost: cms\r\n\r\n";
const HEAD: &[u8] = b"HEAD /a HTTP/1.1\r\nhost: cms\r\n\r\n";

#[test]
fn a_response_that_ends_where_its_framing_says_is_due() {
    for response in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2;x=y\r\nhi\r\n0\r\nX-T: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"\r\nHTTP/1.1 200\nContent-Length: 1\n\nx",
        // Until the connection closes: nothing can be past its end.
        b"HTTP/1.1 200 OK\r\n\r\nanything at all HTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nanything",
        // Switched protocols: not followed.
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nframes",
    ] {
        assert_eq!(
            exchange(GET, response),
            Read::Due,
            "{}",
            String::from_utf8_lossy(response)
        );
    }
    assert_eq!(
        exchange(HEAD, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
        Read::Due
    );
}

#[test]
fn a_response_that_ends_before_its_request_was_written_whole_is_an_early_answer() {
    let answer = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig";
    let post = b"POST /a HTTP/1.1\r\nhost: cms\r\ncontent-length: 10\r\n\r\n";
    let chunked =
        b"POST /a HTTP/1.1\r\nhost: cms\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n";
    for (written, early) in [
        (&post[..], true),
        (&[&post[..], b"12345"].concat()[..], true),
        (&chunked[..], true),
        (&[&post[..], b"0123456789"].concat()[..], false),
        (&[&chunked[..], b"0\r\n\r\n"].concat()[..], false),
        (GET, false),
    ] {
        let mut tracker = Tracker::new(true);
        tracker.wrote(written);
        assert_eq!(tracker.read(answer), Read::Due);
        assert_eq!(
            tracker.answered_early(),
            early,
            "{}",
            String::from_utf8_lossy(written)
        );
    }
    // An interim answer is no answer: the body is still asked for.
    let mut tracker = Tracker::new(true);
    tracker.wrote(post);
    tracker.read(b"HTTP/1.1 100 Continue\r\n\r\n");
    assert!(!tracker.answered_early());
    tracker.wrote(b"0123456789");
    tracker.read(answer);
    assert!(!tracker.answered_early());
}

#[test]
fn bytes_past_the_end_of_a_response_are_stray() {
    let smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSECRET";
    let cases: [(&[u8], &[u8]); 5] = [
        (GET, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        (HEAD, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
        (
            GET,
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        ),
        (GET, b"HTTP/1.1 204 No Content\r\n\r\n"),
        (
            GET,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
    ];
    for (request, response) in cases {
        let mut bytes = response.to_vec();
        bytes.extend_from_slice(smuggled);
        assert_eq!(
            exchange(request, &bytes),
            Read::Stray {
                due: response.len()
            },
            "{}",
            String::from_utf8_lossy(response)
        );
    }
}

#[test]
fn framing_is_followed_across_reads_writes_and_requests() {
    let mut tracker = Tracker::new(true);
    let post = b"POST /up HTTP/1.1\r\ncontent-length: 4\r\n\r\nbody";
    for piece in post.chunks(3) {
        tracker.wrote(piece);
    }
    let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
    for piece in response.chunks(2) {
        assert_eq!(tracker.read(piece), Read::Due);
    }
    // Nothing is due between two requests.
    assert_eq!(tracker.read(b"x"), Read::Stray { due: 0 });
    let mut tracker = Tracker::new(true);
    tracker.wrote(b"POST /up HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
    tracker.wrote(b"4\r\nbody\r\n0\r\n\r\n");
    assert_eq!(
        tracker.read(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"),
        Read::Due
    );
    tracker.wrote(HEAD);
    assert_eq!(
        tracker.read(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n"),
        Read::Due
    );
    tracker.wrote(GET);
    assert_eq!(
        tracker.read(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA"),
        Read::Stray { due: 40 }
    );
}

#[test]
fn what_hyper_would_refuse_or_cannot_be_followed_is_left_to_hyper() {
    for response in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!!"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello!!",
        b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n!!",
        b"HTTP/1.1 200 OK\r\n folded\r\n\r\n!!",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n!!",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n!!",
        b"SIP/2.0 200 OK\r\n\r\n!!",
    ] {
        assert_eq!(
            exchange(GET, response),
            Read::Due,
            "{}",
            String::from_utf8_lossy(response)
        );
    }
    let mut h2 = Tracker::new(false);
    h2.wrote(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert_eq!(h2.read(b"\0\0\0\x04\0\0\0\0\0"), Read::Due);
}

#[test]
fn skipping_to_line_ends_reads_heads_as_byte_by_byte_does() {
    let long = "x".repeat(300);
    let responses = [
        format!("HTTP/1.1 200 OK with a long reason {long}\r\nServer: {long}\r\nContent-Length: 3\r\n\r\nabcEXTRA"),
        format!("HTTP/1.1 200 OK\r\nX-Long: {long}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nEXTRA"),
        // A bare CR inside a skipped value: refused, as hyper would.
        "HTTP/1.1 200 OK\r\nX-Bad: a\rb\r\nContent-Length: 3\r\n\r\nabcEXTRA".to_string(),
        format!("HTTP/1.1 200 OK\nX-Lf-Only: {long}\nContent-Length: 3\n\nabcEXTRA"),
        format!("HTTP/1.1 304 Not Modified\r\nETag: \"{long}\"\r\nContent-Length: 9\r\n\r\nEXTRA"),
    ];
    for response in &responses {
        let bytes = response.as_bytes();
        let whole = exchange(GET, bytes);
        let mut tracker = Tracker::new(true);
        tracker.wrote(GET);
        let mut due = 0;
        let mut stray = false;
        for at in 0..bytes.len() {
            match tracker.read(&bytes[at..at + 1]) {
                Read::Due => due += 1,
                Read::Stray { due: 0 } => {
                    stray = true;
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        let one_by_one = if stray {
            Read::Stray { due }
        } else {
            Read::Due
        };
        assert_eq!(whole, one_by_one, "{response}");
    }
}

#[test]
fn names_read_at_once_are_judged_as_byte_by_byte() {
    for response in [
        &b"HTTP/1.1 200 OK\r\nX: 1\r\nContent-Length: 1\r\n\r\naEXTRA"[..],
        b"HTTP/1.1 200 OK\r\nContent Length: 1\r\n\r\naEXTRA",
        b"HTTP/1.1 200 OK\r\n: empty\r\nContent-Length: 1\r\n\r\naEXTRA",
        b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 1\r\n\r\naEXTRA",
        b"HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 1\r\n\r\naEXTRA",
        b"HTTP/1.1 200 OK\r\nTRANSFER-encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\nEXTRA",
    ] {
        let whole = exchange(GET, response);
        let mut tracker = Tracker::new(true);
        tracker.wrote(GET);
        let mut one_by_one = Read::Due;
        for (at, byte) in response.iter().enumerate() {
            if let Read::Stray { .. } = tracker.read(std::slice::from_ref(byte)) {
                one_by_one = Read::Stray { due: at };
                break;
            }
        }
        assert_eq!(whole, one_by_one, "{}", String::from_utf8_lossy(response));
    }
}

/// What a head reader made of some bytes.
#[derive(Debug, PartialEq)]
enum HeadRead {
    Head(usize, HeadInfo),
    Refused,
    Unfinished,
}

// The byte-by-byte reader alone: one byte at a time never holds a whole head.
fn read_byte_by_byte(bytes: &[u8], role: Role) -> HeadRead {
    let mut phase = Phase::Head(Head::new());
    for at in 0..bytes.len() {
        match phase.advance(&bytes[at..at + 1], role) {
            Step::More if matches!(phase, Phase::Lost) => return HeadRead::Refused,
            Step::More => {}
            Step::Head(used, info) => return HeadRead::Head(at + used, info),
            Step::End(_) => unreachable!("a head has no end step"),
        }
    }
    HeadRead::Unfinished
}

fn read_at_once(bytes: &[u8], role: Role) -> HeadRead {
    let mut phase = Phase::Head(Head::new());
    match phase.advance(bytes, role) {
        Step::More if matches!(phase, Phase::Lost) => HeadRead::Refused,
        Step::More => HeadRead::Unfinished,
        Step::Head(used, info) => HeadRead::Head(used, info),
        Step::End(_) => unreachable!("a head has no end step"),
    }
}

#[test]
fn heads_read_whole_by_hyper_s_parser_are_read_as_byte_by_byte() {
    let responses: &[&[u8]] = &[
        b"HTTP/1.1 200 OK",
        b"HTTP/1.0 200 OK",
        b"HTTP/1.1 204 No Content",
        b"HTTP/1.1 304 Not Modified",
        b"HTTP/1.1 100 Continue",
        b"HTTP/1.1 101 Switching Protocols",
        b"HTTP/1.1 200",
        b"HTTP/1.1 200 ",
        b"HTTP/1.1 200 caf\xc3\xa9 \xff",
        b"HTTP/1.1 099 Low",
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1  200 OK",
        b"HTTP/1.2 200 OK",
        b"HTTP/2 200 OK",
        b"SIP/2.0 200 OK",
    ];
    let requests: &[&[u8]] = &[
        b"GET /a HTTP/1.1",
        b"HEAD /a HTTP/1.1",
        b"CONNECT cms:443 HTTP/1.1",
        b"POST /up?x=1 HTTP/1.1",
        b"OPTIONS * HTTP/1.0",
    ];
    let fields: &[&[u8]] = &[
        b"Content-Length: 5",
        b"content-length:5",
        b"Content-Length: 5, 5",
        b"Content-Length: 5,6",
        b"Content-Length: +5",
        b"Content-Length: ",
        b"Content-Length: 5 5",
        b"Content-Length: 99999999999999999999999",
        b"Content-Length:\t7\t",
        b"Content-Length : 5",
        b"Content-Lengthx: 5",
        b"Transfer-Encoding: chunked",
        b"transfer-encoding: gzip, chunked",
        b"Transfer-Encoding: chunked, gzip",
        b"TRANSFER-ENCODING:  CHUNKED ",
        b"Transfer-Encoding: chunk ed",
        b"Transfer-Encoding: xchunked",
        b"Transfer-Encoding:",
        b"Transfer-Encoding: chunked\x7f",
        b"X-Other: v",
        b"X-Empty:",
        b"X-Obs: caf\xe9",
        b"X-Cr: a\rb",
        b" Folded",
        b"NoColon",
        b"Bad Name: x",
        b": empty",
        b"A-Header-Name-Longer-Than-Any-Framing-One: 1",
    ];
    let mut compared = 0;
    let mut whole = 0;
    for (starts, role) in [(responses, Role::Response), (requests, Role::Request)] {
        for start in starts {
            for (first, second) in fields
                .iter()
                .flat_map(|a| fields.iter().map(move |b| (a, b)))
            {
                for (lead, eol) in [("", "\r\n"), ("", "\n"), ("\r\n", "\r\n"), ("\n", "\r\n")] {
                    let mut head = lead.as_bytes().to_vec();
                    for line in [*start, *first, *second, b""] {
                        head.extend_from_slice(line);
                        head.extend_from_slice(eol.as_bytes());
                    }
                    head.extend_from_slice(b"body");
                    for cut in [head.len(), head.len() - 6] {
                        let bytes = &head[..cut];
                        let at_once = read_at_once(bytes, role);
                        assert_eq!(
                            at_once,
                            read_byte_by_byte(bytes, role),
                            "{:?}",
                            String::from_utf8_lossy(bytes)
                        );
                        compared += 1;
                        whole += usize::from(whole_head(bytes, role).is_some());
                    }
                }
            }
        }
    }
    // A fifth of them are whole heads hyper reads: the parser took those.
    assert!(whole > compared / 6, "{whole} of {compared}");
    let (used, info) = whole_head(
        b"HTTP/1.0 200 OK\r\nServer: cms\r\ncontent-length: 5, 5\r\n\r\nhello",
        Role::Response,
    )
    .expect("a head hyper reads");
    assert_eq!(used, 54);
    assert_eq!(
        (info.status, info.http10, info.length),
        (200, true, Some(5))
    );
    let (_, info) = whole_head(
        b"HEAD / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        Role::Request,
    )
    .expect("a head hyper writes");
    assert_eq!(
        (info.method, info.has_coding, info.chunked),
        (Method::Head, true, true)
    );
}

#[test]
fn a_head_with_more_lines_than_hyper_reads_is_left_to_the_byte_reader() {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for n in 0..=MOST_HEADERS {
        head.extend_from_slice(format!("X-{n}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"Content-Length: 1\r\n\r\nx");
    assert!(whole_head(&head, Role::Response).is_none());
    assert_eq!(
        read_at_once(&head, Role::Response),
        read_byte_by_byte(&head, Role::Response)
    );
}

// Any exchange, split anywhere: never a panic, and the same verdict.

mod any_split {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;
    use proptest::test_runner::{Config, TestRunner};

    const REQUESTS: &[&str] = &[
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "HEAD / HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "CONNECT a:1 HTTP/1.1\r\n\r\n",
    ];
    const STATUS_LINES: &[&str] = &[
        "HTTP/1.1 200 OK\r\n",
        "HTTP/1.1 100 Continue\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n",
        "HTTP/1.1 204 No Content\r\n",
        "HTTP/1.1 304 Not Modified\r\n",
        "HTTP/1.0 200 OK\n",
        "HTTP/1.1 1000 X\r\n",
        "\r\nHTTP/1.1 200\n",
    ];
    const HEADER_LINES: &[&str] = &[
        "Content-Length: 5\r\n",
        "content-length: 5, 5\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: 99999999999999999999999\r\n",
        "Content-Length: 0\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "transfer-encoding: chunked, gzip\r\n",
        "Transfer-Encoding: CHUNKED\r\n",
        "X: y\r\n",
        " folded\r\n",
        "Bad Header: x\r\n",
        "X: y\n",
    ];
    const BODY_PIECES: &[&str] = &[
        "hello",
        "5\r\nhello\r\n",
        "2;x=y\r\nhi\r\n",
        "ffffffffffffffffff\r\n",
        "0\r\n\r\n",
        "0\r\nX-T: 1\r\n\r\n",
        "zz\r\n",
        "\r\n",
    ];

    fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..24)
    }

    fn request() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            3 => select(REQUESTS).prop_map(|r| r.as_bytes().to_vec()),
            1 => any_bytes(),
        ]
    }

    /// One response: a status line, header lines, a blank line, body pieces.
    fn one_response() -> impl Strategy<Value = Vec<u8>> {
        (
            select(STATUS_LINES),
            prop::collection::vec(select(HEADER_LINES), 0..4),
            prop::collection::vec(select(BODY_PIECES), 0..4),
        )
            .prop_map(|(status, headers, body)| {
                [
                    status.to_string(),
                    headers.concat(),
                    "\r\n".to_string(),
                    body.concat(),
                ]
                .concat()
                .into_bytes()
            })
    }

    /// One well-framed 200: a body of any bytes, by length or in chunks.
    fn framed_response() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<bool>(),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 1..20), 0..4),
        )
            .prop_map(|(chunked, parts)| {
                let mut out = Vec::new();
                if chunked {
                    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                    for part in &parts {
                        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                        out.extend_from_slice(part);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                } else {
                    let body = parts.concat();
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    out.extend_from_slice(head.as_bytes());
                    out.extend_from_slice(&body);
                }
                out
            })
    }

    /// What the CMS sends: responses, some of them past the one due, or noise.
    fn responses() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![3 => framed_response(), 3 => one_response(), 1 => any_bytes()],
            1..4,
        )
        .prop_map(|parts| parts.concat())
    }

    /// Cuts `bytes` at `cuts` (positions taken modulo its length).
    fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        at.push(0);
        at.push(bytes.len());
        at.sort_unstable();
        at.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect()
    }

    /// Where the first stray byte is, counted from the start of `pieces`.
    fn first_stray(tracker: &mut Tracker, pieces: &[Vec<u8>]) -> Option<usize> {
        let mut offset = 0;
        for piece in pieces {
            if let Read::Stray { due } = tracker.read(piece) {
                return Some(offset + due);
            }
            offset += piece.len();
        }
        None
    }

    #[test]
    fn any_exchange_split_anywhere_gets_the_verdict_of_one_read() {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2048);
        let strategy = (
            request(),
            responses(),
            prop::collection::vec(any::<usize>(), 0..8),
            prop::collection::vec(any::<usize>(), 0..8),
        );
        let config = Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        };
        TestRunner::new(config)
            .run(
                &strategy,
                |(request, response, request_cuts, response_cuts)| {
                    let mut whole = Tracker::new(true);
                    whole.wrote(&request);
                    let expected = first_stray(&mut whole, std::slice::from_ref(&response));
                    let mut pieces = Tracker::new(true);
                    for piece in split(&request, &request_cuts) {
                        pieces.wrote(&piece);
                    }
                    let got = first_stray(&mut pieces, &split(&response, &response_cuts));
                    prop_assert_eq!(got, expected);
                    Ok(())
                },
            )
            .unwrap();
    }
}
