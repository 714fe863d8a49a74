// LD_PRELOAD shim for the FUSE passthrough process: adds NVC_LATENCY_US microseconds to each file
// system call it makes on the backing directory, so a mount behaves like a network volume
// (EFS: roughly 0.25-1 ms per read operation, 1.6-2.7 ms per write).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static unsigned delay_us(void) {
  static int cached = -1;
  if (cached < 0) {
    const char *v = getenv("NVC_LATENCY_US");
    cached = v ? atoi(v) : 0;
  }
  return (unsigned)cached;
}
static void pause_op(void) {
  if (delay_us()) usleep(delay_us());
}

#define REAL(name) static __typeof__(name) *real_##name; if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name)

int openat(int dirfd, const char *path, int flags, ...) {
  REAL(openat);
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }
  pause_op();
  return real_openat(dirfd, path, flags, mode);
}
ssize_t pread64(int fd, void *buf, size_t n, off_t off) { REAL(pread64); pause_op(); return real_pread64(fd, buf, n, off); }
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) { REAL(pwrite64); pause_op(); return real_pwrite64(fd, buf, n, off); }
ssize_t preadv64(int fd, const struct iovec *iov, int c, off_t off) { REAL(preadv64); pause_op(); return real_preadv64(fd, iov, c, off); }
ssize_t pwritev64(int fd, const struct iovec *iov, int c, off_t off) { REAL(pwritev64); pause_op(); return real_pwritev64(fd, iov, c, off); }
int fstatat(int dirfd, const char *path, struct stat *st, int flags) { REAL(fstatat); pause_op(); return real_fstatat(dirfd, path, st, flags); }
int renameat(int a, const char *b, int c, const char *d) { REAL(renameat); pause_op(); return real_renameat(a, b, c, d); }
int unlinkat(int dirfd, const char *path, int flags) { REAL(unlinkat); pause_op(); return real_unlinkat(dirfd, path, flags); }
int mkdirat(int dirfd, const char *path, mode_t mode) { REAL(mkdirat); pause_op(); return real_mkdirat(dirfd, path, mode); }
int linkat(int a, const char *b, int c, const char *d, int e) { REAL(linkat); pause_op(); return real_linkat(a, b, c, d, e); }
int fsync(int fd) { REAL(fsync); pause_op(); return real_fsync(fd); }
