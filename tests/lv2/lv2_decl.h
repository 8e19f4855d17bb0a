/* LV2's core and worker declarations, as lv2/core/lv2.h and lv2/worker/worker.h declare them, written out
 * for the LV2 test plugins (hostile.c and worker.c beside it) so that the tests need no LV2 development package. */
#ifndef FXGRAPH_TEST_LV2_DECL_H
#define FXGRAPH_TEST_LV2_DECL_H
#include <stdint.h>

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
typedef uint32_t (*LV2_Worker_Respond)(void *, uint32_t, const void *);
typedef struct {
    void *handle;
    uint32_t (*schedule_work)(void *, uint32_t, const void *);
} LV2_Worker_Schedule;
typedef struct {
    uint32_t (*work)(LV2_Handle, LV2_Worker_Respond, void *, uint32_t, const void *);
    uint32_t (*work_response)(LV2_Handle, uint32_t, const void *);
    uint32_t (*end_run)(LV2_Handle);
} LV2_Worker_Interface;
#endif
