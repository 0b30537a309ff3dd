//! Mixed-precision training: autocast on the CPU and CUDA, and dynamic loss scaling for float16.
//!
//! [`Precision`] names what a stage-1 run trains in:
//! - `fp32` (default, the seed's Lightning `precision=32`): float32 everywhere.
//! - `bf16`: the training forward pass runs under libtorch autocast with bfloat16 (convolutions and matrix
//!   products in bf16, reductions and normalisation statistics in float32, as libtorch's autocast op lists
//!   say). Parameters, gradients and optimiser moments stay float32. bf16 has float32's exponent range, so
//!   no loss scaling is needed. On CPUs with AMX/AVX-512-BF16 this is the fast option (measured on this
//!   project's 2-core Sapphire Rapids machine: a small convnet step 0.59 s → 0.22 s in PyTorch 2.11).
//! - `fp16`: autocast with float16 plus dynamic loss scaling ([`GradScaler`], PyTorch's
//!   `torch.amp.GradScaler` algorithm and defaults). Meant for CUDA; libtorch 2.11 has no fast float16
//!   CPU convolution kernels (the same convnet step took over 100 s), so the CLI refuses fp16 on the CPU
//!   ([`Precision::check_device`]) while the library allows it so tests exercise the CUDA code path.
//!
//! Only the training forward pass is autocast. The loss is computed in float32 from float32-cast logits;
//! validation (checkpoint selection) and every evaluation run in float32.
//!
//! # Autocast on the CPU
//! tch 0.24 only exposes the deprecated CUDA-only `at::autocast::set_enabled`. The device-typed functions of
//! libtorch 2.11 (`at::autocast::set_autocast_enabled(DeviceType, bool)` and friends, exported from
//! `libtorch_cpu`) take only `int8`-backed enums and `bool`, which the x86-64 and AArch64 C++ ABIs pass
//! exactly like the C types, so they are declared here by their mangled names. The link fails loudly if a
//! different libtorch lacks them; `autocast_state_round_trips` and `bf16_autocast_changes_conv_dtype` pin
//! the behaviour.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// What the training forward pass computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// float32 everywhere (the seed's `precision=32`).
    #[default]
    Fp32,
    /// bfloat16 autocast, float32 parameters and optimiser state, no loss scaling.
    Bf16,
    /// float16 autocast with dynamic loss scaling ([`GradScaler`]); for CUDA.
    Fp16,
}

impl Precision {
    /// Parses `fp32` / `32` / `float32`, `bf16` / `bf16-mixed` / `bfloat16`, `fp16` / `16-mixed` / `float16`
    /// (Lightning's names are accepted too).
    pub fn parse(text: &str) -> Result<Precision, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "fp32" | "32" | "float32" | "32-true" => Ok(Precision::Fp32),
            "bf16" | "bf16-mixed" | "bfloat16" => Ok(Precision::Bf16),
            "fp16" | "16" | "16-mixed" | "float16" | "half" => Ok(Precision::Fp16),
            other => Err(format!(
                "unknown precision {other:?}; known: fp32 (default), bf16, fp16"
            )),
        }
    }

    /// The config name (`fp32`, `bf16`, `fp16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }

    /// The autocast dtype, `None` for fp32.
    pub fn autocast_kind(self) -> Option<Kind> {
        match self {
            Precision::Fp32 => None,
            Precision::Bf16 => Some(Kind::BFloat16),
            Precision::Fp16 => Some(Kind::Half),
        }
    }

    /// `Some(self)` when this precision autocasts, `None` for fp32: the form records and unit ids store,
    /// so that every float32 record keeps the id it had before precisions were recorded.
    pub fn autocast(self) -> Option<Precision> {
        self.autocast_kind().map(|_| self)
    }

    /// Whether training uses a [`GradScaler`].
    pub fn uses_loss_scaling(self) -> bool {
        self == Precision::Fp16
    }

    /// Refuses combinations that cannot work or would be absurdly slow: autocast on devices other than
    /// the CPU and CUDA, and fp16 on the CPU.
    pub fn check_device(self, device: Device) -> Result<(), String> {
        match (self, device) {
            (Precision::Fp32, _) => Ok(()),
            (Precision::Fp16, Device::Cpu) => Err(
                "precision fp16 on the CPU: libtorch has no fast float16 CPU convolutions (a small convnet \
                 step took over 100 s instead of 0.2 s in bf16); use --precision bf16 on the CPU and fp16 \
                 on CUDA"
                    .into(),
            ),
            (p, d) => device_type(d).map(|_| ()).map_err(|_| {
                format!(
                    "precision {} needs autocast, which decal supports on cpu and cuda, not {d:?}",
                    p.name()
                )
            }),
        }
    }

    /// One line for `provenance.json`.
    pub fn describe(self, scaler: &GradScalerConfig) -> String {
        match self {
            Precision::Fp32 => "fp32: float32 everywhere (no autocast)".into(),
            Precision::Bf16 => "bf16: bfloat16 autocast of the training forward pass; float32 parameters, \
                 gradients, optimiser state, loss, validation and evaluation"
                .into(),
            Precision::Fp16 => format!(
                "fp16: float16 autocast of the training forward pass with dynamic loss scaling (initial \
                 scale {}, x{} after {} finite steps, x{} and the step skipped on inf/NaN gradients); \
                 float32 parameters, gradients, optimiser state, loss, validation and evaluation",
                scaler.init_scale, scaler.growth_factor, scaler.growth_interval, scaler.backoff_factor
            ),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// libtorch's device-typed autocast API (see the module documentation for why it is declared here).
mod ffi {
    extern "C" {
        #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
        pub fn set_autocast_enabled(device_type: i8, enabled: bool);
        #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
        pub fn is_autocast_enabled(device_type: i8) -> bool;
        #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
        pub fn set_autocast_dtype(device_type: i8, dtype: i8);
        #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
        pub fn get_autocast_dtype(device_type: i8) -> i8;
        #[link_name = "_ZN2at8autocast17increment_nestingEv"]
        pub fn increment_nesting() -> i32;
        #[link_name = "_ZN2at8autocast17decrement_nestingEv"]
        pub fn decrement_nesting() -> i32;
        #[link_name = "_ZN2at8autocast11clear_cacheEv"]
        pub fn clear_cache();
    }
}

/// `c10::DeviceType` values (c10/core/DeviceType.h).
fn device_type(device: Device) -> Result<i8, String> {
    match device {
        Device::Cpu => Ok(0),
        Device::Cuda(_) => Ok(1),
        other => Err(format!(
            "autocast is supported on cpu and cuda, not {other:?}"
        )),
    }
}

/// `c10::ScalarType` values (c10/core/ScalarType.h) of the dtypes autocast uses.
fn scalar_type(kind: Kind) -> Result<i8, String> {
    match kind {
        Kind::Half => Ok(5),
        Kind::Float => Ok(6),
        Kind::BFloat16 => Ok(15),
        other => Err(format!(
            "autocast dtype must be float16 or bfloat16, not {other:?}"
        )),
    }
}

/// While alive, ops on `device` run under autocast with the given dtype (libtorch's state is per thread;
/// the guard is neither `Send` nor `Sync`). Dropping it restores the previous state, so guards nest.
#[derive(Debug)]
pub struct Autocast {
    device_type: i8,
    prev_enabled: bool,
    prev_dtype: i8,
    _not_send: std::marker::PhantomData<*const ()>,
}

// The only unsafe code of decal-train: calls into libtorch's autocast state (module documentation).
#[allow(unsafe_code)]
impl Autocast {
    /// Enables autocast to `kind` (`Kind::BFloat16` or `Kind::Half`) on `device`'s type.
    pub fn enter(device: Device, kind: Kind) -> Result<Autocast, String> {
        let device_type = device_type(device)?;
        let dtype = scalar_type(kind)?;
        // SAFETY: plain setters/getters of libtorch's thread-local autocast state; the arguments are
        // valid enum values (checked above) and none of these functions throws.
        unsafe {
            let prev_enabled = ffi::is_autocast_enabled(device_type);
            let prev_dtype = ffi::get_autocast_dtype(device_type);
            ffi::set_autocast_dtype(device_type, dtype);
            ffi::set_autocast_enabled(device_type, true);
            ffi::increment_nesting();
            Ok(Autocast {
                device_type,
                prev_enabled,
                prev_dtype,
                _not_send: std::marker::PhantomData,
            })
        }
    }

    /// Whether autocast is enabled on `device`'s type right now.
    pub fn is_enabled(device: Device) -> bool {
        // SAFETY: see `enter`.
        device_type(device).is_ok_and(|t| unsafe { ffi::is_autocast_enabled(t) })
    }
}

#[allow(unsafe_code)]
impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: see `enter`. The weight-cast cache is cleared when the outermost guard exits, as
        // `torch.autocast.__exit__` does.
        unsafe {
            if ffi::decrement_nesting() == 0 {
                ffi::clear_cache();
            }
            ffi::set_autocast_enabled(self.device_type, self.prev_enabled);
            ffi::set_autocast_dtype(self.device_type, self.prev_dtype);
        }
    }
}

/// Runs `f` under `precision`'s autocast on `device` (directly for fp32).
pub fn with_autocast<T>(
    precision: Precision,
    device: Device,
    f: impl FnOnce() -> T,
) -> Result<T, String> {
    let _guard = match precision.autocast_kind() {
        Some(kind) => Some(Autocast::enter(device, kind)?),
        None => None,
    };
    Ok(f())
}

/// Dynamic loss-scaling parameters (defaults: `torch.amp.GradScaler`'s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradScalerConfig {
    /// Initial scale (65536 = 2¹⁶).
    pub init_scale: f64,
    /// Factor applied after `growth_interval` consecutive finite steps (2).
    pub growth_factor: f64,
    /// Factor applied when a step's gradients are not finite (0.5).
    pub backoff_factor: f64,
    /// Consecutive finite steps before growing (2000).
    pub growth_interval: u64,
}

impl Default for GradScalerConfig {
    fn default() -> Self {
        GradScalerConfig {
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }
}

/// The scaler's state, saved with the training state so a resumed run continues bit-identically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradScalerState {
    /// Current scale (a float32 value, as PyTorch keeps it).
    pub scale: f64,
    /// Consecutive finite steps since the last growth or back-off.
    pub growth_tracker: u64,
    /// Steps skipped because of non-finite gradients, whole run.
    pub skipped_steps: u64,
    /// Skipped steps in a row right now (training stops when this reaches [`MAX_CONSECUTIVE_SKIPS`]).
    pub consecutive_skips: u64,
}

/// After this many skipped steps in a row the scale has fallen 2³²-fold (from 2¹⁶ to 2⁻¹⁶, where float16
/// gradients underflow): the loss or gradients are not finite at any scale, which is divergence, not
/// overflow. (PyTorch's scaler would skip forever.)
pub const MAX_CONSECUTIVE_SKIPS: u64 = 32;

/// Dynamic loss scaling: multiply the loss by `scale` before backward, divide the gradients by it,
/// skip the optimiser step when any gradient is inf/NaN and halve the scale; double it after
/// `growth_interval` finite steps in a row (`torch.amp.GradScaler.update`).
#[derive(Debug, Clone, PartialEq)]
pub struct GradScaler {
    /// Parameters.
    pub config: GradScalerConfig,
    /// State.
    pub state: GradScalerState,
}

impl GradScaler {
    /// A scaler at its initial scale.
    pub fn new(config: GradScalerConfig) -> GradScaler {
        let scale = f64::from(config.init_scale as f32);
        GradScaler {
            config,
            state: GradScalerState {
                scale,
                growth_tracker: 0,
                skipped_steps: 0,
                consecutive_skips: 0,
            },
        }
    }

    /// Resumes from a saved state.
    pub fn from_state(config: GradScalerConfig, state: GradScalerState) -> GradScaler {
        GradScaler { config, state }
    }

    /// `loss · scale`.
    pub fn scale(&self, loss: &Tensor) -> Tensor {
        loss * self.state.scale
    }

    /// Divides every defined gradient of `params` by the scale in place and returns whether any of them
    /// holds inf or NaN (one device synchronisation for all tensors).
    pub fn unscale(&self, params: &[Tensor]) -> bool {
        // PyTorch: inv_scale = scale.double().reciprocal().float().
        let inv = f64::from((1.0 / self.state.scale) as f32);
        let mut flags = Vec::new();
        tch::no_grad(|| {
            for p in params {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = g.g_mul_scalar_(inv);
                flags.push(g.isfinite().logical_not().any());
            }
        });
        if flags.is_empty() {
            return false;
        }
        Tensor::stack(&flags, 0).any().int64_value(&[]) != 0
    }

    /// Updates the scale after a step: back off on `found_inf`, grow after `growth_interval` finite steps.
    pub fn update(&mut self, found_inf: bool) {
        let s = &mut self.state;
        if found_inf {
            s.scale = f64::from((s.scale * self.config.backoff_factor) as f32);
            s.growth_tracker = 0;
            s.skipped_steps += 1;
            s.consecutive_skips += 1;
        } else {
            s.consecutive_skips = 0;
            s.growth_tracker += 1;
            if s.growth_tracker == self.config.growth_interval {
                let grown = f64::from((s.scale * self.config.growth_factor) as f32);
                // torch: only grow while the result stays finite.
                if grown.is_finite() {
                    s.scale = grown;
                }
                s.growth_tracker = 0;
            }
        }
    }

    /// True once [`MAX_CONSECUTIVE_SKIPS`] steps in a row had non-finite gradients.
    pub fn gave_up(&self) -> bool {
        self.state.consecutive_skips >= MAX_CONSECUTIVE_SKIPS
    }

    /// True while the latest step was skipped: the weights may be the product of a bad update that only
    /// later steps reveal, so the training loop does not make them the resumable `last/` checkpoint yet.
    pub fn in_skip_streak(&self) -> bool {
        self.state.consecutive_skips > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        assert_eq!(Precision::parse("bf16-mixed").unwrap(), Precision::Bf16);
        assert_eq!(Precision::parse("16-mixed").unwrap(), Precision::Fp16);
        assert_eq!(Precision::parse(" FP32 ").unwrap(), Precision::Fp32);
        assert!(Precision::parse("fp8").unwrap_err().contains("fp8"));
        for p in [Precision::Fp32, Precision::Bf16, Precision::Fp16] {
            assert_eq!(Precision::parse(p.name()).unwrap(), p);
        }
    }

    #[test]
    fn autocast_is_none_only_for_float32() {
        assert_eq!(Precision::Fp32.autocast(), None);
        assert_eq!(Precision::Bf16.autocast(), Some(Precision::Bf16));
        assert_eq!(Precision::Fp16.autocast(), Some(Precision::Fp16));
    }

    #[test]
    fn device_checks() {
        assert!(Precision::Fp16.check_device(Device::Cpu).is_err());
        assert!(Precision::Fp16.check_device(Device::Cuda(0)).is_ok());
        assert!(Precision::Bf16.check_device(Device::Cpu).is_ok());
        assert!(Precision::Bf16.check_device(Device::Mps).is_err());
        assert!(Precision::Fp32.check_device(Device::Mps).is_ok());
    }

    #[test]
    #[allow(unsafe_code)]
    fn autocast_state_round_trips() {
        assert!(!Autocast::is_enabled(Device::Cpu));
        {
            let _outer = Autocast::enter(Device::Cpu, Kind::BFloat16).unwrap();
            assert!(Autocast::is_enabled(Device::Cpu));
            // SAFETY: getter of thread-local state.
            assert_eq!(unsafe { ffi::get_autocast_dtype(0) }, 15);
            {
                let _inner = Autocast::enter(Device::Cpu, Kind::Half).unwrap();
                assert_eq!(unsafe { ffi::get_autocast_dtype(0) }, 5);
            }
            assert!(Autocast::is_enabled(Device::Cpu));
            assert_eq!(unsafe { ffi::get_autocast_dtype(0) }, 15);
        }
        assert!(!Autocast::is_enabled(Device::Cpu));
        // The CUDA state is separate from the CPU state.
        let _cuda = Autocast::enter(Device::Cuda(0), Kind::Half).unwrap();
        assert!(!Autocast::is_enabled(Device::Cpu));
        assert!(Autocast::is_enabled(Device::Cuda(0)));
    }

    #[test]
    fn bf16_autocast_changes_conv_dtype() {
        tch::manual_seed(0);
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([4, 3, 3, 3], (Kind::Float, Device::Cpu));
        let conv = |x: &Tensor| x.conv2d(&w, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
        let plain = conv(&x);
        assert_eq!(plain.kind(), Kind::Float);
        let (y, z) = with_autocast(Precision::Bf16, Device::Cpu, || {
            let y = conv(&x);
            (y.shallow_clone(), y.to_kind(Kind::Float).sum(Kind::Float))
        })
        .unwrap();
        assert_eq!(y.kind(), Kind::BFloat16);
        assert_eq!(z.kind(), Kind::Float);
        // bf16 keeps 8 significant bits: close to, but not equal to, the float32 result.
        let diff = (y.to_kind(Kind::Float) - &plain)
            .abs()
            .max()
            .double_value(&[]);
        let scale = plain.abs().max().double_value(&[]);
        assert!(
            diff > 0.0 && diff < 0.05 * scale,
            "diff {diff} scale {scale}"
        );
        // Outside the closure autocast is off again.
        assert_eq!(conv(&x).kind(), Kind::Float);
        let same = with_autocast(Precision::Fp32, Device::Cpu, || conv(&x)).unwrap();
        assert_eq!(same.kind(), Kind::Float);
    }

    fn param_with_grad(values: &[f32]) -> Tensor {
        let p = Tensor::zeros([values.len() as i64], (Kind::Float, Device::Cpu))
            .set_requires_grad(true);
        let target = Tensor::from_slice(values);
        (&p * &target).sum(Kind::Float).backward();
        p
    }

    #[test]
    fn scaler_unscales_skips_and_backs_off() {
        let mut s = GradScaler::new(GradScalerConfig::default());
        assert_eq!(s.state.scale, 65536.0);
        let p = param_with_grad(&[65536.0, -131072.0]);
        assert!(!s.unscale(std::slice::from_ref(&p)));
        assert_eq!(Vec::<f32>::try_from(&p.grad()).unwrap(), vec![1.0, -2.0]);
        s.update(false);
        assert_eq!((s.state.scale, s.state.growth_tracker), (65536.0, 1));
        let q = param_with_grad(&[f32::INFINITY, 1.0]);
        assert!(s.unscale(&[p.shallow_clone(), q]));
        s.update(true);
        assert_eq!(
            (s.state.scale, s.state.growth_tracker, s.state.skipped_steps),
            (32768.0, 0, 1)
        );
        let n = param_with_grad(&[f32::NAN]);
        assert!(s.unscale(&[n]));
        // A parameter without a gradient is ignored.
        let none = Tensor::zeros([1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        assert!(!s.unscale(&[none]));
    }

    #[test]
    fn scaler_grows_after_interval_and_gives_up() {
        let mut s = GradScaler::new(GradScalerConfig {
            growth_interval: 3,
            ..GradScalerConfig::default()
        });
        for _ in 0..2 {
            s.update(false);
        }
        assert_eq!(s.state.scale, 65536.0);
        s.update(false);
        assert_eq!((s.state.scale, s.state.growth_tracker), (131072.0, 0));
        for i in 0..MAX_CONSECUTIVE_SKIPS {
            assert!(!s.gave_up(), "{i}");
            s.update(true);
        }
        assert!(s.gave_up());
        assert!(s.state.scale > 0.0);
        s.update(false);
        assert!(!s.gave_up());
    }
}
