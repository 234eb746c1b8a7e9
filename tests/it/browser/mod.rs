//! The demo as a visitor meets it: a real headless Chromium, driven over
//! WebDriver by chromedriver, opens the gated article through the gateway,
//! signs in through the form, watches both players start on the video host,
//! is refused a tampered link, signs out, and signs in again as a member whose
//! plan holds the first video only. Statuses come from the browser itself
//! (Navigation and Resource Timing's `responseStatus`), not from a side client.
//!
//! Needs Debian's `chromium` and `chromium-driver`; `scripts/test.sh` installs
//! them. Nothing is downloaded at run time.

mod processes;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::Value;

use processes::{Demo, Driver};

/// The two videos of the demo article, in page order.
const FIRST: &str = "1jhvl2uqa5rdf";
const SECOND: &str = "2kqwm3vrb6seg";
/// The longest any single wait may take.
const WAIT: Duration = Duration::from_secs(15);
/// The longest the whole walk through the demo may take.
const WALK: Duration = Duration::from_secs(60);

/// Calls `probe` every 100 ms until it gives a value, for at most [`WAIT`];
/// then panics with `what` and the last thing the probe reported.
async fn poll<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {WAIT:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn script(browser: &Client, code: &str) -> Value {
    browser
        .execute(code, vec![])
        .await
        .unwrap_or_else(|err| panic!("script failed: {err}\n{code}"))
}

/// What the current document (top window or the frame entered) is, as the
/// browser sees it.
const DOCUMENT_STATE: &str = r#"
    const navigation = performance.getEntriesByType('navigation')[0];
    const text = (selector) => {
        const element = document.querySelector(selector);
        return element ? element.textContent.trim() : null;
    };
    return {
        href: location.href,
        ready: document.readyState,
        status: navigation ? navigation.responseStatus : null,
        body: document.body ? document.body.innerText : '',
        player_status: text('#status'),
        refused: text('#refused'),
        hls: performance.getEntriesByType('resource')
            .filter((entry) => new URL(entry.name).pathname.startsWith('/hls/'))
            .map((entry) => ({ name: entry.name, status: entry.responseStatus })),
        marked: window.__embedgate_before === true,
    };
"#;

/// The current document once it has loaded.
async fn loaded(browser: &Client, what: &str) -> Value {
    poll(what, move || async move {
        let state = script(browser, DOCUMENT_STATE).await;
        if state["ready"] == "complete" && state["status"].is_u64() {
            Ok(state)
        } else {
            Err(state.to_string())
        }
    })
    .await
}

/// Opens `url` in the top window and returns the loaded document's state.
async fn open(browser: &Client, url: &str) -> Value {
    browser
        .goto(url)
        .await
        .unwrap_or_else(|err| panic!("opening {url}: {err}"));
    loaded(browser, &format!("{url} loads")).await
}

/// Clicks `selector` and waits for the new top document it leads to.
async fn click_through(browser: &Client, selector: &str) -> Value {
    script(browser, "window.__embedgate_before = true;").await;
    browser
        .find(Locator::Css(selector))
        .await
        .unwrap_or_else(|err| panic!("no {selector} to click: {err}"))
        .click()
        .await
        .unwrap_or_else(|err| panic!("clicking {selector}: {err}"));
    let what = format!("the page after clicking {selector}");
    poll(&what, move || async move {
        let state = script(browser, DOCUMENT_STATE).await;
        if state["marked"] == false && state["ready"] == "complete" && state["status"].is_u64() {
            Ok(state)
        } else {
            Err(state.to_string())
        }
    })
    .await
}

async fn attr(browser: &Client, selector: &str, name: &str) -> Option<String> {
    browser
        .find(Locator::Css(selector))
        .await
        .unwrap_or_else(|err| panic!("no {selector} on the page: {err}"))
        .attr(name)
        .await
        .unwrap_or_else(|err| panic!("reading {name} of {selector}: {err}"))
}

fn path_of(state: &Value) -> String {
    let href = state["href"].as_str().unwrap_or_default();
    let after_scheme = href.split_once("://").map_or(href, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    path.split(['?', '#']).next().unwrap().to_string()
}

/// The gated article refused: a 403 from the gateway with a sign-in link.
async fn assert_refused_article(browser: &Client, state: &Value, when: &str) {
    assert_eq!(path_of(state), "/videos/intro", "{when}: {state}");
    assert_eq!(
        state["status"], 403,
        "{when}: the article is refused: {state}"
    );
    assert_eq!(
        attr(browser, "a#sign-in", "href").await.as_deref(),
        Some("/login"),
        "{when}: the deny page links to the sign-in form"
    );
}

async fn fill(browser: &Client, selector: &str, text: &str) {
    let field = browser
        .find(Locator::Css(selector))
        .await
        .unwrap_or_else(|err| panic!("no {selector} in the form: {err}"));
    field.clear().await.unwrap();
    field
        .send_keys(text)
        .await
        .unwrap_or_else(|err| panic!("typing into {selector}: {err}"));
}

/// Submits the sign-in form on the current page; returns the page it leads to.
async fn submit_sign_in(browser: &Client, name: &str, password: &str) -> Value {
    assert_eq!(
        attr(browser, "input#password", "type").await.as_deref(),
        Some("password"),
        "the password field hides what is typed"
    );
    assert_eq!(
        attr(browser, "input#name", "name").await.as_deref(),
        Some("name")
    );
    assert_eq!(
        attr(browser, "input#password", "name").await.as_deref(),
        Some("password")
    );
    fill(browser, "input#name", name).await;
    fill(browser, "input#password", password).await;
    click_through(browser, "button#submit").await
}

/// From the deny page: follows the sign-in link to the form.
async fn open_sign_in_form(browser: &Client) {
    let form = click_through(browser, "a#sign-in").await;
    assert_eq!(
        path_of(&form),
        "/login",
        "the sign-in link leads to the form: {form}"
    );
    assert_eq!(form["status"], 200, "the sign-in form: {form}");
}

/// The page `name` landed on after signing in is the article, let in.
async fn assert_signed_in_article(browser: &Client, article: &Value, name: &str) {
    assert_eq!(
        path_of(article),
        "/videos/intro",
        "signing in as {name} lands on the article: {article}"
    );
    assert_eq!(article["status"], 200, "the article for {name}: {article}");
    assert!(
        article["body"].as_str().unwrap().contains("60 second"),
        "the article says its tokens last 60 seconds: {article}"
    );
    assert_eq!(
        attr(browser, "a#sign-out", "href").await.as_deref(),
        Some("/logout"),
        "a signed-in article has a sign-out link"
    );
    let players = browser
        .find_all(Locator::Css("iframe.player"))
        .await
        .unwrap();
    assert_eq!(players.len(), 2, "two players on the article: {article}");
}

/// The `src` of player `id`, checked to be the video host's embed page for `share`.
async fn player_src(browser: &Client, demo: &Demo, id: &str, share: &str) -> String {
    let src = attr(browser, &format!("iframe.player#{id}"), "src")
        .await
        .unwrap_or_else(|| panic!("{id} has no src"));
    let embed = format!("{}/res/embed/{share}.html", demo.video);
    assert!(
        src.starts_with(&embed),
        "{id} loads {share} from the video host {}: {src}",
        demo.video
    );
    src
}

/// Runs `check` inside the frame of player `id`, then returns to the top window.
async fn in_player<T>(browser: &Client, id: &str, check: impl Future<Output = T>) -> T {
    browser
        .find(Locator::Css(&format!("iframe.player#{id}")))
        .await
        .unwrap_or_else(|err| panic!("no player {id}: {err}"))
        .enter_frame()
        .await
        .unwrap_or_else(|err| panic!("entering player {id}: {err}"));
    let result = check.await;
    browser
        .enter_parent_frame()
        .await
        .unwrap_or_else(|err| panic!("leaving player {id}: {err}"));
    result
}

/// Player `id` shows `share`: its page came from the video host with a 200,
/// its script fetched the playlist with the token (a 200) and says "playing".
async fn assert_plays(browser: &Client, demo: &Demo, id: &str, share: &str) {
    let src = player_src(browser, demo, id, share).await;
    assert!(src.contains("?token="), "{id} carries a token: {src}");
    // Chromium adds a fetch to Resource Timing once its body has been read.
    let what = format!("player {id} ({share}) playing, with its playlist fetch in Resource Timing");
    let state = in_player(browser, id, async move {
        poll(&what, move || async move {
            let state = script(browser, DOCUMENT_STATE).await;
            assert_ne!(
                state["player_status"], "refused",
                "{id} was refused its playlist: {state}"
            );
            let fetched = state["hls"]
                .as_array()
                .is_some_and(|entries| entries.iter().any(|entry| entry["status"].is_u64()));
            if state["player_status"] == "playing" && fetched {
                Ok(state)
            } else {
                Err(state.to_string())
            }
        })
        .await
    })
    .await;
    let href = state["href"].as_str().unwrap();
    assert!(
        href.starts_with(&format!("{}/res/embed/{share}.html?", demo.video))
            && href.contains("token="),
        "{id}'s document is the video host's page with its token: {state}"
    );
    assert_eq!(state["status"], 200, "{id}'s page loads: {state}");
    assert_eq!(state["refused"], Value::Null, "{id}: {state}");
    let playlists = state["hls"].as_array().unwrap();
    let playlist = format!("{}/hls/{share}/index.m3u8?", demo.video);
    assert!(
        playlists.iter().any(|entry| {
            entry["status"] == 200
                && entry["name"]
                    .as_str()
                    .is_some_and(|name| name.starts_with(&playlist) && name.contains("token="))
        }),
        "{id} fetched {playlist}token=... with a 200: {state}"
    );
}

/// Player `id` is the video host's 403 page for `share`, saying `refusal`.
async fn assert_refused_player(
    browser: &Client,
    demo: &Demo,
    id: &str,
    share: &str,
    refusal: &str,
) {
    player_src(browser, demo, id, share).await;
    let what = format!("player {id} ({share}) refused");
    let state = in_player(browser, id, async move {
        poll(&what, move || async move {
            let state = script(browser, DOCUMENT_STATE).await;
            if state["ready"] == "complete" && state["refused"].is_string() {
                Ok(state)
            } else {
                Err(state.to_string())
            }
        })
        .await
    })
    .await;
    assert_eq!(state["status"], 403, "{id} is refused: {state}");
    assert_eq!(state["refused"], refusal, "{id}: {state}");
    assert_eq!(
        state["player_status"],
        Value::Null,
        "{id} has no player: {state}"
    );
}

/// `src` with one hex digit of its token's hmac changed.
fn tampered(src: &str) -> String {
    let lower = src.to_ascii_lowercase();
    let start = ["hmac=", "hmac%3d"]
        .iter()
        .find_map(|marker| lower.find(marker).map(|i| i + marker.len()))
        .unwrap_or_else(|| panic!("no hmac in the token of {src}"));
    let digit = src[start..]
        .chars()
        .next()
        .filter(char::is_ascii_hexdigit)
        .unwrap_or_else(|| panic!("the hmac in {src} does not start with a hex digit"));
    let other = if digit == '0' { '1' } else { '0' };
    format!("{}{other}{}", &src[..start], &src[start + 1..])
}

/// Saves a screenshot of the current page as target/demo-signed-in.png.
async fn save_screenshot(browser: &Client) -> PathBuf {
    let png = browser.screenshot().await.expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 24 && &png[12..16] == b"IHDR",
        "the screenshot is a PNG"
    );
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert!(
        width >= 800 && height >= 400,
        "the screenshot is a whole page: {width}x{height}"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("demo-signed-in.png");
    std::fs::write(&path, &png).unwrap();
    path
}

async fn walk_the_demo(browser: &Client, demo: &Demo) {
    // 1. Signed out, the article is refused, with a way to sign in.
    let state = open(browser, &demo.article()).await;
    assert_refused_article(browser, &state, "signed out").await;

    // 2. The sign-in link leads to the form; a wrong password is refused
    // with the form again; the right one lands on the article, whose two
    // players load from the video host and start playing.
    open_sign_in_form(browser).await;
    let wrong = submit_sign_in(browser, "alice", &format!("{}-wrong", demo.password)).await;
    assert_eq!(path_of(&wrong), "/login", "a wrong password: {wrong}");
    assert_eq!(wrong["status"], 401, "a wrong password: {wrong}");
    let article = submit_sign_in(browser, "alice", &demo.password).await;
    assert_signed_in_article(browser, &article, "alice").await;
    assert_plays(browser, demo, "player-1", FIRST).await;
    assert_plays(browser, demo, "player-2", SECOND).await;

    // 3. What the visitor sees.
    let screenshot = save_screenshot(browser).await;
    eprintln!(
        "screenshot of the signed-in article: {}",
        screenshot.display()
    );

    // 4. A tampered token, opened in the top window, is refused.
    let src = player_src(browser, demo, "player-1", FIRST).await;
    let state = open(browser, &tampered(&src)).await;
    assert_eq!(state["status"], 403, "a tampered token: {state}");
    assert_eq!(
        state["refused"], "This link has expired or was not issued to you",
        "a tampered token: {state}"
    );

    // 5. Signing out closes the article again.
    let state = open(browser, &demo.article()).await;
    assert_eq!(state["status"], 200, "still signed in: {state}");
    click_through(browser, "a#sign-out").await;
    let state = open(browser, &demo.article()).await;
    assert_refused_article(browser, &state, "after signing out").await;

    // 6. Bob's plan holds the first video only.
    open_sign_in_form(browser).await;
    let article = submit_sign_in(browser, "bob", &demo.password).await;
    assert_signed_in_article(browser, &article, "bob").await;
    assert_plays(browser, demo, "player-1", FIRST).await;
    let src = player_src(browser, demo, "player-2", SECOND).await;
    assert!(
        !src.contains("token="),
        "bob gets no token for {SECOND}: {src}"
    );
    assert_refused_player(
        browser,
        demo,
        "player-2",
        SECOND,
        "Not included in your plan",
    )
    .await;
}

/// A visitor in headless Chromium: refused signed out (403 with a sign-in
/// link); signs in through the form as alice (a wrong password is a 401) and
/// lands on the article (200) whose two players load from the video host
/// (200, with a token) and play (their playlist fetch is a 200); a screenshot
/// is saved as target/demo-signed-in.png; a tampered token is a 403 "expired
/// or was not issued"; signing out refuses the article again; bob plays the
/// first video and is refused the second ("Not included in your plan", 403).
#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_in_chromium_signs_in_watches_is_refused_tampering_and_signs_out() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile");
    let demo = Demo::start();
    let driver = Driver::start(dir.path());
    let browser = driver.session(&profile).await;
    match tokio::time::timeout(WALK, walk_the_demo(&browser, &demo)).await {
        Ok(()) => {}
        Err(_) => panic!("the walk through the demo took over {WALK:?}"),
    }
    match tokio::time::timeout(WAIT, browser.close()).await {
        Ok(closed) => closed.expect("the browser closes"),
        Err(_) => panic!("the browser did not close within {WAIT:?}"),
    }
}
