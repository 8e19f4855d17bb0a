/* The biquad filter plugin in C for wasm32 with SIMD (fxgraph plugin ABI 1): the same filter as the Rust
 * one (plugins/src/biquad_rust/dsp.rs), operation for operation, so the same bits.
 * RBJ low-pass, high-pass and band-pass (0 dB peak gain), f64 coefficients and state, direct form I,
 * two channels as one f64x2.
 * Parameters: 0 type (0 lowpass, 1 highpass, 2 bandpass), 1 cutoff_hz, 2 resonance (Q).
 * Build: see plugins/build.sh (clang --target=wasm32 -msimd128 -nostdlib). */

#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name)))
#define MAX_CHANNELS 16
#define MAX_SAMPLES 65536
#define PI 3.14159265358979323846

static float input[MAX_SAMPLES];
static float output[MAX_SAMPLES];
static unsigned table[2];
static float params[3] = {0.0f, 1000.0f, 0.707f};
static double rate = 48000.0;
static int channels = 0;
static int max_block = 0;
static double coeffs[5] = {1.0, 0.0, 0.0, 0.0, 0.0};
/* Per pair of channels: x1, x2, y1, y2, each {left, right} (an odd last channel: lane 0 of the next pair). */
static double state[MAX_CHANNELS / 2][4][2];

/* Without a libc, clang still turns clearing loops into memset calls: provide it. */
void *memset(void *dst, int value, unsigned long n) {
    unsigned char *p = dst;
    while (n--) *p++ = (unsigned char)value;
    return dst;
}

EXPORT(fxg_abi_version) int fxg_abi_version(void) { return 1; }

/* sin and cos of x in [0, pi] by Taylor series after reduction to [-pi/4, pi/4]. */
static void sin_cos(double x, double *sin_out, double *cos_out) {
    int quadrant;
    double r;
    if (x <= PI / 4) { r = x; quadrant = 0; }
    else if (x <= 3 * PI / 4) { r = x - PI / 2; quadrant = 1; }
    else { r = x - PI; quadrant = 2; }
    double r2 = r * r, s = 0, c = 0, ts = r, tc = 1;
    for (double k = 0; k < 12; k += 1) {
        s += ts;
        c += tc;
        ts *= -r2 / ((2 * k + 2) * (2 * k + 3));
        tc *= -r2 / ((2 * k + 1) * (2 * k + 2));
    }
    if (quadrant == 0) { *sin_out = s; *cos_out = c; }
    else if (quadrant == 1) { *sin_out = c; *cos_out = -s; }
    else { *sin_out = -s; *cos_out = -c; }
}

static void update_coeffs(void) {
    int kind = (int)params[0];
    double w0 = 2 * PI * (double)params[1] / rate, sn, cs;
    sin_cos(w0, &sn, &cs);
    double alpha = sn / (2 * (double)params[2]);
    double b0, b1, b2;
    if (kind == 1) { b0 = (1 + cs) / 2; b1 = -(1 + cs); b2 = (1 + cs) / 2; }
    else if (kind == 2) { b0 = alpha; b1 = 0; b2 = -alpha; }
    else { b0 = (1 - cs) / 2; b1 = 1 - cs; b2 = (1 - cs) / 2; }
    double a0 = 1 + alpha, a1 = -2 * cs, a2 = 1 - alpha;
    coeffs[0] = b0 / a0; coeffs[1] = b1 / a0; coeffs[2] = b2 / a0;
    coeffs[3] = a1 / a0; coeffs[4] = a2 / a0;
}

static int finite(float v) { return v == v && v - v == 0.0f; }

/* The host's log import: (level, pointer, length). */
__attribute__((import_module("fxgraph"), import_name("log"))) void host_log(int level, const char *text, int len);

static const char TOO_HIGH[] = "cutoff_hz must be below the Nyquist frequency (half the sample rate)";
static int initialized = 0;

EXPORT(fxg_set_param) int fxg_set_param(int id, float value) {
    if (id < 0 || id > 2 || !finite(value)) return 1;
    /* Once the rate is known, a cutoff at or above Nyquist would make the filter unstable: refuse it. */
    if (initialized && id == 1 && (double)value >= rate / 2) return 2;
    params[id] = value;
    update_coeffs();
    return 0;
}

EXPORT(fxg_initialize) int fxg_initialize(int sample_rate, int ch, int block) {
    if (sample_rate <= 0 || ch <= 0 || ch > MAX_CHANNELS || block <= 0) return 1;
    if ((long long)ch * block > MAX_SAMPLES) return 2;
    if ((double)params[1] >= sample_rate / 2.0) {
        host_log(0, TOO_HIGH, sizeof TOO_HIGH - 1);
        return 3;
    }
    rate = sample_rate; channels = ch; max_block = block;
    initialized = 1;
    update_coeffs();
    return 0;
}

EXPORT(fxg_buffers) int fxg_buffers(void) {
    table[0] = (unsigned)(unsigned long)input;
    table[1] = (unsigned)(unsigned long)output;
    return (int)(unsigned long)table;
}

EXPORT(fxg_start) void fxg_start(void) {
    for (int p = 0; p < MAX_CHANNELS / 2; p++)
        for (int i = 0; i < 4; i++) state[p][i][0] = state[p][i][1] = 0.0;
}

/* Below this a state value is set to zero at the end of a block (far below any f32 output; decaying on
 * toward subnormals would make every operation slow), and NaN too. */
static void flush(double s[4][2]) {
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++) {
            double a = s[i][j] < 0 ? -s[i][j] : s[i][j];
            if (!(a >= 1e-200)) s[i][j] = 0.0;
        }
}

/* Two channels: y = (((b0 x + b1 x1) + b2 x2) - a2 y2) - a1 y1, lane by lane. */
static void run_pair(double s[4][2], const float *xl, const float *xr, float *yl, float *yr, int n) {
    v128_t b0 = wasm_f64x2_splat(coeffs[0]), b1 = wasm_f64x2_splat(coeffs[1]), b2 = wasm_f64x2_splat(coeffs[2]);
    v128_t a1 = wasm_f64x2_splat(coeffs[3]), a2 = wasm_f64x2_splat(coeffs[4]);
    v128_t x1 = wasm_f64x2_make(s[0][0], s[0][1]), x2 = wasm_f64x2_make(s[1][0], s[1][1]);
    v128_t y1 = wasm_f64x2_make(s[2][0], s[2][1]), y2 = wasm_f64x2_make(s[3][0], s[3][1]);
#define STEP(i)                                                                                             \
    do {                                                                                                    \
        v128_t x = wasm_f64x2_make((double)xl[i], (double)xr[i]);                                           \
        v128_t t = wasm_f64x2_sub(                                                                          \
            wasm_f64x2_add(wasm_f64x2_add(wasm_f64x2_mul(b0, x), wasm_f64x2_mul(b1, x1)), wasm_f64x2_mul(b2, x2)), \
            wasm_f64x2_mul(a2, y2));                                                                        \
        v128_t y = wasm_f64x2_sub(t, wasm_f64x2_mul(a1, y1));                                               \
        x2 = x1; x1 = x; y2 = y1; y1 = y;                                                                   \
        yl[i] = (float)wasm_f64x2_extract_lane(y, 0);                                                       \
        yr[i] = (float)wasm_f64x2_extract_lane(y, 1);                                                       \
    } while (0)
    /* Eight frames a loop turn: the sandbox's deadline check at every turn (and the registers its rare
     * call makes the compiler keep on the stack) is paid once per eight frames. */
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        STEP(i); STEP(i + 1); STEP(i + 2); STEP(i + 3); STEP(i + 4); STEP(i + 5); STEP(i + 6); STEP(i + 7);
    }
    for (; i < n; i++) STEP(i);
#undef STEP
    s[0][0] = wasm_f64x2_extract_lane(x1, 0); s[0][1] = wasm_f64x2_extract_lane(x1, 1);
    s[1][0] = wasm_f64x2_extract_lane(x2, 0); s[1][1] = wasm_f64x2_extract_lane(x2, 1);
    s[2][0] = wasm_f64x2_extract_lane(y1, 0); s[2][1] = wasm_f64x2_extract_lane(y1, 1);
    s[3][0] = wasm_f64x2_extract_lane(y2, 0); s[3][1] = wasm_f64x2_extract_lane(y2, 1);
    flush(s);
}

/* One channel (lane 0 of the state): the same arithmetic. */
static void run_one(double s[4][2], const float *x, float *y, int n) {
    const double *k = coeffs;
    double x1 = s[0][0], x2 = s[1][0], y1 = s[2][0], y2 = s[3][0];
    for (int i = 0; i < n; i++) {
        double xi = (double)x[i];
        double t = k[0] * xi + k[1] * x1 + k[2] * x2 - k[4] * y2;
        double yi = t - k[3] * y1;
        x2 = x1; x1 = xi; y2 = y1; y1 = yi;
        y[i] = (float)yi;
    }
    s[0][0] = x1; s[1][0] = x2; s[2][0] = y1; s[3][0] = y2;
    s[0][1] = s[1][1] = s[2][1] = s[3][1] = 0.0;
    flush(s);
}

EXPORT(fxg_process) int fxg_process(int frames) {
    if (frames < 0 || frames > max_block) return 1;
    int c = 0;
    for (; c + 1 < channels; c += 2)
        run_pair(state[c / 2], input + c * max_block, input + (c + 1) * max_block, output + c * max_block,
                 output + (c + 1) * max_block, frames);
    if (c < channels) run_one(state[c / 2], input + c * max_block, output + c * max_block, frames);
    return 0;
}

EXPORT(fxg_stop) void fxg_stop(void) {}
EXPORT(fxg_cleanup) void fxg_cleanup(void) {}
