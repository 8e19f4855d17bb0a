//! The biquad filter's DSP, one source for two builds: the WebAssembly plugin (`lib.rs` beside this file,
//! `wasm32` with `simd128`) and the native plugin (`plugins/native/biquad`, the SDK, `x86_64` with SSE2).
//! The same operations in the same order on both, so the two builds give the same bits, and comparing
//! their speed compares the sandbox with native code and nothing else.
//!
//! RBJ Audio EQ Cookbook low-pass, high-pass and band-pass (0 dB peak gain), designed and run in `f64`:
//! direct form I, two channels at once as the two lanes of one `f64x2` (an odd last channel alone, with
//! the same arithmetic on one lane). `no_std`, no allocation, and Rust 1.63 (Debian's wasm32 toolchain).
//!
//! Direct form I, with the terms that do not wait for the last output summed first, leaves one multiply
//! and one subtraction (`y = t - a1 * y1`) on the path from one output to the next: without fused
//! multiply-add (WebAssembly's SIMD has none) that is the shortest recursion a biquad allows, and as
//! short as an FMA's transposed direct form II. In `f64`, direct form I's rounding is far below `f32`
//! output.

/// Filter types (any other value is the low-pass, 0).
pub const HIGHPASS: i32 = 1;
pub const BANDPASS: i32 = 2;

/// sin and cos of `x` in [0, pi], by Taylor series around 0, pi/2 or pi (accurate to below 1e-16), so
/// that both builds use the same arithmetic (wasm32 has no libm).
pub fn sin_cos(x: f64) -> (f64, f64) {
    let half_pi = core::f64::consts::FRAC_PI_2;
    let (r, quadrant) = if x <= core::f64::consts::FRAC_PI_4 {
        (x, 0)
    } else if x <= 3.0 * core::f64::consts::FRAC_PI_4 {
        (x - half_pi, 1)
    } else {
        (x - core::f64::consts::PI, 2)
    };
    let r2 = r * r;
    let (mut s, mut c) = (0.0, 0.0);
    let (mut ts, mut tc) = (r, 1.0);
    let mut k = 0.0;
    while k < 12.0 {
        s += ts;
        c += tc;
        ts *= -r2 / ((2.0 * k + 2.0) * (2.0 * k + 3.0));
        tc *= -r2 / ((2.0 * k + 1.0) * (2.0 * k + 2.0));
        k += 1.0;
    }
    match quadrant {
        0 => (s, c),
        1 => (c, -s),
        _ => (-s, -c),
    }
}

/// The cookbook's coefficients, normalized by a0: `[b0, b1, b2, a1, a2]`.
pub fn design(kind: i32, cutoff_hz: f64, q: f64, rate: f64) -> [f64; 5] {
    let w0 = 2.0 * core::f64::consts::PI * cutoff_hz / rate;
    let (sin, cos) = sin_cos(w0);
    let alpha = sin / (2.0 * q);
    let (b0, b1, b2) = match kind {
        HIGHPASS => ((1.0 + cos) / 2.0, -(1.0 + cos), (1.0 + cos) / 2.0),
        BANDPASS => (alpha, 0.0, -alpha),
        _ => ((1.0 - cos) / 2.0, 1.0 - cos, (1.0 - cos) / 2.0),
    };
    let (a0, a1, a2) = (1.0 + alpha, -2.0 * cos, 1.0 - alpha);
    [b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0]
}

/// Two channels' state: the last two inputs and outputs, `[x1, x2, y1, y2]`, each `[left, right]`.
pub type State = [[f64; 2]; 4];

/// Below this a state value is set to zero at the end of a block: it is far below anything an `f32`
/// output can show, and decaying on toward the subnormal range would make every operation slow.
const TINY: f64 = 1e-200;

/// Filters `n` frames of two channels: frame `i` of `xl` and `xr` is read before frame `i` of `yl` and
/// `yr` is written, so the output may be the input (in place).
///
/// # Safety
/// Each pointer is valid for `n` samples; `yl` and `yr` do not overlap each other.
#[inline(always)]
pub unsafe fn run_pair(
    k: &[f64; 5],
    s: &mut State,
    xl: *const f32,
    xr: *const f32,
    yl: *mut f32,
    yr: *mut f32,
    n: usize,
) {
    let (b0, b1, b2, a1, a2) = (V::splat(k[0]), V::splat(k[1]), V::splat(k[2]), V::splat(k[3]), V::splat(k[4]));
    let (mut x1, mut x2, mut y1, mut y2) = (V::load(s[0]), V::load(s[1]), V::load(s[2]), V::load(s[3]));
    let mut step = |i: usize| {
        let x = V::new(*xl.add(i) as f64, *xr.add(i) as f64);
        let t = b0.mul(x).add(b1.mul(x1)).add(b2.mul(x2)).sub(a2.mul(y2));
        let y = t.sub(a1.mul(y1));
        x2 = x1;
        x1 = x;
        y2 = y1;
        y1 = y;
        *yl.add(i) = y.lo() as f32;
        *yr.add(i) = y.hi() as f32;
    };
    // Eight frames a turn: a sandbox that checks its deadline at every turn of a loop (wasmtime's epochs)
    // pays for the check, and for the registers that the check's rare call makes the compiler keep on the
    // stack, once per eight frames. (Four: 5% slower; sixteen: slower still.)
    let mut i = 0;
    while i + 8 <= n {
        step(i);
        step(i + 1);
        step(i + 2);
        step(i + 3);
        step(i + 4);
        step(i + 5);
        step(i + 6);
        step(i + 7);
        i += 8;
    }
    while i < n {
        step(i);
        i += 1;
    }
    *s = [x1.store(), x2.store(), y1.store(), y2.store()];
    flush(s);
}

/// [`run_pair`] for one channel (lane 0 of `s`): the same arithmetic, so the same bits as a lane.
///
/// # Safety
/// Each pointer is valid for `n` samples.
#[inline(always)]
pub unsafe fn run_one(k: &[f64; 5], s: &mut State, x: *const f32, y: *mut f32, n: usize) {
    let [b0, b1, b2, a1, a2] = *k;
    let (mut x1, mut x2, mut y1, mut y2) = (s[0][0], s[1][0], s[2][0], s[3][0]);
    let mut i = 0;
    while i < n {
        let xi = *x.add(i) as f64;
        let t = b0 * xi + b1 * x1 + b2 * x2 - a2 * y2;
        let yi = t - a1 * y1;
        x2 = x1;
        x1 = xi;
        y2 = y1;
        y1 = yi;
        *y.add(i) = yi as f32;
        i += 1;
    }
    *s = [[x1, 0.0], [x2, 0.0], [y1, 0.0], [y2, 0.0]];
    flush(s);
}

/// Sets state values below [`TINY`] to zero, and NaN too (it would never leave otherwise).
fn flush(s: &mut State) {
    for pair in s.iter_mut() {
        for v in pair.iter_mut() {
            let magnitude = if *v < 0.0 { -*v } else { *v };
            if magnitude.is_nan() || magnitude < TINY {
                *v = 0.0;
            }
        }
    }
}

impl V {
    #[inline(always)]
    fn load(a: [f64; 2]) -> Self {
        Self::new(a[0], a[1])
    }
    #[inline(always)]
    fn store(self) -> [f64; 2] {
        [self.lo(), self.hi()]
    }
}

/// Two `f64` lanes: WebAssembly's `f64x2`.
#[cfg(target_arch = "wasm32")]
#[derive(Clone, Copy)]
struct V(core::arch::wasm32::v128);

#[cfg(target_arch = "wasm32")]
impl V {
    #[inline(always)]
    fn new(a: f64, b: f64) -> Self {
        V(core::arch::wasm32::f64x2(a, b))
    }
    #[inline(always)]
    fn splat(a: f64) -> Self {
        V(core::arch::wasm32::f64x2_splat(a))
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        V(core::arch::wasm32::f64x2_mul(self.0, o.0))
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        V(core::arch::wasm32::f64x2_add(self.0, o.0))
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        V(core::arch::wasm32::f64x2_sub(self.0, o.0))
    }
    #[inline(always)]
    fn lo(self) -> f64 {
        core::arch::wasm32::f64x2_extract_lane::<0>(self.0)
    }
    #[inline(always)]
    fn hi(self) -> f64 {
        core::arch::wasm32::f64x2_extract_lane::<1>(self.0)
    }
}

/// Two `f64` lanes: SSE2's `__m128d` (every x86-64 processor has it).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct V(core::arch::x86_64::__m128d);

#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)]
impl V {
    // SAFETY (every method): SSE2 is part of the x86-64 baseline, and no intrinsic here touches memory.
    #[inline(always)]
    fn new(a: f64, b: f64) -> Self {
        V(unsafe { core::arch::x86_64::_mm_set_pd(b, a) })
    }
    #[inline(always)]
    fn splat(a: f64) -> Self {
        V(unsafe { core::arch::x86_64::_mm_set1_pd(a) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        V(unsafe { core::arch::x86_64::_mm_mul_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        V(unsafe { core::arch::x86_64::_mm_add_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        V(unsafe { core::arch::x86_64::_mm_sub_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn lo(self) -> f64 {
        unsafe { core::arch::x86_64::_mm_cvtsd_f64(self.0) }
    }
    #[inline(always)]
    fn hi(self) -> f64 {
        unsafe { core::arch::x86_64::_mm_cvtsd_f64(core::arch::x86_64::_mm_unpackhi_pd(self.0, self.0)) }
    }
}

/// Two `f64` lanes anywhere else: the same operations one lane at a time.
#[cfg(not(any(target_arch = "wasm32", target_arch = "x86_64")))]
#[derive(Clone, Copy)]
struct V([f64; 2]);

#[cfg(not(any(target_arch = "wasm32", target_arch = "x86_64")))]
impl V {
    fn new(a: f64, b: f64) -> Self {
        V([a, b])
    }
    fn splat(a: f64) -> Self {
        V([a, a])
    }
    fn mul(self, o: Self) -> Self {
        V([self.0[0] * o.0[0], self.0[1] * o.0[1]])
    }
    fn add(self, o: Self) -> Self {
        V([self.0[0] + o.0[0], self.0[1] + o.0[1]])
    }
    fn sub(self, o: Self) -> Self {
        V([self.0[0] - o.0[0], self.0[1] - o.0[1]])
    }
    fn lo(self) -> f64 {
        self.0[0]
    }
    fn hi(self) -> f64 {
        self.0[1]
    }
}
