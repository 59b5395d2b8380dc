# Warnings and hardening shared by every target: fs_harden(<target>).
include_guard(GLOBAL)

set(FS_WARNINGS
    -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wformat=2 -Wimplicit-fallthrough -Wvla -Wconversion
    # Sign conversions between size_t and int are everywhere in libc/SQLite APIs;
    # -Wconversion still catches the narrowing that matters.
    -Wno-sign-conversion)

function(fs_harden target)
    target_compile_options(${target} PRIVATE ${FS_WARNINGS})
    if(FS_WERROR)
        target_compile_options(${target} PRIVATE -Werror)
    endif()
    target_compile_options(${target} PRIVATE -fstack-protector-strong)
    if(NOT FS_SANITIZE AND NOT CMAKE_BUILD_TYPE STREQUAL "Debug")
        target_compile_definitions(${target} PRIVATE _FORTIFY_SOURCE=2)
    endif()
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "EXECUTABLE")
        target_link_options(${target} PRIVATE -pie -Wl,-z,relro,-z,now)
    endif()
endfunction()
