//! Our own MySQL wire-protocol codec on tokio + bytes.
//!
//! opensrv-mysql cannot relay real backend answers faithfully (charsets, status flags, warning
//! counts), so the data path speaks the protocol itself. Each submodule owns one layer:
//! [`packet`] framing, [`buf`] the primitive types, [`constants`] the protocol's numbers,
//! [`packets`] OK/ERR/EOF, [`handshake`] the connection phase, [`auth`] the password
//! scrambles, [`response`] where a backend's answer ends, [`resultset`] column definitions
//! and rows as values, [`stream`] the byte stream under them (clear text or TLS).

pub mod auth;
pub mod binary;
pub mod buf;
pub mod constants;
pub mod handshake;
pub mod packet;
pub mod packets;
pub mod response;
pub mod resultset;
pub mod session_track;
pub mod stream;
