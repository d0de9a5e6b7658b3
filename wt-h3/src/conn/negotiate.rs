//! SETTINGS negotiation and per-request dialect detection, as pure functions.

use http::StatusCode;
use wt_core::codes::H3Code;
use wt_core::{CompatMode, Dialect, FlowLimits, MissingSetting, ProtocolError};

use crate::config::FlowControlConfig;
use crate::conn::flow::SessionFlow;

use crate::proto::headers::{self, Request};
use crate::proto::settings::{self as s, Settings};

/// QPACK settings we always send: no dynamic table, no blocked streams, and our field section
/// limit.
fn qpack_settings() -> [(u64, u64); 3] {
    [
        (s::QPACK_MAX_TABLE_CAPACITY, 0),
        (s::QPACK_BLOCKED_STREAMS, 0),
        (
            s::MAX_FIELD_SECTION_SIZE,
            wt_core::limits::MAX_FIELD_SECTION_SIZE as u64,
        ),
    ]
}

/// The SETTINGS a client sends in `mode`, without session flow control.
pub fn client_settings(mode: CompatMode) -> Settings {
    client_settings_with(mode, None)
}

/// The SETTINGS_WT_INITIAL_MAX_* pairs granting `fc` (non-zero values only; all zero means
/// "no flow control offered").
pub fn flow_settings(fc: &FlowControlConfig) -> Vec<(u64, u64)> {
    [
        (s::WT_INITIAL_MAX_DATA, fc.max_data),
        (s::WT_INITIAL_MAX_STREAMS_UNI, fc.max_streams_uni),
        (s::WT_INITIAL_MAX_STREAMS_BIDI, fc.max_streams_bidi),
    ]
    .into_iter()
    .filter(|(_, v)| *v > 0)
    .map(|(id, v)| (id, v.min(wt_core::varint::MAX)))
    .collect()
}

/// The SETTINGS a client sends in `mode`, offering session flow control with `fc` (not in
/// [`CompatMode::LegacyBrowserCompat`], whose draft-02 dialect has none).
pub fn client_settings_with(mode: CompatMode, fc: Option<&FlowControlConfig>) -> Settings {
    let mut v: Vec<(u64, u64)> = qpack_settings().to_vec();
    match mode {
        CompatMode::Auto => v.extend([
            (s::H3_DATAGRAM, 1),
            (s::H3_DATAGRAM_DRAFT04, 1),
            (s::ENABLE_WEBTRANSPORT, 1),
            (s::WEBTRANSPORT_MAX_SESSIONS_D07, 1),
            (s::WT_MAX_SESSIONS_D13, 1),
            (s::WT_ENABLED, 1),
        ]),
        CompatMode::Latest => v.extend([(s::H3_DATAGRAM, 1), (s::WT_ENABLED, 1)]),
        CompatMode::LegacyBrowserCompat => v.extend([
            (s::H3_DATAGRAM, 1),
            (s::H3_DATAGRAM_DRAFT04, 1),
            (s::ENABLE_WEBTRANSPORT, 1),
        ]),
    }
    if let (Some(fc), false) = (fc, mode == CompatMode::LegacyBrowserCompat) {
        v.extend(flow_settings(fc));
    }
    Settings::from_pairs(&v)
}

/// The flow-control state of a new session of `dialect`, or `None` when flow control is not
/// on (see [`flow_control_enabled`]). `window` is what we re-grant (our configuration; the
/// default when flow control was enabled without one, by draft-13 max-sessions).
pub fn session_flow(
    dialect: Dialect,
    ours: &Settings,
    theirs: &Settings,
    window: Option<&FlowControlConfig>,
) -> Option<SessionFlow> {
    if !flow_control_enabled(dialect, ours, theirs) {
        return None;
    }
    let w = window.copied().unwrap_or_default();
    Some(SessionFlow::new(
        initial_limits(theirs),
        initial_limits(ours),
        FlowLimits {
            max_data: w.max_data,
            max_streams_bidi: w.max_streams_bidi,
            max_streams_uni: w.max_streams_uni,
        },
        // Draft-16 forbids non-increasing limit updates; draft-13/14 only decreasing ones.
        dialect == Dialect::H3Latest,
    ))
}

/// The initial limits a peer grants in its SETTINGS (0 when absent).
pub fn initial_limits(settings: &Settings) -> FlowLimits {
    let get = |id| settings.get(id).unwrap_or(0);
    FlowLimits {
        max_data: get(s::WT_INITIAL_MAX_DATA),
        max_streams_bidi: get(s::WT_INITIAL_MAX_STREAMS_BIDI),
        max_streams_uni: get(s::WT_INITIAL_MAX_STREAMS_UNI),
    }
}

fn offers_flow_control(settings: &Settings) -> bool {
    initial_limits(settings) != FlowLimits::default()
}

/// Whether session flow control is on for a session of `dialect` between endpoints that sent
/// `ours` and `theirs` (wire reference §3.8): draft-15/16, both sides send a non-zero
/// SETTINGS_WT_INITIAL_MAX_*; draft-13/14 (the draft-14 rule, which includes draft-13's),
/// both sides send a non-zero initial limit or SETTINGS_WT_MAX_SESSIONS > 1; never for
/// draft-02 and draft-07…12.
pub fn flow_control_enabled(dialect: Dialect, ours: &Settings, theirs: &Settings) -> bool {
    match dialect {
        Dialect::H3Latest => offers_flow_control(ours) && offers_flow_control(theirs),
        Dialect::H3Draft13 => {
            let on = |st: &Settings| {
                offers_flow_control(st) || st.get(s::WT_MAX_SESSIONS_D13).unwrap_or(0) > 1
            };
            on(ours) && on(theirs)
        }
        _ => false,
    }
}

/// What the server advertises.
#[derive(Clone, Debug)]
pub struct ServerAdvert {
    /// Dialects the server accepts.
    pub dialects: Vec<Dialect>,
    /// Value of the max-sessions settings (draft-07…14).
    pub max_sessions: u64,
    /// Setting IDs to leave out (testing knob).
    pub omit: Vec<u64>,
    /// Extra pairs appended (testing knob; GREASE).
    pub extra: Vec<(u64, u64)>,
    /// Initial session flow-control limits to advertise (latest and draft-13 dialects).
    pub flow_control: Option<FlowControlConfig>,
}

/// The "accept everything" SETTINGS of the wire reference §6.4, restricted to the accepted
/// dialects.
pub fn server_settings(a: &ServerAdvert) -> Settings {
    let has = |d: Dialect| a.dialects.contains(&d);
    let mut v: Vec<(u64, u64)> = qpack_settings().to_vec();
    v.extend([
        (s::ENABLE_CONNECT_PROTOCOL, 1),
        (s::H3_DATAGRAM, 1),
        (s::H3_DATAGRAM_DRAFT04, 1),
    ]);
    if has(Dialect::H3Draft02) {
        v.push((s::ENABLE_WEBTRANSPORT, 1));
    }
    if has(Dialect::H3Draft07) {
        v.push((s::WEBTRANSPORT_MAX_SESSIONS_D07, a.max_sessions.max(1)));
    }
    if has(Dialect::H3Draft13) {
        v.push((s::WT_MAX_SESSIONS_D13, a.max_sessions.max(1)));
    }
    if has(Dialect::H3Latest) {
        v.push((s::WT_ENABLED, 1));
    }
    if let Some(fc) = &a.flow_control {
        if has(Dialect::H3Latest) || has(Dialect::H3Draft13) {
            v.extend(flow_settings(fc));
        }
    }
    v.retain(|(id, _)| !a.omit.contains(id));
    v.extend(a.extra.iter().copied());
    Settings::from_pairs(&v)
}

/// Why the client will not send its CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCheckError {
    /// A requirement is missing.
    Missing(MissingSetting),
    /// The server's SETTINGS are invalid.
    Protocol(ProtocolError),
}

fn missing(id: u64) -> ClientCheckError {
    ClientCheckError::Missing(MissingSetting {
        name: s::name(id),
        id,
    })
}

/// Transport parameter max_datagram_frame_size.
pub const TP_MAX_DATAGRAM_FRAME_SIZE: u64 = 0x20;

/// Checks the server's SETTINGS (and whether its transport parameters allow datagrams) and
/// picks the dialect the client speaks.
pub fn check_server_settings(
    mode: CompatMode,
    server: &Settings,
    peer_datagrams: bool,
) -> Result<Dialect, ClientCheckError> {
    server.validate().map_err(ClientCheckError::Protocol)?;
    let legacy_dialect = || {
        if server.enabled(s::ENABLE_WEBTRANSPORT) {
            Some(Dialect::H3Draft02)
        } else if server.enabled(s::WEBTRANSPORT_MAX_SESSIONS_D07) {
            Some(Dialect::H3Draft07)
        } else if server.enabled(s::WT_MAX_SESSIONS_D13) {
            Some(Dialect::H3Draft13)
        } else {
            None
        }
    };
    let dialect = match mode {
        CompatMode::Latest => {
            if server.get(s::WT_ENABLED) != Some(1) {
                return Err(missing(s::WT_ENABLED));
            }
            Dialect::H3Latest
        }
        CompatMode::LegacyBrowserCompat => {
            if !server.enabled(s::ENABLE_WEBTRANSPORT) {
                return Err(missing(s::ENABLE_WEBTRANSPORT));
            }
            Dialect::H3Draft02
        }
        CompatMode::Auto => {
            if server.get(s::WT_ENABLED) == Some(1) {
                Dialect::H3Latest
            } else if let Some(d) = legacy_dialect() {
                d
            } else {
                return Err(missing(s::WT_ENABLED));
            }
        }
    };
    let needs_connect_protocol = !matches!(dialect, Dialect::H3Draft02);
    if needs_connect_protocol && server.get(s::ENABLE_CONNECT_PROTOCOL) != Some(1) {
        return Err(missing(s::ENABLE_CONNECT_PROTOCOL));
    }
    let datagrams_ok = if dialect == Dialect::H3Draft02 {
        server.datagrams()
    } else {
        server.get(s::H3_DATAGRAM) == Some(1)
    };
    if !datagrams_ok {
        return Err(missing(s::H3_DATAGRAM));
    }
    if !peer_datagrams {
        return Err(ClientCheckError::Missing(MissingSetting {
            name: "max_datagram_frame_size",
            id: TP_MAX_DATAGRAM_FRAME_SIZE,
        }));
    }
    Ok(dialect)
}

/// `:protocol` and whether to add the draft-02 header, for a client dialect.
pub fn request_protocol(d: Dialect) -> (&'static str, bool) {
    match d {
        Dialect::H3Latest => (headers::PROTOCOL_LATEST, false),
        _ => (headers::PROTOCOL_LEGACY, true),
    }
}

/// The server's verdict on a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detected {
    /// A WebTransport request of this dialect.
    WebTransport(Dialect),
    /// Not WebTransport (or a dialect we don't serve): answer with this status.
    Refuse(StatusCode),
    /// Malformed: reset the stream with this code.
    Malformed(H3Code),
}

/// Detects a request's dialect per the wire reference §6.4.
pub fn detect(
    req: &Request,
    client: &Settings,
    server: &Settings,
    accepted: &[Dialect],
    client_datagrams_tp: bool,
) -> Detected {
    let Some(proto) = req.protocol.as_deref() else {
        return Detected::Refuse(if req.method == "CONNECT" {
            StatusCode::METHOD_NOT_ALLOWED
        } else {
            StatusCode::NOT_FOUND
        });
    };
    if req.check_extended_connect().is_err() {
        return Detected::Malformed(H3Code::H3_MESSAGE_ERROR);
    }
    let both = |id: u64| client.enabled(id) && server.enabled(id);
    let dialect = match proto {
        headers::PROTOCOL_LATEST => {
            if req.has_draft02() {
                return Detected::Refuse(StatusCode::BAD_REQUEST);
            }
            Dialect::H3Latest
        }
        headers::PROTOCOL_LEGACY => {
            let legacy = client.enabled(s::ENABLE_WEBTRANSPORT)
                || client.enabled(s::WEBTRANSPORT_MAX_SESSIONS_D07)
                || client.enabled(s::WT_MAX_SESSIONS_D13)
                || req.has_draft02();
            if !legacy {
                // The capsule protocol over HTTP/3: not implemented.
                return Detected::Refuse(StatusCode::METHOD_NOT_ALLOWED);
            }
            if both(s::WT_MAX_SESSIONS_D13) && !req.has_draft02() {
                Dialect::H3Draft13
            } else if both(s::WEBTRANSPORT_MAX_SESSIONS_D07) && !req.has_draft02() {
                Dialect::H3Draft07
            } else {
                Dialect::H3Draft02
            }
        }
        _ => return Detected::Refuse(StatusCode::NOT_IMPLEMENTED),
    };
    if !accepted.contains(&dialect) {
        return Detected::Refuse(not_served_status(dialect));
    }
    let datagrams = match dialect {
        Dialect::H3Draft02 => client.datagrams(),
        _ => client.get(s::H3_DATAGRAM) == Some(1),
    };
    if !datagrams || !client_datagrams_tp {
        return Detected::Malformed(H3Code::H3_MESSAGE_ERROR);
    }
    Detected::WebTransport(dialect)
}

/// The "resource does not do WebTransport" status of a dialect: 405 for the latest draft,
/// 404 before.
pub fn not_served_status(d: Dialect) -> StatusCode {
    match d {
        Dialect::H3Latest => StatusCode::METHOD_NOT_ALLOWED,
        _ => StatusCode::NOT_FOUND,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn all_dialects() -> Vec<Dialect> {
        vec![
            Dialect::H3Latest,
            Dialect::H3Draft13,
            Dialect::H3Draft07,
            Dialect::H3Draft02,
        ]
    }

    fn advert() -> ServerAdvert {
        ServerAdvert {
            dialects: all_dialects(),
            max_sessions: 1,
            omit: vec![],
            extra: vec![],
            flow_control: None,
        }
    }

    #[test]
    fn flow_control_enablement() {
        let fc = FlowControlConfig::default();
        let mut a = advert();
        let plain = server_settings(&a);
        a.flow_control = Some(fc);
        let srv = server_settings(&a);
        assert_eq!(
            initial_limits(&srv),
            FlowLimits {
                max_data: fc.max_data,
                max_streams_bidi: fc.max_streams_bidi,
                max_streams_uni: fc.max_streams_uni
            }
        );
        let cl = client_settings_with(CompatMode::Latest, Some(&fc));
        let cl_plain = client_settings(CompatMode::Latest);
        assert!(flow_control_enabled(Dialect::H3Latest, &srv, &cl));
        assert!(flow_control_enabled(Dialect::H3Latest, &cl, &srv));
        assert!(!flow_control_enabled(Dialect::H3Latest, &srv, &cl_plain));
        assert!(!flow_control_enabled(Dialect::H3Latest, &plain, &cl));
        assert!(!flow_control_enabled(Dialect::H3Draft07, &srv, &cl));
        assert!(!flow_control_enabled(Dialect::H3Draft02, &srv, &cl));
        assert!(flow_control_enabled(Dialect::H3Draft13, &srv, &cl));
        // Draft-13/14: max sessions > 1 on both sides also enables it.
        let many = Settings::from_pairs(&[(s::WT_MAX_SESSIONS_D13, 4)]);
        assert!(flow_control_enabled(Dialect::H3Draft13, &many, &srv));
        assert!(!flow_control_enabled(Dialect::H3Draft13, &many, &plain));
        assert!(!flow_control_enabled(Dialect::H3Latest, &many, &many));
        // Only one non-zero value is needed; zeros are not sent.
        let one = FlowControlConfig {
            max_data: 0,
            max_streams_bidi: 1,
            max_streams_uni: 0,
        };
        let cl1 = client_settings_with(CompatMode::Auto, Some(&one));
        assert_eq!(cl1.get(s::WT_INITIAL_MAX_DATA), None);
        assert!(flow_control_enabled(Dialect::H3Latest, &srv, &cl1));
        let legacy = client_settings_with(CompatMode::LegacyBrowserCompat, Some(&fc));
        assert_eq!(legacy.get(s::WT_INITIAL_MAX_DATA), None);
    }

    #[test]
    fn client_picks_dialect() {
        let srv = server_settings(&advert());
        assert_eq!(
            check_server_settings(CompatMode::Auto, &srv, true),
            Ok(Dialect::H3Latest)
        );
        assert_eq!(
            check_server_settings(CompatMode::Latest, &srv, true),
            Ok(Dialect::H3Latest)
        );
        assert_eq!(
            check_server_settings(CompatMode::LegacyBrowserCompat, &srv, true),
            Ok(Dialect::H3Draft02)
        );
        // Legacy-only server.
        let legacy =
            Settings::from_pairs(&[(s::ENABLE_WEBTRANSPORT, 1), (s::H3_DATAGRAM_DRAFT04, 1)]);
        assert_eq!(
            check_server_settings(CompatMode::Auto, &legacy, true),
            Ok(Dialect::H3Draft02)
        );
        assert_eq!(
            check_server_settings(CompatMode::Latest, &legacy, true),
            Err(missing(s::WT_ENABLED))
        );
    }

    #[test]
    fn client_names_the_missing_setting() {
        for (omit, mode, want) in [
            (s::H3_DATAGRAM, CompatMode::Latest, s::H3_DATAGRAM),
            (
                s::ENABLE_CONNECT_PROTOCOL,
                CompatMode::Latest,
                s::ENABLE_CONNECT_PROTOCOL,
            ),
            (s::WT_ENABLED, CompatMode::Latest, s::WT_ENABLED),
            (
                s::ENABLE_WEBTRANSPORT,
                CompatMode::LegacyBrowserCompat,
                s::ENABLE_WEBTRANSPORT,
            ),
        ] {
            let mut a = advert();
            a.omit = vec![omit];
            let srv = server_settings(&a);
            assert_eq!(check_server_settings(mode, &srv, true), Err(missing(want)));
        }
        let srv = server_settings(&advert());
        assert_eq!(
            check_server_settings(CompatMode::Auto, &srv, false),
            Err(ClientCheckError::Missing(MissingSetting {
                name: "max_datagram_frame_size",
                id: 0x20
            }))
        );
        let bad = Settings::from_pairs(&[(s::WT_ENABLED, 2)]);
        assert!(matches!(
            check_server_settings(CompatMode::Auto, &bad, true),
            Err(ClientCheckError::Protocol(_))
        ));
    }

    #[test]
    fn chrome_settings_bytes() {
        let mut out = BytesMut::new();
        client_settings(CompatMode::LegacyBrowserCompat).encode(&mut out);
        let parsed = Settings::parse(&out[2..]).unwrap();
        assert!(parsed.enabled(s::ENABLE_WEBTRANSPORT));
        assert!(parsed.enabled(s::H3_DATAGRAM_DRAFT04));
        assert!(parsed.enabled(s::H3_DATAGRAM));
        assert_eq!(parsed.get(s::WT_ENABLED), None);
        let latest = client_settings(CompatMode::Latest);
        assert_eq!(latest.get(s::ENABLE_WEBTRANSPORT), None);
        assert_eq!(latest.get(s::WT_ENABLED), Some(1));
    }

    fn request(fields: &[(&str, &str)]) -> Request {
        let f: Vec<(&[u8], &[u8])> = fields
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        let mut out = BytesMut::new();
        crate::proto::qpack::encode_field_section(&f, false, &mut out);
        headers::parse_request(&out).unwrap()
    }

    fn wt(proto: &str, draft02: bool) -> Request {
        let mut f = vec![
            (":method", "CONNECT"),
            (":protocol", proto),
            (":scheme", "https"),
            (":authority", "localhost"),
            (":path", "/"),
        ];
        if draft02 {
            f.push((headers::DRAFT02_REQUEST, "1"));
        }
        request(&f)
    }

    #[test]
    fn server_detects_dialects() {
        let srv = server_settings(&advert());
        let acc = all_dialects();
        let auto = client_settings(CompatMode::Auto);
        let chrome = client_settings(CompatMode::LegacyBrowserCompat);
        let latest = client_settings(CompatMode::Latest);
        assert_eq!(
            detect(&wt("webtransport-h3", false), &latest, &srv, &acc, true),
            Detected::WebTransport(Dialect::H3Latest)
        );
        assert_eq!(
            detect(&wt("webtransport-h3", true), &latest, &srv, &acc, true),
            Detected::Refuse(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            detect(&wt("webtransport", true), &chrome, &srv, &acc, true),
            Detected::WebTransport(Dialect::H3Draft02)
        );
        // An auto client that speaks legacy without the draft02 header: highest common.
        assert_eq!(
            detect(&wt("webtransport", false), &auto, &srv, &acc, true),
            Detected::WebTransport(Dialect::H3Draft13)
        );
        // Capsule protocol over H3: refused.
        assert_eq!(
            detect(&wt("webtransport", false), &latest, &srv, &acc, true),
            Detected::Refuse(StatusCode::METHOD_NOT_ALLOWED)
        );
        // Client without datagrams: malformed.
        let nodg = Settings::from_pairs(&[(s::WT_ENABLED, 1)]);
        assert_eq!(
            detect(&wt("webtransport-h3", false), &nodg, &srv, &acc, true),
            Detected::Malformed(H3Code::H3_MESSAGE_ERROR)
        );
        assert_eq!(
            detect(&wt("webtransport-h3", false), &latest, &srv, &acc, false),
            Detected::Malformed(H3Code::H3_MESSAGE_ERROR)
        );
        // Dialect not served.
        assert_eq!(
            detect(
                &wt("webtransport-h3", false),
                &latest,
                &srv,
                &[Dialect::H3Draft02],
                true
            ),
            Detected::Refuse(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(
            detect(
                &wt("webtransport", true),
                &chrome,
                &srv,
                &[Dialect::H3Latest],
                true
            ),
            Detected::Refuse(StatusCode::NOT_FOUND)
        );
        // Plain GET; CONNECT without :protocol; missing :authority.
        let get = request(&[(":method", "GET"), (":scheme", "https"), (":path", "/")]);
        assert_eq!(
            detect(&get, &auto, &srv, &acc, true),
            Detected::Refuse(StatusCode::NOT_FOUND)
        );
        let no_auth = request(&[
            (":method", "CONNECT"),
            (":protocol", "webtransport-h3"),
            (":scheme", "https"),
            (":path", "/"),
        ]);
        assert_eq!(
            detect(&no_auth, &latest, &srv, &acc, true),
            Detected::Malformed(H3Code::H3_MESSAGE_ERROR)
        );
    }
}
