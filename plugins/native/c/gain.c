/* A gain plugin in plain C against plugins/include/fxgraph_plugin.h, without the SDK:
 * `gain_db` (-60 to 24 dB) and `invert` (a toggle that flips the polarity).
 * Build: cc -std=c99 -O2 -fPIC -shared -I plugins/include -o libfxgraph_gain.so plugins/native/c/gain.c -lm */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fxgraph_plugin.h"

typedef struct {
    double gain_db;
    double invert;
    float gain;
} gain_t;

static void update(gain_t *g) {
    g->gain = (float)(pow(10.0, g->gain_db / 20.0) * (g->invert >= 0.5 ? -1.0 : 1.0));
}

static void *gain_create(void) { return calloc(1, sizeof(gain_t)); }

static void gain_destroy(void *instance) { free(instance); }

static int32_t gain_set_param(void *instance, uint32_t id, double value) {
    gain_t *g = instance;
    if (id == 0) {
        g->gain_db = value;
    } else if (id == 1) {
        g->invert = value;
    } else {
        return FXG_ERR_PARAM;
    }
    update(g);
    return FXG_OK;
}

static int32_t gain_initialize(void *instance, const fxg_config *config) {
    gain_t *g = instance;
    g->gain_db = 0.0;
    g->invert = 0.0;
    for (uint32_t i = 0; i < config->param_count; i++) {
        if (gain_set_param(g, config->param_ids[i], config->param_values[i]) != FXG_OK) return FXG_ERR_CONFIG;
    }
    update(g);
    return FXG_OK;
}

static int32_t gain_nothing(void *instance) {
    (void)instance;
    return FXG_OK;
}

static int32_t gain_process(void *instance, const float *const *inputs, float *const *outputs, uint32_t channels,
                            uint32_t frames) {
    const gain_t *g = instance;
    for (uint32_t c = 0; c < channels; c++) {
        for (uint32_t i = 0; i < frames; i++) outputs[c][i] = inputs[c][i] * g->gain;
    }
    return FXG_OK;
}

static int32_t gain_status(void *instance, double *values, uint32_t count) {
    const gain_t *g = instance;
    if (count > 0) values[0] = fabs((double)g->gain);
    return FXG_OK;
}

static uint32_t gain_latency(void *instance) {
    (void)instance;
    return 0;
}

static const fxg_param params[] = {
    {0, 0, "gain_db", "Gain", "dB", -60.0, 24.0, 0.0},
    {1, FXG_PARAM_TOGGLE, "invert", "Invert polarity", "", 0.0, 1.0, 0.0},
};

static const fxg_preset_value minus6[] = {{0, -6.0}};
static const fxg_preset_value flip[] = {{1, 1.0}};
static const fxg_preset presets[] = {{"minus6", 1, minus6}, {"invert", 1, flip}};
static const char *const status_names[] = {"linear_gain"};

static const fxg_descriptor descriptor = {
    FXG_ABI_MAJOR, FXG_ABI_MINOR, sizeof(fxg_descriptor), sizeof(fxg_param), FXG_FLAG_IN_PLACE,
    "org.fxgraph.c-gain", "Gain (C)", "1.0.0", "fxgraph",
    2, params, 2, presets, 1, status_names,
    gain_create, gain_destroy, gain_initialize, gain_nothing, gain_nothing, gain_set_param, gain_process,
    gain_nothing, gain_status, gain_nothing, gain_latency,
};

const fxg_descriptor *fxgraph_plugin_v1(void) { return &descriptor; }
