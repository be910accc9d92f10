//! RESP2: a bounded incremental parser and an encoder.
