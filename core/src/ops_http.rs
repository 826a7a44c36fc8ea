//! The HTTP port every daemon serves beside its gRPC one: `/healthz`, `/readyz`, Prometheus
//! `/metrics`, and where the daemon has them, a status page at `/` and Prometheus service
//! discovery at `/targets`.
//!
//! It is plain HTTP/1.1 because that is what kubelet probes, Prometheus and browsers speak;
//! gRPC stays on its own port so that a scrape never competes with a transfer's stream.

use crate::error::{CoreError, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// What a daemon shows on its HTTP port.
pub trait OpsView: Send + Sync + 'static {
    /// `Ok` once the daemon serves requests; otherwise why not (shown on `/readyz`).
    fn ready(&self) -> std::result::Result<(), String>;

    /// Its metrics in Prometheus' text format.
    fn metrics(&self) -> String;

    /// Its status page (a whole HTML document), if it has one.
    fn status_page(&self) -> Option<String> {
        None
    }

    /// Prometheus HTTP service discovery (JSON) of the processes it knows, if any.
    fn targets(&self) -> Option<String> {
        None
    }
}

/// Content type of Prometheus' text exposition format.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `host:port` for `role` (0 picks a free port) and serves `view` there until
/// `shutdown` resolves; returns the bound address, also printed on standard error (the
/// daemon's log) as "<role> http on <host>:<port>", for scripts to find. Not on standard
/// output: the processes that start daemons read only their first line there.
pub async fn serve(
    role: &str,
    host: &str,
    port: u16,
    view: Arc<dyn OpsView>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(|e| {
            CoreError::Unavailable(format!(
                "{role} cannot serve its HTTP port (health, metrics) on {host}:{port}: {e}; \
                 pick another with http_port (0: any free port)"
            ))
        })?;
    let addr = listener.local_addr().map_err(|e| {
        CoreError::Unavailable(format!("{role}: cannot read its HTTP address: {e}"))
    })?;
    eprintln!("{role} http on {host}:{}", addr.port());
    serve_on(listener, view, shutdown);
    Ok(addr)
}

/// Serves `view` on a bound `listener` in the background until `shutdown` resolves.
pub fn serve_on(
    listener: tokio::net::TcpListener,
    view: Arc<dyn OpsView>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = router(view);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!("the HTTP port stopped: {e}");
        }
    });
}

/// The routes over `view`.
pub fn router(view: Arc<dyn OpsView>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/targets", get(targets))
        .route("/", get(status))
        .with_state(view)
}

async fn readyz(State(view): State<Arc<dyn OpsView>>) -> Response {
    match view.ready() {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(view): State<Arc<dyn OpsView>>) -> Response {
    ([(header::CONTENT_TYPE, METRICS_TYPE)], view.metrics()).into_response()
}

async fn targets(State(view): State<Arc<dyn OpsView>>) -> Response {
    match view.targets() {
        Some(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        None => (StatusCode::NOT_FOUND, "this daemon lists no targets\n").into_response(),
    }
}

async fn status(State(view): State<Arc<dyn OpsView>>) -> Response {
    match view.status_page() {
        Some(page) => Html(page).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no status page here: see /metrics, /healthz and /readyz\n",
        )
            .into_response(),
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The shared frame of a status page: a title, a refresh, a readable width, and `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"5\"><title>{t}</title><style>\
         body{{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}}\
         h1{{font-size:1.4em}} h2{{font-size:1.1em;margin-top:1.6em}}\
         table{{border-collapse:collapse;width:100%}} th,td{{text-align:left;padding:3px 8px;border-bottom:1px solid #ddd;vertical-align:top}}\
         th{{background:#f3f3f3}} td.num{{text-align:right;font-variant-numeric:tabular-nums}}\
         .bad{{color:#b00020}} .ok{{color:#1b6e20}} .muted{{color:#777}} code{{font-size:12px}}\
         </style></head><body><h1>{t}</h1>{body}\
         <p class=\"muted\">Refreshes every 5 s. Also: <a href=\"/metrics\">/metrics</a>, \
         <a href=\"/readyz\">/readyz</a>.</p></body></html>\n",
        t = escape_html(title)
    )
}

/// A table of `rows` under `headers`; cells are HTML already (escape text first). `empty`
/// is shown instead when there are no rows.
pub fn table(headers: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"muted\">{}</p>", escape_html(empty));
    }
    let mut out = String::from("<table><tr>");
    for h in headers {
        out.push_str(&format!("<th>{}</th>", escape_html(h)));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{cell}</td>"));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

/// Prometheus' text format of `registry`.
pub fn encode(registry: &prometheus::Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out) {
        tracing::warn!("metrics did not encode: {e}");
    }
    out
}

/// Buckets of latency histograms, in seconds: 0.5 ms to about 2 minutes.
pub fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.0005, 2.0, 19).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct View(bool);

    impl OpsView for View {
        fn ready(&self) -> std::result::Result<(), String> {
            if self.0 {
                Ok(())
            } else {
                Err("still loading".into())
            }
        }
        fn metrics(&self) -> String {
            "# TYPE x counter\nx 1\n".into()
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        let code = text[9..12].parse().unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (code, body)
    }

    #[tokio::test]
    async fn serves_health_readiness_metrics_and_says_what_is_missing() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let addr = serve("test", "127.0.0.1", 0, Arc::new(View(false)), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
        assert_eq!(get(addr, "/healthz").await, (200, "ok\n".into()));
        let (code, body) = get(addr, "/readyz").await;
        assert_eq!((code, body.as_str()), (503, "not ready: still loading\n"));
        assert_eq!(get(addr, "/metrics").await.1, "# TYPE x counter\nx 1\n");
        assert_eq!(get(addr, "/").await.0, 404);
        assert_eq!(get(addr, "/targets").await.0, 404);
        let _ = tx.send(());
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let t = table(&["a"], &[vec![escape_html("<b>")]], "none");
        assert!(t.contains("<td>&lt;b&gt;</td>"));
        assert!(table(&["a"], &[], "nothing yet").contains("nothing yet"));
    }
}
