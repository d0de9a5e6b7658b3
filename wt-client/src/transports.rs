//! The one place that knows the concrete transports: `wt-h3` and `wt-h2`, and the
//! happy-eyeballs race of [`Transport::Auto`].

use std::future::Future;
use std::time::Duration;

use wt_core::{ConnectError, ConnectRequest, Connector};

use crate::{spawn, Connection, Error, Options, Transport};

fn h3_client(opts: &Options, timeout: Duration) -> Result<wt_h3::Client, ConnectError> {
    let cfg = wt_h3::ClientConfig {
        tls: opts.tls.clone(),
        compat: opts.compat,
        connect_timeout: timeout,
        ..Default::default()
    };
    wt_h3::Client::new(cfg)
}

fn h2_client(opts: &Options, timeout: Duration) -> Result<wt_h2::Client, ConnectError> {
    let cfg = wt_h2::ClientConfig {
        tls: opts.tls.clone(),
        compat: opts.compat,
        connect_timeout: timeout,
        stream_id_parity: opts.h2_stream_id_parity,
        ..Default::default()
    };
    wt_h2::Client::new(cfg)
}

/// Connects with one backend and starts the driver on the session.
async fn via<C: Connector>(
    client: C,
    req: ConnectRequest,
    opts: Options,
) -> Result<Connection, Error> {
    let session = client.connect(&req).await?;
    spawn::start(session, &opts).await
}

async fn bounded<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or(Err(Error::Connect(ConnectError::Timeout(timeout))))
}

pub(crate) async fn connect(req: ConnectRequest, opts: &Options) -> Result<Connection, Error> {
    let timeout = opts.connect_timeout;
    match opts.transport {
        Transport::H3 => {
            let client = h3_client(opts, timeout)?;
            bounded(timeout, via(client, req, opts.clone())).await
        }
        Transport::H2 => {
            let client = h2_client(opts, timeout)?;
            bounded(timeout, via(client, req, opts.clone())).await
        }
        Transport::Auto => {
            let h3 = h3_client(opts, timeout)?;
            let h2 = h2_client(opts, timeout)?;
            let race = happy_eyeballs(
                via(h3, req.clone(), opts.clone()),
                via(h2, req, opts.clone()),
                opts.auto_head_start,
            );
            bounded(timeout, race).await
        }
    }
}

/// Runs `first`; starts `second` when `first` fails or after `head_start`, whichever comes
/// first; returns the first success (dropping, and so closing, the other attempt), or the
/// fallback's error when both fail.
pub(crate) async fn happy_eyeballs<T>(
    first: impl Future<Output = Result<T, Error>>,
    second: impl Future<Output = Result<T, Error>>,
    head_start: Duration,
) -> Result<T, Error> {
    tokio::pin!(first);
    let head = tokio::time::sleep(head_start);
    tokio::pin!(head);
    let mut first_err = None;
    tokio::select! {
        r = &mut first => match r {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::debug!("HTTP/3 attempt failed, falling back to HTTP/2: {e}");
                first_err = Some(e);
            }
        },
        _ = &mut head => tracing::debug!("HTTP/3 slow; starting HTTP/2 in parallel"),
    }
    tokio::pin!(second);
    if first_err.is_some() {
        return second.await;
    }
    tokio::select! {
        r = &mut first => match r {
            Ok(v) => Ok(v),
            Err(e) => {
                tracing::debug!("HTTP/3 attempt failed: {e}");
                second.await
            }
        },
        r = &mut second => match r {
            Ok(v) => Ok(v),
            Err(e) => {
                tracing::debug!("HTTP/2 attempt failed: {e}");
                first.await.map_err(|_| e)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn after<T>(ms: u64, r: Result<T, Error>) -> Result<T, Error> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        r
    }

    const HS: Duration = Duration::from_millis(300);

    #[tokio::test(start_paused = true)]
    async fn first_wins_when_fast() {
        let t0 = tokio::time::Instant::now();
        let r = happy_eyeballs(after(100, Ok(3)), after(0, Ok(2)), HS).await;
        assert_eq!(r.unwrap(), 3);
        assert_eq!(t0.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn second_starts_at_once_when_first_fails() {
        let t0 = tokio::time::Instant::now();
        let r = happy_eyeballs(after(10, Err(Error::Timeout)), after(50, Ok(2)), HS).await;
        assert_eq!(r.unwrap(), 2);
        assert_eq!(t0.elapsed(), Duration::from_millis(60));
    }

    #[tokio::test(start_paused = true)]
    async fn second_races_after_head_start() {
        let t0 = tokio::time::Instant::now();
        // First would take 10 s; second starts at 300 ms and needs 100 ms.
        let r = happy_eyeballs(after(10_000, Ok(3)), after(100, Ok(2)), HS).await;
        assert_eq!(r.unwrap(), 2);
        assert_eq!(t0.elapsed(), Duration::from_millis(400));
        // First finishes during the race.
        let r = happy_eyeballs(after(350, Ok(3)), after(100, Ok(2)), HS).await;
        assert_eq!(r.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn both_fail_reports_the_fallback_error() {
        let r: Result<(), _> = happy_eyeballs(
            after(10, Err(Error::Timeout)),
            after(10, Err(Error::RecvBusy)),
            HS,
        )
        .await;
        assert!(matches!(r, Err(Error::RecvBusy)));
        let r: Result<(), _> = happy_eyeballs(
            after(400, Err(Error::Timeout)),
            after(10, Err(Error::RecvBusy)),
            HS,
        )
        .await;
        assert!(matches!(r, Err(Error::RecvBusy)));
    }
}
