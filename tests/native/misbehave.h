/* How the test plugins misbehave (tests/native/variants.c, tests/clap/plugins.c, tests/lv2/hostile.c),
 * chosen with -D when they are built: on their 20th call,
 *   NULL_DEREF       write through a null pointer;
 *   ABORT            abort();
 *   HANG             loop for ever, using CPU time;
 *   SLEEP            sleep for ever, using none;
 *   EXIT_IN_PROCESS  exit(0);
 *   OVERRUN          write far past the output buffer `out` of `n` samples;
 * and on every call,
 *   ALLOC            allocate and free a little memory (as a plugin that is not real-time safe does).
 * Without any of these, misbehave() does nothing. */
#ifndef FXGRAPH_TEST_MISBEHAVE_H
#define FXGRAPH_TEST_MISBEHAVE_H
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static inline void misbehave(uint32_t call, float *out, uint32_t n) {
    (void)out;
    (void)n;
#ifdef ALLOC
    void *volatile block = malloc(64);
    free(block);
#endif
    if (call != 20) return;
#if defined(NULL_DEREF)
    volatile float *bad = 0;
    *bad = 1.0f;
#elif defined(ABORT)
    abort();
#elif defined(HANG)
    for (volatile int spin = 1; spin;) {
    }
#elif defined(SLEEP)
    for (;;) sleep(1);
#elif defined(EXIT_IN_PROCESS)
    exit(0);
#elif defined(OVERRUN)
    for (uint32_t k = 0; k < (1u << 26); k++) out[n + k] = 1.0f;
#endif
}
#endif
