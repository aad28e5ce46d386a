//! Bearer tokens with scopes. Tokens are kept only as SHA-256 digests and compared in
//! constant time; a token file that does not exist yet is created with a fresh random
//! token (mode 0600). Token values are never logged.

use std::io::Write;
use std::path::Path;

use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tollgate_config::{Scope, TokenSource, TokenSpec};

use crate::error::ApiError;

/// A token the service accepts.
#[derive(Clone, Debug)]
pub struct Token {
    pub name: String,
    pub scopes: Vec<Scope>,
    digest: [u8; 32],
}

/// Who made a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub token: String,
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// Admin may do everything; read may read; calls may do call control.
    pub fn require(&self, needed: Scope) -> Result<(), ApiError> {
        let ok = self.scopes.contains(&Scope::Admin) || self.scopes.contains(&needed);
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token {:?} lacks the {:?} scope",
                    self.token,
                    needed.as_str()
                ),
            ))
        }
    }
}

/// Why the configured tokens could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token {name:?}: cannot read or create {path}: {source}")]
    File {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error("token {name:?}: environment variable {var} is not set or empty")]
    Env { name: String, var: String },
    #[error("token {name:?}: file {path} is empty")]
    Empty { name: String, path: String },
    #[error("cannot get random bytes: {0}")]
    Random(String),
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token: 32 bytes from the OS CSPRNG, hex.
pub fn generate_token() -> Result<String, TokenError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

fn read_or_create(name: &str, path: &Path) -> Result<String, TokenError> {
    let file_error = |source| TokenError::File {
        name: name.to_string(),
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(TokenError::Empty {
                    name: name.to_string(),
                    path: path.display().to_string(),
                });
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = generate_token()?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path).map_err(file_error)?;
            file.write_all(format!("{token}\n").as_bytes())
                .map_err(file_error)?;
            tracing::info!(token = name, path = %path.display(), "generated a new API token file");
            Ok(token)
        }
        Err(e) => Err(file_error(e)),
    }
}

/// Resolves every configured token to its digest.
pub fn load_tokens(specs: &[TokenSpec]) -> Result<Vec<Token>, TokenError> {
    specs
        .iter()
        .map(|spec| {
            let digest = match &spec.source {
                TokenSource::Sha256(d) => *d,
                TokenSource::File(path) => digest(&read_or_create(&spec.name, path)?),
                TokenSource::Env(var) => {
                    let value = std::env::var(var).unwrap_or_default();
                    if value.trim().is_empty() {
                        return Err(TokenError::Env {
                            name: spec.name.clone(),
                            var: var.clone(),
                        });
                    }
                    digest(value.trim())
                }
            };
            Ok(Token {
                name: spec.name.clone(),
                scopes: spec.scopes.clone(),
                digest,
            })
        })
        .collect()
}

/// The caller behind a request's `Authorization: Bearer` header.
pub fn authenticate(tokens: &[Token], headers: &HeaderMap) -> Result<Caller, ApiError> {
    let unauthorized = |message: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            message.to_string(),
        )
    };
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing Authorization: Bearer token"))?;
    let value = header
        .to_str()
        .map_err(|_| unauthorized("malformed Authorization header"))?;
    let presented = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| unauthorized("Authorization must be \"Bearer TOKEN\""))?
        .trim();
    let presented = digest(presented);
    // Compare with every token so timing does not reveal which one matched.
    let mut found = None;
    for token in tokens {
        if bool::from(token.digest.ct_eq(&presented)) {
            found = Some(token);
        }
    }
    found
        .map(|t| Caller {
            token: t.name.clone(),
            scopes: t.scopes.clone(),
        })
        .ok_or_else(|| unauthorized("unknown token"))
}
