/*
 * clock_shim.c: an LD_PRELOAD library that shifts the wall clock of every
 * process of a test server, by an offset the test can change while the
 * server runs.
 *
 * libfaketime leaves processes the postmaster forks from its SIGCHLD
 * handler (our background worker among them) on the real clock.  This shim
 * keeps no per-process state beyond one read-only mapping, which fork()
 * inherits, so every child sees the same shifted clock as its parent.
 *
 * SNOWFLAKE_CLOCK_FILE names a file of 8 bytes: the offset in microseconds,
 * a native-endian int64.  It is read at every clock call through a shared
 * mapping, so a test steps the clock by rewriting those bytes in place; it
 * must never truncate or replace the file (a rename would leave the mapping
 * on the old inode, a truncation makes readers fault).  A missing or short
 * file means no offset.
 *
 * Only CLOCK_REALTIME and CLOCK_REALTIME_COARSE move: monotonic and boot
 * time stay real, as a stepped wall clock leaves them on a real machine.
 * The clock path allocates nothing and takes no lock, since PostgreSQL
 * reads the clock in signal handlers (timeouts) and libcurl from threads.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_gettime_fn) (clockid_t, struct timespec *);
typedef int (*gettimeofday_fn) (struct timeval *, void *);

static const int64_t no_offset = 0;
/* The mapped offset, or &no_offset; NULL until the first clock call. */
static const int64_t *offset_map;
static clock_gettime_fn real_clock_gettime;
static gettimeofday_fn real_gettimeofday;

/*
 * dlsym() may allocate, so resolve the real functions when the library is
 * loaded rather than in a clock call that might run in a signal handler.
 * The clock calls still resolve them if another library's constructor reads
 * the clock before this one runs; racing resolutions store the same value.
 */
__attribute__((constructor))
static void
resolve_real_functions(void)
{
	__atomic_store_n(&real_clock_gettime,
					 (clock_gettime_fn) dlsym(RTLD_NEXT, "clock_gettime"), __ATOMIC_RELEASE);
	__atomic_store_n(&real_gettimeofday,
					 (gettimeofday_fn) dlsym(RTLD_NEXT, "gettimeofday"), __ATOMIC_RELEASE);
}

/* Map the offset file on first use, with async-signal-safe calls only. */
static const int64_t *
map_offset_file(void)
{
	const int64_t *map = &no_offset;
	const int64_t *expected = NULL;
	const char *path = getenv("SNOWFLAKE_CLOCK_FILE");
	int			saved_errno = errno;	/* callers need not see our misses */
	struct stat st;
	int			fd;

	if (path != NULL && (fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0)
	{
		if (fstat(fd, &st) == 0 && st.st_size >= (off_t) sizeof(int64_t))
		{
			void	   *p = mmap(NULL, sizeof(int64_t), PROT_READ, MAP_SHARED, fd, 0);

			if (p != MAP_FAILED)
				map = p;
		}
		close(fd);
	}
	/* Another thread may have mapped it meanwhile: keep one mapping. */
	if (!__atomic_compare_exchange_n(&offset_map, &expected, map, false,
									 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
	{
		if (map != &no_offset)
			munmap((void *) map, sizeof(int64_t));
		map = expected;
	}
	errno = saved_errno;
	return map;
}

/*
 * The offset in microseconds.  A write(2) of 8 bytes is not guaranteed to
 * land in one store, so a read that races the test's rewrite could see half
 * of each value, a wild clock for the server; two equal reads in a row
 * cannot both fall inside a write that takes nanoseconds.
 */
static int64_t
clock_offset_us(void)
{
	const int64_t *map = __atomic_load_n(&offset_map, __ATOMIC_ACQUIRE);
	int64_t		a,
				b;

	if (map == NULL)
		map = map_offset_file();
	b = __atomic_load_n(map, __ATOMIC_RELAXED);
	do
	{
		a = b;
		b = __atomic_load_n(map, __ATOMIC_RELAXED);
	} while (a != b);
	return a;
}

int
clock_gettime(clockid_t clk, struct timespec *tp)
{
	int64_t		off;
	int			rc;

	if (__atomic_load_n(&real_clock_gettime, __ATOMIC_ACQUIRE) == NULL)
		resolve_real_functions();
	rc = __atomic_load_n(&real_clock_gettime, __ATOMIC_ACQUIRE) (clk, tp);
	if (rc != 0 || (clk != CLOCK_REALTIME && clk != CLOCK_REALTIME_COARSE))
		return rc;
	off = clock_offset_us();
	/* |remainder| < 1 s, so one carry either way brings tv_nsec back. */
	tp->tv_sec += off / 1000000;
	tp->tv_nsec += (off % 1000000) * 1000;
	if (tp->tv_nsec >= 1000000000L)
		tp->tv_sec++, tp->tv_nsec -= 1000000000L;
	else if (tp->tv_nsec < 0)
		tp->tv_sec--, tp->tv_nsec += 1000000000L;
	return 0;
}

int
gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
	int64_t		off;
	int			rc;

	if (__atomic_load_n(&real_gettimeofday, __ATOMIC_ACQUIRE) == NULL)
		resolve_real_functions();
	rc = __atomic_load_n(&real_gettimeofday, __ATOMIC_ACQUIRE) (tv, tz);
	if (rc != 0)
		return rc;
	off = clock_offset_us();
	tv->tv_sec += off / 1000000;
	tv->tv_usec += off % 1000000;
	if (tv->tv_usec >= 1000000)
		tv->tv_sec++, tv->tv_usec -= 1000000;
	else if (tv->tv_usec < 0)
		tv->tv_sec--, tv->tv_usec += 1000000;
	return 0;
}

/* From the shifted CLOCK_REALTIME, so a 0.5 s offset moves time() too. */
time_t
time(time_t *tloc)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return (time_t) -1;
	if (tloc != NULL)
		*tloc = ts.tv_sec;
	return ts.tv_sec;
}
