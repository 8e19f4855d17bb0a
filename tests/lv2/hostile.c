/* An LV2 test plugin for fxgraph's isolation tier, built by tests/native.rs with `cc` into a bundle of its
 * own (the test writes the bundle's Turtle). One audio input, one output, a "level" control: the output is
 * the input times the level. It says it is hard-real-time capable. Built with one of these, it misbehaves
 * from its 20th run: NULL_DEREF, ABORT, HANG (an endless loop), OVERRUN (writes far past its output
 * buffer), NAN_OUT (NaN in every other sample, every run).
 *
 * LV2's core descriptor is written out here (as lv2/core/lv2.h declares it), so the test needs no LV2
 * development package. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

typedef void *LV2_Handle;
typedef struct {
    const char *URI;
    void *data;
} LV2_Feature;
typedef struct LV2_Descriptor {
    const char *URI;
    LV2_Handle (*instantiate)(const struct LV2_Descriptor *, double, const char *, const LV2_Feature *const *);
    void (*connect_port)(LV2_Handle, uint32_t, void *);
    void (*activate)(LV2_Handle);
    void (*run)(LV2_Handle, uint32_t);
    void (*deactivate)(LV2_Handle);
    void (*cleanup)(LV2_Handle);
    const void *(*extension_data)(const char *);
} LV2_Descriptor;

typedef struct {
    const float *in;
    float *out;
    const float *level;
    uint32_t runs;
} hostile_t;

static LV2_Handle instantiate(const LV2_Descriptor *d, double rate, const char *path, const LV2_Feature *const *f) {
    (void)d;
    (void)rate;
    (void)path;
    (void)f;
    return calloc(1, sizeof(hostile_t));
}
static void connect_port(LV2_Handle h, uint32_t port, void *at) {
    hostile_t *s = h;
    if (port == 0) s->in = at;
    if (port == 1) s->out = at;
    if (port == 2) s->level = at;
}
static void run(LV2_Handle h, uint32_t n) {
    hostile_t *s = h;
    s->runs++;
#if defined(NULL_DEREF) || defined(ABORT) || defined(HANG) || defined(OVERRUN)
    if (s->runs == 20) {
#if defined(NULL_DEREF)
        volatile float *bad = 0;
        *bad = 1.0f;
#elif defined(ABORT)
        abort();
#elif defined(HANG)
        for (volatile int spin = 1; spin;) {
        }
#elif defined(OVERRUN)
        for (uint32_t k = 0; k < (1u << 26); k++) s->out[n + k] = 1.0f;
#endif
    }
#endif
    for (uint32_t k = 0; k < n; k++) {
#ifdef NAN_OUT
        s->out[k] = (k % 2) ? NAN : s->in[k] * *s->level;
#else
        s->out[k] = s->in[k] * *s->level;
#endif
    }
}
static void nothing(LV2_Handle h) { (void)h; }
static void cleanup(LV2_Handle h) { free(h); }
static const void *extension_data(const char *uri) {
    (void)uri;
    return 0;
}

static const LV2_Descriptor descriptor = {
    "urn:fxgraph:test:hostile", instantiate, connect_port, nothing, run, nothing, cleanup, extension_data,
};

__attribute__((visibility("default"))) const LV2_Descriptor *lv2_descriptor(uint32_t index) {
    return index == 0 ? &descriptor : 0;
}
