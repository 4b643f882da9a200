//! Client connections and their sessions.
