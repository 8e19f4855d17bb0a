/* An LV2 test plugin for fxgraph's worker (`worker#schedule`), built by tests/native.rs with `cc` into a
 * bundle of its own. One audio input, one output, two control outputs:
 *   responses  work responses delivered so far;
 *   elsewhere  1 once a piece of work has run on another thread than `run` (0 while all run on it).
 * Every `run` schedules one piece of work; the work answers with one response. The output is the input
 * times 1 until the first response has been delivered, times 0.5 after.
 * LV2's declarations are lv2_decl.h beside it. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv2_decl.h"

typedef struct {
    const float *in;
    float *out, *responses, *elsewhere;
    const LV2_Worker_Schedule *schedule;
    pthread_t runner;
    uint32_t runs, delivered, away;
} worker_t;

static LV2_Handle instantiate(const LV2_Descriptor *d, double rate, const char *path, const LV2_Feature *const *f) {
    (void)d;
    (void)rate;
    (void)path;
    worker_t *s = calloc(1, sizeof(worker_t));
    for (; f && *f; f++)
        if (!strcmp((*f)->URI, "http://lv2plug.in/ns/ext/worker#schedule")) s->schedule = (*f)->data;
    if (!s->schedule) {
        free(s);
        return 0;
    }
    return s;
}
static void connect_port(LV2_Handle h, uint32_t port, void *at) {
    worker_t *s = h;
    if (port == 0) s->in = at;
    if (port == 1) s->out = at;
    if (port == 2) s->responses = at;
    if (port == 3) s->elsewhere = at;
}
static void run(LV2_Handle h, uint32_t n) {
    worker_t *s = h;
    s->runner = pthread_self();
    float g = s->delivered ? 0.5f : 1.0f;
    for (uint32_t k = 0; k < n; k++) s->out[k] = s->in[k] * g;
    s->runs++;
    s->schedule->schedule_work(s->schedule->handle, sizeof s->runs, &s->runs);
    *s->responses = (float)s->delivered;
    *s->elsewhere = s->away ? 1.0f : 0.0f;
}
static uint32_t work(LV2_Handle h, LV2_Worker_Respond respond, void *handle, uint32_t size, const void *data) {
    worker_t *s = h;
    if (!pthread_equal(s->runner, pthread_self())) s->away = 1;
    return respond(handle, size, data);
}
static uint32_t work_response(LV2_Handle h, uint32_t size, const void *data) {
    worker_t *s = h;
    (void)size;
    (void)data;
    s->delivered++;
    return 0;
}
static uint32_t end_run(LV2_Handle h) {
    (void)h;
    return 0;
}
static const LV2_Worker_Interface worker_iface = {work, work_response, end_run};
static void nothing(LV2_Handle h) { (void)h; }
static void cleanup(LV2_Handle h) { free(h); }
static const void *extension_data(const char *uri) {
    return strcmp(uri, "http://lv2plug.in/ns/ext/worker#interface") ? 0 : &worker_iface;
}

static const LV2_Descriptor descriptor = {
    "urn:fxgraph:test:worker", instantiate, connect_port, nothing, run, nothing, cleanup, extension_data,
};

__attribute__((visibility("default"))) const LV2_Descriptor *lv2_descriptor(uint32_t index) {
    return index == 0 ? &descriptor : 0;
}
