//! API_TOKEN on every `/api/*` route (docs/design.md §12): row data and OCR text are not public. The token
//! is compared in constant time (subtle), never logged, never echoed, never put in a URL. API_TOKEN
//! unset → 403 saying so: an API holding the queue must not be open by accident.
//!
//! Writes (POST, DELETE) need `Authorization: Bearer <API_TOKEN>`. Reads accept that header or the
//! session cookie that `POST /api/login` sets after checking the same header: a browser's
//! EventSource (the dashboard's live stream) cannot send a header. The cookie is HttpOnly (page
//! scripts cannot read it) and SameSite=Strict (another site's page cannot make the browser send
//! it), holds a random value drawn when the process starts (not the token; a restart ends every
//! session) and never authorises a write, so a forged form or link can change nothing.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use registre_config::Secret;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

pub const TOKEN_UNSET: &str =
    "API_TOKEN is not set on this server: the /api/* routes are disabled until it is (docs/operations.md)";

/// Name of the dashboard's session cookie.
pub const SESSION_COOKIE: &str = "registre_api_session";

/// The token and the session value of this process.
#[derive(Clone)]
pub struct Auth {
    token: Option<Secret>,
    /// Random, drawn at start; what the session cookie holds.
    session: Secret,
}

impl Auth {
    pub fn new(token: Option<Secret>) -> Auth {
        // Two v4 UUIDs: 244 random bits from the operating system's generator.
        let session = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        Auth { token, session: Secret::new(session) }
    }

    pub fn token_set(&self) -> bool {
        self.token.is_some()
    }

    fn session_cookie(&self, headers: &HeaderMap) -> bool {
        let expected = self.session.expose().as_bytes();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == SESSION_COOKIE)
            .any(|(_, value)| same(value.trim().as_bytes(), expected))
    }
}

/// Constant time in the content; a length difference answers false at once, which reveals only
/// the length (the token is at least 16 characters, the session value always 64).
fn same(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

/// Whether `header` is `Bearer <token>` with exactly this token.
pub fn bearer_matches(header: Option<&[u8]>, token: &[u8]) -> bool {
    let Some(value) = header else { return false };
    let Some(given) = value.strip_prefix(b"Bearer ") else { return false };
    same(given.trim_ascii(), token)
}

/// None when the bearer header carries the token; else the refusal.
fn check_bearer(auth: &Auth, headers: &HeaderMap) -> Option<ApiError> {
    let Some(token) = &auth.token else {
        return Some(ApiError::new(StatusCode::FORBIDDEN, TOKEN_UNSET));
    };
    let header = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if bearer_matches(header, token.expose().as_bytes()) {
        return None;
    }
    let why = if header.is_none() { "missing Authorization: Bearer <API_TOKEN> header" } else { "wrong token" };
    Some(ApiError::new(StatusCode::UNAUTHORIZED, why))
}

/// Every `/api/*` route but the login: reads with the bearer header or the session cookie, writes
/// with the bearer header only.
pub async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    let refused = match check_bearer(&state.auth, request.headers()) {
        None => None,
        Some(_) if read && state.auth.token_set() && state.auth.session_cookie(request.headers()) => None,
        Some(e) if !read && e.status == StatusCode::UNAUTHORIZED && state.auth.session_cookie(request.headers()) => Some(
            ApiError::new(StatusCode::UNAUTHORIZED, "the session cookie only reads: a change needs the Authorization: Bearer <API_TOKEN> header"),
        ),
        Some(e) => Some(e),
    };
    match refused {
        Some(e) => e.into_response(),
        None => next.run(request).await,
    }
}

/// POST /api/login: with the bearer token, sets the session cookie the dashboard's stream and reads
/// use. The cookie has no Max-Age: it ends with the browser (and with this process).
pub async fn login(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(e) = check_bearer(&state.auth, &headers) {
        return e.into_response();
    }
    let cookie = format!("{SESSION_COOKIE}={}; Path=/api; HttpOnly; SameSite=Strict", state.auth.session.expose());
    let mut response = Json(json!({"session": "open", "reads": "cookie or bearer", "writes": "bearer only"})).into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            response.headers_mut().insert(header::SET_COOKIE, v);
        }
        // The value is hex: cannot happen; answer without a cookie rather than panic.
        Err(_) => return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "cannot build the session cookie").into_response(),
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let t = b"0123456789abcdef";
        assert!(bearer_matches(Some(b"Bearer 0123456789abcdef"), t));
        assert!(!bearer_matches(Some(b"Bearer 0123456789abcdeF"), t));
        assert!(!bearer_matches(Some(b"Bearer 0123456789abcde"), t));
        assert!(!bearer_matches(Some(b"Basic 0123456789abcdef"), t));
        assert!(!bearer_matches(Some(b"0123456789abcdef"), t));
        assert!(!bearer_matches(None, t));
    }

    #[test]
    fn only_this_process_session_value_is_a_session() {
        let auth = Auth::new(Some(Secret::new("0123456789abcdef".to_string())));
        let other = Auth::new(Some(Secret::new("0123456789abcdef".to_string())));
        let cookie = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_str(v).unwrap());
            h
        };
        let mine = format!("theme=dark; {SESSION_COOKIE}={}", auth.session.expose());
        assert!(auth.session_cookie(&cookie(&mine)));
        assert!(!other.session_cookie(&cookie(&mine)), "a value drawn by another process");
        assert!(!auth.session_cookie(&cookie(&format!("{SESSION_COOKIE}=0123456789abcdef"))), "the token is not a session");
        assert!(!auth.session_cookie(&cookie(&format!("x{SESSION_COOKIE}={}", auth.session.expose()))));
        assert!(!auth.session_cookie(&HeaderMap::new()));
    }
}
