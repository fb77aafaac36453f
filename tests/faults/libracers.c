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
 *   remap-copies   an mremap(MREMAP_MAYMOVE | MREMAP_FIXED) of one page to another address,
 *                  called by a thread that is not its process's first, maps a fresh private
 *                  anonymous page at the destination, copies the bytes there and leaves the
 *                  source mapped, as a kernel that copied a moving page instead of moving its
 *                  page-table entry, and lost the race to unmap the old one, would leave it
 *                  (docs/SEMANTICS.md T13). Single-threaded mremap is untouched.
 *   vmsplice-leak  a vmsplice of one page, called by a thread that is not its process's first
 *                  once the process has forked, writes into the pipe a copy of the page whose
 *                  first 64 bytes are 0xee, as if a fork child's store to its copy showed through
 *                  the pipe (the vmsplice leak, CVE-2020-29374; docs/SEMANTICS.md T14, K3).
 *                  Before a fork, and from a process's first thread, vmsplice is untouched.
 *   pageout-drops  an madvise(MADV_PAGEOUT) of one page, called by a thread that is not its
 *                  process's first, drops the page's data instead (MADV_DONTNEED: a private
 *                  page reads zero from then on), as a kernel that discarded a dirty anonymous
 *                  page it could not swap out would (docs/SEMANTICS.md T16: PAGEOUT never
 *                  changes a byte). From a process's first thread, madvise is untouched.
 *   fault-leak     an madvise(MADV_DONTNEED) of one page, called by a thread that is not its
 *                  process's first once the process has forked, first writes the page's last
 *                  8 bytes (the counter a `fault` thread has just stored) into the newest
 *                  child's copy of the page (process_vm_writev), as the 6.4 per-VMA-lock bug
 *                  (K15) let a thread's stores after fork reach the child's page
 *                  (docs/SEMANTICS.md T17, T2). Before a fork, from a process's first thread,
 *                  and for a child that has gone, madvise is untouched.
 *
 * Build: cc -shared -fPIC -O2 -o libracers.so libracers.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* 1: protect-stuck, 2: remap-copies, 3: vmsplice-leak, 4: pageout-drops, 5: fault-leak,
 * 0: none. */
static int mode(void)
{
	static int cached = -1;
	if (cached < 0) {
		const char *f = getenv("COWCHECK_RACERS_FAULT");
		cached = !f			      ? 0
			 : !strcmp(f, "protect-stuck") ? 1
			 : !strcmp(f, "remap-copies")  ? 2
			 : !strcmp(f, "vmsplice-leak") ? 3
			 : !strcmp(f, "pageout-drops") ? 4
			 : !strcmp(f, "fault-leak")    ? 5
						       : 0;
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

void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	static void *(*real)(void *, size_t, size_t, int, ...);
	if (!real)
		real = (void *(*)(void *, size_t, size_t, int, ...))dlsym(RTLD_NEXT, "mremap");
	va_list ap;
	va_start(ap, flags);
	void *new = (flags & MREMAP_FIXED) ? va_arg(ap, void *) : NULL;
	va_end(ap);
	pid_t me = getpid();
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	if (mode() == 2 && me != loader && (pid_t)syscall(SYS_gettid) != me && old_len == ps &&
	    new_len == ps && flags == (MREMAP_MAYMOVE | MREMAP_FIXED)) {
		void *p = mmap(new, ps, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (p == MAP_FAILED)
			return p;
		memcpy(p, old, ps);
		return p;
	}
	return real(old, old_len, new_len, flags, new);
}

/* Whether this process forked (vmsplice-leak), and its newest child (fault-leak). */
static volatile int forked;
static volatile pid_t newest;

pid_t fork(void)
{
	static pid_t (*real)(void);
	if (!real)
		real = (pid_t(*)(void))dlsym(RTLD_NEXT, "fork");
	pid_t pid = real();
	/* The child has not forked yet (the harness's processes are forks too). */
	if (pid >= 0)
		forked = pid > 0;
	if (pid > 0)
		newest = pid;
	return pid;
}

ssize_t vmsplice(int fd, const struct iovec *iov, size_t n, unsigned int flags)
{
	static ssize_t (*real)(int, const struct iovec *, size_t, unsigned int);
	static unsigned char copy[65536];
	if (!real)
		real = (ssize_t(*)(int, const struct iovec *, size_t, unsigned int))dlsym(RTLD_NEXT,
											     "vmsplice");
	pid_t me = getpid();
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	if (mode() == 3 && forked && me != loader && (pid_t)syscall(SYS_gettid) != me && n == 1 &&
	    iov->iov_len == ps && ps <= sizeof copy) {
		memcpy(copy, iov->iov_base, ps);
		memset(copy, 0xee, 64);
		return write(fd, copy, ps);
	}
	return real(fd, iov, n, flags);
}

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

int madvise(void *addr, size_t len, int advice)
{
	static int (*real)(void *, size_t, int);
	if (!real)
		real = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "madvise");
	pid_t me = getpid();
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	int other = me != loader && (pid_t)syscall(SYS_gettid) != me && len == ps;
	if (mode() == 4 && other && advice == MADV_PAGEOUT)
		return real(addr, len, MADV_DONTNEED);
	if (mode() == 5 && other && forked && newest > 0 && advice == MADV_DONTNEED) {
		/* Read through the kernel too: a page the thread may not read gives EFAULT. */
		uint64_t word;
		struct iovec local = { &word, 8 };
		struct iovec remote = { (char *)addr + ps - 8, 8 };
		if (process_vm_readv(me, &local, 1, &remote, 1, 0) == 8)
			process_vm_writev(newest, &local, 1, &remote, 1, 0);
	}
	return real(addr, len, advice);
}
