//! HTTP over real TCP from a namespace, from a chosen source address: for the demo's
//! application clients. Every request is bounded by a timeout.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use http_body_util::{BodyExt, Full};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;
use socket2::{Domain, Socket, Type};

use crate::netns::Netns;

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The application answered with this status.
    Answered(u16),
    /// No connection within the timeout: dropped on the way (guard drops the SYNs).
    NoAnswer,
}

/// POSTs `body` to `http://dst/path` from `src` (an address of `ns`).
pub fn post(
    rt: &tokio::runtime::Runtime,
    ns: &Netns,
    src: IpAddr,
    dst: SocketAddr,
    path: &str,
    body: String,
    timeout: Duration,
) -> Outcome {
    let connected = ns.run(move || -> std::io::Result<std::net::TcpStream> {
        let sock = Socket::new(Domain::for_address(dst), Type::STREAM, None)?;
        sock.bind(&SocketAddr::new(src, 0).into())?;
        sock.connect_timeout(&dst.into(), timeout)?;
        sock.set_nonblocking(true)?;
        Ok(sock.into())
    });
    let Ok(stream) = connected else {
        return Outcome::NoAnswer;
    };
    let path = path.to_string();
    rt.block_on(async move {
        let exchange = async {
            let stream = tokio::net::TcpStream::from_std(stream).ok()?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .ok()?;
            tokio::spawn(conn);
            let req = Request::post(path)
                .header("host", dst.to_string())
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .ok()?;
            let resp = sender.send_request(req).await.ok()?;
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            Some(status)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Some(status)) => Outcome::Answered(status),
            _ => Outcome::NoAnswer,
        }
    })
}
