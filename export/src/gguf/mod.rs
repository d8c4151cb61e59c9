//! The GGUF v3 container: [`Writer`], [`Reader`], typed metadata values, the name tables
//! and an [`inspect()`] summary ([GGUF spec]).
//!
//! [GGUF spec]: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md

pub mod inspect;
pub mod names;
pub mod reader;
pub mod value;
pub mod writer;

pub use inspect::{Summary, inspect};
pub use names::TensorName;
pub use reader::Reader;
pub use value::{Array, Value, ValueType};
pub use writer::{Progress, TensorInfo, WriteOptions, WriteReport, Writer};
