//! Client connections: one task per client ([`session`]), the statement facts it needs before
//! routing ([`classify`], built on [`crate::lex`]), the registry of live sessions ([`registry`]), and
//! what the proxy answers about a statement it ran on several shards ([`diagnostics`]).

pub mod audit;
pub mod classify;
pub mod column_list;
pub mod diagnostics;
pub mod login_guard;
pub mod privileges;
pub mod processlist;
pub mod proxy_vars;
pub mod registry;
pub mod rewrite;
pub mod rsa_key;
pub mod session;
pub mod tls;
