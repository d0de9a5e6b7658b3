//! Sans-IO parsing for the echo handler's conventions: request paths ([`Route`]) and in-band
//! command lines ([`Command`], found by the [`Sniffer`]).

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use wt_core::{Dialect, StreamId};

/// The prefix that marks a command line, recognised only at offset 0 of a client bidirectional
/// stream.
pub const COMMAND_PREFIX: &[u8] = b"WT-CMD ";

/// Longest command line accepted, prefix and `\n` included.
pub const MAX_COMMAND_LINE: usize = 256;

/// Longest close reason, in bytes (WT_CLOSE_SESSION limit).
pub const MAX_REASON: usize = 1024;

/// What a request path asks of the echo handler. See the [crate docs](crate#the-echo-handler).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/` or `/echo`: plain echo.
    Echo,
    /// `/reject/<status>`: reject the request with this status.
    Reject(StatusCode),
    /// `/close/<code>[/<reason>]`: accept, then close with this code and (percent-decoded)
    /// reason.
    Close {
        /// Close code.
        code: u32,
        /// Close reason.
        reason: String,
    },
    /// `/drain`: accept, send WT_DRAIN_SESSION, then echo.
    Drain,
    /// `/open-bidi/<n>`: accept, open a bidirectional stream and send `n` pattern bytes + FIN.
    OpenBidi(u64),
    /// `/open-uni/<n>`: accept, open a unidirectional stream and send `n` pattern bytes + FIN.
    OpenUni(u64),
    /// `/reset/<code>`: echo, but reset the first client bidirectional stream with `code`
    /// right after echoing its first data.
    Reset(u32),
    /// `/stop/<code>`: echo, but send STOP_SENDING with `code` on the first client stream.
    Stop(u32),
    /// `/origin-check`: only origin `https://allowed.example` is accepted (403 otherwise).
    OriginCheck,
    /// `/protocol/<name>`: select the (percent-decoded) subprotocol `<name>`, which the
    /// client must have offered (400 otherwise), then echo.
    Protocol(String),
    /// `/observed/<token>[/<stream-id>]`: send the observations of session `<token>` on a
    /// unidirectional stream, once it ended (or once stream `<stream-id>` was seen closed).
    Observed {
        /// The observed session's token.
        token: u64,
        /// The stream to wait for, if any.
        stream: Option<StreamId>,
    },
}

/// The status for a path the echo handler does not serve: 405 for the latest dialects
/// (HTTP/3 draft-16, HTTP/2 draft-15), 404 for the older ones.
pub fn not_served_status(dialect: Dialect) -> StatusCode {
    match dialect {
        Dialect::H3Latest | Dialect::H2Latest => StatusCode::METHOD_NOT_ALLOWED,
        _ => StatusCode::NOT_FOUND,
    }
}

/// The only origin `/origin-check` accepts.
pub const ALLOWED_TEST_ORIGIN: &str = "https://allowed.example";

/// Parses a request path (query and fragment ignored). `Err` carries the status to reject
/// with: 404 for an unknown path (which [`EchoHandler::init`](super::EchoHandler) turns into
/// [`not_served_status`]), 400 for a malformed argument.
pub fn parse_route(path: &str, max_push: u64) -> Result<Route, StatusCode> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut parts = path.strip_prefix('/').unwrap_or(path).splitn(3, '/');
    let head = parts.next().unwrap_or("");
    let arg = parts.next();
    let tail = parts.next();
    let bad = StatusCode::BAD_REQUEST;
    fn one_arg<'a>(arg: Option<&'a str>, tail: Option<&str>) -> Result<&'a str, StatusCode> {
        match (arg, tail) {
            (Some(a), None) => Ok(a),
            _ => Err(StatusCode::BAD_REQUEST),
        }
    }
    let count = |a: &str| -> Result<u64, StatusCode> {
        match a.parse::<u64>() {
            Ok(n) if n <= max_push => Ok(n),
            _ => Err(bad),
        }
    };
    match head {
        "" | "echo" if arg.is_none() => Ok(Route::Echo),
        "drain" if arg.is_none() => Ok(Route::Drain),
        "origin-check" if arg.is_none() => Ok(Route::OriginCheck),
        "reject" => {
            let a = one_arg(arg, tail)?;
            let status = a
                .parse::<u16>()
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .ok_or(bad)?;
            Ok(Route::Reject(status))
        }
        "close" => {
            let code = parse_code(arg.ok_or(bad)?).ok_or(bad)?;
            let reason = match tail {
                None => String::new(),
                Some(t) => percent_decode(t).ok_or(bad)?,
            };
            if reason.len() > MAX_REASON {
                return Err(bad);
            }
            Ok(Route::Close { code, reason })
        }
        "open-bidi" => Ok(Route::OpenBidi(count(one_arg(arg, tail)?)?)),
        "open-uni" => Ok(Route::OpenUni(count(one_arg(arg, tail)?)?)),
        "reset" => Ok(Route::Reset(parse_code(one_arg(arg, tail)?).ok_or(bad)?)),
        "stop" => Ok(Route::Stop(parse_code(one_arg(arg, tail)?).ok_or(bad)?)),
        "protocol" => {
            let name = percent_decode(one_arg(arg, tail)?).ok_or(bad)?;
            if name.is_empty() {
                return Err(bad);
            }
            Ok(Route::Protocol(name))
        }
        "observed" => {
            let token = parse_decimal(arg.ok_or(bad)?).ok_or(bad)?;
            let stream = match tail {
                None => None,
                Some(t) => Some(StreamId(parse_decimal(t).ok_or(bad)?)),
            };
            Ok(Route::Observed { token, stream })
        }
        _ => Err(StatusCode::NOT_FOUND),
    }
}

/// Parses an application error code: decimal, or hexadecimal with a `0x` prefix.
pub fn parse_code(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() => u32::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        None => None,
    }
}

/// Parses a non-empty run of ASCII digits as a `u64`.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// An in-band command: the first line of a client bidirectional stream starting with
/// `WT-CMD `. See the [crate docs](crate#in-band-commands).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `close <code> [<reason>]`: close the session.
    Close {
        /// Close code.
        code: u32,
        /// Reason: the rest of the line after the code and one space (may be empty).
        reason: String,
    },
    /// `drain`: send WT_DRAIN_SESSION.
    Drain,
    /// `reset <code>`: reset this stream's server sending half with `code`.
    Reset(u32),
    /// `stop <code>`: send STOP_SENDING with `code` on this stream.
    Stop(u32),
    /// `open-uni <n>`: open a unidirectional stream and send `n` pattern bytes + FIN.
    OpenUni(u64),
    /// `open-bidi <n>`: open a bidirectional stream and send `n` pattern bytes + FIN.
    OpenBidi(u64),
    /// `id`: answer with the session's observation token and `\n` on this stream.
    Id,
    /// `protocol`: answer with the selected subprotocol (empty if none) and `\n` on this
    /// stream.
    Protocol,
    /// `panic`: make the handler panic (only when
    /// [`EchoConfig::allow_panic_command`](super::EchoConfig::allow_panic_command) is set).
    Panic,
}

/// Why a command line was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Longer than [`MAX_COMMAND_LINE`] without a `\n`.
    #[error("command line longer than {MAX_COMMAND_LINE} bytes")]
    TooLong,
    /// The stream ended before the `\n`.
    #[error("command line not terminated by a newline")]
    Unterminated,
    /// Not UTF-8.
    #[error("command line is not UTF-8")]
    NotUtf8,
    /// An unknown verb.
    #[error("unknown command")]
    Unknown,
    /// A known verb with missing or malformed arguments.
    #[error("malformed command arguments")]
    BadArguments,
}

/// Parses a command line: the bytes after `WT-CMD ` up to, not including, the `\n` (a
/// trailing `\r` is ignored).
pub fn parse_command(line: &[u8], max_push: u64) -> Result<Command, CommandError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| CommandError::NotUtf8)?;
    let (verb, args) = line.split_once(' ').unwrap_or((line, ""));
    let code = |a: &str| parse_code(a).ok_or(CommandError::BadArguments);
    let count = |a: &str| match a.parse::<u64>() {
        Ok(n) if n <= max_push => Ok(n),
        _ => Err(CommandError::BadArguments),
    };
    let no_args = |c: Command| {
        if args.is_empty() {
            Ok(c)
        } else {
            Err(CommandError::BadArguments)
        }
    };
    match verb {
        "close" => {
            let (c, reason) = args.split_once(' ').unwrap_or((args, ""));
            if reason.len() > MAX_REASON {
                return Err(CommandError::BadArguments);
            }
            Ok(Command::Close {
                code: code(c)?,
                reason: reason.to_owned(),
            })
        }
        "drain" => no_args(Command::Drain),
        "panic" => no_args(Command::Panic),
        "id" => no_args(Command::Id),
        "protocol" => no_args(Command::Protocol),
        "reset" => Ok(Command::Reset(code(args)?)),
        "stop" => Ok(Command::Stop(code(args)?)),
        "open-uni" => Ok(Command::OpenUni(count(args)?)),
        "open-bidi" => Ok(Command::OpenBidi(count(args)?)),
        _ => Err(CommandError::Unknown),
    }
}

/// What the [`Sniffer`] made of the data given to it so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniffed {
    /// Not decided yet (a strict prefix of `WT-CMD `, or an unfinished command line), or
    /// nothing to do (after a refused command).
    Pending,
    /// Ordinary stream data, to be echoed.
    Data(Bytes),
    /// A command line, and the data after its `\n` (to be echoed).
    Command(Result<Command, CommandError>, Bytes),
}

#[derive(Debug)]
enum SniffState {
    /// Fewer than `COMMAND_PREFIX.len()` bytes seen, all matching the prefix.
    Prefix(BytesMut),
    /// Inside a command line (prefix consumed).
    Line(BytesMut),
    /// Decided: the rest of the stream is data.
    Data,
    /// A command failed; the rest of the stream is ignored.
    Failed,
}

/// Tells a command line from echo data at the start of a stream, chunk by chunk.
///
/// Only the very first bytes of the stream are examined: once they differ from `WT-CMD `, or
/// after the command line's `\n`, everything is data. A stream whose first bytes are a strict
/// prefix of `WT-CMD ` (e.g. just `WT`) is held back until more data or the FIN decides.
/// Memory is bounded by [`MAX_COMMAND_LINE`].
#[derive(Debug)]
pub struct Sniffer {
    state: SniffState,
    max_push: u64,
}

impl Sniffer {
    /// A sniffer for a new stream; `max_push` bounds `open-*` byte counts.
    pub fn new(max_push: u64) -> Self {
        Sniffer {
            state: SniffState::Prefix(BytesMut::new()),
            max_push,
        }
    }

    /// A sniffer that has already decided: everything is data.
    pub fn passthrough(max_push: u64) -> Self {
        Sniffer {
            state: SniffState::Data,
            max_push,
        }
    }

    /// Feeds the next chunk of the stream.
    pub fn push(&mut self, data: Bytes) -> Sniffed {
        match &mut self.state {
            SniffState::Data => Sniffed::Data(data),
            SniffState::Failed => Sniffed::Pending,
            SniffState::Prefix(seen) => {
                let need = COMMAND_PREFIX.len() - seen.len();
                let take = need.min(data.len());
                let matches = data[..take] == COMMAND_PREFIX[seen.len()..seen.len() + take];
                if !matches {
                    let mut all = std::mem::take(seen);
                    self.state = SniffState::Data;
                    if all.is_empty() {
                        return Sniffed::Data(data);
                    }
                    all.extend_from_slice(&data);
                    return Sniffed::Data(all.freeze());
                }
                if take < need {
                    seen.extend_from_slice(&data);
                    return Sniffed::Pending;
                }
                self.state = SniffState::Line(BytesMut::new());
                self.push_line(data.slice(take..))
            }
            SniffState::Line(_) => self.push_line(data),
        }
    }

    fn push_line(&mut self, data: Bytes) -> Sniffed {
        let SniffState::Line(line) = &mut self.state else {
            return Sniffed::Pending;
        };
        let room = MAX_COMMAND_LINE - COMMAND_PREFIX.len() - 1;
        match data.iter().position(|&b| b == b'\n') {
            Some(pos) if line.len() + pos <= room => {
                line.extend_from_slice(&data[..pos]);
                let parsed = parse_command(line, self.max_push);
                self.state = if parsed.is_ok() {
                    SniffState::Data
                } else {
                    SniffState::Failed
                };
                Sniffed::Command(parsed, data.slice(pos + 1..))
            }
            Some(_) => self.fail(CommandError::TooLong),
            None if line.len() + data.len() > room => self.fail(CommandError::TooLong),
            None => {
                line.extend_from_slice(&data);
                Sniffed::Pending
            }
        }
    }

    fn fail(&mut self, e: CommandError) -> Sniffed {
        self.state = SniffState::Failed;
        Sniffed::Command(Err(e), Bytes::new())
    }

    /// The stream ended (FIN): releases held-back bytes, or reports an unterminated command.
    pub fn finish(&mut self) -> Sniffed {
        match std::mem::replace(&mut self.state, SniffState::Data) {
            SniffState::Prefix(seen) => Sniffed::Data(seen.freeze()),
            SniffState::Line(_) => self.fail(CommandError::Unterminated),
            SniffState::Data => Sniffed::Data(Bytes::new()),
            SniffState::Failed => {
                self.state = SniffState::Failed;
                Sniffed::Pending
            }
        }
    }
}

/// A 64 KiB block of the push pattern: byte `i` of a pushed stream is `i % 256`.
pub static PATTERN: [u8; 65536] = pattern();

const fn pattern() -> [u8; 65536] {
    let mut p = [0u8; 65536];
    let mut i = 0;
    while i < p.len() {
        p[i] = i as u8;
        i += 1;
    }
    p
}

/// The pushed stream's bytes `offset..offset + len` for `offset` a multiple of 256 and `len`
/// at most 64 KiB, without copying.
pub(crate) fn pattern_chunk(len: usize) -> Bytes {
    Bytes::from_static(&PATTERN[..len.min(PATTERN.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 20;

    #[test]
    fn routes() {
        assert_eq!(parse_route("/echo", MAX), Ok(Route::Echo));
        assert_eq!(parse_route("/", MAX), Ok(Route::Echo));
        assert_eq!(parse_route("/echo?x=1", MAX), Ok(Route::Echo));
        assert_eq!(
            parse_route("/reject/404", MAX),
            Ok(Route::Reject(StatusCode::NOT_FOUND))
        );
        assert_eq!(
            parse_route("/reject/abc", MAX),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            parse_route("/reject/1000", MAX),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            parse_route("/close/42/bye%20now", MAX),
            Ok(Route::Close {
                code: 42,
                reason: "bye now".into()
            })
        );
        assert_eq!(
            parse_route("/close/0x2a", MAX),
            Ok(Route::Close {
                code: 42,
                reason: String::new()
            })
        );
        assert_eq!(
            parse_route("/close/1/a/b", MAX),
            Ok(Route::Close {
                code: 1,
                reason: "a/b".into()
            })
        );
        assert_eq!(
            parse_route("/close/4294967296", MAX),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            parse_route("/close/1/%zz", MAX),
            Err(StatusCode::BAD_REQUEST)
        );
        let long = format!("/close/1/{}", "x".repeat(1025));
        assert_eq!(parse_route(&long, MAX), Err(StatusCode::BAD_REQUEST));
        assert_eq!(parse_route("/drain", MAX), Ok(Route::Drain));
        assert_eq!(parse_route("/open-bidi/10", MAX), Ok(Route::OpenBidi(10)));
        assert_eq!(parse_route("/open-uni/0", MAX), Ok(Route::OpenUni(0)));
        assert_eq!(
            parse_route("/open-uni/2000000", MAX),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            parse_route("/open-uni/1/2", MAX),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(parse_route("/reset/7", MAX), Ok(Route::Reset(7)));
        assert_eq!(parse_route("/stop/9", MAX), Ok(Route::Stop(9)));
        assert_eq!(parse_route("/origin-check", MAX), Ok(Route::OriginCheck));
        assert_eq!(parse_route("/nope", MAX), Err(StatusCode::NOT_FOUND));
        assert_eq!(parse_route("/echo/x", MAX), Err(StatusCode::NOT_FOUND));
        assert_eq!(parse_route("", MAX), Ok(Route::Echo));
    }

    #[test]
    fn protocol_and_observed_routes() {
        assert_eq!(
            parse_route("/protocol/a", MAX),
            Ok(Route::Protocol("a".into()))
        );
        assert_eq!(
            parse_route("/protocol/my%20proto%2Fv1?x", MAX),
            Ok(Route::Protocol("my proto/v1".into()))
        );
        for bad in ["/protocol", "/protocol/", "/protocol/a/b", "/protocol/%zz"] {
            assert_eq!(parse_route(bad, MAX), Err(StatusCode::BAD_REQUEST), "{bad}");
        }
        assert_eq!(
            parse_route("/observed/12", MAX),
            Ok(Route::Observed {
                token: 12,
                stream: None
            })
        );
        assert_eq!(
            parse_route("/observed/3/4", MAX),
            Ok(Route::Observed {
                token: 3,
                stream: Some(StreamId(4))
            })
        );
        for bad in [
            "/observed",
            "/observed/",
            "/observed/x",
            "/observed/+1",
            "/observed/1/",
            "/observed/1/0x4",
            "/observed/1/4/5",
            "/observed/18446744073709551616",
        ] {
            assert_eq!(parse_route(bad, MAX), Err(StatusCode::BAD_REQUEST), "{bad}");
        }
    }

    #[test]
    fn not_served() {
        use Dialect::*;
        for d in [H3Latest, H2Latest] {
            assert_eq!(not_served_status(d), StatusCode::METHOD_NOT_ALLOWED);
        }
        for d in [H3Draft02, H3Draft07, H3Draft13, H2Legacy] {
            assert_eq!(not_served_status(d), StatusCode::NOT_FOUND);
        }
    }

    #[test]
    fn codes() {
        assert_eq!(parse_code("7"), Some(7));
        assert_eq!(parse_code("0xff"), Some(255));
        assert_eq!(parse_code("4294967295"), Some(u32::MAX));
        assert_eq!(parse_code("4294967296"), None);
        assert_eq!(parse_code("+7"), None);
        assert_eq!(parse_code(""), None);
        assert_eq!(parse_code("0x"), None);
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse_command(b"close 42 bye", MAX),
            Ok(Command::Close {
                code: 42,
                reason: "bye".into()
            })
        );
        assert_eq!(
            parse_command(b"close 42 good bye\r", MAX),
            Ok(Command::Close {
                code: 42,
                reason: "good bye".into()
            })
        );
        assert_eq!(
            parse_command(b"close 42", MAX),
            Ok(Command::Close {
                code: 42,
                reason: String::new()
            })
        );
        assert_eq!(parse_command(b"drain", MAX), Ok(Command::Drain));
        assert_eq!(parse_command(b"id", MAX), Ok(Command::Id));
        assert_eq!(parse_command(b"id\r", MAX), Ok(Command::Id));
        assert_eq!(parse_command(b"id 1", MAX), Err(CommandError::BadArguments));
        assert_eq!(parse_command(b"protocol", MAX), Ok(Command::Protocol));
        assert_eq!(
            parse_command(b"drain now", MAX),
            Err(CommandError::BadArguments)
        );
        assert_eq!(parse_command(b"reset 7", MAX), Ok(Command::Reset(7)));
        assert_eq!(parse_command(b"stop 9", MAX), Ok(Command::Stop(9)));
        assert_eq!(parse_command(b"open-uni 5", MAX), Ok(Command::OpenUni(5)));
        assert_eq!(parse_command(b"open-bidi 5", MAX), Ok(Command::OpenBidi(5)));
        assert_eq!(
            parse_command(b"open-bidi 5000000", MAX),
            Err(CommandError::BadArguments)
        );
        assert_eq!(
            parse_command(b"reset", MAX),
            Err(CommandError::BadArguments)
        );
        assert_eq!(parse_command(b"launch", MAX), Err(CommandError::Unknown));
        assert_eq!(parse_command(b"\xff", MAX), Err(CommandError::NotUtf8));
        assert_eq!(parse_command(b"panic", MAX), Ok(Command::Panic));
    }

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn sniffer_plain_data() {
        let mut s = Sniffer::new(MAX);
        assert_eq!(s.push(b(b"hello")), Sniffed::Data(b(b"hello")));
        assert_eq!(
            s.push(b(b"WT-CMD drain\n")),
            Sniffed::Data(b(b"WT-CMD drain\n"))
        );
        assert_eq!(s.finish(), Sniffed::Data(Bytes::new()));
    }

    #[test]
    fn sniffer_command_in_one_chunk() {
        let mut s = Sniffer::new(MAX);
        assert_eq!(
            s.push(b(b"WT-CMD reset 7\nrest")),
            Sniffed::Command(Ok(Command::Reset(7)), b(b"rest"))
        );
        assert_eq!(s.push(b(b"more")), Sniffed::Data(b(b"more")));
    }

    #[test]
    fn sniffer_command_byte_by_byte() {
        let mut s = Sniffer::new(MAX);
        let line = b"WT-CMD close 42 bye\n";
        for &byte in &line[..line.len() - 1] {
            assert_eq!(s.push(Bytes::copy_from_slice(&[byte])), Sniffed::Pending);
        }
        assert_eq!(
            s.push(b(b"\n")),
            Sniffed::Command(
                Ok(Command::Close {
                    code: 42,
                    reason: "bye".into()
                }),
                Bytes::new()
            )
        );
    }

    #[test]
    fn sniffer_partial_prefix_released() {
        let mut s = Sniffer::new(MAX);
        assert_eq!(s.push(b(b"WT")), Sniffed::Pending);
        assert_eq!(s.push(b(b"-X")), Sniffed::Data(b(b"WT-X")));
        let mut s = Sniffer::new(MAX);
        assert_eq!(s.push(b(b"WT-C")), Sniffed::Pending);
        assert_eq!(s.finish(), Sniffed::Data(b(b"WT-C")));
        let mut s = Sniffer::new(MAX);
        assert_eq!(s.push(Bytes::new()), Sniffed::Pending);
        assert_eq!(s.finish(), Sniffed::Data(Bytes::new()));
    }

    #[test]
    fn sniffer_refuses_bad_lines() {
        let mut s = Sniffer::new(MAX);
        assert_eq!(
            s.push(b(b"WT-CMD fly\nabc")),
            Sniffed::Command(Err(CommandError::Unknown), b(b"abc"))
        );
        assert_eq!(s.push(b(b"ignored")), Sniffed::Pending);
        assert_eq!(s.finish(), Sniffed::Pending);

        let mut s = Sniffer::new(MAX);
        assert_eq!(s.push(b(b"WT-CMD close 1")), Sniffed::Pending);
        assert_eq!(
            s.finish(),
            Sniffed::Command(Err(CommandError::Unterminated), Bytes::new())
        );

        let mut s = Sniffer::new(MAX);
        let long = Bytes::from(vec![b'a'; MAX_COMMAND_LINE]);
        assert_eq!(s.push(b(b"WT-CMD ")), Sniffed::Pending);
        assert_eq!(
            s.push(long),
            Sniffed::Command(Err(CommandError::TooLong), Bytes::new())
        );

        // Exactly at the limit: prefix + 248 bytes + "\n" = 256.
        let mut s = Sniffer::new(MAX);
        let mut line = b"WT-CMD close 1 ".to_vec();
        line.resize(MAX_COMMAND_LINE - 1, b'r');
        line.push(b'\n');
        match s.push(Bytes::from(line)) {
            Sniffed::Command(Ok(Command::Close { code: 1, reason }), rest) => {
                assert_eq!(reason.len(), MAX_COMMAND_LINE - 16);
                assert!(rest.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn pattern_bytes() {
        assert_eq!(PATTERN[0], 0);
        assert_eq!(PATTERN[255], 255);
        assert_eq!(PATTERN[256], 0);
        assert_eq!(pattern_chunk(3), b(&[0, 1, 2]));
    }
}
