//! A client's TCP connection as hyper sees it: writes must make progress, and a
//! `Content-Length` too large for hyper reaches the service instead of hyper's own error.
//!
//! - **Write deadline.** A write or flush that stays blocked for `write_timeout` (the client's
//!   receive window stays full: it is not reading) fails with `TimedOut`, and hyper closes the
//!   connection. Any progress restarts the clock.
//! - **Length clamp.** hyper refuses a `Content-Length` above `u64::MAX - 2` with a bare 431
//!   (and one above `u64::MAX` with a bare 400), before the service sees the request. Every such
//!   value is far over the 1 KiB body limit, and the service's answer to it is a 413 problem
//!   document; so the digits of a longer `Content-Length` are rewritten, as they arrive, into
//!   hyper's largest value with as many characters (leading zeros make up the length), which
//!   hyper accepts and the service refuses. Only the digits of such a header change, never the
//!   number of bytes, so framing is untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

pub struct ClientStream {
    stream: TcpStream,
    write_timeout: Duration,
    /// Armed while a write is blocked; kept between stalls to reuse its allocation.
    deadline: Option<Pin<Box<Sleep>>>,
    armed: bool,
    clamp: LengthClamp,
    /// The bytes of the last read, before the clamp copies them into hyper's buffer.
    scratch: Vec<u8>,
}

impl ClientStream {
    pub fn new(stream: TcpStream, write_timeout: Duration) -> Self {
        Self {
            stream,
            write_timeout,
            deadline: None,
            armed: false,
            clamp: LengthClamp::default(),
            scratch: Vec::new(),
        }
    }

    /// Passes a ready write result through (disarming the clock), or, while blocked, arms the
    /// clock and fails once it runs out.
    fn check<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.armed = false;
            return poll;
        }
        let deadline = tokio::time::Instant::now() + self.write_timeout;
        let sleep = match &mut self.deadline {
            Some(sleep) if self.armed => sleep,
            Some(sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => self
                .deadline
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.armed = true;
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the response in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            // What comes out is what goes in plus the digits held back from earlier reads.
            let held = this.clamp.held.len();
            if buf.remaining() <= held {
                // hyper reads with 8 KiB or more free, so this does not happen; were it to, the
                // held digits would go out unchanged, as many as fit, rather than be lost.
                let fit = buf.remaining();
                buf.put_slice(&this.clamp.held[..fit]);
                this.clamp.held.drain(..fit);
                return Poll::Ready(Ok(()));
            }
            let room = buf.remaining() - held;
            // Grown once to hyper's largest read, then reused as is (no zeroing per read).
            if this.scratch.len() < room {
                this.scratch.resize(room, 0);
            }
            let mut read = ReadBuf::new(&mut this.scratch[..room]);
            std::task::ready!(Pin::new(&mut this.stream).poll_read(cx, &mut read))?;
            let filled = read.filled().len();
            let before = buf.filled().len();
            if filled == 0 {
                this.clamp.finish(&mut |bytes| buf.put_slice(bytes));
                return Poll::Ready(Ok(()));
            }
            this.clamp
                .feed(&this.scratch[..filled], &mut |bytes| buf.put_slice(bytes));
            // A read that was all held-back digits gave hyper nothing; returning it would look
            // like the end of the stream, so read on.
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The header whose value is watched, as it starts a line; matched without regard to case.
const NAME: &[u8] = b"content-length:";

/// hyper's largest `Content-Length` (`u64::MAX - 2`).
const LARGEST: &[u8] = b"18446744073709551613";

/// Significant digits held back at most: a value with more is over `LARGEST` anyway. The
/// clamp lets out at most as many bytes as it takes in plus those it holds.
const MAX_HELD: usize = LARGEST.len();

/// The streaming rewrite described in the module comment. Bytes pass through as they come,
/// except the significant digits of a `Content-Length` value, which are held until the value
/// ends (at most 20 of them; each one past 20 is let out at once as a `0`).
#[derive(Debug, Default)]
struct LengthClamp {
    state: State,
    held: Vec<u8>,
    /// More than `MAX_HELD` significant digits were seen in this value.
    overflowed: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a request line, a header line not watched, or a body.
    #[default]
    Other,
    /// Just after a line feed.
    LineStart,
    /// This many bytes of `NAME` matched.
    Name(usize),
    /// After the colon: optional white space, leading zeros.
    Space,
    /// Significant digits.
    Digits,
}

impl LengthClamp {
    fn feed(&mut self, bytes: &[u8], out: &mut dyn FnMut(&[u8])) {
        // Runs of bytes that pass unchanged are let out in one piece.
        let mut passed = 0;
        for (at, &byte) in bytes.iter().enumerate() {
            if self.state == State::Digits {
                if byte.is_ascii_digit() {
                    // Every byte before it in this state was a held digit: nothing to let out.
                    passed = at + 1;
                    if self.held.len() < MAX_HELD {
                        self.held.push(byte);
                    } else {
                        self.overflowed = true;
                        out(b"0");
                    }
                    continue;
                }
                self.let_out_value(out);
            }
            self.state = match (self.state, byte) {
                (_, b'\n') => State::LineStart,
                (State::LineStart, _) => Self::matching(0, byte),
                (State::Name(matched), _) => Self::matching(matched, byte),
                (State::Space, b' ' | b'\t' | b'0') => State::Space,
                (State::Space, b'1'..=b'9') => {
                    out(&bytes[passed..at]);
                    passed = at + 1;
                    self.held.push(byte);
                    State::Digits
                }
                _ => State::Other,
            };
        }
        out(&bytes[passed..]);
    }

    /// The client closed its side: a value still held is let out as it is.
    fn finish(&mut self, out: &mut dyn FnMut(&[u8])) {
        if self.state == State::Digits {
            self.let_out_value(out);
            self.state = State::Other;
        }
    }

    fn matching(matched: usize, byte: u8) -> State {
        if byte.to_ascii_lowercase() != NAME[matched] {
            State::Other
        } else if matched + 1 == NAME.len() {
            State::Space
        } else {
            State::Name(matched + 1)
        }
    }

    fn let_out_value(&mut self, out: &mut dyn FnMut(&[u8])) {
        let too_large =
            self.overflowed || (self.held.len() == MAX_HELD && self.held.as_slice() > LARGEST);
        out(if too_large { LARGEST } else { &self.held });
        self.held.clear();
        self.overflowed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces split at every possible point, and checks that each way gives
    /// the same output.
    fn clamp(input: &str) -> String {
        let whole = clamp_in_pieces(input.as_bytes(), &[]);
        for split in 0..=input.len() {
            assert_eq!(
                clamp_in_pieces(input.as_bytes(), &[split]),
                whole,
                "split at {split}"
            );
        }
        let byte_by_byte: Vec<usize> = (0..input.len()).collect();
        assert_eq!(clamp_in_pieces(input.as_bytes(), &byte_by_byte), whole);
        String::from_utf8(whole).unwrap()
    }

    fn clamp_in_pieces(input: &[u8], splits: &[usize]) -> Vec<u8> {
        let mut clamp = LengthClamp::default();
        let mut output = Vec::new();
        let mut from = 0;
        for &split in splits.iter().chain([&input.len()]) {
            clamp.feed(&input[from..split], &mut |bytes| {
                output.extend_from_slice(bytes)
            });
            from = split;
        }
        clamp.finish(&mut |bytes| output.extend_from_slice(bytes));
        output
    }

    fn request(length: &str) -> String {
        format!("PUT /v1/timestamps/a HTTP/1.1\r\nHost: h\r\nContent-Length: {length}\r\n\r\n")
    }

    #[test]
    fn values_hyper_takes_pass_unchanged() {
        for length in [
            "0",
            "5",
            "000005",
            "1024",
            "18446744073709551613",
            "000018446744073709551613",
            "  7",
            "x",
        ] {
            assert_eq!(clamp(&request(length)), request(length), "{length}");
        }
    }

    #[test]
    fn values_over_hyper_s_largest_become_it_with_as_many_characters() {
        for (length, clamped) in [
            ("18446744073709551614", "18446744073709551613"),
            ("18446744073709551615", "18446744073709551613"),
            ("18446744073709551616", "18446744073709551613"),
            ("99999999999999999999", "18446744073709551613"),
            ("123456789012345678901", "018446744073709551613"),
            ("00099999999999999999999", "00018446744073709551613"),
        ] {
            assert_eq!(clamp(&request(length)), request(clamped), "{length}");
            assert_eq!(length.len(), clamped.len());
        }
    }

    #[test]
    fn only_the_content_length_header_is_touched() {
        let untouched = "GET /99999999999999999999999 HTTP/1.1\r\nHost: h\r\n\
                         X-Content-Length: 99999999999999999999999\r\n\
                         Content-Type: 99999999999999999999999\r\n\r\n";
        assert_eq!(clamp(untouched), untouched);
        let pipelined = format!("{}{}", request("99999999999999999999"), request("3"));
        assert_eq!(
            clamp(&pipelined),
            format!("{}{}", request("18446744073709551613"), request("3"))
        );
        assert_eq!(
            clamp("PUT / HTTP/1.1\r\ncOnTeNt-LeNgTh:\t18446744073709551615\r\n\r\n"),
            "PUT / HTTP/1.1\r\ncOnTeNt-LeNgTh:\t18446744073709551613\r\n\r\n"
        );
    }

    /// What the service side of a real connection reads, `read_size` bytes at a time, while the
    /// client sends `pieces` with pauses between them.
    async fn read_through_a_socket(pieces: &[&'static str], read_size: usize) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let pieces = pieces.to_vec();
        let sender = tokio::spawn(async move {
            for piece in pieces {
                client.write_all(piece.as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut stream = ClientStream::new(server, Duration::from_secs(1));
        let (mut received, mut chunk) = (Vec::new(), vec![0; read_size]);
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            received.extend_from_slice(&chunk[..n]);
        }
        sender.await.unwrap();
        String::from_utf8(received).unwrap()
    }

    #[tokio::test]
    async fn a_socket_read_in_pieces_is_clamped_and_loses_nothing() {
        let pieces = [
            "PUT / HTTP/1.1\r\nContent-Length: 1844674",
            "4073709551615",
            "\r\n\r\n",
        ];
        assert_eq!(
            read_through_a_socket(&pieces, 8192).await,
            "PUT / HTTP/1.1\r\nContent-Length: 18446744073709551613\r\n\r\n"
        );
        // Reads smaller than the digits held back (hyper never makes them) lose nothing.
        let tiny = read_through_a_socket(&pieces, 4).await;
        assert_eq!(tiny.len(), pieces.concat().len());
        assert!(
            tiny.starts_with("PUT / HTTP/1.1\r\nContent-Length: 1844674"),
            "{tiny}"
        );
    }

    #[test]
    fn a_value_cut_off_by_the_end_of_the_stream_is_let_out_as_it_is() {
        assert_eq!(
            clamp("PUT / HTTP/1.1\r\nContent-Length: 12"),
            "PUT / HTTP/1.1\r\nContent-Length: 12"
        );
    }
}
