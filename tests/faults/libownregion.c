/*
 * libownregion: a stand-in for a runtime that makes a region of its own in the client, the
 * way valgrind maps its page for vgdb (a shared mapping of a file, read and write) into a
 * process after its first mmap. Load it into the executor only:
 *
 *   cowcheck run --under "env LD_PRELOAD=/path/libownregion.so"
 *
 * In every process forked from the one that loaded it (the executor's program trees), the
 * first mmap also maps one page of an unlinked file in $TMPDIR (or /tmp), MAP_SHARED, read
 * and write, next to nothing the program asked for. Children inherit it, as they inherit
 * valgrind's. Nothing else changes: a cowcheck that recognises the runtime's own regions
 * reports no divergence under it, and one that does not reports a layout divergence.
 *
 * Build: cc -shared -fPIC -O2 -o libownregion.so libownregion.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

static pid_t loader;
static int made;

__attribute__((constructor)) static void note_loader(void)
{
	loader = getpid();
}

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);

static void make_own_region(mmap_fn real)
{
	char path[256];
	const char *dir = getenv("TMPDIR");
	snprintf(path, sizeof path, "%s/ownregion-%d-XXXXXX", dir && *dir ? dir : "/tmp",
		 (int)getpid());
	int fd = mkstemp(path);
	if (fd < 0)
		return;
	unlink(path);
	long ps = sysconf(_SC_PAGESIZE);
	if (ftruncate(fd, ps) == 0)
		real(NULL, ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static mmap_fn real;
	if (!real)
		real = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
	void *p = real(addr, len, prot, flags, fd, off);
	if (!made && getpid() != loader) {
		made = 1;
		make_own_region(real);
	}
	return p;
}
