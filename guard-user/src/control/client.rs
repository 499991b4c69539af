//! A small client for the control API on the Unix socket (used by guardctl and the tests;
//! the README shows the same calls with curl).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use http_body_util::{BodyExt, Full};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;
use serde::{Serialize, de::DeserializeOwned};
use tokio::net::UnixStream;

pub use hyper::{Method, StatusCode};

use crate::control::model::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach guardd at {socket}")]
    Unreachable {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("guardd refused: {message} (HTTP {status})")]
    Refused { status: StatusCode, message: String },
    #[error("talking to guardd: {0}")]
    Protocol(String),
    #[error("guardd at {socket} did not answer within {secs}s (hung, or overloaded)")]
    Timeout { socket: PathBuf, secs: u64 },
}

fn protocol(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(e.to_string())
}

pub struct Client {
    socket: PathBuf,
    /// How long a request may take, connecting included; None: as long as it takes.
    timeout: Option<Duration>,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
            timeout: None,
        }
    }

    /// Requests fail with `ClientError::Timeout` after `limit`.
    pub fn with_timeout(mut self, limit: Duration) -> Client {
        self.timeout = Some(limit);
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(protocol)?;
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::DELETE, path, None).await
    }

    /// Any request; the status and body as they came (tests of error answers use it).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let Some(limit) = self.timeout else {
            return self.exchange(method, path, body).await;
        };
        tokio::time::timeout(limit, self.exchange(method, path, body))
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Timeout {
                    socket: self.socket.clone(),
                    secs: limit.as_secs(),
                })
            })
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Unreachable {
                    socket: self.socket.clone(),
                    source,
                })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(protocol)?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "guardd")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(protocol)?;
        let resp = sender.send_request(req).await.map_err(protocol)?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(protocol)?
            .to_bytes();
        Ok((status, body))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let (status, body) = self.raw(method, path, body).await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            return Err(ClientError::Refused { status, message });
        }
        serde_json::from_slice(&body).map_err(protocol)
    }
}
