/*
 * libracers: an interposed libc whose mprotect misbehaves only when another thread than the
 * process's first calls it, to show that cowcheck's checks of racing layout changes
 * (docs/SEMANTICS.md T11) catch what only concurrency shows. Load it into the executor only:
 *
 *   cowcheck run --under "env COWCHECK_RACERS_FAULT=protect-stuck LD_PRELOAD=/path/libracers.so"
 *
 * COWCHECK_RACERS_FAULT selects one fault:
 *   protect-stuck  an mprotect of one page to read-write, called by a thread that is not its
 *                  process's first, returns 0 and changes nothing: the page keeps the
 *                  protection it had (read-only, after a protect thread's first round), as a
 *                  kernel whose protection change lost a race with another thread would leave
 *                  it. A single-threaded process's mprotect is untouched, and so are the
 *                  executor's own (its process is the loader's).
 *
 * Build: cc -shared -fPIC -O2 -o libracers.so libracers.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* 1: protect-stuck, 0: none. */
static int mode(void)
{
	static int cached = -1;
	if (cached < 0) {
		const char *f = getenv("COWCHECK_RACERS_FAULT");
		cached = f && !strcmp(f, "protect-stuck") ? 1 : 0;
	}
	return cached;
}

/* The process that loaded the library (the executor): its own calls are the harness's. */
static pid_t loader;

__attribute__((constructor)) static void remember_loader(void)
{
	loader = getpid();
}

int mprotect(void *addr, size_t len, int prot)
{
	static int (*real)(void *, size_t, int);
	if (!real)
		real = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "mprotect");
	pid_t me = getpid();
	if (mode() == 1 && me != loader && (pid_t)syscall(SYS_gettid) != me &&
	    len == (size_t)sysconf(_SC_PAGESIZE) && prot == (PROT_READ | PROT_WRITE))
		return 0;
	return real(addr, len, prot);
}
