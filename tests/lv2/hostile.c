/* An LV2 test plugin for fxgraph's isolation tier, built by tests/native.rs with `cc` into a bundle of its
 * own (the test writes the bundle's Turtle). One audio input, one output, a "level" control: the output is
 * the input times the level. It says it is hard-real-time capable. Built with one of misbehave.h's
 * defines, it misbehaves on its 20th run; with NAN_OUT, it outputs NaN in every other sample of every run.
 *
 * How it misbehaves is tests/native/misbehave.h; LV2's declarations are lv2_decl.h beside it. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "lv2_decl.h"
#include "../native/misbehave.h"

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
    misbehave(s->runs, s->out, n);
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
