//! The controller's HTTP server (hyper, HTTP/1.1 keep-alive; TLS with rustls when configured)
//! and its router. Two planes share the listener: the agent plane (`/v1/enroll`,
//! `/v1/hosts/{id}/…`, authenticated by enrollment tokens and instance secrets) and the
//! operator plane (everything else under `/v1/`, authenticated by admin tokens). Signed,
//! expiring URLs (`download.rs`) serve bundles to hosts and environment info to operators.

pub mod download;
pub mod operator;
pub mod response;
pub mod tls;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::fleet::{App, reports};
use crate::secrets;
use crate::store::Store;
use response::{Answer, Failure, Handled};

/// Largest report body (after gunzip): status, 500 events, results.
pub const MAX_REPORT_BYTES: usize = 8 << 20;
/// Largest bundle upload (Elastic Beanstalk allows 500 MB).
pub const MAX_BUNDLE_BYTES: usize = 512 << 20;

/// Accepts connections until `stop` is cancelled, then lets open requests finish.
pub async fn serve<S: Store>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Arc<App<S>>,
    stop: CancellationToken,
) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(route(&app, request).await) }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    drive(connection, stop).await;
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        drive(connection, stop).await;
                    }
                    Err(error) => tracing::debug!(%error, "TLS handshake"),
                },
            }
        });
    }
    connections.close();
    connections.wait().await;
}

async fn drive<I, Sv>(
    connection: hyper::server::conn::http1::Connection<I, Sv>,
    stop: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    Sv: hyper::service::HttpService<Incoming, ResBody = http_body_util::Full<bytes::Bytes>>,
    Sv::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stop.cancelled() => {
            // Graceful: finish the request in flight, then close.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

fn header_value(request: &Request<Incoming>, name: header::HeaderName) -> Option<&str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn route<S: Store>(app: &App<S>, request: Request<Incoming>) -> Answer {
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method().clone();
    let handled = match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => Ok(response::plain(StatusCode::OK, "ok\n")),
        (&Method::POST, ["v1", "enroll"]) => {
            let token = header_value(&request, header::AUTHORIZATION)
                .and_then(|h| secrets::bearer(Some(h)))
                .map(str::to_string);
            match response::body(request, 64 << 10).await {
                Ok(body) => reports::enroll(app, token.as_deref(), &body)
                    .await
                    .map(|credential| response::ok(&credential)),
                Err(failure) => Err(failure),
            }
        }
        (&Method::POST, ["v1", "hosts", id, action @ ..]) => {
            host_plane(app, id, action, request).await
        }
        (&Method::GET, ["v1", "bundles", ..]) => {
            download::signed(app, &request, download::BUNDLES).await
        }
        (&Method::GET, ["v1", "environment-info", ..]) => {
            download::signed(app, &request, download::ENVIRONMENT_INFO).await
        }
        _ => match admin(app, &request).await {
            Ok(()) => operator::route(app, &method, &segments, request).await,
            Err(failure) => Err(failure),
        },
    };
    handled.unwrap_or_else(Failure::into_answer)
}

async fn host_plane<S: Store>(
    app: &App<S>,
    id: &str,
    action: &[&str],
    request: Request<Incoming>,
) -> Handled {
    let started = Instant::now();
    let bearer =
        header_value(&request, header::AUTHORIZATION).and_then(|h| secrets::bearer(Some(h)));
    let instance = match reports::authenticate(app, id, bearer).await {
        Ok(instance) => instance,
        Err(failure) => {
            app.counters
                .reports_rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(failure);
        }
    };
    match action {
        ["report"] => {
            let body = response::body(request, MAX_REPORT_BYTES).await?;
            match reports::report(app, instance, &body).await {
                Ok(reply) => {
                    app.counters
                        .report_took(started.elapsed().as_micros() as u64);
                    Ok(response::ok(&reply))
                }
                Err(Failure(StatusCode::SERVICE_UNAVAILABLE, message)) => {
                    app.counters
                        .reports_rejected
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let retry = app.config.hosts.interval.as_secs().max(1);
                    Ok(response::overloaded(retry, &message))
                }
                Err(failure) => Err(failure),
            }
        }
        ["credential"] => reports::rotate(app, instance)
            .await
            .map(|c| response::ok(&c)),
        ["logs", command_id] => {
            let body = response::body(
                request,
                hostmanager_protocol::MAX_LOGS_UPLOAD_BYTES as usize,
            )
            .await?;
            crate::environment_info::upload(app, &instance, command_id, &body)
                .await
                .map(|uploaded| response::ok(&uploaded))
        }
        _ => Err(Failure::not_found(format!(
            "no such host action: {}",
            action.join("/")
        ))),
    }
}

/// The operator plane's check: an admin token, by hash.
async fn admin<S: Store>(app: &App<S>, request: &Request<Incoming>) -> Result<(), Failure> {
    let Some(token) =
        header_value(request, header::AUTHORIZATION).and_then(|h| secrets::bearer(Some(h)))
    else {
        return Err(Failure::unauthorized(
            "missing Authorization: Bearer <admin token> (see DATA_DIR/admin.token)",
        ));
    };
    if app.store.is_admin_token(&secrets::hash(token)).await? {
        Ok(())
    } else {
        Err(Failure::unauthorized("unknown admin token"))
    }
}
