//! JSON request bodies treated as hostile: size-limited, parsed with the path of the first
//! bad field named in the error, trailing data refused.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body; an empty body is refused.
pub struct ApiJson<T>(pub T);

/// A JSON body that may be empty (then `T::default()`).
pub struct OptionalJson<T>(pub T);

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = inner.to_string();
        // serde reports a missing field at the parent's path: name the field itself.
        let field = match message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            Some(missing) if path == "." => missing.to_string(),
            Some(missing) => format!("{path}.{missing}"),
            None if path == "." => String::new(),
            None => path,
        };
        let mut api = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            if inner.is_syntax() || inner.is_eof() {
                "malformed_json"
            } else {
                "invalid_field"
            },
            message,
        );
        if !field.is_empty() {
            api.field = Some(field);
        }
        if inner.is_syntax() || inner.is_eof() {
            api.status = StatusCode::BAD_REQUEST;
        }
        api
    })?;
    deserializer.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("trailing data after the JSON body: {e}"),
        )
    })?;
    Ok(value)
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "body_too_large", "request body is too large")
        } else {
            ApiError::new(status, "bad_body", rejection.body_text())
        }
    })
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "request body is empty: a JSON object is required",
            ));
        }
        parse(&bytes).map(ApiJson)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        parse(&bytes).map(OptionalJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        name: String,
        count: u32,
        inner: Option<Inner>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        value: u64,
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse::<Req>(br#"{"name":"a"}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("count"));
        let err = parse::<Req>(br#"{"name":"a","count":-1}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("count"));
        let err = parse::<Req>(br#"{"name":"a","count":1,"inner":{"value":"x"}}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("inner.value"));
        let err = parse::<Req>(br#"{"name":"a","count":1,"extra":1}"#).unwrap_err();
        assert!(
            err.message.contains("unknown field `extra`"),
            "{}",
            err.message
        );
        let err = parse::<Req>(br#"{"name":"#).unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::BAD_REQUEST, "malformed_json")
        );
        let err = parse::<Req>(br#"{"name":"a","count":1} {}"#).unwrap_err();
        assert_eq!(err.code, "malformed_json");
    }
}
