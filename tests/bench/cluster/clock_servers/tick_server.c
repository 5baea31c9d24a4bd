/* A small C server for the wall-clock library's tests: every tick it waits ~100 ms with one of
 * many wait primitives in turn, then prints "<wait> <CLOCK_MONOTONIC> <clock_gettime REALTIME>
 * <gettimeofday> <time()>" (seconds). Under the library the three wall readings carry the offset and the ticks
 * keep their pace through any skew. Stops after argv[1] seconds of monotonic time. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define STEP_NS 100000000L

static struct timespec after(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    t.tv_nsec += STEP_NS;
    if (t.tv_nsec >= 1000000000L) { t.tv_nsec -= 1000000000L; t.tv_sec += 1; }
    return t;
}

static double seconds(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static const char *wait_once(int kind) {
    static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    static pthread_cond_t wall_cond = PTHREAD_COND_INITIALIZER;
    static pthread_cond_t mono_cond;
    static int mono_ready;
    static sem_t sem;
    static int sem_ready;
    static uint32_t futex_word;
    struct timespec t;
    switch (kind) {
    case 0:
        t = after(CLOCK_MONOTONIC);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR) {}
        return "clock_nanosleep-monotonic-abs";
    case 1:
        t = (struct timespec){0, STEP_NS};
        nanosleep(&t, NULL);
        return "nanosleep";
    case 2:
        t = after(CLOCK_REALTIME);
        while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &t, NULL) == EINTR) {}
        return "clock_nanosleep-realtime-abs";
    case 3:
        if (!mono_ready) {
            pthread_condattr_t attr;
            pthread_condattr_init(&attr);
            pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
            pthread_cond_init(&mono_cond, &attr);
            mono_ready = 1;
        }
        t = after(CLOCK_MONOTONIC);
        pthread_mutex_lock(&mutex);
        while (pthread_cond_timedwait(&mono_cond, &mutex, &t) != ETIMEDOUT) {}
        pthread_mutex_unlock(&mutex);
        return "pthread_cond_timedwait-monotonic";
    case 4:
        t = after(CLOCK_REALTIME);
        pthread_mutex_lock(&mutex);
        while (pthread_cond_timedwait(&wall_cond, &mutex, &t) != ETIMEDOUT) {}
        pthread_mutex_unlock(&mutex);
        return "pthread_cond_timedwait-realtime";
    case 5:
        if (!sem_ready) { sem_init(&sem, 0, 0); sem_ready = 1; }
        t = after(CLOCK_REALTIME);
        while (sem_timedwait(&sem, &t) != 0 && errno != ETIMEDOUT) {}
        return "sem_timedwait";
    case 6: {
        struct timeval tv = {0, STEP_NS / 1000};
        select(0, NULL, NULL, NULL, &tv);
        return "select";
    }
    case 7:
        poll(NULL, 0, STEP_NS / 1000000);
        return "poll";
    case 8: {
        int fd = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event event;
        epoll_wait(fd, &event, 1, STEP_NS / 1000000);
        close(fd);
        return "epoll_wait";
    }
    default:
        t = (struct timespec){0, STEP_NS};
        syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, &t, NULL, 0);
        return "futex";
    }
}

int main(int argc, char **argv) {
    double limit = argc > 1 ? atof(argv[1]) : 30.0;
    double start = seconds(CLOCK_MONOTONIC);
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int tick = 0; seconds(CLOCK_MONOTONIC) - start < limit; tick++) {
        const char *kind = wait_once(tick % 10);
        struct timeval tv;
        gettimeofday(&tv, NULL);
        printf("%s %.6f %.6f %.6f %ld\n", kind, seconds(CLOCK_MONOTONIC), seconds(CLOCK_REALTIME),
               tv.tv_sec + tv.tv_usec / 1e6, (long)time(NULL));
    }
    return 0;
}
