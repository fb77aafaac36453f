/*
 * librerun: an interposed libc for the campaign's environment rule (src/campaign.rs,
 * `confirm`): a program whose first run loses a process without a report, and whose reruns
 * diverge another way, is a finding, not a kill from outside.
 *
 *   cowcheck run --under "env COWCHECK_RERUN_FAULT=vanish-then-fail COWCHECK_RERUN_FILE=/tmp/x LD_PRELOAD=/path/librerun.so"
 *
 * COWCHECK_RERUN_FAULT selects the fault (one for now):
 *   vanish-then-fail  the first madvise(MADV_DONTNEED) of a program's process, across the
 *                       executor's whole life, SIGKILLs the calling process (as a kill from
 *                       outside would: no report); COWCHECK_RERUN_FILE is created then, and
 *                       every later MADV_DONTNEED fails with EINVAL without calling the
 *                       kernel (a divergence at that op, in every rerun)
 *
 * The first call is told apart through the file (O_CREAT | O_EXCL), which the test makes
 * fresh, since every program runs in fresh processes. Only a program's processes misbehave
 * (not the executor or its zygote). Nothing here allocates.
 *
 * Build: cc -shared -fPIC -O2 -o librerun.so librerun.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

static pid_t loader;

__attribute__((constructor)) static void remember_loader(void)
{
	loader = getpid();
}

/* A process of a program (a root or below), not the executor or its zygote. */
static int in_program(void)
{
	return getpid() != loader && getppid() != loader;
}

static int wanted(void)
{
	static int cached = -1;
	if (cached < 0) {
		const char *f = getenv("COWCHECK_RERUN_FAULT");
		cached = f && !strcmp(f, "vanish-then-fail");
	}
	return cached;
}

typedef int (*madvise_fn)(void *, size_t, int);

int madvise(void *addr, size_t len, int advice)
{
	static madvise_fn real;
	if (!real)
		real = (madvise_fn)dlsym(RTLD_NEXT, "madvise");
	if (advice == MADV_DONTNEED && wanted() && in_program()) {
		const char *path = getenv("COWCHECK_RERUN_FILE");
		if (path) {
			int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (fd >= 0) {
				close(fd);
				kill(getpid(), SIGKILL);
			}
			errno = EINVAL;
			return -1;
		}
	}
	return real(addr, len, advice);
}
