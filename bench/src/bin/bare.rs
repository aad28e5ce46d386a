//! `bare`: the baseline of the HTTP benchmark. An axum server on the same axum, hyper and
//! tokio versions and the same runtime set-up as `tollgate serve` (multi-threaded runtime,
//! one worker per core, `axum::serve`), whose handlers do nothing: `POST
//! /v1/calls/authorize` and `POST /v1/calls/{call_id}/end` read the body and answer 200
//! with a small fixed JSON body. What tollgate adds on top of it (auth, JSON parsing, the
//! decision, the durable journal, metrics) is what `bench/http.sh` measures.
//!
//! Prints `listening on ADDR` on stdout like tollgate; listens on loopback only.
//!
//! `target/release/bare --listen 127.0.0.1:0`

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Bare axum baseline for the tollgate HTTP benchmark")]
struct Args {
    /// Loopback address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

const AUTHORIZE_BODY: &str = r#"{"decision":"allow","max_duration_s":3600,"call_id":"bare"}"#;
const END_BODY: &str = r#"{"call_id":"bare","duration_s":60,"charged":"0.01"}"#;

async fn authorize(body: Bytes) -> impl IntoResponse {
    std::hint::black_box(body);
    ([(header::CONTENT_TYPE, "application/json")], AUTHORIZE_BODY)
}

async fn end(body: Bytes) -> impl IntoResponse {
    std::hint::black_box(body);
    ([(header::CONTENT_TYPE, "application/json")], END_BODY)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        bail!(
            "{} is not a loopback address: the benchmark stays on this machine",
            args.listen
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        println!("listening on {}", listener.local_addr()?);
        let app = Router::new()
            .route("/v1/calls/authorize", post(authorize))
            .route("/v1/calls/{call_id}/end", post(end));
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        Ok(())
    })
}
