//! Statement classification and plans. (Being written; see issue 4.)

pub mod merge;
pub mod spec;
