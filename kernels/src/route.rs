//! Getting flex primitives out of `Tensor<D>` and back: the only place that knows how burn's
//! runtime dispatch represents a flex tensor, plain or tracked by autodiff.

use burn::tensor::{DType, Device, Tensor, TensorData};
use burn_autodiff::Autodiff;
use burn_backend::tensor::FloatTensor;
use burn_dispatch::{DispatchDevice, GradientCheckpointingStrategy};
use burn_flex::{Flex, FlexTensor};

/// Autodiff over flex, without gradient checkpointing: the tracked primitive's backend.
pub(crate) type FlexAutodiff = Autodiff<Flex>;
/// A flex float tensor tracked by autodiff.
pub(crate) type Tracked = FloatTensor<FlexAutodiff>;

/// How a fused operation runs for a given device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Plain flex: call the kernel.
    Plain,
    /// Flex under autodiff (no checkpointing): call the kernel and record its backward.
    Tracked,
}

/// The route for f32 tensors on `device`, or `None` for burn's own composition: another
/// backend, gradient checkpointing, another dtype, or fused kernels switched off.
pub(crate) fn route(device: &Device, dtype: DType) -> Option<Route> {
    if dtype != DType::F32 || !crate::fused_enabled() {
        return None;
    }
    match device.as_dispatch() {
        DispatchDevice::Flex(_) => Some(Route::Plain),
        DispatchDevice::Autodiff(inner)
            if inner.gradient_checkpointing_strategy()
                == GradientCheckpointingStrategy::Disabled
                && matches!(**inner, DispatchDevice::Flex(_)) =>
        {
            Some(Route::Tracked)
        }
        _ => None,
    }
}

/// The flex primitive of a tensor whose route is [`Route::Plain`].
pub(crate) fn plain<const D: usize>(tensor: Tensor<D>) -> FlexTensor {
    tensor
        .try_into_primitive::<Flex>()
        .expect("route() said plain flex")
}

/// The tracked primitive of a tensor whose route is [`Route::Tracked`].
pub(crate) fn tracked<const D: usize>(tensor: Tensor<D>) -> Tracked {
    tensor
        .try_into_primitive::<FlexAutodiff>()
        .expect("route() said autodiff over flex")
}

/// A plain flex tensor back into the tensor API.
pub(crate) fn from_plain<const D: usize>(tensor: FlexTensor) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(tensor)
}

/// A tracked tensor back into the tensor API.
pub(crate) fn from_tracked<const D: usize>(tensor: Tracked) -> Tensor<D> {
    Tensor::from_primitive::<FlexAutodiff>(tensor)
}

/// The tensor with its elements in row-major order at offset 0 (copied only when needed).
pub(crate) fn contiguous(tensor: FlexTensor) -> FlexTensor {
    if tensor.as_slice::<f32>().is_some() && tensor.bytes().len() == 4 * num_elements(&tensor) {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

/// The f32 values of a tensor made by [`contiguous`].
pub(crate) fn values(tensor: &FlexTensor) -> &[f32] {
    tensor.as_slice::<f32>().expect("a contiguous f32 tensor")
}

fn num_elements(tensor: &FlexTensor) -> usize {
    tensor.layout().shape().num_elements()
}

/// A new contiguous f32 flex tensor owning `values`.
pub(crate) fn new_tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}
