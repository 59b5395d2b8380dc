/* maxrss: runs a command and prints its peak resident memory (KiB) on stderr
 * as "maxrss KIB", then exits with the command's status. A small parent, so
 * that the figure is the command's own and not a forked interpreter's. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
    struct rusage ru;
    pid_t pid;
    int status;

    if (argc < 2) {
        fprintf(stderr, "usage: maxrss COMMAND [ARGS...]\n");
        return 64;
    }
    pid = fork();
    if (pid < 0)
        return 70;
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    if (wait4(pid, &status, 0, &ru) < 0)
        return 70;
    fprintf(stderr, "maxrss %ld\n", ru.ru_maxrss);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 70;
}
