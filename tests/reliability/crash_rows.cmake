# Reliability rows 1, 2, 3, 10 and 11 (see RELIABILITY.md): kill -9 of the agent,
# kill -9 of the server, network faults, fork and rollback, a corrupt local store.
# Python drivers of the real binaries on the sanitized build (none of them uses a
# shim, faketime or a memory figure). Each prints one line of figures. Quick by
# default; FS_SOAK=1 in the environment of the test run selects the soak sizes
# (configure with FS_SOAK=1 too, so that the time budgets below are the soak's).
# Every row uses its own temporary folders and free ports: ctest -j2 is safe.

# fs_crash_row(NAME SCRIPT QUICK_SECONDS): a row, label "reliability", its budget.
function(fs_crash_row name script quick)
    fs_py(${name} ${script} reliability)
    if("$ENV{FS_SOAK}" STREQUAL "1")
        set(quick 3600)
    endif()
    set_tests_properties(${name} PROPERTIES TIMEOUT ${quick})
endfunction()

# Row 1: kill -9 of add, import, sync and fieldsyncd at random moments (K=200).
fs_crash_row(rel_agent_crash rel_agent_crash.py 240)
# Row 2: kill -9 of the server under pushes from three laptops (K=50).
fs_crash_row(rel_server_crash rel_server_crash.py 180)
# Row 3: cuts, stalls and delays from the fault proxy (K=200 faults).
fs_crash_row(rel_network_faults rel_network_faults.py 300)
# Row 10: a copied store is a fork; a server restored from an older backup.
fs_crash_row(rel_fork_rollback rel_fork_rollback.py 180)
# Row 11: bytes flipped in random pages of store.db (T=40 copies).
fs_crash_row(rel_corrupt_store rel_corrupt_store.py 120)
