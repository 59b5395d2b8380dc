/*
 * fake_nm: stands in for NetworkManager on a private bus, for fieldsyncd's
 * test (tests/e2e/test_daemon.py). Connects to the bus that
 * DBUS_SYSTEM_BUS_ADDRESS names, owns org.freedesktop.NetworkManager, prints
 * "ready", then for each line of standard input holding a number N emits
 * org.freedesktop.NetworkManager.StateChanged(u N) from
 * /org/freedesktop/NetworkManager and prints "sent N". Ends at end of input.
 * Test code only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-bus.h>

int
main(void)
{
    sd_bus *bus = NULL;
    char line[64];
    int r;

    r = sd_bus_open_system(&bus);
    if (r >= 0)
        r = sd_bus_request_name(bus, "org.freedesktop.NetworkManager", 0);
    if (r < 0) {
        fprintf(stderr, "fake_nm: %s\n", strerror(-r));
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        char *end;
        unsigned long state = strtoul(line, &end, 10);

        if (end == line)
            continue;
        r = sd_bus_emit_signal(bus, "/org/freedesktop/NetworkManager",
                               "org.freedesktop.NetworkManager", "StateChanged", "u",
                               (uint32_t)state);
        if (r >= 0)
            r = sd_bus_flush(bus);
        if (r < 0) {
            fprintf(stderr, "fake_nm: %s\n", strerror(-r));
            break;
        }
        printf("sent %lu\n", state);
        fflush(stdout);
    }
    sd_bus_flush_close_unref(bus);
    return r < 0;
}
