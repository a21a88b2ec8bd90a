/* Preloaded before Debian's libfaketime 0.9.10 when FAKETIME_DONT_FAKE_MONOTONIC=1 (tests only).

   Python 3.11 sleeps with clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) and waits on locks with
   sem_clockwait(CLOCK_MONOTONIC). libfaketime 0.9.10 does not intercept sem_clockwait, so with a faked
   monotonic clock every timed wait hangs; with the monotonic clock left real, its clock_nanosleep
   wrapper still shifts the absolute deadline and the kernel answers EINVAL. This passes monotonic
   sleeps straight to the kernel: only the wall clock is faked. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *request, struct timespec *remain) {
    if (clock == CLOCK_MONOTONIC) {
        return syscall(SYS_clock_nanosleep, clock, flags, request, remain) == 0 ? 0 : errno;
    }
    int (*next)(clockid_t, int, const struct timespec *, struct timespec *) = dlsym(RTLD_NEXT, "clock_nanosleep");
    return next(clock, flags, request, remain);
}
