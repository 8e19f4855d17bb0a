/*
 * Renders a WAV file through an fxgraph graph with the C API, changing a parameter halfway through.
 *
 *   cc -O2 -std=c11 -Wall -Wextra -Icapi/include examples/c/render.c -Ltarget/release -lfxgraph_c \
 *      -Wl,-rpath,$PWD/target/release -o target/render-c
 *   target/render-c graphs/chain.ron in.wav out.wav comp threshold_db -30
 *
 * The input is 16-bit PCM or 32-bit float WAV; the output is 32-bit float WAV with the input's rate (the
 * graph is prepared at it, as a player prepares it at its device's) and the graph's output channels,
 * aligned with the input (the graph's latency is compensated, as `fxgraph render` does). The audio is
 * processed in calls of 1000 frames, a size that is no multiple of the graph's blocks. With NODE PARAM
 * VALUE, the parameter changes at the input's middle frame, sample-accurately (fxgraph_set_at).
 *
 * It exits with 1 on any error, printing fxgraph's message, and checks that the audio side allocated
 * nothing.
 */
#include "fxgraph.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CALL_FRAMES = 1000 };

struct wav {
    uint32_t rate;
    uint32_t channels;
    size_t frames;
    float *samples; /* interleaved */
};

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const unsigned char *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}

/* Reads a 16-bit PCM or 32-bit float WAV file (plain or WAVE_FORMAT_EXTENSIBLE). */
static int read_wav(const char *path, struct wav *out) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    unsigned char head[12];
    int ok = fread(head, 1, 12, f) == 12 && !memcmp(head, "RIFF", 4) && !memcmp(head + 8, "WAVE", 4);
    uint16_t format = 0, bits = 0;
    out->channels = 0;
    out->samples = NULL;
    while (ok) {
        unsigned char chunk[8];
        if (fread(chunk, 1, 8, f) != 8) {
            ok = 0;
            break;
        }
        uint32_t size = le32(chunk + 4);
        if (!memcmp(chunk, "fmt ", 4)) {
            unsigned char fmt[40] = {0};
            if (size < 16 || size > sizeof fmt || fread(fmt, 1, size, f) != size) {
                ok = 0;
                break;
            }
            format = le16(fmt);
            out->channels = le16(fmt + 2);
            out->rate = le32(fmt + 4);
            bits = le16(fmt + 14);
            if (format == 0xFFFE && size >= 26) {
                format = le16(fmt + 24); /* the sub-format GUID's first two bytes */
            }
            if (size & 1) {
                fseek(f, 1, SEEK_CUR);
            }
        } else if (!memcmp(chunk, "data", 4)) {
            int pcm16 = format == 1 && bits == 16, float32 = format == 3 && bits == 32;
            if (!out->channels || !(pcm16 || float32)) {
                fprintf(stderr, "%s: only 16-bit PCM and 32-bit float WAV files are read here\n", path);
                ok = 0;
                break;
            }
            size_t width = bits / 8;
            out->frames = size / (width * out->channels);
            size_t count = out->frames * out->channels;
            unsigned char *raw = malloc(count * width);
            out->samples = malloc(count * sizeof(float));
            if (!raw || !out->samples || fread(raw, width, count, f) != count) {
                free(raw);
                ok = 0;
                break;
            }
            for (size_t i = 0; i < count; i++) {
                if (pcm16) {
                    out->samples[i] = (float)(int16_t)le16(raw + 2 * i) / 32768.0f;
                } else {
                    uint32_t u = le32(raw + 4 * i);
                    memcpy(&out->samples[i], &u, 4);
                }
            }
            free(raw);
            break;
        } else {
            fseek(f, (long)size + (size & 1), SEEK_CUR);
        }
    }
    fclose(f);
    if (!ok || !out->samples) {
        fprintf(stderr, "%s: not a WAV file this example reads\n", path);
        free(out->samples);
        return -1;
    }
    return 0;
}

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

/* Writes 32-bit float WAV. */
static int write_wav(const char *path, const struct wav *w) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return -1;
    }
    uint32_t data = (uint32_t)(w->frames * w->channels * 4);
    unsigned char h[44];
    memcpy(h, "RIFF", 4);
    put32(h + 4, 36 + data);
    memcpy(h + 8, "WAVEfmt ", 8);
    put32(h + 16, 16);
    h[20] = 3; /* IEEE float */
    h[21] = 0;
    h[22] = (unsigned char)w->channels;
    h[23] = 0;
    put32(h + 24, w->rate);
    put32(h + 28, w->rate * w->channels * 4);
    h[32] = (unsigned char)(w->channels * 4);
    h[33] = 0;
    h[34] = 32;
    h[35] = 0;
    memcpy(h + 36, "data", 4);
    put32(h + 40, data);
    int ok = fwrite(h, 1, 44, f) == 44;
    for (size_t i = 0; ok && i < w->frames * w->channels; i++) {
        uint32_t u;
        unsigned char b[4];
        memcpy(&u, &w->samples[i], 4);
        put32(b, u);
        ok = fwrite(b, 1, 4, f) == 4;
    }
    if (fclose(f) != 0 || !ok) {
        perror(path);
        return -1;
    }
    return 0;
}

/* Prints the engine's last error and returns 1. */
static int fail(FxgraphEngine *engine, const char *what, FxgraphStatus status) {
    char message[1024] = "";
    fxgraph_last_error(engine, message, sizeof message, NULL);
    fprintf(stderr, "%s: %s: %s\n", what, fxgraph_status_name(status), message);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 7) {
        fprintf(stderr, "usage: %s GRAPH.ron IN.wav OUT.wav [NODE PARAM VALUE]\n", argv[0]);
        return 2;
    }
    if (fxgraph_abi_version() >> 16 != FXGRAPH_ABI_MAJOR) {
        fprintf(stderr, "libfxgraph_c has ABI %u, this program was built for %d\n", fxgraph_abi_version() >> 16,
                FXGRAPH_ABI_MAJOR);
        return 1;
    }
    struct wav in = {0, 0, 0, NULL};
    if (read_wav(argv[2], &in) != 0) {
        return 1;
    }

    /* Offline: plugins are charged the CPU time they use, not wall-clock time. */
    FxgraphOptions options;
    fxgraph_options_default(&options);
    options.sample_rate = in.rate;
    options.realtime = 0;
    FxgraphEngine *engine = NULL;
    FxgraphAudio *audio = NULL;
    char error[1024];
    FxgraphStatus status = fxgraph_engine_new_from_file(argv[1], &options, &engine, &audio, error, sizeof error);
    if (status != FXGRAPH_OK) {
        fprintf(stderr, "%s\n", error);
        free(in.samples);
        return 1;
    }

    uint32_t in_channels = 0, out_channels = 0;
    uint64_t latency = 0;
    fxgraph_audio_channels(audio, &in_channels, &out_channels, NULL);
    fxgraph_audio_position(audio, &latency, NULL);
    size_t half = in.frames / 2;
    if (argc == 7) {
        status = fxgraph_set_at(engine, argv[4], argv[5], strtod(argv[6], NULL), half);
        if (status != FXGRAPH_OK) {
            return fail(engine, "set", status);
        }
    }

    /* The input with `latency` frames of silence after it, in the graph's input channels; the output
     * from frame `latency` on is aligned with the input. */
    size_t total = in.frames + (size_t)latency;
    float *block_in = calloc((size_t)CALL_FRAMES * in_channels, sizeof(float));
    float *block_out = calloc((size_t)CALL_FRAMES * out_channels, sizeof(float));
    struct wav out = {in.rate, out_channels, in.frames, calloc(in.frames * out_channels + 1, sizeof(float))};
    if (!block_in || !block_out || !out.samples) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    FxgraphAllocStats before, after;
    fxgraph_alloc_stats(&before);
    for (size_t done = 0; done < total; done += CALL_FRAMES) {
        size_t n = total - done < CALL_FRAMES ? total - done : CALL_FRAMES;
        for (size_t i = 0; i < n; i++) {
            for (uint32_t c = 0; c < in_channels; c++) {
                size_t frame = done + i;
                block_in[i * in_channels + c] =
                    frame < in.frames && c < in.channels ? in.samples[frame * in.channels + c] : 0.0f;
            }
        }
        status = fxgraph_process_interleaved_f32(audio, block_in, block_out, n, in_channels);
        if (status != FXGRAPH_OK) {
            fprintf(stderr, "process: %s\n", fxgraph_status_name(status));
            return 1;
        }
        for (size_t i = 0; i < n; i++) {
            size_t frame = done + i;
            if (frame >= latency) {
                memcpy(&out.samples[(frame - latency) * out_channels], &block_out[i * out_channels],
                       out_channels * sizeof(float));
            }
        }
        /* The control side's turn, as a player's UI thread would take it now and then. */
        if ((done / CALL_FRAMES) % 16 == 0) {
            fxgraph_update(engine);
        }
    }
    fxgraph_alloc_stats(&after);

    char metrics[1 << 16];
    size_t needed = 0;
    status = fxgraph_metrics_json(engine, metrics, sizeof metrics, &needed);
    if (status != FXGRAPH_OK) {
        return fail(engine, "metrics", status);
    }
    printf("%zu frames at %u Hz, %u -> %u channels, latency %llu frames compensated\n", in.frames, in.rate,
           in_channels, out_channels, (unsigned long long)latency);
    printf("metrics: %zu bytes of JSON\n", needed - 1);
    printf("audio-side allocations: %llu\n", (unsigned long long)(after.audio_calls - before.audio_calls));

    int result = write_wav(argv[3], &out) == 0 && after.audio_calls == before.audio_calls ? 0 : 1;
    fxgraph_audio_free(audio);
    fxgraph_engine_free(engine);
    free(in.samples);
    free(out.samples);
    free(block_in);
    free(block_out);
    return result;
}
