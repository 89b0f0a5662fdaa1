/*
 * faulty_driver.c: a small, correct driver library (two signals, two channels) that misbehaves
 * on request, for cellbench's tests of what a vendor library can do wrong.
 *
 * The config text handed to cb_open is a folder. Every call appends "PID FUNCTION [ARG]" to
 * FOLDER/calls.log and then reads FOLDER/fault, if it exists, for one line "ACTION FUNCTION":
 *   segv F | abort F | hang F | fail F   crash, abort, hang until the fault file changes, or
 *                                         fail (CB_ERROR) in F
 *   print F                               print to standard output in F, then work
 *   garbage KIND                          return garbage of one KIND (see the code below)
 * Built with -DOMIT_WRITE it lacks cb_write; with -DREPORTED_VERSION=N it claims version N.
 */
#define CB_BUILDING_DRIVER
#define _DEFAULT_SOURCE /* usleep */
#include "cellbench_driver.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef REPORTED_VERSION
#define REPORTED_VERSION CB_DRIVER_API_VERSION
#endif

struct cb_device {
    char folder[512];
    char error[256];
    double switch_value;
    cb_step steps[2];
};

static char open_error[256];

/* The garbage KIND of FOLDER/fault ("" if none). */
static void fault_of(const char *folder, char *action, char *argument) {
    char path[600];
    action[0] = argument[0] = '\0';
    snprintf(path, sizeof path, "%s/fault", folder);
    FILE *file = fopen(path, "r");
    if (file == NULL) return;
    if (fscanf(file, "%31s %63s", action, argument) != 2) action[0] = argument[0] = '\0';
    fclose(file);
}

/* Log the call, then crash, abort, hang or fail in it if FOLDER/fault says so. */
static int injected(const char *folder, const char *function, int argument) {
    char path[600], action[32], target[64];
    snprintf(path, sizeof path, "%s/calls.log", folder);
    FILE *log = fopen(path, "a");
    if (log != NULL) {
        fprintf(log, "%d %s %d\n", (int)getpid(), function, argument);
        fclose(log);
    }
    fault_of(folder, action, target);
    if (strcmp(target, function) != 0) return CB_OK;
    if (strcmp(action, "print") == 0) {  /* vendor chatter on the console */
        printf("%s: vendor chatter on standard output\n", function);
        fflush(stdout);
    }
    if (strcmp(action, "segv") == 0) raise(SIGSEGV);
    if (strcmp(action, "abort") == 0) abort();
    /* Hang until the fault is cleared, so that a thread stuck in-process can end with the test. */
    while (strcmp(action, "hang") == 0 && strcmp(target, function) == 0) {
        usleep(20000);
        fault_of(folder, action, target);
    }
    if (strcmp(action, "fail") == 0) return CB_ERROR;
    return CB_OK;
}

/* True when FOLDER/fault asks for garbage of this kind. */
static int garbage(const cb_device *device, const char *kind) {
    char action[32], argument[64];
    fault_of(device->folder, action, argument);
    return strcmp(action, "garbage") == 0 && strcmp(argument, kind) == 0;
}

static int failed(cb_device *device, int status, const char *function) {
    snprintf(device->error, sizeof device->error, "injected failure in %s", function);
    return status;
}

CB_EXPORT int cb_api_version(void) { return REPORTED_VERSION; }

CB_EXPORT cb_device *cb_open(const char *config) {
    if (injected(config, "cb_open", 0) != CB_OK) {
        snprintf(open_error, sizeof open_error, "no instrument answers at %s", config);
        return NULL;
    }
    cb_device *device = calloc(1, sizeof *device);
    snprintf(device->folder, sizeof device->folder, "%s", config);
    return device;
}

CB_EXPORT int cb_close(cb_device *device) {
    int status = injected(device->folder, "cb_close", 0);
    free(device);
    return status;
}

CB_EXPORT const char *cb_last_error(cb_device *device) {
    return device == NULL ? open_error : device->error;
}

CB_EXPORT int cb_signal_count(cb_device *device) {
    if (injected(device->folder, "cb_signal_count", 0)) return failed(device, CB_ERROR, "cb_signal_count");
    return garbage(device, "zero-signals") ? 0 : 2;
}

CB_EXPORT int cb_describe_signal(cb_device *device, int index, cb_signal_info *info) {
    if (injected(device->folder, "cb_describe_signal", index)) return failed(device, CB_ERROR, "cb_describe_signal");
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", index == 0 ? "v" : "switch");
    snprintf(info->unit, sizeof info->unit, "%s", index == 0 ? "V" : "");
    info->writable = index == 1;
    if (index == 1 && garbage(device, "name")) memcpy(info->name, "sw\xff\xfe", 5);
    if (index == 1 && garbage(device, "unterminated")) memset(info->name, 'x', sizeof info->name);
    if (index == 1 && garbage(device, "duplicate")) snprintf(info->name, sizeof info->name, "v");
    return CB_OK;
}

CB_EXPORT int cb_read(cb_device *device, double *values, int capacity) {
    if (injected(device->folder, "cb_read", capacity)) return failed(device, CB_ERROR, "cb_read");
    values[0] = garbage(device, "nan") ? NAN : (garbage(device, "inf") ? INFINITY : 3.7);
    values[1] = device->switch_value;
    return garbage(device, "count") ? capacity + 3 : 2;
}

#ifndef OMIT_WRITE
CB_EXPORT int cb_write(cb_device *device, int index, double value) {
    if (injected(device->folder, "cb_write", index)) return failed(device, CB_ERROR, "cb_write");
    if (garbage(device, "status")) return 7;
    if (value > 1.0) return failed(device, CB_OUT_OF_RANGE, "cb_write");
    device->switch_value = value;
    return CB_OK;
}
#endif

CB_EXPORT int cb_describe_device(cb_device *device, char *text, int capacity) {
    if (injected(device->folder, "cb_describe_device", capacity)) return failed(device, CB_ERROR, "cb_describe_device");
    if (garbage(device, "info")) snprintf(text, (size_t)capacity, "model=faulty\nno equals sign");
    else snprintf(text, (size_t)capacity, "model=faulty\n\nserial=0001");
    return CB_OK;
}

CB_EXPORT int cb_channel_count(cb_device *device) {
    if (injected(device->folder, "cb_channel_count", 0)) return failed(device, CB_ERROR, "cb_channel_count");
    return 2;
}

CB_EXPORT int cb_describe_channel(cb_device *device, int channel, cb_channel_info *info) {
    if (injected(device->folder, "cb_describe_channel", channel)) return failed(device, CB_ERROR, "cb_describe_channel");
    snprintf(info->name, sizeof info->name, "%s", channel == 0 ? "a" : "b");
    info->voltage_min_v = 0.0;
    info->voltage_max_v = channel == 0 && garbage(device, "ranges") ? NAN : 5.0;
    info->current_max_a = 2.0;
    info->power_max_w = INFINITY;
    if (channel == 1 && garbage(device, "name")) memcpy(info->name, "b\xc3", 3);
    return CB_OK;
}

CB_EXPORT int cb_apply(cb_device *device, int channel, const cb_step *step) {
    if (injected(device->folder, "cb_apply", channel)) return failed(device, CB_ERROR, "cb_apply");
    if (step->mode == CB_MODE_CR) return failed(device, CB_NOT_SUPPORTED, "cb_apply");
    device->steps[channel] = *step;
    return CB_OK;
}

CB_EXPORT int cb_output_off(cb_device *device, int channel) {
    if (injected(device->folder, "cb_output_off", channel)) return failed(device, CB_ERROR, "cb_output_off");
    device->steps[channel].mode = CB_MODE_REST;
    return CB_OK;
}

CB_EXPORT int cb_measure(cb_device *device, cb_sample *samples, int capacity) {
    if (injected(device->folder, "cb_measure", capacity)) return failed(device, CB_ERROR, "cb_measure");
    if (garbage(device, "count")) return capacity + 1;
    int n = 0;
    for (int k = 0; k < 2; k++) {
        if (k == 1 && garbage(device, "missing")) continue;
        const cb_step *step = &device->steps[k];
        samples[n].channel = k == 1 && garbage(device, "channel") ? 7 : k;
        samples[n].age_s = garbage(device, "age") ? -1.0 : 0.0;
        samples[n].voltage_v = garbage(device, "nan") ? NAN : 3.7;
        samples[n].current_a = step->mode == CB_MODE_CC ? step->current_a : 0.0;
        samples[n].temperature_c = NAN;
        n++;
    }
    if (garbage(device, "order")) { /* channel 0 again, measured before the first */
        samples[n] = samples[0];
        samples[0].age_s = 0.0;
        samples[n].age_s = 0.5;
        n++;
    }
    return n;
}
