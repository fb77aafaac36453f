/*
 * libthreadops: an interposed libc whose calls misbehave only when a thread other than the
 * process's main one makes them, to show that cowcheck's op-thread checks (docs/SEMANTICS.md
 * T21, T23) catch what only threads show. Load it into the executor only:
 *
 *   cowcheck run --under "env COWCHECK_THREADOPS_FAULT=munmap-keeps LD_PRELOAD=/path/libthreadops.so"
 *
 * COWCHECK_THREADOPS_FAULT selects one fault:
 *   munmap-keeps  an munmap called by a thread other than the main one (of a nonzero length at
 *                 an aligned address) returns 0 and unmaps nothing: the main thread can still read the page (as if the kernel skipped
 *                 the other CPUs' TLB flush and the page stayed reachable there).
 *   fork-shares   a fork called by a thread other than the main one leaves the child seeing the
 *                 parent's memory, as if the parent's pages stayed writable for the main thread's
 *                 CPU and shared with the child (K15's class, T23): each time the child opens
 *                 a file of /proc/self (maps, pagemap) or makes an ioctl (PROCMAP_QUERY): at
 *                 every view cowcheck or a C reproducer takes, it first copies every private
 *                 anonymous range the program mapped from its parent, so it sees what the
 *                 parent's main thread stored after the fork.
 * A call made by a process's main thread is untouched.
 *
 * Build: cc -shared -fPIC -O2 -o libthreadops.so libthreadops.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* 1: munmap-keeps, 2: fork-shares, 0: none. */
static int mode(void)
{
	static int cached = -1;
	if (cached < 0) {
		const char *f = getenv("COWCHECK_THREADOPS_FAULT");
		cached = !f ? 0 : !strcmp(f, "munmap-keeps") ? 1 : !strcmp(f, "fork-shares") ? 2 : 0;
	}
	return cached;
}

/* The process that loaded the library (cowcheck's executor, or a C reproducer's coordinator):
 * its calls are the harness's. Its children's calls off their main thread are the program's
 * (the zygote and the workers' main threads are untouched anyway). */
static pid_t loader;

__attribute__((constructor)) static void remember_loader(void)
{
	loader = getpid();
}

static int in_program(void)
{
	return getpid() != loader;
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
	/* Only a call that would succeed: the bad-argument errors stay the kernel's. */
	if (mode() == 1 && in_program() && off_main_thread() && len > 0 &&
	    ((unsigned long)addr & 4095) == 0)
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

/* Set in a child of a fork that a thread other than the main one called. */
static int shares_parent;

pid_t fork(void)
{
	static fork_fn real;
	if (!real)
		real = (fork_fn)dlsym(RTLD_NEXT, "fork");
	int shares = mode() == 2 && in_program() && off_main_thread();
	pid_t pid = real();
	if (pid == 0)
		shares_parent = shares;
	return pid;
}

/* In a child that shares its parent: the parent's private ranges, copied over this process's. */
static void copy_parent(void)
{
	pid_t parent = getppid();
	for (int i = 0; i < ntracked; i++) {
		struct iovec local = { tracked[i].addr, tracked[i].len };
		struct iovec remote = { tracked[i].addr, tracked[i].len };
		process_vm_readv(parent, &local, 1, &remote, 1, 0);
	}
}

typedef int (*open_fn)(const char *, int, ...);

static int opened(const char *name, const char *path, int flags, mode_t m)
{
	open_fn real = (open_fn)dlsym(RTLD_NEXT, name);
	if (shares_parent && path && !strncmp(path, "/proc/self/", 11))
		copy_parent();
	return real(path, flags, m);
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
	va_end(ap);
	return opened("open", path, flags, m);
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
	va_end(ap);
	return opened("open64", path, flags, m);
}

typedef int (*ioctl_fn)(int, unsigned long, ...);

int ioctl(int fd, unsigned long request, ...)
{
	static ioctl_fn real;
	if (!real)
		real = (ioctl_fn)dlsym(RTLD_NEXT, "ioctl");
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (shares_parent)
		copy_parent();
	return real(fd, request, arg);
}
