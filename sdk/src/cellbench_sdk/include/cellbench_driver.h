/*
 * cellbench_driver.h: the C interface of a vendor driver library that cellbench loads.
 *
 * Shipped with cellbench-sdk (cellbench_sdk/include/cellbench_driver.h; `python -c "import
 * cellbench_sdk.driver_header as h; print(h.HEADER_PATH)"` prints where). A library implements
 * the common functions and one or both of the two variants:
 *
 *   - an OSI device: named signals (name, unit, writable) to read and write;
 *   - a channel bank: cycler channels with ranges that hold a step, switch off and are measured.
 *
 * Rules for every function:
 *   - Functions returning int return CB_OK (or a count >= 0) on success and one of the negative
 *     CB_ status codes on failure; cb_last_error() then says why, in UTF-8.
 *   - cellbench calls one device from one thread at a time (never two calls at once on a handle),
 *     but possibly from a different thread than the previous call.
 *   - Every call returns within the device's timeout (cellbench's call_timeout_s setting); a call
 *     that hangs is killed with the process hosting the library.
 *   - All values are SI: V, A, W, ohm, s, degC. Current and power are positive when charging.
 *   - Strings are NUL-terminated UTF-8; names fit their arrays including the NUL.
 *
 * Bump CB_DRIVER_API_VERSION whenever a declaration below changes; cellbench refuses a library
 * whose cb_api_version() returns another number.
 *
 * Building: see docs/native.md (gcc -shared -fPIC on Linux; MSVC or MinGW on Windows, where
 * defining CB_BUILDING_DRIVER before including this header exports the functions).
 */
#ifndef CELLBENCH_DRIVER_H
#define CELLBENCH_DRIVER_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(CB_BUILDING_DRIVER)
#  define CB_EXPORT __declspec(dllexport)
#elif defined(_WIN32)
#  define CB_EXPORT __declspec(dllimport)
#elif defined(__GNUC__)
#  define CB_EXPORT __attribute__((visibility("default")))
#else
#  define CB_EXPORT
#endif

/* cellbench: declarations begin (cellbench reads the part up to "declarations end" with cffi) */

#define CB_DRIVER_API_VERSION 1

/* Status codes. */
#define CB_OK 0
#define CB_ERROR -1          /* the device failed (cb_last_error says how) */
#define CB_NOT_SUPPORTED -2  /* the device lacks this mode, signal direction or capability */
#define CB_OUT_OF_RANGE -3   /* a value, signal index or channel beyond what the device can do */
#define CB_TIMEOUT -4        /* the instrument behind the library did not answer in time */
#define CB_DISCONNECTED -5   /* the instrument cannot be reached or was lost */

/* Step modes (cb_step.mode). */
#define CB_MODE_REST 0     /* output open, no current */
#define CB_MODE_CC 1       /* constant current_a */
#define CB_MODE_CV 2       /* constant voltage_v; current limited to current_a unless NaN */
#define CB_MODE_CCCV 3     /* current_a until voltage_v, then hold voltage_v */
#define CB_MODE_CP 4       /* constant power_w */
#define CB_MODE_CR 5       /* constant resistance_ohm, discharging */
#define CB_MODE_PROFILE 6  /* follow the profile table over step time */

/* What a profile sets (cb_step.profile_quantity). */
#define CB_PROFILE_CURRENT 0
#define CB_PROFILE_POWER 1
#define CB_PROFILE_VOLTAGE 2

/* An open device: whatever the library needs; cellbench only passes the pointer back. */
typedef struct cb_device cb_device;

/* One signal of an OSI device. */
typedef struct {
    char name[64];     /* unique, non-empty: "cell_max_v" */
    char unit[16];     /* "V", "degC", "" for none */
    int writable;      /* 1 when cb_write accepts it, else 0 */
} cb_signal_info;

/* One channel of a channel bank. */
typedef struct {
    char name[64];         /* unique, non-empty: "ch1" */
    double voltage_min_v;  /* finite, below voltage_max_v */
    double voltage_max_v;
    double current_max_a;  /* finite, > 0: the channel drives -current_max_a..current_max_a */
    double power_max_w;    /* > 0; INFINITY when only current and voltage limit it */
} cb_channel_info;

/* A setpoint; the values a mode does not use are NaN. */
typedef struct {
    int mode;                      /* CB_MODE_... */
    double current_a;
    double voltage_v;
    double power_w;
    double resistance_ohm;
    int profile_quantity;          /* CB_PROFILE_..., with CB_MODE_PROFILE */
    int profile_hold;              /* 1: each value holds until the next point; 0: linear */
    int profile_points;            /* points in the two arrays below (0 without a profile) */
    const double *profile_time_s;  /* seconds from the step's start: 0, then rising */
    const double *profile_value;   /* A, W or V; the last value holds after the last point */
} cb_step;

/* One measurement of one channel. */
typedef struct {
    int channel;           /* 0 .. cb_channel_count() - 1 */
    double age_s;          /* seconds between the measurement and cb_measure returning, >= 0 */
    double voltage_v;
    double current_a;      /* positive when charging */
    double temperature_c;  /* NaN without a sensor */
} cb_sample;

/* --- every library --- */

/* CB_DRIVER_API_VERSION as the library was built with it. */
CB_EXPORT int cb_api_version(void);
/* Open the device `config` describes (the station file's config setting, free text such as
   "port=COM3;address=2"); NULL on failure, with cb_last_error(NULL) saying why. */
CB_EXPORT cb_device *cb_open(const char *config);
/* Leave the device safe (every output off) and release it; `device` is not used again. */
CB_EXPORT int cb_close(cb_device *device);
/* Why the last call on `device` (or the last cb_open, for NULL) failed; owned by the library,
   valid until the next call on that device. */
CB_EXPORT const char *cb_last_error(cb_device *device);

/* --- an OSI device --- */

/* The number of signals (fixed while the device is open). */
CB_EXPORT int cb_signal_count(cb_device *device);
/* Describe signal `index` (0 .. count - 1) into `info`. */
CB_EXPORT int cb_describe_signal(cb_device *device, int index, cb_signal_info *info);
/* Write the present value of every signal, in index order, into values[0 .. capacity - 1];
   return the number written (the signal count). NaN marks a failed sensor. */
CB_EXPORT int cb_read(cb_device *device, double *values, int capacity);
/* Set writable signal `index` to `value` (finite; cellbench checks before calling). */
CB_EXPORT int cb_write(cb_device *device, int index, double value);
/* What the device says about itself (maker, model, serial number, firmware), as lines
   "name=value" joined by '\n', NUL-terminated UTF-8 in text[0 .. capacity - 1] ("" when it says
   nothing); cellbench records it with every test the device serves. */
CB_EXPORT int cb_describe_device(cb_device *device, char *text, int capacity);

/* --- a channel bank --- */

/* The number of channels (fixed while the device is open). */
CB_EXPORT int cb_channel_count(cb_device *device);
/* Describe channel `channel` (0 .. count - 1) into `info`. */
CB_EXPORT int cb_describe_channel(cb_device *device, int channel, cb_channel_info *info);
/* Make `channel` hold `step` from now on (cellbench has checked it against the ranges). */
CB_EXPORT int cb_apply(cb_device *device, int channel, const cb_step *step);
/* Switch `channel`'s output off: the safe state. */
CB_EXPORT int cb_output_off(cb_device *device, int channel);
/* The samples taken since the previous call, at least the latest of every channel, each
   channel's in time order, into samples[0 .. capacity - 1]; return the number written. */
CB_EXPORT int cb_measure(cb_device *device, cb_sample *samples, int capacity);

/* cellbench: declarations end */

#ifdef __cplusplus
}
#endif

#endif /* CELLBENCH_DRIVER_H */
