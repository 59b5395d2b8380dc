/* runs: runs a command N times, one after the other, and prints each run's wall
 * time from fork to exit in microseconds, one per line. A small parent, so that
 * the figure is the command's own and not an interpreter's. Benchmark tool only.
 *
 *   runs N COMMAND [ARGS...]     exits 1 at the first run that fails */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
    long n, i;

    if (argc < 3 || (n = strtol(argv[1], NULL, 10)) <= 0) {
        fprintf(stderr, "usage: runs N COMMAND [ARGS...]\n");
        return 64;
    }
    for (i = 0; i < n; i++) {
        struct timespec a, b;
        pid_t pid;
        int status;

        clock_gettime(CLOCK_MONOTONIC, &a);
        pid = fork();
        if (pid < 0)
            return 70;
        if (pid == 0) {
            int fd = open("/dev/null", O_RDWR);

            if (fd >= 0) {
                dup2(fd, 0);
                dup2(fd, 1);
                close(fd);
            }
            execvp(argv[2], argv + 2);
            _exit(127);
        }
        if (waitpid(pid, &status, 0) < 0)
            return 70;
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "runs: run %ld failed\n", i + 1);
            return 1;
        }
        printf("%lld\n",
               (long long)(b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000);
    }
    return 0;
}
