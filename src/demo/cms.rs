//! The sample CMS: a public home page, a sign-in form with sessions kept in
//! memory, the session check the gateway asks, and a members' article with
//! two players from the sample video host. It knows nothing of the gateway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::{random_hex, VIDEOS};

/// The header the session check lists a member's videos in.
pub const SHARES_HEADER: &str = "x-demo-shares";

/// The member whose plan holds only the first video.
pub const LIMITED_MEMBER: &str = "bob";

/// The sample CMS's state: who is signed in.
pub struct SampleCms {
    cookie: String,
    password: String,
    video_host: String,
    // Session id -> member name.
    sessions: Mutex<HashMap<String, String>>,
}

const HOME_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sample CMS</title></head>
<body>
  <h1>Sample CMS</h1>
  <p>This page is public. The <a id="article" href="/videos/intro">members' article</a> is not.</p>
  <p><a id="sign-in" href="/login">Sign in</a> to watch it.</p>
</body>
</html>
"#;

fn login_page(message: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in</title>
<style>body {{ font-family: sans-serif; max-width: 30em; margin: 2em auto; }} label {{ display: block; margin: .5em 0; }}</style></head>
<body>
  <h1>Sign in</h1>
  <p>{message}</p>
  <form method="post" action="/login">
    <label>Name <input id="name" name="name" autocomplete="username" required></label>
    <label>Password <input id="password" name="password" type="password" autocomplete="current-password" required></label>
    <button id="submit" type="submit">Sign in</button>
  </form>
  <p>Any name works with the demo password embedgate printed at start; the
  member <b>{LIMITED_MEMBER}</b>'s plan includes the first video only.</p>
</body>
</html>
"#
    )
}

fn article_page(member: &str, video_host: &str) -> String {
    let players: String = VIDEOS
        .iter()
        .enumerate()
        .map(|(index, (share, title))| {
            format!(
                r#"    <figure>
      <iframe class="player" id="player-{number}" width="480" height="270" frameborder="0" src="{video_host}/res/embed/{share}.html" title="{title}" allowfullscreen></iframe>
      <figcaption>{title}</figcaption>
    </figure>
"#,
                number = index + 1,
            )
        })
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Introduction (members only)</title>
<style>body {{ font-family: sans-serif; margin: 2em; }} figure {{ display: inline-block; margin: 0 1em 1em 0; }} iframe {{ border: 1px solid #ccc; }}</style></head>
<body>
  <article>
    <h1>Introduction</h1>
    <p>Welcome, {member}. <a id="sign-out" href="/logout">Sign out</a></p>
    <p>Each player below got a key minted for this page view by the gateway in
    front of this CMS. The keys last 60 seconds: copy a player's address into
    a new tab after that and the video host refuses it.</p>
{players}  </article>
</body>
</html>
"#
    )
}

fn html(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn redirect(to: &'static str) -> Response<Full<Bytes>> {
    let mut response = html(StatusCode::SEE_OTHER, "");
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    response
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
fn form_value(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| {
            let value = value.replace('+', " ");
            percent_encoding::percent_decode_str(&value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

impl SampleCms {
    /// A CMS whose session cookie is `cookie`, signing in with `password`.
    pub fn new(cookie: &str, password: &str, video_host: &str) -> SampleCms {
        SampleCms {
            cookie: cookie.to_string(),
            password: password.to_string(),
            video_host: video_host.to_string(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    // The signed-in session the request carries: its id and member name.
    fn session(&self, request: &Request<Incoming>) -> Option<(String, String)> {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        request
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|line| line.to_str().ok())
            .flat_map(|line| line.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == self.cookie)
            .find_map(|(_, id)| Some((id.to_string(), sessions.get(id)?.clone())))
    }

    fn member(&self, request: &Request<Incoming>) -> Option<String> {
        self.session(request).map(|(_, member)| member)
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_string();
        match (request.method(), path.as_str()) {
            (&Method::GET, "/") => html(StatusCode::OK, HOME_PAGE),
            (&Method::GET, "/login") => html(
                StatusCode::OK,
                login_page("Sign in to watch the members' videos."),
            ),
            (&Method::POST, "/login") => self.sign_in(request).await,
            (&Method::GET, "/logout") => self.sign_out(&request),
            (&Method::GET, "/session-check") => self.session_check(&request),
            (&Method::GET, "/videos/intro") => match self.member(&request) {
                // Behind the gateway only members get here; the CMS checks anyway.
                Some(member) => html(StatusCode::OK, article_page(&member, &self.video_host)),
                None => redirect("/login"),
            },
            _ => html(
                StatusCode::NOT_FOUND,
                "<!doctype html><title>404</title><h1>Not found</h1>\n",
            ),
        }
    }

    async fn sign_in(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = match Limited::new(request.into_body(), 16 * 1024).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                return html(
                    StatusCode::BAD_REQUEST,
                    login_page("That form was too large."),
                )
            }
        };
        let name = form_value(&body, "name").unwrap_or_default();
        let name = name.trim();
        let password = form_value(&body, "password").unwrap_or_default();
        let valid_name = !name.is_empty()
            && name.len() <= 40
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_');
        if !valid_name || password != self.password {
            return html(
                StatusCode::UNAUTHORIZED,
                login_page("Wrong name or password: try again with the demo password."),
            );
        }
        let id = random_hex();
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), name.to_string());
        let mut response = redirect("/videos/intro");
        let cookie = format!("{}={id}; Path=/; HttpOnly; SameSite=Lax", self.cookie);
        if let Ok(value) = HeaderValue::try_from(cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        response
    }

    fn sign_out(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if let Some((id, _)) = self.session(request) {
            self.sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        }
        let mut response = redirect("/");
        let cookie = format!("{}=; Path=/; Max-Age=0", self.cookie);
        if let Ok(value) = HeaderValue::try_from(cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        response
    }

    // The gateway's forward-auth call: 200 with the member's videos, or 401.
    fn session_check(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(member) = self.member(request) else {
            return html(StatusCode::UNAUTHORIZED, "");
        };
        let shares = if member == LIMITED_MEMBER {
            VIDEOS[0].0
        } else {
            "*"
        };
        let mut response = html(StatusCode::OK, "");
        response
            .headers_mut()
            .insert(SHARES_HEADER, HeaderValue::from_static(shares));
        response
    }
}

/// Serves the sample CMS on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, cms: Arc<SampleCms>) {
    super::serve_each(listener, move |request| {
        let cms = cms.clone();
        async move { cms.answer(request).await }
    })
    .await;
}
