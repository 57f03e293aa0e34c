//! Bearer-token auth of the data-changing routes (enqueue, retry, cancel). The token is compared in
//! constant time (subtle), never logged, never echoed. API_TOKEN unset → 403 saying so: an API that
//! changes the queue must not be open by accident.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

pub const TOKEN_UNSET: &str =
    "API_TOKEN is not set on this server: data-changing routes are disabled until it is (docs/operations.md)";

/// Whether `header` is `Bearer <token>` with exactly this token.
pub fn bearer_matches(header: Option<&[u8]>, token: &[u8]) -> bool {
    let Some(value) = header else { return false };
    let Some(given) = value.strip_prefix(b"Bearer ") else { return false };
    let given = given.trim_ascii();
    // ct_eq is constant time in the content; lengths differing answer false at once, which reveals
    // only the length (the token is at least 16 random characters).
    given.len() == token.len() && bool::from(given.ct_eq(token))
}

pub async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return ApiError::new(StatusCode::FORBIDDEN, TOKEN_UNSET).into_response();
    };
    let header = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if !bearer_matches(header, token.expose().as_bytes()) {
        let why = if header.is_none() { "missing Authorization: Bearer <API_TOKEN> header" } else { "wrong token" };
        return ApiError::new(StatusCode::UNAUTHORIZED, why).into_response();
    }
    next.run(request).await
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
}
