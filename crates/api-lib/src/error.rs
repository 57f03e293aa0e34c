//! Every failure of a route as a JSON answer with the right status: 4xx for bad input (with one
//! message per bad field), 404/409 for the row, 401/403 for auth, 503 when a dependency does not
//! answer. Never a 500: nothing an operator sends or a database answers becomes a panic.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use registre_ops::{FieldError, OpsError};
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub fields: Vec<FieldError>,
    pub reason: Option<&'static str>,
    pub needs: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    /// A stable machine-readable reason where a client may act on it (e.g. `supabase_rest_only`).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// The variable that would make the request possible (`STAGING_DATABASE_URL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    needs: Option<&'a str>,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    fields: &'a [FieldError],
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), fields: Vec::new(), reason: None, needs: None }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(Body { error: &self.message, reason: self.reason, needs: self.needs.as_deref(), fields: &self.fields })).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"registre-api\""));
        }
        response
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> ApiError {
        let status = match &e {
            OpsError::UnknownEnvironment(..) | OpsError::BadCursor | OpsError::Invalid(_) => StatusCode::BAD_REQUEST,
            OpsError::NotFound { .. } | OpsError::LeaseNotFound { .. } => StatusCode::NOT_FOUND,
            OpsError::Conflict { .. } | OpsError::LeaseRenewed { .. } | OpsError::LeaseAmbiguous { .. } => StatusCode::CONFLICT,
            OpsError::RestUnsupported { .. } => StatusCode::NOT_IMPLEMENTED,
            OpsError::NotMigrated { .. }
            | OpsError::Database(_)
            | OpsError::Timeout { .. }
            | OpsError::WriteTimedOut { .. }
            | OpsError::BulkStopped { .. }
            | OpsError::Redis { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // The write may have committed: not a failure to retry blindly (reason outcome_unknown).
            OpsError::OutcomeUnknown { .. } => StatusCode::GATEWAY_TIMEOUT,
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!("registre-api: {e}");
        }
        let message = e.to_string();
        let (reason, needs) = match &e {
            // 501, not 503: nothing is down; this registre-api cannot do it for a REST-only
            // environment (docs/operations.md, "Supabase REST-only environments").
            OpsError::RestUnsupported { var, .. } => (Some("supabase_rest_only"), Some(var.clone())),
            OpsError::OutcomeUnknown { .. } => (Some("outcome_unknown"), None),
            _ => (None, None),
        };
        let fields = match e {
            OpsError::Invalid(fields) => fields,
            _ => Vec::new(),
        };
        ApiError { status, message, fields, reason, needs }
    }
}
