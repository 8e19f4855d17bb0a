/* CLAP test plugins for fxgraph's host, written against the vendored CLAP headers (plugins/include/clap),
 * built by tests/native.rs with `cc`. One bundle, three plugins:
 *
 *   org.fxgraph.test.gain        stereo in, stereo out. Params: Gain (dB, -60..24), Invert (stepped 0/1),
 *                                applied from each event's frame on (no smoothing of its own). Read-only:
 *                                Peak (the last block's largest output), Rule breaks (calls the host's
 *                                thread-check says came on the wrong thread), Pool tasks (channel tasks run
 *                                through the host's thread pool), Peak hold (the largest output it has ever
 *                                made: its state, saved and loaded through the state extension as "FXGS"
 *                                and the value as a double). Uses the thread pool: one task per channel.
 *                                A full-scale input sample turns its Gain down 6 dB from the next call,
 *                                and it sends the host the new value.
 *   org.fxgraph.test.compressor  stereo in, a stereo "Sidechain" input (not main), stereo out. Params:
 *                                Threshold (dB), Ratio. The key's mean square over both channels, smoothed
 *                                by a one-pole filter (10 ms), in double; above the threshold the gain falls
 *                                by (level - threshold) * (1 - 1/ratio) dB. Read-only: Gain reduction (dB).
 *   org.fxgraph.test.delay       stereo: the input 100 frames late, and says so through the latency
 *                                extension.
 *
 * Built with NO_POOL, the gain plugin never asks for the host's thread pool (the benchmark's direct calls
 * have none). Built with one of tests/native/misbehave.h's defines, every plugin misbehaves on its 20th
 * process call; with NAN_OUT, the gain outputs NaN in every other sample of every call. */
#include <clap/clap.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../native/misbehave.h"

#define DELAY 100

enum { GAIN, COMPRESSOR, DELAY_PLUGIN };

typedef struct {
    clap_plugin_t plugin;
    const clap_host_t *host;
    const clap_host_thread_check_t *check;
    const clap_host_thread_pool_t *pool;
    int kind;
    double rate;
    /* gain */
    double gain_db, invert, peak, rule_breaks, pool_tasks, peak_hold;
    uint32_t calls;
    const clap_process_t *current;
    uint32_t from, to; /* the frames the pool's tasks cover */
    /* compressor */
    double threshold_db, ratio, ms, reduction_db;
    /* delay */
    float line[2][DELAY];
    uint32_t at;
} plug_t;

static plug_t *of(const clap_plugin_t *p) { return (plug_t *)p->plugin_data; }

static void expect_main(plug_t *s) {
    if (s->check && (!s->check->is_main_thread(s->host) || s->check->is_audio_thread(s->host))) s->rule_breaks += 1;
}
static void expect_audio(plug_t *s) {
    if (s->check && (!s->check->is_audio_thread(s->host) || s->check->is_main_thread(s->host))) s->rule_breaks += 1;
}

static bool p_init(const clap_plugin_t *p) {
    plug_t *s = of(p);
    s->check = s->host->get_extension(s->host, CLAP_EXT_THREAD_CHECK);
#ifndef NO_POOL
    s->pool = s->host->get_extension(s->host, CLAP_EXT_THREAD_POOL);
#endif
    expect_main(s);
    s->gain_db = 0.0;
    s->threshold_db = -20.0;
    s->ratio = 4.0;
    return true;
}
static void p_destroy(const clap_plugin_t *p) { free(of(p)); }
static bool p_activate(const clap_plugin_t *p, double rate, uint32_t min, uint32_t max) {
    (void)min;
    (void)max;
    plug_t *s = of(p);
    expect_main(s);
    s->rate = rate;
    return true;
}
static void p_deactivate(const clap_plugin_t *p) { expect_main(of(p)); }
static bool p_start(const clap_plugin_t *p) {
    expect_audio(of(p));
    return true;
}
static void p_stop(const clap_plugin_t *p) { expect_audio(of(p)); }
static void p_reset(const clap_plugin_t *p) {
    plug_t *s = of(p);
    expect_audio(s);
    s->ms = 0.0;
    memset(s->line, 0, sizeof s->line);
    s->at = 0;
}

static void set_value(plug_t *s, clap_id id, double v) {
    switch (id) {
    case 0: if (s->kind == GAIN) s->gain_db = v; else if (s->kind == COMPRESSOR) s->threshold_db = v; break;
    case 1: if (s->kind == GAIN) s->invert = v; else if (s->kind == COMPRESSOR) s->ratio = v; break;
    default: break;
    }
}

/* Applies the events due at `frame`; returns the frame of the next one (or `end`). */
static uint32_t take_events(plug_t *s, const clap_input_events_t *in, uint32_t *next, uint32_t frame, uint32_t end) {
    uint32_t n = in->size(in);
    while (*next < n) {
        const clap_event_header_t *h = in->get(in, *next);
        if (h->time > frame) return h->time < end ? h->time : end;
        if (h->space_id == CLAP_CORE_EVENT_SPACE_ID && h->type == CLAP_EVENT_PARAM_VALUE) {
            const clap_event_param_value_t *e = (const clap_event_param_value_t *)h;
            set_value(s, e->param_id, e->value);
        }
        (*next)++;
    }
    return end;
}

static void gain_span(plug_t *s, const clap_process_t *pr, uint32_t c, uint32_t from, uint32_t to) {
    double g = pow(10.0, s->gain_db / 20.0) * (s->invert >= 0.5 ? -1.0 : 1.0);
    const float *x = pr->audio_inputs[0].data32[c];
    float *y = pr->audio_outputs[0].data32[c];
    for (uint32_t k = from; k < to; k++) {
#ifdef NAN_OUT
        y[k] = (k % 2) ? NAN : (float)(x[k] * g);
#else
        y[k] = (float)(x[k] * g);
#endif
    }
}

static void pool_exec(const clap_plugin_t *p, uint32_t task) {
    plug_t *s = of(p);
    expect_audio(s);
    gain_span(s, s->current, task, s->from, s->to);
    s->pool_tasks += 1;
}
static const clap_plugin_thread_pool_t pool_ext = {pool_exec};

static void emit(const clap_output_events_t *out, clap_id id, double v, uint32_t time) {
    clap_event_param_value_t e;
    memset(&e, 0, sizeof e);
    e.header.size = sizeof e;
    e.header.time = time;
    e.header.space_id = CLAP_CORE_EVENT_SPACE_ID;
    e.header.type = CLAP_EVENT_PARAM_VALUE;
    e.param_id = id;
    e.note_id = -1;
    e.port_index = -1;
    e.channel = -1;
    e.key = -1;
    e.value = v;
    out->try_push(out, &e.header);
}

static clap_process_status p_process(const clap_plugin_t *p, const clap_process_t *pr) {
    plug_t *s = of(p);
    expect_audio(s);
    uint32_t n = pr->frames_count, next = 0, frame = 0;
    s->calls++;
    misbehave(s->calls, pr->audio_outputs[0].data32[1], n);
    if (s->kind == GAIN) {
        double peak = 0.0;
        /* Clip guard: an input sample at full scale turns the gain down 6 dB from the next call, and the
         * plugin tells the host the new value. */
        int clip = 0;
        for (uint32_t c = 0; c < 2; c++)
            for (uint32_t k = 0; k < n; k++)
                if (fabsf(pr->audio_inputs[0].data32[c][k]) >= 1.0f) clip = 1;
        while (frame < n) {
            uint32_t end = take_events(s, pr->in_events, &next, frame, n);
            s->current = pr;
            s->from = frame;
            s->to = end;
            if (!(s->pool && s->pool->request_exec(s->host, 2))) {
                gain_span(s, pr, 0, frame, end);
                gain_span(s, pr, 1, frame, end);
            }
            frame = end;
        }
        for (uint32_t c = 0; c < 2; c++)
            for (uint32_t k = 0; k < n; k++) {
                double v = fabs(pr->audio_outputs[0].data32[c][k]);
                if (v > peak) peak = v;
            }
        s->peak = peak;
        if (peak > s->peak_hold) s->peak_hold = peak;
        emit(pr->out_events, 7, s->peak, 0);
        emit(pr->out_events, 10, s->peak_hold, 0);
        if (clip) {
            s->gain_db -= 6.0;
            emit(pr->out_events, 0, s->gain_db, n - 1);
        }
        emit(pr->out_events, 8, s->rule_breaks, 0);
        emit(pr->out_events, 9, s->pool_tasks, 0);
    } else if (s->kind == COMPRESSOR) {
        double a = 1.0 - exp(-1.0 / (0.010 * s->rate));
        while (frame < n) {
            uint32_t end = take_events(s, pr->in_events, &next, frame, n);
            for (uint32_t k = frame; k < end; k++) {
                float **key = pr->audio_inputs[1].data32;
                double x0 = key[0][k], x1 = key[1][k];
                s->ms += a * (0.5 * (x0 * x0 + x1 * x1) - s->ms);
                double level = 10.0 * log10(s->ms + 1e-30);
                double red = level > s->threshold_db ? (level - s->threshold_db) * (1.0 - 1.0 / s->ratio) : 0.0;
                double g = pow(10.0, -red / 20.0);
                for (uint32_t c = 0; c < 2; c++)
                    pr->audio_outputs[0].data32[c][k] = (float)(pr->audio_inputs[0].data32[c][k] * g);
                s->reduction_db = red;
            }
            frame = end;
        }
        emit(pr->out_events, 7, s->reduction_db, 0);
    } else {
        take_events(s, pr->in_events, &next, 0, n);
        for (uint32_t k = 0; k < n; k++) {
            for (uint32_t c = 0; c < 2; c++) {
                float x = pr->audio_inputs[0].data32[c][k];
                pr->audio_outputs[0].data32[c][k] = s->line[c][s->at];
                s->line[c][s->at] = x;
            }
            s->at = (s->at + 1) % DELAY;
        }
    }
    return CLAP_PROCESS_CONTINUE;
}

/* Audio ports. */
static uint32_t ports_count(const clap_plugin_t *p, bool is_input) {
    return (of(p)->kind == COMPRESSOR && is_input) ? 2 : 1;
}
static bool ports_get(const clap_plugin_t *p, uint32_t index, bool is_input, clap_audio_port_info_t *info) {
    (void)p;
    memset(info, 0, sizeof *info);
    info->id = index;
    info->channel_count = 2;
    info->port_type = CLAP_PORT_STEREO;
    info->in_place_pair = CLAP_INVALID_ID;
    if (index == 0) {
        info->flags = CLAP_AUDIO_PORT_IS_MAIN;
        strcpy(info->name, is_input ? "Main In" : "Main Out");
    } else {
        strcpy(info->name, "Sidechain");
    }
    return index < ports_count(p, is_input);
}
static const clap_plugin_audio_ports_t ports_ext = {ports_count, ports_get};

/* Params. */
typedef struct {
    clap_id id;
    const char *name;
    double min, max, def;
    uint32_t flags;
} param_t;
static const param_t gain_params[] = {
    {0, "Gain", -60.0, 24.0, 0.0, CLAP_PARAM_IS_AUTOMATABLE},
    {1, "Invert", 0.0, 1.0, 0.0, CLAP_PARAM_IS_AUTOMATABLE | CLAP_PARAM_IS_STEPPED},
    {7, "Peak", 0.0, 100.0, 0.0, CLAP_PARAM_IS_READONLY},
    {8, "Rule breaks", 0.0, 1e9, 0.0, CLAP_PARAM_IS_READONLY},
    {9, "Pool tasks", 0.0, 1e12, 0.0, CLAP_PARAM_IS_READONLY},
    {10, "Peak hold", 0.0, 100.0, 0.0, CLAP_PARAM_IS_READONLY},
};
static const param_t comp_params[] = {
    {0, "Threshold", -60.0, 0.0, -20.0, CLAP_PARAM_IS_AUTOMATABLE},
    {1, "Ratio", 1.0, 20.0, 4.0, CLAP_PARAM_IS_AUTOMATABLE},
    {7, "Gain reduction", 0.0, 100.0, 0.0, CLAP_PARAM_IS_READONLY},
};
static const param_t *params_of(plug_t *s, uint32_t *n) {
    if (s->kind == GAIN) { *n = 6; return gain_params; }
    if (s->kind == COMPRESSOR) { *n = 3; return comp_params; }
    *n = 0;
    return 0;
}
static uint32_t params_count(const clap_plugin_t *p) {
    uint32_t n;
    expect_main(of(p));
    params_of(of(p), &n);
    return n;
}
static bool params_info(const clap_plugin_t *p, uint32_t index, clap_param_info_t *info) {
    uint32_t n;
    const param_t *list = params_of(of(p), &n);
    if (index >= n) return false;
    memset(info, 0, sizeof *info);
    info->id = list[index].id;
    info->flags = list[index].flags;
    strcpy(info->name, list[index].name);
    info->min_value = list[index].min;
    info->max_value = list[index].max;
    info->default_value = list[index].def;
    return true;
}
static bool params_value(const clap_plugin_t *p, clap_id id, double *v) {
    plug_t *s = of(p);
    expect_main(s);
    switch (id) {
    case 0: *v = s->kind == GAIN ? s->gain_db : s->threshold_db; return true;
    case 1: *v = s->kind == GAIN ? s->invert : s->ratio; return true;
    case 7: *v = s->kind == GAIN ? s->peak : s->reduction_db; return true;
    case 8: *v = s->rule_breaks; return true;
    case 9: *v = s->pool_tasks; return true;
    case 10: *v = s->peak_hold; return true;
    default: return false;
    }
}
static void params_flush(const clap_plugin_t *p, const clap_input_events_t *in, const clap_output_events_t *out) {
    uint32_t next = 0;
    (void)out;
    take_events(of(p), in, &next, 0, 0xffffffffu);
}
static const clap_plugin_params_t params_ext = {params_count, params_info, params_value, 0, 0, params_flush};

static uint32_t latency_get(const clap_plugin_t *p) {
    expect_main(of(p));
    return DELAY;
}
static const clap_plugin_latency_t latency_ext = {latency_get};

/* State: "FXGS" and the peak hold as a double, read and written in pieces as a stream may deliver them. */
static bool state_save(const clap_plugin_t *p, const clap_ostream_t *out) {
    plug_t *s = of(p);
    expect_main(s);
    unsigned char buf[12];
    memcpy(buf, "FXGS", 4);
    memcpy(buf + 4, &s->peak_hold, 8);
    for (int64_t at = 0; at < 12;) {
        int64_t n = out->write(out, buf + at, (uint64_t)(12 - at));
        if (n <= 0) return false;
        at += n;
    }
    return true;
}
static bool state_load(const clap_plugin_t *p, const clap_istream_t *in) {
    plug_t *s = of(p);
    expect_main(s);
    unsigned char buf[13];
    int64_t got = 0;
    for (;;) {
        int64_t n = in->read(in, buf + got, (uint64_t)(13 - got));
        if (n < 0) return false;
        if (n == 0) break;
        got += n;
        if (got == 13) return false; /* longer than a state of ours */
    }
    if (got != 12 || memcmp(buf, "FXGS", 4)) return false;
    memcpy(&s->peak_hold, buf + 4, 8);
    return true;
}
static const clap_plugin_state_t state_ext = {state_save, state_load};

static const void *p_extension(const clap_plugin_t *p, const char *id) {
    plug_t *s = of(p);
    if (!strcmp(id, CLAP_EXT_AUDIO_PORTS)) return &ports_ext;
    if (!strcmp(id, CLAP_EXT_PARAMS) && s->kind != DELAY_PLUGIN) return &params_ext;
    if (!strcmp(id, CLAP_EXT_LATENCY) && s->kind == DELAY_PLUGIN) return &latency_ext;
    if (!strcmp(id, CLAP_EXT_THREAD_POOL) && s->kind == GAIN) return &pool_ext;
    if (!strcmp(id, CLAP_EXT_STATE) && s->kind == GAIN) return &state_ext;
    return 0;
}
static void p_on_main(const clap_plugin_t *p) { (void)p; }

static const char *features[] = {CLAP_PLUGIN_FEATURE_AUDIO_EFFECT, 0};
static const clap_plugin_descriptor_t descriptors[] = {
    {CLAP_VERSION_INIT, "org.fxgraph.test.gain", "Test gain", "fxgraph", "", "", "", "1.0.0", "", features},
    {CLAP_VERSION_INIT, "org.fxgraph.test.compressor", "Test sidechain compressor", "fxgraph", "", "", "", "1.0.0", "",
     features},
    {CLAP_VERSION_INIT, "org.fxgraph.test.delay", "Test delay", "fxgraph", "", "", "", "1.0.0", "", features},
};

static uint32_t f_count(const clap_plugin_factory_t *f) {
    (void)f;
    return 3;
}
static const clap_plugin_descriptor_t *f_descriptor(const clap_plugin_factory_t *f, uint32_t i) {
    (void)f;
    return i < 3 ? &descriptors[i] : 0;
}
static const clap_plugin_t *f_create(const clap_plugin_factory_t *f, const clap_host_t *host, const char *id) {
    (void)f;
    for (int k = 0; k < 3; k++) {
        if (strcmp(id, descriptors[k].id)) continue;
        plug_t *s = calloc(1, sizeof *s);
        s->host = host;
        s->kind = k;
        s->plugin.desc = &descriptors[k];
        s->plugin.plugin_data = s;
        s->plugin.init = p_init;
        s->plugin.destroy = p_destroy;
        s->plugin.activate = p_activate;
        s->plugin.deactivate = p_deactivate;
        s->plugin.start_processing = p_start;
        s->plugin.stop_processing = p_stop;
        s->plugin.reset = p_reset;
        s->plugin.process = p_process;
        s->plugin.get_extension = p_extension;
        s->plugin.on_main_thread = p_on_main;
        return &s->plugin;
    }
    return 0;
}
static const clap_plugin_factory_t factory = {f_count, f_descriptor, f_create};

static bool e_init(const char *path) {
    (void)path;
    return true;
}
static void e_deinit(void) {}
static const void *e_factory(const char *id) { return strcmp(id, CLAP_PLUGIN_FACTORY_ID) ? 0 : &factory; }

CLAP_EXPORT const clap_plugin_entry_t clap_entry = {CLAP_VERSION_INIT, e_init, e_deinit, e_factory};
