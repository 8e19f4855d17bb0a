/*
 * The C API from C: a bad graph, an unknown parameter, allocations on the audio side, and a parameter
 * changed on one thread while another processes. Built against the committed header and run by
 * capi/tests/c_api.rs; prints one line a check and exits 1 at the first that fails.
 */
#include "fxgraph.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (cond) {                                                                                          \
            printf("ok   %s\n", #cond);                                                                      \
        } else {                                                                                             \
            printf("FAIL %s: ", #cond);                                                                      \
            printf(__VA_ARGS__);                                                                             \
            printf("\n");                                                                                    \
            failures++;                                                                                      \
        }                                                                                                    \
    } while (0)

static const char *GAIN = "(sample_rate: 48000, channels: 2,\n"
                          " nodes: { \"gain\": Gain(gain_db: 0.0) },\n"
                          " edges: [(\"input\", \"gain\"), (\"gain\", \"output\")])";

enum { FRAMES = 256 };

struct shared {
    FxgraphAudio *audio;
    atomic_int stop;
    atomic_int calls;
    float last_peak;
    FxgraphStatus status;
};

/* The audio thread: a constant 0.5 through the graph until told to stop; keeps the last block's peak. */
static void *audio_thread(void *arg) {
    struct shared *s = arg;
    float in[FRAMES * 2], out[FRAMES * 2];
    for (int i = 0; i < FRAMES * 2; i++) {
        in[i] = 0.5f;
    }
    while (!atomic_load(&s->stop) || atomic_load(&s->calls) < 100) {
        FxgraphStatus st = fxgraph_process_interleaved_f32(s->audio, in, out, FRAMES, 2);
        if (st != FXGRAPH_OK) {
            s->status = st;
            break;
        }
        s->last_peak = fabsf(out[FRAMES * 2 - 1]);
        atomic_fetch_add(&s->calls, 1);
    }
    return NULL;
}

int main(void) {
    FxgraphOptions options;
    fxgraph_options_default(&options);
    options.realtime = 0;
    FxgraphEngine *engine = NULL;
    FxgraphAudio *audio = NULL;
    char error[1024] = "";

    /* A bad graph: a status, a located message, no handles. */
    FxgraphStatus st = fxgraph_engine_new_from_ron("(sample_rate: 48000,\n nodes: { \"g\": Gain(gain_db: }",
                                                   "bad.ron", NULL, &options, &engine, &audio, error, sizeof error);
    CHECK(st == FXGRAPH_ERR_GRAPH, "%s", fxgraph_status_name(st));
    CHECK(strncmp(error, "bad.ron:2:", 10) == 0, "message: %s", error);
    CHECK(engine == NULL && audio == NULL, "no handles");

    st = fxgraph_engine_new_from_ron(GAIN, "gain.ron", NULL, &options, &engine, &audio, error, sizeof error);
    CHECK(st == FXGRAPH_OK, "%s: %s", fxgraph_status_name(st), error);
    if (st != FXGRAPH_OK) {
        return 1;
    }

    /* An unknown parameter and node, a value out of range: codes, and the message. */
    st = fxgraph_set(engine, "gain", "volume", 1.0);
    CHECK(st == FXGRAPH_ERR_NO_SUCH_PARAM, "%s", fxgraph_status_name(st));
    fxgraph_last_error(engine, error, sizeof error, NULL);
    CHECK(strstr(error, "volume") != NULL, "message: %s", error);
    st = fxgraph_set(engine, "nope", "gain_db", 1.0);
    CHECK(st == FXGRAPH_ERR_NO_SUCH_NODE, "%s", fxgraph_status_name(st));
    st = fxgraph_set(engine, "gain", "gain_db", 1000.0);
    CHECK(st == FXGRAPH_ERR_BAD_VALUE, "%s", fxgraph_status_name(st));
    /* The compiler refuses an FxgraphAudio * where an FxgraphEngine * goes; a cast through void * gets past it. */
    CHECK(fxgraph_update((FxgraphEngine *)(void *)audio) == FXGRAPH_ERR_WRONG_SIDE, "an audio handle on the control side");

    /* One thread processes while this one sets the gain; nothing is allocated by the audio side. */
    FxgraphAllocStats before, after;
    fxgraph_alloc_stats(&before);
    struct shared s = {audio, 0, 0, 0.0f, FXGRAPH_OK};
    pthread_t thread;
    pthread_create(&thread, NULL, audio_thread, &s);
    for (int i = 0; i < 400; i++) {
        st = fxgraph_set(engine, "gain", "gain_db", i % 2 ? -6.0 : -3.0);
        if (st != FXGRAPH_OK) {
            break;
        }
        fxgraph_update(engine);
    }
    CHECK(st == FXGRAPH_OK, "%s", fxgraph_status_name(st));
    CHECK(fxgraph_set(engine, "gain", "gain_db", -20.0) == FXGRAPH_OK, "last set");
    int calls_then = atomic_load(&s.calls);
    while (atomic_load(&s.calls) < calls_then + 100) {
        /* 100 blocks after the last change: the smoothing is over. */
    }
    atomic_store(&s.stop, 1);
    pthread_join(thread, NULL);
    fxgraph_alloc_stats(&after);
    CHECK(s.status == FXGRAPH_OK, "%s", fxgraph_status_name(s.status));
    CHECK(after.audio_calls == before.audio_calls, "%llu allocations on the audio side",
          (unsigned long long)(after.audio_calls - before.audio_calls));
    CHECK(after.calls > before.calls, "the counter counts (the control side allocated)");
    CHECK(fabsf(s.last_peak - 0.05f) < 1e-6f, "peak %g, want 0.05 (-20 dB of 0.5)", s.last_peak);

    fxgraph_audio_free(audio);
    fxgraph_engine_free(engine);
    CHECK(fxgraph_engine_free(engine) == FXGRAPH_ERR_INVALID_HANDLE, "freed twice");
    printf("%d failed\n", failures);
    return failures ? 1 : 0;
}
