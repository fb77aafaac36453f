/*
 * libphys: an interposed libc whose misbehaviours change which page backs what, never a value,
 * so that only cowcheck's physical channel (docs/SEMANTICS.md part 11) can catch them. Load it
 * into the executor only:
 *
 *   cowcheck run --under "env COWCHECK_PHYS_FAULT=fork-copy LD_PRELOAD=/path/libphys.so"
 *
 * COWCHECK_PHYS_FAULT selects one fault:
 *   fork-copy       the child of a fork copies every private page it shares with its parent at
 *                   once (it rewrites each present, not exclusively mapped page of every
 *                   private writable mapping with its own bytes): eager copy instead of
 *                   copy-on-write
 *   madvise-zero    madvise(MADV_DONTNEED) and madvise(MADV_FREE) on private writable memory
 *                   only zero-fill the range (and return 0) instead of freeing it
 *   mmap-prefault   anonymous mmap prefaults every page (MAP_POPULATE added)
 *   mincore-all     mincore says every page is resident (what an emulator that does not track
 *                   residency might answer)
 *   mincore-pte     mincore says a page is resident exactly when this process's page table maps
 *                   it (pagemap's present bit), for shared memory too, instead of asking the
 *                   page cache
 *   munmap-alive    munmap of shared memory first hands the object to a hidden holder: a
 *                   process forked outside the program's tree that drops its copies of every
 *                   private page, faults in every page of the shared range being unmapped, and
 *                   sleeps while it keeps them mapped (PR_SET_PDEATHSIG kills it with the
 *                   process that made it): the object outlives its last mapper in the program
 *                   and its pages stay mapped twice
 *
 * Only a program's processes misbehave (not the executor or its zygote). Nothing here
 * allocates: the fork wrapper reads /proc/self/maps and /proc/self/pagemap into static
 * buffers.
 *
 * Build: cc -shared -fPIC -O2 -o libphys.so libphys.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

enum fault { NONE, FORK_COPY, MADVISE_ZERO, MMAP_PREFAULT, MINCORE_ALL, MINCORE_PTE, MUNMAP_ALIVE };

static enum fault which(void)
{
	static int cached = -1;
	if (cached < 0) {
		const char *f = getenv("COWCHECK_PHYS_FAULT");
		cached = NONE;
		if (!f)
			;
		else if (!strcmp(f, "fork-copy"))
			cached = FORK_COPY;
		else if (!strcmp(f, "madvise-zero"))
			cached = MADVISE_ZERO;
		else if (!strcmp(f, "mmap-prefault"))
			cached = MMAP_PREFAULT;
		else if (!strcmp(f, "mincore-all"))
			cached = MINCORE_ALL;
		else if (!strcmp(f, "mincore-pte"))
			cached = MINCORE_PTE;
		else if (!strcmp(f, "munmap-alive"))
			cached = MUNMAP_ALIVE;
	}
	return (enum fault)cached;
}

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

/* /proc/self/maps, read whole into a static buffer; its length, or 0. */
static char maps[1 << 20];

static size_t read_maps(void)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, maps + n, sizeof(maps) - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	maps[n] = 0;
	return n;
}

/* Calls f(start, end, perms, name) for each line of the maps read last. */
static void each_mapping(void (*f)(uintptr_t, uintptr_t, const char *, const char *))
{
	char *line = maps;
	while (*line) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		char *end_s;
		uintptr_t start = strtoull(line, &end_s, 16);
		uintptr_t end = strtoull(end_s + 1, &end_s, 16);
		const char *perms = end_s + 1;
		/* The name: after five fields (range, perms, offset, device, inode). */
		const char *name = perms;
		for (int field = 0; field < 4 && name; field++) {
			name = strchr(name, ' ');
			while (name && *name == ' ')
				name++;
		}
		f(start, end, perms, name ? name : "");
		if (!nl)
			break;
		line = nl + 1;
	}
}

static int pagemap_fd = -1;

static void copy_shared_pages(uintptr_t start, uintptr_t end, const char *perms, const char *name)
{
	if (perms[0] != 'r' || perms[1] != 'w' || perms[3] != 'p' || name[0] == '[')
		return;
	long page = sysconf(_SC_PAGESIZE);
	for (uintptr_t a = start; a < end; a += page) {
		uint64_t e = 0;
		if (pread(pagemap_fd, &e, 8, (off_t)(a / page * 8)) != 8)
			continue;
		/* Present (63), not exclusively mapped (56): shared with the parent (or the zero
		 * page; an eager copy copies that too). */
		if ((e >> 63 & 1) && !(e >> 56 & 1)) {
			volatile char *p = (volatile char *)a;
			*p = *p;
		}
	}
}

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef pid_t (*fork_fn)(void);
typedef int (*madvise_fn)(void *, size_t, int);

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static mmap_fn real;
	if (!real)
		real = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
	if (which() == MMAP_PREFAULT && (flags & MAP_ANONYMOUS) && in_program())
		flags |= MAP_POPULATE;
	return real(addr, len, prot, flags, fd, off);
}

pid_t fork(void)
{
	static fork_fn real;
	if (!real)
		real = (fork_fn)dlsym(RTLD_NEXT, "fork");
	pid_t pid = real();
	if (pid == 0 && which() == FORK_COPY && in_program()) {
		pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (pagemap_fd >= 0 && read_maps()) {
			each_mapping(copy_shared_pages);
			close(pagemap_fd);
		}
	}
	return pid;
}

/* Whether [addr, addr + len) lies in private writable mappings only. */
static uintptr_t want_start, want_end, covered;

static void cover(uintptr_t start, uintptr_t end, const char *perms, const char *name)
{
	(void)name;
	if (perms[0] != 'r' || perms[1] != 'w' || perms[3] != 'p')
		return;
	uintptr_t s = start > want_start ? start : want_start;
	uintptr_t e = end < want_end ? end : want_end;
	if (s < e)
		covered += e - s;
}

/* Whether a page of the range is a guard region (pagemap bit 58, 6.15+): a store there would
 * kill the process, which values would catch. */
static int any_guard(uintptr_t start, uintptr_t end, long page)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int guard = fd < 0;
	for (uintptr_t a = start; fd >= 0 && a < end && !guard; a += page) {
		uint64_t e = 0;
		guard = pread(fd, &e, 8, (off_t)(a / page * 8)) != 8 || (e >> 58 & 1);
	}
	if (fd >= 0)
		close(fd);
	return guard;
}

int madvise(void *addr, size_t len, int advice)
{
	static madvise_fn real;
	if (!real)
		real = (madvise_fn)dlsym(RTLD_NEXT, "madvise");
	if (which() == MADVISE_ZERO && (advice == MADV_DONTNEED || advice == MADV_FREE) && len &&
	    in_program() && read_maps()) {
		long page = sysconf(_SC_PAGESIZE);
		want_start = (uintptr_t)addr;
		want_end = ((uintptr_t)addr + len + page - 1) / page * page;
		covered = 0;
		each_mapping(cover);
		if (covered == want_end - want_start && !any_guard(want_start, want_end, page)) {
			memset(addr, 0, want_end - want_start);
			return 0;
		}
	}
	return real(addr, len, advice);
}

typedef int (*mincore_fn)(void *, size_t, unsigned char *);

int mincore(void *addr, size_t len, unsigned char *vec)
{
	static mincore_fn real;
	if (!real)
		real = (mincore_fn)dlsym(RTLD_NEXT, "mincore");
	int r = real(addr, len, vec);
	if (r == 0 && which() == MINCORE_ALL && in_program()) {
		long page = sysconf(_SC_PAGESIZE);
		memset(vec, 1, (len + page - 1) / page);
	}
	if (r == 0 && which() == MINCORE_PTE && in_program()) {
		long page = sysconf(_SC_PAGESIZE);
		int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return r;
		for (size_t i = 0; i < (len + page - 1) / page; i++) {
			uint64_t e = 0;
			uintptr_t a = (uintptr_t)addr + i * page;
			if (pread(fd, &e, 8, (off_t)(a / page * 8)) == 8)
				vec[i] = (unsigned char)(e >> 63 & 1);
		}
		close(fd);
	}
	return r;
}

/* munmap-alive: the shared ranges being unmapped, and the private mappings the holder drops
 * (collected from the maps read last into fixed arrays: nothing allocated). */
#define MAX_RANGES 512
static uintptr_t held[MAX_RANGES][2], dropped[MAX_RANGES][2];
static int nheld, ndropped;
static uintptr_t tcb;

static void collect(uintptr_t start, uintptr_t end, const char *perms, const char *name)
{
	if (perms[3] == 's') {
		uintptr_t s = start > want_start ? start : want_start;
		uintptr_t e = end < want_end ? end : want_end;
		if (s < e && nheld < MAX_RANGES) {
			held[nheld][0] = s;
			held[nheld][1] = e;
			nheld++;
		}
		return;
	}
	/* A private anonymous mapping (or private /dev/zero) whose pages the fork shared: not the
	 * stack, nor the one holding the thread's TCB (the stack protector's canary). */
	int anon = name[0] == 0 || !strncmp(name, "/dev/zero", 9);
	if (perms[3] == 'p' && anon && !(start <= tcb && tcb < end) && ndropped < MAX_RANGES) {
		dropped[ndropped][0] = start;
		dropped[ndropped][1] = end;
		ndropped++;
	}
}

/* The holder: keeps the shared ranges mapped, with every page faulted in, until its parent
 * dies. Once it has dropped its private memory (libc's own data among it) it makes only raw
 * system calls, on what it copied to its stack. */
static void hold(int ready, pid_t parent, long page)
{
	uintptr_t h[MAX_RANGES][2], d[MAX_RANGES][2];
	int nh = nheld, nd = ndropped;
	memcpy(h, held, sizeof(h[0]) * (size_t)nh);
	memcpy(d, dropped, sizeof(d[0]) * (size_t)nd);
	syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (syscall(SYS_getppid) != parent)
		syscall(SYS_exit_group, 0);
	for (int i = 0; i < nd; i++)
		syscall(SYS_madvise, d[i][0], d[i][1] - d[i][0], MADV_DONTNEED);
	/* Faults in through /proc/self/mem, which fails on a guard page or past the object's end
	 * instead of killing the holder. */
	static const char path[] = "/proc/self/mem";
	char p[sizeof(path)];
	for (size_t i = 0; i < sizeof(path); i++)
		p[i] = path[i];
	long mem = syscall(SYS_open, p, O_RDONLY | O_CLOEXEC);
	char buf[8];
	for (int i = 0; mem >= 0 && i < nh; i++)
		for (uintptr_t a = h[i][0]; a < h[i][1]; a += (uintptr_t)page)
			syscall(SYS_pread64, mem, buf, 1, a);
	buf[0] = 'h';
	syscall(SYS_write, ready, buf, 1);
	for (;;)
		syscall(SYS_pause);
}

typedef int (*munmap_fn)(void *, size_t);

int munmap(void *addr, size_t len)
{
	static munmap_fn real;
	if (!real)
		real = (munmap_fn)dlsym(RTLD_NEXT, "munmap");
	if (which() == MUNMAP_ALIVE && len && in_program() && read_maps()) {
		long page = sysconf(_SC_PAGESIZE);
		want_start = (uintptr_t)addr;
		want_end = ((uintptr_t)addr + len + page - 1) / page * page;
		nheld = ndropped = 0;
		tcb = (uintptr_t)pthread_self();
		each_mapping(collect);
		int p[2];
		if (nheld && pipe2(p, O_CLOEXEC) == 0) {
			pid_t parent = getpid();
			/* A raw fork: no atfork handlers of the program's libc run for the holder. */
			pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
			if (pid == 0) {
				hold(p[1], parent, page);
			}
			close(p[1]);
			char c;
			if (pid > 0)
				(void)read(p[0], &c, 1);
			close(p[0]);
		}
	}
	return real(addr, len);
}
