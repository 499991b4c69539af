//! The API's routing and percent-decoding: any method and request target through guardd's
//! own route table (`control::routes::router`), the entry routes' handlers decoding their
//! segment as guardd's do: never a panic, only the statuses guardd's router can give, and a
//! segment taken as a prefix only when it is one with no host bits and not /0.
#![no_main]

use std::sync::OnceLock;

use axum::{
    body::Body,
    extract::Path,
    http::{Method, Request, StatusCode},
    routing::{MethodRouter, delete, get, post},
};
use guard_user::{
    control::routes::{self, Handlers},
    lists::parse_net,
};
use libfuzzer_sys::fuzz_target;

async fn entry(Path(cidr): Path<String>) -> StatusCode {
    match parse_net(&cidr) {
        Ok(net) => {
            assert!(
                net.prefix_len() > 0 && net.trunc() == net,
                "{cidr:?} -> {net}"
            );
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

fn ok() -> MethodRouter {
    get(|| async { StatusCode::OK })
}

fn app() -> axum::Router {
    let both = || get(|| async { StatusCode::OK }).post(|| async { StatusCode::OK });
    let one = || post(|| async { StatusCode::OK });
    routes::router(Handlers {
        status: ok(),
        stats: ok(),
        bans: both(),
        ban: delete(entry),
        allows: both(),
        allow: delete(entry),
        vouches: both(),
        vouch: delete(entry),
        penalties: one(),
        reload: one(),
        top: ok(),
        shape: ok(),
    })
}

const METHODS: [&str; 8] = [
    "GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS", "PATCH", "GUARD",
];

fuzz_target!(|data: &[u8]| {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    static APP: OnceLock<axum::Router> = OnceLock::new();
    let Some((&m, target)) = data.split_first() else {
        return;
    };
    let method = Method::from_bytes(METHODS[m as usize % METHODS.len()].as_bytes()).unwrap();
    let Ok(req) = Request::builder()
        .method(method)
        .uri(target)
        .body(Body::empty())
    else {
        return;
    };
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    });
    let mut app = APP.get_or_init(app).clone();
    let resp = rt
        .block_on(tower_service::Service::call(&mut app, req))
        .unwrap_or_else(|e| match e {});
    let code = resp.status().as_u16();
    assert!(
        [200, 400, 404, 405].contains(&code),
        "{:?}: status {code}",
        String::from_utf8_lossy(target)
    );
});
