//! Why a request was not answered, in terms each front end maps to its own
//! status (an HTTP code in [`super::http`], a gRPC code in [`super::grpc`]):
//! what model lookup ([`super::infer`], [`super::kept`]) and inference fail with.

/// Why a request was not answered with logits, and the message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No such model or version (404, NOT_FOUND).
    NotFound(String),
    /// Not loaded yet, queue full, shutting down (503, UNAVAILABLE).
    Unavailable(String),
    /// The request does not fit the model (400, INVALID_ARGUMENT).
    Invalid(String),
    /// The inference thread failed (500, INTERNAL).
    Internal(String),
}
