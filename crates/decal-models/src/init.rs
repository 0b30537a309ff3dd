//! Layer constructors with PyTorch's initialisation, set explicitly.
//!
//! tch's defaults differ from PyTorch's (tch: kaiming-uniform with ReLU gain for weights, zero conv bias,
//! BatchNorm weight ~ U(0, 1)), so every layer of every backbone is built through these helpers.
//! seed-system.md §5: "PyTorch default" Conv2d/Linear = kaiming-uniform(a = √5), which reduces to
//! `U(−1/√fan_in, 1/√fan_in)` for the weight (gain √(2/(1+5)) · √(3/fan_in) = 1/√fan_in), and the bias
//! `U(−1/√fan_in, 1/√fan_in)`; BatchNorm weight 1, bias 0, eps 1e-5.

use tch::nn::{self, Init};

/// `U(−1/√fan_in, 1/√fan_in)`: PyTorch's default for Linear/Conv weights and biases.
pub(crate) fn torch_default_uniform(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// Options of a 2-D convolution (square kernel).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conv {
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
    pub groups: i64,
    pub bias: bool,
}

impl Conv {
    /// A bias-free, ungrouped `k×k` convolution.
    pub(crate) fn new(in_channels: i64, out_channels: i64, kernel: i64) -> Self {
        Conv {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: 0,
            groups: 1,
            bias: false,
        }
    }
    pub(crate) fn stride(mut self, stride: i64) -> Self {
        self.stride = stride;
        self
    }
    pub(crate) fn padding(mut self, padding: i64) -> Self {
        self.padding = padding;
        self
    }
    pub(crate) fn groups(mut self, groups: i64) -> Self {
        self.groups = groups;
        self
    }
    pub(crate) fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Weight init of PyTorch's `nn.Conv2d` (fan_in = in/groups · k²).
    pub(crate) fn build(self, p: nn::Path) -> nn::Conv2D {
        let fan_in = self.in_channels / self.groups * self.kernel * self.kernel;
        self.build_with(p, torch_default_uniform(fan_in))
    }

    /// As [`Conv::build`] with an explicit weight init (the bias, if any, keeps PyTorch's default).
    pub(crate) fn build_with(self, p: nn::Path, ws_init: Init) -> nn::Conv2D {
        let fan_in = self.in_channels / self.groups * self.kernel * self.kernel;
        self.build_full(p, ws_init, torch_default_uniform(fan_in))
    }

    /// As [`Conv::build`] with explicit weight and bias inits.
    pub(crate) fn build_full(self, p: nn::Path, ws_init: Init, bs_init: Init) -> nn::Conv2D {
        let config = nn::ConvConfig {
            stride: self.stride,
            padding: self.padding,
            groups: self.groups,
            bias: self.bias,
            ws_init,
            bs_init,
            ..Default::default()
        };
        nn::conv2d(p, self.in_channels, self.out_channels, self.kernel, config)
    }
}

/// PyTorch's `nn.Linear(in, out)`: weight and bias `U(−1/√in, 1/√in)`.
pub(crate) fn linear(p: nn::Path, in_dim: i64, out_dim: i64) -> nn::Linear {
    let init = torch_default_uniform(in_dim);
    nn::linear(
        p,
        in_dim,
        out_dim,
        nn::LinearConfig {
            ws_init: init,
            bs_init: Some(init),
            bias: true,
        },
    )
}

/// `nn.Linear` with explicit weight and bias inits (WRN: zero bias; ViT: N(0, 0.02²) weights).
pub(crate) fn linear_with(
    p: nn::Path,
    in_dim: i64,
    out_dim: i64,
    ws_init: Init,
    bs_init: Init,
) -> nn::Linear {
    nn::linear(
        p,
        in_dim,
        out_dim,
        nn::LinearConfig {
            ws_init,
            bs_init: Some(bs_init),
            bias: true,
        },
    )
}

/// PyTorch's `nn.BatchNorm2d(c, momentum)`: weight 1, bias 0, eps 1e-5, running mean 0 / var 1.
/// `momentum` uses PyTorch's convention (`running = (1 − m)·running + m·batch`), as libtorch does.
pub(crate) fn batch_norm2d(p: nn::Path, channels: i64, momentum: f64) -> nn::BatchNorm {
    nn::batch_norm2d(
        p,
        channels,
        nn::BatchNormConfig {
            momentum,
            eps: 1e-5,
            ws_init: Init::Const(1.0),
            bs_init: Init::Const(0.0),
            ..Default::default()
        },
    )
}

/// PyTorch's `nn.LayerNorm(d, eps)`: weight 1, bias 0.
pub(crate) fn layer_norm(p: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(
        p,
        vec![dim],
        nn::LayerNormConfig {
            eps,
            elementwise_affine: true,
            ws_init: Init::Const(1.0),
            bs_init: Init::Const(0.0),
            ..Default::default()
        },
    )
}

/// `[N, C, H, W] → [N, C]`: `F.adaptive_avg_pool2d(x, 1)` followed by a flatten.
pub(crate) fn global_avg_pool(xs: &tch::Tensor) -> tch::Tensor {
    xs.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
}
