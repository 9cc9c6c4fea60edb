//! The admin API's wire format, one typed definition for the control process that
//! serves it ([`crate::admin`]) and the `rampartctl` commands that call it.
//!
//! A client connects to the admin socket, writes one request line and reads one reply
//! line, both JSON objects. A request names its command in `cmd`
//! (`{"cmd": "status"}`, `{"cmd": "flows", "guest": "a", "port": 53}`): [`Request`].
//! Every reply has a boolean `ok`, an `error` text when `ok` is false, and the command's
//! own fields beside them: [`Reply`] with one body type per command.

use crate::state::{PortRow, Stats, Status};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A request to the admin socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// Dataplane liveness, policy generations, event log: [`StatusReply`].
    Status,
    /// Ports with their state and counters: [`PortsReply`].
    Ports,
    /// Every counter: [`StatsReply`].
    Stats,
    /// Re-read the config file and apply it: [`ReloadReply`].
    Reload,
    /// Round trip through the command and event rings: [`PingReply`].
    Ping,
    /// Tracked flows, filtered, optionally ended: [`FlowsReply`].
    Flows(FlowsRequest),
    /// Block an address or prefix (from every guest or one) until unblocked or for a
    /// while: [`BlocksReply`] once every worker runs the policy with it.
    Block(BlockRequest),
    /// Remove a block: [`BlocksReply`].
    Unblock(BlockRequest),
    /// The blocklist: [`BlocksReply`].
    Blocks,
}

/// `block` / `unblock`: which address or prefix, toward which guest, for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<String>,
    /// Seconds (block only); None: until unblocked.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_s: Option<u64>,
}

impl Request {
    /// The request a line holds, or the error reply's text: what is wrong with it.
    pub fn parse(line: &str) -> Result<Request, String> {
        // Through a Value, so that errors name the field, not a position in the line.
        let v: Value = serde_json::from_str(line).map_err(|e| format!("the request is not a JSON object: {e}"))?;
        if !v.is_object() {
            return Err(format!("the request must be a JSON object like {{\"cmd\": \"status\"}}, got {v}"));
        }
        serde_json::from_value(v).map_err(|e| match e.to_string() {
            m if m.starts_with("unknown variant") => format!("unknown command: {m}"),
            m if m.starts_with("missing field `cmd`") => "the request names no command (`cmd`): expected status, ports, stats, reload, ping, flows, block, unblock or blocks".into(),
            m => m,
        })
    }
}

/// `flows`: every filter given must match. A filter of the wrong type is an error, never
/// ignored: a `kill` must not end more than its filters say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowsRequest {
    /// Only flows owned by this guest (port name).
    #[serde(default, deserialize_with = "guest", skip_serializing_if = "Option::is_none")]
    pub guest: Option<String>,
    /// Only flows with either end inside this address or prefix.
    #[serde(default, deserialize_with = "address", skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Only flows with this port at either end.
    #[serde(default, deserialize_with = "port", skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Only flows in this state (any case).
    #[serde(default, deserialize_with = "state", skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// End the flows that match (at least one filter is required).
    #[serde(default, deserialize_with = "kill")]
    pub kill: bool,
}

/// A text filter: absent, null or blank is no filter.
fn text<'de, D: Deserializer<'de>>(d: D, name: &str) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) if t.trim().is_empty() => Ok(None),
        Some(Value::String(t)) => Ok(Some(t)),
        Some(other) => Err(D::Error::custom(format!("flows: `{name}` must be a string, got {other}"))),
    }
}

fn guest<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    text(d, "guest")
}

fn address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    text(d, "address")
}

fn state<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    text(d, "state")
}

fn port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(p) => p
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("flows: `port` must be a number from 0 to 65535, got {p}"))),
    }
}

fn kill<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(other) => Err(D::Error::custom(format!("flows: `kill` must be true or false, got {other}"))),
    }
}

/// Every reply: `ok`, `error` when it is false, and the command's fields (`T`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply<T> {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub body: T,
}

impl<T> Reply<T> {
    pub fn ok(body: T) -> Reply<T> {
        Reply { ok: true, error: None, body }
    }
}

impl Reply<Body> {
    /// A refusal: `ok` false and why.
    pub fn error(why: impl Into<String>) -> Reply<Body> {
        Reply { ok: false, error: Some(why.into()), body: Body::None(NoBody {}) }
    }
}

/// What a reply carries besides `ok` and `error`, by command (the server's side: each
/// serialises as its fields).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Body {
    None(NoBody),
    Status(StatusReply),
    Ports(PortsReply),
    Stats(StatsReply),
    Reload(ReloadReply),
    Ping(PingReply),
    Flows(FlowsReply),
    Blocks(BlocksReply),
}

/// No fields (a refusal).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NoBody {}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusReply {
    pub status: Status,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PortsReply {
    pub ports: Vec<PortRow>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatsReply {
    pub stats: Stats,
}

/// What publishing a policy generation came to (`reload`, `block`, `unblock`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Published {
    /// The generation published (absent when nothing was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// `applied`, or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The generation each worker runs now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_generations: Option<Vec<u64>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReloadReply {
    #[serde(flatten)]
    pub published: Published,
    /// Ports of the policy that failed to attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_errors: Option<Vec<PortError>>,
    /// False when the configuration was stored without a dataplane to apply it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PortError {
    pub port: String,
    pub error: String,
}

/// The blocklist after the command; for `block` / `unblock`, the generation that carries
/// it and whether every worker runs it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BlocksReply {
    pub blocks: Vec<crate::blocks::Block>,
    #[serde(flatten)]
    pub published: Published,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PingReply {
    pub round_trip_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FlowsReply {
    /// Flows the dump listed (all of the table, before filtering).
    pub total: u64,
    /// The flows that matched.
    pub flows: Vec<FlowRow>,
    /// With `kill`: how many of them the dataplane ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed: Option<u64>,
}

/// One flow of a `flows` reply, named as the event log names flows: source = the
/// endpoint that opened it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRow {
    pub src_ip: std::net::IpAddr,
    pub src_port: u16,
    pub dest_ip: std::net::IpAddr,
    pub dest_port: u16,
    /// `TCP`, `UDP`, `ICMP`, `IPv6-ICMP` or the protocol number.
    pub proto: String,
    pub zone: u16,
    pub state: String,
    /// Port slot of the owning guest, and its name.
    pub owner: u16,
    pub guest: String,
    /// Id of the rule that decided the flow (None: no rule of the running policy).
    pub rule: Option<String>,
    /// From the opener, from the other end.
    pub pkts: [u64; 2],
    pub bytes: [u64; 2],
    pub age_ms: u64,
    pub idle_ms: u64,
}

/// A reply line as the client reads it: (the JSON as sent, its command's typed reply).
pub fn decode<T: DeserializeOwned>(line: &str) -> Result<(Value, Reply<T>), String> {
    let raw: Value = serde_json::from_str(line).map_err(|e| format!("the control process sent a reply that is not JSON: {e}"))?;
    let typed = serde_json::from_value(raw.clone()).map_err(|e| format!("the control process sent a reply this rampartctl does not understand: {e}"))?;
    Ok((raw, typed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_the_wire_format() {
        assert_eq!(Request::parse(r#"{"cmd":"status"}"#), Ok(Request::Status));
        assert_eq!(Request::parse(r#"{"cmd":"stats","extra":1}"#), Ok(Request::Stats), "unknown fields are ignored");
        // What rampartctl sent before the API was typed: nulls for absent filters.
        let old = r#"{"cmd":"flows","guest":"a","address":null,"port":53,"state":null,"kill":false}"#;
        let want = FlowsRequest { guest: Some("a".into()), port: Some(53), ..Default::default() };
        assert_eq!(Request::parse(old), Ok(Request::Flows(want.clone())));
        let sent = serde_json::to_string(&Request::Flows(want.clone())).unwrap();
        assert_eq!(sent, r#"{"cmd":"flows","guest":"a","port":53,"kill":false}"#);
        assert_eq!(Request::parse(&sent), Ok(Request::Flows(want)));
        assert_eq!(Request::parse(r#"{"cmd":"flows"}"#), Ok(Request::Flows(FlowsRequest::default())));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        for (line, why) in [
            ("", "not a JSON object"),
            ("[1]", "must be a JSON object"),
            (r#"{"x":1}"#, "names no command"),
            (r#"{"cmd":"frobnicate"}"#, "unknown command"),
            (r#"{"cmd":5}"#, "invalid type"),
            (r#"{"cmd":"flows","guest":5}"#, "`guest` must be a string"),
            (r#"{"cmd":"flows","kill":"true"}"#, "`kill` must be true or false"),
            (r#"{"cmd":"flows","port":70000}"#, "`port` must be a number from 0 to 65535"),
            (r#"{"cmd":"flows","port":-1}"#, "`port` must be a number"),
        ] {
            let e = Request::parse(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }

    #[test]
    fn replies_carry_ok_error_and_their_fields() {
        let v = serde_json::to_value(Reply::error("no")).unwrap();
        assert_eq!(v, serde_json::json!({"ok": false, "error": "no"}));
        let v = serde_json::to_value(Reply::ok(Body::Ping(PingReply { round_trip_ms: 1.5 }))).unwrap();
        assert_eq!(v, serde_json::json!({"ok": true, "round_trip_ms": 1.5}));
        let (_, back) = decode::<PingReply>(&v.to_string()).unwrap();
        assert!(back.ok && back.body.round_trip_ms == 1.5);
    }
}
