//! Embedding providers for semantic search: all-MiniLM-L6-v2 run in-process
//! (candle's CPU backend, the `tokenizers` crate), or an OpenAI-compatible
//! remote endpoint (`POST {model, input:[..]}` → `{data:[{embedding:[..]}]}`).
//!
//! The local model is BERT with 6 layers and 384 dimensions; a sentence's
//! embedding is the mean of its token states (padding masked out),
//! L2-normalized — what sentence-transformers computes for this model, to
//! 1e-4 (`tests/fixtures/minilm_reference.json`).
//!
//! Tokens are counted with the model's tokenizer when a model directory is
//! configured (chunk sizes, the context budget); with only a remote
//! provider they are counted as whitespace-separated words.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

pub use crate::config::EmbeddingSettings;
use crate::config::Secret;

/// The name the local model reports.
pub const LOCAL_MODEL: &str = "all-MiniLM-L6-v2";
/// The longest input the local model reads, special tokens included.
pub const MAX_SEQUENCE: usize = 256;
/// Texts embedded in one forward pass.
const BATCH: usize = 16;

/// Why texts could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The remote provider could not be reached or answered an error (502).
    #[error("embedding provider unreachable: {0}")]
    Unreachable(String),
    /// The remote provider took longer than the timeout (504).
    #[error("embedding provider timed out")]
    Timeout,
    /// The model could not be loaded or run, or answered nonsense.
    #[error("embedding failed: {0}")]
    Failed(String),
}

fn failed(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Failed(e.to_string())
}

/// all-MiniLM-L6-v2 in this process.
pub struct MiniLm {
    model: BertModel,
    /// Pads a batch to its longest text and truncates at [`MAX_SEQUENCE`].
    tokenizer: Tokenizer,
    device: Device,
}

impl MiniLm {
    /// Loads `model.safetensors`, `config.json` and `tokenizer.json`.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let device = Device::Cpu;
        let config: BertConfig = serde_json::from_slice(
            &std::fs::read(dir.join("config.json"))
                .map_err(|e| failed(format!("{}: {e}", dir.join("config.json").display())))?,
        )
        .map_err(failed)?;
        let weights = candle_core::safetensors::load(dir.join("model.safetensors"), &device)
            .map_err(|e| failed(format!("model.safetensors: {e}")))?;
        let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
        let model = BertModel::load(vb, &config).map_err(failed)?;
        let mut tokenizer = load_tokenizer(dir)?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_SEQUENCE,
                ..Default::default()
            }))
            .map_err(failed)?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        Ok(Self {
            model,
            tokenizer,
            device,
        })
    }

    /// The embedding size.
    pub fn dimensions(&self) -> usize {
        384
    }

    /// Embeds texts (blocking CPU work): mean pooling, L2-normalized.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for part in texts.chunks(BATCH) {
            out.extend(self.embed_batch(part)?);
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self.tokenizer.encode_batch(inputs, true).map_err(failed)?;
        let rows = encodings.len();
        let Some(width) = encodings.first().map(|e| e.get_ids().len()) else {
            return Ok(Vec::new());
        };
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (rows, width), &self.device).map_err(failed)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device).map_err(failed)?;
        let types = ids.zeros_like().map_err(failed)?;
        let states = self
            .model
            .forward(&ids, &types, Some(&mask))
            .map_err(failed)?;
        // Mean over the real tokens: sum(h * mask) / sum(mask).
        let m = mask
            .to_dtype(DType::F32)
            .and_then(|m| m.unsqueeze(2))
            .map_err(failed)?;
        let summed = states
            .broadcast_mul(&m)
            .and_then(|x| x.sum(1))
            .map_err(failed)?;
        let counts = m
            .sum(1)
            .and_then(|c| c.clamp(1e-9, f32::MAX))
            .map_err(failed)?;
        let mean = summed.broadcast_div(&counts).map_err(failed)?;
        let mut vectors: Vec<Vec<f32>> = mean.to_vec2().map_err(failed)?;
        for v in &mut vectors {
            normalize(v);
        }
        Ok(vectors)
    }
}

fn load_tokenizer(dir: &Path) -> Result<Tokenizer, EmbedError> {
    Tokenizer::from_file(dir.join("tokenizer.json"))
        .map_err(|e| failed(format!("tokenizer.json: {e}")))
}

/// The tokenizer as a counter: whole texts, no padding.
fn counting_tokenizer(dir: &Path) -> Result<Tokenizer, EmbedError> {
    let mut t = load_tokenizer(dir)?;
    t.with_truncation(None).map_err(failed)?;
    t.with_padding(None);
    Ok(t)
}

/// Scales a vector to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 1e-12 {
        for x in v {
            *x /= norm;
        }
    }
}

/// Counts tokens and finds their places in a text.
#[derive(Clone)]
pub enum TokenCounter {
    /// The model's WordPiece tokenizer (no special tokens, no truncation).
    Model(Arc<Tokenizer>),
    /// Whitespace-separated words (no local model configured).
    Words,
}

impl TokenCounter {
    /// Byte ranges of the tokens of `text`, in order.
    pub fn spans(&self, text: &str) -> Vec<(usize, usize)> {
        match self {
            TokenCounter::Model(t) => match t.encode(text, false) {
                Ok(e) => {
                    let mut out: Vec<(usize, usize)> = e
                        .get_offsets()
                        .iter()
                        .copied()
                        .filter(|(a, b)| b > a && *b <= text.len())
                        .collect();
                    out.dedup();
                    out
                }
                Err(_) => word_spans(text),
            },
            TokenCounter::Words => word_spans(text),
        }
    }

    /// How many tokens `text` is.
    pub fn count(&self, text: &str) -> usize {
        match self {
            TokenCounter::Model(t) => t
                .encode(text, false)
                .map(|e| e.get_ids().len())
                .unwrap_or_else(|_| word_spans(text).len()),
            TokenCounter::Words => word_spans(text).len(),
        }
    }
}

/// Byte ranges of the whitespace-separated words of `text`.
pub fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

/// The OpenAI-compatible remote endpoint.
struct Remote {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<Secret>,
    timeout: Duration,
}

#[derive(serde::Deserialize)]
struct RemoteAnswer {
    data: Vec<RemoteItem>,
}

#[derive(serde::Deserialize)]
struct RemoteItem {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

impl Remote {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let call = async {
            let mut req = self
                .client
                .post(&self.url)
                .json(&serde_json::json!({"model": self.model, "input": texts}));
            if let Some(k) = &self.api_key {
                req = req.bearer_auth(k.expose());
            }
            let resp = req.send().await.map_err(remote_error)?;
            let status = resp.status();
            if !status.is_success() {
                return Err(EmbedError::Unreachable(format!(
                    "the embedding endpoint answered {status}"
                )));
            }
            resp.json::<RemoteAnswer>().await.map_err(remote_error)
        };
        let answer = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| EmbedError::Timeout)??;
        if answer.data.len() != texts.len() {
            return Err(EmbedError::Unreachable(format!(
                "the embedding endpoint answered {} vectors for {} inputs",
                answer.data.len(),
                texts.len()
            )));
        }
        let mut items = answer.data;
        if items.iter().all(|i| i.index.is_some()) {
            items.sort_by_key(|i| i.index);
        }
        Ok(items
            .into_iter()
            .map(|i| {
                let mut v = i.embedding;
                normalize(&mut v);
                v
            })
            .collect())
    }
}

fn remote_error(e: reqwest::Error) -> EmbedError {
    if e.is_timeout() {
        EmbedError::Timeout
    } else {
        EmbedError::Unreachable(e.to_string())
    }
}

enum Provider {
    Local(Arc<MiniLm>),
    Remote(Remote),
}

/// The configured provider and the token counter that goes with it.
pub struct Embedder {
    provider: Provider,
    tokens: TokenCounter,
    /// Learned from the first remote answer.
    remote_dims: parking_lot::Mutex<Option<usize>>,
}

impl Embedder {
    /// The provider the settings name, `None` when none is configured.
    pub fn open(s: &EmbeddingSettings) -> Result<Option<Arc<Embedder>>, EmbedError> {
        if let Some(url) = &s.url {
            let tokens = match &s.model_dir {
                Some(d) => TokenCounter::Model(Arc::new(counting_tokenizer(d)?)),
                None => TokenCounter::Words,
            };
            let client = reqwest::Client::builder()
                .connect_timeout(s.timeout)
                .build()
                .map_err(failed)?;
            return Ok(Some(Arc::new(Embedder {
                provider: Provider::Remote(Remote {
                    client,
                    url: url.clone(),
                    model: s.model.clone().unwrap_or_else(|| LOCAL_MODEL.to_owned()),
                    api_key: s.api_key.clone(),
                    timeout: s.timeout,
                }),
                tokens,
                remote_dims: parking_lot::Mutex::new(None),
            })));
        }
        let Some(dir) = &s.model_dir else {
            return Ok(None);
        };
        Ok(Some(Arc::new(Self::local(MiniLm::load(dir)?, dir)?)))
    }

    fn local(model: MiniLm, dir: &Path) -> Result<Embedder, EmbedError> {
        Ok(Embedder {
            provider: Provider::Local(Arc::new(model)),
            tokens: TokenCounter::Model(Arc::new(counting_tokenizer(dir)?)),
            remote_dims: parking_lot::Mutex::new(None),
        })
    }

    /// `local` or `remote`.
    pub fn provider(&self) -> &'static str {
        match self.provider {
            Provider::Local(_) => "local",
            Provider::Remote(_) => "remote",
        }
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        match &self.provider {
            Provider::Local(_) => LOCAL_MODEL,
            Provider::Remote(r) => &r.model,
        }
    }

    /// The embedding size, once known.
    pub fn dimensions(&self) -> Option<usize> {
        match &self.provider {
            Provider::Local(m) => Some(m.dimensions()),
            Provider::Remote(_) => *self.remote_dims.lock(),
        }
    }

    /// The token counter chunking and the context budget use.
    pub fn tokens(&self) -> &TokenCounter {
        &self.tokens
    }

    /// Embeds texts: unit vectors, in order.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        match &self.provider {
            Provider::Local(m) => {
                let m = m.clone();
                tokio::task::spawn_blocking(move || m.embed(&texts))
                    .await
                    .map_err(failed)?
            }
            Provider::Remote(r) => {
                let vectors = r.embed(&texts).await?;
                let dims = vectors.first().map(Vec::len).unwrap_or(0);
                if dims == 0 || vectors.iter().any(|v| v.len() != dims) {
                    return Err(EmbedError::Unreachable(
                        "the embedding endpoint answered empty or uneven vectors".into(),
                    ));
                }
                let mut known = self.remote_dims.lock();
                match *known {
                    Some(d) if d != dims => {
                        return Err(EmbedError::Failed(format!(
                            "the embedding endpoint changed dimensions from {d} to {dims}"
                        )))
                    }
                    _ => *known = Some(dims),
                }
                Ok(vectors)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_spans_find_words() {
        let t = "  héllo  wörld\tx ";
        let spans = word_spans(t);
        let words: Vec<&str> = spans.iter().map(|(a, b)| &t[*a..*b]).collect();
        assert_eq!(words, vec!["héllo", "wörld", "x"]);
    }

    #[test]
    fn normalize_gives_unit_length() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut z = vec![0.0, 0.0];
        normalize(&mut z);
        assert_eq!(z, vec![0.0, 0.0]);
    }

    /// Our embeddings against sentence-transformers' (the fixture says how
    /// its vectors were made), to 1e-4. Needs the model (scripts/test).
    #[test]
    #[ignore = "needs SCAIDRIVE_EMBEDDING_MODEL_DIR (scripts/test installs it)"]
    fn matches_the_reference_embeddings() {
        let dir = std::env::var("SCAIDRIVE_EMBEDDING_MODEL_DIR").expect("model dir");
        let model = MiniLm::load(Path::new(&dir)).unwrap();
        let fixture: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_reference.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let items = fixture["sentences"].as_array().unwrap();
        assert!(items.len() >= 3);
        let texts: Vec<String> = items
            .iter()
            .map(|i| i["text"].as_str().unwrap().to_owned())
            .collect();
        // One batch (padding exercised) and one at a time must agree.
        let batched = model.embed(&texts).unwrap();
        for (i, item) in items.iter().enumerate() {
            let want: Vec<f32> = item["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            let single = model.embed(&texts[i..=i]).unwrap().remove(0);
            assert_eq!(want.len(), 384);
            for (got, label) in [(&batched[i], "batched"), (&single, "single")] {
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(worst <= 1e-4, "{label} '{}': off by {worst}", texts[i]);
            }
        }
    }
}
