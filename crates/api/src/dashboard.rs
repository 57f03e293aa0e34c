//! GET /: the dashboard, one page whose HTML, CSS and JS are compiled into the binary
//! (include_str!), so it works on a server with no internet access and no file to deploy.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard/index.html");
const CSS: &str = include_str!("dashboard/dashboard.css");
// The detail pane's index table lives in its own file (index_data.js), served in the same script.
const JS: &str = concat!(include_str!("dashboard/dashboard.js"), "\n", include_str!("dashboard/index_data.js"));

pub async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], PAGE)
}

pub async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], CSS)
}

pub async fn js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], JS)
}
