//! The biquad filter plugin, in `#![no_std]` Rust for `wasm32-unknown-unknown` with `simd128` (fxgraph
//! plugin ABI 1): the ABI's exports around the DSP in `dsp.rs`, which the native build of the same plugin
//! (`plugins/native/biquad`) shares.
//!
//! RBJ Audio EQ Cookbook low-pass, high-pass and band-pass (0 dB peak gain), `f64` coefficients and state,
//! two channels as one `f64x2`. Parameters (set by the host before `fxg_initialize` and between blocks):
//! 0 `type` (0 lowpass, 1 highpass, 2 bandpass), 1 `cutoff_hz`, 2 `resonance` (Q).
//! Build: see `plugins/build.sh`.
#![no_std]

mod dsp;

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
static mut COEFFS: [f64; 5] = [1.0, 0.0, 0.0, 0.0, 0.0];
/// Per pair of channels (an odd last channel uses lane 0 of the pair after the others).
static mut STATE: [dsp::State; MAX_CHANNELS / 2] = [[[0.0; 2]; 4]; MAX_CHANNELS / 2];

#[no_mangle]
pub extern "C" fn fxg_abi_version() -> i32 {
    1
}

unsafe fn update_coeffs() {
    COEFFS = dsp::design(PARAMS[0] as i32, PARAMS[1] as f64, PARAMS[2] as f64, RATE);
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
    STATE = [[[0.0; 2]; 4]; MAX_CHANNELS / 2];
}

#[no_mangle]
pub unsafe extern "C" fn fxg_process(frames: i32) -> i32 {
    if frames < 0 || frames as usize > MAX_BLOCK {
        return 1;
    }
    let (n, m, k) = (frames as usize, MAX_BLOCK, &*core::ptr::addr_of!(COEFFS));
    let x = core::ptr::addr_of!(INPUT) as *const f32;
    let y = core::ptr::addr_of_mut!(OUTPUT) as *mut f32;
    let state = &mut *core::ptr::addr_of_mut!(STATE);
    let mut c = 0;
    while c + 1 < CHANNELS {
        let (l, r) = (c * m, (c + 1) * m);
        dsp::run_pair(k, &mut state[c / 2], x.add(l), x.add(r), y.add(l), y.add(r), n);
        c += 2;
    }
    if c < CHANNELS {
        dsp::run_one(k, &mut state[c / 2], x.add(c * m), y.add(c * m), n);
    }
    0
}

#[no_mangle]
pub extern "C" fn fxg_stop() {}

#[no_mangle]
pub extern "C" fn fxg_cleanup() {}
