//! Vision Transformer in the Hugging Face `ViTModel` layout (seed-system.md §5.5).
//!
//! Patch embedding (a `patch×patch` conv with stride `patch`) → prepend the class token → add learned position
//! embeddings → `num_layers` pre-LayerNorm encoder layers (multi-head self-attention with q/k/v biases, exact
//! erf-GELU MLP) → final LayerNorm; the body's output is the class token of the final hidden state
//! (F = hidden size, 768 for ViT-B/16) — exactly what `ViTForImageClassification` feeds its classifier and what
//! the seed's `ViTBody` returns. LayerNorm eps 1e-12 (HF default).
//!
//! Variable names equal `ViTForImageClassification`'s state_dict keys: `vit.embeddings.{cls_token,
//! position_embeddings, patch_embeddings.projection.*}`, `vit.encoder.layer.{i}.{layernorm_before,
//! attention.attention.{query,key,value}, attention.output.dense, layernorm_after, intermediate.dense,
//! output.dense}.*`, `vit.layernorm.*`, `classifier.*`. Fresh initialisation follows HF's `_init_weights`:
//! weights and embeddings N(0, 0.02²) (HF truncates at ±2, i.e. ±100 σ, so the truncation never applies),
//! biases 0, LayerNorm 1/0.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use crate::init::{layer_norm, linear_with, Conv};
use crate::{Backbone, ModelError};

/// HF's `initializer_range`.
pub const VIT_INIT_STD: f64 = 0.02;

/// Configuration of a ViT (names follow HF's `ViTConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// Input side length in pixels; must be a multiple of `patch_size`.
    pub image_size: i64,
    /// Patch side length in pixels.
    pub patch_size: i64,
    /// Input channels.
    pub num_channels: i64,
    /// Hidden size d (= F).
    pub hidden_size: i64,
    /// Number of encoder layers.
    pub num_hidden_layers: i64,
    /// Attention heads; must divide `hidden_size`.
    pub num_attention_heads: i64,
    /// Width of the MLP in each layer.
    pub intermediate_size: i64,
    /// LayerNorm epsilon (1e-12 in HF ViT).
    pub layer_norm_eps: f64,
    /// Dropout on embeddings and sub-layer outputs (train mode only); 0.0 for the in21k checkpoints.
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (train mode only); 0.0 for the in21k checkpoints.
    pub attention_probs_dropout_prob: f64,
    /// K, the width of `classifier`.
    pub num_classes: i64,
}

impl VitConfig {
    /// ViT-B/16 at 224×224 (`google/vit-base-patch16-224-in21k`): 12 layers, d = 768, 12 heads, MLP 3072.
    pub fn b16(num_classes: i64) -> Self {
        VitConfig {
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            num_classes,
        }
    }

    /// A ViT-Tiny-shaped model for 32×32 images on CPU: patch 4 (64 patches), d = 192, 12 layers, 3 heads, MLP 768.
    pub fn tiny_32(num_classes: i64) -> Self {
        VitConfig {
            image_size: 32,
            patch_size: 4,
            hidden_size: 192,
            num_attention_heads: 3,
            intermediate_size: 768,
            ..Self::b16(num_classes)
        }
    }

    /// Number of patches per image.
    pub fn num_patches(&self) -> i64 {
        (self.image_size / self.patch_size).pow(2)
    }

    /// F = hidden size.
    pub fn feature_dim(&self) -> i64 {
        self.hidden_size
    }

    /// Checks divisibility and ranges.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |p: String| Err(ModelError::invalid("vit", p));
        if self.patch_size < 1
            || self.image_size < self.patch_size
            || self.image_size % self.patch_size != 0
        {
            return bad(format!(
                "image_size {} must be a positive multiple of patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        if self.num_attention_heads < 1 || self.hidden_size % self.num_attention_heads != 0 {
            return bad(format!(
                "hidden_size {} must be divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.num_hidden_layers < 1
            || self.intermediate_size < 1
            || self.num_channels < 1
            || self.num_classes < 1
        {
            return bad(
                "num_hidden_layers, intermediate_size, num_channels and num_classes must be >= 1"
                    .into(),
            );
        }
        if !(0.0..1.0).contains(&self.hidden_dropout_prob)
            || !(0.0..1.0).contains(&self.attention_probs_dropout_prob)
        {
            return bad("dropout probabilities must lie in [0, 1)".into());
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return bad("layer_norm_eps must be > 0".into());
        }
        Ok(())
    }

    /// Registers the body's variables under `vs / "vit"`.
    pub fn build_body(&self, vs: &nn::Path) -> Vit {
        let vit = vs / "vit";
        let emb = &vit / "embeddings";
        let d = self.hidden_size;
        let w_init = Init::Randn {
            mean: 0.0,
            stdev: VIT_INIT_STD,
        };
        let lin = |p: nn::Path, i, o| linear_with(p, i, o, w_init, Init::Const(0.0));
        let patch = Conv::new(self.num_channels, d, self.patch_size)
            .stride(self.patch_size)
            .bias(true)
            .build_full(
                &emb / "patch_embeddings" / "projection",
                w_init,
                Init::Const(0.0),
            );
        let cls_token = emb.var("cls_token", &[1, 1, d], w_init);
        let position_embeddings = emb.var(
            "position_embeddings",
            &[1, self.num_patches() + 1, d],
            w_init,
        );
        let layers = (0..self.num_hidden_layers)
            .map(|i| {
                let l = &vit / "encoder" / "layer" / i;
                let att = &l / "attention";
                EncoderLayer {
                    layernorm_before: layer_norm(&l / "layernorm_before", d, self.layer_norm_eps),
                    query: lin(&att / "attention" / "query", d, d),
                    key: lin(&att / "attention" / "key", d, d),
                    value: lin(&att / "attention" / "value", d, d),
                    attn_out: lin(&att / "output" / "dense", d, d),
                    layernorm_after: layer_norm(&l / "layernorm_after", d, self.layer_norm_eps),
                    intermediate: lin(&l / "intermediate" / "dense", d, self.intermediate_size),
                    output: lin(&l / "output" / "dense", self.intermediate_size, d),
                    num_heads: self.num_attention_heads,
                    hidden_dropout: self.hidden_dropout_prob,
                    attention_dropout: self.attention_probs_dropout_prob,
                }
            })
            .collect();
        Vit {
            patch,
            cls_token,
            position_embeddings,
            layers,
            layernorm: layer_norm(&vit / "layernorm", d, self.layer_norm_eps),
            hidden_dropout: self.hidden_dropout_prob,
            image_size: self.image_size,
            hidden_size: d,
        }
    }
}

/// One pre-LayerNorm transformer layer (`ViTLayer`).
#[derive(Debug)]
struct EncoderLayer {
    layernorm_before: nn::LayerNorm,
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    attn_out: nn::Linear,
    layernorm_after: nn::LayerNorm,
    intermediate: nn::Linear,
    output: nn::Linear,
    num_heads: i64,
    hidden_dropout: f64,
    attention_dropout: f64,
}

impl EncoderLayer {
    /// `x`: `[N, T, d]` → `[N, T, d]`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (n, t, d) = x.size3().expect("encoder input should be [N, T, d]");
        let head_dim = d / self.num_heads;
        let h = x.apply_t(&self.layernorm_before, train);
        // [N, T, d] → [N, heads, T, head_dim]
        let split = |y: Tensor| y.view([n, t, self.num_heads, head_dim]).transpose(1, 2);
        let q = split(h.apply_t(&self.query, train));
        let k = split(h.apply_t(&self.key, train));
        let v = split(h.apply_t(&self.value, train));
        let scores = q.matmul(&k.transpose(-1, -2)) / (head_dim as f64).sqrt(); // [N, heads, T, T]
        let probs = scores
            .softmax(-1, Kind::Float)
            .to_kind(x.kind())
            .dropout(self.attention_dropout, train);
        let context = probs
            .matmul(&v)
            .transpose(1, 2)
            .contiguous()
            .view([n, t, d]);
        let x = x + context
            .apply_t(&self.attn_out, train)
            .dropout(self.hidden_dropout, train);
        let h = x
            .apply_t(&self.layernorm_after, train)
            .apply_t(&self.intermediate, train)
            .gelu("none");
        &x + h
            .apply_t(&self.output, train)
            .dropout(self.hidden_dropout, train)
    }
}

/// The ViT body (`ViTModel` without pooler): returns the final-LayerNorm class token.
#[derive(Debug)]
pub struct Vit {
    patch: nn::Conv2D,
    cls_token: Tensor,
    position_embeddings: Tensor,
    layers: Vec<EncoderLayer>,
    layernorm: nn::LayerNorm,
    hidden_dropout: f64,
    image_size: i64,
    hidden_size: i64,
}

impl Vit {
    /// Input side length the position embeddings were built for.
    pub fn image_size(&self) -> i64 {
        self.image_size
    }
}

impl Backbone for Vit {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let n = xs.size()[0];
        // [N, C, H, W] → [N, d, H/p, W/p] → [N, P, d]
        let patches = xs
            .apply_t(&self.patch, train)
            .flatten(2, -1)
            .transpose(1, 2);
        let cls = self.cls_token.expand([n, 1, self.hidden_size], false);
        let mut h = (Tensor::cat(&[cls, patches], 1) + &self.position_embeddings)
            .dropout(self.hidden_dropout, train);
        for layer in &self.layers {
            h = layer.forward_t(&h, train);
        }
        h.apply_t(&self.layernorm, train).select(1, 0)
    }

    fn feature_dim(&self) -> i64 {
        self.hidden_size
    }
}
