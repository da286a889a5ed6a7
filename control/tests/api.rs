//! The control-plane API against a running `carrier-control` (no root: no dataplane, a
//! neighbour that never connects, the API on a loopback port): every endpoint, the bearer
//! token, and bad input answered with a JSON error and a 4xx.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const TOKEN: &str = "test-token-123";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn config(port: u16, extra: &str) -> String {
    format!(
        r#"
[bgp]
asn = 65000
router_id = "10.255.0.1"
[dataplane]
socket = "/nonexistent/carrier-api-test.sock"
config = "{dp}"
[api]
listen = "127.0.0.1:{port}"
token = "{TOKEN}"
poll_ms = 200
[[neighbor]]
address = "192.0.2.2"
remote_as = 65000
families = ["vpnv4"]
passive = true
[[vrf]]
name = "red"
rd = "65000:1"
import = ["65000:1"]
export = ["65000:1"]
[[vrf]]
name = "blue"
rd = "65000:2"
import = ["65000:2"]
export = ["65000:2"]
{extra}
"#,
        dp = workspace().join("examples/pe1.toml").display()
    )
}

/// A running control process and its API's base URL.
struct Control {
    base: String,
    port: u16,
    dir: PathBuf,
}

fn start() -> Control {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("carrier-api-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("control.toml");
    std::fs::write(&path, config(port, "")).unwrap();
    let cfg = carrier_control::config::ControlConfig::load(&path).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let _ = rt.block_on(carrier_control::daemon::run(cfg, path));
    });
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ureq::get(&format!("{base}/peers")).call().is_err() {
        assert!(Instant::now() < deadline, "the API did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Control { base, port, dir }
}

/// Status and JSON body of a request.
fn call(method: &str, url: &str, token: Option<&str>, body: Option<(&str, &str)>) -> (u16, Value) {
    let mut req = ureq::request(method, url);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let r = match body {
        Some((ctype, b)) => req.set("Content-Type", ctype).send_string(b),
        None => req.call(),
    };
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let code = resp.status();
    let text = resp.into_string().unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (code, v)
}

fn get(c: &Control, path: &str) -> (u16, Value) {
    call("GET", &format!("{}{path}", c.base), None, None)
}

fn post_json(c: &Control, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    call("POST", &format!("{}{path}", c.base), token, Some(("application/json", body)))
}

/// The error body's code, after checking it has a message.
fn code(v: &Value) -> &str {
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "error without a message: {v}");
    v["code"].as_str().unwrap_or_else(|| panic!("error without a code: {v}"))
}

#[test]
fn reads_show_the_configured_router() {
    let c = start();
    let (s, peers) = get(&c, "/peers");
    assert_eq!(s, 200);
    assert_eq!(peers[0]["address"], "192.0.2.2");
    assert_eq!(peers[0]["remote_as"], 65000);
    assert!(["idle", "active"].contains(&peers[0]["state"].as_str().unwrap()), "{peers}");
    let (s, one) = get(&c, "/peers/192.0.2.2");
    assert_eq!((s, &one["address"]), (200, &json!("192.0.2.2")));

    // No dataplane: degraded, and it says why (once the poller has tried).
    let deadline = Instant::now() + Duration::from_secs(5);
    let (s, h) = loop {
        let (s, h) = get(&c, "/health");
        if h["last_error"].as_str().is_some_and(|e| e.contains("table socket")) || Instant::now() > deadline {
            break (s, h);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(s, 200);
    assert_eq!((h["status"].as_str(), h["dataplane_connected"].as_bool()), (Some("degraded"), Some(false)));
    assert!(h["last_error"].as_str().is_some_and(|e| e.contains("table socket")), "{h}");

    let (_, ifs) = get(&c, "/interfaces");
    let red = ifs.as_array().unwrap().iter().find(|i| i["name"] == "ce-red").unwrap();
    assert_eq!((red["role"].as_str(), red["instance"].as_str()), (Some("vrf"), Some("red")));
    assert_eq!(red["addresses"], json!(["10.1.0.1/24"]));
    // pe1.toml's ports do not exist where the test runs.
    assert_eq!(red["link"], "unknown");

    // The summary is published within a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let vrfs = loop {
        let (_, v) = get(&c, "/vrfs");
        if v.as_array().is_some_and(|a| a.len() == 2) || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(vrfs[0]["name"], "red");
    assert_eq!((vrfs[0]["rd"].as_str(), vrfs[0]["label_mode"].as_str()), (Some("65000:1"), Some("per-vrf")));
    let (s, blue) = get(&c, "/vrfs/blue");
    assert_eq!((s, blue["import"].clone()), (200, json!(["target:65000:2"])));

    let (s, rib) = get(&c, "/rib?vrf=red");
    assert_eq!(s, 200);
    let connected: Vec<&str> = rib.as_array().unwrap().iter().filter(|r| r["protocol"] == "connected").map(|r| r["prefix"].as_str().unwrap()).collect();
    assert_eq!(connected, vec!["10.1.0.0/24", "10.3.0.0/24"]);
    let (_, all) = get(&c, "/rib");
    assert!(all.as_array().unwrap().iter().any(|r| r["vrf"] == "underlay" && r["prefix"] == "192.0.2.0/30"), "{all}");

    // One label for red, one for blue (per-VRF), each popping into its VRF; then the
    // dataplane config's own labels (pe1.toml: 100, 101, 200, 500).
    let (_, mpls) = get(&c, "/mpls");
    let allocated: Vec<&str> = mpls.as_array().unwrap().iter().filter(|l| l["kind"] == "per-vrf").map(|l| l["vrf"].as_str().unwrap()).collect();
    assert_eq!(allocated, vec!["red", "blue"], "{mpls}");
    assert!(mpls[0]["label"].as_u64().unwrap() >= 16);
    let fixed: Vec<(u64, &str, Option<&str>, Option<u64>)> = mpls
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "static")
        .map(|l| (l["label"].as_u64().unwrap(), l["vrf"].as_str().unwrap(), l["next_hop"].as_str(), l["out_label"].as_u64()))
        .collect();
    assert_eq!(
        fixed,
        vec![(100, "red", None, None), (101, "red", Some("10.1.0.2"), None), (200, "blue", None, None), (500, "underlay", Some("10.255.0.2"), Some(600))],
        "{mpls}"
    );

    for path in ["/evpn", "/stats/ports", "/stats/labels", "/stats/vrfs", "/stats/drops", "/dataplane"] {
        assert_eq!(get(&c, path).0, 200, "{path}");
    }
    // No dataplane behind this control process: no neighbours (and /health says why).
    let (s, v) = get(&c, "/neighbours");
    assert_eq!((s, v), (200, json!([])));
    let (s, m) = get(&c, "/metrics");
    assert_eq!(s, 200);
    let m = m.as_str().unwrap();
    assert!(m.contains("carrier_bgp_peer_state{peer=\"192.0.2.2\"}"), "{m}");
    assert!(m.contains("carrier_dataplane_connected 0"), "{m}");
    assert!(m.contains("carrier_label_in_packets_total{label="), "{m}");
    assert!(m.contains("# TYPE carrier_bgp_peer_flaps_total counter"), "classic format: {m}");
    let om = ureq::get(&format!("{}/metrics", c.base)).set("Accept", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5").call().unwrap();
    assert!(om.content_type().starts_with("application/openmetrics-text"));
    let om = om.into_string().unwrap();
    assert!(om.contains("# TYPE carrier_bgp_peer_flaps counter") && om.trim_end().ends_with("# EOF"), "{om}");
}

#[test]
fn bad_reads_are_4xx_with_a_json_error() {
    let c = start();
    for (path, status, want) in [
        ("/peers/not-an-address", 400, "bad-request"),
        ("/peers/192.0.2.99", 404, "not-found"),
        ("/vrfs/green", 404, "not-found"),
        ("/rib?vrf=green", 404, "not-found"),
        ("/rib?color=red", 400, "bad-request"),
        ("/nothing/here", 404, "not-found"),
    ] {
        let (s, v) = get(&c, path);
        assert_eq!((s, code(&v)), (status, want), "{path}: {v}");
    }
    let (s, v) = call("DELETE", &format!("{}/peers", c.base), None, None);
    assert_eq!((s, code(&v)), (405, "method-not-allowed"));
}

#[test]
fn writes_need_the_token() {
    let c = start();
    let body = r#"{"prefix": "10.99.0.0/24", "via": "10.1.0.2"}"#;
    let (s, v) = post_json(&c, "/vrfs/red/routes", None, body);
    assert_eq!((s, code(&v)), (401, "unauthorized"));
    let (s, v) = post_json(&c, "/vrfs/red/routes", Some("wrong-token-000"), body);
    assert_eq!((s, code(&v)), (403, "forbidden"));
    let (s, v) = post_json(&c, "/vrfs/red/routes", Some(&TOKEN[..TOKEN.len() - 1]), body);
    assert_eq!((s, code(&v)), (403, "forbidden"), "a prefix of the token is not the token");
    // Reads are open.
    assert_eq!(get(&c, "/peers").0, 200);
}

#[test]
fn static_routes_are_added_and_removed() {
    let c = start();
    let t = Some(TOKEN);
    let (s, v) = post_json(&c, "/vrfs/red/routes", t, r#"{"prefix": "10.99.0.0/24", "via": "10.1.0.2"}"#);
    assert_eq!(s, 201, "{v}");
    let (_, rib) = get(&c, "/rib?vrf=red");
    let r = rib.as_array().unwrap().iter().find(|r| r["prefix"] == "10.99.0.0/24").unwrap_or_else(|| panic!("{rib}"));
    assert_eq!((r["protocol"].as_str(), r["paths"][0]["next_hop"].as_str()), (Some("static"), Some("10.1.0.2")));
    // Only in red.
    let (_, blue) = get(&c, "/rib?vrf=blue");
    assert!(!blue.as_array().unwrap().iter().any(|r| r["prefix"] == "10.99.0.0/24"));

    for (body, status, want) in [
        (r#"{"prefix": "10.99.0.1/24", "via": "10.1.0.2"}"#, 400, "bad-request"),
        (r#"{"prefix": "10.99.0.0/33", "via": "10.1.0.2"}"#, 400, "bad-request"),
        (r#"{"prefix": "10.99.0.0/24", "via": "10.77.0.2"}"#, 422, "invalid"),
        (r#"{"prefix": "10.99.0.0/24", "via": 5}"#, 422, "invalid-json"),
        (r#"{"prefix": "10.99.0.0/24"}"#, 422, "invalid-json"),
        (r#"{"prefix": "10.99.0.0/24", "via": "10.1.0.2", "extra": 1}"#, 422, "invalid-json"),
        (r#"{"prefix": "10.99.0.0/24", "#, 400, "invalid-json"),
        ("", 400, "invalid-json"),
    ] {
        let (s, v) = post_json(&c, "/vrfs/red/routes", t, body);
        assert_eq!((s, code(&v)), (status, want), "{body}: {v}");
    }
    let (s, v) = post_json(&c, "/vrfs/green/routes", t, r#"{"prefix": "10.99.0.0/24", "via": "10.1.0.2"}"#);
    assert_eq!((s, code(&v)), (404, "not-found"));
    let (s, v) = call("POST", &format!("{}/vrfs/red/routes", c.base), t, Some(("text/plain", "prefix=10.99.0.0/24")));
    assert_eq!((s, code(&v)), (415, "unsupported-media-type"));
    let big = format!(r#"{{"prefix": "{}", "via": "10.1.0.2"}}"#, "1".repeat(carrier_control::api::MAX_BODY + 1));
    let (s, v) = post_json(&c, "/vrfs/red/routes", t, &big);
    assert_eq!((s, code(&v)), (413, "payload-too-large"));

    let (s, v) = call("DELETE", &format!("{}/vrfs/red/routes/10.99.0.0/24", c.base), t, None);
    assert_eq!(s, 200, "{v}");
    let (_, rib) = get(&c, "/rib?vrf=red");
    assert!(!rib.as_array().unwrap().iter().any(|r| r["prefix"] == "10.99.0.0/24"), "{rib}");
    let (s, v) = call("DELETE", &format!("{}/vrfs/red/routes/10.99.0.0/24", c.base), t, None);
    assert_eq!((s, code(&v)), (404, "not-found"));
    let (s, v) = call("DELETE", &format!("{}/vrfs/red/routes/10.99.0.0/99", c.base), t, None);
    assert_eq!((s, code(&v)), (400, "bad-request"));
}

/// Poll `path` until `ok` holds for its body (views are published by the rib task just after
/// it answers a write).
fn until(c: &Control, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, v) = get(c, path);
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{path}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A VRF created, a port attached to it with an address, a static route through it; the VRF
/// cannot be deleted while the port is in it; detached and deleted. Bad requests get 4xx.
#[test]
fn vrfs_are_created_ports_attached_and_detached() {
    let c = start();
    let t = Some(TOKEN);
    let (s, v) = post_json(&c, "/vrfs", t, r#"{"name": "green", "rd": "65000:77", "import": ["65000:77"], "export": ["65000:77"], "prefix_counters": true}"#);
    assert_eq!(s, 201, "{v}");
    assert!(v["changes"].as_array().unwrap().iter().any(|c| c == "dataplane: vrf green added"), "{v}");
    until(&c, "/vrfs", |v| v.as_array().unwrap().iter().any(|x| x["name"] == "green" && x["rd"] == "65000:77" && x["prefix_counters"] == true));
    assert!(get(&c, "/vrfs").1.as_array().unwrap().iter().any(|x| x["name"] == "red" && x["prefix_counters"] == false));
    let (s, v) = post_json(&c, "/interfaces/ce-red2/attach", t, r#"{"vrf": "green", "addresses": ["10.77.0.1/24"]}"#);
    assert_eq!(s, 200, "{v}");
    until(&c, "/interfaces", |v| v.as_array().unwrap().iter().any(|i| i["name"] == "ce-red2" && i["role"] == "vrf" && i["instance"] == "green" && i["addresses"][0] == "10.77.0.1/24"));
    let (s, v) = post_json(&c, "/vrfs/green/routes", t, r#"{"prefix": "10.78.0.0/24", "via": "10.77.0.2"}"#);
    assert_eq!(s, 201, "{v}");
    let rib = until(&c, "/rib?vrf=green", |v| v.as_array().is_some_and(|a| a.iter().any(|r| r["prefix"] == "10.77.0.0/24")));
    assert!(rib.as_array().unwrap().iter().any(|r| r["prefix"] == "10.78.0.0/24"), "{rib}");
    let (s, v) = call("DELETE", &format!("{}/vrfs/green", c.base), t, None);
    assert_eq!((s, code(&v)), (409, "conflict"), "{v}");
    for (path, body, status, want) in [
        ("/vrfs", r#"{"name": "green"}"#, 409, "conflict"),
        ("/vrfs", r#"{"name": "a b"}"#, 422, "invalid"),
        ("/vrfs", r#"{"name": "x", "rd": "nonsense"}"#, 400, "bad-request"),
        ("/vrfs", r#"{"name": "x", "import": ["1:2:3"]}"#, 400, "bad-request"),
        ("/vrfs", r#"{"name": "x", "rd": "65000:77"}"#, 409, "conflict"),
        ("/vrfs", r#"{"name": 5}"#, 422, "invalid-json"),
        ("/interfaces/ce-red2/attach", r#"{"vrf": "green", "core": true}"#, 400, "bad-request"),
        ("/interfaces/ce-red2/attach", r#"{}"#, 400, "bad-request"),
        ("/interfaces/ce-red2/attach", r#"{"vrf": "nope"}"#, 422, "invalid"),
        ("/interfaces/ce-red2/attach", r#"{"vrf": "green", "addresses": ["10.77.0.1"]}"#, 400, "bad-request"),
        ("/interfaces/nope/attach", r#"{"vrf": "green"}"#, 404, "not-found"),
        ("/interfaces/nope/detach", "", 404, "not-found"),
    ] {
        let (s, v) = if body.is_empty() { call("POST", &format!("{}{path}", c.base), t, None) } else { post_json(&c, path, t, body) };
        assert_eq!((s, code(&v)), (status, want), "{path} {body}: {v}");
    }
    let (s, v) = post_json(&c, "/vrfs", None, r#"{"name": "x"}"#);
    assert_eq!((s, code(&v)), (401, "unauthorized"), "{v}");
    let (s, v) = call("POST", &format!("{}/interfaces/ce-red2/detach", c.base), t, None);
    assert_eq!(s, 200, "{v}");
    until(&c, "/interfaces", |v| v.as_array().unwrap().iter().any(|i| i["name"] == "ce-red2" && i["role"] == "detached"));
    let (s, v) = call("DELETE", &format!("{}/vrfs/green", c.base), t, None);
    assert_eq!(s, 200, "{v}");
    until(&c, "/vrfs", |v| !v.as_array().unwrap().iter().any(|x| x["name"] == "green"));
    let (s, v) = call("DELETE", &format!("{}/vrfs/green", c.base), t, None);
    assert_eq!((s, code(&v)), (404, "not-found"), "{v}");
    // Per-prefix counters are read from the dataplane, which this test does not run.
    let (s, v) = get(&c, "/stats/prefixes?vrf=red");
    assert_eq!((s, code(&v)), (503, "unavailable"), "{v}");
    let (s, v) = get(&c, "/stats/prefixes");
    assert_eq!((s, code(&v)), (400, "bad-request"), "{v}");
}

#[test]
fn neighbor_admin_down_and_up() {
    let c = start();
    let t = Some(TOKEN);
    let (s, v) = post_json(&c, "/neighbors/192.0.2.2", t, r#"{"action": "down"}"#);
    assert_eq!(s, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, p) = get(&c, "/peers/192.0.2.2");
        if p["admin_down"] == true && p["state"] == "idle" {
            assert!(p["history"].as_array().unwrap().iter().any(|h| h["event"] == "admin down"), "{p}");
            break;
        }
        assert!(Instant::now() < deadline, "{p}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (s, _) = post_json(&c, "/neighbors/192.0.2.2", t, r#"{"action": "up"}"#);
    assert_eq!(s, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, p) = get(&c, "/peers/192.0.2.2");
        if p["admin_down"] == false && p["state"] == "active" {
            break;
        }
        assert!(Instant::now() < deadline, "{p}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (path, body, status, want) in [
        ("/neighbors/192.0.2.9", r#"{"action": "down"}"#, 404, "not-found"),
        ("/neighbors/192.0.2.2", r#"{"action": "reboot"}"#, 422, "invalid-json"),
        ("/neighbors/nobody", r#"{"action": "down"}"#, 400, "bad-request"),
    ] {
        let (s, v) = post_json(&c, path, t, body);
        assert_eq!((s, code(&v)), (status, want), "{path} {body}: {v}");
    }
}

#[test]
fn apply_changes_only_what_differs() {
    let c = start();
    let t = Some(TOKEN);
    let put = |text: &str| call("PUT", &format!("{}/config", c.base), t, Some(("text/plain", text)));
    let (s, v) = put(&config(c.port, ""));
    assert_eq!((s, v["unchanged"].as_bool()), (200, Some(true)), "the same file twice changes nothing: {v}");
    // A static route added to blue (the last [[vrf]]).
    let extra = "[[vrf.static]]\nprefix = \"10.8.0.0/16\"\nvia = \"10.1.0.2\"\n";
    let (s, v) = put(&config(c.port, extra));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["changes"], json!(["vrf blue changed"]));
    let (_, rib) = get(&c, "/rib?vrf=blue");
    assert!(rib.as_array().unwrap().iter().any(|r| r["prefix"] == "10.8.0.0/16" && r["protocol"] == "static"), "{rib}");
    // A neighbor replaced by another: the old one is gone, the new one is there.
    let (s, v) = put(&config(c.port, extra).replace("192.0.2.2", "192.0.2.3"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["changes"], json!(["neighbor 192.0.2.3 added", "neighbor 192.0.2.2 removed"]), "{v}");
    let (s, _) = get(&c, "/peers/192.0.2.2");
    assert_eq!(s, 404);
    let (s, p) = get(&c, "/peers/192.0.2.3");
    assert_eq!(s, 200, "{p}");
    // A label range change cannot be applied live: refused, nothing applied.
    let (s, v) = put(&config(c.port, &format!("{extra}[labels]\nfirst = 5000\nlast = 5999\n")).replace("192.0.2.2", "192.0.2.3"));
    assert_eq!((s, code(&v)), (409, "conflict"), "{v}");
    assert!(v["message"].as_str().unwrap_or_default().contains("label range"), "{v}");
    let (s, _) = get(&c, "/peers/192.0.2.3");
    assert_eq!(s, 200);
    let (s, v) = put("[bgp]\nasn = \"x\"");
    assert_eq!((s, code(&v)), (400, "bad-request"));
    assert!(v["message"].as_str().unwrap().contains("asn"), "{v}");
    let _ = std::fs::remove_dir_all(&c.dir);
}

#[test]
fn openapi_document_is_served_and_checked_in() {
    let c = start();
    let (s, served) = get(&c, "/openapi.json");
    assert_eq!(s, 200);
    assert_eq!(served["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
    let generated = serde_json::to_string_pretty(&carrier_control::api::openapi()).unwrap() + "\n";
    let path = workspace().join("docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(checked_in == generated, "docs/openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test -p carrier-control --test api`");
    assert_eq!(serde_json::from_str::<Value>(&checked_in).unwrap(), served);
    // Every route the router serves is in the document.
    for p in ["/health", "/peers", "/peers/{address}", "/neighbours", "/rib", "/mpls", "/metrics", "/neighbors/{address}", "/vrfs/{name}/routes", "/config"] {
        assert!(served["paths"][p].is_object(), "{p} missing");
    }
}

