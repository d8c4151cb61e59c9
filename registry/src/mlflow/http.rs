//! The HTTP layer of the MLflow backend: one blocking `reqwest` client with timeouts,
//! credentials applied per request (and never logged, shown in errors or `Debug`), bounded
//! retries with exponential backoff and jitter on connection errors, 429 and 5xx, and
//! MLflow's JSON error bodies (`{"error_code": ..., "message": ...}`) turned into
//! [`Error`]s. Artifact bodies are streamed from and to files so memory stays flat.

use std::fmt;
use std::fs::File;
use std::path::Path;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::fsutil::{self, HashingWriter};
use crate::names::code;

/// How failed requests are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 disables retries).
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles on each further retry.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): exponential, capped, with up to 25%
    /// random jitter so that parallel clients do not retry in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        let base = self
            .initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        let jitter = base.mul_f64(rand::random::<f64>() * 0.25);
        base + jitter
    }
}

/// Credentials for the tracking server. `Debug` shows only which kind is set.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No authentication.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// A bearer token (`Authorization: Bearer ...`).
    Bearer(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Basic { .. } => f.write_str("Basic(<redacted>)"),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// A failed attempt, before deciding whether to retry.
enum Failure {
    /// Worth retrying: a connection error, a timeout, 429 or 5xx.
    Transient {
        message: String,
        last: Option<Box<Error>>,
    },
    /// Final.
    Fatal(Box<Error>),
}

/// The HTTP client bound to one server.
pub(crate) struct Transport {
    client: Client,
    base: Url,
    credentials: Credentials,
    request_timeout: Duration,
    transfer_timeout: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("base", &self.base.as_str())
            .field("credentials", &self.credentials)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub(crate) fn new(
        base: Url,
        credentials: Credentials,
        connect_timeout: Duration,
        request_timeout: Duration,
        transfer_timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self> {
        let client = Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(None)
            .build()
            .map_err(|e| Error::Uri {
                uri: base.to_string(),
                message: e.to_string(),
            })?;
        Ok(Self {
            client,
            base,
            credentials,
            request_timeout,
            transfer_timeout,
            retry,
        })
    }

    /// The base URL as shown to users (it never holds credentials).
    pub(crate) fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The retry policy.
    pub(crate) fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// `base` + `endpoint` + extra path segments (percent-encoded) + query pairs.
    pub(crate) fn url(
        &self,
        endpoint: &str,
        extra: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Url> {
        let mut url = self.base.clone();
        {
            let mut segments = url.path_segments_mut().map_err(|()| Error::Uri {
                uri: self.base.to_string(),
                message: "cannot be used as a base URL".into(),
            })?;
            segments.pop_if_empty();
            segments.extend(endpoint.split('/').filter(|s| !s.is_empty()));
            segments.extend(extra.iter().flat_map(|p| p.split('/')));
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.credentials {
            Credentials::None => request,
            Credentials::Basic { username, password } => {
                request.basic_auth(username, Some(password))
            }
            Credentials::Bearer(token) => request.bearer_auth(token),
        }
    }

    /// Sends a request built by `build` (called again for each attempt), retrying
    /// transient failures when `retry` is set. Returns the successful response.
    pub(crate) fn send(
        &self,
        endpoint: &str,
        retry: bool,
        build: &dyn Fn(&Client) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let max_attempts = if retry {
            self.retry.max_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = self.authorize(build(&self.client)?);
            let failure = match request.send() {
                Ok(response) => match self.check(endpoint, response) {
                    Ok(response) => return Ok(response),
                    Err(failure) => failure,
                },
                Err(e) => Failure::Transient {
                    message: describe_reqwest(&e),
                    last: None,
                },
            };
            match failure {
                Failure::Fatal(error) => return Err(*error),
                Failure::Transient { message, last } if attempt >= max_attempts => {
                    return Err(last.map_or_else(
                        || Error::Transport {
                            base_url: self.base().to_string(),
                            endpoint: endpoint.to_string(),
                            attempts: attempt,
                            message,
                        },
                        |last| *last,
                    ));
                }
                Failure::Transient { message, .. } => {
                    let wait = self.retry.backoff(attempt);
                    tracing::warn!(endpoint, attempt, ?wait, %message, "retrying");
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// Sorts a response into success, a transient failure or a final error.
    fn check(&self, endpoint: &str, response: Response) -> Result<Response, Failure> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Failure::Fatal(Box::new(Error::Unauthorized {
                base_url: self.base().to_string(),
                endpoint: endpoint.to_string(),
                status: status.as_u16(),
            })));
        }
        let body = response.text().unwrap_or_default();
        let error = mlflow_error(endpoint, status, &body);
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Err(Failure::Transient {
                message: error.to_string(),
                last: Some(Box::new(error)),
            })
        } else {
            Err(Failure::Fatal(Box::new(error)))
        }
    }

    /// `GET` JSON with query parameters.
    pub(crate) fn get<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        query: &[(&str, &str)],
    ) -> Result<T> {
        let url = self.url(endpoint, &[], query)?;
        let response = self.send(endpoint, true, &|client| {
            Ok(client.get(url.clone()).timeout(self.request_timeout))
        })?;
        parse_json(endpoint, response)
    }

    /// Sends a JSON body with `method`; `retry` is off for non-idempotent calls whose retry
    /// the caller handles itself.
    pub(crate) fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        body: &serde_json::Value,
        retry: bool,
    ) -> Result<T> {
        let url = self.url(endpoint, &[], &[])?;
        let response = self.send(endpoint, retry, &|client| {
            Ok(client
                .request(method.clone(), url.clone())
                .timeout(self.request_timeout)
                .json(body))
        })?;
        parse_json(endpoint, response)
    }

    /// `POST` JSON, retrying transient failures.
    pub(crate) fn post<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &serde_json::Value,
    ) -> Result<T> {
        self.send_json(Method::POST, endpoint, body, true)
    }

    /// `PUT`s a local file to `url`, streaming it (re-opened for each attempt).
    pub(crate) fn put_file(&self, endpoint: &str, url: &Url, local_path: &Path) -> Result<()> {
        self.send(endpoint, true, &|client| {
            let file = File::open(local_path).map_err(|e| Error::io(local_path, e))?;
            Ok(client
                .put(url.clone())
                .timeout(self.transfer_timeout)
                .body(file))
        })?;
        Ok(())
    }

    /// `GET`s `url` into `dest` (created or truncated), streaming, and returns the SHA-256
    /// and size of the bytes written. A body cut short is retried from the start.
    pub(crate) fn get_to_file(
        &self,
        endpoint: &str,
        url: &Url,
        dest: &Path,
    ) -> Result<(String, u64)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut response = self.send(endpoint, true, &|client| {
                Ok(client.get(url.clone()).timeout(self.transfer_timeout))
            })?;
            let file = File::create(dest).map_err(|e| Error::io(dest, e))?;
            let mut writer = HashingWriter::new(file);
            match response.copy_to(&mut writer) {
                Ok(_) => {
                    let (sha, size, file) = writer.finish();
                    file.sync_all().map_err(|e| Error::io(dest, e))?;
                    return Ok((sha, size));
                }
                Err(e) if attempt < self.retry.max_attempts => {
                    let error = describe_reqwest(&e);
                    tracing::warn!(endpoint, attempt, %error, "download cut short; retrying");
                    std::thread::sleep(self.retry.backoff(attempt));
                }
                Err(e) => {
                    return Err(Error::Transport {
                        base_url: self.base().to_string(),
                        endpoint: endpoint.to_string(),
                        attempts: attempt,
                        message: describe_reqwest(&e),
                    });
                }
            }
        }
    }
}

/// Probes `GET /health`, once, without retrying.
pub(crate) fn health(transport: &Transport) -> Result<()> {
    let endpoint = crate::names::endpoint::HEALTH;
    let url = transport.url(endpoint, &[], &[])?;
    transport.send(endpoint, false, &|client| Ok(client.get(url.clone())))?;
    Ok(())
}

fn parse_json<T: DeserializeOwned>(endpoint: &str, response: Response) -> Result<T> {
    let text = response.text().map_err(|e| Error::Protocol {
        endpoint: endpoint.to_string(),
        message: format!("reading the body: {}", describe_reqwest(&e)),
    })?;
    let text = if text.trim().is_empty() {
        "{}"
    } else {
        text.as_str()
    };
    serde_json::from_str(text).map_err(|e| Error::Protocol {
        endpoint: endpoint.to_string(),
        message: format!("{e} in {}", truncate(text, 300)),
    })
}

/// Turns an error reply into an [`Error`]: MLflow's JSON (`error_code`, `message`), a
/// FastAPI `detail`, or the raw text. "Does not exist" becomes [`Error::NotFound`].
fn mlflow_error(endpoint: &str, status: StatusCode, body: &str) -> Error {
    #[derive(serde::Deserialize, Default)]
    struct Reply {
        #[serde(default)]
        error_code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        detail: Option<serde_json::Value>,
    }
    let reply: Reply = serde_json::from_str(body).unwrap_or_default();
    let code = if reply.error_code.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("ERROR")
            .to_uppercase()
            .replace(' ', "_")
    } else {
        reply.error_code
    };
    let message = match (reply.message.is_empty(), reply.detail) {
        (false, _) => reply.message,
        (true, Some(serde_json::Value::String(detail))) => detail,
        (true, Some(detail)) => detail.to_string(),
        (true, None) => truncate(body, 300),
    };
    if code == code::NOT_FOUND || (status == StatusCode::NOT_FOUND && code == "NOT_FOUND") {
        return Error::NotFound {
            what: format!("{endpoint}: {message}"),
            hint: String::new(),
        };
    }
    Error::Mlflow {
        endpoint: endpoint.to_string(),
        status: status.as_u16(),
        code,
        message,
    }
}

/// A reqwest error without the URL (the URL is reported separately and could, if a user
/// put credentials in it, leak them).
fn describe_reqwest(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "reading the body failed"
    } else {
        "request failed"
    };
    let mut message = kind.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        format!("{}...", text.chars().take(max_chars).collect::<String>())
    }
}

/// Creates the parent folder of `dest`.
pub(crate) fn ensure_parent(dest: &Path) -> Result<()> {
    match dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => fsutil::create_dir_all(parent),
        None => Ok(()),
    }
}
