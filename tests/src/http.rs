//! HTTP over real TCP from a namespace, from a chosen source address: the demo's application
//! clients and metrics scrapes. Every request is bounded by a timeout.

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
    /// The server answered with this status.
    Answered(u16),
    /// No connection within the timeout: dropped on the way (guard drops the SYNs).
    NoAnswer,
}

/// Where a request goes and where it comes from.
#[derive(Clone, Copy)]
pub struct Route<'a> {
    pub ns: &'a Netns,
    pub src: IpAddr,
    pub dst: SocketAddr,
    pub timeout: Duration,
}

/// POSTs `body` to `http://dst/path`.
pub fn post(rt: &tokio::runtime::Runtime, route: Route<'_>, path: &str, body: String) -> Outcome {
    request(rt, route, "POST", path, body).0
}

/// GETs `http://dst/path`: the outcome and the body.
pub fn get(rt: &tokio::runtime::Runtime, route: Route<'_>, path: &str) -> (Outcome, String) {
    request(rt, route, "GET", path, String::new())
}

fn request(
    rt: &tokio::runtime::Runtime,
    route: Route<'_>,
    method: &str,
    path: &str,
    body: String,
) -> (Outcome, String) {
    let Route {
        ns,
        src,
        dst,
        timeout,
    } = route;
    let connected = ns.run(move || -> std::io::Result<std::net::TcpStream> {
        let sock = Socket::new(Domain::for_address(dst), Type::STREAM, None)?;
        sock.bind(&SocketAddr::new(src, 0).into())?;
        sock.connect_timeout(&dst.into(), timeout)?;
        sock.set_nonblocking(true)?;
        Ok(sock.into())
    });
    let Ok(stream) = connected else {
        return (Outcome::NoAnswer, String::new());
    };
    rt.block_on(async move {
        let exchange = async {
            let stream = tokio::net::TcpStream::from_std(stream).ok()?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .ok()?;
            tokio::spawn(conn);
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", dst.to_string())
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .ok()?;
            let resp = sender.send_request(req).await.ok()?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.ok()?.to_bytes();
            Some((status, String::from_utf8_lossy(&body).into_owned()))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Some((status, body))) => (Outcome::Answered(status), body),
            _ => (Outcome::NoAnswer, String::new()),
        }
    })
}
