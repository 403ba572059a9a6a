//! The accept loop. Each connection is served by hyper directly (not
//! `axum::serve`) so a handler can ask for its own connection to be dropped
//! with no HTTP answer: the `DropAfterCreate` fault. Dropping the hyper
//! connection future closes the socket; the client sees a connection error.
//! [`apply`] runs one operation under its fault, for every route alike.

use std::time::Duration;

use axum::{
    Router,
    extract::Request,
    response::{IntoResponse as _, Response},
};
use hyper::body::Incoming;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::{
    faults::Fault,
    wire::{self, ApiError},
};

/// A request extension: cancel it to drop the connection the request came on.
#[derive(Debug, Clone)]
pub(crate) struct ConnKill(pub CancellationToken);

impl ConnKill {
    /// Closes the connection with no answer, then never returns (the
    /// handler future is dropped together with the connection).
    pub(crate) async fn drop_connection(&self) -> ! {
        self.0.cancel();
        std::future::pending().await
    }
}

/// Drops the request's connection with no answer; where there is no
/// connection to drop (a request served outside [`serve`]), answers 502.
pub(crate) async fn drop_or_502(kill: Option<ConnKill>) -> Response {
    match kill {
        Some(k) => k.drop_connection().await,
        None => ApiError::upstream(502).into_response(),
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub(crate) async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, router.clone(), shutdown.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "emulator accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(stream: TcpStream, router: Router, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let kill = CancellationToken::new();
    let ext = ConnKill(kill.clone());
    let svc = router.map_request(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ext.clone());
        req
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
    tokio::select! {
        _ = conn => {}
        () = kill.cancelled() => {}
        () = shutdown.cancelled() => {}
    }
}

/// Runs `work` (the operation, including its side effect) under `fault`.
///
/// `work` is synchronous, so once started it always completes, even when
/// the client has gone; a `Slow` call runs it in a detached task after the
/// delay for the same reason.
pub(crate) async fn apply<W>(fault: Option<Fault>, kill: Option<ConnKill>, work: W) -> Response
where
    W: FnOnce() -> Response + Send + 'static,
{
    let answer = match fault {
        Some(Fault::ErrorBeforeCreate { status }) => {
            return ApiError::upstream(status).into_response();
        }
        Some(Fault::Respond { status, body }) => return wire::json_response(status, body),
        Some(Fault::RateLimited { penalty_seconds }) => return wire::rate_limited(penalty_seconds),
        Some(Fault::InvalidToken) => return wire::invalid_token(),
        Some(Fault::Slow(d)) => {
            let task = tokio::spawn(async move {
                tokio::time::sleep(d).await;
                work()
            });
            return task
                .await
                .unwrap_or_else(|_| ApiError::upstream(500).into_response());
        }
        _ => work(),
    };
    match fault {
        Some(Fault::ErrorAfterCreate { status }) => ApiError::upstream(status).into_response(),
        Some(Fault::SleepAfterCreate(d)) => {
            tokio::time::sleep(d).await;
            answer
        }
        Some(Fault::DropAfterCreate) => drop_or_502(kill).await,
        _ => answer,
    }
}
