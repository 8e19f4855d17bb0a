/* The biquad filter plugin in C for wasm32 (fxgraph plugin ABI 1): the same filter as the Rust one.
 * RBJ low-pass, high-pass and band-pass (0 dB peak gain), transposed direct form II.
 * Parameters: 0 type (0 lowpass, 1 highpass, 2 bandpass), 1 cutoff_hz, 2 resonance (Q).
 * Build: see plugins/build.sh (clang --target=wasm32 -nostdlib). */

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
static float coeffs[5] = {1.0f, 0.0f, 0.0f, 0.0f, 0.0f};
static float state[MAX_CHANNELS][2];

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
    coeffs[0] = (float)(b0 / a0); coeffs[1] = (float)(b1 / a0); coeffs[2] = (float)(b2 / a0);
    coeffs[3] = (float)(a1 / a0); coeffs[4] = (float)(a2 / a0);
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
    for (int c = 0; c < MAX_CHANNELS; c++) state[c][0] = state[c][1] = 0.0f;
}

static inline float tick(const float *k, float x, float *s) {
    float y = k[0] * x + s[0];
    s[0] = k[1] * x - k[3] * y + s[1];
    s[1] = k[2] * x - k[4] * y;
    return y;
}

/* Keeps decaying state out of the subnormal range, and never lets it stay NaN. */
static inline void flush(float *s) {
    for (int i = 0; i < 2; i++) {
        float a = s[i] < 0 ? -s[i] : s[i];
        if (!(a >= 1e-25f)) s[i] = 0.0f;
    }
}

EXPORT(fxg_process) int fxg_process(int frames) {
    if (frames < 0 || frames > max_block) return 1;
    float k[5] = {coeffs[0], coeffs[1], coeffs[2], coeffs[3], coeffs[4]};
    int c = 0;
    /* Channels in pairs: two independent recursions in one loop keep the pipeline busy. */
    for (; c + 1 < channels; c += 2) {
        const float *xl = input + c * max_block, *xr = input + (c + 1) * max_block;
        float *yl = output + c * max_block, *yr = output + (c + 1) * max_block;
        float sl[2] = {state[c][0], state[c][1]}, sr[2] = {state[c + 1][0], state[c + 1][1]};
        for (int i = 0; i < frames; i++) {
            yl[i] = tick(k, xl[i], sl);
            yr[i] = tick(k, xr[i], sr);
        }
        flush(sl);
        flush(sr);
        state[c][0] = sl[0]; state[c][1] = sl[1];
        state[c + 1][0] = sr[0]; state[c + 1][1] = sr[1];
    }
    if (c < channels) {
        float s[2] = {state[c][0], state[c][1]};
        for (int i = 0; i < frames; i++) output[c * max_block + i] = tick(k, input[c * max_block + i], s);
        flush(s);
        state[c][0] = s[0]; state[c][1] = s[1];
    }
    return 0;
}

EXPORT(fxg_stop) void fxg_stop(void) {}
EXPORT(fxg_cleanup) void fxg_cleanup(void) {}
