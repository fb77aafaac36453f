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
 *   dirty-cow   a forced write (pwrite to /proc/self/mem) in a process where another thread has
 *               called madvise(MADV_DONTNEED) also lands in the parent's memory at the same
 *               address, as Dirty COW's forced write landed in the page the private copy was
 *               made from (docs/SEMANTICS.md T9); into a page the parent may not write, through
 *               the parent's /proc/PID/mem (a forced write, as Dirty COW's into a read-only
 *               page). Only the racing pair shows it: the flag is
 *               set by a MADV_DONTNEED from a thread that is not the process's first.
 *
 * Build: cc -shared -fPIC -O2 -o libthreads.so libthreads.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* 1: fork-peek, 2: dirty-cow, 0: none. */
static int mode(void)
{
	static int cached = -1;
	if (cached < 0) {
		const char *f = getenv("COWCHECK_THREADS_FAULT");
		cached = !f ? 0 : !strcmp(f, "fork-peek") ? 1 : !strcmp(f, "dirty-cow") ? 2 : 0;
	}
	return cached;
}

static int fault_on(void)
{
	return mode() == 1;
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
		/* Page by page, written through /proc/self/mem (a forced write): a page the child
		 * may not write (a racing mprotect left it read-only at the fork) takes the copy
		 * too, and a hole (a racing munmap) is skipped, so the fault shows whatever the
		 * interleaving (docs/SEMANTICS.md T11, T12). */
		static char page[1 << 16];
		long ps = sysconf(_SC_PAGESIZE);
		int mem = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
		for (int i = 0; mem >= 0 && i < ntracked; i++) {
			for (size_t at = 0; at + ps <= tracked[i].len && ps <= (long)sizeof(page); at += ps) {
				char *addr = (char *)tracked[i].addr + at;
				struct iovec local = { page, (size_t)ps };
				struct iovec remote = { addr, (size_t)ps };
				if (process_vm_readv(parent, &local, 1, &remote, 1, 0) == ps)
					pwrite(mem, page, ps, (off_t)(uintptr_t)addr);
			}
		}
		if (mem >= 0)
			close(mem);
	}
	return pid;
}

/* dirty-cow: set (in this process's memory, so per process) once a thread that is not the
 * process's first called madvise(MADV_DONTNEED). */
static volatile int zapper_seen;

typedef int (*madvise_fn)(void *, size_t, int);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);

int madvise(void *addr, size_t len, int advice)
{
	static madvise_fn real;
	if (!real)
		real = (madvise_fn)dlsym(RTLD_NEXT, "madvise");
	if (mode() == 2 && advice == MADV_DONTNEED && gettid() != getpid())
		zapper_seen = 1;
	return real(addr, len, advice);
}

/* The parent process of pid `pid` (0 if unknown), from /proc/PID/stat. */
static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *close_paren = strrchr(buf, ')');
	int ppid = 0;
	char state;
	if (!close_paren || sscanf(close_paren + 1, " %c %d", &state, &ppid) != 2)
		return 0;
	return ppid;
}

/* Whether `fd` is this process's /proc/PID/mem. */
static int is_mem(int fd)
{
	char path[64], target[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0)
		return 0;
	target[n] = 0;
	return !strncmp(target, "/proc/", 6) && n > 4 && !strcmp(target + n - 4, "/mem");
}

static ssize_t dirty_pwrite(pwrite_fn real, int fd, const void *buf, size_t len, off_t off)
{
	ssize_t r = real(fd, buf, len, off);
	if (r == (ssize_t)len && mode() == 2 && zapper_seen && in_program() && is_mem(fd)) {
		pid_t parent = getppid();
		/* Only into a parent that is a program's process (never the executor's). */
		if (parent != loader && parent_of(parent) != loader) {
			struct iovec local = { (void *)buf, len };
			struct iovec remote = { (void *)off, len };
			if (process_vm_writev(parent, &local, 1, &remote, 1, 0) != (ssize_t)len) {
				/* A page the parent may not write (process_vm_writev does not force):
				 * forced through the parent's /proc/PID/mem, as Dirty COW's write
				 * reached a read-only page. */
				char path[64];
				snprintf(path, sizeof(path), "/proc/%d/mem", (int)parent);
				int mem = open(path, O_WRONLY | O_CLOEXEC);
				if (mem >= 0) {
					real(mem, buf, len, off);
					close(mem);
				}
			}
		}
	}
	return r;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	static pwrite_fn real;
	if (!real)
		real = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite");
	return dirty_pwrite(real, fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
	static pwrite_fn real;
	if (!real)
		real = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite64");
	return dirty_pwrite(real, fd, buf, len, off);
}
