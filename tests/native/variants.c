/* Test plugins for the native host, built by tests/native.rs with different -D flags:
 *   (none)         a well-formed pass-through plugin;
 *   NO_ENTRY       no fxgraph_plugin_v1 symbol;
 *   ABI_MAJOR=2    another ABI major version;
 *   SHORT_STRUCT   a descriptor that claims to be shorter than ABI 1.0's;
 *   NULL_PROCESS   a null process function;
 *   NULL_DEREF, ABORT, HANG, EXIT_IN_PROCESS, OVERRUN: crash (in different ways) on the 20th block;
 *   SLEEP          blocks (sleeps) forever on the 20th block, using no CPU time;
 *   NAN_OUT        outputs NaN in every other sample;
 *   WORK=N         a healthy but busy plugin: N steps of arithmetic a block, then half its input;
 *   FAIL           writes half its input, then returns an error from every process call.
 * Every variant touches $FXG_TEST_MARKER (if set) from create, so a test can tell whether any of its code
 * beyond the entry point ran; with CONSTRUCTOR defined, the library touches $FXG_TEST_LOAD_MARKER (if set)
 * as it is loaded, before anything else of it is called. */
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "fxgraph_plugin.h"
#include "misbehave.h"

#ifndef ABI_MAJOR
#define ABI_MAJOR FXG_ABI_MAJOR
#endif

typedef struct {
    uint32_t blocks;
} state_t;

#ifdef CONSTRUCTOR
__attribute__((constructor)) static void loaded(void) {
    const char *marker = getenv("FXG_TEST_LOAD_MARKER");
    if (marker) {
        int fd = open(marker, O_CREAT | O_WRONLY, 0644);
        if (fd >= 0) close(fd);
    }
}
#endif

static void *t_create(void) {
    const char *marker = getenv("FXG_TEST_MARKER");
    if (marker) {
        int fd = open(marker, O_CREAT | O_WRONLY, 0644);
        if (fd >= 0) close(fd);
    }
    return calloc(1, sizeof(state_t));
}
static void t_destroy(void *i) { free(i); }
static int32_t t_initialize(void *i, const fxg_config *c) {
    (void)i;
    (void)c;
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
    return FXG_OK;
}
__attribute__((unused)) static int32_t t_process(void *instance, const float *const *in, float *const *out, uint32_t ch, uint32_t n) {
    state_t *s = instance;
    s->blocks++;
    misbehave(s->blocks, out[ch - 1], n);
#ifdef FAIL
    for (uint32_t c = 0; c < ch; c++) {
        for (uint32_t k = 0; k < n; k++) {
            out[c][k] = 0.5f * in[c][k];
        }
    }
    return FXG_ERR_FAILED;
#endif
#ifdef WORK
    volatile uint32_t x = s->blocks;
    for (uint32_t k = 0; k < (WORK); k++) {
        x = x * 1664525u + 1013904223u;
    }
    for (uint32_t c = 0; c < ch; c++) {
        for (uint32_t k = 0; k < n; k++) {
            out[c][k] = 0.5f * in[c][k];
        }
    }
    return FXG_OK;
#endif
    for (uint32_t c = 0; c < ch; c++) {
        for (uint32_t k = 0; k < n; k++) {
#ifdef NAN_OUT
            out[c][k] = (k % 2) ? NAN : in[c][k];
#else
            out[c][k] = in[c][k];
#endif
        }
    }
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

static const fxg_param params[] = {{0, 0, "level", "Level", "", 0.0, 1.0, 0.5}};

static const fxg_descriptor descriptor = {
    ABI_MAJOR, FXG_ABI_MINOR,
#ifdef SHORT_STRUCT
    64,
#else
    sizeof(fxg_descriptor),
#endif
    sizeof(fxg_param), 0, "org.fxgraph.test", "Test", "1.0.0", "fxgraph tests",
    1, params, 0, 0, 0, 0,
    t_create, t_destroy, t_initialize, t_ok, t_ok, t_set_param,
#ifdef NULL_PROCESS
    0,
#else
    t_process,
#endif
    t_ok, t_status, t_ok, t_latency,
};

#ifndef NO_ENTRY
const fxg_descriptor *fxgraph_plugin_v1(void) { return &descriptor; }
#else
const fxg_descriptor *something_else(void) { return &descriptor; }
#endif
