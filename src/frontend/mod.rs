//! Client connections: one task per client ([`session`]), the statement facts it needs before
//! routing ([`classify`], built on [`lex`]), the registry of live sessions ([`registry`]).

pub mod classify;
pub mod lex;
pub mod registry;
pub mod rewrite;
pub mod rsa_key;
pub mod session;
