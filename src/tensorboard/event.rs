//! The slice of TensorBoard's `Event` protobuf (tensorflow/core/util/event.proto
//! and summary.proto) that scalar logging needs, as prost-derived structs:
//! field numbers and types as in the `.proto`, so the bytes are the ones
//! TensorBoard's own reader decodes. Unknown fields are skipped on decode.

/// `Event`: one record of an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global optimizer step the values belong to.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// The `what` oneof: a file's first record names the format, the others carry a summary.
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

/// `Event.what`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// `brain.Event:2` in the first record of every file.
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `Summary`: the values of one step.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

/// `Summary.Value` with the `simple_value` member of its oneof: a scalar.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(string, tag = "1")]
    pub tag: String,
    /// Optional so that 0.0 is still written (it is a oneof member in the `.proto`).
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

/// The format named in a file's first record.
pub const FILE_VERSION: &str = "brain.Event:2";

impl Event {
    /// The first record of a file.
    pub fn header(wall_time: f64) -> Event {
        Event {
            wall_time,
            step: 0,
            what: Some(What::FileVersion(FILE_VERSION.into())),
        }
    }

    /// One scalar at `step`.
    pub fn scalar(wall_time: f64, step: i64, tag: &str, value: f32) -> Event {
        Event {
            wall_time,
            step,
            what: Some(What::Summary(Summary {
                value: vec![Value {
                    tag: tag.into(),
                    simple_value: Some(value),
                }],
            })),
        }
    }

    /// The tags of the scalars this event carries.
    pub fn scalar_tags(&self) -> impl Iterator<Item = &str> {
        let values = match &self.what {
            Some(What::Summary(s)) => s.value.as_slice(),
            _ => &[],
        };
        values
            .iter()
            .filter(|v| v.simple_value.is_some())
            .map(|v| v.tag.as_str())
    }
}
