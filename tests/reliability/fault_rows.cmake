# Reliability rows 4, 5, 6, 8 and 9 (see RELIABILITY.md): power loss, disk full and
# I/O errors, clock skew, the authorisation table, no secrets in logs. Each
# prints one line of figures. Quick by default; FS_SOAK=1 in the environment
# of the test run selects the soak (configure with FS_SOAK=1 too, so that the
# time budgets below are the soak's). Rows that use LD_PRELOAD shims or
# faketime run on the plain build ("reliability;plain"); the others on the
# sanitized one. Every row uses its own temporary folders and free ports:
# ctest -j2 is safe.

if("$ENV{FS_SOAK}" STREQUAL "1")
    set(fs_rel_budget_s 3600)
else()
    set(fs_rel_budget_s 0) # per row, below
endif()

# fs_rel_budget(TEST QUICK_SECONDS): the row's time budget.
function(fs_rel_budget test quick)
    if(fs_rel_budget_s)
        set(quick ${fs_rel_budget_s})
    endif()
    set_tests_properties(${test} PROPERTIES TIMEOUT ${quick})
endfunction()

# Row 4: power loss. A crash-simulating SQLite VFS, registered as the default
# before store_open, under the real store API (no product change).
add_executable(rel_powerloss rel_powerloss.c)
target_link_libraries(rel_powerloss PRIVATE fs_store)
fs_harden(rel_powerloss)
add_test(NAME rel_power_loss COMMAND rel_powerloss)
set_tests_properties(rel_power_loss PROPERTIES LABELS reliability)
fs_rel_budget(rel_power_loss 300)

# Row 5: disk full and I/O errors, through an LD_PRELOAD shim (plain build).
add_library(shim_fail MODULE shim_fail.c)
target_link_libraries(shim_fail PRIVATE ${CMAKE_DL_LIBS})
fs_harden(shim_fail)
set_target_properties(shim_fail PROPERTIES PREFIX "" OUTPUT_NAME shim_fail)
fs_py(rel_disk_full rel_diskfull.py reliability plain)
fs_rel_budget(rel_disk_full 300)

# Row 6: clock skew, the agent under libfaketime (plain build).
fs_py(rel_clock_skew rel_clock.py reliability plain)
fs_rel_budget(rel_clock_skew 180)

# Row 8: the authorisation table (every endpoint x every kind of caller).
# rel_sign signs requests with bodies (and forges them) for it.
add_executable(rel_sign rel_sign.c)
target_link_libraries(rel_sign PRIVATE fs_store)
fs_harden(rel_sign)
fs_py(rel_authz rel_authz.py reliability)
fs_rel_budget(rel_authz 180)

# Row 9: no secrets in logs (server at debug level, every command, the daemon).
fs_py(rel_no_secrets rel_secrets.py reliability)
fs_rel_budget(rel_no_secrets 240)
