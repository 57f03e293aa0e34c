//! What every request passes before a route (docs/operations.md, "Security"): the Host check
//! (DNS-rebinding guard: a hostile page whose name now points at 127.0.0.1 sends its own name as
//! Host, so only names an operator uses are answered), the cap on requests handled at once, and the
//! headers that keep browsers from sniffing a JSON answer into a page or framing the dashboard.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The answer to a request whose Host is not allowed. Fixed text: nothing of the request is echoed.
pub const HOST_REFUSED: &str = "this Host header is not accepted: registre-api answers only to localhost, 127.0.0.1, [::1], \
     API_HOST or a name listed in API_ALLOWED_HOSTS (DNS-rebinding guard, docs/operations.md)";

/// Host names (lower-case, IPv6 in brackets, no port) this API answers to.
#[derive(Debug, Clone)]
pub struct AllowedHosts(Arc<Vec<String>>);

impl AllowedHosts {
    /// localhost, 127.0.0.1, [::1], API_HOST and API_ALLOWED_HOSTS.
    pub fn new(api_host: &str, extra: &[String]) -> AllowedHosts {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"].map(String::from).to_vec();
        let api_host = api_host.trim();
        hosts.push(match api_host.parse::<std::net::Ipv6Addr>() {
            Ok(v6) => format!("[{v6}]"),
            Err(_) => api_host.to_ascii_lowercase(),
        });
        hosts.extend(extra.iter().cloned());
        hosts.sort();
        hosts.dedup();
        AllowedHosts(Arc::new(hosts))
    }

    /// Whether a Host header value (`name`, `name:port`, `[v6]`, `[v6]:port`) names an allowed host.
    pub fn allows(&self, host: &str) -> bool {
        let Some(name) = host_without_port(host) else { return false };
        self.0.iter().any(|h| h.eq_ignore_ascii_case(name))
    }
}

/// The name part of a Host header value, without its port; None when it is malformed.
fn host_without_port(host: &str) -> Option<&str> {
    let host = host.trim();
    let (name, port) = if host.starts_with('[') {
        let end = host.find(']')?;
        (&host[..=end], &host[end + 1..])
    } else {
        let end = host.find(':').unwrap_or(host.len());
        (&host[..end], &host[end..])
    };
    let port_ok = port.is_empty() || port.strip_prefix(':').is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    (port_ok && !name.is_empty()).then_some(name)
}

pub async fn check_host(State(allowed): State<AllowedHosts>, request: Request, next: Next) -> Response {
    // HTTP/2 and absolute-form requests carry it in the URI; HTTP/1.1 in the Host header.
    let host = match request.uri().authority() {
        Some(authority) => Some(authority.as_str().rsplit('@').next().unwrap_or_default().to_string()),
        None => request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string),
    };
    if !host.as_deref().is_some_and(|h| allowed.allows(h)) {
        return ApiError { reason: Some("host_not_allowed"), ..ApiError::new(StatusCode::FORBIDDEN, HOST_REFUSED) }.into_response();
    }
    next.run(request).await
}

/// API_MAX_CONCURRENT: a read over the cap answers 503 at once (it can be asked again); a change
/// waits for a place, so reads never push a cancel or a retry out. /health is not counted: a
/// liveness check must answer while the API is busy.
pub async fn limit_concurrency(State(permits): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    let permit = if read {
        match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let mut response = ApiError {
                    reason: Some("too_many_requests_in_progress"),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many requests in progress (API_MAX_CONCURRENT): try again in a moment",
                    )
                }
                .into_response();
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
        }
    } else {
        match permits.clone().acquire_owned().await {
            Ok(p) => p,
            // Closed only if the server is going away.
            Err(_) => return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "registre-api is stopping").into_response(),
        }
    };
    let response = next.run(request).await;
    drop(permit);
    response
}

/// On every answer, errors included.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("frame-ancestors 'none'"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_with_and_without_port() {
        let allowed = AllowedHosts::new("0.0.0.0", &["registre.example.com".into(), "[fd00::1]".into()]);
        for ok in [
            "localhost",
            "localhost:3000",
            "LOCALHOST:3000",
            "127.0.0.1",
            "127.0.0.1:3000",
            "[::1]",
            "[::1]:3000",
            "0.0.0.0:3000",
            "registre.example.com",
            "registre.example.com:443",
            "[fd00::1]:8080",
        ] {
            assert!(allowed.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:3000",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "localhost:",
            "localhost:abc",
            "localhost:3000:1",
            "::1",
            "[::1",
            "",
            "user@localhost",
            "registre.example.com.",
        ] {
            assert!(!allowed.allows(refused), "{refused}");
        }
        let v6 = AllowedHosts::new("::", &[]);
        assert!(v6.allows("[::]:3000"));
    }
}
