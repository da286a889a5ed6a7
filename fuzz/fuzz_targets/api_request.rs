//! The API's request decoding on arbitrary requests (method, path, headers, body), against a
//! router with no tasks behind it: every answer is well-formed, and bad input is never a 500.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

fuzz_target!(|data: &[u8]| {
    let (head, body) = data.split_at(data.len().min(64));
    let head = String::from_utf8_lossy(head);
    let mut parts = head.splitn(3, ' ');
    let method = match parts.next().unwrap_or("").len() % 4 {
        0 => "GET",
        1 => "POST",
        2 => "PUT",
        _ => "DELETE",
    };
    let path = format!("/{}", parts.next().unwrap_or("").trim_start_matches('/'));
    let token = parts.next().unwrap_or("");
    let Ok(request) = axum::http::Request::builder()
        .method(method)
        .uri(&path)
        .header("content-type", if body.first().is_some_and(|b| b % 2 == 0) { "application/json" } else { "text/plain" })
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::from(body.to_vec()))
    else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cfg = carrier_control::config::ApiConfig { token: Some("fuzz-token-1".into()), ..Default::default() };
    let router = carrier_control::api::router(carrier_control::state::State::detached(), &cfg);
    let response = rt.block_on(router.oneshot(request)).unwrap();
    assert_ne!(response.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR, "{method} {path}");
});
