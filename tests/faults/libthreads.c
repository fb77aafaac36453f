/*
 * libthreads: an interposed libc whose fork misbehaves only when the process has more than one
 * thread, to show that cowcheck's racing checks (docs/SEMANTICS.md T2) catch what only
 * concurrency shows. Load it into the executor only:
 *
 *   cowcheck run --under "env COWCHECK_THREADS_FAULT=fork-peek LD_PRELOAD=/path/libthreads.so"
 *
 * COWCHECK_THREADS_FAULT selects one fault:
 *   fork-peek   a fork of a process with more than one thread lets the child see the parent's
 *               memory for a moment after the fork: the child waits 20 ms, then copies every
 *               private anonymous range that the program mapped from its parent (as a kernel
 *               that shared the pages a little too long would), so it sees what another thread
 *               of the parent stored after fork returned (Go's FreeBSD fork corruption, the 6.4
 *               per-VMA-lock race). A single-threaded fork is untouched.
 *
 * Build: cc -shared -fPIC -O2 -o libthreads.so libthreads.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int fault_on(void)
{
	static int cached = -1;
	if (cached < 0) {
		const char *f = getenv("COWCHECK_THREADS_FAULT");
		cached = f && !strcmp(f, "fork-peek");
	}
	return cached;
}

/* The process that loaded the library (the executor): its mappings and its zygote's are the
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

/* Private anonymous ranges a program's process mapped (a guess: unmaps are not followed; a
 * copy to a range no longer mapped fails harmlessly). */
static struct { void *addr; size_t len; } tracked[1024];
static int ntracked;

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef pid_t (*fork_fn)(void);

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static mmap_fn real;
	if (!real)
		real = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
	void *p = real(addr, len, prot, flags, fd, off);
	if (p != MAP_FAILED && fault_on() && in_program() && (flags & MAP_ANONYMOUS) &&
	    (flags & MAP_PRIVATE) && ntracked < 1024) {
		tracked[ntracked].addr = p;
		tracked[ntracked].len = len;
		ntracked++;
	}
	return p;
}

/* The number of threads of this process, from /proc/self/status (0 if unknown). */
static int threads(void)
{
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *t = strstr(buf, "\nThreads:");
	return t ? atoi(t + 9) : 0;
}

pid_t fork(void)
{
	static fork_fn real;
	if (!real)
		real = (fork_fn)dlsym(RTLD_NEXT, "fork");
	int many = fault_on() && in_program() && threads() > 1;
	pid_t pid = real();
	if (pid == 0 && many) {
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
