//! Our own MySQL wire-protocol codec on tokio + bytes.
//!
//! opensrv-mysql cannot relay real backend answers faithfully (charsets, status flags, warning
//! counts), so the data path speaks the protocol itself. Each submodule owns one layer:
//! [`buf`] the primitive types, [`resultset`] column definitions and rows as values.

pub mod buf;
pub mod resultset;
