/*
 * libfault: an interposed libc that misbehaves on purpose, to show that cowcheck catches each
 * misbehaviour. Load it into the executor only:
 *
 *   cowcheck run --under "env COWCHECK_FAULT=private-shared LD_PRELOAD=/path/libfault.so"
 *
 * COWCHECK_FAULT selects one fault:
 *   private-shared  private anonymous mappings are silently made shared
 *   shared-private  shared anonymous mappings are silently made private
 *   fork-zero       a fork child starts with zero pages instead of copies of private memory
 *   dirty-mmap      fresh anonymous mappings are not zero-filled
 *   munmap-less     munmap unmaps one page less than asked (nothing, for one page)
 *   mmap-more       mmap maps one page more than asked
 *   mprotect-noop   mprotect changes nothing but returns 0
 *   dontneed-ignored    madvise(MADV_DONTNEED) does nothing but returns 0
 *   wipeonfork-ignored  madvise(MADV_WIPEONFORK) does nothing but returns 0
 *   dontfork-ignored    madvise(MADV_DONTFORK) does nothing but returns 0
 *   mremap-dirty-tail   mremap leaves non-zero bytes in the part it grew
 *   private-shared-once  the first private anonymous mapping of the whole run is made shared,
 *                   no later one (a misbehaviour that does not recur: cowcheck must report it
 *                   as nondeterministic); the run is one file, COWCHECK_FAULT_FILE, created
 *                   by the first misbehaving call
 *   fork-eagain     a fork in a program's process fails with EAGAIN, as under a process limit
 *                   (an environment fault: cowcheck must say so, never report a divergence)
 *
 * Build: cc -shared -fPIC -O2 -o libfault.so libfault.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum fault {
	NONE, PRIVATE_SHARED, SHARED_PRIVATE, FORK_ZERO, DIRTY_MMAP, MUNMAP_LESS, MMAP_MORE,
	MPROTECT_NOOP, DONTNEED_IGNORED, WIPEONFORK_IGNORED, DONTFORK_IGNORED, MREMAP_DIRTY_TAIL,
	FORK_EAGAIN, PRIVATE_SHARED_ONCE
};

static enum fault which(void)
{
	static int cached = -1;
	if (cached < 0) {
		const char *f = getenv("COWCHECK_FAULT");
		cached = NONE;
		if (!f)
			;
		else if (!strcmp(f, "private-shared"))
			cached = PRIVATE_SHARED;
		else if (!strcmp(f, "shared-private"))
			cached = SHARED_PRIVATE;
		else if (!strcmp(f, "fork-zero"))
			cached = FORK_ZERO;
		else if (!strcmp(f, "dirty-mmap"))
			cached = DIRTY_MMAP;
		else if (!strcmp(f, "munmap-less"))
			cached = MUNMAP_LESS;
		else if (!strcmp(f, "mmap-more"))
			cached = MMAP_MORE;
		else if (!strcmp(f, "mprotect-noop"))
			cached = MPROTECT_NOOP;
		else if (!strcmp(f, "dontneed-ignored"))
			cached = DONTNEED_IGNORED;
		else if (!strcmp(f, "wipeonfork-ignored"))
			cached = WIPEONFORK_IGNORED;
		else if (!strcmp(f, "dontfork-ignored"))
			cached = DONTFORK_IGNORED;
		else if (!strcmp(f, "mremap-dirty-tail"))
			cached = MREMAP_DIRTY_TAIL;
		else if (!strcmp(f, "fork-eagain"))
			cached = FORK_EAGAIN;
		else if (!strcmp(f, "private-shared-once"))
			cached = PRIVATE_SHARED_ONCE;
	}
	return (enum fault)cached;
}

/* Private anonymous ranges handed out, for fork-zero. */
static struct { void *addr; size_t len; } tracked[1024];
static int ntracked;

/* The process that loaded the library: the executor. Its forks (the zygote) and the zygote's
 * (a program's root) go through; forks inside a program fail with fork-eagain. */
static pid_t loader;

__attribute__((constructor)) static void remember_loader(void)
{
	loader = getpid();
}

/* Whether the caller is a process of a program (a root or below), not the executor or its
 * zygote, whose own calls are the harness's. */
static int in_program(void)
{
	return getpid() != loader && getppid() != loader;
}

/* Whether this is the first call of the whole run to ask: the one that creates
 * COWCHECK_FAULT_FILE (O_EXCL), whichever process of the run it is. */
static int first_time(void)
{
	const char *path = getenv("COWCHECK_FAULT_FILE");
	if (!path)
		return 0;
	int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef int (*munmap_fn)(void *, size_t);
typedef pid_t (*fork_fn)(void);

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static mmap_fn real;
	if (!real)
		real = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
	long page = sysconf(_SC_PAGESIZE);
	int anon = flags & MAP_ANONYMOUS;
	switch (which()) {
	case PRIVATE_SHARED:
		if (anon && (flags & MAP_PRIVATE))
			flags = (flags & ~MAP_PRIVATE) | MAP_SHARED;
		break;
	case PRIVATE_SHARED_ONCE:
		if (anon && (flags & MAP_PRIVATE) && !addr && len && in_program() && first_time())
			flags = (flags & ~MAP_PRIVATE) | MAP_SHARED;
		break;
	case SHARED_PRIVATE:
		if (anon && (flags & MAP_SHARED))
			flags = (flags & ~MAP_SHARED) | MAP_PRIVATE;
		break;
	case MMAP_MORE:
		if (anon)
			len += page;
		break;
	default:
		break;
	}
	void *p = real(addr, len, prot, flags, fd, off);
	if (p == MAP_FAILED)
		return p;
	if (which() == DIRTY_MMAP && anon && (prot & PROT_WRITE))
		memset(p, 0x5a, 1);
	if (which() == FORK_ZERO && anon && (flags & MAP_PRIVATE) && ntracked < 1024) {
		tracked[ntracked].addr = p;
		tracked[ntracked].len = len;
		ntracked++;
	}
	return p;
}

int munmap(void *addr, size_t len)
{
	static munmap_fn real;
	if (!real)
		real = (munmap_fn)dlsym(RTLD_NEXT, "munmap");
	if (which() == MUNMAP_LESS) {
		long page = sysconf(_SC_PAGESIZE);
		if (len <= (size_t)page)
			return 0;
		len -= page;
	}
	return real(addr, len);
}

pid_t fork(void)
{
	static fork_fn real;
	if (!real)
		real = (fork_fn)dlsym(RTLD_NEXT, "fork");
	if (which() == FORK_EAGAIN && in_program()) {
		errno = EAGAIN;
		return -1;
	}
	pid_t pid = real();
	if (pid == 0 && which() == FORK_ZERO) {
		for (int i = 0; i < ntracked; i++)
			madvise(tracked[i].addr, tracked[i].len, MADV_DONTNEED);
	}
	return pid;
}

typedef int (*mprotect_fn)(void *, size_t, int);
typedef int (*madvise_fn)(void *, size_t, int);
typedef void *(*mremap_fn)(void *, size_t, size_t, int, ...);

int mprotect(void *addr, size_t len, int prot)
{
	static mprotect_fn real;
	if (!real)
		real = (mprotect_fn)dlsym(RTLD_NEXT, "mprotect");
	if (which() == MPROTECT_NOOP)
		return 0;
	return real(addr, len, prot);
}

int madvise(void *addr, size_t len, int advice)
{
	static madvise_fn real;
	if (!real)
		real = (madvise_fn)dlsym(RTLD_NEXT, "madvise");
	if ((which() == DONTNEED_IGNORED && advice == MADV_DONTNEED) ||
	    (which() == WIPEONFORK_IGNORED && advice == MADV_WIPEONFORK) ||
	    (which() == DONTFORK_IGNORED && advice == MADV_DONTFORK))
		return 0;
	return real(addr, len, advice);
}

/* mremap is variadic: the fifth argument (new_address) is read only with MREMAP_FIXED or
 * MREMAP_DONTUNMAP, but cowcheck always passes it, and so does this wrapper. */
void *mremap(void *old, size_t old_size, size_t new_size, int flags, ...)
{
	static mremap_fn real;
	if (!real)
		real = (mremap_fn)dlsym(RTLD_NEXT, "mremap");
	va_list ap;
	va_start(ap, flags);
	void *new_address = va_arg(ap, void *);
	va_end(ap);
	void *p = real(old, old_size, new_size, flags, new_address);
	if (p != MAP_FAILED && which() == MREMAP_DIRTY_TAIL && new_size > old_size) {
		/* Through process_vm_writev on ourselves, which fails with EFAULT instead of
		 * raising SIGBUS or SIGSEGV where the tail cannot be written (a shared object's
		 * tail past its end, a read-only mapping). */
		unsigned char dirt = 0x5a;
		struct iovec local = { &dirt, 1 };
		struct iovec remote = { (char *)p + old_size, 1 };
		process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
	}
	return p;
}
