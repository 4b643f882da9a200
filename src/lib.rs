//! shardproxy: a sharding proxy that speaks the MySQL wire protocol.
//!
//! The path of one query (see `docs/architecture.md`):
//! [`frontend`] reads a client packet with the [`protocol`] codec, classifies the statement
//! ([`plan`]), takes a connection from the [`backend`] pool of the shard that the [`ring`] names,
//! and relays the backend's answer packets to the client untouched. Statements that span shards
//! are planned by [`plan`] primitives and run by the multi-shard executor ([`exec`]), which
//! merges the shards' answers exactly as one server would.

pub mod admin;
pub mod backend;
pub mod config;
pub mod exec;
pub mod frontend;
pub mod http;
pub mod lex;
pub mod metrics;
pub mod plan;
pub mod protocol;
pub mod proxy;
pub mod ring;
pub mod sequence;
pub mod server;
pub mod session_state;
pub mod workers;
