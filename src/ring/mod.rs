//! Placement: which shard holds a key. (Being written; see issue 4.)
