//! Our own MySQL wire-protocol codec.
