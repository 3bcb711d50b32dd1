//! When a connection is closed for doing nothing: it must start its first request within the first-request
//! timeout of being accepted, and it is closed once it has had no request in flight for the idle timeout.
//!
//! Bytes read are not activity: HTTP/2 keep-alive PINGs make every client answer, and a client that answers them
//! but sends no request must not hold a connection forever. The listener counts the requests in flight
//! ([`Activity::start`]); the connection's reads check the clock.
//!
//! Resetting a timer on every request would re-register it with the runtime's timer wheel once per request, and
//! often wake the I/O driver with a syscall; on the write path that cost about 5 % of the server's instructions
//! (measured under h2load). Here a request only counts itself and notes the time it finished; the one timer is
//! moved when it fires and the connection was busy since it was set.

use std::future::Future;
use std::io;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `idle_since` before the first request has started.
const NEVER: u64 = u64::MAX;

/// The requests of one connection: how many are in flight, and when the last one finished.
#[derive(Debug)]
pub struct Activity {
    accepted: Instant,
    in_flight: AtomicUsize,
    /// Nanoseconds after `accepted` at which the connection last became idle; [`NEVER`] before any request.
    idle_since: AtomicU64,
}

impl Activity {
    /// A connection accepted now, with no request yet.
    pub fn new() -> Self {
        Activity { accepted: Instant::now(), in_flight: AtomicUsize::new(0), idle_since: AtomicU64::new(NEVER) }
    }

    /// Counts a request whose headers have arrived, until the returned guard is dropped.
    pub fn start<T>(owner: T) -> InFlight<T>
    where
        T: Deref,
        T::Target: AsRef<Activity>,
    {
        (*owner).as_ref().in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(owner)
    }

    fn finish(&self) {
        let since = u64::try_from((Instant::now() - self.accepted).as_nanos()).unwrap_or(NEVER - 1);
        // The time first: whoever sees the count reach zero also sees when.
        self.idle_since.store(since, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Release);
    }

    /// When the connection must be closed if nothing changes; `None` while a request is in flight.
    fn due(&self, limits: &Deadlines) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(match self.idle_since.load(Ordering::Relaxed) {
            NEVER => self.accepted + limits.first_request,
            since => self.accepted + Duration::from_nanos(since) + limits.idle,
        })
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

impl AsRef<Activity> for Activity {
    fn as_ref(&self) -> &Activity {
        self
    }
}

/// A request in flight; it finishes when this is dropped (answered, or abandoned by the client).
#[derive(Debug)]
pub struct InFlight<T>(T)
where
    T: Deref,
    T::Target: AsRef<Activity>;

impl<T> InFlight<T>
where
    T: Deref,
    T::Target: AsRef<Activity>,
{
    /// What the request was started on.
    pub fn owner(&self) -> &T {
        &self.0
    }
}

impl<T> Drop for InFlight<T>
where
    T: Deref,
    T::Target: AsRef<Activity>,
{
    fn drop(&mut self) {
        (*self.0).as_ref().finish();
    }
}

/// The two timeouts of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From accept to the first request's headers (TLS handshake and HTTP/2 preface included).
    pub first_request: Duration,
    /// From the end of the last request to the start of the next.
    pub idle: Duration,
}

/// A stream whose reads fail with [`io::ErrorKind::TimedOut`] once its connection has been idle for too long
/// (see the module documentation); hyper then closes the connection.
#[derive(Debug)]
pub struct IdleTimeout<S, A> {
    inner: S,
    activity: A,
    limits: Deadlines,
    deadline: Pin<Box<Sleep>>,
}

impl<S, A> IdleTimeout<S, A>
where
    A: Deref,
    A::Target: AsRef<Activity>,
{
    /// Wraps `inner`, whose requests are counted in `activity`.
    pub fn new(inner: S, activity: A, limits: Deadlines) -> Self {
        let accepted = (*activity).as_ref().accepted;
        let first = accepted + limits.first_request.min(limits.idle);
        IdleTimeout { inner, activity, limits, deadline: Box::pin(tokio::time::sleep_until(first)) }
    }

    /// `Err` once the connection is due to close; otherwise arms the timer to wake this task then.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while self.deadline.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let due = match (*self.activity).as_ref().due(&self.limits) {
                // Busy: look again one idle timeout from now (a request's own deadlines bound it).
                None => now + self.limits.idle,
                Some(due) if due <= now => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle for too long"));
                }
                // Never later than one idle timeout: a request may start and end before the first-request
                // deadline, and the connection is then due one idle timeout after it ended.
                Some(due) => due.min(now + self.limits.idle),
            };
            self.deadline.as_mut().reset(due);
        }
        Ok(())
    }
}

impl<S, A> AsyncRead for IdleTimeout<S, A>
where
    S: AsyncRead + Unpin,
    A: Deref + Unpin,
    A::Target: AsRef<Activity>,
{
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => match this.poll_idle(cx) {
                Ok(()) => Poll::Pending,
                Err(error) => Poll::Ready(Err(error)),
            },
        }
    }
}

impl<S: AsyncWrite + Unpin, A: Unpin> AsyncWrite for IdleTimeout<S, A> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    const LIMITS: Deadlines = Deadlines { first_request: Duration::from_secs(5), idle: Duration::from_secs(10) };

    /// Writes a byte every `every` until the other side is gone.
    fn trickle(mut client: tokio::io::DuplexStream, every: Duration) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if client.write_all(b"x").await.is_err() {
                    break;
                }
            }
        });
    }

    /// Reads until an error.
    async fn read_until_error<S: AsyncRead + Unpin>(server: &mut S) -> io::Error {
        let mut buf = [0u8; 8];
        loop {
            if let Err(error) = server.read(&mut buf).await {
                return error;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_without_requests_do_not_keep_the_connection_open() {
        let (client, server) = duplex(64);
        let activity = Arc::new(Activity::new());
        let mut server = IdleTimeout::new(server, Arc::clone(&activity), LIMITS);
        // One request, then a byte every 2 s (PING answers, say): closed 10 s after the request finished.
        drop(Activity::start(Arc::clone(&activity)));
        let finished = Instant::now();
        trickle(client, Duration::from_secs(2));
        let error = read_until_error(&mut server).await;
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(Instant::now() - finished, LIMITS.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_keeps_the_connection_open_and_the_clock_starts_when_it_ends() {
        let (_client, server) = duplex(64);
        let activity = Arc::new(Activity::new());
        let mut server = IdleTimeout::new(server, Arc::clone(&activity), LIMITS);
        let request = Activity::start(Arc::clone(&activity));
        let reader = tokio::spawn(async move { server.read(&mut [0u8; 8]).await.unwrap_err() });
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert!(!reader.is_finished(), "closed with a request in flight");
        drop(request);
        let finished = Instant::now();
        let error = reader.await.unwrap();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        // While busy, the timer looks again one idle timeout later; the close comes exactly 10 s after the end.
        assert_eq!(Instant::now() - finished, LIMITS.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_before_a_long_first_request_deadline_starts_the_idle_clock() {
        let (_client, server) = duplex(64);
        let activity = Arc::new(Activity::new());
        let limits = Deadlines { first_request: Duration::from_secs(60), idle: Duration::from_secs(3) };
        let mut server = IdleTimeout::new(server, Arc::clone(&activity), limits);
        let reader = tokio::spawn(async move { server.read(&mut [0u8; 8]).await.unwrap_err() });
        tokio::time::sleep(Duration::from_secs(4)).await;
        drop(Activity::start(Arc::clone(&activity)));
        let finished = Instant::now();
        assert_eq!(reader.await.unwrap().kind(), io::ErrorKind::TimedOut);
        assert_eq!(Instant::now() - finished, limits.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_is_closed_after_the_first_request_timeout() {
        let (client, server) = duplex(64);
        let mut server = IdleTimeout::new(server, Arc::new(Activity::new()), LIMITS);
        let start = Instant::now();
        // A preface trickled byte by byte is not a request.
        trickle(client, Duration::from_millis(700));
        let error = read_until_error(&mut server).await;
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(Instant::now() - start, LIMITS.first_request);
    }
}
