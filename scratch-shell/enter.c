/*
 * enter — run a program inside another process's namespaces and root directory.
 *
 * Like nsenter, with two differences that matter for debugging containers built "from scratch":
 *   - the program can be a binary of ours (e.g. busybox) that does not exist in the target's
 *     filesystem: it is opened by fd *before* entering the target, then started with execveat(),
 *     so it runs inside the target's root although no such file is there;
 *   - with -f, the target's own binary is preferred and ours is only the fallback.
 *
 * Usage: enter [-t PID] [-n NAMESPACES] [-b BINARY | -f BINARY] [-R] [-T] [-w DIR] -- ARGV...
 *   -t PID         the target process (default: enter itself, i.e. stay on the host)
 *   -n LIST        namespaces to enter: comma list of mnt,uts,ipc,net,pid,cgroup, or "all"
 *                  (default: all; a namespace the target shares with us is skipped)
 *   -b BINARY      execute BINARY (a host path, opened before entering) with ARGV
 *   -f BINARY      execute ARGV[0] from the target's PATH; if it is not there (and ARGV[0] is a
 *                  bare name), BINARY with ARGV (busybox then runs the applet of that name)
 *   -R             do not chroot into /proc/PID/root
 *   -w DIR         working directory inside the target (default: the target's, else /)
 *   -T             make stdin (a terminal) the controlling terminal: for interactive shells,
 *                  started as session leaders by the caller (which cannot safely do it itself
 *                  between fork and exec in a multi-threaded process)
 *
 * When the PID namespace is entered, enter forks (a setns'd PID namespace applies to children
 * only), forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGWINCH to the child, and exits with the
 * child's status (128+N for signal N). Errors name what failed and why, on stderr, exit 126
 * (cannot enter) or 127 (program not found).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

struct ns {
    const char *name;
    int flag;
    int fd;
    int wanted;
};

static struct ns namespaces[] = {
    /* mnt last: after it, /proc paths of the host are gone from view. */
    {"cgroup", CLONE_NEWCGROUP, -1, 0},
    {"ipc", CLONE_NEWIPC, -1, 0},
    {"uts", CLONE_NEWUTS, -1, 0},
    {"net", CLONE_NEWNET, -1, 0},
    {"pid", CLONE_NEWPID, -1, 0},
    {"mnt", CLONE_NEWNS, -1, 0},
};
#define NNS (sizeof(namespaces) / sizeof(namespaces[0]))

static pid_t child = -1;

static void die(int code, const char *fmt, ...) {
    va_list ap;
    fputs("enter: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

static void usage(void) {
    fputs("usage: enter [-t PID] [-n NAMESPACES] [-b BINARY | -f BINARY] [-R] [-T] [-w DIR] -- "
          "ARGV...\n", stderr);
    exit(2);
}

static int parse_namespaces(const char *list) {
    char *copy = strdup(list), *save = NULL, *tok;
    if (!copy) die(126, "out of memory");
    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t i;
        int found = 0;
        for (i = 0; i < NNS; i++) {
            if (strcmp(tok, "all") == 0 || strcmp(tok, namespaces[i].name) == 0) {
                namespaces[i].wanted = 1;
                found = 1;
            }
        }
        if (!found) die(2, "unknown namespace '%s' (known: mnt,uts,ipc,net,pid,cgroup,all)", tok);
    }
    free(copy);
    return 0;
}

/* Is /proc/PID/ns/NAME the same namespace as ours? Then setns would be a no-op (or EINVAL). */
static int same_namespace(const char *pidstr, const char *name) {
    char a[64], b[PATH_MAX];
    struct stat sa, sb;
    snprintf(a, sizeof a, "/proc/self/ns/%s", name);
    snprintf(b, sizeof b, "/proc/%s/ns/%s", pidstr, name);
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0) return 0;
    return sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

static void forward(int sig) {
    if (child > 0) kill(child, sig);
}

static int exec_fd(int fd, char **argv) {
    extern char **environ;
    syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
    return errno;
}

/* Run ARGV: the target's binary (execvp, inside the new root) or ours (by fd). */
static void run(int binfd, int fallback, char **argv) {
    if (binfd >= 0 && !fallback) {
        int err = exec_fd(binfd, argv);
        die(126, "cannot execute the helper binary: %s", strerror(err));
    }
    execvp(argv[0], argv);
    int err = errno;
    /* Fall back to our binary only for bare names: an explicit path that is missing is an
     * error to report, not an applet to guess. */
    if (binfd >= 0 && !strchr(argv[0], '/') && (err == ENOENT || err == ENOTDIR || err == EACCES)) {
        err = exec_fd(binfd, argv);
        die(126, "'%s' is not in the target and the fallback binary failed: %s", argv[0],
            strerror(err));
    }
    die(err == ENOENT ? 127 : 126, "cannot execute '%s' in the target: %s", argv[0],
        strerror(err));
}

int main(int argc, char **argv) {
    const char *pidstr = NULL, *binary = NULL, *workdir = NULL, *nslist = "all";
    int fallback = 0, do_chroot = 1, set_ctty = 0, opt;
    char selfpid[32];

    while ((opt = getopt(argc, argv, "+t:n:b:f:RTw:h")) != -1) {
        switch (opt) {
        case 't': pidstr = optarg; break;
        case 'n': nslist = optarg; break;
        case 'b': binary = optarg; fallback = 0; break;
        case 'f': binary = optarg; fallback = 1; break;
        case 'R': do_chroot = 0; break;
        case 'T': set_ctty = 1; break;
        case 'w': workdir = optarg; break;
        default: usage();
        }
    }
    if (optind >= argc) usage();
    if (!pidstr) {
        snprintf(selfpid, sizeof selfpid, "%d", (int)getpid());
        pidstr = selfpid;
    }
    if (set_ctty) {
        if (getsid(0) != getpid()) setsid();
        if (ioctl(0, TIOCSCTTY, 0) != 0)
            die(126, "cannot make stdin the controlling terminal: %s", strerror(errno));
    }
    char *end;
    long pid = strtol(pidstr, &end, 10);
    if (*end || pid <= 0) die(2, "invalid PID '%s'", pidstr);
    char **cmd = argv + optind;
    parse_namespaces(nslist);

    char path[PATH_MAX];
    snprintf(path, sizeof path, "/proc/%ld", pid);
    if (access(path, F_OK) != 0) die(126, "no process with PID %ld", pid);

    /* Everything from the host side is opened before the first setns. */
    int binfd = -1;
    if (binary) {
        binfd = open(binary, O_RDONLY | O_CLOEXEC);
        if (binfd < 0) die(126, "cannot open helper binary %s: %s", binary, strerror(errno));
    }
    for (size_t i = 0; i < NNS; i++) {
        if (!namespaces[i].wanted || same_namespace(pidstr, namespaces[i].name)) continue;
        snprintf(path, sizeof path, "/proc/%ld/ns/%s", pid, namespaces[i].name);
        namespaces[i].fd = open(path, O_RDONLY | O_CLOEXEC);
        if (namespaces[i].fd < 0) {
            if (errno == ENOENT) continue; /* kernel without this namespace type */
            die(126, "cannot open %s: %s (need root / CAP_SYS_ADMIN and CAP_SYS_PTRACE)", path,
                strerror(errno));
        }
    }
    int rootfd = -1, cwdfd = -1;
    if (do_chroot) {
        snprintf(path, sizeof path, "/proc/%ld/root", pid);
        rootfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0) die(126, "cannot open %s: %s", path, strerror(errno));
        snprintf(path, sizeof path, "/proc/%ld/cwd", pid);
        cwdfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* optional */
    }

    int entered_pid = 0;
    for (size_t i = 0; i < NNS; i++) {
        if (namespaces[i].fd < 0) continue;
        if (setns(namespaces[i].fd, namespaces[i].flag) != 0)
            die(126, "cannot enter the %s namespace of PID %ld: %s", namespaces[i].name, pid,
                strerror(errno));
        if (namespaces[i].flag == CLONE_NEWPID) entered_pid = 1;
        close(namespaces[i].fd);
    }
    if (do_chroot) {
        if (fchdir(rootfd) != 0 || chroot(".") != 0)
            die(126, "cannot chroot into the root of PID %ld: %s", pid, strerror(errno));
        close(rootfd);
    }
    if (workdir) {
        if (chdir(workdir) != 0) die(126, "cannot change directory to %s: %s", workdir, strerror(errno));
    } else if (cwdfd >= 0) {
        if (fchdir(cwdfd) != 0 && chdir("/") != 0) die(126, "cannot chdir: %s", strerror(errno));
    } else if (do_chroot && chdir("/") != 0) {
        die(126, "cannot chdir to /: %s", strerror(errno));
    }
    if (cwdfd >= 0) close(cwdfd);
    if (!getenv("PATH")) setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);

    if (!entered_pid) run(binfd, fallback, cmd);

    child = fork();
    if (child < 0) die(126, "fork: %s", strerror(errno));
    if (child == 0) run(binfd, fallback, cmd);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
    int status;
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) die(126, "waitpid: %s", strerror(errno));
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 126;
}
