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
 *
 * Build: cc -shared -fPIC -O2 -o libfault.so libfault.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

enum fault { NONE, PRIVATE_SHARED, SHARED_PRIVATE, FORK_ZERO, DIRTY_MMAP, MUNMAP_LESS, MMAP_MORE };

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
	}
	return (enum fault)cached;
}

/* Private anonymous ranges handed out, for fork-zero. */
static struct { void *addr; size_t len; } tracked[1024];
static int ntracked;

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
	pid_t pid = real();
	if (pid == 0 && which() == FORK_ZERO) {
		for (int i = 0; i < ntracked; i++)
			madvise(tracked[i].addr, tracked[i].len, MADV_DONTNEED);
	}
	return pid;
}
