/*
 * The runtime of cowcheck's C reproducers: everything a reproducer does that does not depend on
 * the program it replays. The generator (src/report/repro_c/) pastes this file verbatim into
 * every reproducer, between the program's size macros (above it) and the program's tables
 * (below it), so that a reproducer stays one standalone C file: cc repro.c.
 *
 * A coordinator process forks the root of the program's process tree; every process of the tree
 * is a worker that waits on its own pipe for the index of the next op, performs it on its own
 * memory and writes back what it saw (a fatal SIGSEGV or SIGBUS is reported by an SA_SIGINFO
 * handler, then delivered for real). The coordinator compares each answer with what the model
 * predicts (the op's row in ops[]), and after every fork and exit and at the end asks every live
 * process to check each page of every mapping handle (its rows in checks[]). Output is KTAP; the
 * exit status is 0 if everything matched, 1 if not, 4 (skip) on a page size other than the one
 * the reproducer was generated for.
 *
 * What the program supplies, before this text:
 *   PAGE_SIZE_GENERATED  the page size the model assumed
 *   NPROC, NMAP          process handles p0..p(NPROC-1), mapping handles m0..m(NMAP-1)
 *   NOPS, NCHECKS        entries of ops[] and checks[], each followed by an end marker
 *   MAX_SPAN_PAGES       the most pages one op may touch (cowcheck's MAX_MAP_PAGES)
 * and after it: map_pages[NMAP], ops[NOPS + 1] and checks[NCHECKS + 1] (declared below).
 *
 * To compile the runtime alone (to read, lint or change it), with an empty program:
 *   cc -std=c11 -Wall -Wextra -Werror -DCOWCHECK_RUNTIME_ONLY -o runtime runtime.c
 * (PAGE_SIZE_GENERATED defaults to 4096 there; pass -DPAGE_SIZE_GENERATED=N to match.)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef COWCHECK_RUNTIME_ONLY
/* The runtime alone: an empty program (no ops, no checks), so that this file is a complete
 * translation unit. A generated reproducer defines these before this text instead. */
#ifndef PAGE_SIZE_GENERATED
#define PAGE_SIZE_GENERATED 4096
#endif
#define NPROC 1
#define NMAP 1
#define NOPS 0
#define NCHECKS 0
#define MAX_SPAN_PAGES 1024
#endif
#ifndef NTHREAD
#define NTHREAD 1
#endif
/* Op threads (docs/SEMANTICS.md T20): thread handles t0..t(NOPTHREAD-1). */
#ifndef NOPTHREAD
#define NOPTHREAD 1
#endif

#if !defined(PAGE_SIZE_GENERATED) || !defined(NPROC) || !defined(NMAP) || !defined(NOPS)
#error "no program: compile a generated reproducer, or this file with -DCOWCHECK_RUNTIME_ONLY"
#elif !defined(NCHECKS) || !defined(MAX_SPAN_PAGES)
#error "no program: compile a generated reproducer, or this file with -DCOWCHECK_RUNTIME_ONLY"
#endif

/* Every op and every state check is one KTAP test. */
#define NTESTS (NOPS + NCHECKS)

enum verb { V_END, V_MAP, V_WRITE, V_READ, V_FORK, V_EXIT, V_UNMAP, V_PROTECT, V_ADVISE, V_REMAP,
	    V_INVALID, V_POKE, V_VMSPLICE, V_PIPE_READ, V_ALLOC, V_FREE, V_TUNE, V_AWRITE, V_AREAD,
	    V_VFORK, V_RACE, V_STOP, V_CLONE, V_THREAD, V_BY, V_JOIN };
/* race: what the thread does (cowcheck's RaceKind). */
enum race_kind { RK_WRITE, RK_DONTNEED, RK_POKE, RK_READ, RK_PROTECT, RK_UNMAP, RK_REMAP,
		 RK_VMSPLICE, RK_FREE, RK_PAGEOUT, RK_FAULT };
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
/* stop of a reader (RK_READ, docs/SEMANTICS.md T10): what its loads must have been: W_EXACT
 * every one `word`; W_CONST one value; W_MONO never going down; W_OPEN one value, or it and
 * then 0 (a lazily freed page reclaimed). */
enum watch { W_NONE, W_EXACT, W_CONST, W_MONO, W_OPEN };
/* How a page's bytes are checked where a racing thread decides its last 8 bytes (the counter;
 * docs/SEMANTICS.md T1-T9): R_EXACT by the digest; otherwise the page with its last word zeroed
 * must have digest `base`, and the word must be: R_FREE any value (the thread is running);
 * R_FORK in before..=after + 1 of fork op `slot`'s counter of thread `thread` (or 0 if `zero`),
 * and the same at every later look of this process (T2, T9); R_ROUNDS the rounds that stop op
 * `slot` reported (T1). */
enum race_check { R_EXACT, R_FREE, R_FORK, R_ROUNDS };
struct race {
	int kind, slot, thread, zero;
	uint64_t base;
};
/* The allocator ops (cowcheck's docs/SEMANTICS.md part 14): alloc's call, tune's setting. */
enum alloc_call { ALLOC_MALLOC, ALLOC_CALLOC, ALLOC_REALLOC, ALLOC_MEMALIGN, ALLOC_ALIGNED };
enum tune { TUNE_MMAP_THRESHOLD, TUNE_MMAP_MAX, TUNE_TRIM_THRESHOLD, TUNE_TRIM };
/* A span of a block is digested per unit of this many bytes from the block's first byte. */
#define ALLOC_UNIT 4096
enum via { VIA_MEM, VIA_VM };
enum how { HOW_NONE, HOW_FIXED, HOW_NOREPLACE, HOW_HINT, HOW_FIXED_NOREPLACE };

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
enum kind { K_PRIVATE, K_SHARED, K_PRIVATE_ZERO, K_SHARED_ZERO };
enum result { RES_SKIPPED, RES_OK, RES_READ, RES_KILLED, RES_FAILED };
/* invalid: the call, and its one bad argument. */
enum call { CALL_MMAP, CALL_MUNMAP, CALL_MPROTECT, CALL_MADVISE, CALL_MREMAP };
enum bad { BAD_ZERO_LENGTH, BAD_UNALIGNED, BAD_OVERFLOW, BAD_UNKNOWN_ADVICE, BAD_UNKNOWN_PROT,
	   BAD_UNKNOWN_FLAGS };

struct op {
	int verb;                  /* V_* */
	int proc;                  /* the process handle that performs the op */
	int map;                   /* the mapping handle, -1 for none */
	int kind;                  /* map: K_*; fork, clone: the child's process handle */
	int first, npages;         /* pages [first, first + npages) of the mapping */
	int tail;                  /* map, unmap, protect, advise, remap: the length ends tail bytes
	                              into its last page (0: the whole page) */
	int lo, hi;                /* bytes [lo, hi) of each page; hi 0: the whole page */
	int ramp, byte;            /* write, poke: a ramp (byte + offset % 251) or a fill of byte */
	int via;                   /* poke: VIA_MEM (pwrite on /proc/self/mem, a forced write) or
	                              VIA_VM (process_vm_writev on ourselves) */
	int how;                   /* map: HOW_* placement at page at_page of handle at_map */
	int at_map, at_page;       /* map with placement; remap: MREMAP_FIXED target (-1: none) */
	int at_byte;               /* ... and this many bytes into that page (unaligned) */
	int fd;                    /* map: pass (or map) the program's /dev/zero descriptor */
	int off_pages, off_bytes;  /* map: the offset, off_pages pages and off_bytes bytes */
	int hugetlb;               /* map: MAP_HUGETLB, the length rounded up to whole huge pages */
	int prot;                  /* protect: PROT_* */
	int advice;                /* advise: MADV_* number */
	int new_pages, new_tail;   /* remap: the new size (its last page cut after new_tail bytes) */
	int remap_flags, result_map; /* remap: MREMAP_*, the result's handle */
	int call, bad;             /* invalid: CALL_* with one BAD_* argument */
	long size;                 /* alloc: bytes (kind: ALLOC_*, lo: the alignment, at_map:
	                              realloc's old block); tune: the value (kind: TUNE_*);
	                              awrite, aread: lo..hi are bytes of the block */
	int need[2];               /* handles whose addresses the op needs (-1: none) */
	int want;                  /* RES_*: what the model predicts */
	int want_sig, want_code;   /* RES_KILLED: signal and si_code */
	int want_map, want_page;   /* RES_KILLED: the faulting page, -1 if outside every handle */
	int want_errno;            /* RES_FAILED */
	int ndigests;              /* RES_READ, RES_KILLED: pages read (before the fault) */
	const uint64_t *digests;
	int any;                   /* RES_READ of one page (pipe-read) whose digest may be any of
	                              the ndigests digests: the views the model allows */
	const char *text;          /* the trace line */
	const char *says;          /* the model's prediction in words */
	int thread;                /* race, stop, thread, by, join: the thread handle; race: kind is
	                              RK_* */
	const struct race *races;  /* RES_READ: per page, how a racing page is checked (NULL:
	                              every page by its digest) */
	int watch;                 /* stop of a reader: W_*, and the word W_EXACT wants */
	uint64_t word;
};

struct row {
	int map, page, mapped, readable;
	uint64_t digest;
	int phys; /* PHYS_* bits: what /proc/self/pagemap must say of the page */
	struct race race; /* how a racing page's bytes are checked (kind R_EXACT: by digest) */
};

/* The physical facts a row checks (docs/SEMANTICS.md I3, I5, I7; plan.rs `phys`). */
#define PHYS_MUST 1   /* present (or swapped out) */
#define PHYS_NEVER 2  /* not present */
#define PHYS_ZERO 4   /* if present, the zero page: not exclusive, not a file page */
#define PHYS_SHARED 8 /* if present, a file/shared (shmem) page */
#define PHYS_ANON 16  /* if present, an anonymous page */
#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61)
#define PM_EXCLUSIVE (1ull << 56)
#define PM_PFN ((1ull << 55) - 1)

struct check {
	int after_op, proc;
	const struct row *rows;
	const char *text;
};

/* The program's tables, defined after this runtime (these are tentative definitions). */

/* Pages of each mapping handle, as the op that makes it declares them. */
static const int map_pages[NMAP];
/* The program, op by op, with what the model of Linux predicts for each; then V_END. */
static const struct op ops[NOPS + 1];
/* The state every live process must be in after fork, exit and the last op; then
 * after_op = -1. */
static const struct check checks[NCHECKS + 1];

/* ---- the workers ---- */

/* What the coordinator sends a worker: an op index (or -1 - check index) and every handle's
 * base address, as the kernel returned it. */
struct cmd {
	int32_t op;
	int32_t pad;
	uint64_t base[NMAP];
};

/* What a worker answers. */
struct reply {
	int32_t result;                 /* RES_OK, RES_READ, RES_KILLED, RES_FAILED */
	int32_t sig, code;              /* RES_KILLED */
	int32_t n;                      /* pages read so far; for a check, rows that differ */
	uint64_t value;                 /* map: address; fork: pid; RES_FAILED: errno;
	                                   RES_KILLED: fault address; check: first bad row */
	uint64_t seen;                  /* check: digest seen in the first bad row */
	int32_t seen_mapped;
	int32_t seen_phys;              /* check: the first bad row's pagemap word is in seen */
	uint64_t digest[MAX_SPAN_PAGES];
	unsigned char head[MAX_SPAN_PAGES][8];
	/* glibc's placement (cowcheck's SEMANTICS.md M8, M9, M11), where malloc is glibc's own:
	 * G_* what was measured, g_bytes the fresh mapping at 16 bytes before the block (alloc) or
	 * the bytes unmapped (free), g_chunk the chunk's size, g_threshold the threshold in force
	 * before the call (0: not known), g_raised the freed chunk that raised it last (M11), g_own
	 * the block's own mapping (free). g_bad: a glibc rule broken. */
	int32_t g_kind, g_bad;
	uint64_t g_bytes, g_chunk, g_threshold, g_raised, g_own;
};

static int cmd_pipe[NPROC][2], rep_pipe[NPROC][2];
static volatile sig_atomic_t me;        /* the process handle this worker serves */
static struct reply rep;                /* this worker's reply in progress */
static size_t ps;                       /* page size */
static unsigned char page_buf[1 << 16];
/* The program's pipe (read end, write end): made by the root process before the first op,
 * non-blocking (a full pipe for vmsplice, an empty one for read, is EAGAIN, never a hang), and
 * inherited by every process of the tree. */
static int the_pipe[2] = { -1, -1 };
/* The program's /dev/zero descriptor, for maps with .fd: opened by the root process before the
 * first op and inherited by every process of the tree (-1 if it could not be opened). A map of
 * /dev/zero without .fd opens its own and closes it right after the mmap, as the note does. */
static int the_zero = -1;

static uint64_t rotl(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

/* cowcheck's page digest (digest() in src/program/outcome.rs): four multiply lanes over little-endian
 * words, then a finalizer. Not cryptographic. */
static uint64_t digest(const unsigned char *b, size_t len)
{
	static const uint64_t k[4] = { 0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full,
				       0x165667B19E3779F9ull, 0x85EBCA77C2B2AE63ull };
	uint64_t h[4] = { k[0] ^ (uint64_t)len, k[1], k[2], k[3] };
	size_t i = 0, j;
	for (; i + 32 <= len; i += 32) {
		for (int lane = 0; lane < 4; lane++) {
			uint64_t w = 0;
			for (int s = 7; s >= 0; s--)
				w = w << 8 | b[i + (size_t)lane * 8 + (size_t)s];
			h[lane] = rotl((h[lane] ^ w) * k[lane], 31);
		}
	}
	for (j = 0; i + j < len; j++)
		h[j % 4] = (h[j % 4] ^ b[i + j]) * k[(j + 1) % 4];
	uint64_t x = h[0] ^ rotl(h[1], 17) ^ rotl(h[2], 34) ^ rotl(h[3], 51);
	x ^= x >> 33;
	x *= 0xFF51AFD7ED558CCDull;
	x ^= x >> 33;
	return x;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A fatal SIGSEGV or SIGBUS in a worker: report it, then let it kill the process (returning
 * re-executes the faulting access with the default action). Async-signal-safe calls only. */
static void on_fault(int sig, siginfo_t *si, void *ctx)
{
	struct sigaction dfl;
	(void)ctx;
	rep.result = RES_KILLED;
	rep.sig = sig;
	rep.code = si->si_code;
	rep.value = (uint64_t)(uintptr_t)si->si_addr;
	if (write_full(rep_pipe[me][1], &rep, sizeof rep) < 0)
		_exit(3);
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	sigaction(sig, &dfl, NULL);
}

static void load(unsigned char *dst, uintptr_t src, size_t n)
{
	const volatile unsigned char *p = (const volatile unsigned char *)src;
	for (size_t i = 0; i < n; i++)
		dst[i] = p[i];
}

/* The length in bytes of n pages, the last one cut after tail bytes (0: the whole page). */
static size_t length(int n, int tail)
{
	return n > 0 && tail ? (size_t)(n - 1) * ps + (size_t)tail : (size_t)n * ps;
}

static void span_bytes(const struct op *o, size_t *lo, size_t *hi)
{
	*lo = (size_t)o->lo;
	*hi = o->hi ? (size_t)o->hi : ps;
}

/* A call with one bad argument on the range at b; 0 if it (wrongly) succeeded, else -1 with
 * errno. Only combinations that Linux rejects before changing anything are generated. */
static int invalid_call(const struct op *o, uintptr_t b)
{
	void *addr = (void *)(o->bad == BAD_UNALIGNED ? b + 1 : b);
	size_t huge = SIZE_MAX - 2 * ps + 1; /* its page rounding wraps around */
	size_t len = o->bad == BAD_ZERO_LENGTH ? 0 : o->bad == BAD_OVERFLOW ? huge : ps;
	switch (o->call) {
	case CALL_MMAP: {
		void *p = mmap(o->bad == BAD_UNALIGNED ? addr : NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | (o->bad == BAD_UNALIGNED ? MAP_FIXED : 0),
			       -1, 0);
		if (p == MAP_FAILED)
			return -1;
		munmap(p, len);
		return 0;
	}
	case CALL_MUNMAP:
		return munmap(addr, len);
	case CALL_MPROTECT:
		return mprotect(addr, len,
				o->bad == BAD_UNKNOWN_PROT ? 0x100 | PROT_READ : PROT_READ | PROT_WRITE);
	case CALL_MADVISE:
		return o->bad == BAD_UNKNOWN_ADVICE ? madvise(addr, ps, 200)
						    : madvise(addr, len, MADV_NORMAL);
	default: {
		/* The bad length, if any, is the new size; 0x40 is no MREMAP_* flag. */
		int flags = 0;
		if (o->bad == BAD_OVERFLOW)
			flags = MREMAP_MAYMOVE;
		if (o->bad == BAD_UNKNOWN_FLAGS)
			flags = 0x40;
		return mremap(addr, ps, len, flags, NULL) == MAP_FAILED ? -1 : 0;
	}
	}
}

/* Writes the op's pattern through the kernel, one page at a time in ascending order: pwrite on
 * /proc/self/mem (a forced write, FOLL_FORCE) or process_vm_writev on ourselves (the mapping's
 * own permissions). The first page that fails ends it: -1 with its errno, earlier pages written.
 * origin is the mapping's base, from which a ramp counts. */
static int poke(const struct op *o, uintptr_t first, uintptr_t origin)
{
	size_t lo, hi, len;
	int fd = -1, err = 0;
	span_bytes(o, &lo, &hi);
	len = hi - lo;
	if (o->via == VIA_MEM) {
		fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return -1;
	}
	for (int pg = 0; pg < o->npages; pg++) {
		uintptr_t page = first + (size_t)pg * ps;
		size_t offset = (size_t)(page - origin) + lo;
		uintptr_t dst = page + lo;
		ssize_t n;
		for (size_t i = 0; i < len; i++)
			page_buf[i] = o->ramp ? (unsigned char)(o->byte + (int)((offset + i) % 251))
					      : (unsigned char)o->byte;
		if (o->via == VIA_VM) {
			struct iovec local = { .iov_base = page_buf, .iov_len = len };
			struct iovec remote = { .iov_base = (void *)dst, .iov_len = len };
			n = process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
		} else {
			n = pwrite(fd, page_buf, len, (off_t)dst);
		}
		if (n != (ssize_t)len) {
			err = n < 0 ? errno : EIO;
			break;
		}
	}
	if (fd >= 0)
		close(fd);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

/* glibc's placement of blocks (cowcheck's docs/SEMANTICS.md M8 to M11), checked only where
 * malloc is glibc's own (the object of gnu_get_libc_version, as cowcheck's executor probes).
 * Each process keeps glibc's settings as the model does (fork copies them with the rest of the
 * process): the threshold in force, 128 KiB at the start where glibc's dynamic threshold is on
 * (no GLIBC_TUNABLES or MALLOC_*_ setting that turns it off), raised by the free of a mapped
 * chunk smaller than 32 MiB (M11), set by mallopt (M10). Around each allocator call the process
 * compares the address ranges /proc/self/maps covers before and after: a block whose chunk
 * came in a fresh mapping beginning 16 bytes before it, of the chunk's size plus 8 rounded up
 * to the page, is a mapped chunk, allowed only at or above the threshold (M8); its free must
 * unmap exactly that mapping (M9). */
enum { G_NONE, G_HEAP, G_MAPPED, G_OTHER, G_FREED };
#define G_MAX_RANGES 1024
#define G_DEFAULT_THRESHOLD (128u * 1024)
#define G_THRESHOLD_MAX (32ull << 20)
static int g_on = -1, g_dynamic;
static uint64_t g_threshold = G_DEFAULT_THRESHOLD, g_raised_by;
static int g_set, g_fixed, g_nommap;
static uint64_t g_own[NMAP > 0 ? NMAP : 1];
static uint64_t g_before[G_MAX_RANGES][2], g_after[G_MAX_RANGES][2];
static int g_nbefore, g_nafter;
static char g_maps[1 << 18];

#ifdef __GLIBC__
#include <dlfcn.h>
#include <gnu/libc-version.h>
static int g_glibc_malloc(void)
{
	Dl_info a, b;
	void *m = dlsym(RTLD_DEFAULT, "malloc"), *v = dlsym(RTLD_DEFAULT, "gnu_get_libc_version");
	(void)gnu_get_libc_version;
	return m && v && dladdr(m, &a) && dladdr(v, &b) && a.dli_fbase == b.dli_fbase;
}
#else
static int g_glibc_malloc(void)
{
	return 0;
}
#endif

/* Whether the environment tunes glibc's malloc so that its dynamic threshold is off. */
static int g_tuned(void)
{
	static const char *const names[] = { "glibc.malloc.mmap_threshold=", "glibc.malloc.trim_threshold=",
					     "glibc.malloc.top_pad=", "glibc.malloc.mmap_max=" };
	static const char *const vars[] = { "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
					    "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_" };
	const char *t = getenv("GLIBC_TUNABLES");
	for (int i = 0; i < 4; i++) {
		const char *v = getenv(vars[i]);
		if ((t && strstr(t, names[i])) || (v && *v))
			return 1;
	}
	return 0;
}

/* The address ranges /proc/self/maps covers, merged, into out; how many. */
static int g_covered(uint64_t (*out)[2])
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC), n = 0;
	size_t len = 0;
	ssize_t k;
	if (fd < 0)
		return 0;
	while (len < sizeof g_maps - 1 && (k = read(fd, g_maps + len, sizeof g_maps - 1 - len)) > 0)
		len += (size_t)k;
	close(fd);
	g_maps[len] = 0;
	for (char *l = g_maps; *l;) {
		char *end;
		uint64_t a = strtoull(l, &end, 16), b = strtoull(end + 1, &end, 16);
		if (n > 0 && out[n - 1][1] == a)
			out[n - 1][1] = b;
		else if (n < G_MAX_RANGES) {
			out[n][0] = a;
			out[n][1] = b;
			n++;
		}
		l = strchr(end, '\n');
		if (!l)
			break;
		l++;
	}
	return n;
}

static int g_in(uint64_t (*r)[2], int n, uint64_t a)
{
	for (int i = 0; i < n; i++)
		if (r[i][0] <= a && a < r[i][1])
			return 1;
	return 0;
}

/* The length of the range that appeared during the call and begins at start (0: none). */
static uint64_t g_fresh_at(uint64_t start)
{
	uint64_t end = 0;
	if (!g_in(g_after, g_nafter, start) || g_in(g_before, g_nbefore, start) ||
	    (g_in(g_after, g_nafter, start - 1) && !g_in(g_before, g_nbefore, start - 1)))
		return 0;
	for (int i = 0; i < g_nafter; i++)
		if (g_after[i][0] <= start && start < g_after[i][1])
			end = g_after[i][1];
	for (int i = 0; i < g_nbefore; i++)
		if (g_before[i][0] > start && g_before[i][0] < end)
			end = g_before[i][0];
	return end - start;
}

/* The bytes of the ranges that went away during the call. */
static uint64_t g_vanished(void)
{
	uint64_t gone = 0;
	for (int i = 0; i < g_nbefore; i++) {
		uint64_t a = g_before[i][0], b = g_before[i][1], kept = 0;
		for (int j = 0; j < g_nafter; j++) {
			uint64_t lo = a > g_after[j][0] ? a : g_after[j][0];
			uint64_t hi = b < g_after[j][1] ? b : g_after[j][1];
			if (lo < hi)
				kept += hi - lo;
		}
		gone += b - a - kept;
	}
	return gone;
}

/* glibc's chunk size for a request, and the length of a mapped chunk's own mapping. */
static uint64_t g_chunk(uint64_t n)
{
	uint64_t nb = (n + 8 + 15) & ~(uint64_t)15;
	return nb < 32 ? 32 : nb;
}

static uint64_t g_mapping(uint64_t n)
{
	return (g_chunk(n) + 8 + ps - 1) / ps * ps;
}

/* Before an allocator call: whether the glibc rules apply, and the layout. */
static void g_enter(void)
{
	if (g_on < 0) {
		g_on = g_glibc_malloc();
		g_dynamic = g_on && !g_tuned();
	}
	if (g_on)
		g_nbefore = g_covered(g_before);
}

static void g_leave(void)
{
	if (g_on)
		g_nafter = g_covered(g_after);
}

/* After a successful allocation of block m (realloc's old block: from, at old): M8. */
static void g_placed(const struct op *o, uint64_t p, uint64_t old)
{
	uint64_t len = g_fresh_at(p - 16), own = 0;
	if (!g_on)
		return;
	rep.g_chunk = g_chunk((uint64_t)o->size);
	rep.g_threshold = g_dynamic || g_set ? g_threshold : 0;
	rep.g_raised = g_raised_by;
	rep.g_bytes = len;
	rep.g_kind = len == 0 ? G_HEAP : G_OTHER;
	if (o->kind == ALLOC_MEMALIGN || o->kind == ALLOC_ALIGNED) {
		/* carved out of a larger chunk: not checked */
	} else if (len == g_mapping((uint64_t)o->size)) {
		rep.g_kind = G_MAPPED;
		/* A realloc of a mapped chunk that mremap moved (M9): the threshold has no say. */
		if (!(o->kind == ALLOC_REALLOC && g_own[o->at_map]))
			rep.g_bad = g_nommap || (rep.g_threshold && rep.g_chunk < rep.g_threshold);
		own = len;
	} else if (len > 0) {
		rep.g_bad = len < rep.g_chunk;
	} else if (o->kind == ALLOC_REALLOC && g_own[o->at_map] && old == p) {
		own = g_mapping((uint64_t)o->size); /* mremap resized it in place */
	}
	if (o->kind == ALLOC_REALLOC)
		g_own[o->at_map] = 0;
	g_own[o->map] = own;
}

/* After free of block m: M9, then M11. */
static void g_freed(const struct op *o)
{
	uint64_t own = g_own[o->map], word = own | 2; /* the size word's IS_MMAPPED bit */
	if (!g_on)
		return;
	rep.g_kind = G_FREED;
	rep.g_bytes = g_vanished();
	rep.g_own = own;
	if (own)
		rep.g_bad = rep.g_bytes != own;
	if (own && g_dynamic && !g_fixed && word > g_threshold && word <= G_THRESHOLD_MAX) {
		g_threshold = own;
		g_raised_by = own;
	}
	rep.g_threshold = g_dynamic || g_set ? g_threshold : 0;
	rep.g_raised = g_raised_by;
	g_own[o->map] = 0;
}

/* mallopt: M10 (each of these turns the dynamic threshold off). */
static void g_tune(const struct op *o)
{
	if (o->kind == TUNE_TRIM)
		return;
	g_fixed = 1;
	if (o->kind == TUNE_MMAP_THRESHOLD) {
		g_threshold = (uint64_t)o->size;
		g_set = 1;
		g_raised_by = 0;
	} else if (o->kind == TUNE_MMAP_MAX) {
		g_nommap = o->size == 0;
	}
}

/* The facts a process measured for an allocator op, as comment lines. */
static void g_show(const struct op *o, const struct reply *r)
{
	char thr[96] = "not known here";
	if (!r->g_kind)
		return;
	if (r->g_threshold)
		snprintf(thr, sizeof thr, "%llu%s", (unsigned long long)r->g_threshold,
			 r->g_raised && r->g_raised == r->g_threshold ? " (raised by the free of a mapped chunk, M11)" : "");
	switch (r->g_kind) {
	case G_HEAP:
		printf("# glibc: p%d's block is not in a fresh mapping (heap); chunk %llu bytes, mmap threshold in force %s\n",
		       o->proc, (unsigned long long)r->g_chunk, thr);
		break;
	case G_MAPPED:
	case G_OTHER:
		printf("# glibc: p%d's block is in a fresh mapping of %llu bytes from 16 bytes before it (%s); chunk %llu bytes, mmap threshold in force %s%s\n",
		       o->proc, (unsigned long long)r->g_bytes,
		       r->g_kind == G_MAPPED ? "a mapped chunk's length" : "the heap grown by a mapping",
		       (unsigned long long)r->g_chunk, thr,
		       r->g_bad ? ": a mapped chunk below the threshold or after mmap-max 0, or smaller than its chunk (M8)" : "");
		break;
	case G_FREED:
		printf("# glibc: p%d's free unmapped %llu bytes", o->proc, (unsigned long long)r->g_bytes);
		if (r->g_own)
			printf(" (its own mapping: %llu bytes%s)", (unsigned long long)r->g_own,
			       r->g_bad ? ", not what was unmapped (M9)" : "");
		printf("; mmap threshold now %s\n", thr);
		break;
	}
	fflush(stdout);
}

/* The stores of a write: the pattern into bytes lo..hi of each page of the span. */
/* ---- racing threads (docs/SEMANTICS.md part T) ---- */

/* Shared by every process of a round's tree (MAP_SHARED, made before the root is forked):
 * each thread's published counter, each fork's counters just before and just after fork
 * returned, and the rounds each stop reported. */
struct board {
	_Atomic uint64_t count[NPROC][NTHREAD];
	uint64_t before[NOPS + 1][NTHREAD], after[NOPS + 1][NTHREAD];
	uint64_t rounds[NOPS + 1];
};
static struct board *board;

/* This process's racing threads (a fork's child has none). */
static struct racer {
	int on, kind, mem, cpu;
	int pipe[2]; /* vmsplice: the thread's own pipe (T14) */
	uint64_t body; /* vmsplice: the digest of the first page drained, but its last word */
	uintptr_t page;
	atomic_int stop;
	uint64_t last; /* the last value stored (write, poke) */
	uint64_t first, seen, drops; /* read: the first and the last load, loads that went down */
	pthread_t id;
} racers[NTHREAD];

/* The counters a child's copy showed first, per process, mapping and page (R_FORK). */
static struct { int used, proc, map, page; uint64_t value; } firsts[64];

/* One round of a vmsplice thread (T14): the page into the thread's pipe, then all of it back;
 * its last word in *word, a digest of the rest in *body. 0, or -1 with errno set. */
static int splice_round(struct racer *r, uint64_t *word, uint64_t *body)
{
	struct iovec iov = { (void *)r->page, ps };
	unsigned char buf[512], w[8];
	uint64_t h = 0xcbf29ce484222325ull;
	size_t got = 0;
	ssize_t put = vmsplice(r->pipe[1], &iov, 1, 0);
	if (put < 0)
		return -1;
	if ((size_t)put != ps) {
		errno = EIO;
		return -1;
	}
	while (got < ps) {
		size_t want = ps - got < sizeof buf ? ps - got : sizeof buf;
		ssize_t n = read(r->pipe[0], buf, want);
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		for (size_t i = 0; i < (size_t)n; i++) {
			if (got + i < ps - 8)
				h = (h ^ buf[i]) * 0x100000001b3ull;
			else
				w[got + i - (ps - 8)] = buf[i];
		}
		got += (size_t)n;
	}
	memcpy(word, w, 8);
	*body = h;
	return 0;
}

static void *racer_loop(void *arg)
{
	struct racer *r = arg;
	int t = (int)(r - racers);
	if (r->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(r->cpu, &set);
		sched_setaffinity(0, sizeof set, &set);
	}
	/* Each round reads the stop word before it starts: the last one zaps or stores after the
	 * stop was asked (T1, T7, T9). */
	for (uint64_t n = 2;; n++) {
		int stop = atomic_load(&r->stop);
		if (r->kind == RK_REMAP) {
			/* T13: to the spare (the next page), home, ...; the last round ends home. */
			uintptr_t home = r->page, spare = r->page + ps;
			int ok = n % 2 == 0
				? mremap((void *)spare, ps, ps, MREMAP_MAYMOVE | MREMAP_FIXED,
					 (void *)home) == (void *)home
				: stop || mremap((void *)home, ps, ps, MREMAP_MAYMOVE | MREMAP_FIXED,
						 (void *)spare) == (void *)spare;
			if (!ok)
				break;
			r->last = n;
			atomic_store(&board->count[me][t], n);
		} else if (r->kind == RK_UNMAP) {
			/* T12: unmapped, a fresh private page, ...; the last round maps it. */
			int ok = stop || n % 2 == 0
				? mmap((void *)r->page, ps, PROT_READ | PROT_WRITE,
				       MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == (void *)r->page
				: munmap((void *)r->page, ps) == 0;
			if (!ok)
				break;
			r->last = n;
			atomic_store(&board->count[me][t], n);
		} else if (r->kind == RK_PROTECT) {
			/* T11: read-only, read-write, ...; the last round read-write. */
			int prot = stop || n % 2 == 0 ? PROT_READ | PROT_WRITE : PROT_READ;
			if (mprotect((void *)r->page, ps, prot) != 0)
				break;
			r->last = n;
			atomic_store(&board->count[me][t], n);
		} else if (r->kind == RK_VMSPLICE) {
			uint64_t v, b;
			if (splice_round(r, &v, &b) != 0)
				break;
			r->drops += v < r->seen || b != r->body;
			r->seen = v;
			r->last = n;
			atomic_store(&board->count[me][t], n);
		} else if (r->kind == RK_READ) {
			uint64_t v = *(volatile uint64_t *)(r->page + ps - 8);
			r->drops += v < r->seen;
			r->seen = v;
			r->last = n;
			atomic_store(&board->count[me][t], n);
		} else if (r->kind == RK_DONTNEED) {
			madvise((void *)r->page, ps, MADV_DONTNEED);
		} else if (r->kind == RK_FREE || r->kind == RK_PAGEOUT) {
			/* T15, T16: the page freed lazily, or paged out, again and again. */
			madvise((void *)r->page, ps, r->kind == RK_FREE ? MADV_FREE : MADV_PAGEOUT);
		} else if (r->kind == RK_FAULT) {
			/* T17: load, store, zap: the next round faults a fresh page in; the last
			 * round zaps no more. */
			(void)*(volatile uint64_t *)(r->page + ps - 8);
			*(volatile uint64_t *)(r->page + ps - 8) = n;
			r->last = n;
			atomic_store(&board->count[me][t], n);
			if (!stop)
				madvise((void *)r->page, ps, MADV_DONTNEED);
		} else {
			if (r->kind == RK_POKE) {
				if (pwrite(r->mem, &n, 8, (off_t)(r->page + ps - 8)) != 8)
					break;
			} else {
				*(volatile uint64_t *)(r->page + ps - 8) = n;
			}
			r->last = n;
			atomic_store(&board->count[me][t], n);
		}
		if (stop)
			break;
	}
	return NULL;
}

/* The CPU a racer pins to, as cowcheck's executor pins its own: the first thread to a CPU
 * other than this process's, the next to this process's own; -1 on one CPU. */
static int pin_cpu(int index)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	int cpu = sched_getcpu();
	if (n < 2 || cpu < 0)
		return -1;
	return (int)((((long)cpu + 1 - index) % n + n) % n);
}

/* Closes a vmsplice thread's pipe (T14), if it has one. */
static void splice_close(struct racer *r)
{
	for (int i = 0; i < 2; i++) {
		if (r->pipe[i] >= 0)
			close(r->pipe[i]);
		r->pipe[i] = -1;
	}
}

/* race: one store (or zap) now, as the model has it, then the thread goes on. */
static void race_start(const struct op *o, uintptr_t first)
{
	struct racer *r = &racers[o->thread];
	uint64_t one = 1;
	int running = 0;
	for (int t = 0; t < NTHREAD; t++)
		running += racers[t].on;
	memset(r, 0, sizeof *r);
	r->kind = o->kind;
	r->page = first;
	r->mem = -1;
	r->pipe[0] = r->pipe[1] = -1;
	r->cpu = pin_cpu(running);
	if (o->kind == RK_REMAP) {
		if (mremap((void *)first, ps, ps, MREMAP_MAYMOVE | MREMAP_FIXED,
			   (void *)(first + ps)) == MAP_FAILED) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
			return;
		}
	} else if (o->kind == RK_UNMAP) {
		if (munmap((void *)first, ps) != 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
			return;
		}
	} else if (o->kind == RK_PROTECT) {
		if (mprotect((void *)first, ps, PROT_READ) != 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
			return;
		}
	} else if (o->kind == RK_VMSPLICE) {
		if (pipe2(r->pipe, O_CLOEXEC | O_NONBLOCK) != 0 ||
		    splice_round(r, &r->first, &r->body) != 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
			splice_close(r);
			return;
		}
		r->seen = r->first;
	} else if (o->kind == RK_READ) {
		/* A fault here is the op's death, as the model's first load. */
		r->first = r->seen = *(volatile uint64_t *)(first + ps - 8);
	} else if (o->kind == RK_DONTNEED || o->kind == RK_FREE || o->kind == RK_PAGEOUT) {
		int advice = o->kind == RK_DONTNEED ? MADV_DONTNEED
			     : o->kind == RK_FREE   ? MADV_FREE
						    : MADV_PAGEOUT;
		if (madvise((void *)first, ps, advice) != 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
			return;
		}
	} else if (o->kind == RK_FAULT) {
		/* A fault here is the op's death, as the model's first load and store. */
		(void)*(volatile uint64_t *)(first + ps - 8);
		*(volatile uint64_t *)(first + ps - 8) = one;
		madvise((void *)first, ps, MADV_DONTNEED);
	} else if (o->kind == RK_POKE) {
		r->mem = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
		if (r->mem < 0 || pwrite(r->mem, &one, 8, (off_t)(first + ps - 8)) != 8) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
			if (r->mem >= 0)
				close(r->mem);
			return;
		}
	} else {
		/* A fault here is the op's death, as the model's store of the first value. */
		*(volatile uint64_t *)(first + ps - 8) = one;
	}
	r->last = 1;
	atomic_store(&board->count[me][o->thread], 1);
	if (pthread_create(&r->id, NULL, racer_loop, r) != 0) {
		rep.result = RES_FAILED;
		rep.value = (uint64_t)EAGAIN;
		splice_close(r);
		if (r->mem >= 0)
			close(r->mem);
		return;
	}
	r->on = 1;
}

/* stop: the thread ends its round and is joined; its rounds are the last value it stored. */
static void race_stop(const struct op *o)
{
	struct racer *r = &racers[o->thread];
	if (!r->on)
		return;
	atomic_store(&r->stop, 1);
	pthread_join(r->id, NULL);
	r->on = 0;
	if (r->mem >= 0)
		close(r->mem);
	splice_close(r);
	rep.value = r->kind == RK_DONTNEED || r->kind == RK_FREE || r->kind == RK_PAGEOUT ? 0
										    : r->last;
	board->rounds[o - ops] = rep.value;
	if (r->kind == RK_READ || r->kind == RK_VMSPLICE) {
		rep.digest[0] = r->first;
		rep.digest[1] = r->seen;
		rep.digest[2] = r->drops;
		rep.n = 3;
	}
}

/* Whether a reader's stop reply `r` passes its op's check (T10). */
static int watch_ok(const struct op *o, const struct reply *r)
{
	uint64_t first = r->digest[0], last = r->digest[1], drops = r->digest[2];
	if (r->n != 3)
		return 0;
	switch (o->watch) {
	case W_EXACT:
		return first == o->word && last == o->word && drops == 0;
	case W_CONST:
		return first == last && drops == 0;
	case W_MONO:
		return first <= last && drops == 0;
	case W_OPEN:
		return (last == first && drops == 0) || (last == 0 && drops <= 1);
	}
	return 1;
}

/* Whether `n` bytes at `b` (a span that ends with the page's last word) pass race check `c`
 * for page `page` of handle `map`; zeroes the word in `b`. The word is left in *word. */
static int race_ok(const struct race *c, unsigned char *b, size_t n, int map, int page, uint64_t *word)
{
	uint64_t v;
	int ok;
	memcpy(&v, b + n - 8, 8);
	*word = v;
	memset(b + n - 8, 0, 8);
	if (digest(b, n) != c->base)
		return 0;
	switch (c->kind) {
	case R_FREE:
		return 1;
	case R_ROUNDS:
		return v == board->rounds[c->slot];
	case R_FORK:
		ok = (v >= board->before[c->slot][c->thread] &&
		      v <= board->after[c->slot][c->thread] + 1) ||
		     (c->zero && v == 0);
		for (int k = 0; k < 64; k++) {
			if (firsts[k].used && firsts[k].proc == me && firsts[k].map == map &&
			    firsts[k].page == page)
				return ok && v == firsts[k].value;
		}
		for (int k = 0; k < 64; k++) {
			if (!firsts[k].used) {
				firsts[k].used = 1;
				firsts[k].proc = me;
				firsts[k].map = map;
				firsts[k].page = page;
				firsts[k].value = v;
				break;
			}
		}
		return ok;
	}
	return 0;
}

/* Prints what a racing page's word was, against what it may be. */
static void race_show(const struct race *c, int map, int page, uint64_t v)
{
	printf("# p%d m%d page %d: last word %llu", me, map, page, (unsigned long long)v);
	if (c->kind == R_FORK)
		printf(" (the fork's counter: before %llu, after %llu%s)",
		       (unsigned long long)board->before[c->slot][c->thread],
		       (unsigned long long)board->after[c->slot][c->thread], c->zero ? ", or 0" : "");
	if (c->kind == R_ROUNDS)
		printf(" (stop reported %llu)", (unsigned long long)board->rounds[c->slot]);
	printf("\n");
	fflush(stdout);
}

static void serve(void);

/* clone children's stacks, one per process handle (a child never returns from serve). */
static char clone_stacks[NPROC][1 << 18] __attribute__((aligned(16)));

static int clone_main(void *arg)
{
	me = (int)(intptr_t)arg;
	serve();
	_exit(0);
}

static void store(const struct op *o, uintptr_t first)
{
	size_t lo, hi;
	span_bytes(o, &lo, &hi);
	for (int pg = 0; pg < o->npages; pg++) {
		volatile unsigned char *dst = (volatile unsigned char *)(first + (size_t)pg * ps);
		size_t origin = (size_t)(o->first + pg) * ps;
		for (size_t i = lo; i < hi; i++)
			dst[i] = o->ramp ? (unsigned char)(o->byte + (int)((origin + i) % 251))
					 : (unsigned char)o->byte;
	}
}

/* Performs one op in this worker; returns 0 if no reply is due (a fork's child). */
/* ---- op threads (docs/SEMANTICS.md T20 to T24) ---- */

/* This process's op threads: each waits for the op its process hands it (`go`), performs it as
 * the process would, and says it is done (`done`); pinned to a CPU other than the process's, as
 * cowcheck's executor pins its own. A fork's child has none of them; the child of a thread's
 * fork is served by that thread. */
static struct op_thread {
	int on, quit;
	pthread_t id;
	sem_t go, done;
	struct cmd cmd;
} op_threads[NOPTHREAD];
/* The thread the next op goes to (`by`), or -1. */
static int handed = -1;

static void op_threads_forget(void)
{
	for (int t = 0; t < NOPTHREAD; t++)
		op_threads[t].on = 0;
	handed = -1;
}

static int perform(const struct op *o, const uint64_t *base);
static void serve(void);

static void *op_thread_loop(void *arg)
{
	struct op_thread *t = arg;
	int cpu = pin_cpu(0);
	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		sched_setaffinity(0, sizeof set, &set);
	}
	for (;;) {
		while (sem_wait(&t->go) != 0)
			;
		if (t->quit)
			return NULL;
		if (!perform(&ops[t->cmd.op], t->cmd.base)) {
			/* The child of this thread's fork: its only thread, its worker (T22). */
			serve();
		}
		sem_post(&t->done);
	}
}

static void op_thread_start(const struct op *o)
{
	struct op_thread *t = &op_threads[o->thread];
	memset(t, 0, sizeof *t);
	sem_init(&t->go, 0, 0);
	sem_init(&t->done, 0, 0);
	if (pthread_create(&t->id, NULL, op_thread_loop, t) != 0) {
		rep.result = RES_FAILED;
		rep.value = (uint64_t)EAGAIN;
		return;
	}
	t->on = 1;
}

static void op_thread_join(const struct op *o)
{
	struct op_thread *t = &op_threads[o->thread];
	if (!t->on)
		return;
	t->quit = 1;
	sem_post(&t->go);
	pthread_join(t->id, NULL);
	t->on = 0;
}

static int perform(const struct op *o, const uint64_t *base)
{
	uintptr_t first = o->map >= 0 ? (uintptr_t)base[o->map] + (size_t)o->first * ps : 0;
	size_t lo, hi;
	rep.result = RES_OK;
	switch (o->verb) {
	case V_MAP: {
		int fd = -1, own = 0, flags = (o->kind == K_SHARED || o->kind == K_SHARED_ZERO) ? MAP_SHARED : MAP_PRIVATE;
		if (o->fd) {
			/* The program's descriptor: mapped, or passed with MAP_ANONYMOUS (ignored). */
			fd = the_zero;
		} else if (o->kind == K_PRIVATE_ZERO || o->kind == K_SHARED_ZERO) {
			fd = open("/dev/zero", O_RDWR | O_CLOEXEC);
			own = 1;
			if (fd < 0) {
				rep.result = RES_FAILED;
				rep.value = (uint64_t)errno;
				return 1;
			}
		}
		if (o->kind == K_PRIVATE || o->kind == K_SHARED)
			flags |= MAP_ANONYMOUS;
		void *hint = NULL;
		if (o->how != HOW_NONE)
			hint = (void *)((uintptr_t)base[o->at_map] + (size_t)o->at_page * ps + (size_t)o->at_byte);
		if (o->how == HOW_FIXED || o->how == HOW_FIXED_NOREPLACE)
			flags |= MAP_FIXED;
		if (o->how == HOW_NOREPLACE || o->how == HOW_FIXED_NOREPLACE)
			flags |= MAP_FIXED_NOREPLACE;
		off_t offset = (off_t)o->off_pages * (off_t)ps + o->off_bytes;
		size_t len = length(o->npages, o->tail);
#ifdef MAP_HUGETLB
		if (o->hugetlb) {
			/* Whole huge pages, as cowcheck's executor asks (docs/SEMANTICS.md L6). */
			size_t huge = 512 * ps;
			flags |= MAP_HUGETLB;
			len = (len + huge - 1) / huge * huge;
		}
#endif
		void *p = mmap(hint, len, PROT_READ | PROT_WRITE, flags, fd, offset);
		int saved = errno;
		/* The mapping holds its own reference: the descriptor may go right away. */
		if (own)
			close(fd);
		if (p == MAP_FAILED) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)saved;
		} else {
			rep.value = (uint64_t)(uintptr_t)p;
		}
		return 1;
	}
	case V_WRITE:
		store(o, first);
		return 1;
	case V_RACE:
		race_start(o, first);
		return 1;
	case V_STOP:
		race_stop(o);
		return 1;
	case V_THREAD:
		op_thread_start(o);
		return 1;
	case V_BY:
		handed = o->thread;
		return 1;
	case V_JOIN:
		op_thread_join(o);
		return 1;
	case V_VFORK: {
		/* A vfork child stores as V_WRITE does, into the memory it shares with this
		 * process, and _exits (docs/SEMANTICS.md T5); the plan keeps out a child that
		 * would die. */
		pid_t pid = vfork();
		if (pid == 0) {
			store(o, first);
			_exit(0);
		}
		int status = 0;
		if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)(pid < 0 ? errno : ECHILD);
		}
		return 1;
	}
	case V_READ:
		rep.result = RES_READ;
		span_bytes(o, &lo, &hi);
		for (int pg = 0; pg < o->npages && pg < MAX_SPAN_PAGES; pg++) {
			load(page_buf, first + (size_t)pg * ps + lo, hi - lo);
			rep.digest[pg] = digest(page_buf, hi - lo);
			memcpy(rep.head[pg], page_buf, hi - lo < 8 ? hi - lo : 8);
			if (o->races && o->races[pg].kind != R_EXACT && pg < o->ndigests) {
				/* A racing page: its word is checked by its bounds, the rest by digest;
				 * passing, it counts as the model's digest. */
				uint64_t v;
				if (race_ok(&o->races[pg], page_buf, hi - lo, o->map, o->first + pg, &v))
					rep.digest[pg] = o->digests[pg];
				else
					race_show(&o->races[pg], o->map, o->first + pg, v);
			}
			rep.n = pg + 1;
			/* The fault handler must see every page digested so far. */
			atomic_signal_fence(memory_order_seq_cst);
		}
		return 1;
	case V_ALLOC: {
		void *p = NULL;
		size_t n = (size_t)o->size;
		g_enter();
		errno = 0;
		switch (o->kind) {
		case ALLOC_MALLOC: p = malloc(n); break;
		case ALLOC_CALLOC: p = calloc(1, n); break;
		case ALLOC_REALLOC: p = realloc((void *)(uintptr_t)base[o->at_map], n); break;
		case ALLOC_MEMALIGN: {
			int e = posix_memalign(&p, (size_t)o->lo, n);
			if (e) {
				p = NULL;
				errno = e;
			}
			break;
		}
		case ALLOC_ALIGNED: p = aligned_alloc((size_t)o->lo, n); break;
		}
		if (!p) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		} else {
			int e = errno;
			g_leave();
			g_placed(o, (uint64_t)(uintptr_t)p, o->kind == ALLOC_REALLOC ? base[o->at_map] : 0);
			errno = e;
			rep.value = (uint64_t)(uintptr_t)p;
		}
		return 1;
	}
	case V_FREE:
		g_enter();
		free((void *)(uintptr_t)base[o->map]);
		g_leave();
		g_freed(o);
		return 1;
	case V_TUNE:
		/* glibc's settings; a C library without mallopt (musl) has nothing to set, and the
		 * model predicts nothing from them either. */
		g_tune(o);
#ifdef M_MMAP_THRESHOLD
		switch (o->kind) {
		case TUNE_MMAP_THRESHOLD: mallopt(M_MMAP_THRESHOLD, (int)o->size); break;
		case TUNE_MMAP_MAX: mallopt(M_MMAP_MAX, (int)o->size); break;
		case TUNE_TRIM_THRESHOLD: mallopt(M_TRIM_THRESHOLD, (int)o->size); break;
		case TUNE_TRIM: malloc_trim((size_t)o->size); break;
		}
#endif
		return 1;
	case V_AWRITE: {
		volatile unsigned char *b = (volatile unsigned char *)(uintptr_t)base[o->map];
		for (long i = o->lo; i < o->hi; i++)
			b[i] = o->ramp ? (unsigned char)(o->byte + (int)(i % 251)) : (unsigned char)o->byte;
		return 1;
	}
	case V_AREAD: {
		uintptr_t b = (uintptr_t)base[o->map];
		rep.result = RES_READ;
		for (long at = o->lo; at < o->hi && rep.n < MAX_SPAN_PAGES;) {
			long stop = (at / ALLOC_UNIT + 1) * ALLOC_UNIT;
			if (stop > o->hi)
				stop = o->hi;
			load(page_buf, b + (size_t)at, (size_t)(stop - at));
			rep.digest[rep.n] = digest(page_buf, (size_t)(stop - at));
			memcpy(rep.head[rep.n], page_buf, stop - at < 8 ? (size_t)(stop - at) : 8);
			rep.n++;
			atomic_signal_fence(memory_order_seq_cst);
			at = stop;
		}
		return 1;
	}
	case V_FORK: {
		int i = (int)(o - ops);
		for (int t = 0; t < NTHREAD && board; t++)
			board->before[i][t] = atomic_load(&board->count[me][t]);
		pid_t pid = fork();
		for (int t = 0; t < NTHREAD && board && pid != 0; t++)
			board->after[i][t] = atomic_load(&board->count[me][t]);
		if (pid < 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		} else if (pid == 0) {
			/* The child has no thread but this one (T2, T22). */
			for (int t = 0; t < NTHREAD; t++) {
				if (racers[t].on)
					splice_close(&racers[t]);
				racers[t].on = 0;
			}
			op_threads_forget();
			me = o->kind;
			return 0;
		} else {
			rep.value = (uint64_t)pid;
		}
		return 1;
	}
	case V_CLONE: {
		/* A process in this one's address space (docs/SEMANTICS.md T30): libc's clone with
		 * CLONE_VM | SIGCHLD, on a stack of its own, serving its own handle. */
		pid_t pid = clone(clone_main, clone_stacks[o->kind] + sizeof clone_stacks[o->kind],
				  CLONE_VM | SIGCHLD, (void *)(intptr_t)o->kind);
		if (pid < 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		} else {
			rep.value = (uint64_t)pid;
		}
		return 1;
	}
	case V_EXIT:
		return 1;
	case V_UNMAP:
		if (munmap((void *)first, length(o->npages, o->tail)) != 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		}
		return 1;
	case V_PROTECT:
		if (mprotect((void *)first, length(o->npages, o->tail), o->prot) != 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		}
		return 1;
	case V_ADVISE:
		/* npages 0: a length of 0, which names nothing. */
		if (madvise((void *)first, length(o->npages, o->tail), o->advice) != 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		}
		return 1;
	case V_REMAP: {
		void *target = NULL;
		if (o->at_map >= 0)
			target = (void *)((uintptr_t)base[o->at_map] + (size_t)o->at_page * ps + (size_t)o->at_byte);
		/* Always pass the fifth argument: without it glibc's variadic mremap hands the
		 * kernel whatever is in the register (docs/SEMANTICS.md K12). */
		void *p = mremap((void *)first, length(o->npages, o->tail),
				 length(o->new_pages, o->new_tail), o->remap_flags, target);
		if (p == MAP_FAILED) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		} else {
			rep.value = (uint64_t)(uintptr_t)p;
		}
		return 1;
	}
	case V_INVALID:
		if (invalid_call(o, (uintptr_t)base[o->map]) != 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		}
		return 1;
	case V_POKE:
		if (poke(o, first, (uintptr_t)base[o->map]) != 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		}
		return 1;
	case V_VMSPLICE: {
		/* One whole page into the pipe: the pipe takes a reference to the page itself. */
		struct iovec iov = { .iov_base = (void *)first, .iov_len = ps };
		ssize_t n = vmsplice(the_pipe[1], &iov, 1, 0);
		if (n != (ssize_t)ps) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)(n < 0 ? errno : EIO);
		}
		return 1;
	}
	case V_PIPE_READ: {
		/* The oldest page out of the pipe; its bytes are observed. */
		ssize_t n = read(the_pipe[0], page_buf, ps);
		if (n == (ssize_t)ps) {
			rep.result = RES_READ;
			rep.digest[0] = digest(page_buf, ps);
			memcpy(rep.head[0], page_buf, 8);
			rep.n = 1;
		} else {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)(n < 0 ? errno : EIO);
		}
		return 1;
	}
	}
	rep.result = RES_FAILED;
	rep.value = (uint64_t)EINVAL;
	return 1;
}

/* Whether the page at addr lies in the range of another handle: then the kernel may have
 * reused an address the model keeps unmapped, and "unmapped" cannot be checked there. */
static int overlaps_other(uintptr_t addr, int map, const uint64_t *base)
{
	for (int m = 0; m < NMAP; m++) {
		uintptr_t b = (uintptr_t)base[m];
		if (m != map && b && addr >= b && addr < b + (size_t)map_pages[m] * ps)
			return 1;
	}
	return 0;
}

/* Whether a page's pagemap word breaks its row's physical facts. */
static int phys_bad(int phys, uint64_t w)
{
	int present = !!(w & PM_PRESENT);
	if ((phys & PHYS_MUST) && !present && !(w & PM_SWAPPED))
		return 1;
	if ((phys & PHYS_NEVER) && present)
		return 1;
	if (!present)
		return 0;
	if ((phys & PHYS_ZERO) && (w & (PM_EXCLUSIVE | PM_FILE)))
		return 1;
	if ((phys & PHYS_SHARED) && !(w & PM_FILE))
		return 1;
	return (phys & PHYS_ANON) && (w & PM_FILE);
}

/* Prints what pagemap says of a page: present/absent, file, exclusive, PFN (0 unprivileged). */
static void print_phys(uint64_t w)
{
	if (!(w & PM_PRESENT)) {
		printf("%s", (w & PM_SWAPPED) ? "swapped" : "absent");
		return;
	}
	printf("present%s%s pfn %#llx", (w & PM_FILE) ? " file" : "", (w & PM_EXCLUSIVE) ? " excl" : "",
	       (unsigned long long)(w & PM_PFN));
}

/* Checks this worker's state against one row table: each page's pagemap word first (where
 * /proc/self/pagemap can be read, unless COWCHECK_NO_PHYSICAL is set), which the loads after
 * it would change, then its bytes. Prints the physical facts it read, one line per process. */
static int physical_off; /* COWCHECK_NO_PHYSICAL set: values only */

static void check_state(const struct check *c, const uint64_t *base)
{
	int pm = physical_off ? -1 : open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	const struct row *race_bad = NULL; /* the first racing row whose word is wrong */
	uint64_t race_word = 0;
	rep.result = RES_OK;
	if (pm >= 0)
		printf("# pagemap of p%d:", me);
	for (int k = 0; c->rows[k].map >= 0; k++) {
		const struct row *w = &c->rows[k];
		if (!base[w->map])
			continue; /* never mapped for real: that op's own test failed already */
		uintptr_t addr = (uintptr_t)base[w->map] + (size_t)w->page * ps;
		int mapped = msync((void *)addr, ps, MS_ASYNC) == 0;
		uint64_t seen = 0, word = 0;
		int bad, phys = 0;
		if (!w->mapped && !mapped)
			continue;
		if (!w->mapped && overlaps_other(addr, w->map, base))
			continue;
		bad = mapped != w->mapped;
		if (!bad && pm >= 0 && pread(pm, &word, 8, (off_t)(addr / ps * 8)) == 8) {
			printf(" m%d.%d ", w->map, w->page);
			print_phys(word);
			phys = bad = phys_bad(w->phys, word);
		}
		if (!bad && w->readable) {
			load(page_buf, addr, ps);
			seen = digest(page_buf, ps);
			if (w->race.kind != R_EXACT) {
				uint64_t v;
				bad = !race_ok(&w->race, page_buf, ps, w->map, w->page, &v);
				if (bad && !race_bad) {
					race_bad = w;
					race_word = v;
				}
			} else {
				bad = seen != w->digest;
			}
		}
		if (bad) {
			if (rep.n == 0) {
				rep.value = (uint64_t)k;
				rep.seen = phys ? word : seen;
				rep.seen_mapped = mapped;
				rep.seen_phys = phys;
			}
			rep.n++;
		}
	}
	if (pm >= 0) {
		printf("\n");
		fflush(stdout);
		close(pm);
	}
	if (race_bad)
		race_show(&race_bad->race, race_bad->map, race_bad->page, race_word);
}

/* The worker loop of process handle `me`: one op at a time, until told to exit or the
 * coordinator is gone. The handle is kept on the stack too: a clone(CLONE_VM) child shares
 * every static with its parent (docs/SEMANTICS.md T30), `me` and `rep` among them, which hold
 * the process that runs the current op (the coordinator runs one op at a time). */
static void serve(void)
{
	struct cmd c;
	int self = me;
	for (;;) {
		if (read_full(cmd_pipe[self][0], &c, sizeof c) < 0)
			_exit(0);
		me = self;
		memset(&rep, 0, sizeof rep);
		if (c.op < 0) {
			check_state(&checks[-1 - c.op], c.base);
		} else if (handed >= 0) {
			/* The op after a `by`: its thread performs it (T20). */
			int t = handed;
			handed = -1;
			op_threads[t].cmd = c;
			sem_post(&op_threads[t].go);
			while (sem_wait(&op_threads[t].done) != 0)
				;
		} else if (!perform(&ops[c.op], c.base)) {
			/* A fork's child: its own handle from now on. */
			self = me;
			continue;
		}
		if (write_full(rep_pipe[self][1], &rep, sizeof rep) < 0)
			_exit(0);
		if (c.op >= 0 && ops[c.op].verb == V_EXIT)
			_exit(0);
	}
}

/* ---- the coordinator ---- */

static int alive[NPROC];
static uint64_t bases[NMAP];
static int failures, tests;

/* Sends a command to process p and waits for its answer (10 s at most). */
static int call(int p, int op, struct reply *r)
{
	struct cmd c;
	struct pollfd pfd = { .fd = rep_pipe[p][0], .events = POLLIN };
	memset(&c, 0, sizeof c);
	c.op = op;
	memcpy(c.base, bases, sizeof bases);
	if (write_full(cmd_pipe[p][1], &c, sizeof c) < 0)
		return -1;
	for (;;) {
		int n = poll(&pfd, 1, 10000);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		break;
	}
	return read_full(rep_pipe[p][0], r, sizeof *r);
}

static void report(int ok, const char *text, const char *says)
{
	tests++;
	if (!ok)
		failures++;
	printf("%s %d - %s: %s\n", ok ? "ok" : "not ok", tests, text, says);
	fflush(stdout);
}

static void bail(const char *why)
{
	printf("Bail out! %s\n", why);
	fflush(stdout);
}

static void show_head(const unsigned char *h, size_t n)
{
	printf("#   first bytes:");
	for (size_t i = 0; i < n; i++)
		printf(" %02x", h[i]);
	printf("\n");
}

static const char *result_name(int r)
{
	switch (r) {
	case RES_SKIPPED: return "skipped";
	case RES_OK: return "ok";
	case RES_READ: return "read";
	case RES_KILLED: return "killed";
	case RES_FAILED: return "failed";
	}
	return "?";
}

/* Whether this kernel places a private mapping of a whole PMD (what one page-table page maps:
 * ps * ps / 8 bytes) on a PMD boundary (cowcheck's docs/SEMANTICS.md L1; Linux 6.7 onwards):
 * tried three times, each after a one-page spacer, as cowcheck's probe does. */
static int thp_align = -1;
static int thp_aligns(void)
{
	size_t pmd = ps * (ps / 8);
	if (thp_align >= 0)
		return thp_align;
	thp_align = 1;
	for (int k = 0; k < 3; k++) {
		void *spacer = mmap(NULL, ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		void *big = mmap(NULL, pmd, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (big == MAP_FAILED || (uintptr_t)big % pmd != 0)
			thp_align = 0;
		if (spacer != MAP_FAILED)
			munmap(spacer, ps);
		if (big != MAP_FAILED)
			munmap(big, pmd);
	}
	printf("# THP_ALIGN: %s\n", thp_align ? "yes, PMD-sized private anonymous maps must land on a PMD boundary"
					     : "no");
	return thp_align;
}

/* Runs op i and reports it. Returns -1 if the tree stopped answering. */
static int run_op(int i)
{
	const struct op *o = &ops[i];
	struct reply r;
	int ok;
	memset(&r, 0, sizeof r);
	r.result = RES_SKIPPED;
	int ready = alive[o->proc];
	for (int k = 0; k < 2; k++)
		if (o->need[k] >= 0 && !bases[o->need[k]])
			ready = 0;
	if (ready) {
		if (call(o->proc, i, &r) < 0) {
			report(0, o->text, "no answer within 10 s");
			return -1;
		}
	}
	ok = r.result == o->want;
	/* Where the kernel put a mapping is its choice, except with MAP_FIXED(_NOREPLACE),
	 * MREMAP_FIXED, and a remap that may not move. */
	if (ok && o->want == RES_OK && o->verb == V_MAP &&
	    (o->how == HOW_FIXED || o->how == HOW_NOREPLACE || o->how == HOW_FIXED_NOREPLACE))
		ok = r.value == bases[o->at_map] + (uint64_t)o->at_page * ps;
	/* L1: a private anonymous mapping of a whole number of PMDs, placed by the kernel, is PMD
	 * aligned. */
	if (ok && o->want == RES_OK && o->verb == V_MAP && o->how == HOW_NONE && o->tail == 0 &&
	    o->kind == K_PRIVATE &&
	    (size_t)o->npages % (ps / 8) == 0 && thp_aligns())
		ok = r.value % (ps * (ps / 8)) == 0;
	if (ok && o->want == RES_OK && o->verb == V_REMAP) {
		if (o->at_map >= 0)
			ok = r.value == bases[o->at_map] + (uint64_t)o->at_page * ps;
		else if (!(o->remap_flags & MREMAP_MAYMOVE))
			ok = r.value == bases[o->map] + (uint64_t)o->first * ps;
	}
	if (ok && o->want == RES_READ && o->any) {
		/* One page, whose digest is any of the views the model allows. */
		ok = r.n == 1;
		if (ok) {
			int found = 0;
			for (int k = 0; k < o->ndigests; k++)
				found |= r.digest[0] == o->digests[k];
			ok = found;
		}
	} else if (ok && o->want == RES_READ) {
		ok = r.n == o->ndigests;
		for (int k = 0; ok && k < o->ndigests; k++)
			ok = r.digest[k] == o->digests[k];
	}
	if (ok && o->want == RES_KILLED) {
		uintptr_t page = (uintptr_t)r.value & ~(uintptr_t)(ps - 1);
		ok = r.sig == o->want_sig && r.code == o->want_code && r.n == o->ndigests;
		if (ok && o->want_map >= 0)
			ok = page == (uintptr_t)bases[o->want_map] + (size_t)o->want_page * ps;
		for (int k = 0; ok && k < o->ndigests; k++)
			ok = r.digest[k] == o->digests[k];
	}
	if (ok && o->want == RES_FAILED)
		ok = (int)r.value == o->want_errno;
	if (ok && o->verb == V_STOP && o->watch != W_NONE)
		ok = watch_ok(o, &r);
	switch (r.result) {
	case RES_OK:
		if (o->verb == V_MAP)
			bases[o->map] = r.value;
		if (o->verb == V_REMAP)
			bases[o->result_map] = r.value;
		if (o->verb == V_ALLOC)
			bases[o->map] = r.value;
		if (o->verb == V_FORK || o->verb == V_CLONE)
			alive[o->kind] = 1;
		if (o->verb == V_EXIT)
			alive[o->proc] = 0;
		break;
	case RES_KILLED:
		alive[o->proc] = 0;
		break;
	}
	if (ok && r.g_bad)
		ok = 0;
	report(ok, o->text, o->says);
	g_show(o, &r);
	/* A read of sizeof(int) bytes: the int this process sees, as a C program would print it. */
	if (r.result == RES_READ && o->verb == V_READ && r.n == 1 && o->hi - o->lo == (int)sizeof(int)) {
		int seen;
		memcpy(&seen, r.head[0], sizeof seen);
		printf("# p%d sees the int %d\n", o->proc, seen);
	}
	if (!ok) {
		printf("# expected (model): %s\n", o->says ? o->says : "(nothing)");
		switch (r.result) {
		case RES_READ:
			for (int k = 0; k < r.n && k < 4; k++) {
				size_t lo = 0, hi = ps;
				if (o->verb != V_PIPE_READ)
					span_bytes(o, &lo, &hi);
				if (o->any) {
					printf("# got: one page: digest %016llx (allowed:", (unsigned long long)r.digest[k]);
					for (int j = 0; j < o->ndigests; j++)
						printf(" %016llx", (unsigned long long)o->digests[j]);
					printf(")\n");
				} else {
					printf("# got: page %d of the span: digest %016llx%s\n", k,
					       (unsigned long long)r.digest[k],
					       k < o->ndigests && r.digest[k] != o->digests[k] ? " (differs)" : "");
				}
				show_head(r.head[k], hi - lo < 8 ? hi - lo : 8);
			}
			break;
		case RES_KILLED:
			printf("# got: killed by signal %d, si_code %d, at address %#llx after %d page(s)\n",
			       r.sig, r.code, (unsigned long long)r.value, r.n);
			break;
		case RES_FAILED:
			printf("# got: failed: %s (errno %d)\n", strerror((int)r.value), (int)r.value);
			break;
		default:
			if (o->verb == V_STOP && o->watch != W_NONE && r.n == 3)
				printf("# got: loads: first %llu, last %llu, %llu smaller than the one before\n",
				       (unsigned long long)r.digest[0], (unsigned long long)r.digest[1],
				       (unsigned long long)r.digest[2]);
			else
				printf("# got: %s\n", result_name(r.result));
		}
	}
	return 0;
}

static int run_check(int k)
{
	const struct check *c = &checks[k];
	struct reply r;
	if (!alive[c->proc]) {
		report(0, c->text, "the process is not alive, but the model says it is");
		return 0;
	}
	memset(&r, 0, sizeof r);
	if (call(c->proc, -1 - k, &r) < 0) {
		report(0, c->text, "no answer within 10 s");
		return -1;
	}
	if (r.result == RES_KILLED) {
		alive[c->proc] = 0;
		report(0, c->text, "as the model says");
		printf("# got: killed by signal %d, si_code %d, at address %#llx while looking\n",
		       r.sig, r.code, (unsigned long long)r.value);
		return 0;
	}
	report(r.n == 0, c->text, "as the model says");
	if (r.n) {
		const struct row *w = &c->rows[r.value];
		if (r.seen_phys) {
			printf("# %d page(s) differ; first: m%d page %d: pagemap says ", r.n, w->map,
			       w->page);
			print_phys(r.seen);
			printf(", where the model's frames say:%s%s%s%s%s\n",
			       (w->phys & PHYS_MUST) ? " present" : "",
			       (w->phys & PHYS_NEVER) ? " absent" : "",
			       (w->phys & PHYS_ZERO) ? " absent or the zero page (not exclusive)" : "",
			       (w->phys & PHYS_SHARED) ? " a file/shared page if present" : "",
			       (w->phys & PHYS_ANON) ? " an anonymous page if present" : "");
			return 0;
		}
		printf("# %d page(s) differ; first: m%d page %d: expected %s", r.n, w->map, w->page,
		       w->mapped ? "mapped" : "unmapped");
		if (w->readable && w->race.kind != R_EXACT)
			printf(" with its bytes but the last 8 as the model's (the racing word: above)");
		else if (w->readable)
			printf(" with digest %016llx", (unsigned long long)w->digest);
		printf(", got %s", r.seen_mapped ? "mapped" : "unmapped");
		if (r.seen_mapped && w->readable)
			printf(" with digest %016llx", (unsigned long long)r.seen);
		printf("\n");
	}
	return 0;
}

#ifdef COWCHECK_HUGETLB
/*
 * The hugetlb pool (docs/SEMANTICS.md L7): as root, add HUGETLB_POOL huge pages to
 * vm.nr_hugepages for this run (enough that no fault lacks a page: the checks are those of an
 * ample pool, L9), under an exclusive flock of the sysctl (other runs share the pool), and take
 * back exactly what was added at exit. A reproducer that is killed leaves them: restore the value
 * printed by the `# hugetlb pool` line. Without root and without free huge pages: a skip.
 */
static pid_t pool_owner;
static long pool_got, pool_before, pool_after;

static long pool_read(int fd)
{
	char b[32];
	ssize_t n = pread(fd, b, sizeof b - 1, 0);
	if (n <= 0)
		return -1;
	b[n] = 0;
	return strtol(b, NULL, 10);
}

static void pool_write(int fd, long v)
{
	char b[32];
	int n = snprintf(b, sizeof b, "%ld\n", v < 0 ? 0 : v);
	if (pwrite(fd, b, (size_t)n, 0) != n)
		return;
}

static void hugetlb_pool_down(void)
{
	if (getpid() != pool_owner || pool_got <= 0)
		return;
	int fd = open("/proc/sys/vm/nr_hugepages", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return;
	flock(fd, LOCK_EX);
	long now = pool_read(fd);
	if (now >= 0)
		pool_write(fd, now - pool_got);
	pool_got = 0;
	close(fd);
}

/* 0: go on; 4: skip (no pool can be had). */
static int hugetlb_pool_up(void)
{
	if (geteuid() == 0) {
		int fd = open("/proc/sys/vm/nr_hugepages", O_RDWR | O_CLOEXEC);
		if (fd >= 0) {
			flock(fd, LOCK_EX);
			long before = pool_read(fd);
			if (before >= 0) {
				pool_write(fd, before + HUGETLB_POOL);
				long after = pool_read(fd);
				pool_got = after > before ? after - before : 0;
				pool_owner = getpid();
				atexit(hugetlb_pool_down);
				pool_before = before;
				pool_after = after;
			}
			close(fd);
		}
	}
	void *p = mmap(NULL, 512 * ps, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (p == MAP_FAILED) {
		printf("1..0 # SKIP no hugetlb page can be reserved here (MAP_HUGETLB: %s; as root the reproducer adds pages to vm.nr_hugepages)\n",
		       strerror(errno));
		hugetlb_pool_down();
		return 4;
	}
	munmap(p, 512 * ps);
	return 0;
}
#endif

#ifdef COWCHECK_RACES
static int one_round(void)
#else
int main(void)
#endif
{
	struct sigaction sa;
	pid_t root;
	int stopped = 0;

	ps = (size_t)sysconf(_SC_PAGESIZE);
	physical_off = getenv("COWCHECK_NO_PHYSICAL") != NULL;
	printf("KTAP version 1\n");
	if (ps != PAGE_SIZE_GENERATED) {
		printf("1..0 # SKIP generated for page size %d, this machine has %zu\n",
		       PAGE_SIZE_GENERATED, ps);
		return 4;
	}
#ifdef COWCHECK_HUGETLB
	if (hugetlb_pool_up() == 4)
		return 4;
#endif
	printf("1..%d\n", NTESTS);
#ifdef COWCHECK_HUGETLB
	if (pool_owner)
		printf("# hugetlb pool: vm.nr_hugepages %ld -> %ld for this run\n", pool_before, pool_after);
#endif
	for (int p = 0; p < NPROC; p++) {
		if (pipe(cmd_pipe[p]) < 0 || pipe(rep_pipe[p]) < 0) {
			bail("cannot make pipes");
			return 1;
		}
	}
	/* The racers' board, fresh for this round and shared by the whole tree. */
	board = mmap(NULL, sizeof *board, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (board == MAP_FAILED) {
		bail("cannot map the racers' board");
		return 1;
	}
	/* Orphans of the tree come back to us, so that everything is reaped at the end. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	fflush(stdout);
	root = fork();
	if (root < 0) {
		bail("cannot fork the root process");
		return 1;
	}
	if (root == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (int p = 0; p < NPROC; p++) {
			close(cmd_pipe[p][1]);
			close(rep_pipe[p][0]);
		}
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = on_fault;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSEGV, &sa, NULL);
		sigaction(SIGBUS, &sa, NULL);
		/* The program's pipe, before the first op; a failure shows as the pipe ops' errno. */
		if (pipe2(the_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
			the_pipe[0] = the_pipe[1] = -1;
		/* The program's /dev/zero descriptor, likewise. */
		the_zero = open("/dev/zero", O_RDWR | O_CLOEXEC);
		me = 0;
		serve();
		_exit(0);
	}
	setpgid(root, root);
	signal(SIGPIPE, SIG_IGN);
	for (int p = 0; p < NPROC; p++) {
		close(cmd_pipe[p][0]);
		close(rep_pipe[p][1]);
	}
	alive[0] = 1;
	for (int i = 0; ops[i].verb != V_END && !stopped; i++) {
		if (run_op(i) < 0)
			stopped = 1;
		for (int k = 0; checks[k].after_op >= 0 && !stopped; k++)
			if (checks[k].after_op == i && run_check(k) < 0)
				stopped = 1;
	}
	if (stopped)
		bail("a process of the tree stopped answering");
	kill(-root, SIGKILL);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	printf("# %d of %d tests failed\n", failures, tests);
	return failures || stopped || tests != NTESTS ? 1 : 0;
}

#ifdef COWCHECK_RACES
/* A racing program: a race is rare, so the whole program runs again and again, each round in a
 * fresh process tree, until a round fails or the time limit passes (COWCHECK_REPRO_SECONDS,
 * default 10) or COWCHECK_REPRO_ROUNDS rounds ran (default: no limit). Each round's KTAP goes
 * to a temporary file; the last round's (the failing one, if any) is printed, with how many
 * rounds ran. */
static long env_long(const char *name, long dflt)
{
	const char *v = getenv(name);
	char *end;
	long n;
	if (!v || !*v)
		return dflt;
	n = strtol(v, &end, 10);
	return *end || n < 0 ? dflt : n;
}

int main(void)
{
	long seconds = env_long("COWCHECK_REPRO_SECONDS", 10), limit = env_long("COWCHECK_REPRO_ROUNDS", 0);
	struct timespec t0, now;
	long rounds = 0;
	int code = 0;
	char buf[4096];
	ssize_t n;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		FILE *out = tmpfile();
		pid_t pid;
		int status = 0;
		if (!out) {
			printf("KTAP version 1\nBail out! cannot make a temporary file\n");
			return 1;
		}
		fflush(stdout);
		pid = fork();
		if (pid < 0) {
			printf("KTAP version 1\nBail out! cannot fork a round\n");
			return 1;
		}
		if (pid == 0) {
			dup2(fileno(out), 1);
			int rc = one_round();
			fflush(stdout);
			_exit(rc);
		}
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		rounds++;
		code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (code != 0 || (limit && rounds >= limit) || now.tv_sec - t0.tv_sec >= seconds) {
			rewind(out);
			fflush(stdout);
			while ((n = read(fileno(out), buf, sizeof buf)) > 0)
				if (write_full(1, buf, (size_t)n) < 0)
					break;
			fclose(out);
			printf("# %ld round(s) ran in %ld s; %s\n", rounds, (long)(now.tv_sec - t0.tv_sec),
			       code == 0   ? "every round passed"
			       : code == 4 ? "skipped (its output is above)"
					   : "the last round failed (its output is above)");
			return code;
		}
		fclose(out);
	}
}
#endif

#ifdef COWCHECK_RUNTIME_ONLY
static const int map_pages[NMAP] = { 0 };
static const struct op ops[NOPS + 1] = { { .verb = V_END } };
static const struct check checks[NCHECKS + 1] = { { .after_op = -1 } };
#endif
