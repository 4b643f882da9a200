//! Client connections: one task per client ([`session`]), the statement facts it needs before
//! routing ([`classify`], built on [`lex`]).

pub mod classify;
pub mod lex;
