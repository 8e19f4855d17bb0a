/* A plugin with audio buses (native ABI 1.1), built by tests/native.rs:
 *   inputs "a" (1 channel), "b" (1 channel) and "gain" (optional: a gain signal, absent when unconnected);
 *   output "out" (2 channels): out[0] = (a + b) * gain, out[1] = (a - b) * gain (gain 1 when absent).
 * With OLD_ABI defined, it declares itself an ABI 1.0 plugin instead (a descriptor without buses, of 1.0's
 * size): a one-input, one-output pass-through of the graph's channels, as every 1.0 plugin runs. */
#include <stddef.h>
#include <stdlib.h>

#include "fxgraph_plugin.h"

typedef struct {
    uint32_t inputs[3];
    uint32_t input_count;
    uint32_t channels;
} sumdiff_t;

static void *t_create(void) { return calloc(1, sizeof(sumdiff_t)); }
static void t_destroy(void *i) { free(i); }
static int32_t t_initialize(void *i, const fxg_config *c) {
    sumdiff_t *s = i;
    s->channels = c->channels;
#ifndef OLD_ABI
    if (c->struct_size < sizeof(fxg_config) || c->input_count != 3 || c->output_count != 1) return FXG_ERR_CONFIG;
    for (uint32_t k = 0; k < 3; k++) s->inputs[k] = c->input_channels[k];
    s->input_count = c->input_count;
    if (s->inputs[0] != 1 || s->inputs[1] != 1 || s->inputs[2] > 1 || c->output_channels[0] != 2) return FXG_ERR_CONFIG;
#endif
    return FXG_OK;
}
static int32_t t_ok(void *i) {
    (void)i;
    return FXG_OK;
}
static int32_t t_set_param(void *i, uint32_t id, double v) {
    (void)i;
    (void)id;
    (void)v;
    return FXG_ERR_PARAM;
}
static int32_t t_process(void *i, const float *const *in, float *const *out, uint32_t channels, uint32_t frames) {
    sumdiff_t *s = i;
#ifdef OLD_ABI
    for (uint32_t c = 0; c < channels; c++)
        for (uint32_t n = 0; n < frames; n++) out[c][n] = in[c][n];
    (void)s;
#else
    if (channels != 2 + s->inputs[2]) return FXG_ERR_FAILED;
    for (uint32_t n = 0; n < frames; n++) {
        float g = s->inputs[2] ? in[2][n] : 1.0f;
        out[0][n] = (in[0][n] + in[1][n]) * g;
        out[1][n] = (in[0][n] - in[1][n]) * g;
    }
#endif
    return FXG_OK;
}
static int32_t t_status(void *i, double *v, uint32_t n) {
    (void)i;
    (void)v;
    (void)n;
    return FXG_OK;
}
static uint32_t t_latency(void *i) {
    (void)i;
    return 0;
}

#ifndef OLD_ABI
static const fxg_bus inputs[] = {{"a", 1, 0}, {"b", 1, 0}, {"gain", 0, FXG_BUS_OPTIONAL}};
static const fxg_bus outputs[] = {{"out", 2, 0}};
#endif

static const fxg_descriptor descriptor = {
#ifdef OLD_ABI
    FXG_ABI_MAJOR, 0, offsetof(fxg_descriptor, input_bus_count),
#else
    FXG_ABI_MAJOR, FXG_ABI_MINOR, sizeof(fxg_descriptor),
#endif
    sizeof(fxg_param), 0,
    "org.fxgraph.test.sumdiff", "Sum and difference", "1.0.0", "fxgraph tests",
    0, NULL, 0, NULL, 0, NULL,
    t_create, t_destroy, t_initialize, t_ok, t_ok, t_set_param, t_process, t_ok, t_status, t_ok, t_latency,
#ifndef OLD_ABI
    3, inputs, 1, outputs,
#endif
};

const fxg_descriptor *fxgraph_plugin_v1(void) { return &descriptor; }
