//! The ranges an architecture and a recipe must stay in (checked by
//! `validate`). Wide enough for any model this trainer is for (MNIST-sized
//! images on one machine); narrow enough that nothing out of them reaches
//! libtorch, where a bad value is a C++ exception or worse.

/// Epochs of one trial (also `--epochs`).
pub const MAX_EPOCHS: u32 = 10_000;
/// Mini-batch size (also `--batch-size`).
pub const MAX_BATCH: i64 = 65_536;
/// Convolution kernel side.
pub const MAX_KERNEL: i64 = 31;
/// Convolutions in one block.
pub const MAX_CONVS: i64 = 8;
/// Convolution blocks of a CNN.
pub const MAX_BLOCKS: usize = 16;
/// Fully connected layers (MLP hidden layers, CNN head).
pub const MAX_LAYERS: usize = 16;
/// Channels of a convolution, units of a fully connected layer.
pub const MAX_WIDTH: i64 = 65_536;
/// Shift augmentation, in pixels.
pub const MAX_SHIFT: i64 = 16;
/// Trainable parameters of a model (400 MB of float32 weights, 3x that with
/// optimizer state).
pub const MAX_PARAMETERS: u64 = 100_000_000;
/// Activation values one training batch may keep for the backward pass
/// (2^31: 8 GiB of float32, and the most one libtorch CPU kernel indexes
/// safely).
pub const MAX_BATCH_ACTIVATIONS: u64 = 1 << 31;

/// Images in one inference forward pass (`predict`, and the largest batch
/// the exported Triton model declares).
pub const INFERENCE_BATCH: usize = 256;
