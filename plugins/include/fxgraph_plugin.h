/*
 * fxgraph native plugin ABI, version 1.1 (1.1 adds audio buses; a 1.0 plugin keeps working unchanged).
 *
 * A native plugin is a shared library that exports one function, FXG_ENTRY_SYMBOL ("fxgraph_plugin_v1"),
 * returning a pointer to a descriptor that stays valid while the library is loaded. The host checks the
 * descriptor (ABI major version, struct sizes, every function pointer non-null) before it calls anything
 * else. Audio crosses as planar 32-bit float buffers: nothing is serialized.
 *
 * Threads: create, initialize, destroy and the presets are called from the host's control thread; start,
 * stop, set_param, process, reset, status and health_check from its audio thread (one at a time per
 * instance, never concurrently). Functions called on the audio thread must not block, allocate or do I/O.
 *
 * Return codes: FXG_OK (0) for success, anything else is an error. An error from process (or a crash,
 * with process isolation) bypasses the node, counts a fault and replaces the instance.
 *
 * See plugins/ABI.md for the whole contract. In C, include this header and define the descriptor as a
 * static const object; in Rust, use the fxgraph-plugin SDK crate.
 */
#ifndef FXGRAPH_PLUGIN_H
#define FXGRAPH_PLUGIN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FXG_ABI_MAJOR 1u
#define FXG_ABI_MINOR 1u
#define FXG_ENTRY_SYMBOL "fxgraph_plugin_v1"

/* Return codes. */
#define FXG_OK 0
#define FXG_ERR_FAILED (-1)        /* generic failure */
#define FXG_ERR_CONFIG (-2)        /* initialize: this configuration is not supported */
#define FXG_ERR_PARAM (-3)         /* set_param: unknown id or value refused */
#define FXG_ERR_PANIC (-100)       /* the SDK caught a panic; the instance must not be used again */

/* Parameter flags. */
#define FXG_PARAM_INTEGER 1u       /* whole numbers only */
#define FXG_PARAM_TOGGLE 2u        /* 0 or 1 */
#define FXG_PARAM_STEPPED 4u       /* not smoothed by the host: taken at once */

/* Descriptor flags. */
#define FXG_FLAG_IN_PLACE 1u       /* process accepts outputs[c] == inputs[c] */

/* Bus flags (ABI 1.1). */
#define FXG_BUS_OPTIONAL 1u        /* an input that may be left unconnected (a sidechain): then 0 channels */

/* One audio bus, a port of the node (ABI 1.1). */
typedef struct fxg_bus {
    const char *name;              /* the port's name in graph files: "in", "sidechain", "out" */
    uint32_t channels;             /* 0: the graph's; an optional input takes whatever feeds it */
    uint32_t flags;                /* FXG_BUS_* */
} fxg_bus;

typedef struct fxg_param {
    uint32_t id;                   /* stable id, used by set_param and presets */
    uint32_t flags;                /* FXG_PARAM_* */
    const char *key;               /* config key in graph files: "gain_db" (no spaces) */
    const char *name;              /* for people: "Gain" */
    const char *unit;              /* "dB", "Hz", "ms" or "" */
    double min;
    double max;
    double default_value;
} fxg_param;

typedef struct fxg_preset_value {
    uint32_t param_id;
    double value;
} fxg_preset_value;

typedef struct fxg_preset {
    const char *name;
    uint32_t count;
    const fxg_preset_value *values;
} fxg_preset;

/* What initialize gets. */
typedef struct fxg_config {
    uint32_t struct_size;          /* sizeof(fxg_config) as the host knows it */
    uint32_t sample_rate;
    uint32_t channels;             /* the graph's channels: process gets exactly this many */
    uint32_t max_block;            /* process never gets more frames than this */
    uint32_t param_count;          /* initial values of every parameter */
    const uint32_t *param_ids;
    const double *param_values;
    /* ABI 1.1 (present when struct_size covers them): each bus's channels as the graph connects it; a
     * plugin without buses gets one input and one output of `channels`. */
    uint32_t input_count;
    const uint32_t *input_channels;
    uint32_t output_count;
    const uint32_t *output_channels;
} fxg_config;

typedef struct fxg_descriptor {
    uint32_t abi_major;            /* FXG_ABI_MAJOR: the host refuses another major version */
    uint32_t abi_minor;            /* FXG_ABI_MINOR the plugin was built with */
    uint32_t struct_size;          /* sizeof(fxg_descriptor): the host refuses a shorter one */
    uint32_t param_size;           /* sizeof(fxg_param): the stride of params */
    uint32_t flags;                /* FXG_FLAG_* */
    const char *id;                /* "org.example.gain" */
    const char *name;
    const char *version;           /* "1.0.0" */
    const char *vendor;
    uint32_t param_count;
    const fxg_param *params;
    uint32_t preset_count;
    const fxg_preset *presets;
    uint32_t status_count;         /* named numbers the host shows per node (e.g. gain reduction) */
    const char *const *status_names;

    void *(*create)(void);
    void (*destroy)(void *instance);
    int32_t (*initialize)(void *instance, const fxg_config *config);
    int32_t (*start)(void *instance);
    int32_t (*stop)(void *instance);
    int32_t (*set_param)(void *instance, uint32_t id, double value);
    int32_t (*process)(void *instance, const float *const *inputs, float *const *outputs, uint32_t channels,
                       uint32_t frames);
    int32_t (*reset)(void *instance);
    int32_t (*status)(void *instance, double *values, uint32_t count);
    int32_t (*health_check)(void *instance);
    uint32_t (*latency)(void *instance);
    /* ABI 1.1: audio buses. Counts of 0 (or a 1.0 descriptor, which ends above): one input and one output
     * of the graph's channels; process gets `channels` of each. With buses, process gets every input bus's
     * channels in order (`channels` is their total) and writes every output bus's channels in order. */
    uint32_t input_bus_count;
    const fxg_bus *input_buses;
    uint32_t output_bus_count;
    const fxg_bus *output_buses;
} fxg_descriptor;

/* The one exported symbol. */
const fxg_descriptor *fxgraph_plugin_v1(void);

#ifdef __cplusplus
}
#endif

#endif
