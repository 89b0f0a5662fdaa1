/*
 * example_driver.c: a complete cellbench driver library, simulating a small instrument.
 *
 * As an OSI device it offers a BMS's signals: cell_v and temperature (read-only), charge_enable
 * and fan_pct (writable). As a channel bank it offers `channels=N` channels (config text, 2 by
 * default), each with a simple cell behind it: 2 Ah, open-circuit voltage 3.0 + 1.2 * charge,
 * 50 mOhm. A real driver replaces the simulation with its instrument's protocol.
 *
 * Linux:   gcc -shared -fPIC -O2 -I"$(python -c 'import cellbench_sdk.driver_header as h;
 *          print(h.INCLUDE_DIR)')" -o libexample.so example_driver.c -lm
 * Windows: cl /LD /DCB_BUILDING_DRIVER /I<include dir> example_driver.c /Fe:example.dll
 */
#define CB_BUILDING_DRIVER
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L
#endif
#include "cellbench_driver.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#include <windows.h>
static double now_s(void) {
    LARGE_INTEGER count, frequency;
    QueryPerformanceCounter(&count);
    QueryPerformanceFrequency(&frequency);
    return (double)count.QuadPart / (double)frequency.QuadPart;
}
#else
#include <time.h>
static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}
#endif

#define MAX_CHANNELS 8
#define CAPACITY_AS (2.0 * 3600.0)
#define RESISTANCE_OHM 0.05
#define CURRENT_MAX_A 5.0
#define PROFILE_MAX_POINTS 256

typedef struct {
    cb_step step;            /* what the channel holds; profile arrays copied below */
    double profile_time_s[PROFILE_MAX_POINTS];
    double profile_value[PROFILE_MAX_POINTS];
    double step_start_s;
    int constant_voltage;    /* CCCV: reached the voltage */
    double charge;           /* 0..1 */
    double current_a;
    double updated_s;
} channel_t;

struct cb_device {
    int channel_count;
    channel_t channels[MAX_CHANNELS];
    double charge_enable;
    double fan_pct;
    double opened_s;
    char error[256];
};

static char open_error[256];

static int fail(cb_device *device, int status, const char *message) {
    snprintf(device->error, sizeof device->error, "%s", message);
    return status;
}

static double ocv(const channel_t *c) { return 3.0 + 1.2 * c->charge; }

/* The setpoint of a profile at step time t. */
static double profile_at(const channel_t *c, double t) {
    int n = c->step.profile_points, k = 0;
    while (k + 1 < n && c->profile_time_s[k + 1] <= t) k++;
    if (k + 1 >= n || c->step.profile_hold) return c->profile_value[k];
    double t0 = c->profile_time_s[k], t1 = c->profile_time_s[k + 1];
    return c->profile_value[k] + (c->profile_value[k + 1] - c->profile_value[k]) * (t - t0) / (t1 - t0);
}

static double clamp(double value, double limit) {
    return value > limit ? limit : (value < -limit ? -limit : value);
}

/* The current a channel drives now, under its step. */
static double current_for(channel_t *c, double now) {
    const cb_step *s = &c->step;
    double limit = isnan(s->current_a) ? CURRENT_MAX_A : fabs(s->current_a);
    switch (s->mode) {
    case CB_MODE_CC: return s->current_a;
    case CB_MODE_CV: return clamp((s->voltage_v - ocv(c)) / RESISTANCE_OHM, limit);
    case CB_MODE_CCCV:
        if (!c->constant_voltage && ocv(c) + s->current_a * RESISTANCE_OHM >= s->voltage_v)
            c->constant_voltage = 1;
        return c->constant_voltage ? clamp((s->voltage_v - ocv(c)) / RESISTANCE_OHM, limit)
                                   : s->current_a;
    case CB_MODE_CP: return clamp(s->power_w / ocv(c), CURRENT_MAX_A);
    case CB_MODE_CR: return -ocv(c) / (RESISTANCE_OHM + s->resistance_ohm);
    case CB_MODE_PROFILE: {
        double value = profile_at(c, now - c->step_start_s);
        if (s->profile_quantity == CB_PROFILE_CURRENT) return value;
        if (s->profile_quantity == CB_PROFILE_POWER) return clamp(value / ocv(c), CURRENT_MAX_A);
        return clamp((value - ocv(c)) / RESISTANCE_OHM, limit);
    }
    default: return 0.0; /* CB_MODE_REST */
    }
}

/* Integrate the channel's charge up to now. */
static void advance(channel_t *c, double now) {
    double dt = now - c->updated_s;
    c->charge += c->current_a * dt / CAPACITY_AS;
    c->charge = c->charge < 0.0 ? 0.0 : (c->charge > 1.0 ? 1.0 : c->charge);
    c->current_a = clamp(current_for(c, now), CURRENT_MAX_A);
    c->updated_s = now;
}

CB_EXPORT int cb_api_version(void) { return CB_DRIVER_API_VERSION; }

CB_EXPORT cb_device *cb_open(const char *config) {
    int count = 2;
    const char *found = strstr(config, "channels=");
    if (found != NULL) count = atoi(found + strlen("channels="));
    if (count < 1 || count > MAX_CHANNELS) {
        snprintf(open_error, sizeof open_error, "channels=%d: this instrument has 1..%d",
                 count, MAX_CHANNELS);
        return NULL;
    }
    cb_device *device = calloc(1, sizeof *device);
    if (device == NULL) {
        snprintf(open_error, sizeof open_error, "out of memory");
        return NULL;
    }
    device->channel_count = count;
    device->opened_s = now_s();
    for (int k = 0; k < count; k++) {
        device->channels[k].step.mode = CB_MODE_REST;
        device->channels[k].charge = 0.5;
        device->channels[k].updated_s = device->opened_s;
    }
    return device;
}

CB_EXPORT int cb_close(cb_device *device) {
    free(device); /* a real instrument switches its outputs off here */
    return CB_OK;
}

CB_EXPORT const char *cb_last_error(cb_device *device) {
    return device == NULL ? open_error : device->error;
}

/* --- the OSI device --- */

static const cb_signal_info signals[] = {
    {"cell_v", "V", 0}, {"temperature", "degC", 0}, {"charge_enable", "", 1}, {"fan_pct", "%", 1},
};
#define SIGNAL_COUNT ((int)(sizeof signals / sizeof signals[0]))

CB_EXPORT int cb_signal_count(cb_device *device) { (void)device; return SIGNAL_COUNT; }

CB_EXPORT int cb_describe_signal(cb_device *device, int index, cb_signal_info *info) {
    if (index < 0 || index >= SIGNAL_COUNT) return fail(device, CB_OUT_OF_RANGE, "no such signal");
    *info = signals[index];
    return CB_OK;
}

CB_EXPORT int cb_read(cb_device *device, double *values, int capacity) {
    if (capacity < SIGNAL_COUNT) return fail(device, CB_OUT_OF_RANGE, "too little room");
    double t = now_s() - device->opened_s;
    values[0] = 3.7 + 0.05 * sin(t / 60.0);
    values[1] = 25.0 + device->charge_enable * 2.0 - device->fan_pct * 0.01;
    values[2] = device->charge_enable;
    values[3] = device->fan_pct;
    return SIGNAL_COUNT;
}

CB_EXPORT int cb_write(cb_device *device, int index, double value) {
    if (index == 2 && (value == 0.0 || value == 1.0)) { device->charge_enable = value; return CB_OK; }
    if (index == 3 && value >= 0.0 && value <= 100.0) { device->fan_pct = value; return CB_OK; }
    if (index == 2 || index == 3) return fail(device, CB_OUT_OF_RANGE, "charge_enable is 0 or 1, fan_pct 0..100");
    return fail(device, CB_NOT_SUPPORTED, "this signal is read-only");
}

CB_EXPORT int cb_describe_device(cb_device *device, char *text, int capacity) {
    (void)device;
    snprintf(text, (size_t)capacity, "maker=cellbench\nmodel=example driver\nfirmware=1.0");
    return CB_OK;
}

/* --- the channel bank --- */

CB_EXPORT int cb_channel_count(cb_device *device) { return device->channel_count; }

CB_EXPORT int cb_describe_channel(cb_device *device, int channel, cb_channel_info *info) {
    if (channel < 0 || channel >= device->channel_count)
        return fail(device, CB_OUT_OF_RANGE, "no such channel");
    snprintf(info->name, sizeof info->name, "ch%d", channel + 1);
    info->voltage_min_v = 0.0;
    info->voltage_max_v = 5.0;
    info->current_max_a = CURRENT_MAX_A;
    info->power_max_w = INFINITY;
    return CB_OK;
}

CB_EXPORT int cb_apply(cb_device *device, int channel, const cb_step *step) {
    if (channel < 0 || channel >= device->channel_count)
        return fail(device, CB_OUT_OF_RANGE, "no such channel");
    if (step->profile_points > PROFILE_MAX_POINTS)
        return fail(device, CB_NOT_SUPPORTED, "profiles have at most 256 points");
    channel_t *c = &device->channels[channel];
    double now = now_s();
    advance(c, now);
    c->step = *step;
    for (int k = 0; k < step->profile_points; k++) {
        c->profile_time_s[k] = step->profile_time_s[k];
        c->profile_value[k] = step->profile_value[k];
    }
    c->step.profile_time_s = c->profile_time_s; /* the caller's arrays end with the call */
    c->step.profile_value = c->profile_value;
    c->step_start_s = now;
    c->constant_voltage = 0;
    c->current_a = clamp(current_for(c, now), CURRENT_MAX_A);
    return CB_OK;
}

CB_EXPORT int cb_output_off(cb_device *device, int channel) {
    cb_step rest = {CB_MODE_REST, NAN, NAN, NAN, NAN, 0, 0, 0, NULL, NULL};
    return cb_apply(device, channel, &rest);
}

CB_EXPORT int cb_measure(cb_device *device, cb_sample *samples, int capacity) {
    if (capacity < device->channel_count) return fail(device, CB_OUT_OF_RANGE, "too little room");
    double now = now_s();
    for (int k = 0; k < device->channel_count; k++) {
        channel_t *c = &device->channels[k];
        advance(c, now);
        samples[k].channel = k;
        samples[k].age_s = 0.0; /* measured just now; a buffering instrument reports its delay */
        samples[k].voltage_v = ocv(c) + c->current_a * RESISTANCE_OHM;
        samples[k].current_a = c->current_a;
        samples[k].temperature_c = 25.0 + fabs(c->current_a);
    }
    return device->channel_count;
}
