//! The biquad filter plugin, in `#![no_std]` Rust for `wasm32-unknown-unknown` (fxgraph plugin ABI 1).
//!
//! RBJ Audio EQ Cookbook low-pass, high-pass and band-pass (0 dB peak gain) in transposed direct form II,
//! the same arithmetic as fxgraph's built-in `Eq`. Parameters (set by the host before `fxg_initialize`
//! and between blocks): 0 `type` (0 lowpass, 1 highpass, 2 bandpass), 1 `cutoff_hz`, 2 `resonance` (Q).
//! Build: see `plugins/build.sh`.
#![no_std]

use core::panic::PanicInfo;

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

const MAX_CHANNELS: usize = 16;
const MAX_SAMPLES: usize = 65536;

static mut INPUT: [f32; MAX_SAMPLES] = [0.0; MAX_SAMPLES];
static mut OUTPUT: [f32; MAX_SAMPLES] = [0.0; MAX_SAMPLES];
static mut TABLE: [u32; 2] = [0; 2];
static mut PARAMS: [f32; 3] = [0.0, 1000.0, 0.707];
static mut RATE: f64 = 48000.0;
static mut CHANNELS: usize = 0;
static mut MAX_BLOCK: usize = 0;
static mut COEFFS: [f32; 5] = [1.0, 0.0, 0.0, 0.0, 0.0];
static mut STATE: [[f32; 2]; MAX_CHANNELS] = [[0.0; 2]; MAX_CHANNELS];

#[no_mangle]
pub extern "C" fn fxg_abi_version() -> i32 {
    1
}

/// sin and cos of `x` in [0, pi], by Taylor series around pi/2 ... accurate to below 1e-16.
fn sin_cos(x: f64) -> (f64, f64) {
    // Reduce to [-pi/4, pi/4] around 0 or pi/2.
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

unsafe fn update_coeffs() {
    let kind = PARAMS[0] as i32;
    let w0 = 2.0 * core::f64::consts::PI * PARAMS[1] as f64 / RATE;
    let (sin, cos) = sin_cos(w0);
    let alpha = sin / (2.0 * PARAMS[2] as f64);
    let (b0, b1, b2) = match kind {
        1 => ((1.0 + cos) / 2.0, -(1.0 + cos), (1.0 + cos) / 2.0),
        2 => (alpha, 0.0, -alpha),
        _ => ((1.0 - cos) / 2.0, 1.0 - cos, (1.0 - cos) / 2.0),
    };
    let (a0, a1, a2) = (1.0 + alpha, -2.0 * cos, 1.0 - alpha);
    COEFFS = [(b0 / a0) as f32, (b1 / a0) as f32, (b2 / a0) as f32, (a1 / a0) as f32, (a2 / a0) as f32];
}

#[link(wasm_import_module = "fxgraph")]
extern "C" {
    /// The host's log: (level, pointer, length).
    fn log(level: i32, ptr: *const u8, len: i32);
}

const TOO_HIGH: &[u8] = b"cutoff_hz must be below the Nyquist frequency (half the sample rate)";
static mut INITIALIZED: bool = false;

#[no_mangle]
pub unsafe extern "C" fn fxg_set_param(id: i32, value: f32) -> i32 {
    if !(0..3).contains(&id) || !value.is_finite() {
        return 1;
    }
    // Once the rate is known, a cutoff at or above Nyquist would make the filter unstable: refuse it.
    if INITIALIZED && id == 1 && value as f64 >= RATE / 2.0 {
        return 2;
    }
    PARAMS[id as usize] = value;
    update_coeffs();
    0
}

#[no_mangle]
pub unsafe extern "C" fn fxg_initialize(sample_rate: i32, channels: i32, max_block: i32) -> i32 {
    if sample_rate <= 0 || channels <= 0 || channels as usize > MAX_CHANNELS || max_block <= 0 {
        return 1;
    }
    if channels as usize * max_block as usize > MAX_SAMPLES {
        return 2;
    }
    if PARAMS[1] as f64 >= sample_rate as f64 / 2.0 {
        log(0, TOO_HIGH.as_ptr(), TOO_HIGH.len() as i32);
        return 3;
    }
    INITIALIZED = true;
    RATE = sample_rate as f64;
    CHANNELS = channels as usize;
    MAX_BLOCK = max_block as usize;
    update_coeffs();
    0
}

/// The buffer table: input and output planes (channel c at `+ c * max_block` samples).
#[no_mangle]
pub unsafe extern "C" fn fxg_buffers() -> i32 {
    TABLE = [core::ptr::addr_of!(INPUT) as u32, core::ptr::addr_of!(OUTPUT) as u32];
    core::ptr::addr_of!(TABLE) as i32
}

#[no_mangle]
pub unsafe extern "C" fn fxg_start() {
    STATE = [[0.0; 2]; MAX_CHANNELS];
}

/// One TDF-II step.
#[inline(always)]
fn tick(k: &[f32; 5], x: f32, s: &mut [f32; 2]) -> f32 {
    let y = k[0] * x + s[0];
    s[0] = k[1] * x - k[3] * y + s[1];
    s[1] = k[2] * x - k[4] * y;
    y
}

/// Keeps decaying state out of the subnormal range, and never lets it stay NaN.
fn flush(s: &mut [f32; 2]) {
    for v in s.iter_mut() {
        let magnitude = if *v < 0.0 { -*v } else { *v };
        if !(magnitude >= 1e-25) {
            *v = 0.0;
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn fxg_process(frames: i32) -> i32 {
    if frames < 0 || frames as usize > MAX_BLOCK {
        return 1;
    }
    let (n, m, k) = (frames as usize, MAX_BLOCK, COEFFS);
    let input = &*core::ptr::addr_of!(INPUT);
    let output = &mut *core::ptr::addr_of_mut!(OUTPUT);
    let state = &mut *core::ptr::addr_of_mut!(STATE);
    // Channels in pairs: two independent recursions in one loop keep the pipeline busy.
    let mut c = 0;
    while c + 1 < CHANNELS {
        let (xl, xr) = (&input[c * m..c * m + n], &input[(c + 1) * m..(c + 1) * m + n]);
        let (lo, hi) = output.split_at_mut((c + 1) * m);
        let (yl, yr) = (&mut lo[c * m..c * m + n], &mut hi[..n]);
        let (mut sl, mut sr) = (state[c], state[c + 1]);
        for i in 0..n {
            yl[i] = tick(&k, xl[i], &mut sl);
            yr[i] = tick(&k, xr[i], &mut sr);
        }
        flush(&mut sl);
        flush(&mut sr);
        state[c] = sl;
        state[c + 1] = sr;
        c += 2;
    }
    if c < CHANNELS {
        let mut s = state[c];
        for i in 0..n {
            output[c * m + i] = tick(&k, input[c * m + i], &mut s);
        }
        flush(&mut s);
        state[c] = s;
    }
    0
}

#[no_mangle]
pub extern "C" fn fxg_stop() {}

#[no_mangle]
pub extern "C" fn fxg_cleanup() {}
