/*
 * lbclock: an LD_PRELOAD library that moves a process's WALL clock only, by a live offset.
 * Built by lockbench/clock_preload.py (gcc, cached); see docs/nemeses.md.
 *
 * Why not libfaketime: Debian's 0.9.10 either fakes CLOCK_MONOTONIC too (a skew then fires every
 * timer, and threading.Event().wait(0.2) never returns) or, with FAKETIME_DONT_FAKE_MONOTONIC=1,
 * fails absolute sleeps on CLOCK_MONOTONIC with EINVAL (Python's time.sleep), even at offset +0.
 * A real clock step moves CLOCK_REALTIME and nothing else; so does this library.
 *
 * Faked (offset added): clock_gettime on CLOCK_REALTIME, CLOCK_REALTIME_COARSE, CLOCK_TAI and
 * CLOCK_REALTIME_ALARM; gettimeofday; time; timespec_get. The JVM's System.currentTimeMillis
 * and Instant.now read clock_gettime(CLOCK_REALTIME) through libc.
 * Translated (offset subtracted, so a deadline computed from the faked clock waits as long as the
 * program meant): absolute waits on the wall clock: clock_nanosleep(TIMER_ABSTIME),
 * pthread_cond_timedwait on a realtime condition variable, pthread_cond_clockwait, sem_timedwait,
 * sem_clockwait, pthread_mutex_timedlock, pthread_rwlock_timed{rd,wr}lock.
 * Untouched: monotonic, boot-time and CPU clocks, relative sleeps (nanosleep, clock_nanosleep
 * without TIMER_ABSTIME), relative timeouts (poll, select, epoll_wait, futex waits).
 * Not covered: raw futex(FUTEX_CLOCK_REALTIME), absolute realtime timerfd/timer_settime timers,
 * and programs that read the clock without libc (Go, static binaries): the bench refuses those.
 *
 * The offset lives in the file named by LOCKBENCH_CLOCK_OFFSET_FILE: signed seconds with up to
 * nine decimals ("+0.500000", "-3", "+0"). No file, or an empty one, means 0; a malformed one
 * keeps the last good value. It is re-read at most every LOCKBENCH_CLOCK_REFRESH_MS milliseconds
 * (default 20) of real monotonic time, by whichever thread first finds the cached value too old;
 * every other read costs one vDSO monotonic read. The nemesis replaces the file atomically
 * (write, then rename), so a reader sees the old or the new offset, never half of one.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Wnonnull-compare"

#define NS_PER_S 1000000000LL
#define DEFAULT_REFRESH_MS 20
/* The nemesis limits offsets to an hour; a year bounds what the parser accepts. */
#define MAX_OFFSET_S (366LL * 24 * 3600)

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static _Atomic(clock_gettime_fn) real_clock_gettime_ptr;
static _Atomic int64_t offset_ns;
static _Atomic int64_t next_refresh_ns = INT64_MIN;
static _Atomic int refreshing;
static _Atomic int configured;
static const char *offset_file;
static int64_t refresh_ns = DEFAULT_REFRESH_MS * 1000000LL;

static int real_clock_gettime(clockid_t clock, struct timespec *ts) {
    clock_gettime_fn fn = atomic_load_explicit(&real_clock_gettime_ptr, memory_order_acquire);
    if (fn == NULL) {
        fn = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
        if (fn == NULL) return (int)syscall(SYS_clock_gettime, clock, ts);
        atomic_store_explicit(&real_clock_gettime_ptr, fn, memory_order_release);
    }
    return fn(clock, ts);
}

static void configure(void) {
    if (atomic_load_explicit(&configured, memory_order_acquire)) return;
    offset_file = getenv("LOCKBENCH_CLOCK_OFFSET_FILE");
    const char *refresh = getenv("LOCKBENCH_CLOCK_REFRESH_MS");
    if (refresh != NULL && *refresh != '\0') {
        long ms = 0;
        for (const char *p = refresh; *p >= '0' && *p <= '9' && ms < 60000; p++) ms = ms * 10 + (*p - '0');
        refresh_ns = ms * 1000000LL;
    }
    atomic_store_explicit(&configured, 1, memory_order_release);
}

/* "+1.25" -> 1250000000 ns; 0 on success. Locale-free (strtod would follow LC_NUMERIC). */
static int parse_offset(const char *text, int64_t *out) {
    const char *p = text;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '\0' || *p == '\n') { *out = 0; return 0; }
    int negative = 0;
    if (*p == '+' || *p == '-') negative = (*p++ == '-');
    int64_t seconds = 0, fraction = 0, scale = NS_PER_S;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        seconds = seconds * 10 + (*p - '0');
        if (seconds > MAX_OFFSET_S) return -1;
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
            if (scale > 1) { scale /= 10; fraction += (*p - '0') * scale; }
        }
    }
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (digits == 0 || *p != '\0') return -1;
    int64_t value = seconds * NS_PER_S + fraction;
    *out = negative ? -value : value;
    return 0;
}

static void read_offset_file(void) {
    int saved_errno = errno;
    int fd = open(offset_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) atomic_store_explicit(&offset_ns, 0, memory_order_relaxed);
        errno = saved_errno;
        return;
    }
    char buffer[64];
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (n >= 0) {
        buffer[n] = '\0';
        int64_t value;
        if (parse_offset(buffer, &value) == 0) atomic_store_explicit(&offset_ns, value, memory_order_relaxed);
    }
    errno = saved_errno;
}

/* The current offset in nanoseconds, re-read from the file when the cached one is too old. */
static int64_t current_offset(void) {
    configure();
    if (offset_file == NULL) return 0;
    struct timespec now;
    if (real_clock_gettime(CLOCK_MONOTONIC, &now) == 0) {
        int64_t mono = now.tv_sec * NS_PER_S + now.tv_nsec;
        if (mono >= atomic_load_explicit(&next_refresh_ns, memory_order_relaxed)) {
            int expected = 0;
            if (atomic_compare_exchange_strong(&refreshing, &expected, 1)) {
                read_offset_file();
                atomic_store_explicit(&next_refresh_ns, mono + refresh_ns, memory_order_relaxed);
                atomic_store(&refreshing, 0);
            }
        }
    }
    return atomic_load_explicit(&offset_ns, memory_order_relaxed);
}

static int is_wall_clock(clockid_t clock) {
    return clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE || clock == CLOCK_TAI ||
           clock == CLOCK_REALTIME_ALARM;
}

static void shift(struct timespec *ts, int64_t delta) {
    int64_t ns = (int64_t)ts->tv_sec * NS_PER_S + ts->tv_nsec + delta;
    int64_t sec = ns / NS_PER_S, rest = ns % NS_PER_S;
    if (rest < 0) { rest += NS_PER_S; sec -= 1; }
    ts->tv_sec = (time_t)sec;
    ts->tv_nsec = (long)rest;
}

/* A deadline on the faked clock as one on the real clock (never negative: the kernel refuses). */
static struct timespec to_real(const struct timespec *abstime) {
    struct timespec real = *abstime;
    shift(&real, -current_offset());
    if (real.tv_sec < 0) { real.tv_sec = 0; real.tv_nsec = 0; }
    return real;
}

#define NEXT(fn, name) \
    if ((fn) == NULL) *(void **)&(fn) = dlsym(RTLD_NEXT, name)

/* ---- reads of the wall clock ---- */

int clock_gettime(clockid_t clock, struct timespec *ts) {
    int result = real_clock_gettime(clock, ts);
    if (result == 0 && ts != NULL && is_wall_clock(clock)) shift(ts, current_offset());
    return result;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    static int (*real_fn)(struct timeval *, void *);
    NEXT(real_fn, "gettimeofday");
    int result = real_fn != NULL ? real_fn(tv, tz) : (int)syscall(SYS_gettimeofday, tv, tz);
    if (result == 0 && tv != NULL) {
        struct timespec ts = {tv->tv_sec, tv->tv_usec * 1000L};
        shift(&ts, current_offset());
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000L;
    }
    return result;
}

time_t time(time_t *out) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return (time_t)-1;
    if (out != NULL) *out = ts.tv_sec;
    return ts.tv_sec;
}

int timespec_get(struct timespec *ts, int base) {
    if (base != TIME_UTC || clock_gettime(CLOCK_REALTIME, ts) != 0) return 0;
    return base;
}

/* ---- absolute waits on the wall clock ---- */

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *request, struct timespec *remain) {
    static int (*real_fn)(clockid_t, int, const struct timespec *, struct timespec *);
    NEXT(real_fn, "clock_nanosleep");
    if (real_fn == NULL) return ENOSYS;
    if ((flags & TIMER_ABSTIME) && is_wall_clock(clock) && request != NULL) {
        struct timespec real = to_real(request);
        return real_fn(clock, flags, &real, remain);
    }
    return real_fn(clock, flags, request, remain);
}

/* glibc (2.25+) keeps a condition variable's clock in bit 1 of __wrefs: 0 realtime, 1 monotonic. */
static int cond_uses_wall_clock(const pthread_cond_t *cond) {
    return (cond->__data.__wrefs & 2) == 0;
}

int pthread_cond_timedwait(pthread_cond_t *restrict cond, pthread_mutex_t *restrict mutex,
                           const struct timespec *restrict abstime) {
    static int (*real_fn)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
    if (real_fn == NULL) *(void **)&real_fn = dlvsym(RTLD_NEXT, "pthread_cond_timedwait", "GLIBC_2.3.2");
    NEXT(real_fn, "pthread_cond_timedwait");
    if (real_fn == NULL) return ENOSYS;
    if (abstime != NULL && cond_uses_wall_clock(cond)) {
        struct timespec real = to_real(abstime);
        return real_fn(cond, mutex, &real);
    }
    return real_fn(cond, mutex, abstime);
}

int pthread_cond_clockwait(pthread_cond_t *restrict cond, pthread_mutex_t *restrict mutex,
                           clockid_t clock, const struct timespec *restrict abstime) {
    static int (*real_fn)(pthread_cond_t *, pthread_mutex_t *, clockid_t, const struct timespec *);
    NEXT(real_fn, "pthread_cond_clockwait");
    if (real_fn == NULL) return ENOSYS;
    if (abstime != NULL && is_wall_clock(clock)) {
        struct timespec real = to_real(abstime);
        return real_fn(cond, mutex, clock, &real);
    }
    return real_fn(cond, mutex, clock, abstime);
}

int sem_timedwait(sem_t *restrict sem, const struct timespec *restrict abstime) {
    static int (*real_fn)(sem_t *, const struct timespec *);
    NEXT(real_fn, "sem_timedwait");
    if (real_fn == NULL) { errno = ENOSYS; return -1; }
    if (abstime == NULL) return real_fn(sem, abstime);
    struct timespec real = to_real(abstime);
    return real_fn(sem, &real);
}

int sem_clockwait(sem_t *restrict sem, clockid_t clock, const struct timespec *restrict abstime) {
    static int (*real_fn)(sem_t *, clockid_t, const struct timespec *);
    NEXT(real_fn, "sem_clockwait");
    if (real_fn == NULL) { errno = ENOSYS; return -1; }
    if (abstime != NULL && is_wall_clock(clock)) {
        struct timespec real = to_real(abstime);
        return real_fn(sem, clock, &real);
    }
    return real_fn(sem, clock, abstime);
}

int pthread_mutex_timedlock(pthread_mutex_t *restrict mutex, const struct timespec *restrict abstime) {
    static int (*real_fn)(pthread_mutex_t *, const struct timespec *);
    NEXT(real_fn, "pthread_mutex_timedlock");
    if (real_fn == NULL) return ENOSYS;
    if (abstime == NULL) return real_fn(mutex, abstime);
    struct timespec real = to_real(abstime);
    return real_fn(mutex, &real);
}

int pthread_rwlock_timedrdlock(pthread_rwlock_t *restrict lock, const struct timespec *restrict abstime) {
    static int (*real_fn)(pthread_rwlock_t *, const struct timespec *);
    NEXT(real_fn, "pthread_rwlock_timedrdlock");
    if (real_fn == NULL) return ENOSYS;
    if (abstime == NULL) return real_fn(lock, abstime);
    struct timespec real = to_real(abstime);
    return real_fn(lock, &real);
}

int pthread_rwlock_timedwrlock(pthread_rwlock_t *restrict lock, const struct timespec *restrict abstime) {
    static int (*real_fn)(pthread_rwlock_t *, const struct timespec *);
    NEXT(real_fn, "pthread_rwlock_timedwrlock");
    if (real_fn == NULL) return ENOSYS;
    if (abstime == NULL) return real_fn(lock, abstime);
    struct timespec real = to_real(abstime);
    return real_fn(lock, &real);
}
