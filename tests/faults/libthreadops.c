/*
 * libthreadops: an interposed libc whose calls misbehave only when a thread other than the
 * process's main one makes them, to show that cowcheck's op-thread checks (docs/SEMANTICS.md
 * T21, T23) catch what only threads show. Load it into the executor only:
 *
 *   cowcheck run --under "env COWCHECK_THREADOPS_FAULT=munmap-keeps LD_PRELOAD=/path/libthreadops.so"
 *
 * COWCHECK_THREADOPS_FAULT selects one fault:
 *   munmap-keeps  an munmap called by a thread other than the main one returns 0 and unmaps
 *                 nothing: the main thread can still read the page (as if the kernel skipped
 *                 the other CPUs' TLB flush and the page stayed reachable there).
 *   fork-peek     a fork called by a thread other than the main one lets the child see the
 *                 parent's memory for a moment after the fork: the child waits 20 ms, then copies
 *                 every private anonymous range the program mapped from its parent, so it sees
 *                 what the parent's main thread stored after fork returned (the write-protection
 *                 of the parent's pages not holding on the main thread's CPU, K15's class).
 * A call made by a process's main thread is untouched.
 *
 * Build: cc -shared -fPIC -O2 -o libthreadops.so libthreadops.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* 1: munmap-keeps, 2: fork-peek, 0: none. */
static int mode(void)
{
	static int cached = -1;
	if (cached < 0) {
		const char *f = getenv("COWCHECK_THREADOPS_FAULT");
		cached = !f ? 0 : !strcmp(f, "munmap-keeps") ? 1 : !strcmp(f, "fork-peek") ? 2 : 0;
	}
	return cached;
}

/* The process that loaded the library (the executor): its calls and its zygote's are the
 * harness's. */
static pid_t loader;

__attribute__((constructor)) static void remember_loader(void)
{
	loader = getpid();
}

static int in_program(void)
{
	return getpid() != loader && getppid() != loader;
}

static int off_main_thread(void)
{
	return gettid() != getpid();
}

typedef int (*munmap_fn)(void *, size_t);
typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef pid_t (*fork_fn)(void);

int munmap(void *addr, size_t len)
{
	static munmap_fn real;
	if (!real)
		real = (munmap_fn)dlsym(RTLD_NEXT, "munmap");
	if (mode() == 1 && in_program() && off_main_thread())
		return 0;
	return real(addr, len);
}

/* Private anonymous ranges a program's process mapped (a guess: unmaps are not followed; a
 * copy from a range no longer mapped fails harmlessly). */
static struct { void *addr; size_t len; } tracked[1024];
static int ntracked;

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static mmap_fn real;
	if (!real)
		real = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
	void *p = real(addr, len, prot, flags, fd, off);
	if (p != MAP_FAILED && mode() == 2 && in_program() && (flags & MAP_ANONYMOUS) &&
	    (flags & MAP_PRIVATE) && ntracked < 1024) {
		tracked[ntracked].addr = p;
		tracked[ntracked].len = len;
		ntracked++;
	}
	return p;
}

pid_t fork(void)
{
	static fork_fn real;
	if (!real)
		real = (fork_fn)dlsym(RTLD_NEXT, "fork");
	int peek = mode() == 2 && in_program() && off_main_thread();
	pid_t pid = real();
	if (pid == 0 && peek) {
		pid_t parent = getppid();
		usleep(20000);
		for (int i = 0; i < ntracked; i++) {
			struct iovec local = { tracked[i].addr, tracked[i].len };
			struct iovec remote = { tracked[i].addr, tracked[i].len };
			process_vm_readv(parent, &local, 1, &remote, 1, 0);
		}
	}
	return pid;
}
