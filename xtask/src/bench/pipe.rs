//! The bulk workloads' stream, kept open across the legs of a round.
//!
//! A bulk round moves its whole transfer (1 GiB up, or 256 MiB each way) over one stream per
//! stack, in legs: each leg sends its share and waits until the server has it (upload: the
//! sink's acknowledgement; echo: the echoed bytes), and between legs the stream stays open
//! while the other stacks run theirs. Each stack implements the two halves of its stream
//! ([`BulkSend`], [`BulkRecv`]) with its own calls; the leg logic and the checks are here, the
//! same for every stack.
//!
//! ## The sink's acknowledgements
//!
//! An upload stream starts with [`MODE_SINK`] and the leg size `every` (`u64`, little endian;
//! 0 for none). The server ([`Sink`]) writes one [`ACK`] byte each time the bytes it received
//! after that head reach a multiple of `every`, and at the end of the stream the total
//! (`u64`, little endian) and FIN. So a leg of `every` bytes ends when its acknowledgement
//! arrives, and the last leg (which takes the remainder) ends with the total.

use async_trait::async_trait;
use bytes::Bytes;

use super::common::{BResult, BenchError, MODE_ECHO, MODE_SINK};

/// The sink's acknowledgement byte.
pub const ACK: u8 = b'.';

/// What the sink server keeps of an upload stream: the leg size from the stream's head and
/// the bytes counted after it. Sans-IO: every server feeds it what it reads.
#[derive(Debug, Default)]
pub struct Sink {
    head: [u8; 8],
    head_len: usize,
    every: u64,
    count: u64,
}

impl Sink {
    /// Takes bytes read after the mode byte; returns how many [`ACK`]s are now due.
    pub fn feed(&mut self, mut b: &[u8]) -> usize {
        if self.head_len < self.head.len() {
            let n = (self.head.len() - self.head_len).min(b.len());
            self.head[self.head_len..self.head_len + n].copy_from_slice(&b[..n]);
            self.head_len += n;
            b = &b[n..];
            if self.head_len == self.head.len() {
                self.every = u64::from_le_bytes(self.head);
            }
        }
        let before = self.count;
        self.count += b.len() as u64;
        match self.every {
            0 => 0,
            e => (self.count / e - before / e) as usize,
        }
    }

    /// The answer at the end of the stream: the bytes counted after the head. An error when
    /// the stream ended inside the head.
    pub fn answer(&self) -> BResult<Bytes> {
        if self.head_len < self.head.len() {
            return Err(BenchError::Protocol("sink stream ended inside its head"));
        }
        Ok(Bytes::copy_from_slice(&self.count.to_le_bytes()))
    }
}

/// `n` acknowledgements, to write as one piece.
pub fn acks(n: usize) -> Bytes {
    Bytes::from(vec![ACK; n])
}

/// The send half of a stack's bulk stream.
#[async_trait]
pub trait BulkSend: Send + 'static {
    /// Writes `head` (the mode byte and, for uploads, the leg size).
    async fn head(&mut self, head: &[u8]) -> BResult<()>;
    /// Writes `n` bytes of [`chunk`](super::common::chunk) data, a chunk at a time.
    async fn write(&mut self, n: u64) -> BResult<()>;
    /// Ends the stream (FIN).
    async fn finish(&mut self) -> BResult<()>;
}

/// The receive half of a stack's bulk stream.
#[async_trait]
pub trait BulkRecv: Send {
    /// Reads up to `max` bytes (or what one read gives) and discards them: how many, or
    /// `None` at the end of the stream.
    async fn skip(&mut self, max: usize) -> BResult<Option<usize>>;
    /// Reads a few bytes into `out`; false at the end of the stream.
    async fn read_into(&mut self, out: &mut Vec<u8>) -> BResult<bool>;
}

/// Which bulk workload a [`Pipe`] runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PipeMode {
    /// Upload to the sink, acknowledged every `every` bytes.
    Upload {
        /// The leg size (the sink acknowledges each multiple of it).
        every: u64,
    },
    /// Echo, both directions at once.
    Echo,
}

impl PipeMode {
    /// The stream's head.
    pub fn head(self) -> Vec<u8> {
        match self {
            PipeMode::Upload { every } => {
                let mut h = vec![MODE_SINK];
                h.extend_from_slice(&every.to_le_bytes());
                h
            }
            PipeMode::Echo => vec![MODE_ECHO],
        }
    }
}

/// A stack's bulk stream, kept across the legs of a round.
pub struct Pipe {
    send: Option<Box<dyn BulkSend>>,
    recv: Box<dyn BulkRecv>,
    mode: PipeMode,
    /// Bytes written after the head.
    sent: u64,
    /// Acknowledgements read (uploads).
    acked: u64,
}

impl Pipe {
    /// Starts a bulk stream on the halves a stack opened: writes the head of `mode`.
    pub async fn start(
        mut send: Box<dyn BulkSend>,
        recv: Box<dyn BulkRecv>,
        mode: PipeMode,
    ) -> BResult<Pipe> {
        send.head(&mode.head()).await?;
        Ok(Pipe {
            send: Some(send),
            recv,
            mode,
            sent: 0,
            acked: 0,
        })
    }

    fn send(&mut self) -> BResult<&mut Box<dyn BulkSend>> {
        self.send.as_mut().ok_or(BenchError::Protocol(
            "a failed leg lost the stream's writer",
        ))
    }

    /// One leg: `n` bytes. An upload leg then waits for the sink's acknowledgements of every
    /// whole leg size sent so far (bytes past the last multiple, a remainder in the last leg,
    /// are acknowledged by the total that [`end`](Self::end) reads); an echo leg reads the `n`
    /// bytes back while it writes them.
    pub async fn leg(&mut self, n: u64) -> BResult<()> {
        match self.mode {
            PipeMode::Upload { every } => {
                self.send()?.write(n).await?;
                self.sent += n;
                let due = self.sent.checked_div(every).unwrap_or(0);
                let mut got = Vec::new();
                while self.acked < due {
                    got.clear();
                    if !self.recv.read_into(&mut got).await? {
                        return Err(BenchError::Protocol("sink ended before acknowledging"));
                    }
                    if got.iter().any(|&b| b != ACK) {
                        return Err(BenchError::Protocol("sink sent more than acknowledgements"));
                    }
                    self.acked += got.len() as u64;
                }
                if self.acked > due {
                    return Err(BenchError::Protocol("sink acknowledged unsent bytes"));
                }
                Ok(())
            }
            PipeMode::Echo => {
                let mut send = self.send.take().ok_or(BenchError::Protocol(
                    "a failed leg lost the stream's writer",
                ))?;
                // The writer runs as a task of its own, so both directions move at once.
                let writer = tokio::spawn(async move {
                    send.write(n).await?;
                    Ok::<_, BenchError>(send)
                });
                let mut got = 0u64;
                while got < n {
                    let max = usize::try_from(n - got).unwrap_or(usize::MAX);
                    match self.recv.skip(max).await? {
                        Some(k) => got += k as u64,
                        None => return Err(BenchError::Protocol("echo ended early")),
                    }
                }
                self.send = Some(super::common::join_writer(writer).await?);
                self.sent += n;
                if got != n {
                    return Err(BenchError::Protocol("echo length differs"));
                }
                Ok(())
            }
        }
    }

    /// Ends the stream: FIN, then the sink's remaining acknowledgements and its total
    /// (checked against what was sent), or the echo's FIN (with nothing more before it).
    pub async fn end(mut self) -> BResult<()> {
        self.send()?.finish().await?;
        match self.mode {
            PipeMode::Upload { every } => {
                let mut answer = Vec::new();
                while self.recv.read_into(&mut answer).await? {}
                let due = self.sent.checked_div(every).unwrap_or(0);
                let acks = usize::try_from(due - self.acked.min(due)).unwrap_or(usize::MAX);
                if answer.len() != acks + 8 || answer[..acks].iter().any(|&b| b != ACK) {
                    return Err(BenchError::Protocol("malformed sink answer"));
                }
                if super::common::parse_count(&answer[acks..])? != self.sent {
                    return Err(BenchError::Protocol("sink count differs"));
                }
                Ok(())
            }
            PipeMode::Echo => loop {
                match self.recv.skip(super::common::CHUNK).await? {
                    None => return Ok(()),
                    // An end of stream that carries no bytes (wt-client's last message).
                    Some(0) => {}
                    Some(_) => return Err(BenchError::Protocol("echo sent more than it got")),
                }
            },
        }
    }
}

/// The share of leg `leg` (of `legs`) of a `total`-byte transfer: `total / legs` each, the
/// last leg also taking the remainder.
pub fn leg_bytes(total: u64, leg: usize, legs: usize) -> u64 {
    let legs = legs.max(1) as u64;
    let every = total / legs;
    if leg as u64 + 1 >= legs {
        total - every * (legs - 1)
    } else {
        every
    }
}

/// The acknowledgement interval of a `total`-byte upload in `legs` legs.
pub fn leg_every(total: u64, legs: usize) -> u64 {
    total / legs.max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_acknowledges_each_multiple_and_answers_the_total() {
        let mut s = Sink::default();
        // The head may arrive in pieces, and with data behind it.
        assert_eq!(s.feed(&10u64.to_le_bytes()[..3]), 0);
        let mut rest = 10u64.to_le_bytes()[3..].to_vec();
        rest.extend_from_slice(&[0; 9]);
        assert_eq!(s.feed(&rest), 0);
        assert_eq!(s.feed(&[0; 1]), 1);
        assert_eq!(s.feed(&[0; 25]), 2);
        assert_eq!(s.feed(&[]), 0);
        assert_eq!(&s.answer().unwrap()[..], &35u64.to_le_bytes());
    }

    #[test]
    fn sink_without_interval_never_acknowledges() {
        let mut s = Sink::default();
        assert_eq!(s.feed(&0u64.to_le_bytes()), 0);
        assert_eq!(s.feed(&[1; 1000]), 0);
        assert_eq!(&s.answer().unwrap()[..], &1000u64.to_le_bytes());
    }

    #[test]
    fn sink_rejects_a_stream_cut_inside_its_head() {
        let mut s = Sink::default();
        assert_eq!(s.feed(&[1, 2, 3]), 0);
        assert!(matches!(s.answer(), Err(BenchError::Protocol(_))));
        assert!(matches!(
            Sink::default().answer(),
            Err(BenchError::Protocol(_))
        ));
    }

    #[test]
    fn legs_share_out_the_whole_transfer() {
        for (total, legs) in [
            (1u64 << 30, 20),
            (256 << 20, 20),
            (128 << 20, 5),
            (7, 3),
            (5, 1),
        ] {
            let sum: u64 = (0..legs).map(|l| leg_bytes(total, l, legs)).sum();
            assert_eq!(sum, total, "{total} in {legs}");
            let every = leg_every(total, legs);
            for l in 0..legs - 1 {
                assert_eq!(leg_bytes(total, l, legs), every);
            }
            assert!(leg_bytes(total, legs - 1, legs) >= every);
        }
    }

    /// An in-memory stream pair whose server side is the sink or the echo.
    mod mem {
        use super::super::*;
        use std::sync::{Arc, Mutex};

        #[derive(Default)]
        pub struct Wire {
            /// Bytes for the client to read, and whether the server ended.
            pub to_client: Vec<u8>,
            pub ended: bool,
            pub sink: Option<Sink>,
            pub echo: bool,
            /// Extra bytes a faulty server adds to its answer.
            pub garbage: Vec<u8>,
        }

        pub struct Send(pub Arc<Mutex<Wire>>);
        pub struct Recv(pub Arc<Mutex<Wire>>);

        impl Wire {
            fn take(&mut self, b: &[u8]) {
                if let Some(s) = &mut self.sink {
                    let due = s.feed(b);
                    self.to_client.extend_from_slice(&acks(due));
                } else if self.echo {
                    self.to_client.extend_from_slice(b);
                } else {
                    match b[0] {
                        MODE_SINK => {
                            let mut s = Sink::default();
                            let due = s.feed(&b[1..]);
                            self.to_client.extend_from_slice(&acks(due));
                            self.sink = Some(s);
                        }
                        _ => {
                            self.echo = true;
                            self.to_client.extend_from_slice(&b[1..]);
                        }
                    }
                }
            }
        }

        #[async_trait]
        impl BulkSend for Send {
            async fn head(&mut self, head: &[u8]) -> BResult<()> {
                self.0.lock().unwrap().take(head);
                Ok(())
            }
            async fn write(&mut self, n: u64) -> BResult<()> {
                self.0.lock().unwrap().take(&vec![7; n as usize]);
                Ok(())
            }
            async fn finish(&mut self) -> BResult<()> {
                let mut w = self.0.lock().unwrap();
                if let Some(s) = &w.sink {
                    let a = s.answer()?;
                    w.to_client.extend_from_slice(&a);
                }
                let g = std::mem::take(&mut w.garbage);
                w.to_client.extend_from_slice(&g);
                w.ended = true;
                Ok(())
            }
        }

        #[async_trait]
        impl BulkRecv for Recv {
            async fn skip(&mut self, max: usize) -> BResult<Option<usize>> {
                loop {
                    {
                        let mut w = self.0.lock().unwrap();
                        if !w.to_client.is_empty() {
                            let n = max.min(w.to_client.len());
                            w.to_client.drain(..n);
                            return Ok(Some(n));
                        }
                        if w.ended {
                            return Ok(None);
                        }
                    }
                    tokio::task::yield_now().await;
                }
            }
            async fn read_into(&mut self, out: &mut Vec<u8>) -> BResult<bool> {
                let mut w = self.0.lock().unwrap();
                if w.to_client.is_empty() {
                    return Ok(!w.ended);
                }
                let n = 3.min(w.to_client.len());
                out.extend(w.to_client.drain(..n));
                Ok(true)
            }
        }
    }

    async fn pipe(
        mode: PipeMode,
        garbage: &[u8],
    ) -> (Pipe, std::sync::Arc<std::sync::Mutex<mem::Wire>>) {
        let wire = std::sync::Arc::new(std::sync::Mutex::new(mem::Wire {
            garbage: garbage.to_vec(),
            ..Default::default()
        }));
        let p = Pipe::start(
            Box::new(mem::Send(wire.clone())),
            Box::new(mem::Recv(wire.clone())),
            mode,
        )
        .await
        .unwrap();
        (p, wire)
    }

    #[tokio::test]
    async fn upload_legs_wait_for_their_acknowledgements_and_check_the_total() {
        let (total, legs) = (103u64, 4);
        let (mut p, _) = pipe(
            PipeMode::Upload {
                every: leg_every(total, legs),
            },
            &[],
        )
        .await;
        for l in 0..legs {
            p.leg(leg_bytes(total, l, legs)).await.unwrap();
        }
        p.end().await.unwrap();
    }

    #[tokio::test]
    async fn upload_rejects_a_wrong_answer() {
        let (mut p, _) = pipe(PipeMode::Upload { every: 10 }, b"x").await;
        p.leg(10).await.unwrap();
        assert!(matches!(p.end().await, Err(BenchError::Protocol(_))));
    }

    #[tokio::test]
    async fn echo_legs_read_back_what_they_wrote() {
        let (mut p, _) = pipe(PipeMode::Echo, &[]).await;
        for n in [5, 17, 1] {
            p.leg(n).await.unwrap();
        }
        p.end().await.unwrap();
        let (mut p, _) = pipe(PipeMode::Echo, b"more").await;
        p.leg(5).await.unwrap();
        assert!(matches!(p.end().await, Err(BenchError::Protocol(_))));
    }
}
